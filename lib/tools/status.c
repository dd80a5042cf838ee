// SPDX-License-Identifier: MIT
/*
 * mig-status: see status.h. --watch reads each bus's event history first,
 * then its live events, so a watcher started late still sees the whole
 * migration, in order and each event once; with both sides on one host the
 * two histories are merged by timestamp and the live streams polled
 * together. On a terminal the wait between events is cut into ticks that
 * redraw a progress line from query-migrate; events still wake it at once.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "base/exitcodes.h"
#include "base/log.h"
#include "tools/status.h"
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

	if (v)
		kv(f, ind, label, "%s", v);
}

static void print_ms(FILE *f, const char *ind, const struct mig_json *r,
		     const char *key, const char *label)
{
	char b[32];
	double v;

	if (mig_json_get_double(r, key, &v))
		kv(f, ind, label, "%s", fmt_ms(v, b, sizeof(b)));
}

static double percent(int64_t part, int64_t whole)
{
	if (whole <= 0)
		return 0;
	return MIG_MIN(100.0, 100.0 * (double)part / (double)whole);
}

/* Bytes no longer remaining: the progress. Not "transferred", which on
 * the source counts resent (dirtied) pages too and can exceed the total.
 * -1 when the reply has no RAM yet. */
static int64_t ram_done(const struct mig_json *ram, int64_t *total)
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
	int64_t done = ram_done(ram, &total);
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
	   (long long)(total / psize), percent(done, total));
	if (has_xfer)
		kv(f, ind, "bytes", "%s of %s (%.1f%%), %s transferred",
		   mig_fmt_bytes(done, a, sizeof(a)), mig_fmt_bytes(total, b, sizeof(b)),
		   percent(done, total), mig_fmt_bytes(xfer, c, sizeof(c)));
	else
		kv(f, ind, "bytes", "%s of %s (%.1f%%)", mig_fmt_bytes(done, a, sizeof(a)),
		   mig_fmt_bytes(total, b, sizeof(b)), percent(done, total));
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
	double blocktime;
	char b[32];

	if (status)
		mig_state_from_name(status, &st);
	/* postcopy's own figures are shown from switchover on, even at 0 */
	postcopy = mig_state_postcopy(st);
	if (!*indent)
		print_str(f, indent, r, "side", "side");
	print_str(f, indent, r, "name", "name");
	print_str(f, indent, r, "status", "state");
	print_elapsed(f, indent, r);
	print_ms(f, indent, r, "state-time", "state time");
	print_ram(f, indent, mig_json_get(r, "ram"), postcopy);
	print_latency(f, indent, mig_json_get(r, "postcopy-latency"), postcopy);
	if (mig_json_get_double(r, "postcopy-blocktime", &blocktime) &&
	    (postcopy || blocktime > 0))
		kv(f, indent, "blocktime", "%s", fmt_ms(blocktime, b, sizeof(b)));
	print_ms(f, indent, r, "downtime", "downtime");
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

/* ---- one-shot view ---- */

static struct mig_json *query(const struct mig_status_opts *o,
			      const struct mig_client_target *t, int *status)
{
	struct mig_json *ret = NULL;
	struct mig_qmp *q = mig_client_connect(&o->sel, t);
	char desc[256];
	int r;

	if (!q) {
		*status = MIG_EXIT_UNAVAILABLE;
		return NULL;
	}
	r = mig_qmp_execute(q, "query-migrate", NULL, &ret, desc, sizeof(desc),
			    MIG_CLIENT_RPC_MS);
	mig_qmp_close(q);
	if (r == -EREMOTEIO)
		mig_client_error("query-migrate: %s", desc);
	else if (r < 0)
		mig_client_error("query-migrate: %s", strerror(-r));
	*status = r == -ECONNRESET ? MIG_EXIT_UNAVAILABLE : MIG_EXIT_FAIL;
	return ret;
}

