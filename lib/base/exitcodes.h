/* SPDX-License-Identifier: MIT */
/*
 * Exit statuses shared by every mig program. They are an interface: scripts
 * and cron jobs branch on them, and every man page documents them. The
 * errors behind them are mapped here, once, for every program.
 */
#ifndef MIG_EXITCODES_H
#define MIG_EXITCODES_H

enum mig_exit {
	MIG_EXIT_OK = 0,          /* success */
	MIG_EXIT_FAIL = 1,        /* the operation failed; a write to stdout failed */
	MIG_EXIT_USAGE = 64,      /* usage error (sysexits EX_USAGE) */
	MIG_EXIT_UNAVAILABLE = 69,/* no bus / guest / peer, uffd not permitted,
				   * the engine went away (EX_UNAVAILABLE) */
	MIG_EXIT_PAUSED = 75,     /* migration paused: retry mig-recover later */
	MIG_EXIT_TIMEOUT = 124,   /* --timeout expired (as timeout(1)) */
};

/* The exit status of a run function's -errno (0: MIG_EXIT_OK). Only what
 * is missing or refused is 69: nothing listens at a socket or address, no
 * route or host, the kernel does not permit or lack userfaultfd. Anything
 * else that went wrong is 1; usage errors are found before any run. */
int mig_exit_of_errno(int err);

#endif
