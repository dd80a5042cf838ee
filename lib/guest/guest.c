// SPDX-License-Identifier: MIT
/*
 * The engine side of mig-guest's control socket, and spawning a guest: see
 * guest.h. The protocol (one SEQPACKET message per request and per reply)
 * is ctl.h's.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/bytes.h"
#include "base/exitcodes.h"
#include "base/log.h"
#include "base/util.h"
#include "guest/ctl.h"
#include "guest/guest.h"
#include "guest/workload.h"

/* Poll step while connect() finds the guest's backlog full. */
#define CONNECT_RETRY_MS 10

struct mig_guest {
	int fd;
	uint32_t seq;   /* of the last request: older replies are stale */
	int timeout_ms; /* per reply; < 0 waits as long as the guest lives */
};

/* The reply to request g->seq, into m: skips stale ones (to a request that
 * timed out earlier). 0 (the guest's status is in m->h), or -errno
 * (-ETIMEDOUT, -ECONNRESET, -EPROTO) with no fds kept. */
static int recv_reply(struct mig_guest *g, uint16_t op, struct mig_ctl_msg *m,
		      int max_fds)
{
	uint64_t end = mig_deadline_ns(g->timeout_ms);

	for (;;) {
		ssize_t n;
		int r = mig_poll_until(g->fd, POLLIN, end);

		if (r < 0)
			return r;
		n = mig_ctl_recv(g->fd, m, max_fds);
		if (n == 0)
			return -ECONNRESET;
		if (n == -EPROTO || (n > 0 && (m->h.op != op || m->h.seq != g->seq))) {
			bool stale = m->h.magic == MIG_CTL_MAGIC && m->h.seq != g->seq;

			mig_ctl_msg_close_fds(m);
			if (stale)
				continue;
			return -EPROTO;
		}
		if (n < 0)
			return (int)n;
		return 0;
	}
}

/*
 * Send op (with an optional payload and fd), wait for its reply, keeping at
 * most max_fds of the fds it brings. The reply lands in m: its payload at
 * mig_ctl_payload(m), m->h.len bytes; its fds in m->fds (the caller owns
 * them, even on a non-zero status). Returns the guest's status (0 or
 * -errno) or a transport error (m->h.len 0, no fds).
 */
static int call(struct mig_guest *g, uint16_t op, const void *pl, size_t plen,
		int send_fd, struct mig_ctl_msg *m, int max_fds)
{
	int r = mig_ctl_send(g->fd, op, ++g->seq, 0, pl, plen, &send_fd,
			     send_fd >= 0 ? 1 : 0);

	if (r == -EPIPE)
		r = -ECONNRESET;
	if (r == 0)
		r = recv_reply(g, op, m, max_fds);
	if (r < 0) {
		m->h.len = 0;
		m->nfds = 0;
		return r;
	}
	return m->h.status;
}

/* A request with no payload and no fds either way. */
static int call_simple(struct mig_guest *g, uint16_t op)
{
	struct mig_ctl_msg m;

	return call(g, op, NULL, 0, -1, &m, 0);
}

