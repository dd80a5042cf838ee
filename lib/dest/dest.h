/* SPDX-License-Identifier: MIT */
/*
 * The destination engine (mig-recv): listens, accepts the migration, spawns
 * its dedicated mig-guest in incoming mode, serves the guest's userfaults by
 * requesting pages on the return path, places arriving pages, starts the guest
 * at switchover, pauses on any link failure after it and recovers when told
 * to, until every page is present. The guest then runs on without us.
 */
#ifndef MIG_DEST_H
#define MIG_DEST_H

#include <stdbool.h>

#include "base/cli.h"
#include "core/state.h"

struct mig_dest_opts {
	/* --name, --bus, --link-timeout, --notify, --summary, --linger,
	 * --ready-fd: as the command line gave them (bus resolved) */
	struct mig_cli_args common;
	const char *listen;     /* URI to listen on; with a guest to take
				 * over, NULL: the one it recorded */
	bool defer;             /* listen only where migrate-incoming says
				 * (QEMU's -incoming defer); listen NULL */
	const char *guest_ctl;  /* control socket of the guest we spawn, or of
				 * the one past switchover we take over */
	bool attach;            /* only take over the guest at guest_ctl */
	bool paused_start;      /* keep the guest stopped after switchover */
	const char *guest_serial; /* the spawned guest's --serial FILE (kvm) */
};

/* Run one incoming migration to its end. A guest past switchover already
 * at guest_ctl (its engine went away) is taken over instead: the engine
 * starts in postcopy-paused, armed for the source's recovery on the listen
 * address. With o->defer the engine waits in none, listening nowhere,
 * until the bus command migrate-incoming names the address; a signal
 * there ends it cancelled. Returns 0 with *final set (see
 * mig_source_run), or -errno when it could not start: -EADDRINUSE (bus or
 * listen address taken), -EINVAL (bad URI), -ENOENT/-ECONNREFUSED
 * (attach: no guest), -EEXIST (a guest this engine must not take over is
 * at guest_ctl); or -EPERM, *final set too, when the incoming guest was
 * not permitted userfaultfd. */
int mig_dest_run(const struct mig_dest_opts *o, enum mig_state *final);

#endif
