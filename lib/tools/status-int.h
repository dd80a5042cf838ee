/* SPDX-License-Identifier: MIT */
/*
 * mig-status's internals, shared by its files: status.c (picking what to
 * show, the one-shot view, --wait-for), status-print.c (query-migrate for
 * people), status-list.c (every migration on the host) and status-watch.c
 * (--watch and its progress line).
 */
#ifndef MIG_STATUS_INT_H
#define MIG_STATUS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tools/client.h"
#include "tools/status.h"
#include "core/json.h"

/* A number from a bus, which may send anything: 1 if obj's key holds one
 * in range, into *v; 0 if it is absent; -1 if it holds anything else (a
 * string, a negative or fractional count, 1e300), and *v is then -1 (a
 * count) or NaN (a figure): shown as "?", never computed with. A count
 * (bytes, pages, faults) is an integer of 0..STATUS_COUNT_MAX, a figure (a
 * rate, a duration) a number of 0..STATUS_FIGURE_MAX. */
int status_count(const struct mig_json *obj, const char *key, int64_t *v);
int status_figure(const struct mig_json *obj, const char *key, double *v);
/* 2^53: beyond it a JSON number (a double) no longer holds every integer,
 * and no RAM is that big; sums and differences of two stay in int64. */
#define STATUS_COUNT_MAX (INT64_C(1) << 53)
/* No real rate or duration comes near 1e12 (ms: 31 years; Mbps: a
 * petabit), and below it every conversion to an integer is in range. */
#define STATUS_FIGURE_MAX 1e12

/* Part of whole in percent, 0 to 100; 0 when whole is not positive. */
double status_percent(int64_t part, int64_t whole);
/* status_ram_done(): sizes a bus cannot mean (remaining beyond total). */
#define STATUS_RAM_BAD (-2)
/* Bytes no longer remaining: the progress. Not "transferred", which on
 * the source counts resent (dirtied) pages too and can exceed the total.
 * -1 when the reply has no RAM yet, STATUS_RAM_BAD when its sizes are out
 * of range. */
int64_t status_ram_done(const struct mig_json *ram, int64_t *total);
/* An event's timestamp, each member 0 if absent: false if either is out
 * of range (seconds past the year 9999, microseconds past a second). */
bool status_event_time(const struct mig_json *ev, int64_t *s, int64_t *us);
/* One JSON value on a line of stdout. */
void status_print_json(const struct mig_json *j);

/* The list of every migration here (es[0..n), from mig_client_scan()):
 * an exit status. */
int status_list(const struct mig_status_opts *o, const struct mig_client_entry *es,
		size_t n);
/* --watch the targets to the end: an exit status. */
int status_watch(const struct mig_status_opts *o, const struct mig_client_targets *ts);

#endif
