// SPDX-License-Identifier: MIT
/*
 * The point of no return and the way to it: stop the guest, the last dirty
 * scan, discards of stale pages, the guest's state in two phases
 * (switchover to postcopy), or everything at once (stop-and-copy); then the
 * digest of the RAM that no longer changes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fault.h"
#include "base/log.h"
#include "base/util.h"
#include "core/digest.h"
#include "core/dirty.h"
#include "core/ram.h"
#include "core/wire.h"
#include "source/source-int.h"

static int stop_guest(struct src *s)
{
	int r;

	mig_engine_mark_stopped(&s->e);
	s->stopped = true; /* even a STOP that timed out parks it later */
	r = mig_guest_stop(s->guest);
	if (r < 0)
		mig_engine_error(&s->e, "guest: cannot stop: %s", strerror(-r));
	return r;
}

/* With the guest stopped: what it dirtied since its last scan is no longer
 * current on the destination. */
static int final_scan(struct src *s)
{
	long r;

	if (!s->dt)
		return 0;
	mig_bitmap_clear_all(s->dirty);
	r = mig_dirty_scan(s->dt, s->dirty);
	if (r < 0) {
		mig_engine_error(&s->e, "dirty tracking: final scan: %s",
				 strerror((int)-r));
		return (int)r;
	}
	mig_bitmap_andnot(s->sent, s->dirty);
	return 0;
}

/* The guest is stopped for good: tracking is done. Unprotecting all its RAM
 * walks every page table, so it happens after the state has left, outside
 * the downtime. */
static void stop_tracking(struct src *s)
{
	if (s->dt)
		mig_guest_dirty_stop(s->guest);
}

/* Pages the destination holds in a version older than ours: it must drop
 * them before the guest runs there, so that they fault and are fetched
 * fresh. A stale page would be silent corruption. */
static int send_discards(struct src *s)
{
	uint8_t buf[MIG_REQ_BYTES];
	uint64_t p = 0;

	while ((p = mig_bitmap_next_set(s->ever, p)) < s->npages) {
		struct mig_req rq = { .offset = p * MIG_PAGE_SIZE, .npages = 0 };
		int r;

		if (mig_bitmap_test(s->sent, p)) {
			p++;
			continue;
		}
		while (rq.npages < MIG_WIRE_MAX_RUN_PAGES && p < s->npages &&
		       mig_bitmap_test(s->ever, p) && !mig_bitmap_test(s->sent, p)) {
			rq.npages++;
			p++;
		}
		r = src_send_msg(s, MIG_CHAN_MAIN, MIG_MSG_DISCARD, buf,
				 mig_wire_enc_req(buf, &rq), NULL, 0);
		if (r < 0)
			return r;
		s->discarded += rq.npages;
	}
	if (s->discarded)
		mig_info("precopy", "destination drops %llu stale pages",
			 (unsigned long long)s->discarded);
	return 0;
}

static int send_state(struct src *s)
{
	uint8_t *blob = NULL;
	size_t len = 0;
	int r = mig_guest_save_state(s->guest, &blob, &len);

	if (r < 0) {
		mig_engine_error(&s->e, "guest: cannot save its state: %s",
				 strerror(-r));
		return r;
	}
	r = src_send_msg(s, MIG_CHAN_MAIN, MIG_MSG_SWITCHOVER, blob, len, NULL, 0);
	free(blob);
	return r;
}

static void *digest_main(void *arg)
{
	struct src *s = arg;

	mig_thread_name("mig-digest");
	mig_thread_bulk();
	/* as a guest many times larger would take: a test proves that no
	 * link depends on this thread */
	if (mig_fault("digest-slow"))
		sleep(3);
	s->e.digest = mig_digest(s->ram, s->npages);
	atomic_store(&s->e.has_digest, true); /* after the value: readers poll it */
	return NULL;
}

