/* SPDX-License-Identifier: MIT */
/*
 * Exit statuses shared by every mig program. They are an interface: scripts
 * and cron jobs branch on them, and every man page documents them.
 */
#ifndef MIG_EXITCODES_H
#define MIG_EXITCODES_H

enum mig_exit {
	MIG_EXIT_OK = 0,          /* success */
	MIG_EXIT_FAIL = 1,        /* the operation failed */
	MIG_EXIT_USAGE = 64,      /* usage error (sysexits EX_USAGE) */
	MIG_EXIT_UNAVAILABLE = 69,/* no bus / guest / peer, uffd not permitted */
	MIG_EXIT_PAUSED = 75,     /* migration paused: retry mig-recover later */
	MIG_EXIT_TIMEOUT = 124,   /* --timeout expired (as timeout(1)) */
};

#endif
