// SPDX-License-Identifier: MIT
/*
 * The destination engine: see dest.h. Threads: the control loop (this file's
 * mig_dest_run) accepts connections, checks hellos, owns the guest and every
 * state move; one receiver per channel places pages; the fault thread turns
 * the guest's userfaults into page requests. Only the control loop closes a
 * channel, after the receivers are joined.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/chan.h"
#include "core/compress.h"
#include "dest/dest.h"
#include "engine/engine.h"
#include "base/fault.h"
#include "guest/guest.h"
#include "base/latency.h"
#include "base/log.h"
#include "core/ram.h"
#include "core/uffd.h"
#include "base/util.h"
#include "core/wire.h"

/* Connections still owing us their hello; a silent one is dropped after
 * HELLO_TIMEOUT_MS so it can never wedge the listener. */
#define MAX_PENDING 8
#define HELLO_TIMEOUT_MS 5000
#define SPAWN_TIMEOUT_MS 10000
/* An incoming guest told to quit exits in milliseconds; a wedged one is
 * killed after this. */
#define GUEST_QUIT_MS 2000
/* After telling a reconnected source that we are complete, stay a moment:
 * its recovery opens the preempt channel too, and must not find us gone. */
#define COMPLETE_LINGER_MS 3000

struct pending {
	int fd;
	bool recovery;      /* accepted on the recovery listener */
	uint64_t deadline_ns;
	size_t have;
	uint8_t buf[MIG_WIRE_HDR_BYTES + MIG_HELLO_BYTES];
};

struct dst {
	struct mig_engine e;
	const struct mig_dest_opts *o;
	char guest_ctl[108];
	int lfd, rfd;               /* listener; recovery listener or -1 */
	struct pending pend[MAX_PENDING];
	atomic_bool armed;          /* migrate-recover was issued */
	int new_rfd;                /* from the bus thread, under e.lock */
	bool have_migration;        /* the first hello fixed the UUID */

	struct mig_guest *guest;
	pid_t guest_pid;            /* 0 once reaped or gone */
	bool guest_child;           /* spawned by us: ours to reap */
	int pidfd;                  /* readable when the guest process ends */
	char listen_uri[256];       /* the main listener's */
	char armed_uri[256];        /* the recovery listener's (rfd), e.lock */
	char via_uri[256];          /* where the last main hello came in */
	int uffd, memfd;
	uint64_t base, npages;
	struct mig_bitmap *received, *requested;
	_Atomic uint64_t *fault_ns; /* per page: when a vCPU first faulted */

	pthread_mutex_t rp_lock;    /* the return path: one writer, link_up */
	bool link_up;

	pthread_t rx_thr[MIG_CHAN__COUNT], fault_thr;
	bool rx_on[MIG_CHAN__COUNT], fault_on;
	atomic_bool stop_rx, stop_fault, complete_posted;
	atomic_bool guest_started;  /* SWITCHOVER seen: pages go through uffd */
	bool source_told;           /* the source was sent our COMPLETE */
	uint64_t linger_until_ns;   /* stay until then for it to act on it */
	atomic_bool main_closed;    /* the source closed the main channel */
	int fault_efd;

	int uffd_err;               /* -EPERM: the incoming guest may not use
				     * userfaultfd; mig_dest_run's result */
	uint64_t discarded;         /* pages dropped before switchover */
	bool switched;              /* the guest's state is loaded here */
	bool running;               /* ...and its vCPUs were started */

	pthread_mutex_t blob_lock;  /* the switchover blob, rx -> loop */
	uint8_t *blob;
	size_t blob_len;
};

static struct dst *signal_dst;

static int rp_send(struct dst *d, uint32_t type, const void *p, size_t len)
{
	int r = -ENOTCONN;

	pthread_mutex_lock(&d->rp_lock);
	if (d->link_up)
		r = mig_wire_send(d->e.chan_fd[MIG_CHAN_MAIN], type, p, len);
	pthread_mutex_unlock(&d->rp_lock);
	return r;
}

static int send_req(struct dst *d, uint64_t page)
{
	struct mig_req rq = { .offset = page * MIG_PAGE_SIZE, .npages = 1 };
	uint8_t buf[MIG_REQ_BYTES];

	return rp_send(d, MIG_MSG_REQ, buf, mig_wire_enc_req(buf, &rq));
}

/* Bookkeeping after pages [first, first+n) are present. */
static void mark_present(struct dst *d, uint64_t first, uint64_t n)
{
	uint64_t now = mig_now_ns();

	for (uint64_t p = first; p < first + n; p++) {
		uint64_t t;

		if (mig_bitmap_set(d->received, p))
			continue;
		d->e.st.present++;
		t = atomic_exchange(&d->fault_ns[p], 0);
		if (t)
			mig_latency_add(d->e.lat, now - t);
	}
	if (d->e.st.present == d->npages &&
	    !atomic_exchange(&d->complete_posted, true))
		mig_engine_post(&d->e, MIG_EV_COMPLETE);
}

