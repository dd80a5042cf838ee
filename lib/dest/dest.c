// SPDX-License-Identifier: MIT
/*
 * The destination engine: see dest.h, and dest-int.h for its threads and
 * files. This one is its life: open, listen, take over a guest a previous
 * engine left past switchover, the control loop that owns every state move
 * (switchover, completion, an early end), and the close.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/fault.h"
#include "base/log.h"
#include "base/util.h"
#include "core/chan.h"
#include "core/ram.h"
#include "core/uffd.h"
#include "core/wire.h"
#include "dest/dest-int.h"

static int dst_open(struct dst *d, const struct mig_dest_opts *o)
{
	int r;

	d->o = o;
	d->lfd = d->new_lfd = d->rfd = d->new_rfd = -1;
	d->uffd = d->memfd = d->fault_efd = -1;
	d->pidfd = -1;
	for (int i = 0; i < MAX_PENDING; i++)
		d->pend[i].fd = -1;
	pthread_mutex_init(&d->rp_lock, NULL);
	pthread_mutex_init(&d->blob_lock, NULL);
	for (int c = 0; c < MIG_CHAN__COUNT; c++)
		pthread_mutex_init(&d->hand[c].lock, NULL);
	d->bt = dst_blocktime_new(); /* before the bus, which queries it */
	if (!d->bt)
		return -ENOMEM;
	r = mig_engine_init(&d->e, MIG_SIDE_DEST, &o->common, &dst_ops, d);
	if (r < 0)
		return r;
	d->fault_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return d->fault_efd < 0 ? -errno : 0;
}

static int dst_listen(struct dst *d, const char *uri)
{
	struct mig_uri u;

	if (mig_uri_parse(uri, &u) < 0) {
		mig_err("chan", "bad listen URI '%s' (tcp:HOST:PORT or unix:PATH)",
			uri);
		return -EINVAL;
	}
	snprintf(d->listen_uri, sizeof(d->listen_uri), "%s", uri);
	d->lfd = mig_chan_listen(&u);
	if (d->lfd < 0)
		mig_err("chan", "cannot listen on %s: %s", uri,
			d->lfd == -EADDRINUSE ? "address already in use" :
			strerror(-d->lfd));
	return d->lfd < 0 ? d->lfd : 0;
}

/* Is there a guest at guest_ctl already? 0: no, spawn one at the first
 * hello; 1: one past switchover whose engine went away, to take over;
 * -errno: one this engine must not touch (or, with --attach, none). */
static int probe_guest(struct dst *d, struct mig_guest_info *gi)
{
	bool attach = d->o->attach;
	int r;

	d->guest = mig_guest_connect(d->guest_ctl, attach ? 2000 : 500);
	if (!d->guest) {
		r = errno;
		if (!attach && (r == ENOENT || r == ECONNREFUSED))
			return 0;
		mig_err("guest", "no guest at %s: %s", d->guest_ctl, strerror(r));
		return -r;
	}
	r = mig_guest_info(d->guest, gi);
	/* one that completed is taken over only when asked (its source may
	 * still wait to hear it): otherwise it is just a guest running here */
	if (r == 0 && gi->rec.side == MIG_SIDE_DEST &&
	    (gi->rec.phase == MIG_GUEST_SWITCHED ||
	     (attach && gi->rec.phase == MIG_GUEST_COMPLETED)))
		return 1;
	if (r == 0)
		mig_err("guest", "the guest at %s (pid %d) is %s: %s", d->guest_ctl,
			(int)gi->pid, gi->rec.phase == MIG_GUEST_UNBOUND ?
			"in no migration" : gi->rec.side == MIG_SIDE_SOURCE ?
			"a source guest" : gi->rec.phase == MIG_GUEST_COMPLETED ?
			"a guest that arrived completely" : "not past switchover",
			attach ? "nothing to attach to" :
			"choose another --guest-ctl");
	return r < 0 ? r : -EEXIST;
}

/* --defer: the bus is up, so ready now; wait in none, listening nowhere,
 * until migrate-incoming hands over its listener (dst_cmd_incoming), then
 * go on as if --listen had named it. -ECANCELED: a signal came first. */
static int wait_incoming(struct dst *d, int *ready_fd)
{
	mig_ready_notify(ready_fd);
	mig_info("engine", "waiting for migrate-incoming");
	for (;;) {
		unsigned ev = mig_engine_wait(&d->e, -1);

		if (ev & MIG_EV_SIGNAL) {
			mig_engine_move(&d->e, MIG_STATE_CANCELLED);
			return -ECANCELED;
		}
		pthread_mutex_lock(&d->e.lock);
		d->lfd = d->new_lfd;
		d->new_lfd = -1;
		pthread_mutex_unlock(&d->e.lock);
		if (d->lfd >= 0) {
			mig_info("engine", "listening on %s", d->listen_uri);
			return 0;
		}
	}
}

