/* SPDX-License-Identifier: MIT */
/*
 * What the small programs (mig-status, mig-pause, mig-recover) share: which
 * bus to talk to (--bus, or --name plus a side; or every bus found in the
 * runtime directory), following a migration's
 * state through the bus's event history and live events, the exit status
 * of a wait and of an engine's final state, and the run functions of
 * mig-pause and mig-recover. Messages go through base/cli.h.
 *
 * The *_run() functions return an exit status (enum mig_exit), not -errno:
 * for these tools the status is the result (75 "still paused" is not an
 * error code any errno could carry), and the mapping is the tool's logic.
 */
#ifndef MIG_CLIENT_H
#define MIG_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/cli.h"
#include "bus/bus.h"
#include "core/state.h"

/* How long one bus request may take: the bus answers within 100 ms; this
 * leaves room for a loaded host without ever hanging. */
#define MIG_CLIENT_RPC_MS 5000

enum mig_client_side {
	MIG_CLIENT_SIDE_ANY,
	MIG_CLIENT_SIDE_SOURCE,      /* bus "send" */
	MIG_CLIENT_SIDE_DEST,        /* bus "recv" */
};

/* Which migration the user picked. */
struct mig_client_sel {
	const char *bus;             /* --bus PATH, or NULL */
	const char *name;            /* --name (NULL: "default") */
	enum mig_client_side side;   /* --side */
};

struct mig_client_target {
	char path[108];
	const char *side;            /* "source", "destination"; NULL for --bus */
};

struct mig_client_targets {
	struct mig_client_target t[2];
	size_t n;
};

/* --side: "source" / "destination" (also "send" / "recv"): 0, else a
 * usage error's exit status (printed). */
int mig_client_side_parse(const char *s, enum mig_client_side *out);
/* --name's help in a tool: NAME is also its operand (mig_client_select). */
#define MIG_CLIENT_NAME_HELP "the migration (also the first argument)"

/* The migration the command line picked: --name or the operand NAME
 * (argv[first], if any), or --bus, not both. 0 or a usage error's exit
 * status (printed). */
int mig_client_select(struct mig_client_sel *sel, const struct mig_cli_args *a,
		      int argc, char **argv, int first);

/* The bus (or both buses) sel names. --bus is taken as given; with a name,
 * only sockets that exist count, and with no side both may. Prints the
 * error and returns an exit status (64 bad name, 69 nothing there) or 0. */
int mig_client_resolve(const struct mig_client_sel *sel,
		       struct mig_client_targets *out);

/* One status bus found in the runtime directory. */
struct mig_client_entry {
	char name[65];               /* a valid --name: at most 64 bytes */
	struct mig_client_target t;
};

/* Every status bus socket (NAME.send.sock, NAME.recv.sock) in the runtime
 * directory, of the given side (ANY: both), sorted by name, source before
 * destination. Only the directory is read; nothing is connected to, so a
 * stale socket (its engine killed) is listed too. *out is malloc'd (NULL
 * when none); a missing directory is no migration, not an error.
 * 0 or -errno. */
int mig_client_scan(enum mig_client_side side, struct mig_client_entry **out,
		    size_t *n);
/* How many different names entries[] holds (it is sorted by name). */
size_t mig_client_scan_names(const struct mig_client_entry *entries, size_t n);

/* Connect to a target; prints why not. NULL with errno. */
struct mig_qmp *mig_client_connect(const struct mig_client_sel *sel,
				   const struct mig_client_target *t);

/* The status of a MIGRATION event; false for other events or unknown names. */
bool mig_client_event_state(const struct mig_json *ev, enum mig_state *st);
/* The last state in the history (x-query-events), or query-migrate's status
 * if there is none yet. Events from here on are newer: follow them with
 * mig_client_follow(). 0 or -errno. */
int mig_client_current(struct mig_qmp *q, enum mig_state *st);
/* query-migrate's "status": 0 or -errno (-EPROTO if missing or unknown). */
int mig_client_query_state(struct mig_qmp *q, enum mig_state *st);

/* Called for each live MIGRATION event; true stops following. */
typedef bool (*mig_client_state_fn)(void *ctx, enum mig_state st,
				    const struct mig_json *ev);
/* Feed live MIGRATION events to fn until it says stop (0), timeout_ms
 * passes (-ETIMEDOUT; < 0 waits forever) or the bus goes (-ECONNRESET). */
int mig_client_follow(struct mig_qmp *q, mig_client_state_fn fn, void *ctx,
		      int64_t timeout_ms);

/* Wait until the state is one of want (0, at once if it already is);
 * -ECANCELED if it reached a terminal state not in want; -ETIMEDOUT;
 * -ECONNRESET if the bus went away. *last: the last state seen (on entry:
 * the last one known, if any: it stays if the engine goes first). */
int mig_client_wait_for(struct mig_qmp *q, const enum mig_state *want,
			size_t nwant, int64_t timeout_ms, enum mig_state *last);

/* The exit status of a wait (mig_client_wait_for(), mig_client_follow())
 * that returned r, *last the last state seen, with the line saying why:
 * 124 timed out, 1 ended in another state, 69 the engine went away (its
 * bus closed: the migration may go on under a new engine, as when there
 * was no bus at all), else mig_exit_of_errno(). The same in every tool. */
int mig_client_wait_exit(int r, enum mig_state last);
/* An engine's exit status for its final state: 0 completed, 75 stopped
 * while postcopy-paused (the guest is kept), 1 anything else. */
int mig_client_exit_of_state(enum mig_state final);

/* Parse "a,b,c" state names into want[] (capacity MIG_STATE__COUNT).
 * -EINVAL naming the bad one in bad[]. */
int mig_client_parse_states(const char *list, enum mig_state *want,
			    size_t *nwant, char *bad, size_t badlen);
/* "none, setup, ..." for usage messages. */
const char *mig_client_state_list(void);

/* A syntax check of a URI (tcp:HOST:PORT, unix:PATH) before sending it:
 * a typo is a usage error here, not a failed recovery there. */
bool mig_client_uri_ok(const char *uri);

/* mig-pause: migrate-pause, then wait for postcopy-paused. */
int mig_pause_run(const struct mig_client_sel *sel, int64_t timeout_ms);
/* mig-recover: exactly one of listen_uri (destination: migrate-recover)
 * and to_uri (source: migrate with resume), then wait for the outcome. */
int mig_recover_run(const struct mig_client_sel *sel, const char *listen_uri,
		    const char *to_uri, int64_t timeout_ms);

#endif
