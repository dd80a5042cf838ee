// SPDX-License-Identifier: MIT
/*
 * The status bus: see bus.h. The server is one thread polling the listening
 * socket, every client and an eventfd that mig_bus_emit() kicks. Everything a
 * client sees (replies, the event history, live events) is produced on that
 * thread, which is what makes x-query-events exact. One client's connection
 * is session.c, the history history.c, the QMP client qmp.c.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bus/bus-int.h"
#include "base/log.h"
#include "base/util.h"

#define MOD "bus"

/* Connections served at once; more are refused so fds stay bounded. */
#define MIG_BUS_MAX_CLIENTS 256u
/* Beyond that, slots only root's connections may take: the administrator's
 * mig-status and mig-pause get in when the engine's own user holds every
 * other one. (Under a root engine every peer is root: it is only more.) */
#define MIG_BUS_ADMIN_CLIENTS 4u
/* What every client's queued output may add up to: a few hundred stuck
 * clients must not grow the engine by their limit each. */
#define MIG_BUS_TOTAL_OUT_BYTES (8u << 20)
/* How long mig_bus_close() waits for slow clients to take their last events. */
#define MIG_BUS_CLOSE_FLUSH_MS 1000
/* Pause before accepting again after EMFILE, so poll() does not spin. */
#define MIG_BUS_ACCEPT_BACKOFF_MS 100
/* At most one line per this long about what may repeat each round. */
#define MIG_BUS_LOG_INTERVAL_MS 10000u

struct qevent {
	struct qevent *next;
	struct mig_json *ev;
};

/* ---- clients and events ---- */

static int client_add(struct mig_bus *b, int fd, uid_t uid)
{
	struct client **v = realloc(b->clients, (b->nclients + 1) * sizeof(*v));
	struct client *c;

	if (!v)
		return -ENOMEM;
	b->clients = v;
	c = bus_client_new(fd, uid, &b->out_total);
	if (!c)
		return -ENOMEM;
	b->clients[b->nclients++] = c;
	mig_dbg(MOD, "client fd %d (uid %u) connected (%zu now)", fd,
		(unsigned)uid, b->nclients);
	return 0;
}

static void reap_clients(struct mig_bus *b);

/* The oldest connection that has not negotiated yet, dropped to make room:
 * a tool negotiates at once, so what waits longest is the likeliest to
 * never. false if every client has negotiated. */
static bool evict_idle(struct mig_bus *b)
{
	struct client *old = NULL;

	for (size_t i = 0; i < b->nclients; i++) {
		struct client *c = b->clients[i];

		if (!c->negotiated && !c->dead &&
		    (!old || c->negotiate_by_ns < old->negotiate_by_ns))
			old = c;
	}
	if (!old)
		return false;
	bus_client_kill(old);
	reap_clients(b);
	return true;
}

/* Room for one more client of uid: 0, or -EBUSY to refuse it. */
static int make_room(struct mig_bus *b, uid_t uid)
{
	if (b->nclients >= MIG_BUS_MAX_CLIENTS)
		reap_clients(b); /* the dead do not count */
	if (b->nclients < MIG_BUS_MAX_CLIENTS)
		return 0;
	if (uid == 0 && b->nclients < MIG_BUS_MAX_CLIENTS + MIG_BUS_ADMIN_CLIENTS)
		return 0;
	return evict_idle(b) ? 0 : -EBUSY;
}

/* Log a refusal, rate-limited: a loop of connects must not flood the log. */
static void refused(struct mig_bus *b, const char *what)
{
	unsigned more;

	if (!mig_ratelimit_ok(&b->refuse_rl, MIG_BUS_LOG_INTERVAL_MS, &more))
		return;
	if (more)
		mig_warn(MOD, "%s (and %u more not logged)", what, more);
	else
		mig_warn(MOD, "%s", what);
}

static void accept_failed(struct mig_bus *b)
{
	int err = errno;
	unsigned more;

	if (err != EMFILE && err != ENFILE && err != ENOMEM)
		return; /* EAGAIN: all taken; others: the client's loss */
	b->accept_after_ns = mig_deadline_ns(MIG_BUS_ACCEPT_BACKOFF_MS);
	if (mig_ratelimit_ok(&b->emfile_rl, MIG_BUS_LOG_INTERVAL_MS, &more))
		mig_warn(MOD, "accept: %s: pausing %d ms (%u such not logged)",
			 strerror(err), MIG_BUS_ACCEPT_BACKOFF_MS, more);
}

