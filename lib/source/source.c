// SPDX-License-Identifier: MIT
/*
 * The source engine: see source.h, and source-int.h for its threads and
 * which file holds what. This file is the control loop and the engine's
 * lifecycle: attach to the guest, run a new migration or take over one past
 * switchover, the loop after switchover, the end.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "core/dirty.h"
#include "core/ram.h"
#include "core/wire.h"
#include "source/source-int.h"

static int attach_guest(struct src *s)
{
	pid_t holder = 0;
	int r, uffd = -1;

	s->guest = mig_guest_connect(s->o->guest_ctl, 2000);
	if (!s->guest) {
		r = -errno;
		mig_engine_error(&s->e, "no guest at %s: %s", s->o->guest_ctl,
				 strerror(errno));
		return r;
	}
	r = mig_guest_attach(s->guest, &holder);
	if (r == -EBUSY) {
		mig_engine_error(&s->e, "guest %s is already being migrated "
				 "(attached to pid %d)", s->o->guest_ctl, (int)holder);
		return r;
	}
	if (r == 0)
		r = mig_guest_info(s->guest, &s->gi);
	if (r == 0 && s->gi.incoming)
		r = -EAGAIN; /* still receiving its own pages */
	if (r == 0)
		r = mig_guest_get_fds(s->guest, &s->memfd, &uffd);
	if (uffd >= 0)
		close(uffd);
	if (r < 0) {
		mig_engine_error(&s->e, "guest %s: %s", s->o->guest_ctl,
				 r == -EAGAIN ? "still incoming" : strerror(-r));
		return r == -EAGAIN ? -EBUSY : r;
	}
	atomic_store(&s->guest_pid, s->gi.pid);
	s->ram = mmap(NULL, s->gi.ram_bytes, PROT_READ, MAP_SHARED, s->memfd, 0);
	if (s->ram == MAP_FAILED) {
		s->ram = NULL;
		return -errno;
	}
	s->e.ram_bytes = s->gi.ram_bytes;
	s->npages = s->gi.ram_bytes / MIG_PAGE_SIZE;
	s->sent = mig_bitmap_new(s->npages);
	s->ever = mig_bitmap_new(s->npages);
	s->dirty = mig_bitmap_new(s->npages);
	return s->sent && s->ever && s->dirty ? 0 : -ENOMEM;
}

static int send_ram_info(struct src *s)
{
	struct mig_ram_info ri = { .ram_bytes = s->e.ram_bytes,
				   .page_size = MIG_PAGE_SIZE };
	uint8_t buf[MIG_RAM_INFO_BYTES];

	return src_send_msg(s, MIG_CHAN_MAIN, MIG_MSG_RAM_INFO, buf,
			    mig_wire_enc_ram_info(buf, &ri), NULL, 0);
}

/* Fail before switchover: the guest is whole here and keeps running. */
static void fail_early(struct src *s, bool cancelled)
{
	/* CANCEL ahead of the close on every channel: the destination then
	 * reads it before any end of stream, whichever receiver is first, and
	 * ends cancelled instead of seeing a broken link. A preempt channel
	 * still in its hello is waited for (bounded by the connect timeout):
	 * the destination may have taken it already, and would see it close */
	src_preempt_finish(s);
	for (int c = MIG_CHAN__COUNT - 1; c >= 0; c--)
		if (mig_engine_get_chan(&s->e, c) >= 0)
			src_send_msg(s, c, MIG_MSG_CANCEL, NULL, 0, NULL, 0);
	src_stop_workers(s);
	if (s->dt)
		mig_guest_dirty_stop(s->guest);
	/* the destination never acknowledged the guest's state, so it can
	 * never run it: the guest is ours again, to run as before */
	if (s->e.bound && mig_guest_unbind(s->guest) == 0)
		s->e.bound = NULL;
	if (s->stopped && mig_guest_cont(s->guest) < 0)
		mig_engine_error(&s->e, "guest: cannot continue it");
	if (cancelled) {
		mig_engine_move(&s->e, MIG_STATE_CANCELLING);
		mig_engine_move(&s->e, MIG_STATE_CANCELLED);
	} else {
		mig_engine_move(&s->e, MIG_STATE_FAILED);
	}
}

static void finish(struct src *s)
{
	src_stop_workers(s);
	s->e.t_end_ns = mig_now_ns();
	mig_engine_move(&s->e, MIG_STATE_COMPLETED);
	mig_guest_quit(s->guest); /* the guest lives on the destination now */
}

