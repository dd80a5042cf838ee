/* SPDX-License-Identifier: MIT */
/*
 * What the source and destination engines share: the state machine wired to
 * the status bus (one MIGRATION event per move), the control loop's wakeups,
 * statistics, the last error, and channel bookkeeping that lets the bus
 * thread kick every channel at once (that is how a pause interrupts threads
 * blocked in read or write).
 */
#ifndef MIG_ENGINE_H
#define MIG_ENGINE_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/cli.h"
#include "bus/bus.h"
#include "guest/guest.h"
#include "base/latency.h"
#include "core/state.h"

/* Wakeups of the control loop (bits, under the engine lock). */
enum {
	MIG_EV_LINK_DOWN = 1u << 0, /* a channel failed: pause (or fail) */
	MIG_EV_PAUSE = 1u << 1,     /* migrate-pause */
	MIG_EV_RECOVER = 1u << 2,   /* migrate resume / a resume hello */
	MIG_EV_COMPLETE = 1u << 3,  /* every page is on the destination */
	MIG_EV_CANCEL = 1u << 4,    /* migrate-cancel */
	MIG_EV_SIGNAL = 1u << 5,    /* SIGTERM / SIGINT */
	MIG_EV_RESUMED = 1u << 6,   /* recovery handshake finished */
	MIG_EV_SWITCH = 1u << 7,    /* migrate-start-postcopy */
	MIG_EV_WORKER = 1u << 8,    /* a worker has news (side-specific) */
};

/* Channel slots whose fds the bus thread may kick. Bulk channels carry
 * background pages beside main (QEMU's multifd): slot MIG_CHAN_BULK + i - 1
 * holds bulk channel i, 1 <= i <= MIG_CHAN_MAX_BULK. */
enum mig_chan_slot {
	MIG_CHAN_MAIN,
	MIG_CHAN_PREEMPT,
	MIG_CHAN_BULK,
	MIG_CHAN__COUNT = MIG_CHAN_BULK + 7
};
#define MIG_CHAN_MAX_BULK (MIG_CHAN__COUNT - MIG_CHAN_BULK)
/* Background streams at most: main and every bulk channel. */
#define MIG_CHANNELS_MAX (1 + MIG_CHAN_MAX_BULK)

/* "main channel", "preempt channel", "bulk channel 3": for messages. */
const char *mig_chan_slot_name(enum mig_chan_slot c);
/* "main", "preempt", "bulk3": for thread names (ps -L, top -H). */
const char *mig_chan_slot_tag(enum mig_chan_slot c);

/* Heartbeat period and the silence after which a link counts as broken. */
#define MIG_HEARTBEAT_MS 500
#define MIG_LINK_TIMEOUT_MS_DEFAULT 5000

struct mig_stats {
	atomic_uint_fast64_t bytes;       /* on the wire, every channel */
	atomic_uint_fast64_t bulk_bytes;  /* ...of which on bulk channels */
	atomic_uint_fast64_t normal;      /* pages sent/placed with data */
	atomic_uint_fast64_t zero;        /* zero pages */
	atomic_uint_fast64_t requests;    /* page requests */
	atomic_uint_fast64_t present;     /* destination: pages present */
	/* destination: pages that came again once present (a request raced
	 * with a pump): refused by UFFDIO_COPY, so never placed twice */
	atomic_uint_fast64_t duplicates;
};

struct mig_engine;

/* A point query-migrate's current rates are taken from (bus thread). */
struct mig_rate_sample {
	uint64_t t_ns, bytes, pages;
};

/* What each side adds to the bus commands (lib/engine/commands.c does the
 * rest). All run on the bus thread: no blocking. */
