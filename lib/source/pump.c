// SPDX-License-Identifier: MIT
/*
 * Sending pages: runs split into zero and data segments, the background
 * pump that sends every page not yet sent, and the precopy passes that send
 * what the guest dirtied while it runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "core/compress.h"
#include "core/dirty.h"
#include "core/json.h"
#include "core/ram.h"
#include "core/wire.h"
#include "source/source-int.h"

static void src_count_sent(struct src *s, enum mig_chan_slot c, size_t n)
{
	s->e.st.bytes += n;
	if (c >= MIG_CHAN_BULK)
		s->e.st.bulk_bytes += n;
}

int src_send_msg(struct src *s, enum mig_chan_slot c, uint32_t type,
		 const void *p1, size_t l1, const void *p2, size_t l2)
{
	int r;

	pthread_mutex_lock(&s->tx[c]);
	r = mig_wire_send2(s->e.chan_fd[c], type, p1, l1, p2, l2);
	pthread_mutex_unlock(&s->tx[c]);
	if (r == 0)
		src_count_sent(s, c, MIG_WIRE_HDR_BYTES + l1 + l2);
	return r;
}

/* A pump's means: its compression buffer, its pipe to splice pages. */
struct sender {
	uint8_t *scratch; /* NULL without compression */
	int pipe[2];      /* -1s: no splicing */
};

/* A pump's data segment: compressed, or spliced from the guest's memfd
 * (the guest is stopped: postcopy). */
static int send_data(struct src *s, enum mig_chan_slot c, uint64_t first,
		     uint32_t n, struct sender *sd)
{
	uint8_t hdr[MIG_PAGES_HDR_BYTES];
	const uint8_t *data = s->ram + first * MIG_PAGE_SIZE;
	size_t len = (size_t)n * MIG_PAGE_SIZE, clen = 0;
	int r;

	if (sd->scratch)
		clen = mig_compress(data, len, sd->scratch,
				    mig_compress_bound(PUMP_RUN_PAGES * MIG_PAGE_SIZE));
	mig_wire_enc_pages_hdr(hdr, first * MIG_PAGE_SIZE, n,
			       clen ? MIG_PAGES_LZ4 : 0);
	if (clen)
		return src_send_msg(s, c, MIG_MSG_PAGES, hdr, sizeof(hdr),
				    sd->scratch, clen);
	pthread_mutex_lock(&s->tx[c]);
	r = mig_wire_send_file(s->e.chan_fd[c], MIG_MSG_PAGES, hdr, sizeof(hdr),
			       s->memfd, first * MIG_PAGE_SIZE, data, len,
			       sd->pipe);
	pthread_mutex_unlock(&s->tx[c]);
	if (r == 0)
		src_count_sent(s, c, MIG_WIRE_HDR_BYTES + sizeof(hdr) + len);
	return r;
}

/* Send pages [first, first+n) that are all zero or all data, as one message. */
static int send_segment(struct src *s, enum mig_chan_slot c, uint64_t first,
		       uint32_t n, bool zero, struct sender *sd)
{
	uint8_t hdr[MIG_PAGES_HDR_BYTES];
	int r;

	if (zero || !sd) {
		mig_wire_enc_pages_hdr(hdr, first * MIG_PAGE_SIZE, n,
				       zero ? MIG_PAGES_ZERO : 0);
		r = src_send_msg(s, c, MIG_MSG_PAGES, hdr, sizeof(hdr),
				 s->ram + first * MIG_PAGE_SIZE,
				 zero ? 0 : (size_t)n * MIG_PAGE_SIZE);
	} else {
		r = send_data(s, c, first, n, sd);
	}
	if (r < 0)
		return r;
	if (zero)
		s->e.st.zero += n;
	else
		s->e.st.normal += n;
	return 0;
}

/* The extent of the guest's memfd around the pump's cursor, cached: one
 * SEEK_HOLE over fully populated shmem walks to the end of the file, so it
 * is asked once per extent, never once per run. */
struct extent {
	uint64_t start, end; /* pages */
	bool hole;
};

/* Pages the guest never touched are holes in its memfd: known zero without
 * reading them (reading would allocate them). SEEK_DATA counts swapped-out
 * pages as data, so nothing real is ever mistaken for a hole. */
