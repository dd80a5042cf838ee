// SPDX-License-Identifier: MIT
/*
 * The destination's fault thread and return path: a vCPU touching a page
 * not here yet faults through the guest's userfaultfd; the fault thread
 * reads it and asks the source for that page on the return path (main,
 * reversed), which also carries our heartbeat, RESUME_ACK and COMPLETE.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "core/ram.h"
#include "core/uffd.h"
#include "core/wire.h"
#include "dest/dest-int.h"

/* The return path: one writer at a time, and nothing while the link is
 * down (-ENOTCONN). */
int dst_rp_send(struct dst *d, uint32_t type, const void *p, size_t len)
{
	int r = -ENOTCONN;

	pthread_mutex_lock(&d->rp_lock);
	if (d->link_up)
		r = mig_wire_send(d->e.chan_fd[MIG_CHAN_MAIN], type, p, len);
	pthread_mutex_unlock(&d->rp_lock);
	return r;
}

int dst_send_req(struct dst *d, uint64_t page)
{
	struct mig_req rq = { .offset = page * MIG_PAGE_SIZE, .npages = 1 };
	uint8_t buf[MIG_REQ_BYTES];

	return dst_rp_send(d, MIG_MSG_REQ, buf, mig_wire_enc_req(buf, &rq));
}

/* The first fault on a page asks for it; the time is kept for its
 * latency, and says a vCPU waits for it. An exchange, not a store: see
 * on_fault. */
static void request(struct dst *d, uint64_t page, uint64_t now)
{
	atomic_exchange(&d->fault_ns[page], now);
	/* a receiver holds it: placed from there now if its bytes are in,
	 * else by the receiver once they are, which wakes the vCPU. Should
	 * the link break first, the page is asked for on recovery, as every
	 * page requested and not received is */
	if (dst_in_hand(d, page))
		return;
	d->e.st.requests++;
	/* while the link is down the bit stays set and the request is sent
	 * again once a recovery resumes */
	dst_send_req(d, page);
}

/* A vCPU that faults on a zero hole most likely walks on into the next
 * ones: placing them with it saves a fault and a wakeup each, for at
 * most 60 KiB allocated that it might never touch. */
#define ZERO_RUN_PAGES 16

/* The page is here, or it is a zero page left a hole (receive.c's
 * leave_zero): place that zero page, which wakes whoever waits on it. */
static void serve_here(struct dst *d, uint64_t page, uint64_t addr)
{
	long r = dst_place_unplaced(d, page, ZERO_RUN_PAGES);

	if (r > 0)
		return;
	if (r < 0)
		mig_warn("uffd", "placing zero page %llu: %s",
			 (unsigned long long)page, mig_uffd_strerror((int)r));
	mig_uffd_wake(d->uffd, addr, MIG_PAGE_SIZE);
}

/*
 * A thread faulted (tid: 0 when unknown). Once its page is placed, no wait
 * on it may go on counting. A receiver sets received, then exchanges
 * fault_ns for 0 and, if it was set, ends the page's waits (under the
 * blocktime lock, under which the wait is counted here). Here the wait is
 * counted first, and received is read again after fault_ns is set: if the
 * receiver's exchange came first, ours reads its 0 and so sees received
 * set (both are seq_cst); if not, the receiver ends the wait. A fault on a
 * page asked for already comes after the first one's, on this thread.
 */
static void on_fault(struct dst *d, uint64_t addr, pid_t tid)
{
	uint64_t page;
	int vcpu;

	if (addr < d->base || addr >= d->base + d->e.ram_bytes)
		return;
	page = (addr - d->base) / MIG_PAGE_SIZE;
	vcpu = dst_blocktime_vcpu(d, tid);
	dst_blocktime_fault(d, vcpu, page);
	if (!mig_bitmap_test(d->received, page)) {
		/* set: another vCPU asked already */
		if (!mig_bitmap_set(d->requested, page))
			request(d, page, mig_now_ns());
		if (!mig_bitmap_test(d->received, page))
			return;
	}
	/* placed between the fault and now (or left a zero hole) */
	serve_here(d, page, addr);
	if (vcpu >= 0)
		dst_blocktime_placed(d, page);
}

static void *fault_main(void *arg)
{
	struct dst *d = arg;
	struct pollfd p[2] = { { .fd = d->uffd, .events = POLLIN },
			       { .fd = d->fault_efd, .events = POLLIN } };

	mig_thread_name("mig-fault");
	mig_thread_urgent();
	while (!atomic_load(&d->stop_fault)) {
		uint64_t addr;
		pid_t tid;
		int r;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		while ((r = mig_uffd_read_fault_tid(d->uffd, &addr, &tid)) > 0)
			on_fault(d, addr, tid);
		if (r < 0) {
			mig_err("uffd", "reading faults: %s", mig_uffd_strerror(r));
			break;
		}
	}
	return NULL;
}

/* Serve the guest's userfaults from now on, until dst_stop_fault. */
int dst_start_fault(struct dst *d)
{
	int r = pthread_create(&d->fault_thr, NULL, fault_main, d);

	if (r)
		return -r;
	d->fault_on = true;
	return 0;
}

void dst_stop_fault(struct dst *d)
{
	uint64_t one = 1;

	if (!d->fault_on)
		return;
	atomic_store(&d->stop_fault, true);
	if (write(d->fault_efd, &one, sizeof(one)) < 0) {
		/* counter full: the thread is awake anyway */
	}
	pthread_join(d->fault_thr, NULL);
	d->fault_on = false;
}

void dst_heartbeat(struct dst *d, uint64_t *last_ns)
{
	uint8_t buf[8];
	uint64_t now = mig_now_ns();

	if (now - *last_ns < MIG_HEARTBEAT_MS * 1000000ull)
		return;
	*last_ns = now;
	if (pthread_mutex_trylock(&d->rp_lock))
		return; /* a request is going out: that is a heartbeat */
	if (d->link_up &&
	    mig_wire_send(d->e.chan_fd[MIG_CHAN_MAIN], MIG_MSG_PING, buf,
			  mig_wire_enc_u64(buf, 0)) < 0)
		mig_engine_post(&d->e, MIG_EV_LINK_DOWN);
	pthread_mutex_unlock(&d->rp_lock);
}
