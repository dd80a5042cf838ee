// SPDX-License-Identifier: MIT
/*
 * One client's connection to the bus (see bus-int.h): the greeting, the
 * capabilities negotiation, commands framed out of the byte stream and
 * dispatched, replies and events queued on a bounded output buffer. The
 * socket is non-blocking, so a stuck client costs memory up to a limit and
 * then its connection, never the bus thread's time. Bus thread only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bus/bus-int.h"
#include "base/log.h"

#define MOD "bus"

/* Output buffer kept once drained: what a reply or a burst of events takes. */
#define MIG_BUS_CLIENT_KEEP_BYTES (64u << 10)

/* ---- output ---- */

void bus_client_kill(struct client *c)
{
	c->dead = true;
	*c->out_total -= bus_client_backlog(c);
	free(c->out);
	c->out = NULL;
	c->out_off = c->out_len = c->out_cap = 0;
}

void bus_client_flush(struct client *c)
{
	while (!c->dead && c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0) {
			bus_client_kill(c);
			return;
		}
		c->out_off += n;
		*c->out_total -= n;
	}
	c->out_off = c->out_len = 0;
	/* a long reply's buffer is not kept for the next short one */
	if (c->out_cap > MIG_BUS_CLIENT_KEEP_BYTES) {
		free(c->out);
		c->out = NULL;
		c->out_cap = 0;
	}
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
void bus_client_write(struct client *c, const char *text)
{
	size_t len = strlen(text);

	if (c->dead)
		return;
	/* the backlog before this message counts, so one reply larger than
	 * the limit (a long history) still goes out. Disconnecting, rather
	 * than dropping its events: a client that missed one could not know. */
	if (bus_client_backlog(c) > MIG_BUS_CLIENT_OUT_BYTES) {
		mig_warn(MOD, "client fd %d fell %u MiB behind: disconnecting",
			 c->fd, MIG_BUS_CLIENT_OUT_BYTES >> 20);
		bus_client_kill(c);
		return;
	}
	if (client_reserve(c, len + 2) < 0) {
		mig_warn(MOD, "client fd %d: out of memory: disconnecting", c->fd);
		bus_client_kill(c);
		return;
	}
	memcpy(c->out + c->out_len, text, len);
	memcpy(c->out + c->out_len + len, "\r\n", 2);
	c->out_len += len + 2;
	*c->out_total += len + 2;
	bus_client_flush(c);
}

static void client_write_json(struct client *c, const struct mig_json *j)
{
	char *text = j ? mig_json_print(j, false) : NULL;

	if (!text) {
		mig_warn(MOD, "client fd %d: cannot format a reply", c->fd);
		bus_client_kill(c);
		return;
	}
	bus_client_write(c, text);
	free(text);
}

/* ---- commands ---- */

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
	if (r == -ENOENT && !desc[0]) {
		snprintf(desc, sizeof(desc), "The command %s has not been found",
			 cmd);
		return reply_err("CommandNotFound", desc);
	}
	if (!desc[0])
		snprintf(desc, sizeof(desc), "%s", strerror(-r));
	return reply_err("GenericError", desc);
}

/* QMP's own members of a request; anything else is refused, as QEMU does. */
static const char *request_problem(const struct mig_json *req)
{
	static char desc[96];

	for (size_t i = 0; i < mig_json_members_len(req); i++) {
		const char *k = mig_json_key(mig_json_member_at(req, i));

		if (strcmp(k, "execute") && strcmp(k, "arguments") &&
		    strcmp(k, "id")) {
			snprintf(desc, sizeof(desc),
				 "QMP input member '%.40s' is unexpected", k);
			return desc;
		}
	}
	if (!mig_json_get_str(req, "execute"))
		return mig_json_get(req, "execute") ?
		       "QMP input member 'execute' must be a string" :
		       "QMP input lacks member 'execute'";
	if (mig_json_get(req, "arguments") &&
	    !mig_json_is_object(mig_json_get(req, "arguments")))
		return "QMP input member 'arguments' must be an object";
	return NULL;
}

/* Only the capabilities the greeting offers may be enabled: none. */
static struct mig_json *negotiate(struct client *c, const struct mig_json *args)
{
	const struct mig_json *en = mig_json_get(args, "enable");
	char desc[96];

