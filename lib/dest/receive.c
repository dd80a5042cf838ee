// SPDX-License-Identifier: MIT
/*
 * The destination's receivers: one thread per source channel reads its
 * messages and places the pages that arrive, through the memfd before
 * switchover and through the userfaultfd after it. Only main carries
 * commands (DISCARD, SWITCHOVER, EOS, RESUME, CANCEL), each only where
 * its sequence puts it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/bytes.h"
#include "base/latency.h"
#include "base/log.h"
#include "base/util.h"
#include "core/compress.h"
#include "core/tls.h"
#include "core/ram.h"
#include "core/uffd.h"
#include "core/chan.h"
#include "core/wire.h"
#include "dest/dest-int.h"

int dst_alloc_pages(struct dst *d)
{
	d->npages = d->e.ram_bytes / MIG_PAGE_SIZE;
	d->received = mig_bitmap_new(d->npages);
	d->requested = mig_bitmap_new(d->npages);
	d->unplaced = mig_bitmap_new(d->npages);
	d->taken = mig_bitmap_new(d->npages);
	d->fault_ns = calloc(d->npages, sizeof(*d->fault_ns));
	d->e.lat = mig_latency_new();
	return d->received && d->requested && d->unplaced && d->taken &&
	       d->fault_ns && d->e.lat ? 0 : -ENOMEM;
}

/* A vCPU's wait for page p ends, if one waits. */
static void wait_over(struct dst *d, uint64_t p, uint64_t now)
{
	uint64_t t;

	/* a load first: no vCPU waits for most pages, and an exchange of 0
	 * for 0 would write a line of fault_ns per page for nothing (a 0
	 * read here is the 0 it would have returned) */
	if (!atomic_load(&d->fault_ns[p]))
		return;
	t = atomic_exchange(&d->fault_ns[p], 0);
	if (!t)
		return; /* no vCPU waits for it */
	mig_latency_add(d->e.lat, now - t);
	dst_blocktime_placed(d, p);
}

/* Bookkeeping after pages [first, first+n) are present: a word of the
 * bitmap at a time (a hole's runs are 512 pages of nothing else). */