struct mig_engine_ops {
	/* its members of query-migrate */
	void (*query)(struct mig_engine *e, struct mig_json *ret);
	/* like mig_bus_cmd_fn; -ENOENT for commands it does not know */
	int (*command)(struct mig_engine *e, const char *cmd,
		       const struct mig_json *args, struct mig_json **ret,
		       char *desc, size_t desclen);
	/* A capability the side decides: want -1 asks (1 on, 0 off); 0 or 1
	 * checks a change (apply false) or makes it: 0, or -errno with desc. */
	int (*cap)(struct mig_engine *e, const char *name, int want, bool apply,
		   char *desc, size_t desclen);
	/* migrate-set-parameters' side-specific members, checked, then set */
	int (*params)(struct mig_engine *e, const struct mig_json *args,
		      bool apply, char *desc, size_t desclen);
	void (*query_params)(struct mig_engine *e, struct mig_json *ret);
	/* query-status: QEMU's RunState of the guest, and whether it runs */
	const char *(*run_state)(struct mig_engine *e, bool *running);
};

struct mig_engine {
	enum mig_side side;
	char name[65];
	char bus_path[108];
	uint8_t uuid[16];
	char uuid_str[37];
	struct mig_sm *sm;
	struct mig_bus *bus;
	const struct mig_engine_ops *ops;
	/* the guest bound to this migration, or NULL: told every state move,
	 * which it must outlive us with (used by the control loop only) */
	struct mig_guest *bound;
	void *ctx;
	struct mig_notify *notify; /* webhook, or NULL */

	int efd;                 /* eventfd: wakes the control loop */
	int sfd;                 /* signalfd: SIGTERM, SIGINT for the loop */
	bool signalled;          /* one was read: no --linger after the end */
	pthread_mutex_t lock;    /* pending, error, chan_fd */
	unsigned pending;
	char error[256];
	int chan_fd[MIG_CHAN__COUNT];

	_Atomic int link_timeout_ms; /* x-link-timeout: set live by the bus */
	/* TLS for the channels opened from now on (engine/secure.c), under
	 * lock: the parameters as given, and their credentials (NULL: clear) */
	char tls_creds[300], tls_hostname[256], tls_authz[300];
	struct mig_tls *tls;
	atomic_bool warned_clear; /* the clear-text warning is given once */
	/* Written by the control loop, read by the bus thread's query-migrate
	 * at any moment: atomic, so a query never sees a torn value. */
	_Atomic uint64_t ram_bytes;
	_Atomic uint64_t t_start_ns, t_setup_ns, t_end_ns;
	_Atomic uint64_t t_stop_ns, downtime_ns; /* guest stop -> running on dest */
	_Atomic uint64_t t_run_ns;     /* the guest runs on the destination */
	_Atomic uint64_t bytes_at_stop, bytes_at_run; /* st.bytes then */
	_Atomic uint64_t t_pump_start_ns, bytes_at_pump; /* st.bytes then */
	struct mig_stats st;
	/* destination: fault -> page placed; set once by the control loop, read
	 * by the bus thread */
	struct mig_latency *_Atomic lat;
	_Atomic uint64_t digest;  /* of all RAM at switchover (--digest) */
	atomic_bool has_digest;   /* set once digest holds the value */
	struct mig_rate_sample rate[2]; /* older, newer: query-migrate only */
};

/* Open the bus (c->bus) and put the machine in `none`, with what the
 * engines' command lines share: --link-timeout, --notify. 0 or -errno
 * (-EADDRINUSE: another engine serves that bus; -EINVAL: a bad --notify
 * URL). Blocks SIGTERM and SIGINT in the calling thread first, so every
 * thread started from here on inherits the mask and the signals reach only
 * the control loop, through e->sfd: call it before any thread starts.
 * SIGPIPE is ignored. */
int mig_engine_init(struct mig_engine *e, enum mig_side side,
		    const struct mig_cli_args *c,
		    const struct mig_engine_ops *ops, void *ctx);
/* Emit an event on the bus and to the webhook (takes data). */
void mig_engine_emit(struct mig_engine *e, const char *event,
		     struct mig_json *data);
/* Deliver the last events, close the bus. */
void mig_engine_fini(struct mig_engine *e);

/* State moves: the only path to mig_sm_move; logs each move and tells the
 * bound guest (e->bound) the state reached. */
int mig_engine_move(struct mig_engine *e, enum mig_state to);
enum mig_state mig_engine_state(struct mig_engine *e);
/* The guest stops on the source / runs on the destination: the bytes on
 * the wire split there into precopy, downtime and postcopy bytes. */