static void extent_at(struct src *s, uint64_t page, struct extent *x)
{
	off_t off = (off_t)(page * MIG_PAGE_SIZE), end;
	/* the end of a hole is data (SEEK_DATA found it there), and nothing
	 * punches holes in a source's memfd: one lseek for where it ends,
	 * not two, once a run for every hole in a sparse guest */
	bool after_hole = x->hole && page == x->end && page < s->npages;

	x->start = page;
	x->end = s->npages;
	if (after_hole && (end = lseek(s->memfd, off, SEEK_HOLE)) > off) {
		x->hole = false;
		x->end = MIG_MIN(s->npages, (uint64_t)end / MIG_PAGE_SIZE);
		return;
	}
	end = lseek(s->memfd, off, SEEK_DATA);
	x->hole = end != off;
	if (end < 0) {
		x->hole = errno == ENXIO; /* ENXIO: holes up to the end */
		return;
	}
	if (!x->hole)
		end = lseek(s->memfd, off, SEEK_HOLE);
	if (end > off)
		x->end = MIG_MIN(s->npages, (uint64_t)end / MIG_PAGE_SIZE);
}

/* How many pages from `first` (at most n) lie in one extent, and whether it
 * is a hole. Without a cache (requests) every page counts as data. */
static uint64_t extent(struct src *s, struct extent *x, uint64_t first,
		       uint64_t n, bool *hole)
{
	*hole = false;
	if (!x)
		return n;
	if (first < x->start || first >= x->end)
		extent_at(s, first, x);
	*hole = x->hole;
	return MIG_MIN(n, x->end - first);
}

/* How long a run from page f may be: a hole in the memfd costs nothing to
 * send, and cut into data-sized runs it would cost a message each 64 KiB
 * of an empty guest. */
static uint64_t run_limit(struct src *s, struct extent *x, uint64_t f)
{
	bool hole;

	extent(s, x, f, 1, &hole);
	return hole ? MIG_MIN(x->end - f, (uint64_t)MIG_WIRE_MAX_RUN_PAGES) :
		      PUMP_RUN_PAGES;
}

/* Send a run of pages, split into zero and data segments. */
static int send_run(struct src *s, enum mig_chan_slot c, uint64_t first,
		    uint64_t n, struct sender *sd, struct extent *x)
{
	while (n) {
		bool zero;
		uint64_t k = extent(s, x, first, n, &zero);
		int r;

		if (!zero) {
			const uint8_t *p = s->ram + first * MIG_PAGE_SIZE;
			uint64_t lim = MIG_MIN(k, (uint64_t)PUMP_RUN_PAGES);

			zero = mig_page_is_zero(p);
			for (k = 1; k < lim; k++)
				if (mig_page_is_zero(p + k * MIG_PAGE_SIZE) != zero)
					break;
		}
		k = MIG_MIN(k, (uint64_t)MIG_WIRE_MAX_RUN_PAGES);
		r = send_segment(s, c, first, (uint32_t)k, zero, sd);
		if (r < 0)
			return r;
		first += k;
		n -= k;
	}
	return 0;
}

/* Requests: never compressed nor spliced (one syscall, not three, on the
 * path a vCPU waits on), no extent cache (data). */
int src_send_pages(struct src *s, enum mig_chan_slot c, uint64_t first,
		   uint64_t n)
{
	return send_run(s, c, first, n, NULL, NULL);
}

/* Keep precopy under max-bandwidth and the postcopy pump under
 * max-postcopy-bandwidth (QEMU's two parameters), measured from the last
 * change of the limit (a raised limit takes effect at once, not after a catch-up burst).
 * Sleeps at most half a heartbeat per call: true means "call again", so
 * that a caller can keep its links alive however low the limit. */
struct throttle {
	_Atomic uint64_t *limit_of; /* &s->max_bw or &s->max_postcopy_bw */
	uint64_t limit, t0_ns, bytes0;
};

static bool throttle(struct src *s, struct throttle *t)
{
	uint64_t limit = atomic_load(t->limit_of), due_ns, now = mig_now_ns();
	struct timespec ts = { 0, 0 };

	if (limit != t->limit) {
		*t = (struct throttle){ t->limit_of, limit, now, s->e.st.bytes };
		return false;
	}
	if (!limit || atomic_load(&s->stop))
		return false;
	due_ns = t->t0_ns + (s->e.st.bytes - t->bytes0) * 1000000000ull / limit;
	if (now >= due_ns)
		return false;
	ts.tv_nsec = (long)MIG_MIN(due_ns - now, MIG_HEARTBEAT_MS * 500000ull);
	nanosleep(&ts, NULL);
	return true;
}

