// SPDX-License-Identifier: MIT
/*
 * Postcopy recovery on the destination: any link failure after switchover
 * pauses (the guest keeps running, its faults wait); migrate-recover arms
 * a listener; the source's resuming hello gets our received-page bitmap,
 * and its RESUME our RESUME_ACK, after which every waiting request is sent
 * again.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "core/chan.h"
#include "core/ram.h"
#include "core/wire.h"
#include "dest/dest-int.h"

/* After telling a reconnected source that we are complete, stay a moment:
 * its recovery opens the preempt channel too, and must not find us gone. */
#define COMPLETE_LINGER_MS 3000

void dst_pause(struct dst *d, const char *why)
{
	mig_warn("engine", "pausing: %s", why);
	dst_stop_rx(d);
	mig_engine_move(&d->e, MIG_STATE_POSTCOPY_PAUSED);
}

/* Recovery: tell the source every page we hold; it re-sends the rest. */
static int send_bitmap(struct dst *d)
{
	size_t cap = MIG_BITMAP_HDR_BYTES + MIG_WIRE_MAX_BITMAP_BITS / 8;
	uint8_t *buf = malloc(cap), end[8];
	int fd = d->e.chan_fd[MIG_CHAN_MAIN], r = buf ? 0 : -ENOMEM;

	for (uint64_t first = 0; r == 0 && first < d->npages;) {
		uint32_t n = (uint32_t)MIG_MIN(d->npages - first,
					       (uint64_t)MIG_WIRE_MAX_BITMAP_BITS);
		size_t h = mig_wire_enc_bitmap_hdr(buf, first, n);

		r = mig_bitmap_export(d->received, first, n, buf + h);
		if (r == 0)
			r = mig_wire_send(fd, MIG_MSG_BITMAP, buf, h + (n + 7) / 8);
		first += n;
	}
	if (r == 0)
		r = mig_wire_send(fd, MIG_MSG_BITMAP_END, end,
				  mig_wire_enc_u64(end, d->npages));
	free(buf);
	return r;
}

void dst_begin_recovery(struct dst *d, int fd)
{
	int r;

	atomic_store(&d->committed, true); /* a source that paused had committed */
	mig_engine_move(&d->e, MIG_STATE_POSTCOPY_RECOVER);
	mig_engine_set_chan(&d->e, MIG_CHAN_MAIN, fd);
	r = dst_hello_ack(d, fd, MIG_ROLE_MAIN);
	if (r == 0)
		r = send_bitmap(d);
	if (r == 0)
		r = dst_start_rx(d, MIG_CHAN_MAIN);
	if (r < 0) {
		mig_warn("recover", "handshake failed: %s", strerror(-r));
		mig_engine_post(&d->e, MIG_EV_LINK_DOWN);
	}
}

/* A source that missed our COMPLETE reconnects to recover: tell it. */
void dst_tell_complete(struct dst *d, int fd)
{
	if (dst_hello_ack(d, fd, MIG_ROLE_MAIN) == 0 &&
	    mig_wire_send(fd, MIG_MSG_COMPLETE, NULL, 0) == 0) {
		mig_info("engine", "told the reconnected source we are complete");
		d->source_told = true;
		d->linger_until_ns = mig_deadline_ns(COMPLETE_LINGER_MS);
		atomic_store(&d->main_closed, false); /* wait the linger out */
		mig_engine_signal(&d->e);
	}
	mig_chan_close(fd);
}

/* RESUME_ACK must be the first message of the resumed return path: the
 * link opens to the fault thread only once it is out, then every request
 * that waited through the pause is sent again. */
void dst_on_resumed(struct dst *d)
{
	uint64_t n = 0;
	int r;

	if (d->switched)
		dst_run_guest(d); /* the go-ahead, at switchover or at recovery */
	if (mig_engine_state(&d->e) != MIG_STATE_POSTCOPY_RECOVER)
		return;
	pthread_mutex_lock(&d->rp_lock);
	r = mig_wire_send(d->e.chan_fd[MIG_CHAN_MAIN], MIG_MSG_RESUME_ACK, NULL, 0);
	d->link_up = r == 0;
	pthread_mutex_unlock(&d->rp_lock);
	if (r < 0) {
		mig_engine_post(&d->e, MIG_EV_LINK_DOWN);
		return;
	}
	/* the source reaches us there now: a restarted engine listens there */
	if (d->e.bound)
		dst_bind_guest(d, d->via_uri);
	mig_engine_move(&d->e, MIG_STATE_POSTCOPY_ACTIVE);
	for (uint64_t p = mig_bitmap_next_set(d->requested, 0); p < d->npages;
	     p = mig_bitmap_next_set(d->requested, p + 1)) {
		if (!mig_bitmap_test(d->received, p) && dst_send_req(d, p) == 0)
			n++;
	}
	if (n)
		mig_info("recover", "asked again for %llu pages vCPUs wait for",
			 (unsigned long long)n);
}

/* migrate-recover: arm a listener for the source's recovery. A bus
 * command (bus thread: no blocking here). */
int dst_cmd_recover(struct dst *d, const char *uri, char *desc,
		    size_t desclen)
{
	enum mig_state st = mig_engine_state(&d->e);
	struct mig_uri u;
	bool listening;
	int fd;

	if (!uri || mig_uri_parse(uri, &u) < 0) {
		snprintf(desc, desclen, "Invalid migration address '%.120s': "
			 "tcp:HOST:PORT or unix:PATH", uri ? uri : "");
		return -EINVAL;
	}
	if (st != MIG_STATE_POSTCOPY_PAUSED && st != MIG_STATE_POSTCOPY_RECOVER) {
		snprintf(desc, desclen, "migrate-recover: nothing to recover in "
			 "state %s", mig_state_name(st));
		return -EINVAL;
	}
	/* an address we listen on already is armed by saying so: the same
	 * mig-recover, run again by cron, succeeds again */
	pthread_mutex_lock(&d->e.lock);
	listening = !strcmp(uri, d->listen_uri) || !strcmp(uri, d->armed_uri);
	pthread_mutex_unlock(&d->e.lock);
	if (!listening) {
		fd = mig_chan_listen(&u);
		if (fd < 0) {
			snprintf(desc, desclen, "migrate-recover: cannot listen on "
				 "%s: %s", uri, strerror(-fd));
			return fd;
		}
		/* the loop may be polling the old one: it swaps them */
		pthread_mutex_lock(&d->e.lock);
		if (d->new_rfd >= 0)
			close(d->new_rfd);
		d->new_rfd = fd;
		snprintf(d->armed_uri, sizeof(d->armed_uri), "%s", uri);
		pthread_mutex_unlock(&d->e.lock);
	}
	atomic_store(&d->armed, true);
	mig_engine_signal(&d->e);
	return 0;
}