void mig_engine_mark_stopped(struct mig_engine *e);
void mig_engine_mark_running(struct mig_engine *e);

/* Wake the control loop with event bits (any thread). mig_engine_signal()
 * only wakes it, for news a worker keeps elsewhere. */
void mig_engine_post(struct mig_engine *e, unsigned ev);
void mig_engine_signal(struct mig_engine *e);
/* Wait up to timeout_ms for events and take them (0 when none). */
unsigned mig_engine_wait(struct mig_engine *e, int timeout_ms);
/* For a control loop that polls fds of its own as well: the engine's two
 * (wakeups and signals) go in p[0..1], POLLIN; after the poll,
 * mig_engine_take() returns the events, MIG_EV_SIGNAL for a signal. */
#define MIG_ENGINE_NPOLL 2
void mig_engine_pollfds(struct mig_engine *e, struct pollfd p[MIG_ENGINE_NPOLL]);
unsigned mig_engine_take(struct mig_engine *e);

/* The commands both sides answer alike, then ops->command (bus thread). */
int mig_engine_command(struct mig_engine *e, const char *cmd,
		       const struct mig_json *args, struct mig_json **ret,
		       char *desc, size_t desclen);
/* migrate's or migrate-incoming's address, from "uri" or "channels" (QEMU
 * takes exactly one), as a URI mig_uri_parse() accepts; -EINVAL with desc. */
int mig_engine_addr_arg(const char *cmd, const struct mig_json *args,
			char *uri, size_t len, char *desc, size_t desclen);

/* Record the most recent error for query-migrate (and log it). */
void mig_engine_error(struct mig_engine *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* TLS (engine/secure.c). The command line's --tls-* into the engine:
 * 0, or -EINVAL with the error printed. */
int mig_engine_tls_init(struct mig_engine *e, const struct mig_cli_args *c);
void mig_engine_tls_fini(struct mig_engine *e);
/* migrate-set-parameters' tls-creds, tls-hostname, tls-authz: prepare
 * checks them and loads new credentials (0, or -errno with desc), then
 * commit applies them or drop forgets them. */
struct mig_tls_change {
	bool any;
	char creds[300], hostname[256], authz[300];
	struct mig_tls *tls;
};
int mig_engine_tls_prepare(struct mig_engine *e, const struct mig_json *args,
			   struct mig_tls_change *ch, char *desc, size_t desclen);
void mig_engine_tls_commit(struct mig_engine *e, struct mig_tls_change *ch);
void mig_engine_tls_drop(struct mig_tls_change *ch);
void mig_engine_tls_query(struct mig_engine *e, struct mig_json *ret);
/* The credentials for a new channel (a reference, or NULL: clear text) and
 * the name the peer's certificate must carry ("" if none was set). */
struct mig_tls *mig_engine_tls(struct mig_engine *e, char *host, size_t len);
/* A peer that failed to authenticate: one log line, a MIG_AUTH_FAILED
 * event; on the source it is also the migration's error. */
void mig_engine_auth_failed(struct mig_engine *e, const char *peer,
			    const char *why);
/* A channel in clear text that leaves this host: warn, once. */
void mig_engine_clear_link(struct mig_engine *e, int fd);

/* Channel fds the bus thread may kick; set -1 before closing. */
void mig_engine_set_chan(struct mig_engine *e, enum mig_chan_slot slot, int fd);
int mig_engine_get_chan(struct mig_engine *e, enum mig_chan_slot slot);
/* Shut down every registered channel: blocked threads return at once. */
void mig_engine_kick_all(struct mig_engine *e);

/* After the end: the summary on stdout when asked (--summary), and by
 * default after a completed migration when stdout is a terminal (a person
 * at a shell wants the outcome; a script reads the exit status); then the
 * bus kept up for late readers (--linger) for c->linger_ms, or until
 * SIGTERM/SIGINT, and not at all when a signal ended the migration:
 * whoever sent it wants the engine gone. */
void mig_engine_end(struct mig_engine *e, const struct mig_cli_args *c);

#endif
