// SPDX-License-Identifier: MIT
/*
 * The source engine: see source.h. Threads: the control loop (this file's
 * mig_source_run) owns every fd and every state move; the pump thread sends
 * pages in bounded runs; the return-path thread serves page requests; the
 * preempt thread connects the preempt channel without blocking anyone. A
 * pause kicks the channels, joins the workers, then closes, in that order.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/chan.h"
#include "core/compress.h"
#include "core/digest.h"
#include "core/dirty.h"
#include "engine/engine.h"
#include "base/fault.h"
#include "guest/guest.h"
#include "base/log.h"
#include "source/precopy.h"
#include "core/ram.h"
#include "source/source.h"
#include "base/util.h"
#include "core/wire.h"

/* Pages per background run: 64 KiB amortises the UFFDIO_COPY syscall on the
 * destination; larger runs gain nothing (MACHINE-FACTS) and delay requests
 * that share the main channel. */
#define PUMP_RUN_PAGES 16u
#define CONNECT_TIMEOUT_MS 5000

struct src {
	struct mig_engine e;
	const struct mig_source_opts *o;
	struct mig_guest *guest;
	struct mig_guest_info gi;
	int memfd;
	const uint8_t *ram;
	uint64_t npages;
	struct mig_bitmap *sent;  /* pages whose current content was sent */
	struct mig_bitmap *ever;  /* pages sent at least once (precopy) */
	struct mig_bitmap *dirty; /* scratch: one dirty scan */
	struct mig_dirty *dt;     /* dirty tracking of the guest, precopy only */
	struct mig_precopy_policy policy;
	struct mig_pass pass;     /* the last finished precopy pass */
	uint64_t discarded;       /* pages the destination had to drop */

	pthread_mutex_t tx[MIG_CHAN__COUNT]; /* one writer per channel */
	atomic_bool preempt;      /* set live by the bus until switchover */
	struct mig_uri to;        /* where the migration goes */
	bool compress;
	_Atomic uint64_t max_bw;   /* bytes/s, 0 = unlimited; set live by the bus */
	_Atomic uint64_t downtime_limit_ms;

	pthread_t pump_thr, rp_thr, pre_thr;
	bool pump_on, rp_on, pre_on;
	atomic_bool stop;
	_Atomic uint64_t pump_hint; /* page after the last request, or 0 */
	struct mig_uri pre_uri;  /* preempt thread's input */
	atomic_int pre_fd;       /* its output: fd, or -errno */
	int pre_err;             /* why the last attempt failed, or 0 */
	bool pre_resume;

	char recover_uri[256];   /* under e.lock */
	bool stopped;            /* we stopped the guest (switchover) */
	pthread_t digest_thr;
	bool digest_on;
	bool done_before;        /* taken over after it had completed */
};

static struct src *signal_src;

static int send_msg(struct src *s, enum mig_chan_slot c, uint32_t type,
		    const void *p1, size_t l1, const void *p2, size_t l2)
{
	int fd = s->e.chan_fd[c], r;

	pthread_mutex_lock(&s->tx[c]);
	r = mig_wire_send2(fd, type, p1, l1, p2, l2);
	pthread_mutex_unlock(&s->tx[c]);
	if (r == 0)
		s->e.st.bytes += MIG_WIRE_HDR_BYTES + l1 + l2;
	return r;
}

/* Send pages [first, first+n) that are all zero or all data, as one message. */
static int send_segment(struct src *s, enum mig_chan_slot c, uint64_t first,
		       uint32_t n, bool zero, uint8_t *scratch)
{
	uint8_t hdr[MIG_PAGES_HDR_BYTES];
	const uint8_t *data = s->ram + first * MIG_PAGE_SIZE;
	size_t len = (size_t)n * MIG_PAGE_SIZE, clen = 0;
	uint32_t flags = zero ? MIG_PAGES_ZERO : 0;
	int r;

	if (!zero && s->compress && scratch)
		clen = mig_compress(data, len, scratch,
				    mig_compress_bound(PUMP_RUN_PAGES * MIG_PAGE_SIZE));
	if (clen) {
		flags = MIG_PAGES_LZ4;
		data = scratch;
		len = clen;
	}
	mig_wire_enc_pages_hdr(hdr, first * MIG_PAGE_SIZE, n, flags);
	r = send_msg(s, c, MIG_MSG_PAGES, hdr, sizeof(hdr), data, zero ? 0 : len);
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

	x->start = page;
	x->end = s->npages;
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

/* Send a run of pages, split into zero and data segments. */
static int send_run(struct src *s, enum mig_chan_slot c, uint64_t first,
		    uint64_t n, uint8_t *scratch, struct extent *x)
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
		r = send_segment(s, c, first, (uint32_t)k, zero, scratch);
		if (r < 0)
			return r;
		first += k;
		n -= k;
	}
	return 0;
}

static void link_down(struct src *s, const char *what, int err)
{
	if (!atomic_load(&s->stop))
		mig_warn("link", "%s: %s", what, strerror(-err));
	mig_engine_post(&s->e, MIG_EV_LINK_DOWN);
}

/* Keep the pump under max-bandwidth, measured from the last change of the
 * limit (a raised limit takes effect at once, not after a catch-up burst).
 * Sleeps at most half a heartbeat per call: true means "call again", so
 * that a caller can keep its links alive however low the limit. */