/* Before switchover the guest has not run here: a page sent again (it was
 * dirtied on the source) must replace the copy we hold, which UFFDIO_COPY
 * refuses to do. Writing the memfd directly is safe while nothing runs on
 * it, and leaves the page present, as the guest needs it. */
static int write_precopy(struct dst *d, uint64_t off, const uint8_t *src,
			 size_t len)
{
	int r = 0;

	if (!src) {
		/* zero pages: drop whatever is there, then allocate zeroes */
		if (fallocate(d->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)off, (off_t)len) < 0 ||
		    fallocate(d->memfd, 0, (off_t)off, (off_t)len) < 0)
			r = -errno;
		return r;
	}
	while (len) {
		ssize_t n = pwrite(d->memfd, src, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		src += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int place(struct dst *d, const struct mig_pages *pg, uint8_t *scratch)
{
	size_t len = (size_t)pg->npages * MIG_PAGE_SIZE;
	uint64_t dst = d->base + pg->offset;
	const uint8_t *src = pg->data;
	bool zero = pg->flags & MIG_PAGES_ZERO;
	long r;

	if (pg->flags & MIG_PAGES_LZ4) {
		if (mig_decompress(pg->data, pg->datalen, scratch, len) < 0)
			return -EBADMSG;
		src = scratch;
	}
	if (!atomic_load(&d->guest_started))
		r = write_precopy(d, pg->offset, zero ? NULL : src, len);
	/* never through a mapping of our own once the guest runs: it would
	 * not fault and could read a half-written page; UFFDIO_COPY places
	 * it atomically and wakes whoever waits for it */
	else if (zero)
		r = mig_uffd_zeropage(d->uffd, dst, len);
	else
		r = mig_uffd_copy(d->uffd, dst, src, len);
	if (r < 0 && atomic_load(&d->complete_posted))
		return 0; /* every page is here: a late duplicate, nothing lost */
	if (r < 0) {
		mig_err("uffd", "placing %u pages at 0x%llx: %s", pg->npages,
			(unsigned long long)dst, mig_uffd_strerror((int)r));
		return (int)r;
	}
	if (zero)
		d->e.st.zero += pg->npages;
	else
		d->e.st.normal += pg->npages;
	mark_present(d, pg->offset / MIG_PAGE_SIZE, pg->npages);
	return 0;
}

/* The source's copy changed after it sent us this one, and will not be sent
 * again before the guest runs here: drop ours, so the guest faults on it
 * and it is fetched fresh. */
static int discard(struct dst *d, const uint8_t *buf, uint32_t len)
{
	struct mig_req rq;
	uint64_t first;
	int r = mig_wire_dec_req(buf, len, d->e.ram_bytes, &rq);

	if (r < 0)
		return r;
	if (atomic_load(&d->guest_started))
		return -EBADMSG; /* only ever before switchover */
	if (fallocate(d->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)rq.offset, (off_t)rq.npages * MIG_PAGE_SIZE) < 0)
		return -errno;
	first = rq.offset / MIG_PAGE_SIZE;
	for (uint64_t p = first; p < first + rq.npages; p++)
		if (mig_bitmap_clear(d->received, p))
			d->e.st.present--;
	d->discarded += rq.npages;
	atomic_store(&d->complete_posted, false);
	return 0;
}

static void take_blob(struct dst *d, const uint8_t *buf, uint32_t len)
{
	uint8_t *copy = malloc(len);

	if (!copy)
		return;
	memcpy(copy, buf, len);
	pthread_mutex_lock(&d->blob_lock);
	free(d->blob);
	d->blob = copy;
	d->blob_len = len;
	pthread_mutex_unlock(&d->blob_lock);
	mig_engine_post(&d->e, MIG_EV_SWITCH);
}

/* One message from a source channel. Only main carries commands. */
static int handle_msg(struct dst *d, enum mig_chan_slot c, uint32_t type,
		      const uint8_t *buf, uint32_t len, uint8_t *scratch)
{
	struct mig_pages pg;
	int r;

	if (type == MIG_MSG_PAGES) {
		r = mig_wire_dec_pages(buf, len, d->e.ram_bytes, &pg);
		return r < 0 ? r : place(d, &pg, scratch);
	}
	if (type == MIG_MSG_PING)
		return 0;
	if (c != MIG_CHAN_MAIN)
		return -EBADMSG;
	switch (type) {
	case MIG_MSG_SWITCHOVER:
		atomic_store(&d->guest_started, true);
		take_blob(d, buf, len);
		return 0;
	case MIG_MSG_DISCARD:
		return discard(d, buf, len);
	case MIG_MSG_EOS:
		mig_info("rx", "source has sent every page");
		return 0;
	case MIG_MSG_RESUME:
		mig_engine_post(&d->e, MIG_EV_RESUMED);
		return 0;
	case MIG_MSG_CANCEL:
		mig_engine_post(&d->e, MIG_EV_CANCEL);
		return 1;
	default:
		return -EBADMSG;
	}
}

struct rx_arg {
	struct dst *d;
	enum mig_chan_slot c;
};

static void *rx_main(void *arg)
{
	struct rx_arg *a = arg;
	struct dst *d = a->d;
	enum mig_chan_slot c = a->c;
	int fd = d->e.chan_fd[c];
	uint8_t *buf = malloc(MIG_WIRE_MAX_PAYLOAD);
	uint8_t *scratch = malloc(MIG_WIRE_MAX_RUN_PAGES * MIG_PAGE_SIZE);
	int r = buf && scratch ? 0 : -ENOMEM;

	free(a);
	if (c == MIG_CHAN_MAIN)
		mig_thread_bulk();
	while (r == 0 && !atomic_load(&d->stop_rx)) {
		uint32_t type, len;

		r = mig_wire_recv(fd, &type, buf, MIG_WIRE_MAX_PAYLOAD, &len);
		if (r == 0) {
			d->e.st.bytes += MIG_WIRE_HDR_BYTES + len;
			r = handle_msg(d, c, type, buf, len, scratch);
		}
		if (r == -EBADMSG || r == -ERANGE)
			mig_err("wire", "%s channel: malformed %s message",
				c ? "preempt" : "main", mig_wire_type_name(type));
	}
	if (c == MIG_CHAN_MAIN)
		atomic_store(&d->main_closed, true);
	if (r < 0 && !atomic_load(&d->stop_rx) &&
	    mig_engine_state(&d->e) != MIG_STATE_COMPLETED) {
		mig_warn("link", "%s channel: %s", c ? "preempt" : "main",
			 strerror(-r));
		mig_engine_post(&d->e, MIG_EV_LINK_DOWN);
	} else if (c == MIG_CHAN_MAIN) {
		mig_engine_signal(&d->e); /* completed: the loop may end now */
	}
	free(buf);
	free(scratch);
	return NULL;
}

static int start_rx(struct dst *d, enum mig_chan_slot c)
{
	struct rx_arg *a = malloc(sizeof(*a));
	int r;

	if (!a)
		return -ENOMEM;
	a->d = d;
	a->c = c;
	atomic_store(&d->stop_rx, false);
	if (c == MIG_CHAN_MAIN)
		atomic_store(&d->main_closed, false);
	r = pthread_create(&d->rx_thr[c], NULL, rx_main, a);
	if (r) {
		free(a);
		return -r;
	}
	d->rx_on[c] = true;
	return 0;
}

static void on_fault(struct dst *d, uint64_t addr)
{
	uint64_t page;

	if (addr < d->base || addr >= d->base + d->e.ram_bytes)
		return;
	page = (addr - d->base) / MIG_PAGE_SIZE;
	if (mig_bitmap_test(d->received, page)) {
		/* placed between the fault and now: just wake the vCPU */
		mig_uffd_wake(d->uffd, addr, MIG_PAGE_SIZE);
		return;
	}
	if (mig_bitmap_set(d->requested, page))
		return; /* another vCPU asked already */
	atomic_store(&d->fault_ns[page], mig_now_ns());
	d->e.st.requests++;
	/* while the link is down the bit stays set and the request is sent
	 * again once a recovery resumes */
	send_req(d, page);
}

static void *fault_main(void *arg)
{
	struct dst *d = arg;
	struct pollfd p[2] = { { .fd = d->uffd, .events = POLLIN },
			       { .fd = d->fault_efd, .events = POLLIN } };

	while (!atomic_load(&d->stop_fault)) {
		uint64_t addr;
		int r;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		while ((r = mig_uffd_read_fault(d->uffd, &addr)) > 0)
			on_fault(d, addr);
		if (r < 0) {
			mig_err("uffd", "reading faults: %s", mig_uffd_strerror(r));
			break;
		}
	}
	return NULL;
}

static void stop_rx(struct dst *d)
{
	atomic_store(&d->stop_rx, true);
	mig_engine_kick_all(&d->e);
	for (int c = 0; c < MIG_CHAN__COUNT; c++) {
		if (d->rx_on[c])
			pthread_join(d->rx_thr[c], NULL);
		d->rx_on[c] = false;
	}
	pthread_mutex_lock(&d->rp_lock);
	d->link_up = false;
	pthread_mutex_unlock(&d->rp_lock);
	for (int c = 0; c < MIG_CHAN__COUNT; c++) {
		int fd = mig_engine_get_chan(&d->e, c);

		mig_engine_set_chan(&d->e, c, -1);
		if (fd >= 0)
			close(fd);
	}
}

static void stop_fault(struct dst *d)
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

static void refuse(int fd, uint32_t code, const char *why)
{
	uint8_t buf[4 + MIG_WIRE_MAX_REASON];
	char peer[64];

	mig_chan_peer_name(fd, peer, sizeof(peer));
	mig_warn("chan", "refused connection from %s: %s", peer, why);
	mig_wire_send(fd, MIG_MSG_REFUSE, buf, mig_wire_enc_refuse(buf, code, why));
	close(fd);
}

static int hello_ack(struct dst *d, int fd, uint32_t role)
{
	struct mig_hello h = { .version = MIG_WIRE_VERSION, .role = role };
	uint8_t buf[MIG_HELLO_BYTES];

	memcpy(h.uuid, d->e.uuid, 16);
	mig_chan_tune(fd, d->e.link_timeout_ms / 1000);
	mig_chan_set_timeouts(fd, d->e.link_timeout_ms, d->e.link_timeout_ms);
	return mig_wire_send(fd, MIG_MSG_HELLO, buf, mig_wire_enc_hello(buf, &h));
}

static int recv_ram_info(struct dst *d, int fd, struct mig_ram_info *ri)
{
	uint8_t buf[MIG_RAM_INFO_BYTES];
	uint32_t type, len;
	int r = mig_wire_recv(fd, &type, buf, sizeof(buf), &len);

	if (r == 0 && type != MIG_MSG_RAM_INFO)
		r = -EBADMSG;
	if (r == 0)
		r = mig_wire_dec_ram_info(buf, len, ri);
	if (r < 0)
		mig_engine_error(&d->e, "source sent no valid RAM description: %s",
				 strerror(-r));
	return r;
}

/* Watch the guest process: its end is news at once, whatever the links do
 * (a dead guest would otherwise be noticed only at the next page placed). */
static void watch_guest(struct dst *d, pid_t pid, bool child)
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
static int attach_guest(struct dst *d, struct mig_guest_info *gi, bool complete)
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

/* peer: where the source reaches us, for a restarted engine to listen on */
static int bind_guest(struct dst *d, const char *peer)
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

static int alloc_pages(struct dst *d)
{
	d->npages = d->e.ram_bytes / MIG_PAGE_SIZE;
	d->received = mig_bitmap_new(d->npages);
	d->requested = mig_bitmap_new(d->npages);
	d->fault_ns = calloc(d->npages, sizeof(*d->fault_ns));
	d->e.lat = mig_latency_new();
	return d->received && d->requested && d->fault_ns && d->e.lat ? 0 : -ENOMEM;
}

/* The first main connection: learn the RAM size, spawn and claim the
 * incoming guest, start serving its faults. */
static int start_session(struct dst *d, int fd)
{
	struct mig_guest_info gi;
	struct mig_ram_info ri;
	pid_t pid = 0;
	int r = recv_ram_info(d, fd, &ri);

	if (r < 0)
		return r;
	d->e.ram_bytes = ri.ram_bytes;
	r = alloc_pages(d);
	if (r == 0)
		r = mig_guest_spawn(d->guest_ctl, ri.ram_bytes, true, NULL, 1,
				    SPAWN_TIMEOUT_MS, &pid);
	if (r < 0) {
		mig_engine_error(&d->e, "cannot start the incoming guest: %s",
				 r == -EPERM ? mig_uffd_strerror(r) : strerror(-r));
		if (r == -EPERM)
			d->uffd_err = r;
		return r;
	}
	watch_guest(d, pid, true);
	r = attach_guest(d, &gi, false);
	if (r < 0) {
		mig_engine_error(&d->e, "incoming guest %s: %s", d->guest_ctl,
				 strerror(-r));
		return r;
	}
	r = bind_guest(d, d->listen_uri);
	if (r < 0)
		return r;
	r = pthread_create(&d->fault_thr, NULL, fault_main, d);
	if (r)
		return -r;
	d->fault_on = true;
	pthread_mutex_lock(&d->rp_lock);
	d->link_up = true;
	pthread_mutex_unlock(&d->rp_lock);
	d->e.t_setup_ns = mig_now_ns();
	mig_engine_move(&d->e, MIG_STATE_ACTIVE);
	return start_rx(d, MIG_CHAN_MAIN);
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

static void begin_recovery(struct dst *d, int fd)
{
	int r;

	mig_engine_move(&d->e, MIG_STATE_POSTCOPY_RECOVER);
	mig_engine_set_chan(&d->e, MIG_CHAN_MAIN, fd);
	r = hello_ack(d, fd, MIG_ROLE_MAIN);
	if (r == 0)
		r = send_bitmap(d);
	if (r == 0)
		r = start_rx(d, MIG_CHAN_MAIN);
	if (r < 0) {
		mig_warn("recover", "handshake failed: %s", strerror(-r));
		mig_engine_post(&d->e, MIG_EV_LINK_DOWN);
	}
}

/* A source that missed our COMPLETE reconnects to recover: tell it. */
static void tell_complete(struct dst *d, int fd)
{
	if (hello_ack(d, fd, MIG_ROLE_MAIN) == 0 &&
	    mig_wire_send(fd, MIG_MSG_COMPLETE, NULL, 0) == 0) {
		mig_info("engine", "told the reconnected source we are complete");
		d->source_told = true;
		d->linger_until_ns = mig_now_ns() + COMPLETE_LINGER_MS * 1000000ull;
		atomic_store(&d->main_closed, false); /* wait the linger out */
		mig_engine_signal(&d->e);
	}
	close(fd);
}

static void accept_preempt(struct dst *d, int fd)
{
	enum mig_state st = mig_engine_state(&d->e);

	if (st == MIG_STATE_COMPLETED) {
		/* the source's recovery opens it before it learns we are done */
		hello_ack(d, fd, MIG_ROLE_PREEMPT);
		close(fd);
		return;
	}

	if (mig_engine_get_chan(&d->e, MIG_CHAN_PREEMPT) >= 0 ||
	    (st != MIG_STATE_ACTIVE && st != MIG_STATE_POSTCOPY_ACTIVE &&
	     st != MIG_STATE_POSTCOPY_RECOVER)) {
		refuse(fd, MIG_REFUSE_STATE, "no preempt channel expected now");
		return;
	}
	mig_engine_set_chan(&d->e, MIG_CHAN_PREEMPT, fd);
	if (hello_ack(d, fd, MIG_ROLE_PREEMPT) < 0 ||
	    start_rx(d, MIG_CHAN_PREEMPT) < 0)
		mig_engine_post(&d->e, MIG_EV_LINK_DOWN);
}

static void accept_main(struct dst *d, int fd, const struct mig_hello *h)
{
	enum mig_state st = mig_engine_state(&d->e);

	if ((h->flags & MIG_HELLO_RESUME) && st == MIG_STATE_COMPLETED) {
		tell_complete(d, fd);
		return;
	}
	if (h->flags & MIG_HELLO_RESUME) {
		if (st != MIG_STATE_POSTCOPY_PAUSED || !atomic_load(&d->armed))
			refuse(fd, MIG_REFUSE_STATE, st == MIG_STATE_POSTCOPY_PAUSED ?
			       "paused, but migrate-recover has not been issued "
			       "here" : "nothing to recover in this state");
		else
			begin_recovery(d, fd);
		return;
	}
	if (d->have_migration) {
		refuse(fd, MIG_REFUSE_STATE, "a migration is already running here");
		return;
	}
	d->have_migration = true;
	memcpy(d->e.uuid, h->uuid, 16);
	mig_uuid_format(d->e.uuid, d->e.uuid_str);
	mig_engine_set_chan(&d->e, MIG_CHAN_MAIN, fd);
	if (hello_ack(d, fd, MIG_ROLE_MAIN) < 0 || start_session(d, fd) < 0)
		mig_engine_post(&d->e, MIG_EV_LINK_DOWN);
}

static void on_hello(struct dst *d, struct pending *p)
{
	struct mig_hello h;
	uint32_t type, len;
	int fd = p->fd, r;
	char want[37], got[37], why[128];

	p->fd = -1;
	mig_set_nonblock(fd, false);
	r = mig_wire_dec_hdr(p->buf, &type, &len);
	if (r == 0 && (type != MIG_MSG_HELLO || len != MIG_HELLO_BYTES))
		r = -EBADMSG;
	if (r == 0)
		r = mig_wire_dec_hello(p->buf + MIG_WIRE_HDR_BYTES, len, &h);
	if (r < 0) {
		refuse(fd, r == -EPROTO ? MIG_REFUSE_VERSION : MIG_REFUSE_PROTOCOL,
		       r == -EPROTO ? "not a mig peer of protocol version 1" :
		       "malformed hello");
		return;
	}
	if (d->have_migration && memcmp(h.uuid, d->e.uuid, 16)) {
		mig_uuid_format(d->e.uuid, want);
		mig_uuid_format(h.uuid, got);
		snprintf(why, sizeof(why), "migration UUID %s is not the one "
			 "running here (%s)", got, want);
		refuse(fd, MIG_REFUSE_UUID, why);
		return;
	}
	if (h.role == MIG_ROLE_PREEMPT && d->have_migration) {
		accept_preempt(d, fd);
	} else if (h.role == MIG_ROLE_MAIN) {
		pthread_mutex_lock(&d->e.lock);
		snprintf(d->via_uri, sizeof(d->via_uri), "%s",
			 p->recovery ? d->armed_uri : d->listen_uri);
		pthread_mutex_unlock(&d->e.lock);
		accept_main(d, fd, &h);
	}
	else
		refuse(fd, MIG_REFUSE_ROLE, "preempt channel before any migration");
}

static void add_pending(struct dst *d, int lfd, bool recovery)
{
	int fd = mig_chan_accept(lfd);

	if (fd < 0)
		return;
	for (int i = 0; i < MAX_PENDING; i++) {
		if (d->pend[i].fd >= 0)
			continue;
		mig_set_nonblock(fd, true);
		d->pend[i] = (struct pending){ .fd = fd, .recovery = recovery,
			.deadline_ns = mig_now_ns() + HELLO_TIMEOUT_MS * 1000000ull };
		return;
	}
	mig_warn("chan", "too many connections waiting for their hello");
	close(fd);
}

static void read_pending(struct dst *d, struct pending *p)
{
	ssize_t n = read(p->fd, p->buf + p->have, sizeof(p->buf) - p->have);

	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		close(p->fd);
		p->fd = -1;
		return;
	}
	p->have += n;
	if (p->have == sizeof(p->buf))
		on_hello(d, p);
}

static void expire_pending(struct dst *d)
{
	uint64_t now = mig_now_ns();

	for (int i = 0; i < MAX_PENDING; i++) {
		if (d->pend[i].fd >= 0 && now > d->pend[i].deadline_ns) {
			mig_warn("chan", "dropped a connection that sent no hello");
			close(d->pend[i].fd);
			d->pend[i].fd = -1;
		}
	}
}

static void end_early(struct dst *d, enum mig_state to);

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
static void guest_gone(struct dst *d)
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
		end_early(d, MIG_STATE_FAILED);
		return;
	}
	mig_engine_error(&d->e, "the guest (pid %d) %s after switchover: what "
			 "ran here is lost; the source keeps its guest stopped, "
			 "as of switchover", (int)pid, how);
	stop_rx(d);
	stop_fault(d);
	mig_engine_move(&d->e, MIG_STATE_FAILED);
}