static void print_json(const struct mig_json *j)
{
	char *text = mig_json_print(j, false);

	if (text)
		printf("%s\n", text);
	free(text);
}

static int show(const struct mig_status_opts *o, const struct mig_client_targets *ts)
{
	struct mig_json *both = mig_json_new_object();
	int status = MIG_EXIT_OK, err = MIG_EXIT_OK;
	size_t shown = 0;

	for (size_t i = 0; i < ts->n; i++) {
		struct mig_json *r = query(o, &ts->t[i], &err);

		if (!r)
			continue;
		if (o->json && ts->n > 1)
			mig_json_add(both, ts->t[i].side, mig_json_dup(r));
		else if (o->json)
			print_json(r);
		else if (ts->n > 1)
			printf("%s%s:\n", shown ? "\n" : "", ts->t[i].side);
		if (!o->json)
			mig_status_print(stdout, r, ts->n > 1 ? "  " : "");
		mig_json_free(r);
		shown++;
	}
	if (o->json && ts->n > 1 && shown)
		print_json(both);
	mig_json_free(both);
	if (shown < ts->n)
		status = shown ? MIG_EXIT_FAIL : err;
	return status;
}

/* ---- the list of every migration here ---- */

struct row {
	const struct mig_client_entry *e;
	struct mig_json *r;      /* query-migrate's reply, NULL if none */
	char err[128];           /* why not */
	double pct;              /* < 0: unknown */
};

static void list_query(struct row *w)
{
	struct mig_qmp *q = mig_qmp_connect(w->e->t.path, MIG_CLIENT_RPC_MS);
	int64_t total = 0, done;
	int r;

	w->pct = -1;
	if (!q) {
		snprintf(w->err, sizeof(w->err), "%s", strerror(errno));
		return;
	}
	r = mig_qmp_execute(q, "query-migrate", NULL, &w->r, w->err,
			    sizeof(w->err), MIG_CLIENT_RPC_MS);
	mig_qmp_close(q);
	if (r < 0 && r != -EREMOTEIO)
		snprintf(w->err, sizeof(w->err), "%s", strerror(-r));
	if (r < 0)
		return;
	done = ram_done(mig_json_get(w->r, "ram"), &total);
	if (done >= 0)
		w->pct = percent(done, total);
}

/* An array of query-migrate replies, each with the name and side of its
 * socket, "bus", and "percent" when known; a bus that does not answer
 * has "status": null and "error-desc". */
static void list_json(const struct row *rows, size_t n)
{
	struct mig_json *arr = mig_json_new_array();

	for (size_t i = 0; i < n; i++) {
		struct mig_json *o = rows[i].r ? mig_json_dup(rows[i].r) :
				     mig_json_new_object();

		mig_json_add_str(o, "name", rows[i].e->name);
		mig_json_add_str(o, "side", rows[i].e->t.side);
		if (!rows[i].r) {
			mig_json_add(o, "status", mig_json_parse("null", 4));
			mig_json_add_str(o, "error-desc", rows[i].err);
		}
		if (rows[i].pct >= 0)
			mig_json_add_double(o, "percent",
					    (double)(int64_t)(rows[i].pct * 10 + 0.5) / 10);
		mig_json_add_str(o, "bus", rows[i].e->t.path);
		mig_json_append(arr, o);
	}
	print_json(arr);
	mig_json_free(arr);
}

static const char *row_state(const struct row *w)
{
	const char *st = w->r ? mig_json_get_str(w->r, "status") : NULL;

	return st ? st : "unreachable";
}