/* After switchover: never fail; pause, recover, until complete. */
static void postcopy_loop(struct src *s)
{
	for (;;) {
		unsigned ev = mig_engine_wait(&s->e, MIG_HEARTBEAT_MS);
		enum mig_state st = mig_engine_state(&s->e);

		if (ev & MIG_EV_COMPLETE) {
			finish(s);
			return;
		}
		if (ev & MIG_EV_SIGNAL) {
			if (st != MIG_STATE_POSTCOPY_PAUSED)
				src_pause_now(s, "terminated by signal");
			mig_warn("engine", "stopping while paused: the guest is "
				 "kept, stopped, with all its pages");
			return;
		}
		if ((ev & (MIG_EV_LINK_DOWN | MIG_EV_PAUSE)) &&
		    st == MIG_STATE_POSTCOPY_ACTIVE)
			src_pause_now(s, ev & MIG_EV_PAUSE ? "migrate-pause" :
				      "link failure");
		if ((ev & MIG_EV_RECOVER) &&
		    mig_engine_state(&s->e) == MIG_STATE_POSTCOPY_PAUSED)
			src_recover(s);
		if (mig_engine_state(&s->e) == MIG_STATE_POSTCOPY_ACTIVE)
			src_heartbeat(s);
	}
}

static int set_uuid(struct src *s)
{
	if (s->o->uuid) {
		if (mig_uuid_parse(s->o->uuid, s->e.uuid) < 0)
			return -EINVAL;
	} else {
		mig_uuid_generate(s->e.uuid);
	}
	mig_uuid_format(s->e.uuid, s->e.uuid_str);
	return 0;
}

/* Bind the guest to this migration: from now on it carries the record a
 * restarted engine takes over from, and refuses any other migration. */
int src_bind_guest(struct src *s, const char *to)
{
	struct mig_guest_record rec = { .side = MIG_SIDE_SOURCE };
	char have[37];
	int r;

	memcpy(rec.uuid, s->e.uuid, 16);
	snprintf(rec.peer, sizeof(rec.peer), "%s", to);
	r = mig_guest_bind(s->guest, &rec);
	mig_uuid_format(s->gi.rec.uuid, have);
	if (r == -EEXIST)
		mig_engine_error(&s->e, "guest %s belongs to migration %s, not %s",
				 s->o->guest_ctl, have, s->e.uuid_str);
	else if (r < 0)
		mig_engine_error(&s->e, "guest %s: cannot record the migration: %s",
				 s->o->guest_ctl, strerror(-r));
	s->e.bound = r == 0 ? s->guest : NULL;
	return r;
}

/* Everything before switchover; the guest keeps running on any failure. */
static int setup(struct src *s)
{
	int r = mig_uri_parse(s->to_uri, &s->to);

	if (r < 0)
		mig_engine_error(&s->e, "bad destination URI '%s'", s->to_uri);
	if (r == 0)
		r = src_bind_guest(s, s->to_uri);
	if (r == 0)
		r = src_open_chans(s, &s->to, false);
	if (r == 0 && (r = send_ram_info(s)) < 0)
		mig_engine_error(&s->e, "main channel: %s", strerror(-r));
	if (r < 0)
		return r;
	s->e.t_setup_ns = mig_now_ns();
	mig_engine_move(&s->e, MIG_STATE_ACTIVE);
	return 0;
}

_Static_assert(MIG_SOURCE_CHANNELS_MAX == MIG_CHANNELS_MAX,
	       "--channels can use every bulk slot");

/* One stream per two cores, two at least (QEMU's multifd-channels
 * default), four at most. Two even on two cores: there one receiver
 * placing pages is the limit while the other core idles a quarter of the
 * time (placing is mostly the first touch of each new page); a second
 * stream moved 1 GiB 40% sooner and 4 GiB in half the time, and the
 * guest's vCPUs stalled less in all, though a request waits longer at
 * the tail (make bench, channels). */
unsigned mig_source_channels_default(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return (unsigned)MIG_MAX(MIG_MIN(n / 2, 4), 2);
}