static void mark_present(struct dst *d, uint64_t first, uint64_t n)
{
	uint64_t now = mig_now_ns(), added = 0;

	for (uint64_t p = first, k; p < first + n; p += k) {
		uint64_t fresh;

		k = mig_bitmap_span(p, first + n - p);
		fresh = mig_bitmap_or_bits(d->received, p, MIG_LOW_BITS(k));
		added += (uint64_t)__builtin_popcountll(fresh);
		for (; fresh; fresh &= fresh - 1)
			wait_over(d, p + (uint64_t)__builtin_ctzll(fresh), now);
	}
	if (atomic_fetch_add(&d->e.st.present, added) + added == d->npages &&
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
	uint64_t first = off / MIG_PAGE_SIZE, npages = len / MIG_PAGE_SIZE;

	if (!src) {
		/* zero pages: drop whatever is there, and leave the hole */
		if (fallocate(d->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)off, (off_t)len) < 0)
			return -errno;
		for (uint64_t p = first; p < first + npages; p++)
			mig_bitmap_set(d->unplaced, p);
		return 0;
	}
	for (uint64_t p = first; p < first + npages; p++)
		mig_bitmap_clear(d->unplaced, p);
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

/*
 * A zero run once the guest runs here: what is not here yet stays a hole,
 * so an idle guest's empty RAM is never allocated here, and a zero page is
 * placed only where a vCPU waits (or faults later: userfault.c). unplaced
 * is set before received, and requested read after it; the fault thread
 * sets requested, then reads received. So one of the two sees the other,
 * and clearing unplaced decides which of them places the page.
 */
static long leave_zero(struct dst *d, uint64_t first, uint64_t n)
{
	uint64_t p, k;

	for (p = first; p < first + n; p += k) {
		k = mig_bitmap_span(p, first + n - p);
		mig_bitmap_or_bits(d->unplaced, p, MIG_LOW_BITS(k) &
				   ~mig_bitmap_bits(d->received, p, (unsigned)k));
	}
	mark_present(d, first, n);
	for (p = first; p < first + n; p += k) {
		uint64_t asked;

		k = mig_bitmap_span(p, first + n - p);
		asked = mig_bitmap_bits(d->requested, p, (unsigned)k);
		for (; asked; asked &= asked - 1) {
			long r = dst_place_unplaced(
				d, p + (uint64_t)__builtin_ctzll(asked), 1);

			if (r < 0)
				return r;
		}
	}
	return (long)n;
}

long dst_place_unplaced(struct dst *d, uint64_t page, uint64_t max)
{
	uint64_t n = 1;
	long r;

	if (!mig_bitmap_clear(d->unplaced, page))
		return 0;
	while (n < max && page + n < d->npages &&
	       mig_bitmap_clear(d->unplaced, page + n))
		n++;
	r = mig_uffd_zeropage(d->uffd, d->base + page * MIG_PAGE_SIZE,
			      n * MIG_PAGE_SIZE);
	return r < 0 ? r : 1;
}

/* A vCPU that faults on a page in hand most likely walks on into the next
 * ones: placing them with it (once it is woken) saves a fault each. */
#define TAKE_PAGES 16

/* Place from hand [page, page + n) at most: the pages placed, all of them
 * before the first one present. Their taken bits are set first, so that
 * the receiver, refused them, knows why (copy_run). */
static long take_run(struct dst *d, const uint8_t *src, uint64_t page,
		     uint64_t n)
{
	long r;

	for (uint64_t p = page; p < page + n; p++)
		mig_bitmap_set(d->taken, p);
	r = mig_uffd_copy_prefix(d->uffd, d->base + page * MIG_PAGE_SIZE, src,
				 n * MIG_PAGE_SIZE);
	for (uint64_t p = page + (uint64_t)MIG_MAX(r, 0); p < page + n; p++)
		mig_bitmap_clear(d->taken, p);
	return r;
}

enum take { TAKE_NONE, TAKE_LATER, TAKE_DONE };

/* Slot i of h holds run v, and the page in it: place it from there, and
 * the next few after it, if the run is still in hand and their bytes are
 * in. The faulting page first, alone: its vCPU goes on meanwhile. DONE:
 * the page is present; LATER: its bytes are not in yet; NONE: there is
 * nothing to take (a zero or compressed run, or the run is placed). */
static enum take take_from_hand(struct dst *d, struct dst_hand *h,
				unsigned i, uint64_t v, uint64_t page)
{
	uint64_t first = (v >> 16) - 1, n = 0;
	long r = -1, more = 0;
	bool raw;

	pthread_mutex_lock(&h->lock);
	raw = atomic_load(&h->run[i]) == v && h->data[i] != SIZE_MAX;
	if (raw) {
		size_t off = h->data[i] + (page - first) * MIG_PAGE_SIZE;
		size_t end = atomic_load(&h->end);

		if (end > off)
			n = MIG_MIN(MIG_MIN((end - off) / MIG_PAGE_SIZE, TAKE_PAGES),
				    first + (v & 0xffff) - page);
		if (n)
			r = take_run(d, h->buf + off, page, 1);
		/* the vCPU is awake: its wait ends here, not after the rest
		 * (first touches of new pages, 10 us each under load) */
		if (r == 1)
			mark_present(d, page, 1);
		if (r == 1 && n > 1)
			more = take_run(d, h->buf + off + MIG_PAGE_SIZE, page + 1,
					n - 1);
	}
	pthread_mutex_unlock(&h->lock);
	if (more > 0)
		mark_present(d, page + 1, (uint64_t)more);
	if (r == 1)
		d->from_hand += 1 + (uint64_t)MIG_MAX(more, 0);
	if (r >= 0 || mig_bitmap_test(d->received, page))
		return TAKE_DONE;
	return raw && !n ? TAKE_LATER : TAKE_NONE;
}

/* The slot of h whose run holds the page, or DST_HAND_SLOTS; *v its run. */
static unsigned hand_slot(struct dst_hand *h, uint64_t page, uint64_t *v)
{
	for (unsigned i = 0; i < DST_HAND_SLOTS; i++) {
		uint64_t first;

		*v = atomic_load(&h->run[i]);
		first = (*v >> 16) - 1;
		if (*v && page >= first && page < first + (*v & 0xffff))
			return i;
	}
	return DST_HAND_SLOTS;
}

/* A vCPU waits on bytes a bulk receiver is to read: until it has them,
 * it may preempt the pumps as the fault thread does. */
static void boost(struct dst_hand *h)
{
	/* under the lock: the thread ends only after hand_over(NULL) */
	pthread_mutex_lock(&h->lock);
	if (h->tid && !atomic_exchange(&h->boosted, true))
		mig_thread_class(h->tid, true, h->nice);
	pthread_mutex_unlock(&h->lock);
}

bool dst_in_hand(struct dst *d, uint64_t page, uint64_t *late_run)
{
	*late_run = 0;
	for (int c = 0; c < MIG_CHAN__COUNT; c++) {
		struct dst_hand *h = &d->hand[c];
		uint64_t v;
		unsigned i;

		if (!atomic_load(&h->busy) ||
		    (i = hand_slot(h, page, &v)) == DST_HAND_SLOTS)
			continue;
		/* its bytes not in yet: the receiver places it first once
		 * they are (serve_want) */
		if (take_from_hand(d, h, i, v, page) != TAKE_LATER)
			return true;
		*late_run = v;
		if (!atomic_exchange(&h->want, page + 1))
			boost(h);
		return true;
	}
	return false;
}

/* Place a run, whatever of it is present already: the pages placed, or
 * -errno. A page refused is twice here, unless the fault thread took it
 * from our hand. */
static long copy_run(struct dst *d, const struct mig_pages *pg,
		     const uint8_t *src)
{
	uint64_t page = pg->offset / MIG_PAGE_SIZE, left = pg->npages;
	long placed = 0;

	for (;;) {
		long r = mig_uffd_copy_prefix(d->uffd, d->base + page * MIG_PAGE_SIZE,
					      src, left * MIG_PAGE_SIZE);

		if (r < 0)
			return r;
		placed += r;
		if ((uint64_t)r == left)
			return placed;
		/* page + r is present */
		page += (uint64_t)r;
		src += (size_t)r * MIG_PAGE_SIZE;
		left -= (uint64_t)r;
		if (!mig_bitmap_clear(d->taken, page))
			d->e.st.duplicates++;
		if (!--left)
			return placed;
		page++;
		src += MIG_PAGE_SIZE;
	}
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
		r = leave_zero(d, pg->offset / MIG_PAGE_SIZE, pg->npages);
	else
		r = copy_run(d, pg, src);
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
	if (fallocate(d->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)rq.offset, (off_t)rq.npages * MIG_PAGE_SIZE) < 0)
		return -errno;
	first = rq.offset / MIG_PAGE_SIZE;
	for (uint64_t p = first; p < first + rq.npages; p++) {
		mig_bitmap_clear(d->unplaced, p);
		if (mig_bitmap_clear(d->received, p))
			d->e.st.present--;
	}
	d->discarded += rq.npages;
	atomic_store(&d->complete_posted, false);
	return 0;
}

