// SPDX-License-Identifier: MIT
/*
 * The status bus: see bus.h. The server is one thread polling the listening
 * socket, every client and an eventfd that mig_bus_emit() kicks. Everything a
 * client sees (replies, the event history, live events) is produced on that
 * thread, which is what makes x-query-events exact. Client sockets are
 * non-blocking with a bounded output buffer each, so a stuck client costs
 * memory up to a limit and then its connection, never the bus's time.
 *
 * The client half (struct mig_qmp) is a small blocking-style QMP client
 * whose every wait is a poll() with a deadline.
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

#include "bus/bus.h"
#include "bus/jsonstream.h"
#include "base/log.h"
#include "base/util.h"

#define MOD "bus"

/* Output a client may fall behind by before it is dropped: thousands of
 * events, yet a stuck client cannot grow the engine without bound. */
#define MIG_BUS_CLIENT_OUT_BYTES (4u << 20)
/* Connections served at once; more are refused so fds stay bounded. */
#define MIG_BUS_MAX_CLIENTS 256u
/* How long mig_bus_close() waits for slow clients to take their last events. */
#define MIG_BUS_CLOSE_FLUSH_MS 1000
/* Bytes read per recv(): a typical command fits in one. */
#define MIG_BUS_READ_BYTES 4096u
/* Pause before accepting again after EMFILE, so poll() does not spin. */
#define MIG_BUS_ACCEPT_BACKOFF_MS 100
/* Largest message the client accepts: the history reply can be big. */
#define MIG_QMP_MAX_MSG_BYTES (16u << 20)

struct qevent {
	struct qevent *next;
	struct mig_json *ev;
};

/*
 * The event history x-query-events replays, bounded (see bus.h for why):
 * the first MIG_BUS_HISTORY_FIRST events in head[], then a ring of the
 * latest MIG_BUS_HISTORY_LAST. Each event is kept as the line its clients
 * were sent: one allocation of about 120 bytes, where its cJSON tree took
 * 15 allocations and about 800. Bus thread only.
 */
struct history {
	char *head[MIG_BUS_HISTORY_FIRST];
	size_t nhead;
	char *ring[MIG_BUS_HISTORY_LAST];
	size_t ring_first, ring_len;
	uint64_t dropped; /* events between head[] and ring[] given up */
};

struct client {
	int fd;
	bool negotiated;
	bool closing; /* no more reading: flush the output, then drop */
	bool dead;    /* drop at the end of this round */
	char *in;
	size_t in_len, in_cap;
	struct mig_jsonstream scan;
	char *out;
	size_t out_off, out_len, out_cap;
};

struct mig_bus {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct mig_sock_owner own; /* unlink only the socket we bound */
	int lfd, efd;
	pthread_t thread;
	mig_bus_cmd_fn fn;
	void *ctx;
	pthread_mutex_t lock; /* guards the queue and stop */
	struct qevent *qhead, **qtail;
	bool stop;
	/* bus thread only from here on */
	uint64_t accept_after_ns; /* EMFILE backoff: no accept() before */
	struct client **clients;
	size_t nclients;
	struct pollfd *pfds;
	struct history hist;
};

/* ---- server: output ---- */

static void client_flush(struct client *c)
{
	while (!c->dead && c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0) {
			c->dead = true;
			return;
		}
		c->out_off += n;
	}
	c->out_off = c->out_len = 0;
}

static int client_reserve(struct client *c, size_t len)
{
	size_t cap;
	char *p;

	if (c->out_off) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	if (c->out_len + len <= c->out_cap)
		return 0;
	cap = MIG_MAX(c->out_cap * 2, c->out_len + len);
	cap = MIG_MAX(cap, (size_t)MIG_BUS_READ_BYTES);
	p = realloc(c->out, cap);
	if (!p)
		return -ENOMEM;
	c->out = p;
	c->out_cap = cap;
	return 0;
}

/* Queue one message line ("\r\n"-terminated, as QEMU sends) and push what
 * the socket takes now. */
