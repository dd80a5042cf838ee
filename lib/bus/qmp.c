// SPDX-License-Identifier: MIT
/*
 * The QMP client the small programs use (see bus.h): a blocking-style
 * client on a non-blocking socket, whose every wait is a poll() with a
 * deadline. Events that arrive while it waits for a reply are queued for
 * mig_qmp_next_event().
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bus/bus-int.h"
#include "base/util.h"

/* Largest message the client accepts: the history reply can be big. */
#define MIG_QMP_MAX_MSG_BYTES (16u << 20)

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

static int qmp_fill(struct mig_qmp *q, uint64_t deadline)
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
	r = mig_poll_until(q->fd, POLLIN, deadline);
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
static int qmp_read(struct mig_qmp *q, uint64_t deadline, struct mig_json **msg)
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

static int qmp_write(struct mig_qmp *q, const char *text, uint64_t deadline)
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
		r = mig_poll_until(q->fd, POLLOUT, deadline);
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
static int qmp_sock(const char *path, uint64_t deadline)
{
	struct sockaddr_un sa;
	int fd, r;

	r = bus_unix_addr(path, &sa);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		if (r != -EAGAIN && r != -EINTR)
			goto out;
		if (mig_deadline_left_ms(deadline) == 0) {
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

static int qmp_greeting(struct mig_qmp *q, uint64_t deadline)
{
	struct mig_json *msg = NULL;
	int r = qmp_read(q, deadline, &msg);

	if (r == 0 && !mig_json_is_object(mig_json_get(msg, "QMP")))
		r = -EPROTO;
	mig_json_free(msg);
	return r;
}

struct mig_qmp *bus_qmp_open_fd(int fd, uint64_t deadline)
{
	struct mig_qmp *q = calloc(1, sizeof(*q));
	int r;

	if (!q) {
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	q->tail = &q->head;
	q->fd = fd;
	r = qmp_greeting(q, deadline);
	if (r == 0)
		r = mig_qmp_execute(q, "qmp_capabilities", NULL, NULL, NULL, 0,
				    mig_deadline_left_ms(deadline));
	if (r == -EREMOTEIO || r == -EMSGSIZE)
		r = -EPROTO;
	if (r == 0)
		return q;
	mig_qmp_close(q);
	errno = -r;
	return NULL;
}

struct mig_qmp *mig_qmp_connect(const char *path, int timeout_ms)
{
	uint64_t deadline = mig_deadline_ns(timeout_ms);
	int fd = qmp_sock(path, deadline);

	if (fd < 0) {
		errno = -fd;
		return NULL;
	}
	return bus_qmp_open_fd(fd, deadline);
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
			struct mig_json *args, int64_t id, uint64_t deadline)
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
	uint64_t deadline = mig_deadline_ns(timeout_ms);
	int64_t id = ++q->next_id, got;
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
	uint64_t deadline = mig_deadline_ns(timeout_ms);
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