/* One round of the control loop's poll: listeners, hellos, wakeups, the
 * guest's end. */
static unsigned poll_once(struct dst *d, int timeout_ms)
{
	struct pollfd p[4 + MAX_PENDING];
	int n = 0, idx[MAX_PENDING];

	pthread_mutex_lock(&d->e.lock);
	if (d->new_rfd >= 0) {
		if (d->rfd >= 0)
			close(d->rfd);
		d->rfd = d->new_rfd;
		d->new_rfd = -1;
	}
	pthread_mutex_unlock(&d->e.lock);

	p[n++] = (struct pollfd){ .fd = d->e.efd, .events = POLLIN };
	p[n++] = (struct pollfd){ .fd = d->lfd, .events = POLLIN };
	p[n++] = (struct pollfd){ .fd = d->rfd, .events = POLLIN };
	p[n++] = (struct pollfd){ .fd = d->pidfd, .events = POLLIN };
	for (int i = 0; i < MAX_PENDING; i++) {
		if (d->pend[i].fd < 0)
			continue;
		idx[n - 4] = i;
		p[n++] = (struct pollfd){ .fd = d->pend[i].fd, .events = POLLIN };
	}
	if (poll(p, n, timeout_ms) > 0) {
		if (p[3].revents)
			guest_gone(d);
		for (int i = 4; i < n; i++)
			if (p[i].revents)
				read_pending(d, &d->pend[idx[i - 4]]);
		if (p[1].revents)
			add_pending(d, d->lfd, false);
		if (p[2].revents)
			add_pending(d, d->rfd, true);
	}
	expire_pending(d);
	return mig_engine_wait(&d->e, 0);
}