static void client_write(struct client *c, const char *text)
{
	size_t len = strlen(text);

	if (c->dead)
		return;
	/* the backlog before this message counts, so one reply larger than
	 * the limit (a long history) still goes out */
	if (c->out_len - c->out_off > MIG_BUS_CLIENT_OUT_BYTES) {
		mig_warn(MOD, "client fd %d fell %u MiB behind: disconnecting",
			 c->fd, MIG_BUS_CLIENT_OUT_BYTES >> 20);
		c->dead = true;
		return;
	}
	if (client_reserve(c, len + 2) < 0) {
		mig_warn(MOD, "client fd %d: out of memory: disconnecting", c->fd);
		c->dead = true;
		return;
	}
	memcpy(c->out + c->out_len, text, len);
	memcpy(c->out + c->out_len + len, "\r\n", 2);
	c->out_len += len + 2;
	client_flush(c);
}

static void client_write_json(struct client *c, const struct mig_json *j)
{
	char *text = j ? mig_json_print(j, false) : NULL;

	if (!text) {
		mig_warn(MOD, "client fd %d: cannot format a reply", c->fd);
		c->dead = true;
		return;
	}
	client_write(c, text);
	free(text);
}

/* ---- server: commands ---- */

static struct mig_json *reply_ok(struct mig_json *ret)
{
	struct mig_json *r = mig_json_new_object();

	mig_json_add(r, "return", ret ? ret : mig_json_new_object());
	return r;
}

static struct mig_json *reply_err(const char *cls, const char *desc)
{
	struct mig_json *r = mig_json_new_object();
	struct mig_json *e = mig_json_new_object();

	mig_json_add_str(e, "class", cls);
	mig_json_add_str(e, "desc", desc);
	mig_json_add(r, "error", e);
	return r;
}

/* Events are stored as text: parsed back only for the rare x-query-events. */
static void history_append_to(struct mig_json *arr, const char *text)
{
	struct mig_json *ev = mig_json_parse(text, strlen(text));

	if (ev)
		mig_json_append(arr, ev);
}

static struct mig_json *history_array(const struct mig_bus *b)
{
	const struct history *h = &b->hist;
	struct mig_json *arr = mig_json_new_array();

	for (size_t i = 0; i < h->nhead; i++)
		history_append_to(arr, h->head[i]);
	for (size_t i = 0; i < h->ring_len; i++)
		history_append_to(arr, h->ring[(h->ring_first + i) %
					       MIG_BUS_HISTORY_LAST]);
	return arr;
}

static struct mig_json *call_handler(struct mig_bus *b, const char *cmd,
				     const struct mig_json *args)
{
	struct mig_json *ret = NULL;
	char desc[256] = "";
	int r = b->fn ? b->fn(b->ctx, cmd, args, &ret, desc, sizeof(desc))
		      : -ENOENT;

	if (r >= 0)
		return reply_ok(ret);
	mig_json_free(ret);
	if (r == -ENOENT) {
		snprintf(desc, sizeof(desc), "The command %s has not been found",
			 cmd);
		return reply_err("CommandNotFound", desc);
	}
	if (!desc[0])
		snprintf(desc, sizeof(desc), "%s", strerror(-r));
	return reply_err("GenericError", desc);
}

static struct mig_json *dispatch(struct mig_bus *b, struct client *c,
				 const struct mig_json *req)
{
	const struct mig_json *args = mig_json_get(req, "arguments");
	const char *cmd = mig_json_get_str(req, "execute");

	if (!mig_json_is_object(req))
		return reply_err("GenericError", "QMP input must be a JSON object");
	if (!cmd)
		return reply_err("GenericError", "QMP input lacks member 'execute'");
	if (args && !mig_json_is_object(args))
		return reply_err("GenericError",
				 "QMP input member 'arguments' must be an object");
	if (!c->negotiated) {
		if (strcmp(cmd, "qmp_capabilities") != 0)
			return reply_err("CommandNotFound",
					 "Expecting capabilities negotiation with 'qmp_capabilities'");
		c->negotiated = true;
		return reply_ok(NULL);
	}
	if (strcmp(cmd, "qmp_capabilities") == 0)
		return reply_err("CommandNotFound",
				 "Capabilities negotiation is already complete, command ignored");
	if (strcmp(cmd, "x-query-events") == 0)
		return reply_ok(history_array(b));
	return call_handler(b, cmd, args);
}