/* With the guest stopped for good its RAM no longer changes: this digest is
 * what the destination must hold once every page is there. On a thread of
 * its own: reading all of RAM takes seconds on a large guest, and the
 * control loop must go on sending heartbeats meanwhile. */
static void take_digest(struct src *s)
{
	int r;

	if (!s->o->digest || s->digest_on)
		return;
	r = pthread_create(&s->digest_thr, NULL, digest_main, s);
	if (r)
		mig_engine_error(&s->e, "digest: %s", strerror(r));
	s->digest_on = r == 0;
}

void src_join_digest(struct src *s)
{
	if (s->digest_on)
		pthread_join(s->digest_thr, NULL);
	s->digest_on = false;
}

/* The point of no return: stop the guest, send its state, and from then on
 * the guest lives on the destination. */
int src_switchover(struct src *s)
{
	int r = src_preempt_settle(s);

	if (r < 0) {
		mig_engine_error(&s->e, "preempt channel: %s", strerror(-r));
		return r;
	}
	r = stop_guest(s);
	if (r == 0)
		r = final_scan(s);
	if (r == 0 && (r = send_discards(s)) < 0)
		mig_engine_error(&s->e, "main channel: %s", strerror(-r));
	if (r < 0)
		return r;
	/* Two phases, so that the guest never runs twice and is never lost:
	 * until the destination acknowledges the state, it does not run the
	 * guest and a failure here leaves the guest whole with us; once it
	 * has, we are committed (postcopy-active: failures pause), and RESUME
	 * lets the guest run there. */
	r = send_state(s);
	if (r == 0)
		r = src_recv_resume_ack(s);
	if (r < 0) {
		mig_engine_error(&s->e, "the destination did not take the guest's "
				 "state: %s", strerror(-r));
		return r;
	}
	mig_engine_mark_running(&s->e);
	s->e.downtime_ns = s->e.t_run_ns - s->e.t_stop_ns;
	mig_engine_move(&s->e, MIG_STATE_POSTCOPY_ACTIVE);
	s->e.bytes_at_pump = s->e.st.bytes;
	s->e.t_pump_start_ns = mig_now_ns();
	r = src_send_msg(s, MIG_CHAN_MAIN, MIG_MSG_RESUME, NULL, 0, NULL, 0);
	if (r < 0) {
		src_link_down(s, "main channel", r);
		return 0;
	}
	r = src_start_workers(s);
	if (r < 0)
		src_link_down(s, "workers", r);
	stop_tracking(s);
	take_digest(s);
	return 0;
}

/* Stop-and-copy: the rest fits the downtime limit, no postcopy needed. */
int src_complete_precopy(struct src *s)
{
	struct mig_pass last = { .n = s->pass.n + 1 };
	int r = stop_guest(s);

	if (r == 0)
		r = final_scan(s);
	if (r < 0)
		return r;
	mig_engine_move(&s->e, MIG_STATE_DEVICE);
	r = src_send_unsent(s, &last, 0, false);
	if (r == 0)
		r = send_state(s);
	if (r < 0)
		return r;
	/* the state has left: from here the guest may run on the destination,
	 * so it never runs here again, whatever happens to the link */
	r = src_recv_complete(s);
	if (r == 0) {
		mig_engine_mark_running(&s->e);
		s->e.downtime_ns = s->e.t_run_ns - s->e.t_stop_ns;
	}
	stop_tracking(s);
	take_digest(s);
	if (r < 0) {
		mig_engine_error(&s->e, "link lost during stop-and-copy (%s): the "
				 "guest may run on the destination; it is kept "
				 "stopped here", strerror(-r));
		mig_engine_move(&s->e, MIG_STATE_FAILED);
		return 0;
	}
	s->e.t_end_ns = mig_now_ns();
	src_stop_workers(s); /* the preempt channel may still be connecting */
	mig_engine_move(&s->e, MIG_STATE_COMPLETED);
	mig_guest_quit(s->guest);
	return 0;
}
