// SPDX-License-Identifier: MIT
/*
 * mig-status's output for people: query-migrate's reply as aligned
 * "key: value" lines (see status.h), durations and timestamps; and the
 * range checks every number from a bus passes before it is shown or
 * computed with (an engine we did not start may send 1e300 or -5).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/log.h"
#include "tools/status-int.h"
#include "base/util.h"

/* Width of the key column: fits "fault latency:". */
#define KEY_WIDTH 14

static void kv(FILE *f, const char *indent, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void kv(FILE *f, const char *indent, const char *key, const char *fmt, ...)
{
	char k[64];
	va_list ap;

	snprintf(k, sizeof(k), "%s:", key);
	fprintf(f, "%s%-*s ", indent, KEY_WIDTH, k);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
}

int status_count(const struct mig_json *obj, const char *key, int64_t *v)
{
	const struct mig_json *j = mig_json_get(obj, key);

	if (!j)
		return 0;
	if (mig_json_is_integer(j, v) && *v >= 0 && *v <= STATUS_COUNT_MAX)
		return 1;
	*v = -1;
	return -1;
}

int status_figure(const struct mig_json *obj, const char *key, double *v)
{
	if (!mig_json_get(obj, key))
		return 0;
	/* NaN fails both comparisons */
	if (mig_json_get_double(obj, key, v) && *v >= 0 && *v <= STATUS_FIGURE_MAX)
		return 1;
	*v = NAN;
	return -1;
}

/* Whether v passed status_figure() (NaN did not). */
static bool figure_ok(double v)
{
	return v >= 0 && v <= STATUS_FIGURE_MAX;
}

/* A duration, as precise as a person reading it wants: "0.35 ms",
 * "12.3 ms", "4.2 s", "3m07s", "1h02m"; "?" for one out of range. */
static const char *fmt_ms(double ms, char *buf, size_t len)
{
	unsigned long long s;

	if (!figure_ok(ms))
		return "?";
	s = (unsigned long long)(ms / 1000);
	if (ms < 1)
		snprintf(buf, len, "%.2f ms", ms);
	else if (ms < 100)
		snprintf(buf, len, "%.1f ms", ms);
	else if (ms < 1000)
		snprintf(buf, len, "%.0f ms", ms);
	else if (ms < 60000)
		snprintf(buf, len, "%.1f s", ms / 1000);
	else if (s < 3600)
		snprintf(buf, len, "%llum%02llus", s / 60, s % 60);
	else
		snprintf(buf, len, "%lluh%02llum", s / 3600, s / 60 % 60);
	return buf;
}

static const char *fmt_us(double us, char *buf, size_t len)
{
	if (figure_ok(us) && us < 1000)
		snprintf(buf, len, "%.0f us", us);
	else
		return fmt_ms(us / 1000, buf, len);
	return buf;
}

/* A figure with prec decimals, or "?". */
static const char *fmt_fig(double v, int prec, char *buf, size_t len)
{
	if (!figure_ok(v))
		return "?";
	snprintf(buf, len, "%.*f", prec, v);
	return buf;
}

/* A count, or "?" (status_count() made it -1). */
static const char *fmt_count(int64_t v, char *buf, size_t len)
{
	if (v < 0)
		return "?";
	snprintf(buf, len, "%lld", (long long)v);
	return buf;
}

static void print_str(FILE *f, const char *ind, const struct mig_json *r,
		      const char *key, const char *label)
{
	const char *v = mig_json_get_str(r, key);
	char safe[256];

	if (v)
		kv(f, ind, label, "%s", mig_log_sanitize(v, safe, sizeof(safe)));
	else if (mig_json_get(r, key))
		kv(f, ind, label, "?");
}

static void print_ms(FILE *f, const char *ind, const struct mig_json *r,
		     const char *key, const char *label)
{
	char b[32];
	double v;

	if (status_figure(r, key, &v))
		kv(f, ind, label, "%s", fmt_ms(v, b, sizeof(b)));
}

double status_percent(int64_t part, int64_t whole)
{
	if (whole <= 0 || part <= 0)
		return 0;
	return MIG_MIN(100.0, 100.0 * (double)part / (double)whole);
}

int64_t status_ram_done(const struct mig_json *ram, int64_t *total)
{
	int t = status_count(ram, "total", total);
	int64_t rem;
	int r = status_count(ram, "remaining", &rem);

	if (t < 0 || r < 0 || (t > 0 && r > 0 && rem > *total))
		return STATUS_RAM_BAD;
	if (t == 0 || r == 0)
		return -1;
	return *total - rem;
}

/* A page size that cannot be (0, or beyond the 1 GiB of the largest huge
 * page) makes the page counts "?"; without one, the bytes are mig's pages. */
#define MAX_PAGE_BYTES (INT64_C(1) << 30)

static void print_progress(FILE *f, const char *ind, const struct mig_json *ram)
{
	int64_t total = 0, psize = MIG_PAGE_SIZE, xfer;
	int64_t done = status_ram_done(ram, &total);
	int has_xfer = status_count(ram, "transferred", &xfer);
	char a[32], b[32], c[32];

	if (status_count(ram, "page-size", &psize) < 0 || psize == 0 ||
	    psize > MAX_PAGE_BYTES)
		psize = -1;
	if (done == STATUS_RAM_BAD) {
		kv(f, ind, "pages", "?");
		kv(f, ind, "bytes", "?");
		return;
	}
	if (done < 0) {
		if (has_xfer)
			kv(f, ind, "bytes", "%s transferred", xfer < 0 ? "?" :
			   mig_fmt_bytes((uint64_t)xfer, a, sizeof(a)));
		return;
	}
	if (psize < 0)
		kv(f, ind, "pages", "?");
	else
		kv(f, ind, "pages", "%lld of %lld (%.1f%%)", (long long)(done / psize),
		   (long long)(total / psize), status_percent(done, total));
	if (has_xfer)
		kv(f, ind, "bytes", "%s of %s (%.1f%%), %s transferred",
		   mig_fmt_bytes((uint64_t)done, a, sizeof(a)),
		   mig_fmt_bytes((uint64_t)total, b, sizeof(b)),
		   status_percent(done, total),
		   xfer < 0 ? "?" : mig_fmt_bytes((uint64_t)xfer, c, sizeof(c)));
	else
		kv(f, ind, "bytes", "%s of %s (%.1f%%)",
		   mig_fmt_bytes((uint64_t)done, a, sizeof(a)),
		   mig_fmt_bytes((uint64_t)total, b, sizeof(b)),
		   status_percent(done, total));
}

static void print_ram(FILE *f, const char *ind, const struct mig_json *ram,
		      bool postcopy)
{
	int64_t n;
	double mbps, pps, dirty;
	char a[32], b[32];

	if (!ram)
		return;
	print_progress(f, ind, ram);
	if (status_figure(ram, "mbps", &mbps)) {
		if (status_figure(ram, "pages-per-second", &pps))
			kv(f, ind, "throughput", "%s Mbps, %s pages/s",
			   fmt_fig(mbps, 1, a, sizeof(a)), fmt_fig(pps, 0, b, sizeof(b)));
		else
			kv(f, ind, "throughput", "%s Mbps", fmt_fig(mbps, 1, a, sizeof(a)));
	}
	/* precopy passes: only once there was one (--postcopy has none) */
	if (status_count(ram, "dirty-sync-count", &n) && n != 0) {
		if (status_figure(ram, "dirty-pages-rate", &dirty))
			kv(f, ind, "precopy", "%s pass%s, dirty rate %s pages/s",
			   fmt_count(n, a, sizeof(a)), n == 1 ? "" : "es",
			   fmt_fig(dirty, 0, b, sizeof(b)));
		else
			kv(f, ind, "precopy", "%s pass%s", fmt_count(n, a, sizeof(a)),
			   n == 1 ? "" : "es");
	}
	if (status_count(ram, "postcopy-requests", &n) && (postcopy || n != 0))
		kv(f, ind, "requests", "%s page%s", fmt_count(n, a, sizeof(a)),
		   n == 1 ? "" : "s");
}

static void print_latency(FILE *f, const char *ind, const struct mig_json *lat,
			  bool postcopy)
{
	int64_t n;
	double p50 = 0, p99 = 0, max = 0;
	char a[32], b[32], c[32];
	int has = status_count(lat, "count", &n);

	if (!has || (n == 0 && !postcopy))
		return;
	if (has < 0) {
		kv(f, ind, "fault latency", "?");
		return;
	}
	if (n == 0) {
		kv(f, ind, "fault latency", "no faults yet");
		return;
	}
	status_figure(lat, "p50-us", &p50);
	status_figure(lat, "p99-us", &p99);
	status_figure(lat, "max-us", &max);
	kv(f, ind, "fault latency", "p50 %s, p99 %s, max %s (%lld fault%s)",
	   fmt_us(p50, a, sizeof(a)), fmt_us(p99, b, sizeof(b)),
	   fmt_us(max, c, sizeof(c)), (long long)n, n == 1 ? "" : "s");
}

static void print_elapsed(FILE *f, const char *ind, const struct mig_json *r)
{
	char a[32], b[32];
	double total, setup;

	if (!status_figure(r, "total-time", &total))
		return;
	if (status_figure(r, "setup-time", &setup))
		kv(f, ind, "elapsed", "%s (setup %s)", fmt_ms(total, a, sizeof(a)),
		   fmt_ms(setup, b, sizeof(b)));
	else
		kv(f, ind, "elapsed", "%s", fmt_ms(total, a, sizeof(a)));
}

void mig_status_print(FILE *f, const struct mig_json *r, const char *indent)
{
	const char *status = mig_json_get_str(r, "status");
	enum mig_state st = MIG_STATE_NONE;
	bool postcopy;
	double blocktime, downtime_us;
	char b[32];

	if (status)
		mig_state_from_name(status, &st);
	/* postcopy's own figures are shown from switchover on, even at 0 */
	postcopy = mig_state_postcopy(st);
	if (!*indent)
		print_str(f, indent, r, "x-side", "side");
	print_str(f, indent, r, "x-name", "name");
	print_str(f, indent, r, "status", "state");
	print_elapsed(f, indent, r);
	print_ms(f, indent, r, "x-state-time", "state time");
	print_ram(f, indent, mig_json_get(r, "ram"), postcopy);
	print_latency(f, indent, mig_json_get(r, "x-postcopy-latency"), postcopy);
	if (status_figure(r, "postcopy-blocktime", &blocktime) &&
	    (postcopy || blocktime != 0))
		kv(f, indent, "blocktime", "%s", fmt_ms(blocktime, b, sizeof(b)));
	/* QEMU's downtime comes only at the end; mig knows it at switchover */
	if (status_figure(r, "x-downtime-us", &downtime_us))
		kv(f, indent, "downtime", "%s", fmt_ms(downtime_us / 1e3, b,
						       sizeof(b)));
	print_str(f, indent, r, "error-desc", "last error");
}

/* The last second strftime's "%Y" shows in four digits: 9999-12-31. */
#define MAX_EVENT_SECONDS INT64_C(253402300799)

bool status_event_time(const struct mig_json *ev, int64_t *s, int64_t *us)
{
	const struct mig_json *ts = mig_json_get(ev, "timestamp");

	*s = *us = 0;
	return status_count(ts, "seconds", s) >= 0 && *s <= MAX_EVENT_SECONDS &&
	       status_count(ts, "microseconds", us) >= 0 && *us <= 999999;
}

void mig_status_format_time(const struct mig_json *ev, char *buf, size_t len)
{
	int64_t s, us;
	struct tm tm;
	time_t t;
	size_t n;

	if (!status_event_time(ev, &s, &us)) {
		snprintf(buf, len, "?");
		return;
	}
	t = (time_t)s;
	if (!gmtime_r(&t, &tm)) {
		snprintf(buf, len, "%lld.%06lld", (long long)s, (long long)us);
		return;
	}
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%06lldZ", (long long)us);
}

void status_print_json(const struct mig_json *j)
{
	char *text = mig_json_print(j, false);

	if (text)
		printf("%s\n", text);
	free(text);
}