/* NAME SIDE STATE DONE, columns as wide as their widest cell. */
static void list_text(const struct row *rows, size_t n)
{
	int wn = 4, ws = 4, wst = 5;

	for (size_t i = 0; i < n; i++) {
		wn = MIG_MAX(wn, (int)strlen(rows[i].e->name));
		ws = MIG_MAX(ws, (int)strlen(rows[i].e->t.side));
		wst = MIG_MAX(wst, (int)strlen(row_state(&rows[i])));
	}
	printf("%-*s  %-*s  %-*s  %6s\n", wn, "NAME", ws, "SIDE", wst, "STATE", "DONE");
	for (size_t i = 0; i < n; i++) {
		printf("%-*s  %-*s  %-*s  ", wn, rows[i].e->name, ws,
		       rows[i].e->t.side, wst, row_state(&rows[i]));
		if (rows[i].pct >= 0)
			printf("%5.1f%%\n", rows[i].pct);
		else
			printf("%6s\n", "-");
	}
}

/* Exit 0 once listed: a bus that does not answer (its engine was killed
 * and left its socket) is a row saying so, not a failure of the list. */
static int list(const struct mig_status_opts *o, const struct mig_client_entry *es,
		size_t n)
{
	struct row *rows = calloc(n, sizeof(*rows));

	if (!rows) {
		mig_client_error("%s", strerror(ENOMEM));
		return MIG_EXIT_FAIL;
	}
	for (size_t i = 0; i < n; i++) {
		rows[i].e = &es[i];
		list_query(&rows[i]);
	}
	if (o->json)
		list_json(rows, n);
	else
		list_text(rows, n);
	for (size_t i = 0; i < n; i++)
		mig_json_free(rows[i].r);
	free(rows);
	return MIG_EXIT_OK;
}

/* ---- --watch ---- */

/* How often the progress line is redrawn: about 4 times a second, live
 * enough for a person, a trifle for the bus (one query-migrate each). */
#define PROGRESS_TICK_MS 250
/* Weight of the newest sample in the smoothed rate: steady over a few
 * ticks, yet it follows a change of --max-bandwidth within a second. */
#define PROGRESS_RATE_WEIGHT 0.3

struct watcher {
	struct mig_qmp *q;
	char side[16];
	enum mig_state last;
	bool seen;     /* a MIGRATION event was seen */
	bool done;     /* terminal state reached or bus gone */
	bool gone;
	/* for the progress line, from query-migrate and events */
	char state[32];
	bool sampled;
	int64_t total, done_bytes, t_ms;
	double rate;   /* bytes no longer remaining per second, smoothed */
};

/* The live progress line (a terminal only): redrawn in place with "\r"
 * and erase-to-end-of-line; cleared before an event line is printed and
 * drawn again after it, so event lines are never mixed into it; ended
 * with a newline when the watch ends. */
struct progress {
	bool on;
	bool drawn;    /* the cursor is at the end of the drawn line */
	int64_t next_ms;
	char line[512];
};

struct watch {
	const struct mig_status_opts *o;
	struct watcher ws[2];
	size_t n;
	struct progress pg;
};

static int64_t now_ms(void)
{
	return (int64_t)(mig_now_ns() / 1000000);
}

static void progress_clear(struct watch *wt)
{
	if (wt->pg.drawn)
		fputs("\r\033[K", stdout);
}

static void progress_redraw(struct watch *wt)
{
	if (wt->pg.drawn) {
		printf("\r%s\033[K", wt->pg.line);
		fflush(stdout);
	}
}

static void progress_render(struct watch *wt);

/* One whole line of output (an event), around the progress line, which
 * is drawn again at once with the state the event brought. */
