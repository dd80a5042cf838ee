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
#include <time.h>
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

/*
 * A page in a receiver's hand whose bytes are not in yet is placed by
 * that receiver once they are: within tens of microseconds while its
 * stream flows. But a stream can stall: its pump, bulk work, waiting for
 * a busy source's CPU, or a segment lost on the link and retransmitted
 * after TCP's timeout (200 ms at least). A vCPU is not left waiting on
 * it: past HEDGE_NS the page is asked for on the preempt channel as
 * well, and whichever copy lands first is placed, the other refused (a
 * page twice, counted as such). The run whose wait ran out is taken as
 * stalled: a fault on another of its pages asks at once. HEDGE_NS is
 * past the waits of a stream that flows on a loaded machine (p99 about
 * 1 ms on the 2-core test machine), so that hedging costs no pages twice
 * there. At most HEDGE_SLOTS waits are timed at once; past that a page
 * in flight is asked for at once.
 */
#define HEDGE_NS 2000000ull
#define HEDGE_SLOTS 64

struct fault_thread {
	struct dst *d;
	uint64_t stalled_run; /* the last run a wait ran out on */
	unsigned n;
	struct {
		uint64_t page, run, due_ns;
	} w[HEDGE_SLOTS];
};

static void ask(struct dst *d, uint64_t page)
{
	d->e.st.requests++;
	/* while the link is down the bit stays set and the request is sent
	 * again once a recovery resumes */
	dst_send_req(d, page);
}

static void ask_again(struct dst *d, uint64_t page)
{
	d->hedged++;
	ask(d, page);
}

/* The first fault on a page asks for it; the time is kept for its
 * latency, and says a vCPU waits for it. An exchange, not a store: see
 * on_fault. */
static void request(struct fault_thread *f, uint64_t page, uint64_t now)
{
	struct dst *d = f->d;
	uint64_t run;

	atomic_exchange(&d->fault_ns[page], now);
	/* a receiver holds it: placed from there now if its bytes are in,
	 * else by the receiver once they are, which wakes the vCPU. Should
	 * the link break first, the page is asked for on recovery, as every
	 * page requested and not received is */
	if (!dst_in_hand(d, page, &run)) {
		ask(d, page);
	} else if (run && (run == f->stalled_run || f->n == HEDGE_SLOTS)) {
		ask_again(d, page);
	} else if (run) {
		f->w[f->n].page = page;
		f->w[f->n].run = run;
		f->w[f->n++].due_ns = now + HEDGE_NS;
	}
}

/* Ask for the pages in flight waited on for HEDGE_NS; the time until the
 * next is due, in *timeout (NULL: none is). */
static void hedge(struct fault_thread *f, struct timespec *ts,
		  struct timespec **timeout)
{
	uint64_t now = mig_now_ns(), next = UINT64_MAX;

	for (unsigned i = 0; i < f->n;) {
		bool here = mig_bitmap_test(f->d->received, f->w[i].page);

		if (!here && f->w[i].due_ns > now) {
			next = MIG_MIN(next, f->w[i].due_ns);
			i++;
			continue;
		}
		if (!here) {
			f->stalled_run = f->w[i].run;
			ask_again(f->d, f->w[i].page);
		}
		f->w[i] = f->w[--f->n];
	}
	*timeout = NULL;
	if (next != UINT64_MAX) {
		ts->tv_sec = (time_t)((next - now) / 1000000000ull);
		ts->tv_nsec = (long)((next - now) % 1000000000ull);
		*timeout = ts;
	}
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
static void on_fault(struct fault_thread *f, uint64_t addr, pid_t tid)
{
	struct dst *d = f->d;
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
			request(f, page, mig_now_ns());
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
	struct fault_thread f = { .d = d };
	struct pollfd p[2] = { { .fd = d->uffd, .events = POLLIN },
			       { .fd = d->fault_efd, .events = POLLIN } };
	struct timespec ts, *timeout = NULL;

	mig_thread_name("mig-fault");
	mig_thread_urgent();
	while (!atomic_load(&d->stop_fault)) {
		uint64_t addr;
		pid_t tid;
		int r;

		if (ppoll(p, 2, timeout, NULL) < 0 && errno != EINTR)
			break;
		while ((r = mig_uffd_read_fault_tid(d->uffd, &addr, &tid)) > 0)
			on_fault(&f, addr, tid);
		if (r < 0) {
			mig_err("uffd", "reading faults: %s", mig_uffd_strerror(r));
			break;
		}
		hedge(&f, &ts, &timeout);
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
