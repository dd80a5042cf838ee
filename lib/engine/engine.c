// SPDX-License-Identifier: MIT
/* Engine glue shared by source and destination: see engine.h. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "core/chan.h"
#include "core/wire.h"
#include "engine/engine.h"
#include "base/log.h"
#include "engine/notify.h"
#include "engine/schema.h"
#include "base/util.h"

static int engine_notify(struct mig_engine *e, const char *url)
{
	e->notify = mig_notify_new(url);
	return e->notify ? 0 : -errno;
}

/* The webhook gets what a QMP client gets: the same event object, with
 * its timestamp, plus which migration and side it comes from. */
static void notify_event(struct mig_engine *e, const char *event,
			 const struct mig_json *data)
{
	struct mig_json *ev = mig_json_new_object(), *ts = mig_json_new_object();
	uint64_t us = mig_wall_us();
	char *text;

	mig_json_add_str(ev, "event", event);
	mig_json_add(ev, "data", data ? mig_json_dup(data) : mig_json_new_object());
	mig_json_add_int(ts, "seconds", (int64_t)(us / 1000000));
	mig_json_add_int(ts, "microseconds", (int64_t)(us % 1000000));
	mig_json_add(ev, "timestamp", ts);
	mig_json_add_str(ev, "name", e->name);
	mig_json_add_str(ev, "side", mig_side_name(e->side));
	text = mig_json_print(ev, false);
	if (text)
		mig_notify_event(e->notify, text);
	free(text);
	mig_json_free(ev);
}

void mig_engine_emit(struct mig_engine *e, const char *event,
		     struct mig_json *data)
{
	if (e->notify)
		notify_event(e, event, data);
	mig_bus_emit(e->bus, event, data);
}

static void emit_state(void *ctx, enum mig_state from, enum mig_state to)
{
	struct mig_engine *e = ctx;
	struct mig_json *data = mig_json_new_object();

	mig_json_add_str(data, "status", mig_state_name(to));
	mig_engine_emit(e, "MIGRATION", data);
	mig_info("state", "%s -> %s", mig_state_name(from), mig_state_name(to));
}

static int64_t ms(uint64_t ns)
{
	return (int64_t)(ns / 1000000);
}

/* "mbps" and "pages-per-second" are current rates, as QEMU's are: over
 * the last second or more (since the previous query, if that is longer),
 * so a paused link reads 0, not the average of what went before. Once the
 * migration has ended they are the average over the transfer, as QEMU
 * reports a completed one. Bus thread only. */
#define RATE_WINDOW_NS 1000000000ull

static void rates(struct mig_engine *e, uint64_t now, uint64_t bytes,
		  uint64_t pages, double *mbps, int64_t *pps)
{
	uint64_t t0 = e->t_pump_start_ns ? e->t_pump_start_ns : e->t_start_ns;
	struct mig_rate_sample *a = &e->rate[0], *b = &e->rate[1];
	uint64_t dt, db, dp;

	if (e->t_end_ns) {
		dt = e->t_end_ns > e->t_start_ns ? e->t_end_ns - e->t_start_ns : 0;
		db = bytes;
		dp = pages;
	} else {
		if (!b->t_ns)
			*a = *b = (struct mig_rate_sample){ .t_ns = t0 };
		if (now - b->t_ns >= RATE_WINDOW_NS) {
			*a = *b;
			*b = (struct mig_rate_sample){ now, bytes, pages };
		}
		dt = now - a->t_ns;
		db = bytes - a->bytes;
		dp = pages - a->pages;
	}
	*mbps = dt ? db * 8.0 * 1e3 / (double)dt : 0;
	*pps = dt ? (int64_t)(dp * 1e9 / (double)dt) : 0;
}

/* MigrationStats, every mandatory member of QEMU's, then mig's x- ones.
 * Bytes by phase: precopy up to the guest's stop, downtime until it runs
 * on the destination, postcopy after. */