static void out_line(struct watch *wt, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void out_line(struct watch *wt, const char *fmt, ...)
{
	va_list ap;

	progress_clear(wt);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	if (wt->pg.drawn)
		progress_render(wt);
	fflush(stdout);
}

static void sample(struct watcher *w)
{
	struct mig_json *ret = NULL;
	const char *st;
	int64_t total = 0, done, t = now_ms();
	double mbps;

	if (mig_qmp_execute(w->q, "query-migrate", NULL, &ret, NULL, 0,
			    MIG_CLIENT_RPC_MS) < 0)
		return;
	st = mig_json_get_str(ret, "status");
	if (st && !w->done)
		snprintf(w->state, sizeof(w->state), "%s", st);
	done = ram_done(mig_json_get(ret, "ram"), &total);
	if (done >= 0) {
		if (!w->sampled && mig_json_get_double(mig_json_get(ret, "ram"),
						       "mbps", &mbps))
			w->rate = mbps * 1e6 / 8; /* a first guess: the wire rate */
		else if (w->sampled && t > w->t_ms && done >= w->done_bytes)
			w->rate = (1 - PROGRESS_RATE_WEIGHT) * w->rate +
				  PROGRESS_RATE_WEIGHT * (double)(done - w->done_bytes) *
				  1000.0 / (double)(t - w->t_ms);
		w->total = total;
		w->done_bytes = done;
		w->t_ms = t;
		w->sampled = true;
	}
	mig_json_free(ret);
}

static void fmt_eta(double secs, char *buf, size_t len)
{
	unsigned long long s = (unsigned long long)(secs + 0.5);

	if (s >= 3600)
		snprintf(buf, len, "%llu:%02llu:%02llu", s / 3600, s / 60 % 60, s % 60);
	else
		snprintf(buf, len, "%llu:%02llu", s / 60, s % 60);
}

static size_t term_cols(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1)
		return ws.ws_col;
	return 80;
}

static bool watcher_ended(const struct watcher *w)
{
	return w->seen && mig_state_terminal(w->last);
}

/* Bytes done as shown: all of them once completed, even if the last
 * sample came a moment before the end. */
static int64_t shown_done(const struct watcher *w)
{
	return watcher_ended(w) && w->last == MIG_STATE_COMPLETED ? w->total
								     : w->done_bytes;
}

/* " 62.1%", or nothing before the first sample with RAM. */
static int fmt_pct(const struct watcher *w, char *buf, size_t len)
{
	if (!w->sampled || w->total <= 0)
		return snprintf(buf, len, "%s", "");
	return snprintf(buf, len, " %.1f%%", percent(shown_done(w), w->total));
}

/* The side that decides when it ends: the one furthest behind (on a
 * loopback migration, the destination: pages sent are not yet there). */
static const struct watcher *lead(const struct watch *wt)
{
	const struct watcher *best = NULL;

	for (size_t i = 0; i < wt->n; i++) {
		const struct watcher *w = &wt->ws[i];

		if (!w->sampled || watcher_ended(w) || w->total <= 0)
			continue;
		if (!best || percent(w->done_bytes, w->total) <
			     percent(best->done_bytes, best->total))
			best = w;
	}
	return best;
}

/* "source postcopy-active 62.1%  31.2 MiB/s  ETA 0:02"; with both sides in
 * one state "postcopy-active  source 62.1%  destination 61.8%  ...". Never
 * wider than the terminal: a wrapped line cannot be redrawn with "\r". */
static void progress_render(struct watch *wt)
{
	const struct watcher *a = &wt->ws[0], *b = &wt->ws[1], *l = lead(wt);
	size_t cap = MIG_MIN(sizeof(wt->pg.line), term_cols());
	char *line = wt->pg.line, pa[16], pb[16], rate[32], eta[32];
	size_t len = sizeof(wt->pg.line);
	int k;

	fmt_pct(a, pa, sizeof(pa));
	if (wt->n == 1)
		k = snprintf(line, len, "%s %s%s", a->side, a->state, pa);
	else if (fmt_pct(b, pb, sizeof(pb)) >= 0 && !strcmp(a->state, b->state))
		k = snprintf(line, len, "%s  %s%s  %s%s", a->state, a->side, pa,
			     b->side, pb);
	else
		k = snprintf(line, len, "%s %s%s  %s %s%s", a->side, a->state, pa,
			     b->side, b->state, pb);
	if (l && l->rate >= 1 && k >= 0 && (size_t)k < len) {
		k += snprintf(line + k, len - k, "  %s/s",
			      mig_fmt_bytes((uint64_t)l->rate, rate, sizeof(rate)));
		fmt_eta((double)(l->total - l->done_bytes) / l->rate, eta, sizeof(eta));
		if ((size_t)k < len)
			snprintf(line + k, len - k, "  ETA %s", eta);
	}
	if (strlen(line) >= cap)
		line[cap - 1] = '\0';
	wt->pg.drawn = true;
	progress_redraw(wt);
}

