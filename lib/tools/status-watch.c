// SPDX-License-Identifier: MIT
/*
 * mig-status --watch: each bus's event history first, then its live
 * events, so a watcher started late still sees the whole migration, in
 * order and each event once; with both sides on one host the two
 * histories are merged by timestamp, and the live streams are polled
 * together, what both have ready at once shown in time order too.
 * On a terminal the wait between events is cut into ticks that redraw a
 * progress line from query-migrate; events still wake it at once.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "base/cli.h"
#include "base/exitcodes.h"
#include "base/log.h"
#include "tools/status-int.h"
#include "base/util.h"

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
	uint64_t next_ns; /* the next redraw, a mig_deadline_ns() */
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
		mig_log_sanitize(st, w->state, sizeof(w->state));
	done = status_ram_done(mig_json_get(ret, "ram"), &total);
	if (done >= 0) {
		if (!w->sampled &&
		    status_figure(mig_json_get(ret, "ram"), "mbps", &mbps) > 0)
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
	return snprintf(buf, len, " %.1f%%", status_percent(shown_done(w), w->total));
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
		if (!best || status_percent(w->done_bytes, w->total) <
			     status_percent(best->done_bytes, best->total))
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
	wt->pg.next_ns = mig_deadline_ns(PROGRESS_TICK_MS);
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
		s = mig_json_get_str(ret, "x-side");
	mig_log_sanitize(s ? s : "-", w->side, sizeof(w->side));
	snprintf(w->state, sizeof(w->state), "-");
	mig_json_free(ret);
}

/* A peer that failed TLS authentication: its address and the reason, as a
 * hostile bus or peer may have written them (sanitized). */
static void show_refusal(struct watch *wt, struct watcher *w,
			 const struct mig_json *ev)
{
	const struct mig_json *data = mig_json_get(ev, "data");
	const char *peer = mig_json_get_str(data, "peer");
	const char *why = mig_json_get_str(data, "reason");
	char ts[64], p[128], r[512];

	mig_status_format_time(ev, ts, sizeof(ts));
	out_line(wt, "%s %s refused %s: %s", ts, w->side,
		 mig_log_sanitize(peer ? peer : "?", p, sizeof(p)),
		 mig_log_sanitize(why ? why : "?", r, sizeof(r)));
}

static void watch_event(struct watch *wt, struct watcher *w,
			const struct mig_json *ev)
{
	enum mig_state st;
	char ts[64], n[32];
	int64_t pass;

	if (!mig_client_event_state(ev, &st)) {
		/* other events (MIGRATION_PASS, MIG_AUTH_FAILED) are shown,
		 * but end nothing */
		const char *name = mig_json_get_str(ev, "event");

		if (wt->o->json) {
			status_print_json(ev);
		} else if (name && !strcmp(name, "MIG_AUTH_FAILED")) {
			show_refusal(wt, w, ev);
		} else if (name && !strcmp(name, "MIGRATION_PASS") &&
			   status_count(mig_json_get(ev, "data"), "pass", &pass)) {
			mig_status_format_time(ev, ts, sizeof(ts));
			if (pass < 0)
				snprintf(n, sizeof(n), "?");
			else
				snprintf(n, sizeof(n), "%lld", (long long)pass);
			out_line(wt, "%s %s pass %s", ts, w->side, n);
		}
		fflush(stdout);
		return;
	}
	w->last = st;
	w->seen = true;
	w->done = mig_state_terminal(st);
	snprintf(w->state, sizeof(w->state), "%s", mig_state_name(st));
	if (wt->o->json) {
		status_print_json(ev);
	} else {
		mig_status_format_time(ev, ts, sizeof(ts));
		out_line(wt, "%s %s %s", ts, w->side, mig_state_name(st));
	}
	fflush(stdout);
}

/* Its time for the merge; one out of range sorts first. */
static int64_t event_us(const struct mig_json *ev)
{
	int64_t s, us;

	if (!status_event_time(ev, &s, &us))
		return 0;
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

/* Every event already readable from both buses (ROUND_MAX at most: true
 * when there may be more), shown in time order: the two sides' events of
 * one moment must not come out bus by bus. */
#define ROUND_MAX 64

static bool watch_round(struct watch *wt)
{
	struct hist_item items[ROUND_MAX];
	bool closed[2] = { false, false };
	size_t k = 0;

	for (size_t i = 0; i < wt->n; i++) {
		struct watcher *w = &wt->ws[i];
		struct mig_json *ev;
		int r = 0;

		while (!w->done && k < ROUND_MAX &&
		       (r = mig_qmp_next_event(w->q, &ev, 0)) == 0) {
			items[k] = (struct hist_item){ event_us(ev), k, w, ev };
			k++;
		}
		closed[i] = r == -ECONNRESET;
	}
	qsort(items, k, sizeof(*items), by_time);
	for (size_t i = 0; i < k; i++) {
		if (!items[i].w->done)
			watch_event(wt, items[i].w, items[i].ev);
		mig_json_free((struct mig_json *)items[i].ev);
	}
	/* gone only if it closed before reaching an end of its own */
	for (size_t i = 0; i < wt->n; i++)
		if (closed[i] && !wt->ws[i].done)
			wt->ws[i].done = wt->ws[i].gone = true;
	return k == ROUND_MAX;
}

static int watch_live(struct watch *wt)
{
	uint64_t deadline = mig_deadline_ns(wt->o->timeout_ms);

	for (;;) {
		struct pollfd p[2];
		size_t np = 0;
		int wait, tick;

		while (watch_round(wt))
			;
		for (size_t i = 0; i < wt->n; i++) {
			if (!wt->ws[i].done)
				p[np++] = (struct pollfd){ .fd = mig_qmp_fd(wt->ws[i].q),
							   .events = POLLIN };
		}
		if (!np)
			return 0;
		wait = mig_deadline_left_ms(deadline);
		if (wait == 0)
			return -ETIMEDOUT;
		tick = wt->pg.on ? mig_deadline_left_ms(wt->pg.next_ns) : -1;
		if (tick == 0) {
			/* then drain again: events may have come with the replies */
			progress_tick(wt);
			continue;
		}
		if (tick > 0 && (wait < 0 || tick < wait))
			wait = tick;
		poll(p, np, wait);
	}
}

static int watch_exit(const struct watcher *ws, size_t n)
{
	int status = MIG_EXIT_OK;

	for (size_t i = 0; i < n; i++) {
		if (ws[i].gone && !(ws[i].seen && mig_state_terminal(ws[i].last))) {
			mig_cli_error("%s: the engine went away", ws[i].side);
			status = MIG_EXIT_UNAVAILABLE; /* as mig_client_wait_exit() */
		} else if (ws[i].last != MIG_STATE_COMPLETED && !status) {
			status = MIG_EXIT_FAIL;
		}
	}
	return status;
}

int status_watch(const struct mig_status_opts *o, const struct mig_client_targets *ts)
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
		mig_cli_error("bus: %s", strerror(-r));
		status = MIG_EXIT_FAIL;
	} else {
		status = watch_exit(wt.ws, wt.n);
	}
out:
	for (size_t i = 0; i < wt.n; i++)
		mig_qmp_close(wt.ws[i].q);
	return status;
}