static void accept_clients(struct mig_bus *b)
{
	for (;;) {
		int fd = accept4(b->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		char what[128];
		uid_t uid;
		pid_t pid;

		if (fd < 0) {
			accept_failed(b);
			return;
		}
		if (mig_peer_check(fd, &uid, &pid) < 0) {
			snprintf(what, sizeof(what), "refusing a client of uid %d "
				 "(pid %d): only uid %u and root may connect",
				 (int)uid, (int)pid, (unsigned)geteuid());
			refused(b, what);
			close(fd);
			continue;
		}
		if (make_room(b, uid) < 0) {
			snprintf(what, sizeof(what), "%u clients already: refusing "
				 "one (pid %d)", MIG_BUS_MAX_CLIENTS, (int)pid);
			refused(b, what);
			close(fd);
			continue;
		}
		if (client_add(b, fd, uid) < 0)
			close(fd);
	}
}

/* Who did not negotiate in time goes, and its slot with it. */
static void expire_idle(struct mig_bus *b)
{
	uint64_t now = mig_now_ns();
	unsigned n = 0, more;

	for (size_t i = 0; i < b->nclients; i++) {
		struct client *c = b->clients[i];

		if (!c->negotiated && !c->dead && now >= c->negotiate_by_ns) {
			bus_client_kill(c);
			n++;
		}
	}
	if (n && mig_ratelimit_ok(&b->idle_rl, MIG_BUS_LOG_INTERVAL_MS, &more))
		mig_warn(MOD, "%u client(s) sent no qmp_capabilities within %d ms: "
			 "disconnected (%u such before not logged)", n,
			 MIG_BUS_NEGOTIATE_MS, more);
}

/* Over the total: the clients furthest behind go first, until the rest
 * fits. */
static void bound_output(struct mig_bus *b)
{
	unsigned more;

	/* a dead client holds no output: the total is the live clients' */
	while (b->out_total > MIG_BUS_TOTAL_OUT_BYTES) {
		struct client *far = NULL;

		for (size_t i = 0; i < b->nclients; i++) {
			struct client *c = b->clients[i];

			if (!c->dead && (!far || bus_client_backlog(c) >
					 bus_client_backlog(far)))
				far = c;
		}
		if (mig_ratelimit_ok(&b->output_rl, MIG_BUS_LOG_INTERVAL_MS, &more))
			mig_warn(MOD, "clients hold %u MiB of output: disconnecting "
				 "fd %d, %zu KiB behind (%u such not logged)",
				 MIG_BUS_TOTAL_OUT_BYTES >> 20, far->fd,
				 bus_client_backlog(far) >> 10, more);
		bus_client_kill(far);
	}
}

static void reap_clients(struct mig_bus *b)
{
	size_t k = 0;

	for (size_t i = 0; i < b->nclients; i++) {
		struct client *c = b->clients[i];

		if (c->closing && c->out_off == c->out_len)
			bus_client_kill(c);
		if (c->dead) {
			mig_dbg(MOD, "client fd %d gone", c->fd);
			bus_client_free(c);
		} else {
			b->clients[k++] = c;
		}
	}
	b->nclients = k;
}

/* Log, then broadcast: both here, so x-query-events is exact. */
static void deliver_events(struct mig_bus *b)
{
	struct qevent *q;

	pthread_mutex_lock(&b->lock);
	q = b->qhead;
	b->qhead = NULL;
	b->qtail = &b->qhead;
	pthread_mutex_unlock(&b->lock);
	while (q) {
		struct qevent *next = q->next;
		char *text = mig_json_print(q->ev, false);

		for (size_t i = 0; text && i < b->nclients; i++) {
			struct client *c = b->clients[i];

			if (c->negotiated && !c->closing)
				bus_client_write(c, text);
		}
		bound_output(b);
		mig_json_free(q->ev);
		if (text)
			bus_history_push(&b->hist, text);
		free(q);
		q = next;
	}
}

/* ---- the thread ---- */

/* The poll set; *timeout until accepting is no longer backed off or the
 * first client not negotiated yet is due, -1 if neither. */
static size_t build_pollfds(struct mig_bus *b, int *timeout)
{
	int left = mig_deadline_left_ms(b->accept_after_ns);
	bool backoff = left > 0;
	uint64_t due = MIG_DEADLINE_NONE;

	for (size_t i = 0; i < b->nclients; i++)
		due = MIG_MIN(due, b->clients[i]->negotiate_by_ns);
	*timeout = mig_deadline_left_ms(due);
	if (backoff && (*timeout < 0 || left < *timeout))
		*timeout = left;
	b->pfds[0] = (struct pollfd){ .fd = b->efd, .events = POLLIN };
	b->pfds[1] = (struct pollfd){ .fd = backoff ? -1 : b->lfd,
				      .events = POLLIN };
	for (size_t i = 0; i < b->nclients; i++) {
		struct client *c = b->clients[i];
		short ev = c->closing ? 0 : POLLIN;

		if (c->out_off < c->out_len)
			ev |= POLLOUT;
		b->pfds[2 + i] = (struct pollfd){ .fd = c->fd, .events = ev };
	}
	return 2 + b->nclients;
}

static void serve_client(struct mig_bus *b, struct client *c, short rev)
{
	if (rev & POLLERR) {
		bus_client_kill(c);
		return;
	}
	if ((rev & (POLLIN | POLLHUP)) && !c->closing)
		bus_client_read(b, c);
	else if (rev & POLLHUP)
		bus_client_kill(c); /* closing, and nobody left to read the rest */
	if (rev & POLLOUT)
		bus_client_flush(c);
}

static void drain_eventfd(int efd)
{
	uint64_t v;

	if (read(efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: another round already took the count */
	}
}

/* One round of the loop; false once asked to stop. */
static bool bus_round(struct mig_bus *b)
{
	int timeout, r;
	size_t n = build_pollfds(b, &timeout);
	bool stop;

	r = poll(b->pfds, n, timeout);
	if (r < 0 && errno != EINTR) {
		mig_err(MOD, "poll: %s", strerror(errno));
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	}
	if (r > 0 && b->pfds[0].revents)
		drain_eventfd(b->efd);
	pthread_mutex_lock(&b->lock);
	stop = b->stop;
	pthread_mutex_unlock(&b->lock);
	for (size_t i = 0; r > 0 && i + 2 < n; i++) {
		if (b->pfds[2 + i].revents)
			serve_client(b, b->clients[i], b->pfds[2 + i].revents);
		bound_output(b); /* after each: its replies may be the excess */
	}
	expire_idle(b);
	deliver_events(b);
	if (r > 0 && (b->pfds[1].revents & POLLIN) && !stop)
		accept_clients(b);
	reap_clients(b);
	return !stop;
}

/* At close: give every client up to MIG_BUS_CLOSE_FLUSH_MS to take what is
 * queued for it. */
static void flush_all(struct mig_bus *b)
{
	uint64_t end = mig_deadline_ns(MIG_BUS_CLOSE_FLUSH_MS);

	for (;;) {
		size_t n = 0;
		int left = mig_deadline_left_ms(end);

		for (size_t i = 0; i < b->nclients; i++) {
			struct client *c = b->clients[i];

			if (!c->dead && c->out_off < c->out_len)
				b->pfds[n++] = (struct pollfd){ .fd = c->fd,
								.events = POLLOUT };
		}
		if (n == 0 || left == 0)
			return;
		if (poll(b->pfds, n, left) < 0 && errno != EINTR)
			return;
		for (size_t i = 0; i < b->nclients; i++)
			bus_client_flush(b->clients[i]);
	}
}

static void *bus_thread(void *arg)
{
	struct mig_bus *b = arg;

	while (bus_round(b))
		;
	deliver_events(b);
	flush_all(b);
	for (size_t i = 0; i < b->nclients; i++)
		bus_client_free(b->clients[i]);
	b->nclients = 0;
	return NULL;
}

/* ---- open / emit / close ---- */

int bus_unix_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

static int listen_unix(const char *path, struct mig_sock_owner *own)
{
	struct sockaddr_un sa;
	int fd, r;

	r = bus_unix_addr(path, &sa);
	if (r < 0)
		return r;
	r = mig_sock_claim(path);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* bind() honours the umask; chmod before listen() so nobody else can
	 * connect in between (the runtime dir is 0700 as well) */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		goto out;
	}
	mig_sock_own(path, own);
	if (chmod(path, 0600) < 0 || listen(fd, 64) < 0) {
		r = -errno;
		mig_sock_release(path, own);
		goto out;
	}
	return fd;
out:
	close(fd);
	return r;
}

static void bus_free(struct mig_bus *b)
{
	struct qevent *q = b->qhead;

	while (q) {
		struct qevent *next = q->next;

		mig_json_free(q->ev);
		free(q);
		q = next;
	}
	bus_history_free(&b->hist);
	bus_qapi_free(b->qapi);
	if (b->efd >= 0)
		close(b->efd);
	if (b->lfd >= 0)
		close(b->lfd);
	pthread_mutex_destroy(&b->lock);
	free(b->clients);
	free(b->pfds);
	free(b);
}

/* The bus thread takes no signals: they belong to the engine's main
 * thread, which may rely on signalfd/sigwait (where a signal unblocked in
 * any thread would take its default action). */
static int start_thread(struct mig_bus *b)
{
	sigset_t all, old;
	int r;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&b->thread, NULL, bus_thread, b);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

struct mig_bus *mig_bus_open(const char *path, const char *schema,
			     mig_bus_cmd_fn fn, void *ctx)
{
	struct mig_bus *b = calloc(1, sizeof(*b));
	int r;

	if (!b)
		return NULL;
	b->lfd = b->efd = -1;
	if (schema && !(b->qapi = bus_qapi_new(schema))) {
		free(b);
		return NULL;
	}
	b->fn = fn;
	b->ctx = ctx;
	b->qtail = &b->qhead;
	pthread_mutex_init(&b->lock, NULL);
	snprintf(b->path, sizeof(b->path), "%s", path);
	b->pfds = calloc(MIG_BUS_MAX_CLIENTS + MIG_BUS_ADMIN_CLIENTS + 2,
			 sizeof(*b->pfds));
	b->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!b->pfds || b->efd < 0) {
		r = -errno;
		goto out;
	}
	b->lfd = listen_unix(path, &b->own);
	if (b->lfd < 0) {
		r = b->lfd;
		goto out;
	}
	r = start_thread(b);
	if (r < 0) {
		mig_sock_release(path, &b->own);
		goto out;
	}
	pthread_setname_np(b->thread, "mig-bus");
	mig_dbg(MOD, "listening on %s", path);
	return b;
out:
	bus_free(b);
	errno = -r;
	return NULL;
}