static void progress_tick(struct watch *wt)
{
	for (size_t i = 0; i < wt->n; i++)
		if (!wt->ws[i].done)
			sample(&wt->ws[i]);
	progress_render(wt);
	wt->pg.next_ms = now_ms() + PROGRESS_TICK_MS;
}

/* The last figures, then the newline that leaves the line on screen. */
static void progress_finish(struct watch *wt)
{
	if (!wt->pg.drawn)
		return;
	for (size_t i = 0; i < wt->n; i++)
		if (!wt->ws[i].gone)
			sample(&wt->ws[i]);
	progress_render(wt);
	putchar('\n');
	fflush(stdout);
	wt->pg.drawn = false;
}

struct hist_item {
	int64_t t_us;
	size_t order;
	struct watcher *w;
	const struct mig_json *ev;
};

static void watcher_side(struct watcher *w, const struct mig_client_target *t)
{
	struct mig_json *ret = NULL;
	const char *s = t->side;

	if (!s && mig_qmp_execute(w->q, "query-migrate", NULL, &ret, NULL, 0,
				  MIG_CLIENT_RPC_MS) == 0)
		s = mig_json_get_str(ret, "side");
	snprintf(w->side, sizeof(w->side), "%s", s ? s : "-");
	snprintf(w->state, sizeof(w->state), "-");
	mig_json_free(ret);
}

static void watch_event(struct watch *wt, struct watcher *w,
			const struct mig_json *ev)
{
	enum mig_state st;
	char ts[64];
	int64_t pass;

	if (!mig_client_event_state(ev, &st)) {
		/* other events (MIGRATION_PASS) are shown, but end nothing */
		const char *name = mig_json_get_str(ev, "event");

		if (wt->o->json) {
			print_json(ev);
		} else if (name && !strcmp(name, "MIGRATION_PASS") &&
			   mig_json_get_int(mig_json_get(ev, "data"), "pass", &pass)) {
			mig_status_format_time(ev, ts, sizeof(ts));
			out_line(wt, "%s %s pass %lld", ts, w->side, (long long)pass);
		}
		fflush(stdout);
		return;
	}
	w->last = st;
	w->seen = true;
	w->done = mig_state_terminal(st);
	snprintf(w->state, sizeof(w->state), "%s", mig_state_name(st));
	if (wt->o->json) {
		print_json(ev);
	} else {
		mig_status_format_time(ev, ts, sizeof(ts));
		out_line(wt, "%s %s %s", ts, w->side, mig_state_name(st));
	}
	fflush(stdout);
}

static int64_t event_us(const struct mig_json *ev)
{
	const struct mig_json *ts = mig_json_get(ev, "timestamp");
	int64_t s = 0, us = 0;

	mig_json_get_int(ts, "seconds", &s);
	mig_json_get_int(ts, "microseconds", &us);
	return s * 1000000 + us;
}