static void handle_msg(struct mig_bus *b, struct client *c, const char *text,
		       size_t len)
{
	struct mig_json *req = mig_json_parse(text, len);
	struct mig_json *reply, *id;

	if (!req) {
		reply = reply_err("GenericError", "JSON parse error");
		client_write_json(c, reply);
		mig_json_free(reply);
		return;
	}
	reply = dispatch(b, c, req);
	id = mig_json_get(req, "id");
	if (id)
		mig_json_add(reply, "id", mig_json_dup(id));
	client_write_json(c, reply);
	mig_json_free(reply);
	mig_json_free(req);
}

/* A message over the limit: say so, then hang up once the reply is out. */
static void too_big(struct client *c)
{
	char desc[96];
	struct mig_json *reply;

	snprintf(desc, sizeof(desc), "message exceeds %u bytes",
		 MIG_BUS_MAX_MSG_BYTES);
	reply = reply_err("GenericError", desc);
	client_write_json(c, reply);
	mig_json_free(reply);
	mig_warn(MOD, "client fd %d: %s: disconnecting", c->fd, desc);
	c->closing = true;
}

static void client_process(struct mig_bus *b, struct client *c)
{
	size_t start = 0, end;

	while (!c->closing && !c->dead) {
		if (!mig_jsonstream_next(&c->scan, c->in, c->in_len, &start, &end))
			break;
		if (end - start > MIG_BUS_MAX_MSG_BYTES) {
			too_big(c);
			return;
		}
		handle_msg(b, c, c->in + start, end - start);
		memmove(c->in, c->in + end, c->in_len - end);
		c->in_len -= end;
		mig_jsonstream_reset(&c->scan);
	}
	if (c->closing || c->dead)
		return;
	if (start) { /* whitespace before the pending value */
		memmove(c->in, c->in + start, c->in_len - start);
		c->in_len -= start;
		mig_jsonstream_shift(&c->scan, start);
	}
	if (c->in_len > MIG_BUS_MAX_MSG_BYTES)
		too_big(c);
}

static void client_read(struct mig_bus *b, struct client *c)
{
	ssize_t n;

	if (c->in_cap - c->in_len < MIG_BUS_READ_BYTES) {
		size_t cap = c->in_len + MIG_BUS_READ_BYTES;
		char *p = realloc(c->in, cap);

		if (!p) {
			c->dead = true;
			return;
		}
		c->in = p;
		c->in_cap = cap;
	}
	n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n < 0) {
		c->dead = true;
		return;
	}
	if (n == 0) {
		/* the peer is done sending (maybe only half-closed, like
		 * `echo ... | socat`): its replies still go out */
		c->closing = true;
		return;
	}
	c->in_len += n;
	client_process(b, c);
}

/* ---- server: clients and events ---- */

static void client_free(struct client *c)
{
	if (!c)
		return;
	close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}

static const char greeting[] =
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 1, "
	"\"major\": 0}, \"package\": \"mig\"}, \"capabilities\": []}}";

static int client_add(struct mig_bus *b, int fd)
{
	struct client *c = calloc(1, sizeof(*c));
	struct client **v;

	if (!c)
		return -ENOMEM;
	v = realloc(b->clients, (b->nclients + 1) * sizeof(*v));
	if (!v) {
		free(c);
		return -ENOMEM;
	}
	b->clients = v;
	c->fd = fd;
	b->clients[b->nclients++] = c;
	client_write(c, greeting);
	mig_dbg(MOD, "client fd %d connected (%zu now)", fd, b->nclients);
	return 0;
}

static void accept_clients(struct mig_bus *b)
{
	for (;;) {
		int fd = accept4(b->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) {
				mig_warn(MOD, "accept: %s", strerror(errno));
				b->accept_after_ns = mig_now_ns() +
					MIG_BUS_ACCEPT_BACKOFF_MS * 1000000ull;
			}
			return; /* EAGAIN: all taken; others: the client's loss */
		}
		if (b->nclients >= MIG_BUS_MAX_CLIENTS) {
			mig_warn(MOD, "%u clients already: refusing one",
				 MIG_BUS_MAX_CLIENTS);
			close(fd);
			continue;
		}
		if (client_add(b, fd) < 0)
			close(fd);
	}
}

static void reap_clients(struct mig_bus *b)
{
	size_t k = 0;

	for (size_t i = 0; i < b->nclients; i++) {
		struct client *c = b->clients[i];

		if (c->closing && c->out_off == c->out_len)
			c->dead = true;
		if (c->dead) {
			mig_dbg(MOD, "client fd %d gone", c->fd);
			client_free(c);
		} else {
			b->clients[k++] = c;
		}
	}
	b->nclients = k;
}