/*
 * A restarted engine: the guest at guest_ctl is past switchover and its
 * engine went away. Everything needed is in the guest: which pages are
 * here is read back from its memfd; faults the dead engine had read but
 * not served are raised again by waking every waiting vCPU (each re-faults
 * on what is still missing). Then wait, paused and armed, for the source.
 */
static int take_over(struct dst *d)
{
	struct mig_guest_info gi;
	int64_t n;
	int r = dst_attach_guest(d, &gi, true);

	if (r == 0 && (gi.rec.side != MIG_SIDE_DEST || gi.rec.phase < MIG_GUEST_SWITCHED))
		r = -EEXIST; /* changed since the probe */
	if (r < 0) {
		mig_err("guest", "cannot take over the guest at %s: %s",
			d->guest_ctl, strerror(-r));
		return r;
	}
	memcpy(d->e.uuid, gi.rec.uuid, 16);
	mig_uuid_format(d->e.uuid, d->e.uuid_str);
	d->have_migration = true;
	d->switched = true;
	atomic_store(&d->committed, true);
	d->running = gi.running;
	atomic_store(&d->guest_started, true);
	d->e.ram_bytes = gi.ram_bytes;
	r = dst_alloc_pages(d);
	n = r < 0 ? r : mig_bitmap_from_file(d->received, d->memfd, d->npages);
	if (n < 0)
		return (int)n;
	d->e.st.present = (uint64_t)n;
	dst_blocktime_start(d, gi.vcpus);
	dst_watch_guest(d, gi.pid, false);
	r = dst_bind_guest(d, gi.rec.peer);
	if (r == 0 && d->uffd >= 0)
		r = dst_start_fault(d);
	if (r < 0)
		return r;
	if (d->uffd >= 0)
		mig_uffd_wake(d->uffd, d->base, d->e.ram_bytes);
	mig_info("engine", "took over migration %s: guest pid %d, %llu of %llu "
		 "pages here, last state %s; waiting for the source on %s",
		 d->e.uuid_str, (int)gi.pid, (unsigned long long)n,
		 (unsigned long long)d->npages, mig_state_name(gi.rec.state),
		 d->listen_uri);
	d->e.t_start_ns = d->e.t_setup_ns = mig_now_ns();
	mig_engine_move(&d->e, MIG_STATE_POSTCOPY_PAUSED);
	snprintf(d->armed_uri, sizeof(d->armed_uri), "%s", d->listen_uri);
	atomic_store(&d->armed, true);
	return 0;
}

static void dst_close(struct dst *d)
{
	dst_stop_rx(d);
	dst_stop_fault(d);
	for (int i = 0; i < MAX_PENDING; i++)
		if (d->pend[i].fd >= 0)
			mig_chan_close(d->pend[i].fd);
	if (d->lfd >= 0)
		close(d->lfd);
	if (d->new_lfd >= 0)
		close(d->new_lfd);
	if (d->rfd >= 0)
		close(d->rfd);
	if (d->new_rfd >= 0)
		close(d->new_rfd);
	if (d->uffd >= 0)
		close(d->uffd);
	if (d->memfd >= 0)
		close(d->memfd);
	if (d->fault_efd >= 0)
		close(d->fault_efd);
	if (d->pidfd >= 0)
		close(d->pidfd);
	mig_guest_close(d->guest);
	mig_bitmap_free(d->received);
	mig_bitmap_free(d->requested);
	mig_bitmap_free(d->unplaced);
	mig_bitmap_free(d->taken);
	free(d->fault_ns);
	free(d->blob);
	pthread_mutex_destroy(&d->rp_lock);
	pthread_mutex_destroy(&d->blob_lock);
	for (int c = 0; c < MIG_CHAN__COUNT; c++)
		pthread_mutex_destroy(&d->hand[c].lock);
}

static int default_guest_ctl(struct dst *d, const struct mig_dest_opts *o)
{
	char dir[100];
	int r;

	if (o->guest_ctl) {
		if (strlen(o->guest_ctl) >= sizeof(d->guest_ctl))
			return -ENAMETOOLONG;
		strcpy(d->guest_ctl, o->guest_ctl);
		return 0;
	}
	r = mig_runtime_dir(dir, sizeof(dir), true);
	if (r == 0 && snprintf(d->guest_ctl, sizeof(d->guest_ctl), "%s/%s.guest.sock",
			       dir, o->common.name) >= (int)sizeof(d->guest_ctl))
		r = -ENAMETOOLONG;
	return r;
}