static void take_blob(struct dst *d, const uint8_t *buf, uint32_t len)
{
	struct mig_workload_state st;
	uint8_t *copy = malloc(len);

	if (!copy)
		return;
	/* how many vCPUs will wait on pages: the guest learns it from this
	 * blob too, and runs none before it has loaded it */
	if (mig_workload_state_decode(buf, len, d->e.ram_bytes, &st) == 0)
		dst_blocktime_start(d, st.vcpus);
	memcpy(copy, buf, len);
	pthread_mutex_lock(&d->blob_lock);
	free(d->blob);
	d->blob = copy;
	d->blob_len = len;
	pthread_mutex_unlock(&d->blob_lock);
	mig_engine_post(&d->e, MIG_EV_SWITCH);
}

/*
 * Where a channel's stream stands, for what may come next on it. Only
 * main carries commands; its phases follow the protocol's sequences
 * (mig-protocol(7)). A message out of place breaks the link: before
 * switchover the migration fails, the guest whole on the source; after
 * it the migration pauses, and nothing a peer sends can make us load a
 * second state into a guest that runs here, or drop its pages.
 */
enum rx_phase {
	RX_PRECOPY,     /* main: pages into the memfd, DISCARD, SWITCHOVER */
	RX_SWITCHED,    /* main: SWITCHOVER is in; its go-ahead (RESUME) next */
	RX_RECOVERING,  /* a recovery's main: its RESUME next */
	RX_POSTCOPY,    /* main: pages and EOS */
	RX_PREEMPT,     /* requested pages */
	RX_BULK,        /* background pages, once the guest runs here */
};