static int by_time(const void *a, const void *b)
{
	const struct hist_item *x = a, *y = b;

	if (x->t_us != y->t_us)
		return x->t_us < y->t_us ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* Both histories, merged in time order. */
static int watch_history(struct watch *wt)
{
	struct mig_json *hist[2] = { NULL, NULL };
	struct hist_item *items = NULL;
	size_t total = 0, k = 0, n = wt->n;
	int r = 0;

	for (size_t i = 0; i < n && r == 0; i++) {
		r = mig_qmp_query_events(wt->ws[i].q, &hist[i], MIG_CLIENT_RPC_MS);
		total += r == 0 ? mig_json_array_len(hist[i]) : 0;
	}
	if (r == 0 && total && !(items = calloc(total, sizeof(*items))))
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < n; i++)
		for (size_t j = 0; j < mig_json_array_len(hist[i]); j++, k++) {
			const struct mig_json *ev = mig_json_array_at(hist[i], j);

			items[k] = (struct hist_item){ event_us(ev), k, &wt->ws[i], ev };
		}
	if (r == 0 && total)
		qsort(items, total, sizeof(*items), by_time);
	for (size_t i = 0; r == 0 && i < total; i++)
		watch_event(wt, items[i].w, items[i].ev);
	free(items);
	mig_json_free(hist[0]);
	mig_json_free(hist[1]);
	return r;
}

/* Take every event already readable from one bus. */
static void watch_drain(struct watch *wt, struct watcher *w)
{
	struct mig_json *ev;
	int r;

	while (!w->done && (r = mig_qmp_next_event(w->q, &ev, 0)) == 0) {
		watch_event(wt, w, ev);
		mig_json_free(ev);
	}
	if (!w->done && r == -ECONNRESET)
		w->done = w->gone = true;
}

static int watch_live(struct watch *wt)
{
	int64_t deadline = wt->o->timeout_ms < 0 ? -1 : now_ms() + wt->o->timeout_ms;

	for (;;) {
		struct pollfd p[2];
		size_t np = 0;
		int64_t now, wait;

		for (size_t i = 0; i < wt->n; i++) {
			watch_drain(wt, &wt->ws[i]);
			if (!wt->ws[i].done)
				p[np++] = (struct pollfd){ .fd = mig_qmp_fd(wt->ws[i].q),
							   .events = POLLIN };
		}
		if (!np)
			return 0;
		now = now_ms();
		if (deadline >= 0 && now >= deadline)
			return -ETIMEDOUT;
		if (wt->pg.on && now >= wt->pg.next_ms) {
			/* then drain again: events may have come with the replies */
			progress_tick(wt);
			continue;
		}
		wait = deadline < 0 ? -1 : deadline - now;
		if (wt->pg.on && (wait < 0 || wt->pg.next_ms - now < wait))
			wait = wt->pg.next_ms - now;
		poll(p, np, (int)MIG_MIN(wait, INT32_MAX));
	}
}

static int watch_exit(const struct watcher *ws, size_t n)
{
	int status = MIG_EXIT_OK;

	for (size_t i = 0; i < n; i++) {
		if (ws[i].gone && !(ws[i].seen && mig_state_terminal(ws[i].last))) {
			mig_client_error("%s: the engine went away", ws[i].side);
			status = MIG_EXIT_FAIL;
		} else if (ws[i].last != MIG_STATE_COMPLETED) {
			status = MIG_EXIT_FAIL;
		}
	}
	return status;
}

static int watch(const struct mig_status_opts *o, const struct mig_client_targets *ts)
{
	struct watch wt = { .o = o };
	int r, status = MIG_EXIT_UNAVAILABLE;

	/* only for a person at a terminal: never in a pipe, a file or JSON */
	wt.pg.on = !o->json && !o->quiet && isatty(STDOUT_FILENO);
	for (size_t i = 0; i < ts->n; i++) {
		wt.ws[wt.n].q = mig_client_connect(&o->sel, &ts->t[i]);
		if (wt.ws[wt.n].q)
			watcher_side(&wt.ws[wt.n++], &ts->t[i]);
	}
	if (!wt.n)
		goto out;
	r = watch_history(&wt);
	if (r == 0)
		r = watch_live(&wt);
	progress_finish(&wt);
	if (r == -ETIMEDOUT) {
		status = MIG_EXIT_TIMEOUT;
	} else if (r < 0) {
		mig_client_error("bus: %s", strerror(-r));
		status = MIG_EXIT_FAIL;
	} else {
		status = watch_exit(wt.ws, wt.n);
	}
out:
	for (size_t i = 0; i < wt.n; i++)
		mig_qmp_close(wt.ws[i].q);
	return status;
}