/* The engine before it is initialised: the options, nothing attached. */
static struct src *src_new(const struct mig_source_opts *o)
{
	struct src *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->o = o;
	s->memfd = -1;
	if (o->to)
		snprintf(s->to_uri, sizeof(s->to_uri), "%s", o->to);
	s->preempt = o->preempt;
	s->channels = o->channels ? o->channels : mig_source_channels_default();
	s->compress = o->compress;
	s->max_bw = s->max_postcopy_bw = o->max_bandwidth;
	s->postcopy_ram = true;
	s->policy = o->policy;
	s->downtime_limit_ms = o->downtime_limit_ms;
	for (int c = 0; c < MIG_CHAN__COUNT; c++)
		pthread_mutex_init(&s->tx[c], NULL);
	pthread_mutex_init(&s->pump_lock, NULL);
	return s;
}

static void src_free(struct src *s)
{
	if (s->ram)
		munmap((void *)s->ram, s->e.ram_bytes);
	if (s->memfd >= 0)
		close(s->memfd);
	mig_guest_close(s->guest);
	mig_bitmap_free(s->sent);
	mig_bitmap_free(s->ever);
	mig_bitmap_free(s->dirty);
	mig_dirty_close(s->dt);
	for (int c = 0; c < MIG_CHAN__COUNT; c++)
		pthread_mutex_destroy(&s->tx[c]);
	pthread_mutex_destroy(&s->pump_lock);
	free(s);
}

/* Which migration the guest's record says this is: a new one (0), one past
 * switchover to take over (1), or none this engine may run (-errno). */
static int choose(struct src *s)
{
	const struct mig_guest_record *rec = &s->gi.rec;
	/* a guest that arrived here completely may leave as a new migration */
	bool unbound = rec->phase == MIG_GUEST_UNBOUND || rec->side == MIG_SIDE_DEST;
	char id[37];

	mig_uuid_format(rec->uuid, id);
	if (unbound && !s->o->resume)
		return 0;
	if (unbound) {
		mig_engine_error(&s->e, "guest %s is in no migration past "
				 "switchover: nothing to resume", s->o->guest_ctl);
		return -ESRCH;
	}
	if (rec->phase == MIG_GUEST_MIGRATING) { /* never unclaimed: safety */
		mig_engine_error(&s->e, "guest %s is being migrated (%s)",
				 s->o->guest_ctl, id);
		return -EBUSY;
	}
	if (s->o->uuid && memcmp(rec->uuid, s->e.uuid, 16)) {
		mig_engine_error(&s->e, "--uuid %s is not the guest's migration "
				 "(%s)", s->o->uuid, id);
		return -EEXIST;
	}
	memcpy(s->e.uuid, rec->uuid, 16);
	mig_uuid_format(s->e.uuid, s->e.uuid_str);
	return 1;
}

/*
 * A restarted engine: the guest was handed over (it is stopped and will
 * never run here again) and its destination holds part of its memory. Start
 * where any engine of ours would be after a link failure, postcopy-paused,
 * and recover at once through the ordinary path; a failed attempt leaves us
 * paused for mig-recover, exactly as after a broken link.
 */
static void take_over(struct src *s)
{
	const char *to = s->to_uri[0] ? s->to_uri : s->gi.rec.peer;

	if (s->gi.rec.phase == MIG_GUEST_COMPLETED) {
		mig_info("engine", "migration %s had completed: the guest runs on "
			 "the destination; quitting it here", s->e.uuid_str);
		mig_guest_quit(s->guest);
		s->done_before = true;
		return;
	}
	/* the recorded destination changes only once a recovery reaches one */
	if (mig_uri_parse(to, &s->to) < 0 ||
	    src_bind_guest(s, s->gi.rec.peer) < 0) {
		if (!s->e.bound)
			mig_engine_error(&s->e, "cannot resume to '%s'", to);
		return;
	}
	mig_info("engine", "taking over migration %s past switchover (guest "
		 "pid %d stopped, last state %s): recovering to %s", s->e.uuid_str,
		 (int)s->gi.pid, mig_state_name(s->gi.rec.state), to);
	mig_engine_move(&s->e, MIG_STATE_POSTCOPY_PAUSED);
	pthread_mutex_lock(&s->e.lock);
	snprintf(s->recover_uri, sizeof(s->recover_uri), "%s", to);
	pthread_mutex_unlock(&s->e.lock);
	mig_engine_post(&s->e, MIG_EV_RECOVER);
	postcopy_loop(s);
}

/* migrate without resume (bus thread: no blocking): where a deferred
 * engine goes; its control loop starts there (wait_start). */