static int run_guest(struct dst *d)
{
	int r;

	if (d->running || d->o->paused_start)
		return 0;
	r = mig_guest_cont(d->guest);
	if (r < 0)
		mig_engine_error(&d->e, "cannot start the guest: %s", strerror(-r));
	d->running = r == 0;
	return r;
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
	r = mig_guest_load_state(d->guest, blob, len);
	free(blob);
	if (r < 0) {
		mig_engine_error(&d->e, "guest rejected its state: %s",
				 strerror(-r));
		return r;
	}
	d->switched = true;
	if (d->e.st.present == d->npages)
		return run_guest(d); /* stop-and-copy: complete() follows */
	/* Committed: we hold the state, and the source may count on us from
	 * the moment it reads our ack, so from here a link failure pauses.
	 * The guest runs only on the source's RESUME, so that a source that
	 * never got the ack can safely run it there instead. */
	d->e.t_pump_start_ns = mig_now_ns();
	mig_engine_move(&d->e, MIG_STATE_POSTCOPY_ACTIVE);
	rp_send(d, MIG_MSG_RESUME_ACK, NULL, 0);
	return 0;
}

/* RESUME_ACK must be the first message of the resumed return path: the
 * link opens to the fault thread only once it is out, then every request
 * that waited through the pause is sent again. */