static void add_ram(struct mig_engine *e, struct mig_json *ret, uint64_t now)
{
	struct mig_json *ram = mig_json_new_object();
	uint64_t normal = e->st.normal, zero = e->st.zero;
	uint64_t total = e->ram_bytes, pages = total / MIG_PAGE_SIZE;
	uint64_t done = e->side == MIG_SIDE_DEST ? e->st.present : normal + zero;
	uint64_t bytes = e->st.bytes;
	uint64_t stop = e->t_stop_ns ? e->bytes_at_stop : bytes;
	uint64_t run = e->t_run_ns ? e->bytes_at_run : MIG_MAX(stop, bytes);
	int64_t pps;
	double mbps;

	if (done > pages)
		done = pages;
	rates(e, now, bytes, normal + zero, &mbps, &pps);
	mig_json_add_int(ram, "transferred", bytes);
	mig_json_add_int(ram, "remaining", (pages - done) * MIG_PAGE_SIZE);
	mig_json_add_int(ram, "total", total);
	mig_json_add_int(ram, "duplicate", zero);
	mig_json_add_int(ram, "normal", normal);
	mig_json_add_int(ram, "normal-bytes", normal * MIG_PAGE_SIZE);
	mig_json_add_int(ram, "dirty-pages-rate", 0);
	mig_json_add_double(ram, "mbps", mbps);
	mig_json_add_int(ram, "dirty-sync-count", 0);
	mig_json_add_int(ram, "postcopy-requests", e->st.requests);
	mig_json_add_int(ram, "page-size", MIG_PAGE_SIZE);
	mig_json_add_int(ram, "multifd-bytes", e->st.bulk_bytes);
	mig_json_add_int(ram, "pages-per-second", pps);
	mig_json_add_int(ram, "precopy-bytes", stop);
	mig_json_add_int(ram, "downtime-bytes", run - stop);
	mig_json_add_int(ram, "postcopy-bytes", bytes > run ? bytes - run : 0);
	mig_json_add_int(ram, "dirty-sync-missed-zero-copy", 0);
	if (e->side == MIG_SIDE_DEST)
		mig_json_add_int(ram, "x-pages-present", e->st.present);
	mig_json_add(ret, "ram", ram);
}

/* MigrationInfo as QEMU fills it (downtime once completed, on the source),
 * and mig's own members, x- prefixed so they never meet a future QEMU's. */
static struct mig_json *query(struct mig_engine *e)
{
	struct mig_json *ret = mig_json_new_object();
	uint64_t now = mig_now_ns();
	uint64_t end = e->t_end_ns ? e->t_end_ns : now;
	enum mig_state st;

	pthread_mutex_lock(&e->lock);
	st = mig_sm_get(e->sm);
	mig_json_add_str(ret, "status", mig_state_name(st));
	if (e->error[0])
		mig_json_add_str(ret, "error-desc", e->error);
	pthread_mutex_unlock(&e->lock);
	if (e->t_start_ns) {
		mig_json_add_int(ret, "total-time", ms(end - e->t_start_ns));
		if (e->t_setup_ns)
			mig_json_add_int(ret, "setup-time",
					 ms(e->t_setup_ns - e->t_start_ns));
	}
	if (e->downtime_ns && st == MIG_STATE_COMPLETED)
		mig_json_add_int(ret, "downtime", ms(e->downtime_ns + 500000));
	if (e->ram_bytes)
		add_ram(e, ret, now);
	mig_json_add_str(ret, "x-side", mig_side_name(e->side));
	mig_json_add_str(ret, "x-name", e->name);
	if (e->uuid_str[0])
		mig_json_add_str(ret, "x-uuid", e->uuid_str);
	mig_json_add_int(ret, "x-state-time", ms(now - mig_sm_since_ns(e->sm)));
	if (e->downtime_ns)
		mig_json_add_int(ret, "x-downtime-us", (int64_t)(e->downtime_ns / 1000));
	if (e->has_digest) {
		char hex[17];

		snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)e->digest);
		mig_json_add_str(ret, "x-ram-digest", hex);
	}
	if (e->ops && e->ops->query)
		e->ops->query(e, ret);
	return ret;
}

static int on_command(void *ctx, const char *cmd, const struct mig_json *args,
		      struct mig_json **ret, char *desc, size_t desclen)
{
	struct mig_engine *e = ctx;

	if (!strcmp(cmd, "query-migrate")) {
		*ret = query(e);
		return 0;
	}
	return mig_engine_command(e, cmd, args, ret, desc, desclen);
}

/* A handler would run on whichever thread the kernel picks, possibly
 * against an engine being freed, and a signal between the loop reading its
 * events and clearing them would be lost; a signalfd read in the control
 * loop has neither problem. */
static int block_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL))
		return -1;
	signal(SIGPIPE, SIG_IGN);
	return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

