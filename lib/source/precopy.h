/* SPDX-License-Identifier: MIT */
/*
 * Precopy pass logic, kept pure so it can be tested without a guest: after
 * each pass, given what it sent and how much the guest dirtied meanwhile,
 * decide whether to go on, complete by stop-and-copy (the rest fits the
 * downtime limit), or switch to postcopy (precopy will not converge, or the
 * policy says so).
 */
#ifndef MIG_PRECOPY_H
#define MIG_PRECOPY_H

#include <stdbool.h>
#include <stdint.h>

enum mig_switch_policy {
	MIG_SWITCH_AUTO,          /* precopy; stop-and-copy if it fits, else
				   * postcopy once passes stop converging */
	MIG_SWITCH_NOW,           /* --postcopy: switch before any pass */
	MIG_SWITCH_AFTER_PASSES,  /* --postcopy-after N */
	MIG_SWITCH_AFTER_MS,      /* --postcopy-after Ns */
	MIG_SWITCH_NEVER,         /* --precopy-only */
};

/* AUTO gives up on precopy after this many passes whatever the trend: each
 * pass costs a full sweep of the dirty set for little gain by then. */
#define MIG_PRECOPY_MAX_PASSES_AUTO 10
/* AUTO calls a pass converging if it left at most 90% of the previous
 * pass's dirty pages. */
#define MIG_PRECOPY_CONVERGE_PCT 90

struct mig_precopy_policy {
	enum mig_switch_policy kind;
	uint64_t after;             /* passes, or ms */
	uint64_t downtime_limit_ms; /* stop-and-copy budget */
};

struct mig_pass {
	unsigned n;            /* 1 = the full pass */
	uint64_t pages_sent;
	uint64_t bytes_sent;   /* on the wire */
	uint64_t ns;           /* how long the pass took */
	uint64_t dirty_after;  /* pages dirtied meanwhile (to send next) */
};

enum mig_precopy_next {
	MIG_PRECOPY_CONTINUE,
	MIG_PRECOPY_COMPLETE,  /* stop the guest, send the rest, done */
	MIG_PRECOPY_POSTCOPY,  /* stop the guest, switch over, pump the rest */
};

/* "3" = after 3 passes, "2.5s" = after 2.5 seconds. -EINVAL otherwise. */
int mig_precopy_parse_after(const char *s, struct mig_precopy_policy *p);

/* Estimated ms to send `pages` at the rate the pass achieved. */
uint64_t mig_precopy_estimate_ms(const struct mig_pass *cur, uint64_t pages);

/* What to do after pass `cur` (prev: the pass before, NULL after the first).
 * elapsed_ms: since precopy began. */
enum mig_precopy_next mig_precopy_decide(const struct mig_precopy_policy *p,
					 const struct mig_pass *cur,
					 const struct mig_pass *prev,
					 uint64_t elapsed_ms);

/* Mid-pass: has a time-based policy run out (switch without finishing)? */
bool mig_precopy_deadline(const struct mig_precopy_policy *p,
			  uint64_t elapsed_ms);

#endif