static void on_resumed(struct dst *d)
{
	uint64_t n = 0;
	int r;

	if (d->switched)
		run_guest(d); /* the go-ahead, at switchover or at recovery */
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
		bind_guest(d, d->via_uri);
	mig_engine_move(&d->e, MIG_STATE_POSTCOPY_ACTIVE);
	for (uint64_t p = mig_bitmap_next_set(d->requested, 0); p < d->npages;
	     p = mig_bitmap_next_set(d->requested, p + 1)) {
		if (!mig_bitmap_test(d->received, p) && send_req(d, p) == 0)
			n++;
	}
	if (n)
		mig_info("recover", "asked again for %llu pages vCPUs wait for",
			 (unsigned long long)n);
}

/* Ask the incoming guest to quit, give it a moment to clean up after
 * itself (its socket), and only then make sure of it. */
static void kill_guest(struct dst *d)
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
	d->source_told = rp_send(d, MIG_MSG_COMPLETE, NULL, 0) == 0;
	stop_fault(d);
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
	d->linger_until_ns = mig_now_ns() +
			     (uint64_t)d->e.link_timeout_ms * 1000000ull;
	d->e.t_end_ns = mig_now_ns();
	mig_engine_move(&d->e, MIG_STATE_COMPLETED);
}

static void pause_now(struct dst *d, const char *why)
{
	mig_warn("engine", "pausing: %s", why);
	stop_rx(d);
	mig_engine_move(&d->e, MIG_STATE_POSTCOPY_PAUSED);
}