int mig_engine_init(struct mig_engine *e, enum mig_side side,
		    const struct mig_cli_args *c,
		    const struct mig_engine_ops *ops, void *ctx)
{
	const char *bus_path = c->bus;

	memset(e, 0, sizeof(*e));
	e->efd = e->sfd = -1;
	e->side = side;
	e->ops = ops;
	e->ctx = ctx;
	e->link_timeout_ms = c->link_timeout_ms > 0 ? c->link_timeout_ms :
			     MIG_LINK_TIMEOUT_MS_DEFAULT;
	snprintf(e->name, sizeof(e->name), "%s", c->name);
	snprintf(e->bus_path, sizeof(e->bus_path), "%s", bus_path);
	for (int i = 0; i < MIG_CHAN__COUNT; i++)
		e->chan_fd[i] = -1;
	pthread_mutex_init(&e->lock, NULL);
	if (mig_engine_tls_init(e, c) < 0)
		return -EINVAL;
	e->sfd = block_signals();
	if (e->sfd < 0)
		return -errno;
	e->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->efd < 0)
		return -errno;
	e->sm = mig_sm_new(side, emit_state, e);
	if (!e->sm)
		return -ENOMEM;
	e->bus = mig_bus_open(bus_path, mig_schema_json, on_command, e);
	if (!e->bus && errno == EEXIST)
		mig_err("bus", "%s exists and is not a socket: left alone; "
			"choose another --bus or --name", bus_path);
	else if (!e->bus && errno != EADDRINUSE)
		mig_err("bus", "cannot serve the status bus at %s: %s", bus_path,
			strerror(errno));
	if (!e->bus)
		return -errno;
	return c->notify_url ? engine_notify(e, c->notify_url) : 0;
}

void mig_engine_fini(struct mig_engine *e)
{
	mig_notify_free(e->notify);
	e->notify = NULL;
	mig_bus_close(e->bus);
	e->bus = NULL;
	mig_engine_tls_fini(e); /* after the bus: its thread may set them */
	mig_sm_free(e->sm);
	e->sm = NULL;
	mig_latency_free(e->lat);
	e->lat = NULL;
	if (e->efd >= 0)
		close(e->efd);
	if (e->sfd >= 0)
		close(e->sfd);
	e->efd = e->sfd = -1;
	pthread_mutex_destroy(&e->lock);
}

int mig_engine_move(struct mig_engine *e, enum mig_state to)
{
	int r = mig_sm_move(e->sm, to), g;

	if (r < 0) {
		mig_dbg("state", "refused move %s -> %s",
			mig_state_name(mig_sm_get(e->sm)), mig_state_name(to));
		return r;
	}
	/* the guest keeps the state we reached, for whoever restarts us */
	if (e->bound && (g = mig_guest_set_state(e->bound, to)) < 0)
		mig_dbg("guest", "recording state %s: %s", mig_state_name(to),
			strerror(-g));
	return 0;
}

void mig_engine_mark_stopped(struct mig_engine *e)
{
	e->bytes_at_stop = e->st.bytes;
	e->t_stop_ns = mig_now_ns();
}

void mig_engine_mark_running(struct mig_engine *e)
{
	e->bytes_at_run = e->st.bytes;
	e->t_run_ns = mig_now_ns();
}

enum mig_state mig_engine_state(struct mig_engine *e)
{
	return mig_sm_get(e->sm);
}

void mig_engine_signal(struct mig_engine *e)
{
	uint64_t one = 1;

	if (write(e->efd, &one, sizeof(one)) < 0) {
		/* counter saturated: the loop is awake anyway */
	}
}

void mig_engine_post(struct mig_engine *e, unsigned ev)
{
	pthread_mutex_lock(&e->lock);
	e->pending |= ev;
	pthread_mutex_unlock(&e->lock);
	mig_engine_signal(e);
}

void mig_engine_pollfds(struct mig_engine *e, struct pollfd p[MIG_ENGINE_NPOLL])
{
	p[0] = (struct pollfd){ .fd = e->efd, .events = POLLIN };
	p[1] = (struct pollfd){ .fd = e->sfd, .events = POLLIN };
}

unsigned mig_engine_take(struct mig_engine *e)
{
	struct signalfd_siginfo si;
	uint64_t v;
	unsigned ev = 0;

	if (read(e->efd, &v, sizeof(v)) < 0) {
		/* nothing new: the bits below may still be set */
	}
	while (e->sfd >= 0 && read(e->sfd, &si, sizeof(si)) == sizeof(si)) {
		mig_dbg("engine", "%s received", strsignal((int)si.ssi_signo));
		e->signalled = true;
		ev |= MIG_EV_SIGNAL;
	}
	pthread_mutex_lock(&e->lock);
	ev |= e->pending;
	e->pending = 0;
	pthread_mutex_unlock(&e->lock);
	return ev;
}

unsigned mig_engine_wait(struct mig_engine *e, int timeout_ms)
{
	struct pollfd p[MIG_ENGINE_NPOLL];

	mig_engine_pollfds(e, p);
	if (poll(p, MIG_ENGINE_NPOLL, timeout_ms) < 0 && errno != EINTR)
		mig_dbg("engine", "poll: %s", strerror(errno));
	return mig_engine_take(e);
}

void mig_engine_error(struct mig_engine *e, const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	mig_err("engine", "%s", buf);
	pthread_mutex_lock(&e->lock);
	memcpy(e->error, buf, sizeof(buf));
	pthread_mutex_unlock(&e->lock);
}