/* Keep text (owned from here on): in head[] while it has room, else in the
 * ring, whose oldest event then goes. */
static void history_push(struct history *h, char *text)
{
	if (h->nhead < MIG_BUS_HISTORY_FIRST) {
		h->head[h->nhead++] = text;
		return;
	}
	if (h->ring_len == MIG_BUS_HISTORY_LAST) {
		if (!h->dropped++)
			mig_dbg(MOD, "event history full: from now on it keeps "
				"the first %u events and the latest %u",
				MIG_BUS_HISTORY_FIRST, MIG_BUS_HISTORY_LAST);
		free(h->ring[h->ring_first]);
		h->ring_first = (h->ring_first + 1) % MIG_BUS_HISTORY_LAST;
		h->ring_len--;
	}
	h->ring[(h->ring_first + h->ring_len) % MIG_BUS_HISTORY_LAST] = text;
	h->ring_len++;
}

static void history_free(struct history *h)
{
	for (size_t i = 0; i < h->nhead; i++)
		free(h->head[i]);
	for (size_t i = 0; i < h->ring_len; i++)
		free(h->ring[(h->ring_first + i) % MIG_BUS_HISTORY_LAST]);
	memset(h, 0, sizeof(*h));
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
				client_write(c, text);
		}
		mig_json_free(q->ev);
		if (text)
			history_push(&b->hist, text);
		free(q);
		q = next;
	}
}

/* ---- server: the thread ---- */

/* The poll set; *timeout is -1 unless accepting is backed off. */
static size_t build_pollfds(struct mig_bus *b, int *timeout)
{
	uint64_t now = mig_now_ns();
	bool backoff = now < b->accept_after_ns;

	*timeout = backoff ? (int)((b->accept_after_ns - now) / 1000000 + 1) : -1;
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
		c->dead = true;
		return;
	}
	if ((rev & (POLLIN | POLLHUP)) && !c->closing)
		client_read(b, c);
	else if (rev & POLLHUP)
		c->dead = true; /* closing, and nobody left to read the rest */
	if (rev & POLLOUT)
		client_flush(c);
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
	for (size_t i = 0; r > 0 && i + 2 < n; i++)
		if (b->pfds[2 + i].revents)
			serve_client(b, b->clients[i], b->pfds[2 + i].revents);
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
	uint64_t end = mig_now_ns() + MIG_BUS_CLOSE_FLUSH_MS * 1000000ull;

	for (;;) {
		size_t n = 0;
		uint64_t now = mig_now_ns();

		for (size_t i = 0; i < b->nclients; i++) {
			struct client *c = b->clients[i];

			if (!c->dead && c->out_off < c->out_len)
				b->pfds[n++] = (struct pollfd){ .fd = c->fd,
								.events = POLLOUT };
		}
		if (n == 0 || now >= end)
			return;
		if (poll(b->pfds, n, (int)((end - now) / 1000000 + 1)) < 0 &&
		    errno != EINTR)
			return;
		for (size_t i = 0; i < b->nclients; i++)
			client_flush(b->clients[i]);
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
		client_free(b->clients[i]);
	b->nclients = 0;
	return NULL;
}

/* ---- server: open / emit / close ---- */

static int unix_addr(const char *path, struct sockaddr_un *sa)
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

	r = unix_addr(path, &sa);
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
	history_free(&b->hist);
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

struct mig_bus *mig_bus_open(const char *path, mig_bus_cmd_fn fn, void *ctx)
{
	struct mig_bus *b = calloc(1, sizeof(*b));
	int r;

	if (!b)
		return NULL;
	b->lfd = b->efd = -1;
	b->fn = fn;
	b->ctx = ctx;
	b->qtail = &b->qhead;
	pthread_mutex_init(&b->lock, NULL);
	snprintf(b->path, sizeof(b->path), "%s", path);
	b->pfds = calloc(MIG_BUS_MAX_CLIENTS + 2, sizeof(*b->pfds));
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

/* ---- client ---- */

struct qmp_ev {
	struct qmp_ev *next;
	struct mig_json *ev;
};

struct mig_qmp {
	int fd;
	char *in;
	size_t in_len, in_cap;
	struct mig_jsonstream scan;
	struct qmp_ev *head, **tail;
	int64_t next_id;
};

/* Deadlines in monotonic ms; -1 means none. */
static int64_t deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : (int64_t)(mig_now_ns() / 1000000) + timeout_ms;
}