static void heartbeat(struct dst *d, uint64_t *last_ns)
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

/* Before switchover the guest is whole on the source: end here, and take
 * the incoming guest with us. */
static void end_early(struct dst *d, enum mig_state to)
{
	stop_rx(d);
	kill_guest(d);
	mig_engine_move(&d->e, to);
}

/* Handle the loop's events; true when the migration has ended. */
static bool handle(struct dst *d, unsigned ev)
{
	enum mig_state st;

	if ((ev & MIG_EV_SWITCH) && do_switchover(d) < 0) {
		end_early(d, MIG_STATE_FAILED);
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
			end_early(d, MIG_STATE_CANCELLED);
		else if (ev & MIG_EV_SIGNAL)
			end_early(d, d->have_migration ? MIG_STATE_FAILED :
				  MIG_STATE_CANCELLED);
		else if ((ev & MIG_EV_LINK_DOWN) && d->have_migration) {
			mig_engine_error(&d->e, "link lost before switchover");
			end_early(d, MIG_STATE_FAILED);
		} else
			return false;
		return true;
	}
	if (ev & MIG_EV_SIGNAL) {
		if (st != MIG_STATE_POSTCOPY_PAUSED)
			pause_now(d, "terminated by signal");
		mig_warn("engine", "stopping while paused: the guest is kept, "
			 "waiting for its missing pages");
		return true;
	}
	if ((ev & (MIG_EV_LINK_DOWN | MIG_EV_PAUSE)) &&
	    (st == MIG_STATE_POSTCOPY_ACTIVE || st == MIG_STATE_POSTCOPY_RECOVER))
		pause_now(d, ev & MIG_EV_PAUSE ? "migrate-pause" : "link failure");
	if (ev & MIG_EV_RESUMED)
		on_resumed(d);
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
			heartbeat(d, &last_hb);
	}
}