static bool in_place(struct dst *d, enum rx_phase ph, uint32_t type)
{
	switch (type) {
	case MIG_MSG_PING:
		return true;
	case MIG_MSG_PAGES:
		/* a bulk channel's are never written into the memfd: the
		 * guest could start meanwhile and read half a page */
		if (ph == RX_BULK)
			return atomic_load(&d->guest_started);
		return ph != RX_SWITCHED && ph != RX_RECOVERING;
	case MIG_MSG_CANCEL:
		/* on every channel, until the source has committed */
		return ph != RX_RECOVERING && ph != RX_POSTCOPY &&
		       ph != RX_BULK && !atomic_load(&d->committed);
	case MIG_MSG_DISCARD:
	case MIG_MSG_SWITCHOVER:
		return ph == RX_PRECOPY;
	case MIG_MSG_RESUME:
		return ph == RX_SWITCHED || ph == RX_RECOVERING;
	case MIG_MSG_EOS:
		return ph == RX_POSTCOPY;
	default:
		return false;
	}
}

/* One message from a source channel: 0, 1 for the orderly end (CANCEL),
 * or -errno to break the link. */
static int handle_msg(struct dst *d, enum mig_chan_slot c, enum rx_phase *ph,
		      uint32_t type, const uint8_t *buf, uint32_t len,
		      uint8_t *scratch)
{
	struct mig_pages pg;
	int r;

	if (!in_place(d, *ph, type)) {
		mig_err("wire", "%s: %s message out of place",
			mig_chan_slot_name(c), mig_wire_type_name(type));
		return -EPROTO;
	}
	switch (type) {
	case MIG_MSG_PAGES:
		r = mig_wire_dec_pages(buf, len, d->e.ram_bytes, &pg);
		return r < 0 ? r : place(d, &pg, scratch);
	case MIG_MSG_CANCEL:
		atomic_store(&d->ending, true);
		mig_engine_post(&d->e, MIG_EV_CANCEL);
		return 1;
	case MIG_MSG_SWITCHOVER:
		*ph = RX_SWITCHED;
		atomic_store(&d->guest_started, true);
		take_blob(d, buf, len);
		return 0;
	case MIG_MSG_DISCARD:
		return discard(d, buf, len);
	case MIG_MSG_EOS:
		mig_info("rx", "source has sent every page");
		return 0;
	case MIG_MSG_RESUME:
		*ph = RX_POSTCOPY;
		atomic_store(&d->committed, true);
		mig_engine_post(&d->e, MIG_EV_RESUMED);
		return 0;
	default: /* PING */
		return 0;
	}
}

struct rx_arg {
	struct dst *d;
	enum mig_chan_slot c;
	enum rx_phase ph;
};

/*
 * A receiver reads ahead of what it places, up to RX_AHEAD_BYTES, and
 * every PAGES message whose headers are in its buffer is "in hand" (a
 * slot of its struct dst_hand) until placed and marked present: asking
 * the source for a page of it would only bring it twice. A vCPU faster
 * than the pumps meets them right there, at the runs on their way in; a
 * fault there is served from our buffer (take_from_hand), not behind the
 * up to RX_AHEAD_BYTES of others placed before it. A run in hand that is
 * never placed (a malformed message, a link that breaks) breaks the link,
 * and a recovery asks for every page a vCPU waits for.
 */