/* ---- --wait-for ---- */

static int wait_for(const struct mig_status_opts *o, const struct mig_client_target *t)
{
	struct mig_qmp *q = mig_client_connect(&o->sel, t);
	enum mig_state last = MIG_STATE_NONE;
	int r;

	if (!q)
		return MIG_EXIT_UNAVAILABLE;
	r = mig_client_wait_for(q, o->want, o->nwant, o->timeout_ms, &last);
	mig_qmp_close(q);
	switch (r) {
	case 0:
		return MIG_EXIT_OK;
	case -ETIMEDOUT:
		mig_client_error("timed out in state %s", mig_state_name(last));
		return MIG_EXIT_TIMEOUT;
	case -ECANCELED:
		mig_client_error("migration ended: %s", mig_state_name(last));
		return MIG_EXIT_FAIL;
	case -ECONNRESET:
		mig_client_error("the engine went away (last state %s)",
				 mig_state_name(last));
		return MIG_EXIT_FAIL;
	default:
		mig_client_error("bus: %s", strerror(-r));
		return MIG_EXIT_FAIL;
	}
}

/* implicit_name(): list them all instead of showing one. */
#define LIST_ALL (-1)

/* No name and no --bus: "default" if it is here, else the only name here
 * (into *name, which points into *es), else LIST_ALL when there are
 * several. 0 to go on with *name, LIST_ALL, or an exit status. */
static int implicit_name(const struct mig_status_opts *o, const char **name,
			 struct mig_client_entry **es, size_t *n)
{
	size_t names;
	int r = mig_client_scan(o->sel.side, es, n);

	if (r < 0) {
		/* then as before: "default", and its error if it is not here */
		mig_dbg("client", "runtime directory: %s", strerror(-r));
		return 0;
	}
	names = mig_client_scan_names(*es, *n);
	for (size_t i = 0; i < *n; i++)
		if (!strcmp((*es)[i].name, "default"))
			return 0;
	if (names == 0 && o->sel.side == MIG_CLIENT_SIDE_ANY) {
		char dir[256];

		if (mig_runtime_dir(dir, sizeof(dir), false) < 0)
			snprintf(dir, sizeof(dir), "$MIG_RUNTIME_DIR");
		mig_client_error("no migration on this host (no status bus in %s)", dir);
		return MIG_EXIT_UNAVAILABLE;
	}
	if (names == 1)
		*name = (*es)[0].name;
	if (names <= 1)
		return 0;
	if (o->watch || o->nwant)
		return mig_client_usage("%zu migrations run on this host (%s, %s%s): name one",
					names, (*es)[0].name, (*es)[*n - 1].name,
					names > 2 ? ", ..." : "");
	return LIST_ALL;
}

int mig_status_run(const struct mig_status_opts *opts)
{
	struct mig_status_opts o = *opts;
	struct mig_client_entry *es = NULL;
	struct mig_client_targets ts;
	size_t n = 0;
	int r = 0;

	if (!o.sel.bus && !o.sel.name) {
		r = implicit_name(&o, &o.sel.name, &es, &n);
		if (r == LIST_ALL) {
			r = list(&o, es, n);
			goto out;
		}
		if (r)
			goto out;
	}
	r = mig_client_resolve(&o.sel, &ts);
	if (r)
		goto out;
	if (o.watch)
		r = watch(&o, &ts);
	else if (o.nwant && ts.n > 1)
		r = mig_client_usage("both sides of '%s' run on this host: pick one with --side",
				     o.sel.name ? o.sel.name : "default");
	else if (o.nwant)
		r = wait_for(&o, &ts.t[0]);
	else
		r = show(&o, &ts);
out:
	free(es);
	return r;
}
