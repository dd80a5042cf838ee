/* SPDX-License-Identifier: MIT */
/*
 * mig-status's internals, shared by its files: status.c (picking what to
 * show, the one-shot view, --wait-for), status-print.c (query-migrate for
 * people), status-list.c (every migration on the host) and status-watch.c
 * (--watch and its progress line).
 */
#ifndef MIG_STATUS_INT_H
#define MIG_STATUS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "tools/client.h"
#include "tools/status.h"
#include "core/json.h"

/* Part of whole in percent, at most 100; 0 when whole is not positive. */
double status_percent(int64_t part, int64_t whole);
/* Bytes no longer remaining: the progress. Not "transferred", which on
 * the source counts resent (dirtied) pages too and can exceed the total.
 * -1 when the reply has no RAM yet. */
int64_t status_ram_done(const struct mig_json *ram, int64_t *total);
/* One JSON value on a line of stdout. */
void status_print_json(const struct mig_json *j);

/* The list of every migration here (es[0..n), from mig_client_scan()):
 * an exit status. */
int status_list(const struct mig_status_opts *o, const struct mig_client_entry *es,
		size_t n);
/* --watch the targets to the end: an exit status. */
int status_watch(const struct mig_status_opts *o, const struct mig_client_targets *ts);

#endif