#define RX_AHEAD_BYTES (256u * 1024u)
#define RX_MSG_MAX (MIG_WIRE_HDR_BYTES + MIG_WIRE_MAX_PAYLOAD)

struct rx {
	struct dst *d;
	struct dst_hand *h;
	enum mig_chan_slot c;
	enum rx_phase ph;
	int fd;
	uint8_t *p;
	/* p[head, end) is read and not handled; the messages from head to
	 * scan are in slots [hand_head, hand_tail) (scan may lie past end:
	 * a message is in hand once its headers are in, its data or not) */
	size_t cap, head, scan, end;
	unsigned hand_head, hand_tail;
	int err; /* a read ahead failed: once what came before is handled */
	int nice; /* the engine's */
};

/* The whole length of the message at p[off], or 0 while its header is not
 * all in (or is malformed: handling it says so). */
static size_t msg_bytes(const struct rx *x, size_t off)
{
	uint32_t type, len;

	if (x->end < off + MIG_WIRE_HDR_BYTES ||
	    mig_wire_dec_hdr(x->p + off, &type, &len) < 0 ||
	    len > MIG_WIRE_MAX_PAYLOAD)
		return 0;
	return MIG_WIRE_HDR_BYTES + len;
}

/* The slot of the message at p[off], its headers in: its run, or 0; and
 * in *data where its raw pages start, or SIZE_MAX. */
static uint64_t hand_word(const struct rx *x, size_t off, size_t *data)
{
	const uint8_t *h = x->p + off + MIG_WIRE_HDR_BYTES;
	uint64_t first;
	uint32_t type, len, n;

	*data = SIZE_MAX;
	_Static_assert(MIG_WIRE_MAX_RUN_PAGES < 0x10000, "a slot's count");
	if (mig_wire_dec_hdr(x->p + off, &type, &len) < 0 ||
	    type != MIG_MSG_PAGES || !atomic_load(&x->d->guest_started))
		return 0; /* by wire.c's limits, PAGES holds its 16-byte header */
	first = mig_get_be64(h) / MIG_PAGE_SIZE;
	n = mig_get_be32(h + 8);
	if (mig_get_be64(h) % MIG_PAGE_SIZE || !n || n > MIG_WIRE_MAX_RUN_PAGES ||
	    first >= x->d->npages || n > x->d->npages - first)
		return 0; /* malformed: the decoder says so */
	/* raw pages, exactly, in a stream where this receiver places them:
	 * only then may the fault thread take one (phases: in_place) */
	if (!mig_get_be32(h + 12) &&
	    len == MIG_PAGES_HDR_BYTES + (size_t)n * MIG_PAGE_SIZE &&
	    (x->ph == RX_POSTCOPY || x->ph == RX_PREEMPT || x->ph == RX_BULK))
		*data = off + MIG_WIRE_HDR_BYTES + MIG_PAGES_HDR_BYTES;
	return (first + 1) << 16 | n;
}

/* Take in hand every message whose headers are in, while slots last. */
static void take_in_hand(struct rx *x)
{
	struct dst_hand *h = x->h;

	while (x->hand_tail - x->hand_head < DST_HAND_SLOTS) {
		size_t n = msg_bytes(x, x->scan);
		unsigned i = x->hand_tail % DST_HAND_SLOTS;

		if (!n || (x->end < x->scan + MIG_WIRE_HDR_BYTES + MIG_PAGES_HDR_BYTES &&
			   x->end < x->scan + n))
			return;
		/* data first: the fault thread reads it once it sees the run */
		atomic_store(&h->run[i], hand_word(x, x->scan, &h->data[i]));
		x->hand_tail++;
		x->scan += n;
	}
}

/* A vCPU waits on a page in our hand whose bytes were not in: if they
 * are now, it goes before the runs ahead of it. */
