/* SPDX-License-Identifier: MIT */
/*
 * Small helpers every module needs: sizes, clocks, full reads and writes,
 * UUIDs, runtime paths, fd passing, readiness notification.
 */
#ifndef MIG_UTIL_H
#define MIG_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The only page size mig migrates: the kernel's base page on x86-64. */
#define MIG_PAGE_SIZE 4096u
#define MIG_PAGE_SHIFT 12

#define MIG_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIG_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MIG_MAX(a, b) ((a) > (b) ? (a) : (b))

/* "512M", "1G", "4096", "64k": bytes. -EINVAL on syntax, -ERANGE on overflow. */
int mig_parse_size(const char *s, uint64_t *out);
/* Decimal unsigned in [min, max]; -EINVAL / -ERANGE. */
int mig_parse_ulong(const char *s, unsigned long min, unsigned long max,
		    unsigned long *out);
/* Seconds, possibly fractional ("2.5"), >= 0: milliseconds. */
int mig_parse_seconds(const char *s, int64_t *ms_out);

uint64_t mig_now_ns(void);  /* CLOCK_MONOTONIC */
uint64_t mig_wall_us(void); /* CLOCK_REALTIME, for event timestamps */

/* A deadline ms from now on the monotonic clock, for a loop that polls
 * until a time; ms < 0 is none (MIG_DEADLINE_NONE). */
#define MIG_DEADLINE_NONE UINT64_MAX
uint64_t mig_deadline_ns(int64_t ms);
/* What is left of a deadline, as poll()'s timeout: rounded up to whole ms
 * (a wait that ended just short of the deadline would spin), 0 once it has
 * passed, -1 for MIG_DEADLINE_NONE. */
int mig_deadline_left_ms(uint64_t deadline_ns);
/* Wait until fd has one of events or the deadline passes, EINTR retried:
 * 0, -ETIMEDOUT or -errno. */
int mig_poll_until(int fd, short events, uint64_t deadline_ns);

/* Read/write exactly len bytes, retrying on EINTR and short transfers.
 * Returns 0, -errno, or -ECONNRESET when the peer closed mid-way (for reads,
 * also when it closed before the first byte). */
int mig_read_full(int fd, void *buf, size_t len);
int mig_write_full(int fd, const void *buf, size_t len);

void mig_uuid_generate(uint8_t uuid[16]);
/* 36 characters + NUL. */
void mig_uuid_format(const uint8_t uuid[16], char out[37]);
int mig_uuid_parse(const char *s, uint8_t uuid[16]);

/* $MIG_RUNTIME_DIR, else /run/mig for root, else $XDG_RUNTIME_DIR/mig,
 * else /tmp/mig-UID. Creates it (0700) when create is set. A directory
 * another user could have made for us is refused: the implicit ones must
 * be directories (not symlinks) we own with no group or other access; an
 * explicit $MIG_RUNTIME_DIR must not be owned by another user than us or
 * root. A refused one is -EPERM (and only that is), logged once with its
 * path and owner: the caller need not say more. One that does not exist
 * yet is fine when create is not set. */
int mig_runtime_dir(char *buf, size_t len, bool create);
/* The bus socket of migration NAME on SIDE ("send" / "recv"). */
int mig_bus_path(const char *name, const char *side, char *buf, size_t len,
		 bool create_dir);
/* A --name must be usable as a file name: [A-Za-z0-9._-]{1,64}, no leading dot. */
bool mig_name_valid(const char *name);

/* Directory of the running executable: sibling programs are exec'd from it. */
int mig_self_dir(char *buf, size_t len);

/* --ready-fd: write "\n" and close. fd < 0 is a no-op. */
void mig_ready_notify(int *fd);

int mig_set_nonblock(int fd, bool on);

/* SCM_RIGHTS over a UNIX socket: one message carrying data and up to nfds fds. */
int mig_send_with_fds(int sock, const void *buf, size_t len, const int *fds,
		      int nfds);
/* Receives one message; *nfds in: capacity, out: fds received (closed on
 * error). Returns bytes received, 0 on EOF, or -errno. */
ssize_t mig_recv_with_fds(int sock, void *buf, size_t len, int *fds, int *nfds);

/* Name the calling thread (at most 15 bytes are kept), for ps -L and top -H. */
void mig_thread_name(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Mark the calling thread as bulk work (SCHED_BATCH, 5 nicer than the
 * engine): on a busy host the latency-critical threads (faults, requests)
 * then win every wakeup instead of waiting a time slice behind the pumps. */
void mig_thread_bulk(void);
/* Mark the calling thread as latency-critical (faults, requests, the
 * preempt channel): 10 less nice than the engine where allowed, and the
 * shortest time slice, so that its wakeups preempt the bulk threads. */
void mig_thread_urgent(void);
/* Thread tid of this process (0: the caller) as urgent or as bulk work,
 * for an engine of niceness nice: a bulk thread made urgent for a while. */
void mig_thread_class(pid_t tid, bool urgent, int nice);
/* The calling thread's niceness (a new thread's is its creator's). */
int mig_thread_nice(void);

/* The peer of an accepted UNIX socket may use our sockets: it runs as
 * our effective uid or as root. 0, or -EACCES with *uid and *pid the
 * peer's (-errno from SO_PEERCRED, *uid then (uid_t)-1). The sockets are
 * 0600 in a 0700 directory as well: this holds when a mode is loosened or
 * a directory is shared. */
int mig_peer_check(int fd, uid_t *uid, pid_t *pid);

/* At most one log line per interval for a condition that may repeat at
 * the rate of a loop (EMFILE on accept, refused peers): */
struct mig_ratelimit {
	uint64_t next_ns;    /* no line before */
	unsigned suppressed; /* lines not logged since the last one */
};

/* true when a line may be logged now; *suppressed then says how many
 * were not since the last one, and the count starts again. */
bool mig_ratelimit_ok(struct mig_ratelimit *rl, unsigned interval_ms,
		      unsigned *suppressed);

/* Human-readable bytes ("1.5 GiB") into buf. */
const char *mig_fmt_bytes(uint64_t bytes, char *buf, size_t len);

/* The one way to claim a path for a UNIX socket we are about to bind.
 * Removes only a stale socket (one nobody accepts on); anything else is
 * left alone: 0 the path is free, -EADDRINUSE a live socket, -EEXIST
 * something that is not a socket (a file, a directory, a symlink),
 * -ENAMETOOLONG, or another -errno from lstat. Logs a replaced one. */
int mig_sock_claim(const char *path);

/* What we bound at a path, so that we remove only our own socket: a later
 * process may have replaced it (a restarted engine claims a stale one). */
struct mig_sock_owner {
	bool bound;
	dev_t dev;
	ino_t ino;
};

/* Call right after bind(). */
void mig_sock_own(const char *path, struct mig_sock_owner *o);
/* Unlink path if it is still the socket we bound. */
void mig_sock_release(const char *path, struct mig_sock_owner *o);

#endif
