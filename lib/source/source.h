/* SPDX-License-Identifier: MIT */
/*
 * The source engine (mig-send): attaches to a running mig-guest, connects to
 * the destination, switches over to postcopy, pumps every page in the
 * background while serving page requests from the return path (on the
 * preempt channel when there is one), pauses on any link failure after
 * switchover and recovers when told to, until the destination has every page.
 */
#ifndef MIG_SOURCE_H
#define MIG_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/cli.h"
#include "source/precopy.h"
#include "core/state.h"

/* QEMU's default downtime-limit: scripts written for it behave the same. */
#define MIG_DOWNTIME_LIMIT_MS_DEFAULT 300

struct mig_source_opts {
	/* --name, --bus, --link-timeout, --notify, --summary, --linger,
	 * --ready-fd: as the command line gave them (bus resolved) */
	struct mig_cli_args common;
	const char *guest_ctl;   /* the running guest's control socket */
	const char *to;          /* destination URI; with a guest past
				  * switchover, NULL: the one it recorded */
	bool resume;             /* only take over a migration past
				  * switchover (-ESRCH if the guest has none) */
	bool defer;              /* to NULL: wait, attached, for the bus
				  * command migrate to say where to */
	const char *uuid;        /* migration UUID (random when NULL) */
	uint64_t max_bandwidth;  /* bytes/s for the background pump, 0 = none */
	bool preempt;            /* requested pages on their own channel */
	unsigned channels;       /* background streams, main included
				  * (1..MIG_CHANNELS_MAX); 0: the default */
	bool compress;           /* LZ4 page runs */
	struct mig_precopy_policy policy; /* when to end precopy, and how */
	uint64_t downtime_limit_ms;       /* stop-and-copy budget */
	bool digest;             /* digest of all RAM at switchover */
};

#define MIG_SOURCE_CHANNELS_MAX 8
/* How many background streams --channels defaults to on this host. */
unsigned mig_source_channels_default(void);

/* Run one migration to its end. A guest whose record says it was handed
 * over (its engine died after switchover) is taken over instead: the
 * migration resumes from postcopy-paused through recovery. With o->defer
 * the engine attaches, then waits in none until migrate names the
 * destination; a signal or migrate-cancel there ends it cancelled, the
 * guest untouched. Returns 0 with
 * *final set to the state it ended in (completed, failed, cancelled, or
 * postcopy-paused when stopped by a signal with the guest split), or -errno
 * when it could not start: -EADDRINUSE (bus taken), -ENOENT/-ECONNREFUSED
 * (no guest, no peer), -EBUSY (guest claimed by another engine), -EPROTO
 * (peer refused us), -ESRCH (resume: nothing to resume), -EEXIST (the
 * guest belongs to another migration). */
int mig_source_run(const struct mig_source_opts *o, enum mig_state *final);

#endif
