// SPDX-License-Identifier: MIT
/* Small helpers: see util.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"

int mig_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (end == s)
		return -EINVAL;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: return -EINVAL;
	}
	/* accept "64KiB" / "64KB" / "64k" but nothing else after the unit */
	if (shift && (*end == 'i' || *end == 'I'))
		end++;
	if (shift && (*end == 'b' || *end == 'B'))
		end++;
	if (*end)
		return -EINVAL;
	if (shift && v > (ULLONG_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

int mig_parse_ulong(const char *s, unsigned long min, unsigned long max,
		    unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (end == s || *end)
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int mig_parse_seconds(const char *s, int64_t *ms_out)
{
	char *end;
	double v;

	if (!s || !*s || *s == '-' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end || errno)
		return -EINVAL;
	if (!(v >= 0) || v > 1e9)
		return -ERANGE;
	*ms_out = (int64_t)(v * 1000.0 + 0.5);
	return 0;
}

uint64_t mig_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

uint64_t mig_wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000ull + ts.tv_nsec / 1000;
}

uint64_t mig_deadline_ns(int64_t ms)
{
	uint64_t now = mig_now_ns();

	/* one past the clock's range is as good as none */
	if (ms < 0 || (uint64_t)ms >= (MIG_DEADLINE_NONE - now) / 1000000u)
		return MIG_DEADLINE_NONE;
	return now + (uint64_t)ms * 1000000u;
}

int mig_deadline_left_ms(uint64_t deadline_ns)
{
	uint64_t now;

	if (deadline_ns == MIG_DEADLINE_NONE)
		return -1;
	now = mig_now_ns();
	if (now >= deadline_ns)
		return 0;
	return (int)MIG_MIN((deadline_ns - now + 999999u) / 1000000u,
			    (uint64_t)INT_MAX);
}

int mig_poll_until(int fd, short events, uint64_t deadline_ns)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		int r = poll(&p, 1, mig_deadline_left_ms(deadline_ns));

		if (r > 0)
			return 0;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

int mig_read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= n;
	}
	return 0;
}

int mig_write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		/* MSG_NOSIGNAL: a vanished peer is an error to handle, not a
		 * SIGPIPE that kills the engine holding half a guest. */
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == ENOTSOCK)
			n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= n;
	}
	return 0;
}

void mig_uuid_generate(uint8_t uuid[16])
{
	size_t got = 0;

	while (got < 16) {
		ssize_t n = getrandom(uuid + got, 16 - got, 0);

		if (n > 0)
			got += n;
		else if (errno != EINTR)
			break;
	}
	uuid[6] = (uuid[6] & 0x0f) | 0x40; /* version 4 */
	uuid[8] = (uuid[8] & 0x3f) | 0x80; /* RFC 4122 variant */
}

void mig_uuid_format(const uint8_t u[16], char out[37])
{
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9],
		 u[10], u[11], u[12], u[13], u[14], u[15]);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int mig_uuid_parse(const char *s, uint8_t uuid[16])
{
	int i = 0;

	if (!s || strlen(s) != 36)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		int hi, lo;
		long pos = p - s;

		if (pos == 8 || pos == 13 || pos == 18 || pos == 23) {
			if (*p != '-')
				return -EINVAL;
			continue;
		}
		hi = hexval(p[0]);
		lo = hexval(p[1]);
		if (hi < 0 || lo < 0 || i >= 16)
			return -EINVAL;
		uuid[i++] = hi << 4 | lo;
		p++;
	}
	return i == 16 ? 0 : -EINVAL;
}

/* An implicit runtime directory must be one we made: a user who made
 * /tmp/mig-UID first could plant a socket our tools would talk to. */
