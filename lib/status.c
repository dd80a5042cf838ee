// SPDX-License-Identifier: MIT
/*
 * mig-status: see status.h. --watch reads each bus's event history first,
 * then its live events, so a watcher started late still sees the whole
 * migration, in order and each event once; with both sides on one host the
 * two histories are merged by timestamp and the live streams polled
 * together.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exitcodes.h"
#include "status.h"
#include "util.h"

/* Width of the key column: fits "postcopy requests:". */
#define KEY_WIDTH 19

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

static void print_str(FILE *f, const char *ind, const struct mig_json *r,
		      const char *key, const char *label)
{
	const char *v = mig_json_get_str(r, key);

	if (v)
		kv(f, ind, label, "%s", v);
}

static void print_ms(FILE *f, const char *ind, const struct mig_json *r,
		     const char *key, const char *label, bool seconds)
{
	int64_t v;

	if (!mig_json_get_int(r, key, &v))
		return;
	if (seconds)
		kv(f, ind, label, "%.3f s", v / 1000.0);
	else
		kv(f, ind, label, "%lld ms", (long long)v);
}

static double percent(int64_t part, int64_t whole)
{
	if (whole <= 0)
		return 0;
	return MIG_MIN(100.0, 100.0 * (double)part / (double)whole);
}

static void print_ram(FILE *f, const char *ind, const struct mig_json *ram)
{
	int64_t total = 0, xfer, rem, psize = MIG_PAGE_SIZE, pages, norm, dup, pps;
	bool has_total = mig_json_get_int(ram, "total", &total);
	char a[32], b[32];
	double mbps;

	mig_json_get_int(ram, "page-size", &psize);
	if (psize <= 0)
		psize = MIG_PAGE_SIZE;
	if (mig_json_get_int(ram, "transferred", &xfer)) {
		/* progress: what is no longer remaining (resends make
		 * transferred exceed total on the source) */
		int64_t done = mig_json_get_int(ram, "remaining", &rem) ?
			       total - rem : xfer;

		if (has_total)
			kv(f, ind, "transferred", "%s of %s (%.1f%%)",
			   mig_fmt_bytes(xfer, a, sizeof(a)),
			   mig_fmt_bytes(total, b, sizeof(b)), percent(done, total));
		else
			kv(f, ind, "transferred", "%s", mig_fmt_bytes(xfer, a, sizeof(a)));
	}
	if (mig_json_get_int(ram, "remaining", &rem))
		kv(f, ind, "remaining", "%s", mig_fmt_bytes(rem, a, sizeof(a)));
	if (mig_json_get_int(ram, "pages-present", &pages) ||
	    (mig_json_get_int(ram, "normal", &norm) &&
	     mig_json_get_int(ram, "duplicate", &dup) && (pages = norm + dup, true))) {
		if (has_total)
			kv(f, ind, "pages", "%lld of %lld (%.1f%%)", (long long)pages,
			   (long long)(total / psize), percent(pages, total / psize));
		else
			kv(f, ind, "pages", "%lld", (long long)pages);
	}
	if (mig_json_get_double(ram, "mbps", &mbps)) {
		if (mig_json_get_int(ram, "pages-per-second", &pps))
			kv(f, ind, "throughput", "%.1f Mbps, %lld pages/s", mbps,
			   (long long)pps);
		else
			kv(f, ind, "throughput", "%.1f Mbps", mbps);
	}
	if (mig_json_get_int(ram, "postcopy-requests", &pages))
		kv(f, ind, "postcopy requests", "%lld", (long long)pages);
}

static void print_latency(FILE *f, const char *ind, const struct mig_json *lat)
{
	int64_t n, p50 = 0, p90 = 0, p99 = 0, max = 0;

	if (!mig_json_get_int(lat, "count", &n) || n <= 0)
		return;
	mig_json_get_int(lat, "p50-us", &p50);
	mig_json_get_int(lat, "p90-us", &p90);
	mig_json_get_int(lat, "p99-us", &p99);
	mig_json_get_int(lat, "max-us", &max);
	kv(f, ind, "fault latency", "p50 %lld us, p90 %lld us, p99 %lld us, max %lld us (%lld faults)",
	   (long long)p50, (long long)p90, (long long)p99, (long long)max,
	   (long long)n);
}

void mig_status_print(FILE *f, const struct mig_json *r, const char *indent)
{
	if (!*indent)
		print_str(f, indent, r, "side", "side");
	print_str(f, indent, r, "name", "name");
	print_str(f, indent, r, "status", "status");
	print_ms(f, indent, r, "total-time", "total time", true);
	print_ms(f, indent, r, "state-time", "state time", true);
	print_ms(f, indent, r, "setup-time", "setup time", false);
	print_ms(f, indent, r, "downtime", "downtime", false);
	print_ram(f, indent, mig_json_get(r, "ram"));
	print_latency(f, indent, mig_json_get(r, "postcopy-latency"));
	print_ms(f, indent, r, "postcopy-blocktime", "blocktime", false);
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

/* ---- --watch ---- */

struct watcher {
	struct mig_qmp *q;
	char side[16];
	enum mig_state last;
	bool seen;     /* a MIGRATION event was seen */
	bool done;     /* terminal state reached or bus gone */
	bool gone;
};

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
	mig_json_free(ret);
}