struct throttle {
	uint64_t limit, t0_ns, bytes0;
};

static bool throttle(struct src *s, struct throttle *t)
{
	uint64_t limit = atomic_load(&s->max_bw), due_ns, now = mig_now_ns();
	struct timespec ts = { 0, 0 };

	if (limit != t->limit) {
		*t = (struct throttle){ limit, now, s->e.st.bytes };
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

/* Background pump: every page not yet sent, in order, in bounded runs. */
static void *pump_main(void *arg)
{
	struct src *s = arg;
	uint8_t *scratch = s->compress ?
		malloc(mig_compress_bound(PUMP_RUN_PAGES * MIG_PAGE_SIZE)) : NULL;
	uint64_t p = 0;
	struct extent x = { 0, 0, false };
	struct throttle t = { 0, 0, 0 };

	mig_thread_bulk();
	while (!atomic_load(&s->stop)) {
		uint64_t first, n = 1, hint = atomic_exchange(&s->pump_hint, 0);
		int r;

		/* a vCPU faulted just before `hint`: it will most likely touch
		 * what follows next, so that is where the pump goes on */
		if (hint)
			p = hint < s->npages ? hint : 0;
		first = mig_bitmap_next_clear(s->sent, p);
		if (first >= s->npages && p)
			first = mig_bitmap_next_clear(s->sent, 0);
		if (first >= s->npages) {
			r = send_msg(s, MIG_CHAN_MAIN, MIG_MSG_EOS, NULL, 0, NULL, 0);
			if (r < 0)
				link_down(s, "main channel", r);
			else
				mig_info("pump", "every page sent");
			break;
		}
		while (n < PUMP_RUN_PAGES && first + n < s->npages &&
		       !mig_bitmap_test(s->sent, first + n))
			n++;
		/* mark before sending: a request racing with us sends again
		 * rather than nobody sending at all */
		for (uint64_t i = 0; i < n; i++)
			mig_bitmap_set(s->sent, first + i);
		r = send_run(s, MIG_CHAN_MAIN, first, n, scratch, &x);
		if (r < 0) {
			link_down(s, "main channel", r);
			break;
		}
		p = first + n;
		while (throttle(s, &t))
			;
	}
	free(scratch);
	return NULL;
}

static int serve_request(struct src *s, const uint8_t *buf, uint32_t len)
{
	struct mig_req req;
	enum mig_chan_slot c = s->e.chan_fd[MIG_CHAN_PREEMPT] >= 0 ?
			       MIG_CHAN_PREEMPT : MIG_CHAN_MAIN;
	uint64_t first;
	int r = mig_wire_dec_req(buf, len, s->e.ram_bytes, &req);

	if (r < 0)
		return r;
	s->e.st.requests++;
	first = req.offset / MIG_PAGE_SIZE;
	for (uint32_t i = 0; i < req.npages; i++)
		mig_bitmap_set(s->sent, first + i);
	atomic_store(&s->pump_hint, first + req.npages);
	r = send_run(s, c, first, req.npages, NULL, NULL);
	if (r < 0)
		link_down(s, c == MIG_CHAN_PREEMPT ? "preempt channel" :
			  "main channel", r);
	return 0;
}

/* The return path: requests, the switchover ack, completion, heartbeats. */
static void *rp_main(void *arg)
{
	struct src *s = arg;
	uint8_t *buf = malloc(MIG_WIRE_MAX_PAYLOAD);
	int fd = s->e.chan_fd[MIG_CHAN_MAIN];

	while (buf && !atomic_load(&s->stop)) {
		uint32_t type, len;
		int r = mig_wire_recv(fd, &type, buf, MIG_WIRE_MAX_PAYLOAD, &len);

		if (r == 0 && type == MIG_MSG_REQ)
			r = serve_request(s, buf, len);
		else if (r == 0 && type == MIG_MSG_COMPLETE) {
			mig_engine_post(&s->e, MIG_EV_COMPLETE);
			break;
		} else if (r == 0 && type != MIG_MSG_PING) {
			mig_err("wire", "unexpected %s on the return path",
				mig_wire_type_name(type));
			r = -EBADMSG;
		}
		if (r < 0) {
			link_down(s, "return path", r);
			break;
		}
	}
	free(buf);
	return NULL;
}

/* Receive the peer's answer to our hello: its hello, or its refusal. */
static int hello_answer(struct src *s, int fd, uint32_t role)
{
	uint8_t buf[MIG_WIRE_MAX_REASON + 8];
	uint32_t type, len;
	struct mig_hello h;
	struct mig_refuse rf;
	int r = mig_wire_recv(fd, &type, buf, sizeof(buf), &len);

	if (r < 0)
		return r;
	if (type == MIG_MSG_REFUSE) {
		if (mig_wire_dec_refuse(buf, len, &rf) < 0)
			return -EBADMSG;
		mig_engine_error(&s->e, "destination refused the connection: %s",
				 rf.reason);
		return -EPROTO;
	}
	if (type != MIG_MSG_HELLO)
		return -EBADMSG;
	r = mig_wire_dec_hello(buf, len, &h);
	if (r < 0)
		return r;
	if (memcmp(h.uuid, s->e.uuid, 16) || h.role != role) {
		mig_engine_error(&s->e, "destination answered for another migration");
		return -EPROTO;
	}
	return 0;
}

static int say_hello(struct src *s, int fd, uint32_t role, uint32_t flags)
{
	struct mig_hello h = { .version = MIG_WIRE_VERSION, .role = role,
			       .flags = flags };
	uint8_t buf[MIG_HELLO_BYTES];
	int r;

	memcpy(h.uuid, s->e.uuid, 16);
	mig_chan_tune(fd, s->e.link_timeout_ms / 1000);
	r = mig_chan_set_timeouts(fd, s->e.link_timeout_ms, s->e.link_timeout_ms);
	if (r == 0)
		r = mig_wire_send(fd, MIG_MSG_HELLO, buf, mig_wire_enc_hello(buf, &h));
	if (r == 0)
		r = hello_answer(s, fd, role);
	return r;
}

/* Connect, unless a pause arrives first (the fd is not yet kickable). */
static int connect_interruptible(struct src *s, const struct mig_uri *u)
{
	struct pollfd p[2] = { { .events = POLLOUT }, { .fd = s->e.efd, .events = POLLIN } };
	uint64_t deadline = mig_now_ns() + CONNECT_TIMEOUT_MS * 1000000ull;
	int fd = mig_chan_connect_start(u), r = -ETIMEDOUT;

	if (fd < 0)
		return fd;
	p[0].fd = fd;
	for (;;) {
		uint64_t now = mig_now_ns();
		bool paused;

		if (now >= deadline)
			break;
		r = poll(p, 2, (int)((deadline - now) / 1000000) + 1);
		if (r < 0 && errno != EINTR) {
			r = -errno;
			break;
		}
		if (r > 0 && p[0].revents) {
			r = mig_chan_connect_finish(fd);
			break;
		}
		pthread_mutex_lock(&s->e.lock);
		paused = s->e.pending & (MIG_EV_PAUSE | MIG_EV_SIGNAL);
		pthread_mutex_unlock(&s->e.lock);
		if (paused) {
			r = -EINTR;
			break;
		}
		if (r > 0)
			p[1].fd = -1; /* other news: the loop takes it later */
		r = -ETIMEDOUT;
	}
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

static void *preempt_main(void *arg)
{
	struct src *s = arg;
	int fd = mig_chan_connect(&s->pre_uri, CONNECT_TIMEOUT_MS), r;

	if (fd >= 0) {
		r = say_hello(s, fd, MIG_ROLE_PREEMPT,
			      s->pre_resume ? MIG_HELLO_RESUME : 0);
		if (r < 0) {
			close(fd);
			fd = r;
		}
	}
	atomic_store(&s->pre_fd, fd);
	mig_engine_signal(&s->e);
	return NULL;
}

/* The preempt channel is connected on a thread of its own: nothing waits for
 * it until postcopy starts or a recovery needs it. */
static int preempt_start(struct src *s, const struct mig_uri *u, bool resume)
{
	int r;

	s->pre_uri = *u;
	s->pre_resume = resume;
	s->pre_err = 0;
	atomic_store(&s->pre_fd, -EINPROGRESS);
	r = pthread_create(&s->pre_thr, NULL, preempt_main, s);
	if (r)
		return -r;
	s->pre_on = true;
	return 0;
}

static void heartbeat(struct src *s);

/* Wait for the preempt connection; register it. 0, or -errno (also for
 * an attempt that already failed). */
static int preempt_finish(struct src *s)
{
	int fd;

	if (!s->pre_on)
		return s->pre_err;
	/* however slow the connect, the main channel must not fall silent
	 * meanwhile, or the destination takes the link for dead */
	for (;;) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += MIG_HEARTBEAT_MS * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		if (pthread_timedjoin_np(s->pre_thr, NULL, &ts) != ETIMEDOUT)
			break;
		heartbeat(s);
	}
	s->pre_on = false;
	fd = atomic_load(&s->pre_fd);
	if (fd < 0)
		return s->pre_err = fd;
	mig_engine_set_chan(&s->e, MIG_CHAN_PREEMPT, fd);
	return 0;
}

/* During precopy: take the preempt channel as soon as it is there, so that
 * heartbeats keep it alive (it carries nothing else until postcopy). */
static void preempt_poll(struct src *s)
{
	if (s->pre_on && atomic_load(&s->pre_fd) != -EINPROGRESS)
		preempt_finish(s);
}

static void close_chans(struct src *s)
{
	for (int c = 0; c < MIG_CHAN__COUNT; c++) {
		int fd = mig_engine_get_chan(&s->e, c);

		mig_engine_set_chan(&s->e, c, -1);
		if (fd >= 0)
			close(fd);
	}
}

/* Connect the main channel (and start the preempt one) to u. */
static int open_chans(struct src *s, const struct mig_uri *u, bool resume)
{
	char name[300];
	uint32_t flags = (resume ? MIG_HELLO_RESUME : 0) |
			 (atomic_load(&s->preempt) ? MIG_HELLO_PREEMPT : 0);
	int fd = connect_interruptible(s, u), r;

	s->pre_err = 0; /* a new attempt: old preempt failures are history */
	mig_uri_format(u, name, sizeof(name));
	if (fd < 0) {
		mig_engine_error(&s->e, "cannot connect to %s: %s", name,
				 fd == -ENXIO ? "unknown host" : strerror(-fd));
		return fd;
	}
	mig_engine_set_chan(&s->e, MIG_CHAN_MAIN, fd);
	r = say_hello(s, fd, MIG_ROLE_MAIN, flags);
	if (r < 0) {
		if (r != -EPROTO)
			mig_engine_error(&s->e, "hello with %s failed: %s", name,
					 strerror(-r));
		close_chans(s);
		return r;
	}
	if (atomic_load(&s->preempt)) {
		r = preempt_start(s, u, resume);
		if (r < 0)
			close_chans(s);
	}
	return r;
}

static int start_workers(struct src *s)
{
	int r;

	atomic_store(&s->stop, false);
	r = pthread_create(&s->rp_thr, NULL, rp_main, s);
	if (r)
		return -r;
	s->rp_on = true;
	r = pthread_create(&s->pump_thr, NULL, pump_main, s);
	if (r)
		return -r;
	s->pump_on = true;
	return 0;
}

/* Stop flag, kick the channels so blocked threads return, join, close. */
static void stop_workers(struct src *s)
{
	atomic_store(&s->stop, true);
	mig_engine_kick_all(&s->e);
	if (s->pump_on)
		pthread_join(s->pump_thr, NULL);
	if (s->rp_on)
		pthread_join(s->rp_thr, NULL);
	if (s->pre_on)
		preempt_finish(s);
	s->pump_on = s->rp_on = false;
	close_chans(s);
}

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

	return send_msg(s, MIG_CHAN_MAIN, MIG_MSG_RAM_INFO, buf,
			mig_wire_enc_ram_info(buf, &ri), NULL, 0);
}

/* Fail before switchover: the guest is whole here and keeps running. */
static void fail_early(struct src *s, bool cancelled)
{
	if (mig_engine_get_chan(&s->e, MIG_CHAN_MAIN) >= 0)
		send_msg(s, MIG_CHAN_MAIN, MIG_MSG_CANCEL, NULL, 0, NULL, 0);
	stop_workers(s);
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

static int recv_resume_ack(struct src *s);

static int stop_guest(struct src *s)
{
	int r;

	s->e.t_stop_ns = mig_now_ns();
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
		r = send_msg(s, MIG_CHAN_MAIN, MIG_MSG_DISCARD, buf,
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
	r = send_msg(s, MIG_CHAN_MAIN, MIG_MSG_SWITCHOVER, blob, len, NULL, 0);
	free(blob);
	return r;
}

static void *digest_main(void *arg)
{
	struct src *s = arg;

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

static void join_digest(struct src *s)
{
	if (s->digest_on)
		pthread_join(s->digest_thr, NULL);
	s->digest_on = false;
}

/* The point of no return: stop the guest, send its state, and from then on
 * the guest lives on the destination. */
/* The preempt channel as postcopy-preempt now says: connect it if it was
 * turned on during precopy, drop it if it was turned off. */
static int preempt_settle(struct src *s)
{
	bool want = atomic_load(&s->preempt);
	int r = 0, fd;

	if (want && !s->pre_on && mig_engine_get_chan(&s->e, MIG_CHAN_PREEMPT) < 0)
		r = preempt_start(s, &s->to, false);
	if (r == 0)
		r = preempt_finish(s);
	if (r == 0 && !want && (fd = mig_engine_get_chan(&s->e, MIG_CHAN_PREEMPT)) >= 0) {
		mig_engine_set_chan(&s->e, MIG_CHAN_PREEMPT, -1);
		close(fd);
	}
	return r;
}

static int switchover(struct src *s)
{
	int r = preempt_settle(s);

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
		r = recv_resume_ack(s);
	if (r < 0) {
		mig_engine_error(&s->e, "the destination did not take the guest's "
				 "state: %s", strerror(-r));
		return r;
	}
	s->e.downtime_ns = mig_now_ns() - s->e.t_stop_ns;
	mig_engine_move(&s->e, MIG_STATE_POSTCOPY_ACTIVE);
	s->e.t_pump_start_ns = mig_now_ns();
	r = send_msg(s, MIG_CHAN_MAIN, MIG_MSG_RESUME, NULL, 0, NULL, 0);
	if (r < 0) {
		link_down(s, "main channel", r);
		return 0;
	}
	r = start_workers(s);
	if (r < 0)
		link_down(s, "workers", r);
	stop_tracking(s);
	take_digest(s);
	return 0;
}

/* Take the bus's news during precopy: cancel, or switch now. */
static int precopy_news(struct src *s, uint64_t t0_ns)
{
	unsigned ev = mig_engine_wait(&s->e, 0);

	if (ev & (MIG_EV_CANCEL | MIG_EV_SIGNAL))
		return -ECANCELED;
	if ((ev & MIG_EV_SWITCH) ||
	    mig_precopy_deadline(&s->policy, (mig_now_ns() - t0_ns) / 1000000))
		return 1;
	return 0;
}

static void keepalive(struct src *s, uint64_t *last_ns)
{
	uint64_t now = mig_now_ns();

	if (now - *last_ns < MIG_HEARTBEAT_MS * 1000000ull)
		return;
	*last_ns = now;
	preempt_poll(s);
	heartbeat(s);
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
static int send_unsent(struct src *s, struct mig_pass *ps, uint64_t t0_ns,
		       bool news)
{
	uint64_t p = 0, bytes0 = s->e.st.bytes, start = mig_now_ns(), hb = start;
	struct extent x = { 0, 0, false };
	struct throttle t = { 0, 0, 0 };
	int r = 0;

	while ((p = mig_bitmap_next_clear(s->sent, p)) < s->npages) {
		uint64_t n = 1;

		while (n < PUMP_RUN_PAGES && p + n < s->npages &&
		       !mig_bitmap_test(s->sent, p + n))
			n++;
		for (uint64_t i = 0; i < n; i++) {
			mig_bitmap_set(s->sent, p + i);
			mig_bitmap_set(s->ever, p + i);
		}
		r = send_run(s, MIG_CHAN_MAIN, p, n, NULL, &x);
		if (r < 0) {
			mig_engine_error(&s->e, "main channel: %s", strerror(-r));
			break;
		}
		ps->pages_sent += n;
		p += n;
		if (news && (r = precopy_pace(s, &t, &hb, t0_ns)))
			break;
	}
	ps->ns = mig_now_ns() - start;
	ps->bytes_sent = s->e.st.bytes - bytes0;
	return r;
}

static void pass_done(struct src *s, const struct mig_pass *ps)
{
	struct mig_json *data = mig_json_new_object();

	pthread_mutex_lock(&s->e.lock);
	s->pass = *ps;
	pthread_mutex_unlock(&s->e.lock);
	mig_json_add_int(data, "pass", ps->n);
	mig_engine_emit(&s->e, "MIGRATION_PASS", data);
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
static int precopy(struct src *s, enum mig_precopy_next *next)
{
	struct mig_pass prev = { 0 };
	uint64_t t0 = mig_now_ns();
	int r;

	*next = MIG_PRECOPY_POSTCOPY;
	if (s->policy.kind == MIG_SWITCH_NOW)
		return 0;
	r = start_tracking(s);
	if (r < 0)
		return r;
	for (unsigned n = 1;; n++) {
		struct mig_pass cur = { .n = n };
		long d;

		r = send_unsent(s, &cur, t0, true);
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
		s->policy.downtime_limit_ms = atomic_load(&s->downtime_limit_ms);
		*next = mig_precopy_decide(&s->policy, &cur, n > 1 ? &prev : NULL,
					   (mig_now_ns() - t0) / 1000000);
		if (*next != MIG_PRECOPY_CONTINUE)
			return 0;
		prev = cur;
	}
}

static int recv_complete(struct src *s)
{
	uint8_t buf[16];
	uint32_t type, len;
	int fd = mig_engine_get_chan(&s->e, MIG_CHAN_MAIN), r;

	do
		r = mig_wire_recv(fd, &type, buf, sizeof(buf), &len);
	while (r == 0 && (type == MIG_MSG_PING || type == MIG_MSG_RESUME_ACK));
	if (r == 0 && type != MIG_MSG_COMPLETE)
		r = -EBADMSG;
	return r;
}

/* Stop-and-copy: the rest fits the downtime limit, no postcopy needed. */
static int complete_precopy(struct src *s)
{
	struct mig_pass last = { .n = s->pass.n + 1 };
	int r = stop_guest(s);

	if (r == 0)
		r = final_scan(s);
	if (r < 0)
		return r;
	mig_engine_move(&s->e, MIG_STATE_DEVICE);
	r = send_unsent(s, &last, 0, false);
	if (r == 0)
		r = send_state(s);
	if (r < 0)
		return r;
	/* the state has left: from here the guest may run on the destination,
	 * so it never runs here again, whatever happens to the link */
	r = recv_complete(s);
	if (r == 0)
		s->e.downtime_ns = mig_now_ns() - s->e.t_stop_ns;
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
	stop_workers(s); /* the preempt channel may still be connecting */
	mig_engine_move(&s->e, MIG_STATE_COMPLETED);
	mig_guest_quit(s->guest);
	return 0;
}

/* Recovery handshake: the destination's bitmap of present pages. */
static int recv_bitmap(struct src *s, struct mig_bitmap *have, bool *complete)
{
	uint8_t *buf = malloc(MIG_WIRE_MAX_PAYLOAD);
	int fd = mig_engine_get_chan(&s->e, MIG_CHAN_MAIN), r = -ENOMEM;

	*complete = false;
	while (buf) {
		uint32_t type, len;
		struct mig_bitmap_chunk c;
		uint64_t total;

		r = mig_wire_recv(fd, &type, buf, MIG_WIRE_MAX_PAYLOAD, &len);
		if (r < 0)
			break;
		if (type == MIG_MSG_PING)
			continue;
		if (type == MIG_MSG_COMPLETE) {
			*complete = true;
			break;
		}
		if (type == MIG_MSG_BITMAP_END) {
			r = mig_wire_dec_u64(buf, len, &total);
			if (r == 0 && total != s->npages)
				r = -EBADMSG;
			break;
		}
		r = type == MIG_MSG_BITMAP ?
			mig_wire_dec_bitmap(buf, len, s->npages, &c) : -EBADMSG;
		if (r == 0)
			r = mig_bitmap_import(have, c.first_page, c.nbits, c.bits);
		if (r < 0)
			break;
	}
	free(buf);
	return r;
}

static int recv_resume_ack(struct src *s)
{
	uint8_t buf[16];
	uint32_t type, len;
	int fd = mig_engine_get_chan(&s->e, MIG_CHAN_MAIN), r;

	do
		r = mig_wire_recv(fd, &type, buf, sizeof(buf), &len);
	while (r == 0 && type == MIG_MSG_PING);
	if (r == 0 && type != MIG_MSG_RESUME_ACK)
		r = -EBADMSG;
	return r;
}

/* In postcopy-recover: learn what the destination has, re-send the rest. */
static int resync(struct src *s, bool *complete)
{
	struct mig_bitmap *have = mig_bitmap_new(s->npages);
	int r = have ? recv_bitmap(s, have, complete) : -ENOMEM;

	if (r == 0 && !*complete) {
		uint64_t missing = s->npages - mig_bitmap_count(have);

		mig_info("recover", "destination lacks %llu pages",
			 (unsigned long long)missing);
		/* every page the destination lacks, in flight ones included,
		 * is sent again: sent := have */
		mig_bitmap_clear_all(s->sent);
		mig_bitmap_or(s->sent, have);
		r = send_msg(s, MIG_CHAN_MAIN, MIG_MSG_RESUME, NULL, 0, NULL, 0);
		if (r == 0)
			r = recv_resume_ack(s);
	}
	mig_bitmap_free(have);
	return r;
}

static int bind_guest(struct src *s, const char *to);

static void recover(struct src *s)
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
	r = open_chans(s, &u, true);
	if (r == 0)
		r = preempt_finish(s);
	if (r < 0) {
		if (r != -EPROTO)
			mig_engine_error(&s->e, "recovery: cannot set up channels: %s",
					 strerror(-r));
		stop_workers(s);
		mig_engine_move(&s->e, MIG_STATE_POSTCOPY_PAUSED);
		return;
	}
	mig_engine_move(&s->e, MIG_STATE_POSTCOPY_RECOVER);
	r = resync(s, &complete);
	if (r == 0 && complete) {
		mig_engine_post(&s->e, MIG_EV_COMPLETE);
		return;
	}
	if (r == 0)
		r = start_workers(s);
	if (r < 0) {
		mig_engine_error(&s->e, "recovery handshake failed: %s",
				 strerror(-r));
		stop_workers(s);
		mig_engine_move(&s->e, MIG_STATE_POSTCOPY_PAUSED);
		return;
	}
	/* the destination that holds the migration is here now: a
	 * restarted engine resumes to it */
	if (s->e.bound)
		bind_guest(s, uri);
	mig_engine_move(&s->e, MIG_STATE_POSTCOPY_ACTIVE);
}

static void heartbeat(struct src *s)
{
	uint8_t buf[8];

	for (int c = 0; c < MIG_CHAN__COUNT; c++) {
		int fd = s->e.chan_fd[c], r;

		if (fd < 0 || pthread_mutex_trylock(&s->tx[c]))
			continue; /* a message is going out: that is a heartbeat */
		r = mig_wire_send(fd, MIG_MSG_PING, buf, mig_wire_enc_u64(buf, 0));
		pthread_mutex_unlock(&s->tx[c]);
		if (r < 0)
			link_down(s, c ? "preempt channel" : "main channel", r);
	}
}

static void pause_now(struct src *s, const char *why)
{
	mig_warn("engine", "pausing: %s", why);
	stop_workers(s);
	mig_engine_move(&s->e, MIG_STATE_POSTCOPY_PAUSED);
}

static void finish(struct src *s)
{
	stop_workers(s);
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
				pause_now(s, "terminated by signal");
			mig_warn("engine", "stopping while paused: the guest is "
				 "kept, stopped, with all its pages");
			return;
		}
		if ((ev & (MIG_EV_LINK_DOWN | MIG_EV_PAUSE)) &&
		    st == MIG_STATE_POSTCOPY_ACTIVE)
			pause_now(s, ev & MIG_EV_PAUSE ? "migrate-pause" :
				  "link failure");
		if ((ev & MIG_EV_RECOVER) &&
		    mig_engine_state(&s->e) == MIG_STATE_POSTCOPY_PAUSED)
			recover(s);
		if (mig_engine_state(&s->e) == MIG_STATE_POSTCOPY_ACTIVE)
			heartbeat(s);
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
static int bind_guest(struct src *s, const char *to)
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
	int r = mig_uri_parse(s->o->to, &s->to);

	if (r < 0)
		mig_engine_error(&s->e, "bad destination URI '%s'", s->o->to);
	if (r == 0)
		r = bind_guest(s, s->o->to);
	if (r == 0)
		r = open_chans(s, &s->to, false);
	if (r == 0 && (r = send_ram_info(s)) < 0)
		mig_engine_error(&s->e, "main channel: %s", strerror(-r));
	if (r < 0)
		return r;
	s->e.t_setup_ns = mig_now_ns();
	mig_engine_move(&s->e, MIG_STATE_ACTIVE);
	return 0;
}

static void on_signal(int sig)
{
	(void)sig;
	if (signal_src) {
		/* no mutex in a signal handler: an atomic OR of the bit,
		 * then the (async-signal-safe) eventfd write */
		__atomic_or_fetch(&signal_src->e.pending, MIG_EV_SIGNAL,
				  __ATOMIC_SEQ_CST);
		mig_engine_signal(&signal_src->e);
	}
}

static int src_command(struct mig_engine *e, const char *cmd,
		       const struct mig_json *args, struct mig_json **ret,
		       char *desc, size_t desclen);

static void src_query(struct mig_engine *e, struct mig_json *ret)
{
	struct src *s = e->ctx;
	struct mig_json *ram = mig_json_get(ret, "ram");
	struct mig_pass ps;

	pthread_mutex_lock(&e->lock);
	ps = s->pass;
	pthread_mutex_unlock(&e->lock);
	mig_json_add_str(ret, "dirty-tracking", s->dt ? mig_dirty_method_of(s->dt) : "none");
	if (!ram)
		return;
	mig_json_add_int(ram, "dirty-sync-count", ps.n);
	mig_json_add_double(ram, "dirty-pages-rate",
			    ps.ns ? ps.dirty_after * 1e9 / (double)ps.ns : 0);
	mig_json_add_int(ram, "last-pass-pages", ps.pages_sent);
	mig_json_add_int(ram, "discarded", s->discarded);
}

static const struct mig_engine_ops src_ops = {
	.command = src_command,
	.query = src_query,
};

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
	free(s);
}

static void install_signals(struct src *s)
{
	struct sigaction sa = { .sa_handler = on_signal };

	signal_src = s;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
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
	const char *to = s->o->to ? s->o->to : s->gi.rec.peer;

	if (s->gi.rec.phase == MIG_GUEST_COMPLETED) {
		mig_info("engine", "migration %s had completed: the guest runs on "
			 "the destination; quitting it here", s->e.uuid_str);
		mig_guest_quit(s->guest);
		s->done_before = true;
		return;
	}
	/* the recorded destination changes only once a recovery reaches one */
	if (mig_uri_parse(to, &s->to) < 0 || bind_guest(s, s->gi.rec.peer) < 0) {
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

/* A new migration; r < 0: attaching to the guest failed, which shows as
 * setup -> failed, as any failure before switchover does. */
static int migrate(struct src *s, int r)
{
	enum mig_precopy_next next = MIG_PRECOPY_POSTCOPY;

	mig_engine_move(&s->e, MIG_STATE_SETUP);
	if (r == 0)
		r = setup(s);
	if (r == 0)
		r = precopy(s, &next);
	if (r == 0 && next == MIG_PRECOPY_COMPLETE)
		r = complete_precopy(s);
	else if (r == 0)
		r = switchover(s);
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
	struct src *s = calloc(1, sizeof(*s));
	int r, ready_fd;

	if (!s)
		return -ENOMEM;
	s->o = o;
	s->memfd = -1;
	s->preempt = o->preempt;
	s->compress = o->compress;
	s->max_bw = o->max_bandwidth;
	s->policy = o->policy;
	s->downtime_limit_ms = o->downtime_limit_ms;
	for (int c = 0; c < MIG_CHAN__COUNT; c++)
		pthread_mutex_init(&s->tx[c], NULL);
	r = mig_engine_init(&s->e, MIG_SIDE_SOURCE, o->name, o->bus_path,
			    &src_ops, s);
	if (r == 0)
		r = set_uuid(s);
	if (r < 0)
		goto out;
	if (o->link_timeout_ms > 0)
		s->e.link_timeout_ms = o->link_timeout_ms;
	if (o->notify_url && (r = mig_engine_notify(&s->e, o->notify_url)) < 0)
		goto out;
	install_signals(s);
	ready_fd = o->ready_fd;
	mig_ready_notify(&ready_fd);
	s->e.t_start_ns = mig_now_ns();
	r = attach_guest(s);
	if (r < 0 || (r = choose(s)) == 0) {
		r = migrate(s, r);
	} else if (r == 1) {
		take_over(s);
		/* refused before it could pause: nothing was resumed */
		r = mig_engine_state(&s->e) == MIG_STATE_NONE && !s->done_before ?
		    -EINVAL : 0;
	}
	join_digest(s);
	*final = s->done_before ? MIG_STATE_COMPLETED : mig_engine_state(&s->e);
	if (!s->e.t_end_ns)
		s->e.t_end_ns = mig_now_ns();
	if (o->summary) {
		mig_engine_summary(&s->e, stdout);
		fflush(stdout);
	}
	mig_engine_linger(&s->e, o->linger_ms);
out:
	signal_src = NULL;
	mig_engine_fini(&s->e);
	src_free(s);
	return r;
}

/* Bus commands (bus thread: no blocking here). */
static int cmd_pause(struct src *s, char *desc, size_t desclen)
{
	enum mig_state st = mig_engine_state(&s->e);

	if (st != MIG_STATE_POSTCOPY_ACTIVE && st != MIG_STATE_POSTCOPY_RECOVER &&
	    st != MIG_STATE_POSTCOPY_RECOVER_SETUP) {
		snprintf(desc, desclen, "migrate-pause: nothing to pause in "
			 "state %s (only postcopy-active or postcopy-recover)",
			 mig_state_name(st));
		return -EINVAL;
	}
	mig_engine_post(&s->e, MIG_EV_PAUSE);
	mig_engine_kick_all(&s->e);
	return 0;
}

static int cmd_migrate(struct src *s, const struct mig_json *args, char *desc,
		       size_t desclen)
{
	const char *uri = args ? mig_json_get_str(args, "uri") : NULL;
	bool resume = false;
	struct mig_uri u;

	if (args)
		mig_json_get_bool(args, "resume", &resume);
	if (!resume) {
		snprintf(desc, desclen, "migrate: this engine runs its "
			 "migration already; only 'resume': true is accepted");
		return -EINVAL;
	}
	if (!uri || mig_uri_parse(uri, &u) < 0) {
		snprintf(desc, desclen, "migrate: bad or missing 'uri' "
			 "(tcp:HOST:PORT or unix:PATH)");
		return -EINVAL;
	}
	if (mig_engine_state(&s->e) != MIG_STATE_POSTCOPY_PAUSED) {
		snprintf(desc, desclen, "migrate: resume needs state "
			 "postcopy-paused, not %s",
			 mig_state_name(mig_engine_state(&s->e)));
		return -EINVAL;
	}
	pthread_mutex_lock(&s->e.lock);
	snprintf(s->recover_uri, sizeof(s->recover_uri), "%s", uri);
	pthread_mutex_unlock(&s->e.lock);
	mig_engine_post(&s->e, MIG_EV_RECOVER);
	return 0;
}

static int cmd_cancel(struct src *s, char *desc, size_t desclen)
{
	enum mig_state st = mig_engine_state(&s->e);

	if (mig_state_postcopy(st)) {
		snprintf(desc, desclen, "migrate-cancel: refused: postcopy has "
			 "started and the guest's memory is split between the "
			 "hosts; use migrate-pause and migrate-recover");
		return -EPERM;
	}
	if (mig_state_terminal(st)) {
		snprintf(desc, desclen, "migrate-cancel: migration already %s",
			 mig_state_name(st));
		return -EINVAL;
	}
	mig_engine_post(&s->e, MIG_EV_CANCEL);
	return 0;
}

static int cmd_set_parameters(struct src *s, const struct mig_json *args,
			      char *desc, size_t desclen)
{
	int64_t bw = -1, dl = -1;

	bool preempt = false, set_preempt = false;

	if (!args || !mig_json_is_object(args)) {
		snprintf(desc, desclen, "migrate-set-parameters: arguments missing");
		return -EINVAL;
	}
	if (mig_json_get(args, "postcopy-preempt")) {
		enum mig_state st = mig_engine_state(&s->e);

		if (!mig_json_get_bool(args, "postcopy-preempt", &preempt)) {
			snprintf(desc, desclen, "postcopy-preempt: true or false");
			return -EINVAL;
		}
		if (st != MIG_STATE_NONE && st != MIG_STATE_SETUP &&
		    st != MIG_STATE_ACTIVE) {
			snprintf(desc, desclen, "postcopy-preempt: only before "
				 "postcopy starts (state %s)", mig_state_name(st));
			return -EINVAL;
		}
		set_preempt = true;
	}
	if (mig_json_get(args, "max-bandwidth") &&
	    (!mig_json_get_int(args, "max-bandwidth", &bw) || bw < 0)) {
		snprintf(desc, desclen, "max-bandwidth: bytes per second, >= 0");
		return -EINVAL;
	}
	if (mig_json_get(args, "downtime-limit") &&
	    (!mig_json_get_int(args, "downtime-limit", &dl) || dl < 0 ||
	     dl > 2000000)) {
		snprintf(desc, desclen, "downtime-limit: milliseconds, 0-2000000");
		return -EINVAL;
	}
	/* all checked: apply all, or (above) nothing */
	if (set_preempt)
		atomic_store(&s->preempt, preempt);
	if (bw >= 0)
		atomic_store(&s->max_bw, (uint64_t)bw);
	if (dl >= 0)
		atomic_store(&s->downtime_limit_ms, (uint64_t)dl);
	return 0;
}

static struct mig_json *query_parameters(struct src *s)
{
	struct mig_json *r = mig_json_new_object();

	mig_json_add_int(r, "max-bandwidth", (int64_t)atomic_load(&s->max_bw));
	mig_json_add_int(r, "downtime-limit",
			 (int64_t)atomic_load(&s->downtime_limit_ms));
	mig_json_add_bool(r, "postcopy-preempt", atomic_load(&s->preempt));
	mig_json_add_bool(r, "compress", s->compress);
	mig_json_add_int(r, "link-timeout", s->e.link_timeout_ms);
	return r;
}

static int src_command(struct mig_engine *e, const char *cmd,
		       const struct mig_json *args, struct mig_json **ret,
		       char *desc, size_t desclen)
{
	struct src *s = e->ctx;

	*ret = NULL;
	if (!strcmp(cmd, "migrate-start-postcopy")) {
		if (mig_engine_state(e) != MIG_STATE_ACTIVE) {
			snprintf(desc, desclen, "migrate-start-postcopy: only in "
				 "state active (precopy), not %s",
				 mig_state_name(mig_engine_state(e)));
			return -EINVAL;
		}
		mig_engine_post(e, MIG_EV_SWITCH);
		return 0;
	}
	if (!strcmp(cmd, "migrate-set-parameters"))
		return cmd_set_parameters(s, args, desc, desclen);
	if (!strcmp(cmd, "query-migrate-parameters")) {
		*ret = query_parameters(s);
		return 0;
	}
	if (!strcmp(cmd, "migrate-pause"))
		return cmd_pause(s, desc, desclen);
	if (!strcmp(cmd, "migrate"))
		return cmd_migrate(s, args, desc, desclen);
	if (!strcmp(cmd, "migrate-cancel"))
		return cmd_cancel(s, desc, desclen);
	if (!strcmp(cmd, "migrate-recover")) {
		snprintf(desc, desclen, "migrate-recover is a destination "
			 "command; on the source use migrate with resume");
		return -EINVAL;
	}
	return -ENOENT;
}