int src_cmd_start(struct src *s, const char *uri, char *desc, size_t desclen)
{
	enum mig_state st = mig_engine_state(&s->e);
	bool started;

	pthread_mutex_lock(&s->e.lock);
	started = !s->o->defer || s->started;
	pthread_mutex_unlock(&s->e.lock);
	if (mig_state_terminal(st)) {
		snprintf(desc, desclen, "migrate: this engine's migration has "
			 "ended (%s)", mig_state_name(st));
		return -EINVAL;
	}
	if (started) {
		/* QEMU's words for a second migrate: managers may match them */
		snprintf(desc, desclen, "There's a migration process in progress");
		return -EBUSY;
	}
	/* the bus parsed uri already (mig_engine_addr_arg) */
	if (strlen(uri) >= sizeof(s->to_uri)) {
		snprintf(desc, desclen, "migrate: the address is too long");
		return -EINVAL;
	}
	pthread_mutex_lock(&s->e.lock);
	snprintf(s->to_uri, sizeof(s->to_uri), "%s", uri);
	s->started = true;
	pthread_mutex_unlock(&s->e.lock);
	mig_engine_signal(&s->e);
	return 0;
}

/* --defer: attached, the guest running untouched, wait in none until
 * migrate names the destination (src_cmd_start). false: a signal or
 * migrate-cancel came first; nothing began, so the engine ends cancelled
 * and the guest goes on as if it had never been attached. */
static bool wait_start(struct src *s)
{
	bool started;

	mig_info("engine", "waiting for migrate");
	for (;;) {
		unsigned ev = mig_engine_wait(&s->e, -1);

		if (ev & (MIG_EV_SIGNAL | MIG_EV_CANCEL)) {
			mig_engine_move(&s->e, MIG_STATE_CANCELLED);
			return false;
		}
		pthread_mutex_lock(&s->e.lock);
		started = s->started;
		pthread_mutex_unlock(&s->e.lock);
		if (started) {
			s->e.t_start_ns = mig_now_ns(); /* it begins now */
			return true;
		}
	}
}

/* A new migration; r < 0: attaching to the guest failed, which shows as
 * setup -> failed, as any failure before switchover does. */
static int migrate(struct src *s, int r)
{
	enum mig_precopy_next next = MIG_PRECOPY_POSTCOPY;

	mig_engine_move(&s->e, MIG_STATE_SETUP);
	if (r == 0)
		r = setup(s);
	if (r == 0)
		r = src_precopy(s, &next);
	if (r == 0 && next == MIG_PRECOPY_COMPLETE)
		r = src_complete_precopy(s);
	else if (r == 0)
		r = src_switchover(s);
	if (r < 0) {
		fail_early(s, r == -ECANCELED);
		return r == -ECANCELED ? 0 : r;
	}
	if (mig_state_postcopy(mig_engine_state(&s->e)))
		postcopy_loop(s);
	return 0;
}

int mig_source_run(const struct mig_source_opts *o, enum mig_state *final)
{
	struct src *s = src_new(o);
	int r, ready_fd, kind;

	if (!s)
		return -ENOMEM;
	r = mig_engine_init(&s->e, MIG_SIDE_SOURCE, &o->common, &src_ops, s);
	if (r == 0)
		r = set_uuid(s);
	if (r < 0)
		goto out;
	ready_fd = o->common.ready_fd;
	mig_ready_notify(&ready_fd);
	s->e.t_start_ns = mig_now_ns();
	r = attach_guest(s);
	kind = r < 0 ? 0 : choose(s); /* attach failed: shown as setup -> failed */
	if (r == 0 && kind >= 0 && o->defer && !wait_start(s))
		kind = -ECANCELED; /* stopped while deferred: an end, no error */
	if (kind == 0) {
		r = migrate(s, r);
	} else if (kind == 1) {
		take_over(s);
		/* refused before it could pause: nothing was resumed */
		r = mig_engine_state(&s->e) == MIG_STATE_NONE && !s->done_before ?
		    -EINVAL : 0;
	} else if (kind != -ECANCELED) {
		r = kind;
	}
	src_join_digest(s);
	*final = s->done_before ? MIG_STATE_COMPLETED : mig_engine_state(&s->e);
	if (!s->e.t_end_ns)
		s->e.t_end_ns = mig_now_ns();
	mig_engine_end(&s->e, &o->common);
out:
	mig_engine_fini(&s->e);
	src_free(s);
	return r;
}
