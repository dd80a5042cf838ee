// SPDX-License-Identifier: MIT
/*
 * mig-guest's vCPU threads: each runs its share of the workload until told
 * to park (STOP, and every request that needs a still RAM) or to quit; the
 * last to park wakes the control thread. At teardown they are joined in
 * bounded waits, woken from any userfault between them.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "core/uffd.h"
#include "guest/guestd-int.h"
#include "guest/workload.h"

static void wake_control(struct guestd *gd)
{
	uint64_t one = 1;

	if (write(gd->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		mig_err("guest", "eventfd write: %s", strerror(errno));
}

static void *vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	struct guestd *gd = v->gd;
	char name[16];

	/* "vcpuN" is how an engine tells which vCPU a userfault stops
	 * (/proc/PID/task/TID/comm): named before it can touch RAM */
	snprintf(name, sizeof(name), "vcpu%u", v->idx);
	pthread_setname_np(pthread_self(), name);
	pthread_mutex_lock(&gd->lock);
	while (!gd->quit) {
		if (!atomic_load(&gd->stop)) {
			pthread_mutex_unlock(&gd->lock);
			mig_workload_run(gd->wl, v->idx, &gd->stop);
			pthread_mutex_lock(&gd->lock);
			continue;
		}
		if (++gd->parked == gd->nthreads)
			wake_control(gd);
		while (atomic_load(&gd->stop) && !gd->quit)
			pthread_cond_wait(&gd->cond, &gd->lock);
		gd->parked--;
	}
	pthread_mutex_unlock(&gd->lock);
	return NULL;
}

/* Park (true) or release (false) the vCPUs; does not wait. */
void guestd_set_stop(struct guestd *gd, bool stop)
{
	pthread_mutex_lock(&gd->lock);
	if (atomic_load(&gd->stop) != stop) {
		atomic_store(&gd->stop, stop);
		if (!stop)
			pthread_cond_broadcast(&gd->cond);
		else
			mig_workload_kick(gd->wl);
	}
	pthread_mutex_unlock(&gd->lock);
}

bool guestd_all_parked(struct guestd *gd)
{
	bool r;

	pthread_mutex_lock(&gd->lock);
	r = atomic_load(&gd->stop) && gd->parked == gd->nthreads;
	pthread_mutex_unlock(&gd->lock);
	return r;
}

/* Tell every vCPU to leave: a running one does so before its next page
 * write, a parked one at once. One waiting in a userfault sees it only
 * once something wakes it (guestd_vcpus_teardown). */
static void vcpus_tell_quit(struct guestd *gd)
{
	pthread_mutex_lock(&gd->lock);
	gd->quit = true;
	atomic_store(&gd->stop, true);
	mig_workload_kick(gd->wl);
	pthread_cond_broadcast(&gd->cond);
	pthread_mutex_unlock(&gd->lock);
}

/* After the last vCPU is joined. */
static void vcpus_forget(struct guestd *gd)
{
	pthread_mutex_lock(&gd->lock);
	gd->nthreads = 0;
	gd->parked = 0;
	gd->quit = false;
	pthread_mutex_unlock(&gd->lock);
}

/* For vCPUs that never ran (a reload before the first CONT, a failed
 * start): none can be in a userfault. Teardown joins with guestd_vcpus_teardown. */
void guestd_vcpus_join(struct guestd *gd)
{
	vcpus_tell_quit(gd);
	for (unsigned i = 0; i < gd->nthreads; i++)
		pthread_join(gd->vc[i].tid, NULL);
	vcpus_forget(gd);
}