static void serve_want(struct rx *x)
{
	struct dst_hand *h = x->h;
	uint64_t w = atomic_exchange(&h->want, 0), v;
	unsigned i;

	if (w && (i = hand_slot(h, w - 1, &v)) < DST_HAND_SLOTS &&
	    take_from_hand(x->d, h, i, v, w - 1) == TAKE_LATER) {
		uint64_t none = 0;

		atomic_compare_exchange_strong(&h->want, &none, w);
	}
}

/* Move what is not handled to the front: the runs in hand move with it. */
static void compact(struct rx *x)
{
	struct dst_hand *h = x->h;

	pthread_mutex_lock(&h->lock);
	memmove(x->p, x->p + x->head, x->end - x->head);
	for (unsigned i = x->hand_head; i != x->hand_tail; i++)
		if (h->data[i % DST_HAND_SLOTS] != SIZE_MAX)
			h->data[i % DST_HAND_SLOTS] -= x->head;
	x->scan -= x->head;
	x->end -= x->head;
	x->head = 0;
	atomic_store(&h->end, x->end);
	pthread_mutex_unlock(&h->lock);
}

/* Read into p[end, end + want): at least one byte if wait (EOF is
 * -ECONNRESET, the link timeout -ETIMEDOUT), else what is there now. */
static int rx_read(struct rx *x, size_t want, bool wait)
{
	ssize_t n;

	if (!wait && !mig_tls_pending(x->fd)) {
		struct pollfd p = { .fd = x->fd, .events = POLLIN };

		if (poll(&p, 1, 0) != 1)
			return 0;
	}
	do
		n = mig_tls_read(x->fd, x->p + x->end, want);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
	if (n == 0)
		return -ECONNRESET;
	x->end += (size_t)n;
	atomic_store(&x->h->end, x->end);
	take_in_hand(x);
	serve_want(x);
	if (atomic_load(&x->h->boosted) && !atomic_load(&x->h->want) &&
	    atomic_exchange(&x->h->boosted, false))
		mig_thread_class(0, false, x->h->nice);
	return 0;
}

/* With the message at head complete: when nothing complete follows it,
 * read what has come since, so the next runs are in hand while it is
 * placed. A failure waits until the messages before it are handled: a
 * CANCEL, say, then the source closing. */
static void read_ahead(struct rx *x, size_t n)
{
	size_t next = x->head + n, m = msg_bytes(x, next);
	size_t want = RX_AHEAD_BYTES - MIG_MIN(x->end - x->head, RX_AHEAD_BYTES);

	if ((m && x->end >= next + m) || !want || x->err)
		return;
	if (x->cap - x->end < want)
		compact(x);
	x->err = rx_read(x, want, false);
}

/* The next message, whole, at p[head]; *n its length. */
static int next_msg(struct rx *x, size_t *n)
{
	int r = 0;

	while (r == 0) {
		size_t want;

		*n = msg_bytes(x, x->head);
		if (*n && x->end >= x->head + *n) {
			read_ahead(x, *n);
			return 0;
		}
		if (x->end >= x->head + MIG_WIRE_HDR_BYTES && !*n)
			return -EBADMSG; /* a header the decoder refuses */
		if (x->err)
			return x->err;
		want = (*n ? *n : MIG_WIRE_HDR_BYTES) - (x->end - x->head);
		if (x->cap - x->end < want)
			compact(x);
		r = rx_read(x, MIG_MAX(want, MIG_MIN(x->cap - x->end,
						     RX_AHEAD_BYTES)), true);
	}
	return r;
}

/* The message at head is handled: its slot is free, and so is its room. */
static void done_msg(struct rx *x, size_t n)
{
	struct dst_hand *h = x->h;

	pthread_mutex_lock(&h->lock);
	atomic_store(&h->run[x->hand_head++ % DST_HAND_SLOTS], 0);
	x->head += n;
	if (x->head == x->end) {
		x->scan -= x->head;
		x->head = x->end = 0;
		atomic_store(&h->end, 0);
	}
	pthread_mutex_unlock(&h->lock);
	take_in_hand(x);
}

/* The receiver's buffer is in hand (buf NULL: no longer, and none of its
 * runs). */
