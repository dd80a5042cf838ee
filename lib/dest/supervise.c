// SPDX-License-Identifier: MIT
/*
 * The incoming guest, as the destination engine supervises it: spawned in
 * incoming mode (or found at guest_ctl by a restarted engine), claimed for
 * its memfd and userfaultfd, bound to the migration, watched through a
 * pidfd, continued, and told to quit (and reaped) when the migration ends
 * before switchover.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/log.h"
#include "core/uffd.h"
#include "dest/dest-int.h"

#define SPAWN_TIMEOUT_MS 10000
/* An incoming guest told to quit exits in milliseconds; a wedged one is
 * killed after this. */
#define GUEST_QUIT_MS 2000

/* Watch the guest process: its end is news at once, whatever the links do
 * (a dead guest would otherwise be noticed only at the next page placed). */
void dst_watch_guest(struct dst *d, pid_t pid, bool child)
{
	d->guest_pid = pid;
	d->guest_child = child;
	d->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (d->pidfd < 0)
		mig_warn("guest", "pidfd_open(%d): %s: its death will be noticed "
			 "late", (int)pid, strerror(errno));
}

/* Claim the guest at guest_ctl and take its fds. complete: the guest may
 * have finished its incoming phase (no userfaultfd any more). */
int dst_attach_guest(struct dst *d, struct mig_guest_info *gi, bool complete)
{
	pid_t holder = 0;
	int r;

	if (!d->guest)
		d->guest = mig_guest_connect(d->guest_ctl, 2000);
	if (!d->guest)
		return -errno;
	r = mig_guest_attach(d->guest, &holder);
	if (r == -EBUSY)
		mig_engine_error(&d->e, "guest %s is held by another engine (pid %d)",
				 d->guest_ctl, (int)holder);
	if (r == 0)
		r = mig_guest_info(d->guest, gi);
	if (r == 0)
		r = mig_guest_get_fds(d->guest, &d->memfd, &d->uffd);
	if (r == 0 && d->uffd < 0 && !complete)
		r = -EPROTO;
	if (r < 0)
		return r;
	d->base = gi->ram_base;
	return 0;
}

/* Start the incoming guest with d->e.ram_bytes of RAM and claim it. */
int dst_spawn_guest(struct dst *d)
{
	struct mig_guest_info gi;
	pid_t pid = 0;
	int r = mig_guest_spawn(d->guest_ctl, d->e.ram_bytes, true, NULL, 1,
				d->o->guest_serial, SPAWN_TIMEOUT_MS, &pid);

	if (r < 0) {
		mig_engine_error(&d->e, "cannot start the incoming guest: %s",
				 r == -EPERM ? mig_uffd_strerror(r) : strerror(-r));
		if (r == -EPERM)
			d->uffd_err = r;
		return r;
	}
	dst_watch_guest(d, pid, true);
	r = dst_attach_guest(d, &gi, false);
	if (r < 0)
		mig_engine_error(&d->e, "incoming guest %s: %s", d->guest_ctl,
				 strerror(-r));
	return r;
}

/* peer: where the source reaches us, for a restarted engine to listen on */
int dst_bind_guest(struct dst *d, const char *peer)
{
	struct mig_guest_record rec = { .side = MIG_SIDE_DEST };
	int r;

	memcpy(rec.uuid, d->e.uuid, 16);
	snprintf(rec.peer, sizeof(rec.peer), "%s", peer);
	r = mig_guest_bind(d->guest, &rec);
	if (r < 0)
		mig_engine_error(&d->e, "guest %s refused migration %s: %s",
				 d->guest_ctl, d->e.uuid_str, strerror(-r));
	d->e.bound = r == 0 ? d->guest : NULL;
	return r;
}

/* How the guest process ended, in words; reaps it if it is our child. */
static void describe_exit(struct dst *d, char *buf, size_t len)
{
	int st;

	snprintf(buf, len, "exited");
	if (!d->guest_child || waitpid(d->guest_pid, &st, WNOHANG) != d->guest_pid)
		return;
	if (WIFSIGNALED(st))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else if (WIFEXITED(st))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
}

/*
 * The guest process is gone. Before switchover the guest is whole on the
 * source: fail, as for any early end. After it, what ran here since the
 * switchover is lost with the process, and no recovery can bring it back:
 * fail at once and say so (the source keeps its stopped guest, the only copy
 * of the pages never sent). Once completed it is simply reaped.
 */
void dst_guest_gone(struct dst *d)
{
	enum mig_state st = mig_engine_state(&d->e);
	pid_t pid = d->guest_pid;
	char how[80];

	describe_exit(d, how, sizeof(how));
	close(d->pidfd);
	d->pidfd = -1;
	d->guest_pid = 0;
	d->e.bound = NULL; /* gone: nothing to record in */
	if (mig_state_terminal(st))
		return;
	if (!mig_state_postcopy(st)) {
		mig_engine_error(&d->e, "the incoming guest (pid %d) %s", (int)pid, how);
		dst_end_early(d, MIG_STATE_FAILED);
		return;
	}
	mig_engine_error(&d->e, "the guest (pid %d) %s after switchover: what "
			 "ran here is lost; the source keeps its guest stopped, "
			 "as of switchover", (int)pid, how);
	dst_stop_rx(d);
	dst_stop_fault(d);
	mig_engine_move(&d->e, MIG_STATE_FAILED);
}

/* Continue the guest's vCPUs, unless they run already or --paused-start
 * keeps them stopped. */
int dst_run_guest(struct dst *d)
{
	int r;

	if (d->running)
		return 0;
	if (!d->e.t_run_ns)
		mig_engine_mark_running(&d->e);
	if (d->o->paused_start)
		return 0;
	r = mig_guest_cont(d->guest);
	if (r < 0)
		mig_engine_error(&d->e, "cannot start the guest: %s", strerror(-r));
	d->running = r == 0;
	return r;
}

/* Ask the incoming guest to quit, give it a moment to clean up after
 * itself (its socket), and only then make sure of it. */
void dst_kill_guest(struct dst *d)
{
	struct pollfd p = { .fd = d->pidfd, .events = POLLIN };

	if (d->guest && d->guest_pid > 0 && mig_guest_quit(d->guest) == 0 &&
	    d->pidfd >= 0)
		poll(&p, 1, GUEST_QUIT_MS);
	if (d->guest_pid > 0 && d->guest_child) {
		kill(d->guest_pid, SIGKILL);
		waitpid(d->guest_pid, NULL, 0);
	}
	d->guest_pid = 0;
	d->e.bound = NULL; /* gone: nothing to record in */
}