static void wake(struct mig_bus *b)
{
	uint64_t one = 1;

	if (write(b->efd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is already non-zero, the thread will run */
	}
}

void mig_bus_emit(struct mig_bus *bus, const char *event, struct mig_json *data)
{
	uint64_t now = mig_wall_us();
	struct qevent *q = calloc(1, sizeof(*q));
	struct mig_json *ts = mig_json_new_object();

	if (!bus || !q) {
		mig_json_free(data);
		mig_json_free(ts);
		free(q);
		return;
	}
	q->ev = mig_json_new_object();
	mig_json_add_str(q->ev, "event", event);
	mig_json_add(q->ev, "data", data ? data : mig_json_new_object());
	mig_json_add_int(ts, "seconds", (int64_t)(now / 1000000));
	mig_json_add_int(ts, "microseconds", (int64_t)(now % 1000000));
	mig_json_add(q->ev, "timestamp", ts);
	pthread_mutex_lock(&bus->lock);
	*bus->qtail = q;
	bus->qtail = &q->next;
	pthread_mutex_unlock(&bus->lock);
	wake(bus);
}

void mig_bus_close(struct mig_bus *bus)
{
	if (!bus)
		return;
	/* stop flag, wake, join: the thread delivers what is queued and
	 * flushes clients itself; then the socket goes */
	pthread_mutex_lock(&bus->lock);
	bus->stop = true;
	pthread_mutex_unlock(&bus->lock);
	wake(bus);
	pthread_join(bus->thread, NULL);
	mig_sock_release(bus->path, &bus->own);
	bus_free(bus);
}