static int remaining_ms(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - (int64_t)(mig_now_ns() / 1000000);
	return left > 0 ? (int)MIG_MIN(left, INT32_MAX) : 0;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		int r = poll(&p, 1, remaining_ms(deadline));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		return 0;
	}
}

static int qmp_fill(struct mig_qmp *q, int64_t deadline)
{
	ssize_t n;
	int r;

	if (q->in_cap - q->in_len < MIG_BUS_READ_BYTES) {
		size_t cap = MIG_MAX(q->in_cap * 2, q->in_len + MIG_BUS_READ_BYTES);
		char *p = realloc(q->in, cap);

		if (!p)
			return -ENOMEM;
		q->in = p;
		q->in_cap = cap;
	}
	r = wait_fd(q->fd, POLLIN, deadline);
	if (r < 0)
		return r;
	n = recv(q->fd, q->in + q->in_len, q->in_cap - q->in_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (n < 0)
		return errno == EPIPE ? -ECONNRESET : -errno;
	if (n == 0)
		return -ECONNRESET;
	q->in_len += n;
	return 0;
}

/* The next whole message from the server. */
static int qmp_read(struct mig_qmp *q, int64_t deadline, struct mig_json **msg)
{
	size_t start, end;
	int r;

	for (;;) {
		if (mig_jsonstream_next(&q->scan, q->in, q->in_len, &start, &end)) {
			*msg = mig_json_parse(q->in + start, end - start);
			memmove(q->in, q->in + end, q->in_len - end);
			q->in_len -= end;
			mig_jsonstream_reset(&q->scan);
			return *msg ? 0 : -EPROTO;
		}
		if (start) { /* whitespace before the pending value */
			memmove(q->in, q->in + start, q->in_len - start);
			q->in_len -= start;
			mig_jsonstream_shift(&q->scan, start);
		}
		if (q->in_len > MIG_QMP_MAX_MSG_BYTES)
			return -EMSGSIZE;
		r = qmp_fill(q, deadline);
		if (r < 0)
			return r;
	}
}

static int qmp_write(struct mig_qmp *q, const char *text, int64_t deadline)
{
	size_t len = strlen(text), off = 0;

	while (off < len) {
		ssize_t n = send(q->fd, text + off, len - off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		int r;

		if (n >= 0) {
			off += n;
			continue;
		}
		if (errno == EPIPE || errno == ECONNRESET)
			return -ECONNRESET;
		if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		r = wait_fd(q->fd, POLLOUT, deadline);
		if (r < 0)
			return r;
	}
	return 0;
}

static void queue_event(struct mig_qmp *q, struct mig_json *ev)
{
	struct qmp_ev *e = calloc(1, sizeof(*e));

	if (!e) {
		mig_json_free(ev);
		return;
	}
	e->ev = ev;
	*q->tail = e;
	q->tail = &e->next;
}

static void drop_events(struct mig_qmp *q)
{
	while (q->head) {
		struct qmp_ev *e = q->head;

		q->head = e->next;
		mig_json_free(e->ev);
		free(e);
	}
	q->tail = &q->head;
}

/* A UNIX connect fails with EAGAIN, rather than waiting, when the server's
 * backlog is full: retry until the deadline. */
static int qmp_sock(const char *path, int64_t deadline)
{
	struct sockaddr_un sa;
	int fd, r;

	r = unix_addr(path, &sa);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		if (r != -EAGAIN && r != -EINTR)
			goto out;
		if (remaining_ms(deadline) == 0) {
			r = -ETIMEDOUT;
			goto out;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	}
	return fd;
out:
	close(fd);
	return r;
}

static int qmp_greeting(struct mig_qmp *q, int64_t deadline)
{
	struct mig_json *msg = NULL;
	int r = qmp_read(q, deadline, &msg);

	if (r == 0 && !mig_json_is_object(mig_json_get(msg, "QMP")))
		r = -EPROTO;
	mig_json_free(msg);
	return r;
}

struct mig_qmp *mig_qmp_connect(const char *path, int timeout_ms)
{
	struct mig_qmp *q = calloc(1, sizeof(*q));
	int64_t deadline = deadline_of(timeout_ms);
	int r;

	if (!q)
		return NULL;
	q->tail = &q->head;
	q->fd = qmp_sock(path, deadline);
	if (q->fd < 0) {
		r = q->fd;
		goto out;
	}
	r = qmp_greeting(q, deadline);
	if (r == 0)
		r = mig_qmp_execute(q, "qmp_capabilities", NULL, NULL, NULL, 0,
				    remaining_ms(deadline));
	if (r == -EREMOTEIO || r == -EMSGSIZE)
		r = -EPROTO;
	if (r == 0)
		return q;
out:
	mig_qmp_close(q);
	errno = -r;
	return NULL;
}

void mig_qmp_close(struct mig_qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	drop_events(q);
	free(q->in);
	free(q);
}

static int send_request(struct mig_qmp *q, const char *cmd,
			struct mig_json *args, int64_t id, int64_t deadline)
{
	struct mig_json *req = mig_json_new_object();
	char *text;
	int r;

	mig_json_add_str(req, "execute", cmd);
	if (args)
		mig_json_add(req, "arguments", args);
	mig_json_add_int(req, "id", id);
	text = mig_json_print(req, false);
	mig_json_free(req);
	if (!text)
		return -ENOMEM;
	r = qmp_write(q, text, deadline);
	free(text);
	return r;
}

/* Our reply: hand out "return", or copy the error's desc. */
static int take_reply(struct mig_json *msg, struct mig_json **ret,
		      char *errbuf, size_t errlen)
{
	struct mig_json *err = mig_json_get(msg, "error");
	struct mig_json *val;
	const char *desc;

	if (err) {
		desc = mig_json_get_str(err, "desc");
		if (errbuf && errlen)
			snprintf(errbuf, errlen, "%s", desc ? desc : "unknown error");
		return -EREMOTEIO;
	}
	val = mig_json_detach(msg, "return");
	if (!val)
		return -EPROTO;
	if (ret)
		*ret = val;
	else
		mig_json_free(val);
	return 0;
}

int mig_qmp_execute(struct mig_qmp *q, const char *cmd, struct mig_json *args,
		    struct mig_json **ret, char *errbuf, size_t errlen,
		    int timeout_ms)
{
	int64_t deadline = deadline_of(timeout_ms), id = ++q->next_id, got;
	struct mig_json *msg = NULL;
	int r;

	if (ret)
		*ret = NULL;
	r = send_request(q, cmd, args, id, deadline);
	while (r == 0) {
		r = qmp_read(q, deadline, &msg);
		if (r < 0)
			break;
		if (mig_json_get_str(msg, "event")) {
			queue_event(q, msg);
			continue;
		}
		if (mig_json_get_int(msg, "id", &got) && got == id) {
			r = take_reply(msg, ret, errbuf, errlen);
			mig_json_free(msg);
			return r;
		}
		mig_json_free(msg); /* a stray reply: not ours */
	}
	return r;
}

int mig_qmp_next_event(struct mig_qmp *q, struct mig_json **ev, int timeout_ms)
{
	int64_t deadline = deadline_of(timeout_ms);
	struct mig_json *msg;
	int r;

	if (q->head) {
		struct qmp_ev *e = q->head;

		q->head = e->next;
		if (!q->head)
			q->tail = &q->head;
		*ev = e->ev;
		free(e);
		return 0;
	}
	for (;;) {
		r = qmp_read(q, deadline, &msg);
		if (r < 0)
			return r;
		if (mig_json_get_str(msg, "event")) {
			*ev = msg;
			return 0;
		}
		mig_json_free(msg);
	}
}

int mig_qmp_fd(const struct mig_qmp *q)
{
	return q->fd;
}

int mig_qmp_query_events(struct mig_qmp *q, struct mig_json **events,
			 int timeout_ms)
{
	int r = mig_qmp_execute(q, "x-query-events", NULL, events, NULL, 0,
				timeout_ms);

	if (r < 0)
		return r;
	if (!mig_json_is_array(*events)) {
		mig_json_free(*events);
		*events = NULL;
		return -EPROTO;
	}
	/* everything delivered before the reply is in it */
	drop_events(q);
	return 0;
}