/* The next run for a pump, marked sent; false once every page is. */
static bool claim_run(struct src *s, struct extent *x, uint64_t *first,
		      uint64_t *n)
{
	uint64_t hint = atomic_exchange(&s->pump_hint, 0), p, f, k = 1, lim;

	pthread_mutex_lock(&s->pump_lock);
	/* a vCPU faulted just before `hint`: it will most likely touch
	 * what follows next, so that is where the pumps go on */
	if (hint)
		s->pump_next = hint < s->npages ? hint : 0;
	p = s->pump_next;
	f = mig_bitmap_next_clear(s->sent, p);
	if (f >= s->npages && p)
		f = mig_bitmap_next_clear(s->sent, 0);
	if (f < s->npages) {
		lim = run_limit(s, x, f);
		k = mig_bitmap_clear_run(s->sent, f, lim);
		/* mark before sending: a request racing with us sends again
		 * rather than nobody sending at all */
		mig_bitmap_set_range(s->sent, f, k);
		s->pump_next = f + k;
	}
	pthread_mutex_unlock(&s->pump_lock);
	*first = f;
	*n = k;
	return f < s->npages;
}

/* Every page is sent: the last pump to find so tells the destination. */
static void pump_done(struct src *s)
{
	int r;

	if (atomic_fetch_sub(&s->pumps_busy, 1) != 1)
		return;
	r = src_send_msg(s, MIG_CHAN_MAIN, MIG_MSG_EOS, NULL, 0, NULL, 0);
	if (r < 0)
		src_link_down(s, "main channel", r);
	else
		mig_info("pump", "every page sent");
}

/* Compressing, a pump copies anyway; otherwise it splices, one run at a
 * time through a pipe that holds one (64 KiB, Linux's default size). A pump
 * without a pipe copies: slower, as correct. */
static void sender_open(struct src *s, struct sender *sd)
{
	if (s->compress)
		sd->scratch = malloc(mig_compress_bound(PUMP_RUN_PAGES *
							MIG_PAGE_SIZE));
	else if (pipe2(sd->pipe, O_CLOEXEC) < 0)
		sd->pipe[0] = sd->pipe[1] = -1;
}

static void sender_close(struct sender *sd)
{
	free(sd->scratch);
	if (sd->pipe[0] >= 0) {
		close(sd->pipe[0]);
		close(sd->pipe[1]);
	}
}

/* A background pump: on main, or on a bulk channel it connects first.
 * All of them take runs from one cursor, so each page goes once. */
void *src_pump_main(void *arg)
{
	struct src_pump *pm = arg;
	struct src *s = pm->s;
	struct sender sd = { .pipe = { -1, -1 } };
	struct extent x = { 0, 0, false };
	struct throttle t = { .limit_of = &s->max_postcopy_bw };
	int r = 0;

	mig_thread_name("mig-pump/%s", mig_chan_slot_tag(pm->c));
	mig_thread_bulk();
	sender_open(s, &sd);
	if (pm->c != MIG_CHAN_MAIN)
		r = src_connect_bulk(s, pm->c);
	while (r == 0 && !atomic_load(&s->stop)) {
		uint64_t first, n;

		if (!claim_run(s, &x, &first, &n)) {
			pump_done(s);
			break;
		}
		r = send_run(s, pm->c, first, n, &sd, &x);
		while (r == 0 && throttle(s, &t))
			;
	}
	if (r < 0)
		src_link_down(s, mig_chan_slot_name(pm->c), r);
	sender_close(&sd);
	return NULL;
}

/* The policy as the bus left it: without the postcopy-ram capability
 * precopy never ends in postcopy (with it, --precopy-only still switches on
 * migrate-start-postcopy, as QEMU does with postcopy-ram on). */
static struct mig_precopy_policy policy(struct src *s)
{
	struct mig_precopy_policy p = s->policy;

	if (!atomic_load(&s->postcopy_ram))
		p.kind = MIG_SWITCH_NEVER;
	p.downtime_limit_ms = atomic_load(&s->downtime_limit_ms);
	return p;
}

/* Take the bus's news during precopy: cancel, or switch now. */
static int precopy_news(struct src *s, uint64_t t0_ns)
{
	unsigned ev = mig_engine_wait(&s->e, 0);
	struct mig_precopy_policy p;

	if (ev & (MIG_EV_CANCEL | MIG_EV_SIGNAL)) {
		mig_warn("engine", "cancelling (%s): the guest runs on here",
			 ev & MIG_EV_SIGNAL ? "terminated by signal" : "migrate-cancel");
		return -ECANCELED;
	}
	if (ev & MIG_EV_SWITCH)
		return 1;
	p = policy(s);
	if (mig_precopy_deadline(&p, (mig_now_ns() - t0_ns) / 1000000))
		return 1;
	return 0;
}

