// SPDX-License-Identifier: MIT
/*
 * mig-status's output for people: query-migrate's reply as aligned
 * "key: value" lines (see status.h), durations and timestamps.
 */
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

/* A duration, as precise as a person reading it wants: "0.35 ms",
 * "12.3 ms", "4.2 s", "3m07s", "1h02m". */
static const char *fmt_ms(double ms, char *buf, size_t len)
{
	unsigned long long s = (unsigned long long)(ms / 1000);

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
	if (us < 1000)
		snprintf(buf, len, "%.0f us", us);
	else
		fmt_ms(us / 1000, buf, len);
	return buf;
}

static void print_str(FILE *f, const char *ind, const struct mig_json *r,
		      const char *key, const char *label)
{
	const char *v = mig_json_get_str(r, key);
	char safe[256];

	if (v)
		kv(f, ind, label, "%s", mig_log_sanitize(v, safe, sizeof(safe)));
}

static void print_ms(FILE *f, const char *ind, const struct mig_json *r,
		     const char *key, const char *label)
{
	char b[32];
	double v;

	if (mig_json_get_double(r, key, &v))
		kv(f, ind, label, "%s", fmt_ms(v, b, sizeof(b)));
}

double status_percent(int64_t part, int64_t whole)
{
	if (whole <= 0)
		return 0;
	return MIG_MIN(100.0, 100.0 * (double)part / (double)whole);
}

int64_t status_ram_done(const struct mig_json *ram, int64_t *total)
{
	int64_t rem;

	if (!mig_json_get_int(ram, "total", total) ||
	    !mig_json_get_int(ram, "remaining", &rem))
		return -1;
	return MIG_MAX(*total - rem, 0);
}

static void print_progress(FILE *f, const char *ind, const struct mig_json *ram)
{
	int64_t total = 0, psize = MIG_PAGE_SIZE, xfer;
	int64_t done = status_ram_done(ram, &total);
	bool has_xfer = mig_json_get_int(ram, "transferred", &xfer);
	char a[32], b[32], c[32];

	mig_json_get_int(ram, "page-size", &psize);
	if (psize <= 0)
		psize = MIG_PAGE_SIZE;
	if (done < 0) {
		if (has_xfer)
			kv(f, ind, "bytes", "%s transferred",
			   mig_fmt_bytes(xfer, a, sizeof(a)));
		return;
	}
	kv(f, ind, "pages", "%lld of %lld (%.1f%%)", (long long)(done / psize),
	   (long long)(total / psize), status_percent(done, total));
	if (has_xfer)
		kv(f, ind, "bytes", "%s of %s (%.1f%%), %s transferred",
		   mig_fmt_bytes(done, a, sizeof(a)), mig_fmt_bytes(total, b, sizeof(b)),
		   status_percent(done, total), mig_fmt_bytes(xfer, c, sizeof(c)));
	else
		kv(f, ind, "bytes", "%s of %s (%.1f%%)", mig_fmt_bytes(done, a, sizeof(a)),
		   mig_fmt_bytes(total, b, sizeof(b)), status_percent(done, total));
}

static void print_ram(FILE *f, const char *ind, const struct mig_json *ram,
		      bool postcopy)
{
	int64_t n;
	double mbps, pps, dirty;

	if (!ram)
		return;
	print_progress(f, ind, ram);
	if (mig_json_get_double(ram, "mbps", &mbps)) {
		if (mig_json_get_double(ram, "pages-per-second", &pps))
			kv(f, ind, "throughput", "%.1f Mbps, %.0f pages/s", mbps, pps);
		else
			kv(f, ind, "throughput", "%.1f Mbps", mbps);
	}
	/* precopy passes: only once there was one (--postcopy has none) */
	if (mig_json_get_int(ram, "dirty-sync-count", &n) && n > 0) {
		if (mig_json_get_double(ram, "dirty-pages-rate", &dirty))
			kv(f, ind, "precopy", "%lld pass%s, dirty rate %.0f pages/s",
			   (long long)n, n == 1 ? "" : "es", dirty);
		else
			kv(f, ind, "precopy", "%lld pass%s", (long long)n,
			   n == 1 ? "" : "es");
	}
	if (mig_json_get_int(ram, "postcopy-requests", &n) && (postcopy || n > 0))
		kv(f, ind, "requests", "%lld page%s", (long long)n, n == 1 ? "" : "s");
}

static void print_latency(FILE *f, const char *ind, const struct mig_json *lat,
			  bool postcopy)
{
	int64_t n;
	double p50 = 0, p99 = 0, max = 0;
	char a[32], b[32], c[32];

	if (!mig_json_get_int(lat, "count", &n) || (n <= 0 && !postcopy))
		return;
	if (n <= 0) {
		kv(f, ind, "fault latency", "no faults yet");
		return;
	}
	mig_json_get_double(lat, "p50-us", &p50);
	mig_json_get_double(lat, "p99-us", &p99);
	mig_json_get_double(lat, "max-us", &max);
	kv(f, ind, "fault latency", "p50 %s, p99 %s, max %s (%lld fault%s)",
	   fmt_us(p50, a, sizeof(a)), fmt_us(p99, b, sizeof(b)),
	   fmt_us(max, c, sizeof(c)), (long long)n, n == 1 ? "" : "s");
}

static void print_elapsed(FILE *f, const char *ind, const struct mig_json *r)
{
	char a[32], b[32];
	double total, setup;

	if (!mig_json_get_double(r, "total-time", &total))
		return;
	if (mig_json_get_double(r, "setup-time", &setup))
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
	if (mig_json_get_double(r, "postcopy-blocktime", &blocktime) &&
	    (postcopy || blocktime > 0))
		kv(f, indent, "blocktime", "%s", fmt_ms(blocktime, b, sizeof(b)));
	/* QEMU's downtime comes only at the end; mig knows it at switchover */
	if (mig_json_get_double(r, "x-downtime-us", &downtime_us))
		kv(f, indent, "downtime", "%s", fmt_ms(downtime_us / 1e3, b,
						       sizeof(b)));
	print_str(f, indent, r, "error-desc", "last error");
}

void mig_status_format_time(const struct mig_json *ev, char *buf, size_t len)
{
	const struct mig_json *ts = mig_json_get(ev, "timestamp");
	int64_t s = 0, us = 0;
	struct tm tm;
	time_t t;
	size_t n;

	mig_json_get_int(ts, "seconds", &s);
	mig_json_get_int(ts, "microseconds", &us);
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
