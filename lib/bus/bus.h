/* SPDX-License-Identifier: MIT */
/*
 * The status bus: a QMP-compatible JSON server on a UNIX socket inside each
 * engine, and the client the small programs use. Greeting, qmp_capabilities,
 * {"execute","arguments","id"} -> {"return"} or {"error":{"class","desc"}},
 * and events {"event","data","timestamp":{"seconds","microseconds"}} sent to
 * every client. Any QMP client works; `socat - UNIX-CONNECT:PATH` is a usable
 * console.
 *
 * Beyond QEMU's commands the bus answers x-query-events: the events emitted
 * so far, in order; events after it reach that client live. Because the log
 * and the broadcast are served by one thread, a client that asks sees each
 * event exactly once, whenever it connected.
 */
#ifndef MIG_BUS_H
#define MIG_BUS_H

#include <stddef.h>

#include "core/json.h"

/* The history x-query-events replays is bounded, because an engine lives
 * as long as its migration and a postcopy migration may be paused and
 * recovered thousands of times (4 events a cycle on the source, 3 on the
 * destination): a history that kept them all was memory held per cycle.
 * It keeps the first events, which say how the migration started (setup,
 * precopy passes, switchover), and the latest, which say where it is now
 * (about 60 pause/recover cycles); the ones in between are dropped, the
 * oldest first. A whole migration without hundreds of pauses fits. */
#define MIG_BUS_HISTORY_FIRST 64u
#define MIG_BUS_HISTORY_LAST 256u

/* Longest accepted command: anything larger is an error and a disconnect. */
#define MIG_BUS_MAX_MSG_BYTES (64u * 1024u)

/* Command handler, run on the bus thread (so it must not call
 * mig_bus_close(); mig_bus_emit() is fine): keep it short (the bus must answer
 * every client within 100 ms). Return 0 with *ret set (NULL means {}), or
 * -ENOENT with desc left empty for an unknown command (CommandNotFound), or
 * -errno with a one-line desc (GenericError, whatever the errno, -ENOENT
 * of a failed listen included). args may be NULL. */
typedef int (*mig_bus_cmd_fn)(void *ctx, const char *cmd,
			      const struct mig_json *args,
			      struct mig_json **ret, char *desc, size_t desclen);

struct mig_bus;

/* Listen on path (mode 0600; a stale socket is replaced, a live one is
 * -EADDRINUSE) and serve on a thread of its own. NULL with errno. Only
 * peers running as our effective uid or root are served, whatever the
 * socket's mode; a client that does not negotiate within a few seconds,
 * or falls too far behind, is disconnected (bus.c says the bounds).
 *
 * schema, when not NULL, is the text of {"schema": [SchemaInfo...],
 * "unsupported": {NAME: REASON...}}: the QAPI introspection the bus serves
 * (query-qmp-schema, query-commands) and enforces. A command it does not
 * list is CommandNotFound; arguments are checked against its arg-type
 * (unknown, missing, wrong type, not in the enum: GenericError with QEMU's
 * wording, plus REASON for a QEMU name mig refuses) before fn runs. The bus
 * itself answers qmp_capabilities, query-version, query-commands,
 * query-qmp-schema and x-query-events when the schema lists them. Without a
 * schema every command goes to fn unchecked (tests). */
struct mig_bus *mig_bus_open(const char *path, const char *schema,
			     mig_bus_cmd_fn fn, void *ctx);
/* Queue an event for every client (thread-safe, never blocks on clients;
 * takes ownership of data, which may be NULL). Timestamped now. */
void mig_bus_emit(struct mig_bus *bus, const char *event, struct mig_json *data);
/* Deliver queued events (bounded wait for slow clients), disconnect every
 * client, remove the socket, join the thread. NULL is a no-op. */
void mig_bus_close(struct mig_bus *bus);

/* Client side. */
struct mig_qmp;

/* Connect, read the greeting, negotiate capabilities. NULL with errno
 * (ENOENT/ECONNREFUSED: no bus there; ETIMEDOUT; EPROTO: not a QMP peer). */
struct mig_qmp *mig_qmp_connect(const char *path, int timeout_ms);
void mig_qmp_close(struct mig_qmp *q);
/* Run a command (args owned, may be NULL). 0 with *ret (caller frees; may be
 * left NULL if ret is NULL); -EREMOTEIO with the server's desc in errbuf;
 * -ETIMEDOUT; -ECONNRESET if the bus went away. Events arriving meanwhile
 * are kept for mig_qmp_next_event(). */
int mig_qmp_execute(struct mig_qmp *q, const char *cmd, struct mig_json *args,
		    struct mig_json **ret, char *errbuf, size_t errlen,
		    int timeout_ms);
/* Next event, whole object (caller frees): 0, -ETIMEDOUT, -ECONNRESET.
 * timeout_ms < 0 waits forever. */
int mig_qmp_next_event(struct mig_qmp *q, struct mig_json **ev, int timeout_ms);
/* The socket, to poll() several buses at once: when it is readable, or
 * after any call, drain with mig_qmp_next_event(q, &ev, 0). */
int mig_qmp_fd(const struct mig_qmp *q);
/* x-query-events: *events is the array of the events so far, the first
 * and the latest as MIG_BUS_HISTORY_* say (caller frees). Events queued
 * before the reply are dropped, since the history holds them: what
 * mig_qmp_next_event() returns next is newer, each event exactly once. 0 or as mig_qmp_execute(); -EPROTO if not an array. */
int mig_qmp_query_events(struct mig_qmp *q, struct mig_json **events,
			 int timeout_ms);

#endif
