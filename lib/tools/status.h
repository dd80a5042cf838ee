/* SPDX-License-Identifier: MIT */
/*
 * mig-status's logic: one query-migrate shown for people or as JSON, a
 * list of every migration on this host, a --watch of every MIGRATION event
 * (both sides when both run here) with a live progress line on a terminal,
 * and --wait-for a state. The cmd file only parses options.
 */
#ifndef MIG_STATUS_H
#define MIG_STATUS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tools/client.h"
#include "core/json.h"
#include "core/state.h"

struct mig_status_opts {
	struct mig_client_sel sel;
	bool json;
	bool watch;
	enum mig_state want[MIG_STATE__COUNT]; /* --wait-for, if nwant */
	size_t nwant;
	int64_t timeout_ms;                    /* < 0: none */
	bool quiet;                            /* -q: no --watch progress line */
};

/* Run what opts ask for; returns the exit status (enum mig_exit).
 * With neither a name nor --bus: the migration "default" if its bus is
 * here, else the only migration name here, else (two names or more) a
 * list of them all, one line (or JSON object) per side; --watch and
 * --wait-for cannot pick from several and are a usage error then. */
int mig_status_run(const struct mig_status_opts *opts);

/* query-migrate's return object as aligned "key: value" lines, fields the
 * reply lacks left out; each line starts with indent. */
void mig_status_print(FILE *f, const struct mig_json *r, const char *indent);

/* An event's timestamp as ISO-8601 UTC with microseconds; "?" if it is
 * out of range. */
void mig_status_format_time(const struct mig_json *ev, char *buf, size_t len);

#endif