static void on_signal(int sig)
{
	(void)sig;
	if (signal_dst) {
		__atomic_or_fetch(&signal_dst->e.pending, MIG_EV_SIGNAL,
				  __ATOMIC_SEQ_CST);
		mig_engine_signal(&signal_dst->e);
	}
}

static int dst_command(struct mig_engine *e, const char *cmd,
		       const struct mig_json *args, struct mig_json **ret,
		       char *desc, size_t desclen);
static void dst_query(struct mig_engine *e, struct mig_json *ret);

static const struct mig_engine_ops dst_ops = {
	.command = dst_command,
	.query = dst_query,
};

static int dst_open(struct dst *d, const struct mig_dest_opts *o)
{
	int r;

	d->o = o;
	d->lfd = d->rfd = d->new_rfd = d->uffd = d->memfd = d->fault_efd = -1;
	d->pidfd = -1;
	for (int i = 0; i < MAX_PENDING; i++)
		d->pend[i].fd = -1;
	pthread_mutex_init(&d->rp_lock, NULL);
	pthread_mutex_init(&d->blob_lock, NULL);
	r = mig_engine_init(&d->e, MIG_SIDE_DEST, o->name, o->bus_path,
			    &dst_ops, d);
	if (r < 0)
		return r;
	if (o->link_timeout_ms > 0)
		d->e.link_timeout_ms = o->link_timeout_ms;
	if (o->notify_url && (r = mig_engine_notify(&d->e, o->notify_url)) < 0)
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
	int r = attach_guest(d, &gi, true);

	if (r == 0 && (gi.rec.side != MIG_SIDE_DEST || gi.rec.phase < MIG_GUEST_SWITCHED))
		r = -EEXIST; /* changed since the probe */
	if (r < 0) {
		mig_err("guest", "cannot take over the guest at %s: %s",
			d->guest_ctl, strerror(-r));
		return r;
	}
	memcpy(d->e.uuid, gi.rec.uuid, 16);
	mig_uuid_format(d->e.uuid, d->e.uuid_str);
	d->have_migration = d->switched = true;
	d->running = gi.running;
	atomic_store(&d->guest_started, true);
	d->e.ram_bytes = gi.ram_bytes;
	r = alloc_pages(d);
	n = r < 0 ? r : mig_bitmap_from_file(d->received, d->memfd, d->npages);
	if (n < 0)
		return (int)n;
	d->e.st.present = (uint64_t)n;
	watch_guest(d, gi.pid, false);
	r = bind_guest(d, gi.rec.peer);
	if (r == 0 && d->uffd >= 0)
		r = -pthread_create(&d->fault_thr, NULL, fault_main, d);
	if (r < 0)
		return r;
	d->fault_on = d->uffd >= 0;
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
	stop_rx(d);
	stop_fault(d);
	for (int i = 0; i < MAX_PENDING; i++)
		if (d->pend[i].fd >= 0)
			close(d->pend[i].fd);
	if (d->lfd >= 0)
		close(d->lfd);
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
	free(d->fault_ns);
	free(d->blob);
	pthread_mutex_destroy(&d->rp_lock);
	pthread_mutex_destroy(&d->blob_lock);
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
			       dir, o->name) >= (int)sizeof(d->guest_ctl))
		r = -ENAMETOOLONG;
	return r;
}