static int runtime_dir_check(const char *path, bool explicit, bool create)
{
	static bool said; /* a tool may look twice: one line is enough */
	uid_t me = geteuid();
	struct stat st;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT && !create)
			return 0; /* nothing there yet: nothing to talk to */
		return -errno;
	}
	if (explicit && (st.st_uid == me || st.st_uid == 0))
		return 0;
	if (!explicit && S_ISDIR(st.st_mode) && st.st_uid == me &&
	    !(st.st_mode & 077))
		return 0;
	if (!said)
		mig_err("util", "runtime directory %s is not ours (%s, owner uid "
			"%u, mode %04o): refusing it", path,
			S_ISDIR(st.st_mode) ? "a directory" : "not a directory",
			(unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
	said = true;
	return -EPERM;
}

int mig_runtime_dir(char *buf, size_t len, bool create)
{
	const char *env = getenv("MIG_RUNTIME_DIR");
	bool explicit = env && *env;
	int n;

	if (explicit)
		n = snprintf(buf, len, "%s", env);
	else if (geteuid() == 0)
		n = snprintf(buf, len, "/run/mig");
	else if ((env = getenv("XDG_RUNTIME_DIR")) && *env)
		n = snprintf(buf, len, "%s/mig", env);
	else
		n = snprintf(buf, len, "/tmp/mig-%u", (unsigned)geteuid());
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	/* -EPERM is the refusal, which has said why: a caller adds no line
	 * of its own for it, so mkdir's (a filesystem without directories)
	 * must not pass for one */
	if (create && mkdir(buf, 0700) < 0 && errno != EEXIST)
		return errno == EPERM ? -EACCES : -errno;
	return runtime_dir_check(buf, explicit, create);
}

bool mig_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 64 || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

int mig_bus_path(const char *name, const char *side, char *buf, size_t len,
		 bool create_dir)
{
	char dir[256];
	int n, r;

	if (!mig_name_valid(name))
		return -EINVAL;
	r = mig_runtime_dir(dir, sizeof(dir), create_dir);
	if (r < 0)
		return r;
	n = snprintf(buf, len, "%s/%s.%s.sock", dir, name, side);
	/* sun_path holds 108 bytes including the NUL */
	if (n < 0 || (size_t)n >= len || n >= 108)
		return -ENAMETOOLONG;
	return 0;
}

int mig_self_dir(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	char *slash;

	if (n < 0)
		return -errno;
	buf[n] = '\0';
	slash = strrchr(buf, '/');
	if (!slash)
		return -ENOENT;
	*slash = '\0';
	return 0;
}

void mig_ready_notify(int *fd)
{
	if (*fd < 0)
		return;
	if (write(*fd, "\n", 1) < 0) {
		/* the reader went away: nobody is waiting for us */
	}
	close(*fd);
	*fd = -1;
}

int mig_set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
	return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

#define MAX_FDS 8

int mig_send_with_fds(int sock, const void *buf, size_t len, const int *fds,
		      int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds > MAX_FDS)
		return -EINVAL;
	if (nfds > 0) {
		struct cmsghdr *c;

		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EMSGSIZE;
}

ssize_t mig_recv_with_fds(int sock, void *buf, size_t len, int *fds, int *nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = u.buf,
			      .msg_controllen = sizeof(u.buf) };
	int cap = *nfds, got = 0;
	ssize_t n;

	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		int k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (int i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (got < cap)
				fds[got++] = fd;
			else
				close(fd); /* more than asked for: never leak */
		}
	}
	*nfds = got;
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		for (int i = 0; i < got; i++)
			close(fds[i]);
		*nfds = 0;
		return -EMSGSIZE;
	}
	return n;
}

int mig_peer_check(int fd, uid_t *uid, pid_t *pid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	*uid = (uid_t)-1;
	*pid = 0;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	*uid = cred.uid;
	*pid = cred.pid;
	return cred.uid == geteuid() || cred.uid == 0 ? 0 : -EACCES;
}

bool mig_ratelimit_ok(struct mig_ratelimit *rl, unsigned interval_ms,
		      unsigned *suppressed)
{
	uint64_t now = mig_now_ns();

	if (now < rl->next_ns) {
		rl->suppressed++;
		return false;
	}
	rl->next_ns = now + (uint64_t)interval_ms * 1000000u;
	*suppressed = rl->suppressed;
	rl->suppressed = 0;
	return true;
}