static int connect_path(const char *path, int timeout_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t end = mig_deadline_ns(timeout_ms);
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* non-blocking: a full backlog is EAGAIN, retried until the deadline */
	while ((r = connect(fd, (struct sockaddr *)&sa, sizeof(sa))) < 0 &&
	       (errno == EAGAIN || errno == EINTR) && mig_deadline_left_ms(end) != 0)
		poll(NULL, 0, CONNECT_RETRY_MS);
	if (r < 0) {
		r = errno == EAGAIN ? -ETIMEDOUT : errno == EPROTOTYPE ? -EPROTO : -errno;
		close(fd);
		return r;
	}
	r = mig_set_nonblock(fd, false);
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

struct mig_guest *mig_guest_connect(const char *ctl_path, int timeout_ms)
{
	struct mig_guest_info info;
	struct mig_guest *g = calloc(1, sizeof(*g));
	int r;

	if (!g)
		return NULL;
	g->timeout_ms = timeout_ms;
	g->fd = connect_path(ctl_path, timeout_ms);
	if (g->fd < 0) {
		r = g->fd;
		free(g);
		errno = -r;
		return NULL;
	}
	/* a first exchange proves it is a mig-guest speaking our version */
	r = mig_guest_info(g, &info);
	if (r < 0) {
		mig_dbg("guest", "%s: no mig-guest answer: %s", ctl_path, strerror(-r));
		mig_guest_close(g);
		errno = r == -ETIMEDOUT || r == -ECONNRESET ? -r : EPROTO;
		return NULL;
	}
	return g;
}

void mig_guest_close(struct mig_guest *g)
{
	if (!g)
		return;
	close(g->fd);
	free(g);
}

void mig_guest_set_timeout(struct mig_guest *g, int timeout_ms)
{
	g->timeout_ms = timeout_ms;
}

int mig_guest_attach(struct mig_guest *g, pid_t *holder)
{
	struct mig_ctl_msg m;
	int r = call(g, MIG_CTL_ATTACH, NULL, 0, -1, &m, 0);

	if (holder)
		*holder = r == -EBUSY && m.h.len == 4 ?
			  (pid_t)mig_get_le32(mig_ctl_payload(&m)) : 0;
	return r;
}

int mig_guest_info(struct mig_guest *g, struct mig_guest_info *info)
{
	struct mig_ctl_msg m;
	int r = call(g, MIG_CTL_INFO, NULL, 0, -1, &m, 0);

	if (r < 0)
		return r;
	return mig_ctl_info_unpack(mig_ctl_payload(&m), m.h.len, info);
}

int mig_guest_get_fds(struct mig_guest *g, int *memfd, int *uffd)
{
	struct mig_ctl_msg m;
	int r = call(g, MIG_CTL_GET_FDS, NULL, 0, -1, &m, 2);

	if (r == 0 && (m.h.len != 4 || m.nfds < 1 ||
		       mig_get_le32(mig_ctl_payload(&m)) != (uint32_t)m.nfds))
		r = -EPROTO;
	if (r < 0) {
		mig_ctl_msg_close_fds(&m);
		return r;
	}
	*memfd = m.fds[0];
	*uffd = m.nfds == 2 ? m.fds[1] : -1;
	return 0;
}

int mig_guest_stop(struct mig_guest *g)
{
	return call_simple(g, MIG_CTL_STOP);
}

int mig_guest_cont(struct mig_guest *g)
{
	return call_simple(g, MIG_CTL_CONT);
}

int mig_guest_save_state(struct mig_guest *g, uint8_t **blob, size_t *len)
{
	struct mig_ctl_msg m;
	int r = call(g, MIG_CTL_SAVE_STATE, NULL, 0, -1, &m, 1);

	if (r == 0 && (m.h.len != 4 || m.nfds != 1))
		r = -EPROTO;
	if (r == 0) {
		*len = mig_get_le32(mig_ctl_payload(&m));
		r = mig_ctl_blob_read(m.fds[0], *len, blob);
		if (r == -EBADMSG)
			r = -EPROTO;
	}
	mig_ctl_msg_close_fds(&m);
	return r;
}

int mig_guest_load_state(struct mig_guest *g, const uint8_t *blob, size_t len)
{
	struct mig_ctl_msg m;
	uint8_t pl[4];
	int fd, r;

	if (!len || len > MIG_WORKLOAD_MAX_STATE_BYTES)
		return -EBADMSG;
	fd = mig_ctl_blob_fd(blob, len);
	if (fd < 0)
		return fd;
	mig_put_le32(pl, (uint32_t)len);
	r = call(g, MIG_CTL_LOAD_STATE, pl, sizeof(pl), fd, &m, 0);
	close(fd);
	return r;
}

int mig_guest_incoming_done(struct mig_guest *g)
{
	return call_simple(g, MIG_CTL_INCOMING_DONE);
}

int mig_guest_verify(struct mig_guest *g, char *msg, size_t len)
{
	struct mig_ctl_msg m;
	int r = call(g, MIG_CTL_VERIFY, NULL, 0, -1, &m, 0);
	size_t n = 0;

	if (!len)
		return r;
	/* a verdict comes with holds, broken and not-yet (pages missing);
	 * a transport error has none */
	if (r == 0 || r == -EBADMSG || r == -EAGAIN)
		n = MIG_MIN((size_t)m.h.len, len - 1);
	memcpy(msg, mig_ctl_payload(&m), n);
	msg[n] = '\0';
	return r;
}

int mig_guest_quit(struct mig_guest *g)
{
	return call_simple(g, MIG_CTL_QUIT);
}

int mig_guest_dirty_start(struct mig_guest *g)
{
	return call_simple(g, MIG_CTL_DIRTY_START);
}

int mig_guest_dirty_stop(struct mig_guest *g)
{
	return call_simple(g, MIG_CTL_DIRTY_STOP);
}

int mig_guest_digest(struct mig_guest *g, uint64_t *out)
{
	struct mig_ctl_msg m;
	int r = call(g, MIG_CTL_DIGEST, NULL, 0, -1, &m, 0);

	if (r == 0 && m.h.len != 8)
		r = -EPROTO;
	if (r < 0)
		return r;
	*out = mig_get_le64(mig_ctl_payload(&m));
	return 0;
}

int mig_guest_poke(struct mig_guest *g, uint64_t page)
{
	struct mig_ctl_msg m;
	uint8_t pl[8];

	mig_put_le64(pl, page);
	return call(g, MIG_CTL_POKE, pl, sizeof(pl), -1, &m, 0);
}

/* --- spawn ---------------------------------------------------------------- */

struct spawn_argv {
	char prog[PATH_MAX];
	char ram[32], vcpus[16], ready[16];
	const char *argv[16];
};

static int build_argv(struct spawn_argv *a, const char *ctl_path,
		      uint64_t ram_bytes, bool incoming, const char *workload,
		      unsigned vcpus, const char *serial, int ready_fd)
{
	char dir[PATH_MAX];
	int n = 0, r = mig_self_dir(dir, sizeof(dir));

	if (r < 0)
		return r;
	if (snprintf(a->prog, sizeof(a->prog), "%s/mig-guest", dir) >= (int)sizeof(a->prog))
		return -ENAMETOOLONG;
	if (access(a->prog, X_OK) < 0)
		return -errno;
	snprintf(a->ram, sizeof(a->ram), "%" PRIu64, ram_bytes);
	snprintf(a->vcpus, sizeof(a->vcpus), "%u", vcpus);
	snprintf(a->ready, sizeof(a->ready), "%d", ready_fd);
	a->argv[n++] = "mig-guest";
	a->argv[n++] = "--ctl";
	a->argv[n++] = ctl_path;
	a->argv[n++] = "--ram";
	a->argv[n++] = a->ram;
	if (incoming)
		a->argv[n++] = "--incoming";
	if (workload && *workload) {
		a->argv[n++] = "--workload";
		a->argv[n++] = workload;
	}
	if (vcpus) {
		a->argv[n++] = "--vcpus";
		a->argv[n++] = a->vcpus;
	}
	if (serial) {
		a->argv[n++] = "--serial";
		a->argv[n++] = serial;
	}
	a->argv[n++] = "--ready-fd";
	a->argv[n++] = a->ready;
	a->argv[n] = NULL;
	return 0;
}

/*
 * In the child, between fork and exec: async-signal-safe calls only. Its
 * own process group, so a signal to the engine's never reaches the guest,
 * and the guest outlives the engine. Not its own session: the scheduler's
 * autogroups are per session, and in one of its own the vCPUs would get
 * half the CPU against all the engine's threads together, whatever their
 * niceness. In the engine's, a fault thread preempts a vCPU and a vCPU a
 * bulk receiver, as their classes say (mig(7), "Where the time goes").
 * What a session of its own also kept away, the terminal's hangup and its
 * stops for background output, is ignored instead.
 */
static void child_exec(const struct spawn_argv *a, int ready_fd)
{
	sigset_t none;
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setpgid(0, 0);
	signal(SIGHUP, SIG_IGN);
	signal(SIGTTOU, SIG_IGN);
	signal(SIGTTIN, SIG_IGN);
	if (null >= 0)
		dup2(null, STDIN_FILENO);
	fcntl(ready_fd, F_SETFD, 0); /* the one fd that must survive exec */
	execv(a->prog, (char *const *)a->argv);
	_exit(127);
}

/* Wait for the ready newline: 0, -ETIMEDOUT, or -ECHILD/-EPERM/-EINVAL
 * when the child exited first (exit 69: userfaultfd not permitted). */
static int wait_ready(int rfd, pid_t pid, int timeout_ms)
{
	char c;
	int r = mig_poll_until(rfd, POLLIN, mig_deadline_ns(timeout_ms)), st;

	if (r == 0 && read(rfd, &c, 1) == 1)
		return 0;
	if (r == -ETIMEDOUT)
		mig_err("guest", "mig-guest pid %d not ready after %d ms: killing it",
			(int)pid, timeout_ms);
	else if (r < 0)
		mig_err("guest", "waiting for mig-guest: %s", strerror(-r));
	if (r < 0)
		kill(pid, SIGKILL);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (r < 0)
		return r == -ETIMEDOUT ? -ETIMEDOUT : -ECHILD;
	if (WIFEXITED(st) && WEXITSTATUS(st) == MIG_EXIT_UNAVAILABLE)
		return -EPERM;
	if (WIFEXITED(st) && WEXITSTATUS(st) == MIG_EXIT_USAGE)
		return -EINVAL;
	if (WIFEXITED(st))
		mig_err("guest", "mig-guest exited with status %d before it was ready",
			WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		mig_err("guest", "mig-guest killed by signal %d before it was ready",
			WTERMSIG(st));
	return -ECHILD;
}

int mig_guest_spawn(const char *ctl_path, uint64_t ram_bytes, bool incoming,
		    const char *workload, unsigned vcpus, const char *serial,
		    int timeout_ms, pid_t *pid)
{
	struct spawn_argv *a = malloc(sizeof(*a));
	int p[2] = { -1, -1 };
	pid_t child;
	int r;

	if (!a)
		return -ENOMEM;
	if (pipe2(p, O_CLOEXEC) < 0) {
		r = -errno;
		mig_err("guest", "pipe: %s", strerror(errno));
		goto out;
	}
	r = build_argv(a, ctl_path, ram_bytes, incoming, workload, vcpus, serial, p[1]);
	if (r < 0) {
		mig_err("guest", "cannot run %s: %s", a->prog, strerror(-r));
		goto out;
	}
	child = fork();
	if (child < 0) {
		r = -errno;
		mig_err("guest", "fork: %s", strerror(errno));
		goto out;
	}
	if (child == 0)
		child_exec(a, p[1]);
	close(p[1]);
	p[1] = -1;
	r = wait_ready(p[0], child, timeout_ms);
	if (r == 0 && pid)
		*pid = child;
	if (r == 0)
		mig_info("guest", "spawned mig-guest pid %d on %s", (int)child, ctl_path);
out:
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	free(a);
	return r;
}

/* --- the migration record --------------------------------------------------- */

int mig_guest_bind(struct mig_guest *g, const struct mig_guest_record *rec)
{
	struct mig_ctl_msg m;
	uint8_t pl[MIG_CTL_BIND_BYTES];

	mig_ctl_bind_pack(pl, rec);
	return call(g, MIG_CTL_BIND, pl, sizeof(pl), -1, &m, 0);
}

int mig_guest_set_state(struct mig_guest *g, enum mig_state st)
{
	struct mig_ctl_msg m;
	uint8_t pl[4];

	mig_put_le32(pl, (uint32_t)st);
	return call(g, MIG_CTL_SET_STATE, pl, sizeof(pl), -1, &m, 0);
}

int mig_guest_unbind(struct mig_guest *g)
{
	return call_simple(g, MIG_CTL_UNBIND);
}

int mig_guest_abandon(struct mig_guest *g, const uint8_t uuid[16])
{
	struct mig_ctl_msg m;

	return call(g, MIG_CTL_ABANDON, uuid, 16, -1, &m, 0);
}