/* One round of the control loop's poll: listeners, hellos, wakeups, the
 * guest's end. */
static unsigned poll_once(struct dst *d, int timeout_ms)
{
	enum { LISTEN = MIG_ENGINE_NPOLL, RESUME, GUEST, FIXED };
	struct pollfd p[FIXED + MAX_PENDING];
	int n = FIXED, idx[MAX_PENDING];

	pthread_mutex_lock(&d->e.lock);
	if (d->new_rfd >= 0) {
		if (d->rfd >= 0)
			close(d->rfd);
		d->rfd = d->new_rfd;
		d->new_rfd = -1;
	}
	pthread_mutex_unlock(&d->e.lock);

	mig_engine_pollfds(&d->e, p);
	p[LISTEN] = (struct pollfd){ .fd = d->lfd, .events = POLLIN };
	p[RESUME] = (struct pollfd){ .fd = d->rfd, .events = POLLIN };
	p[GUEST] = (struct pollfd){ .fd = d->pidfd, .events = POLLIN };
	for (int i = 0; i < MAX_PENDING; i++) {
		if (d->pend[i].fd < 0 || d->pend[i].stage == PEND_HELD)
			continue;
		idx[n - FIXED] = i;
		p[n++] = (struct pollfd){ .fd = d->pend[i].fd, .events = POLLIN };
	}
	if (poll(p, n, timeout_ms) > 0) {
		if (p[GUEST].revents)
			dst_guest_gone(d);
		for (int i = FIXED; i < n; i++)
			if (p[i].revents)
				dst_read_pending(d, &d->pend[idx[i - FIXED]]);
		if (p[LISTEN].revents)
			dst_add_pending(d, d->lfd, false);
		if (p[RESUME].revents)
			dst_add_pending(d, d->rfd, true);
	}
	dst_expire_pending(d);
	return mig_engine_take(&d->e);
}

/* SWITCHOVER arrived: load the guest's state; it runs on RESUME. */
static int do_switchover(struct dst *d)
{
	uint8_t *blob;
	size_t len;
	int r;

	pthread_mutex_lock(&d->blob_lock);
	blob = d->blob;
	len = d->blob_len;
	d->blob = NULL;
	pthread_mutex_unlock(&d->blob_lock);
	if (!blob)
		return 0;
	mig_engine_mark_stopped(&d->e);
	r = mig_guest_load_state(d->guest, blob, len);
	free(blob);
	if (r < 0) {
		mig_engine_error(&d->e, "guest rejected its state: %s",
				 strerror(-r));
		return r;
	}
	d->switched = true;
	if (d->e.st.present == d->npages) {
		/* stop-and-copy: complete() follows */
		atomic_store(&d->committed, true);
		return dst_run_guest(d);
	}
	/* Committed: we hold the state, and the source may count on us from
	 * the moment it reads our ack, so from here a link failure pauses.
	 * The guest runs only on the source's RESUME, so that a source that
	 * never got the ack can safely run it there instead. */
	d->e.bytes_at_pump = d->e.st.bytes;
	d->e.t_pump_start_ns = mig_now_ns();
	mig_engine_move(&d->e, MIG_STATE_POSTCOPY_ACTIVE);
	dst_rp_send(d, MIG_MSG_RESUME_ACK, NULL, 0);
	return 0;
}

static void complete(struct dst *d)
{
	int r;

	if (!d->switched)
		return; /* pages before switchover: wait for the guest state */
	if (mig_fault("dest-complete-lost"))
		mig_engine_kick_all(&d->e); /* the link breaks just now */
	/* COMPLETE first: every page is here, so nothing faults any more, and
	 * releasing the uffd (a walk of all guest RAM) need not count as
	 * downtime on the source */
	atomic_store(&d->ending, true);
	d->source_told = dst_rp_send(d, MIG_MSG_COMPLETE, NULL, 0) == 0;
	dst_stop_fault(d);
	r = mig_guest_incoming_done(d->guest);
	if (r < 0)
		mig_warn("guest", "could not release its userfaultfd: %s",
			 strerror(-r));
	if (!d->source_told)
		mig_warn("link", "could not tell the source we are complete: "
			 "waiting for it to reconnect");
	/* Our channels stay open until the source closes the main one: had we
	 * closed first, a page it still sends could fail on a broken pipe and
	 * pause it before it read our COMPLETE, with nobody left to recover
	 * with. Bounded, in case it never does. */
	d->linger_until_ns = mig_deadline_ns(d->e.link_timeout_ms);
	d->e.t_end_ns = mig_now_ns();
	mig_engine_move(&d->e, MIG_STATE_COMPLETED);
}

