/* SPDX-License-Identifier: MIT */
/*
 * The bus's internals, shared by its files and no one else: bus.c (the
 * server thread: accept, poll, events, open/close), session.c (one
 * client's connection: framing, greeting, capabilities, dispatch),
 * history.c (the bounded event history) and qmp.c (the QMP client).
 */
#ifndef MIG_BUS_INT_H
#define MIG_BUS_INT_H

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

#include "bus/bus.h"
#include "bus/jsonstream.h"
#include "base/util.h"

/* Bytes read per recv(), by the server and the client: a typical command
 * fits in one. */
#define MIG_BUS_READ_BYTES 4096u

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
	uid_t uid;               /* the peer's, from SO_PEERCRED */
	uint64_t negotiate_by_ns; /* dropped if not negotiated by then */
	size_t *out_total;       /* the bus's sum of every client's backlog */
	bool negotiated;
	bool closing; /* no more reading: flush the output, then drop */
	bool dead;    /* drop at the end of this round */
	char *in;
	size_t in_len, in_cap;
	struct mig_jsonstream scan;
	char *out;
	size_t out_off, out_len, out_cap;
};

struct qevent;
struct mig_qapi;

struct mig_bus {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct mig_sock_owner own; /* unlink only the socket we bound */
	int lfd, efd;
	pthread_t thread;
	struct mig_qapi *qapi; /* NULL: no schema, nothing checked */
	mig_bus_cmd_fn fn;
	void *ctx;
	pthread_mutex_t lock; /* guards the queue and stop */
	struct qevent *qhead, **qtail;
	bool stop;
	/* bus thread only from here on */
	uint64_t accept_after_ns; /* EMFILE backoff: no accept() before */
	struct mig_ratelimit emfile_rl, refuse_rl, idle_rl, output_rl;
	size_t out_total; /* queued output of every client, bytes */
	struct client **clients;
	size_t nclients;
	struct pollfd *pfds;
	struct history hist;
};

/* ---- session.c: one client's connection ---- */

/* How long a client has to send qmp_capabilities: a tool does at once;
 * one that does not only holds a slot. */
#define MIG_BUS_NEGOTIATE_MS 3000

/* Output a client may fall behind by before it is dropped: thousands of
 * events, yet a stuck client cannot grow the engine by much. */
#define MIG_BUS_CLIENT_OUT_BYTES (1u << 20)

/* A client on an accepted non-blocking fd (owned from here on) of a peer
 * running as uid, greeted; its backlog is added to *out_total. NULL when
 * out of memory (fd then left to the caller). */
struct client *bus_client_new(int fd, uid_t uid, size_t *out_total);
/* Its backlog: bytes queued and not yet taken by the socket. */
static inline size_t bus_client_backlog(const struct client *c)
{
	return c->out_len - c->out_off;
}
/* Drop it at the end of this round; its output goes now, so that what
 * the dead hold never adds up within a round. */
void bus_client_kill(struct client *c);
/* Close the fd, free the buffers. NULL is a no-op. */
void bus_client_free(struct client *c);
/* Queue one message line and push what the socket takes now. */
void bus_client_write(struct client *c, const char *text);
/* Push queued output without blocking; the socket's error marks it dead. */
void bus_client_flush(struct client *c);
/* Read what is there and answer every whole command in it. */
void bus_client_read(struct mig_bus *b, struct client *c);
/* VersionInfo, as the greeting and query-version give it. */
struct mig_json *bus_version(void);

/* ---- history.c ---- */

void bus_history_push(struct history *h, char *text);
void bus_history_free(struct history *h);
/* The history as a JSON array of events, for x-query-events. */
struct mig_json *bus_history_array(const struct history *h);

/* ---- qapi.c: the schema a bus serves and enforces ---- */

/* NULL with errno if text is not {"schema": [...], ...}. */
struct mig_qapi *bus_qapi_new(const char *text);
void bus_qapi_free(struct mig_qapi *q);
/* The SchemaInfo array, as query-qmp-schema returns it. */
const struct mig_json *bus_qapi_schema(const struct mig_qapi *q);
/* [{"name": COMMAND}...], as query-commands returns it. */
struct mig_json *bus_qapi_commands(const struct mig_qapi *q);
/* 0 if args (NULL: none) fit cmd's arg-type; -ENOENT if the schema has
 * no such command; -EINVAL with QEMU's one-line message in desc. */
int bus_qapi_check_args(const struct mig_qapi *q, const char *cmd,
			const struct mig_json *args, char *desc, size_t desclen);

/* ---- qmp.c: the client ---- */

/* A client on a connected stream socket (owned from here on, closed on
 * failure too): the greeting and capabilities negotiation, by the deadline,
 * that mig_qmp_connect() does once connected; tests hand it a socketpair.
 * NULL with errno set (EPROTO: the peer is not a QMP server). */
struct mig_qmp *bus_qmp_open_fd(int fd, uint64_t deadline_ns);

/* ---- shared by server and client ---- */

int bus_unix_addr(const char *path, struct sockaddr_un *sa);

#endif