_Static_assert(MIG_CHAN_MAX_BULK == MIG_WIRE_MAX_BULK,
	       "a bulk hello can name every bulk slot");

const char *mig_chan_slot_name(enum mig_chan_slot c)
{
	static const char *const names[MIG_CHAN__COUNT] = {
		"main channel", "preempt channel", "bulk channel 1",
		"bulk channel 2", "bulk channel 3", "bulk channel 4",
		"bulk channel 5", "bulk channel 6", "bulk channel 7",
	};

	return (unsigned)c < MIG_CHAN__COUNT ? names[c] : "channel";
}

const char *mig_chan_slot_tag(enum mig_chan_slot c)
{
	static const char *const tags[MIG_CHAN__COUNT] = {
		"main", "preempt", "bulk1", "bulk2", "bulk3", "bulk4",
		"bulk5", "bulk6", "bulk7",
	};

	return (unsigned)c < MIG_CHAN__COUNT ? tags[c] : "chan";
}

void mig_engine_set_chan(struct mig_engine *e, enum mig_chan_slot slot, int fd)
{
	pthread_mutex_lock(&e->lock);
	e->chan_fd[slot] = fd;
	pthread_mutex_unlock(&e->lock);
}

int mig_engine_get_chan(struct mig_engine *e, enum mig_chan_slot slot)
{
	int fd;

	pthread_mutex_lock(&e->lock);
	fd = e->chan_fd[slot];
	pthread_mutex_unlock(&e->lock);
	return fd;
}

void mig_engine_kick_all(struct mig_engine *e)
{
	/* Under the lock, so no fd is closed (and its number reused) between
	 * reading it and shutting it down. */
	pthread_mutex_lock(&e->lock);
	for (int i = 0; i < MIG_CHAN__COUNT; i++)
		mig_chan_kick(e->chan_fd[i]);
	pthread_mutex_unlock(&e->lock);
}

/* One human line: outcome, time, bytes, throughput (of the postcopy pump
 * once there was one: precopy's bytes came before its clock started),
 * downtime, requests. */
static void summary(struct mig_engine *e, FILE *out)
{
	struct mig_latency_summary ls = { 0 };
	uint64_t end = e->t_end_ns ? e->t_end_ns : mig_now_ns();
	uint64_t t0 = e->t_pump_start_ns ? e->t_pump_start_ns : e->t_start_ns;
	double total = e->t_start_ns ? (end - e->t_start_ns) / 1e9 : 0;
	double pump = end > t0 ? (end - t0) / 1e9 : 0;
	char ram[32], wire[32];

	if (e->lat)
		mig_latency_summary(e->lat, &ls);
	fprintf(out, "%s: %s %s in %.3f s: %s of RAM, %s on the wire",
		mig_log_prog(), mig_side_name(e->side),
		mig_state_name(mig_sm_get(e->sm)), total,
		mig_fmt_bytes(e->ram_bytes, ram, sizeof(ram)),
		mig_fmt_bytes(e->st.bytes, wire, sizeof(wire)));
	if (pump > 0 && e->st.bytes > e->bytes_at_pump)
		fprintf(out, ", %.0f MB/s", (e->st.bytes - e->bytes_at_pump) / 1e6 / pump);
	if (e->downtime_ns)
		fprintf(out, ", downtime %.2f ms", e->downtime_ns / 1e6);
	fprintf(out, ", %llu page requests", (unsigned long long)e->st.requests);
	if (ls.count)
		fprintf(out, " (latency p50 %.0f us, p99 %.0f us, vCPUs blocked "
			"%.1f ms)", ls.p50_ns / 1e3, ls.p99_ns / 1e3, ls.sum_ns / 1e6);
	if (e->side == MIG_SIDE_DEST)
		fprintf(out, ", %llu pages twice",
			(unsigned long long)e->st.duplicates);
	if (e->has_digest)
		fprintf(out, ", ram digest %016llx", (unsigned long long)e->digest);
	fprintf(out, "\n");
}

static void report(struct mig_engine *e, bool asked)
{
	if (asked || (mig_engine_state(e) == MIG_STATE_COMPLETED &&
		      isatty(STDOUT_FILENO))) {
		summary(e, stdout);
		fflush(stdout);
	}
}

static void linger(struct mig_engine *e, int ms)
{
	uint64_t end = mig_deadline_ns(ms);
	int left;

	while (!e->signalled && (left = mig_deadline_left_ms(end)) > 0)
		if (mig_engine_wait(e, left) & MIG_EV_SIGNAL)
			break;
}

void mig_engine_end(struct mig_engine *e, const struct mig_cli_args *c)
{
	report(e, c->summary);
	linger(e, c->linger_ms);
}