/* Start one thread per vCPU of gd->wl; they run or park as gd->stop says. */
int guestd_vcpus_start(struct guestd *gd)
{
	unsigned n = mig_workload_threads(gd->wl);

	for (unsigned i = 0; i < n; i++) {
		int r;

		gd->vc[i] = (struct vcpu){ .gd = gd, .idx = i };
		/* nthreads first: a vCPU that parks compares against it */
		pthread_mutex_lock(&gd->lock);
		gd->nthreads = i + 1;
		pthread_mutex_unlock(&gd->lock);
		r = pthread_create(&gd->vc[i].tid, NULL, vcpu_main, &gd->vc[i]);
		if (r) {
			mig_err("guest", "starting vcpu %u: %s", i, strerror(r));
			pthread_mutex_lock(&gd->lock);
			gd->nthreads = i;
			pthread_mutex_unlock(&gd->lock);
			guestd_vcpus_join(gd);
			return -r;
		}
	}
	return 0;
}

/* Teardown's join: each wait is this long, then the vCPUs are woken
 * again; a vCPU still there after JOIN_WARN_NS is worth a warning, after
 * JOIN_GIVEUP_NS it is left to the process exit. */
#define JOIN_STEP_NS (10 * 1000000ull)
#define JOIN_WARN_NS (1000 * 1000000ull)
#define JOIN_GIVEUP_NS (10000 * 1000000ull)

/* Join vCPU i, waiting at most JOIN_STEP_NS: 0, ETIMEDOUT, or another
 * error of pthread_timedjoin_np. The realtime clock: a jump only makes
 * one short step longer or shorter, and ThreadSanitizer knows this join
 * (not pthread_clockjoin_np), so it sees the vCPUs end. */
static int join_step(struct guestd *gd, unsigned i)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)JOIN_STEP_NS;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return pthread_timedjoin_np(gd->vc[i].tid, NULL, &ts);
}

/* A vCPU is still there: whatever holds it in a userfault, release it.
 * Unregister again (one that failed, or a range registered anew through
 * an engine's copy of the uffd, would put a woken vCPU straight back to
 * sleep; ranges already unregistered are skipped) and wake all of RAM. */
static void vcpus_kick(struct guestd *gd)
{
	if (gd->uffd >= 0 && gd->ram)
		guestd_ram_unregister(gd);
}

/* Join every vCPU, waking them between bounded waits until each has left.
 * false: one is still running after JOIN_GIVEUP_NS (logged); it may use
 * RAM, the workload and gd until the process exits. */
static bool vcpus_join_waking(struct guestd *gd)
{
	uint64_t t0 = mig_now_ns();
	bool warned = false;
	unsigned i = 0;

	while (i < gd->nthreads) {
		uint64_t waited;
		int r = join_step(gd, i);

		if (r != ETIMEDOUT) {
			if (r)
				mig_err("guest", "joining vcpu %u: %s", i, strerror(r));
			i++;
			continue;
		}
		waited = mig_now_ns() - t0;
		if (waited >= JOIN_GIVEUP_NS) {
			mig_err("guest", "vcpu %u has not exited %.0f s into teardown: "
				"leaving it to the process exit", i, waited / 1e9);
			return false;
		}
		if (!warned && waited >= JOIN_WARN_NS) {
			mig_warn("guest", "vcpu %u has not exited %.1f s into "
				 "teardown: still waking it", i, waited / 1e9);
			warned = true;
		}
		mig_dbg("guest", "vcpu %u not gone yet: waking userfaults again", i);
		vcpus_kick(gd);
	}
	vcpus_forget(gd);
	return true;
}

/*
 * The vCPUs go first, in the order the kernel needs. The quit flags first:
 * from then on a vCPU that runs, or is woken from a fault, leaves at its
 * next page instead of faulting on. On an incoming guest, unregister and
 * wake (guestd_ram_unregister): a vCPU waiting in a fault no engine will serve
 * any more is released only so, and its page then reads as zero, which no
 * longer matters. Then join them, waking again while any is left, in case
 * anything put one back to sleep. false: one would not go.
 */
bool guestd_vcpus_teardown(struct guestd *gd)
{
	vcpus_tell_quit(gd);
	if (gd->uffd >= 0 && gd->ram) {
		int r = guestd_ram_unregister(gd);

		if (r < 0)
			mig_warn("guest", "teardown: UFFDIO_UNREGISTER: %s",
				 mig_uffd_strerror(r));
	}
	return vcpus_join_waking(gd);
}