static void hand_over(struct rx *x, uint8_t *buf)
{
	struct dst_hand *h = x->h;

	pthread_mutex_lock(&h->lock);
	atomic_store(&h->busy, buf != NULL);
	for (unsigned i = 0; i < DST_HAND_SLOTS; i++)
		atomic_store(&h->run[i], 0);
	h->buf = buf;
	atomic_store(&h->end, 0);
	atomic_store(&h->want, 0);
	h->tid = buf && x->c != MIG_CHAN_PREEMPT ? gettid() : 0;
	h->nice = x->nice;
	atomic_store(&h->boosted, false);
	pthread_mutex_unlock(&h->lock);
}

static int rx_one(struct rx *x, uint8_t *scratch)
{
	struct dst *d = x->d;
	uint32_t type = 0, len;
	size_t n;
	int r = next_msg(x, &n);

	if (r == 0) {
		mig_wire_dec_hdr(x->p + x->head, &type, &len);
		d->e.st.bytes += n;
		if (x->c >= MIG_CHAN_BULK)
			d->e.st.bulk_bytes += n;
		r = handle_msg(d, x->c, &x->ph, type,
			       x->p + x->head + MIG_WIRE_HDR_BYTES, len, scratch);
		done_msg(x, n);
	}
	if (r == -EBADMSG || r == -ERANGE) {
		if (!type && x->end >= x->head + MIG_WIRE_HDR_BYTES)
			type = mig_get_be32(x->p + x->head);
		mig_err("wire", "%s: malformed %s message",
			mig_chan_slot_name(x->c), mig_wire_type_name(type));
	}
	return r;
}

static void *rx_main(void *arg)
{
	struct rx_arg *a = arg;
	struct dst *d = a->d;
	enum mig_chan_slot c = a->c;
	struct rx x = { .d = d, .h = &d->hand[c], .c = c, .ph = a->ph,
			.fd = d->e.chan_fd[c], .cap = RX_MSG_MAX + RX_AHEAD_BYTES };
	uint8_t *scratch = malloc(MIG_WIRE_MAX_RUN_PAGES * MIG_PAGE_SIZE);
	int r;

	free(a);
	x.p = malloc(x.cap);
	r = x.p && scratch ? 0 : -ENOMEM;
	mig_thread_name("mig-rx/%s", mig_chan_slot_tag(c));
	x.nice = mig_thread_nice();
	mig_thread_class(0, c == MIG_CHAN_PREEMPT, x.nice);
	if (r == 0)
		hand_over(&x, x.p);
	while (r == 0 && !atomic_load(&d->stop_rx))
		r = rx_one(&x, scratch);
	hand_over(&x, NULL);
	if (c == MIG_CHAN_MAIN)
		atomic_store(&d->main_closed, true);
	if (r < 0 && !atomic_load(&d->stop_rx) && !atomic_load(&d->ending)) {
		mig_warn("link", "%s: %s", mig_chan_slot_name(c), strerror(-r));
		mig_engine_post(&d->e, MIG_EV_LINK_DOWN);
	} else if (c == MIG_CHAN_MAIN) {
		mig_engine_signal(&d->e); /* completed: the loop may end now */
	}
	free(x.p);
	free(scratch);
	return NULL;
}

/* The control loop's: the state says where the new channel's stream
 * starts (a session's main starts in precopy, a recovery's awaits its
 * RESUME). */
int dst_start_rx(struct dst *d, enum mig_chan_slot c)
{
	struct rx_arg *a = malloc(sizeof(*a));
	int r;

	if (!a)
		return -ENOMEM;
	a->d = d;
	a->c = c;
	a->ph = c == MIG_CHAN_PREEMPT ? RX_PREEMPT : c >= MIG_CHAN_BULK ? RX_BULK :
		mig_engine_state(&d->e) == MIG_STATE_POSTCOPY_RECOVER ?
		RX_RECOVERING : RX_PRECOPY;
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

void dst_stop_rx(struct dst *d)
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
			mig_chan_close(fd);
	}
}