const char *mig_fmt_bytes(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	unsigned u = 0;

	while (v >= 1024.0 && u + 1 < MIG_ARRAY_SIZE(units)) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

void mig_thread_name(const char *fmt, ...)
{
	char name[16];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	pthread_setname_np(pthread_self(), name);
}

/* How much nicer than the engine the bulk threads run, and how much less
 * nice the latency-critical ones. */
#define MIG_BULK_NICE_STEP 5
#define MIG_URGENT_NICE_STEP 10
/* The shortest slice EEVDF allows: a thread waking with it has the
 * earliest deadline, so its wakeup preempts the pumps. */
#define MIG_URGENT_SLICE_NS 100000ULL

/* The kernel's struct sched_attr, first version: its header clashes with
 * glibc's struct sched_param, and glibc 2.36 has no wrapper. */
struct mig_sched_attr {
	uint32_t size, sched_policy;
	uint64_t sched_flags;
	int32_t sched_nice;
	uint32_t sched_priority;
	uint64_t sched_runtime, sched_deadline, sched_period;
};

/*
 * Relative to the engine's niceness: an engine started with nice 10 must
 * not see its bulk threads raised to 5, as root they would be. Urgent: a
 * slice alone does not do it; woken with the pumps' run time still owed,
 * a thread is not eligible to preempt them, and a fault waited for the
 * next tick (4 ms here). Weight makes it eligible. Without CAP_SYS_NICE
 * the slice alone is what it gets; a kernel before 6.12 refuses the slice
 * too, and keeps its own.
 */
void mig_thread_class(pid_t tid, bool urgent, int nice)
{
	struct mig_sched_attr a = { .size = sizeof(a) };

	a.sched_policy = urgent ? SCHED_OTHER : SCHED_BATCH;
	a.sched_runtime = urgent ? MIG_URGENT_SLICE_NS : 0;
	a.sched_nice = urgent ? MIG_MAX(nice - MIG_URGENT_NICE_STEP, -20) :
				MIG_MIN(nice + MIG_BULK_NICE_STEP, 19);
	if (syscall(SYS_sched_setattr, tid, &a, 0) < 0 && errno == EPERM) {
		a.sched_nice = MIG_MAX(a.sched_nice, nice);
		syscall(SYS_sched_setattr, tid, &a, 0);
	}
}

int mig_thread_nice(void)
{
	int nice;

	/* per thread on Linux: a new thread has its creator's */
	errno = 0;
	nice = getpriority(PRIO_PROCESS, 0);
	return nice == -1 && errno ? 0 : nice;
}

void mig_thread_bulk(void)
{
	mig_thread_class(0, false, mig_thread_nice());
}

void mig_thread_urgent(void)
{
	mig_thread_class(0, true, mig_thread_nice());
}

int mig_sock_claim(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	/* lstat: a symlink is not ours to follow, even to a socket */
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : errno;
	close(fd);
	/* EAGAIN: a full backlog; EPROTOTYPE: a live socket of another type */
	if (r == 0 || r == EAGAIN || r == EPROTOTYPE)
		return -EADDRINUSE;
	if (r == ENOENT)
		return 0;
	if (r != ECONNREFUSED)
		return -r;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	mig_info("util", "replaced stale socket %s", path);
	return 0;
}

void mig_sock_own(const char *path, struct mig_sock_owner *o)
{
	struct stat st;

	o->bound = lstat(path, &st) == 0;
	o->dev = o->bound ? st.st_dev : 0;
	o->ino = o->bound ? st.st_ino : 0;
}

void mig_sock_release(const char *path, struct mig_sock_owner *o)
{
	struct stat st;

	if (o->bound && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_dev == o->dev && st.st_ino == o->ino)
		unlink(path);
	o->bound = false;
}