/* Before switchover the guest is whole on the source: end here, and take
 * the incoming guest with us. */
void dst_end_early(struct dst *d, enum mig_state to)
{
	dst_stop_rx(d);
	dst_kill_guest(d);
	mig_engine_move(&d->e, to);
}

/* Handle the loop's events; true when the migration has ended. */
static bool handle(struct dst *d, unsigned ev)
{
	enum mig_state st;

	if ((ev & MIG_EV_SWITCH) && do_switchover(d) < 0) {
		dst_end_early(d, MIG_STATE_FAILED);
		return true;
	}
	if (d->switched && d->e.st.present == d->npages &&
	    mig_engine_state(&d->e) != MIG_STATE_COMPLETED)
		complete(d);
	st = mig_engine_state(&d->e);
	if (st == MIG_STATE_FAILED || st == MIG_STATE_CANCELLED)
		return true; /* the guest is gone */
	if (st == MIG_STATE_COMPLETED)
		return (d->source_told && (atomic_load(&d->main_closed) ||
					   mig_now_ns() >= d->linger_until_ns)) ||
		       (ev & MIG_EV_SIGNAL);
	if (!mig_state_postcopy(st)) {
		if (ev & MIG_EV_CANCEL)
			dst_end_early(d, MIG_STATE_CANCELLED);
		else if (ev & MIG_EV_SIGNAL)
			dst_end_early(d, d->have_migration ? MIG_STATE_FAILED :
				      MIG_STATE_CANCELLED);
		else if ((ev & MIG_EV_LINK_DOWN) && d->have_migration) {
			mig_engine_error(&d->e, "link lost before switchover");
			dst_end_early(d, MIG_STATE_FAILED);
		} else
			return false;
		return true;
	}
	if ((ev & MIG_EV_CANCEL) && !atomic_load(&d->committed)) {
		/* the source never read our RESUME_ACK, and runs the guest
		 * again: it never ran here, and must not */
		dst_end_early(d, MIG_STATE_CANCELLED);
		return true;
	}
	if (ev & MIG_EV_SIGNAL) {
		if (st != MIG_STATE_POSTCOPY_PAUSED)
			dst_pause(d, "terminated by signal");
		mig_warn("engine", "stopping while paused: the guest is kept, "
			 "waiting for its missing pages");
		return true;
	}
	if ((ev & (MIG_EV_LINK_DOWN | MIG_EV_PAUSE)) &&
	    (st == MIG_STATE_POSTCOPY_ACTIVE || st == MIG_STATE_POSTCOPY_RECOVER))
		dst_pause(d, ev & MIG_EV_PAUSE ? "migrate-pause" : "link failure");
	if (ev & MIG_EV_RESUMED)
		dst_on_resumed(d);
	return false;
}

static void loop(struct dst *d)
{
	uint64_t last_hb = 0;

	for (;;) {
		unsigned ev = poll_once(d, MIG_HEARTBEAT_MS / 2);

		if (handle(d, ev))
			return;
		if (mig_engine_state(&d->e) == MIG_STATE_POSTCOPY_ACTIVE)
			dst_heartbeat(d, &last_hb);
	}
}

int mig_dest_run(const struct mig_dest_opts *o, enum mig_state *final)
{
	struct dst *d = calloc(1, sizeof(*d));
	struct mig_guest_info gi = { .pid = 0 };
	int r, ready_fd = o->common.ready_fd, attach = 0;

	if (!d)
		return -ENOMEM;
	r = default_guest_ctl(d, o);
	if (r == 0)
		r = dst_open(d, o);
	if (r == 0)
		r = attach = probe_guest(d, &gi);
	if (r >= 0 && o->defer)
		r = wait_incoming(d, &ready_fd);
	else if (r >= 0)
		r = dst_listen(d, o->listen ? o->listen : gi.rec.peer);
	if (r == 0 && attach)
		r = take_over(d);
	/* -ECANCELED: stopped while deferred, an end like any other */
	if (r < 0 && r != -ECANCELED)
		goto out;
	if (r == 0 && !attach) {
		d->e.t_start_ns = mig_now_ns();
		mig_engine_move(&d->e, MIG_STATE_SETUP);
	}
	mig_ready_notify(&ready_fd);
	if (r == 0)
		loop(d);
	*final = mig_engine_state(&d->e);
	if (!d->e.t_end_ns)
		d->e.t_end_ns = mig_now_ns();
	mig_engine_end(&d->e, &o->common);
	r = d->uffd_err;
out:
	dst_close(d);
	if (d->e.sm)
		mig_engine_fini(&d->e);
	dst_blocktime_free(d->bt); /* once the bus is closed */
	free(d);
	return r;
}
