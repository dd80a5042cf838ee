/* SPDX-License-Identifier: MIT */
/*
 * mig-guest's client subcommands, run against a guest's control socket:
 * verify, info, digest, poke, stop, cont, quit, abandon. The cmd file only parses
 * options.
 */
#ifndef MIG_GUESTCLI_H
#define MIG_GUESTCLI_H

#include <stdbool.h>
#include <stdint.h>

struct mig_guestcli_opts {
	const char *cmd;      /* one of mig_guestcli_cmds() */
	const char *ctl_path;
	bool json;            /* info */
	uint64_t page;        /* poke */
	uint8_t uuid[16];     /* abandon: the migration to abandon */
};

/* True if name is a subcommand. */
bool mig_guestcli_known(const char *name);
/* Run it; prints its result on stdout and returns the exit status (enum
 * mig_exit): 0 done (verify: the invariant holds), 1 failed (verify:
 * broken or not checkable yet), 69 no guest at the path. */
int mig_guestcli_run(const struct mig_guestcli_opts *o);

#endif