static void keepalive(struct src *s, uint64_t *last_ns)
{
	uint64_t now = mig_now_ns();

	if (now - *last_ns < MIG_HEARTBEAT_MS * 1000000ull)
		return;
	*last_ns = now;
	src_preempt_poll(s);
	src_heartbeat(s);
}

/* Between precopy runs: the bandwidth limit, heartbeats, the bus's news. */
static int precopy_pace(struct src *s, struct throttle *t, uint64_t *hb,
			uint64_t t0_ns)
{
	int r;

	do {
		keepalive(s, hb);
		if ((r = precopy_news(s, t0_ns)))
			return r;
	} while (throttle(s, t));
	return 0;
}

/* Send every page whose current content the destination lacks. Returns 0
 * when done, 1 to switch to postcopy now, or -errno. With news == false
 * (stop-and-copy, guest stopped) nothing interrupts it. */
int src_send_unsent(struct src *s, struct mig_pass *ps, uint64_t t0_ns,
		    bool news)
{
	uint64_t p = 0, bytes0 = s->e.st.bytes, start = mig_now_ns();
	struct extent x = { 0, 0, false };
	struct throttle t = { .limit_of = &s->max_bw };
	int r = 0;

	while ((p = mig_bitmap_next_clear(s->sent, p)) < s->npages) {
		uint64_t n = mig_bitmap_clear_run(s->sent, p, run_limit(s, &x, p));

		mig_bitmap_set_range(s->sent, p, n);
		mig_bitmap_set_range(s->ever, p, n);
		r = send_run(s, MIG_CHAN_MAIN, p, n, NULL, &x);
		if (r < 0) {
			mig_engine_error(&s->e, "main channel: %s", strerror(-r));
			break;
		}
		ps->pages_sent += n;
		p += n;
		if (news && (r = precopy_pace(s, &t, &s->hb_ns, t0_ns)))
			break;
	}
	ps->ns = mig_now_ns() - start;
	ps->bytes_sent = s->e.st.bytes - bytes0;
	return r;
}

/* QEMU emits MIGRATION_PASS as a pass starts, counting from 1. */
static void pass_start(struct src *s, unsigned n)
{
	struct mig_json *data = mig_json_new_object();

	mig_json_add_int(data, "pass", n);
	mig_engine_emit(&s->e, "MIGRATION_PASS", data);
}

static void pass_done(struct src *s, const struct mig_pass *ps)
{
	pthread_mutex_lock(&s->e.lock);
	s->pass = *ps;
	pthread_mutex_unlock(&s->e.lock);
	mig_info("precopy", "pass %u: %llu pages in %.0f ms; %llu dirtied meanwhile",
		 ps->n, (unsigned long long)ps->pages_sent, ps->ns / 1e6,
		 (unsigned long long)ps->dirty_after);
}

static int start_tracking(struct src *s)
{
	int r = mig_guest_dirty_start(s->guest);

	if (r == 0) {
		s->dt = mig_dirty_open(s->gi.pid, s->gi.ram_base, s->e.ram_bytes);
		if (!s->dt)
			r = -errno;
	}
	if (r < 0)
		mig_engine_error(&s->e, "precopy needs dirty-page tracking, which "
				 "failed here (%s); --postcopy works without it",
				 strerror(-r));
	return r;
}

/* Precopy passes until the policy says how to end them. */
int src_precopy(struct src *s, enum mig_precopy_next *next)
{
	struct mig_pass prev = { 0 };
	uint64_t t0 = mig_now_ns();
	int r;

	*next = MIG_PRECOPY_POSTCOPY;
	if (policy(s).kind == MIG_SWITCH_NOW)
		return 0;
	r = start_tracking(s);
	if (r < 0)
		return r;
	for (unsigned n = 1;; n++) {
		struct mig_pass cur = { .n = n };
		struct mig_precopy_policy p;
		long d;

		pass_start(s, n);
		r = src_send_unsent(s, &cur, t0, true);
		if (r != 0)
			return r > 0 ? 0 : r;
		mig_bitmap_clear_all(s->dirty);
		d = mig_dirty_scan(s->dt, s->dirty);
		if (d < 0) {
			mig_engine_error(&s->e, "dirty tracking: %s",
					 strerror((int)-d));
			return (int)d;
		}
		cur.dirty_after = (uint64_t)d;
		mig_bitmap_andnot(s->sent, s->dirty);
		pass_done(s, &cur);
		p = policy(s);
		*next = mig_precopy_decide(&p, &cur, n > 1 ? &prev : NULL,
					   (mig_now_ns() - t0) / 1000000);
		if (*next != MIG_PRECOPY_CONTINUE)
			return 0;
		prev = cur;
	}
}