static void watch_event(const struct mig_status_opts *o, struct watcher *w,
			const struct mig_json *ev)
{
	enum mig_state st;
	char ts[64];
	int64_t pass;

	if (!mig_client_event_state(ev, &st)) {
		/* other events (MIGRATION_PASS) are shown, but end nothing */
		const char *name = mig_json_get_str(ev, "event");

		if (o->json)
			print_json(ev);
		else if (name && !strcmp(name, "MIGRATION_PASS") &&
			 mig_json_get_int(mig_json_get(ev, "data"), "pass", &pass)) {
			mig_status_format_time(ev, ts, sizeof(ts));
			printf("%s %s pass %lld\n", ts, w->side, (long long)pass);
		}
		fflush(stdout);
		return;
	}
	w->last = st;
	w->seen = true;
	w->done = mig_state_terminal(st);
	if (o->json) {
		print_json(ev);
	} else {
		mig_status_format_time(ev, ts, sizeof(ts));
		printf("%s %s %s\n", ts, w->side, mig_state_name(st));
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
static int watch_history(const struct mig_status_opts *o, struct watcher *ws,
			 size_t n)
{
	struct mig_json *hist[2] = { NULL, NULL };
	struct hist_item *items = NULL;
	size_t total = 0, k = 0;
	int r = 0;

	for (size_t i = 0; i < n && r == 0; i++) {
		r = mig_qmp_query_events(ws[i].q, &hist[i], MIG_CLIENT_RPC_MS);
		total += r == 0 ? mig_json_array_len(hist[i]) : 0;
	}
	if (r == 0 && total && !(items = calloc(total, sizeof(*items))))
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < n; i++)
		for (size_t j = 0; j < mig_json_array_len(hist[i]); j++, k++) {
			const struct mig_json *ev = mig_json_array_at(hist[i], j);

			items[k] = (struct hist_item){ event_us(ev), k, &ws[i], ev };
		}
	if (r == 0 && total)
		qsort(items, total, sizeof(*items), by_time);
	for (size_t i = 0; r == 0 && i < total; i++)
		watch_event(o, items[i].w, items[i].ev);
	free(items);
	mig_json_free(hist[0]);
	mig_json_free(hist[1]);
	return r;
}

/* Take every event already readable from one bus. */
static void watch_drain(const struct mig_status_opts *o, struct watcher *w)
{
	struct mig_json *ev;
	int r;

	while (!w->done && (r = mig_qmp_next_event(w->q, &ev, 0)) == 0) {
		watch_event(o, w, ev);
		mig_json_free(ev);
	}
	if (!w->done && r == -ECONNRESET)
		w->done = w->gone = true;
}

static int watch_live(const struct mig_status_opts *o, struct watcher *ws,
		      size_t n)
{
	int64_t deadline = o->timeout_ms < 0 ? -1 :
			   (int64_t)(mig_now_ns() / 1000000) + o->timeout_ms;

	for (;;) {
		struct pollfd p[2];
		size_t np = 0;
		int left = -1;

		for (size_t i = 0; i < n; i++) {
			watch_drain(o, &ws[i]);
			if (!ws[i].done)
				p[np++] = (struct pollfd){ .fd = mig_qmp_fd(ws[i].q),
							   .events = POLLIN };
		}
		if (!np)
			return 0;
		if (deadline >= 0)
			left = (int)MIG_MAX(deadline - (int64_t)(mig_now_ns() / 1000000), 0);
		if (poll(p, np, left) == 0)
			return -ETIMEDOUT;
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
	struct watcher ws[2];
	size_t n = 0;
	int r, status = MIG_EXIT_UNAVAILABLE;

	memset(ws, 0, sizeof(ws));
	for (size_t i = 0; i < ts->n; i++) {
		ws[n].q = mig_client_connect(&o->sel, &ts->t[i]);
		if (ws[n].q)
			watcher_side(&ws[n++], &ts->t[i]);
	}
	if (!n)
		goto out;
	r = watch_history(o, ws, n);
	if (r == 0)
		r = watch_live(o, ws, n);
	if (r == -ETIMEDOUT) {
		status = MIG_EXIT_TIMEOUT;
	} else if (r < 0) {
		mig_client_error("bus: %s", strerror(-r));
		status = MIG_EXIT_FAIL;
	} else {
		status = watch_exit(ws, n);
	}
out:
	for (size_t i = 0; i < n; i++)
		mig_qmp_close(ws[i].q);
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

int mig_status_run(const struct mig_status_opts *o)
{
	struct mig_client_targets ts;
	int r = mig_client_resolve(&o->sel, &ts);

	if (r)
		return r;
	if (o->watch)
		return watch(o, &ts);
	if (o->nwant && ts.n > 1)
		return mig_client_usage("both sides of '%s' run on this host: pick one with --side",
					o->sel.name ? o->sel.name : "default");
	if (o->nwant)
		return wait_for(o, &ts.t[0]);
	return show(o, &ts);
}
