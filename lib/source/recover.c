// SPDX-License-Identifier: MIT
/*
 * After switchover a broken link pauses the migration (postcopy-paused)
 * instead of failing it; recovery connects again, learns which pages the
 * destination holds, and goes back to postcopy-active.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/fault.h"
#include "base/log.h"
#include "core/ram.h"
#include "core/wire.h"
#include "source/source-int.h"

/* In postcopy-recover: learn what the destination has, re-send the rest. */
static int resync(struct src *s, bool *complete)
{
	struct mig_bitmap *have = mig_bitmap_new(s->npages);
	int r = have ? src_recv_bitmap(s, have, complete) : -ENOMEM;

	if (r == 0 && !*complete) {
		uint64_t missing = s->npages - mig_bitmap_count(have);

		mig_info("recover", "destination lacks %llu pages",
			 (unsigned long long)missing);
		/* every page the destination lacks, in flight ones included,
		 * is sent again: sent := have */
		mig_bitmap_clear_all(s->sent);
		mig_bitmap_or(s->sent, have);
		r = src_send_msg(s, MIG_CHAN_MAIN, MIG_MSG_RESUME, NULL, 0,
				 NULL, 0);
		if (r == 0)
			r = src_recv_resume_ack(s);
	}
	mig_bitmap_free(have);
	return r;
}

void src_recover(struct src *s)
{
	char uri[sizeof(s->recover_uri)];
	struct mig_uri u;
	bool complete = false;
	int r;

	pthread_mutex_lock(&s->e.lock);
	memcpy(uri, s->recover_uri, sizeof(uri));
	pthread_mutex_unlock(&s->e.lock);
	r = mig_uri_parse(uri, &u);
	if (r < 0 || mig_engine_move(&s->e, MIG_STATE_POSTCOPY_RECOVER_SETUP) < 0)
		return;
	r = src_open_chans(s, &u, true);
	if (r == 0)
		r = src_preempt_finish(s);
	if (r < 0) {
		/* a refusal or a TLS failure has said why already */
		if (r != -EPROTO && r != -EACCES)
			mig_engine_error(&s->e, "recovery: cannot set up channels: %s",
					 strerror(-r));
		src_stop_workers(s);
		mig_engine_move(&s->e, MIG_STATE_POSTCOPY_PAUSED);
		return;
	}
	mig_engine_move(&s->e, MIG_STATE_POSTCOPY_RECOVER);
	r = resync(s, &complete);
	if (r == 0 && complete) {
		mig_engine_post(&s->e, MIG_EV_COMPLETE);
		return;
	}
	if (r < 0) {
		mig_engine_error(&s->e, "recovery handshake failed: %s",
				 strerror(-r));
		src_stop_workers(s);
		mig_engine_move(&s->e, MIG_STATE_POSTCOPY_PAUSED);
		return;
	}
	/* the destination that holds the migration is here now: a
	 * restarted engine resumes to it, even one killed at the event */
	if (s->e.bound)
		src_bind_guest(s, uri);
	/* Active from the RESUME_ACK on, as QEMU's source; the threads
	 * start after, since a manager waits for this event and starting
	 * them takes a loaded host milliseconds. This engine's events are
	 * handled once we return: none can find the threads missing. */
	mig_engine_move(&s->e, MIG_STATE_POSTCOPY_ACTIVE);
	if (mig_fault("recover-threads-late")) {
		/* the window this order opens, held open for a test to kill
		 * us or the link in: no heartbeat goes out meanwhile, so
		 * shorter than its link timeout (2 s) */
		mig_warn("fault", "recover-threads-late: threads start in 1 s");
		sleep(1);
	}
	r = src_start_workers(s);
	if (r < 0) {
		mig_engine_error(&s->e, "recovery: cannot start threads: %s",
				 strerror(-r));
		src_pause_now(s, "no threads");
	}
}

void src_pause_now(struct src *s, const char *why)
{
	mig_warn("engine", "pausing: %s", why);
	src_stop_workers(s);
	mig_engine_move(&s->e, MIG_STATE_POSTCOPY_PAUSED);
}