int mig_dest_run(const struct mig_dest_opts *o, enum mig_state *final)
{
	struct dst *d = calloc(1, sizeof(*d));
	struct sigaction sa = { .sa_handler = on_signal };
	struct mig_guest_info gi = { .pid = 0 };
	int r, ready_fd, attach = 0;

	if (!d)
		return -ENOMEM;
	r = default_guest_ctl(d, o);
	if (r == 0)
		r = dst_open(d, o);
	if (r == 0)
		r = attach = probe_guest(d, &gi);
	if (r >= 0)
		r = dst_listen(d, o->listen ? o->listen : gi.rec.peer);
	if (r == 0 && attach)
		r = take_over(d);
	if (r < 0)
		goto out;
	signal_dst = d;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (!attach) {
		d->e.t_start_ns = mig_now_ns();
		mig_engine_move(&d->e, MIG_STATE_SETUP);
	}
	ready_fd = o->ready_fd;
	mig_ready_notify(&ready_fd);
	loop(d);
	*final = mig_engine_state(&d->e);
	if (!d->e.t_end_ns)
		d->e.t_end_ns = mig_now_ns();
	if (o->summary) {
		mig_engine_summary(&d->e, stdout);
		fflush(stdout);
	}
	mig_engine_linger(&d->e, o->linger_ms);
	r = d->uffd_err;
out:
	signal_dst = NULL;
	dst_close(d);
	if (d->e.sm)
		mig_engine_fini(&d->e);
	free(d);
	return r;
}

/* Bus commands (bus thread: no blocking here). */
static int cmd_recover(struct dst *d, const struct mig_json *args, char *desc,
		       size_t desclen)
{
	const char *uri = args ? mig_json_get_str(args, "uri") : NULL;
	enum mig_state st = mig_engine_state(&d->e);
	struct mig_uri u;
	bool listening;
	int fd;

	if (!uri || mig_uri_parse(uri, &u) < 0) {
		snprintf(desc, desclen, "migrate-recover: bad or missing 'uri' "
			 "(tcp:HOST:PORT or unix:PATH)");
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

static int dst_command(struct mig_engine *e, const char *cmd,
		       const struct mig_json *args, struct mig_json **ret,
		       char *desc, size_t desclen)
{
	struct dst *d = e->ctx;
	enum mig_state st = mig_engine_state(e);

	*ret = NULL;
	if (!strcmp(cmd, "migrate-recover"))
		return cmd_recover(d, args, desc, desclen);
	if (!strcmp(cmd, "migrate-pause")) {
		if (st != MIG_STATE_POSTCOPY_ACTIVE && st != MIG_STATE_POSTCOPY_RECOVER) {
			snprintf(desc, desclen, "migrate-pause: nothing to pause "
				 "in state %s (only postcopy-active or "
				 "postcopy-recover)", mig_state_name(st));
			return -EINVAL;
		}
		mig_engine_post(e, MIG_EV_PAUSE);
		mig_engine_kick_all(e);
		return 0;
	}
	if (!strcmp(cmd, "migrate-cancel")) {
		snprintf(desc, desclen, "migrate-cancel: %s", mig_state_postcopy(st) ?
			 "refused: postcopy has started and the guest's memory "
			 "is split between the hosts; use migrate-pause and "
			 "migrate-recover" : "cancel the migration on the source");
		return -EPERM;
	}
	return -ENOENT;
}

static void dst_query(struct mig_engine *e, struct mig_json *ret)
{
	struct dst *d = e->ctx;
	struct mig_latency_summary s;
	struct mig_json *lat;

	if (!d->e.lat)
		return;
	mig_latency_summary(d->e.lat, &s);
	lat = mig_json_new_object();
	mig_json_add_int(lat, "count", s.count);
	mig_json_add_double(lat, "p50-us", s.p50_ns / 1e3);
	mig_json_add_double(lat, "p90-us", s.p90_ns / 1e3);
	mig_json_add_double(lat, "p99-us", s.p99_ns / 1e3);
	mig_json_add_double(lat, "max-us", s.max_ns / 1e3);
	mig_json_add(ret, "postcopy-latency", lat);
	if (mig_json_get(ret, "ram"))
		mig_json_add_int(mig_json_get(ret, "ram"), "discarded", d->discarded);
	mig_json_add_double(ret, "postcopy-blocktime", s.sum_ns / 1e6);
	if (d->guest_ctl[0])
		mig_json_add_str(ret, "guest-ctl", d->guest_ctl);
}