	if (mig_json_array_len(en)) {
		snprintf(desc, sizeof(desc), "Capability %.40s not available",
			 mig_json_str_value(mig_json_array_at(en, 0)));
		return reply_err("GenericError", desc);
	}
	c->negotiated = true;
	c->negotiate_by_ns = MIG_DEADLINE_NONE;
	return reply_ok(NULL);
}

/* What the bus answers itself: QMP's own commands and the history. */
static struct mig_json *builtin(struct mig_bus *b, const char *cmd)
{
	if (!strcmp(cmd, "x-query-events"))
		return reply_ok(bus_history_array(&b->hist));
	if (!b->qapi)
		return NULL;
	if (!strcmp(cmd, "query-qmp-schema"))
		return reply_ok(mig_json_dup(bus_qapi_schema(b->qapi)));
	if (!strcmp(cmd, "query-commands"))
		return reply_ok(bus_qapi_commands(b->qapi));
	if (!strcmp(cmd, "query-version"))
		return reply_ok(bus_version());
	return NULL;
}

static struct mig_json *dispatch(struct mig_bus *b, struct client *c,
				 const struct mig_json *req)
{
	const struct mig_json *args = mig_json_get(req, "arguments");
	const char *cmd = mig_json_get_str(req, "execute");
	const char *bad;
	struct mig_json *reply;
	char desc[256];
	int r;

	if (!mig_json_is_object(req))
		return reply_err("GenericError", "QMP input must be a JSON object");
	if ((bad = request_problem(req)))
		return reply_err("GenericError", bad);
	if (!c->negotiated && strcmp(cmd, "qmp_capabilities"))
		return reply_err("CommandNotFound",
				 "Expecting capabilities negotiation with 'qmp_capabilities'");
	if (c->negotiated && !strcmp(cmd, "qmp_capabilities"))
		return reply_err("CommandNotFound",
				 "Capabilities negotiation is already complete, command ignored");
	r = b->qapi ? bus_qapi_check_args(b->qapi, cmd, args, desc, sizeof(desc)) : 0;
	if (r == -ENOENT) {
		snprintf(desc, sizeof(desc), "The command %.200s has not been found",
			 cmd);
		return reply_err("CommandNotFound", desc);
	}
	if (r < 0)
		return reply_err("GenericError", desc);
	if (!strcmp(cmd, "qmp_capabilities"))
		return negotiate(c, args);
	if ((reply = builtin(b, cmd)))
		return reply;
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

void bus_client_read(struct mig_bus *b, struct client *c)
{
	ssize_t n;

	if (c->in_cap - c->in_len < MIG_BUS_READ_BYTES) {
		size_t cap = c->in_len + MIG_BUS_READ_BYTES;
		char *p = realloc(c->in, cap);

		if (!p) {
			bus_client_kill(c);
			return;
		}
		c->in = p;
		c->in_cap = cap;
	}
	n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n < 0) {
		bus_client_kill(c);
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

void bus_client_free(struct client *c)
{
	if (!c)
		return;
	*c->out_total -= bus_client_backlog(c);
	close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}

/* mig's own version in QEMU's shape: a manager must not take it for a
 * QEMU release, and should detect what mig does through query-commands
 * and query-qmp-schema (see mig-protocol(7)). */
struct mig_json *bus_version(void)
{
	struct mig_json *v = mig_json_new_object(), *t = mig_json_new_object();
	unsigned major = 0, minor = 0, micro = 0;

	sscanf(MIG_VERSION, "%u.%u.%u", &major, &minor, &micro);
	mig_json_add_int(t, "major", major);
	mig_json_add_int(t, "minor", minor);
	mig_json_add_int(t, "micro", micro);
	mig_json_add(v, "qemu", t);
	mig_json_add_str(v, "package", "mig " MIG_VERSION);
	return v;
}

static void greet(struct client *c)
{
	struct mig_json *g = mig_json_new_object(), *q = mig_json_new_object();

	mig_json_add(q, "version", bus_version());
	mig_json_add(q, "capabilities", mig_json_new_array());
	mig_json_add(g, "QMP", q);
	client_write_json(c, g);
	mig_json_free(g);
}

struct client *bus_client_new(int fd, uid_t uid, size_t *out_total)
{
	struct client *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = fd;
	c->uid = uid;
	c->out_total = out_total;
	c->negotiate_by_ns = mig_deadline_ns(MIG_BUS_NEGOTIATE_MS);
	greet(c);
	return c;
}
