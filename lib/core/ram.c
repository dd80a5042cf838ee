// SPDX-License-Identifier: MIT
/*
 * Page bitmaps (see ram.h): 64-bit words, single bits changed with atomic
 * read-modify-writes so the fault thread, the channel readers and the pump
 * can share them without a lock. Invariant: the padding bits of the last
 * word are always zero, so whole-word scans and counts need no masking.
 */
#include <errno.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "core/ram.h"
#include "base/util.h"

struct mig_bitmap {
	uint64_t nbits;
	uint64_t nwords;
	uint64_t words[];
};

#define WORD_BITS 64u

static uint64_t bit_mask(uint64_t i)
{
	return 1ull << (i % WORD_BITS);
}

/* Mask of the valid bits in the last word (all ones if it is full). */
static uint64_t last_word_mask(const struct mig_bitmap *b)
{
	unsigned tail = b->nbits % WORD_BITS;

	return tail ? (1ull << tail) - 1 : ~0ull;
}

static uint64_t load_word(const struct mig_bitmap *b, uint64_t w)
{
	return __atomic_load_n(&b->words[w], __ATOMIC_ACQUIRE);
}

struct mig_bitmap *mig_bitmap_new(uint64_t nbits)
{
	uint64_t nwords = nbits / WORD_BITS + (nbits % WORD_BITS != 0);
	struct mig_bitmap *b;

	if (nwords > (SIZE_MAX - sizeof(*b)) / sizeof(uint64_t)) {
		errno = ENOMEM;
		return NULL;
	}
	b = calloc(1, sizeof(*b) + nwords * sizeof(uint64_t));
	if (!b)
		return NULL;
	b->nbits = nbits;
	b->nwords = nwords;
	return b;
}

void mig_bitmap_free(struct mig_bitmap *b)
{
	free(b);
}

uint64_t mig_bitmap_size(const struct mig_bitmap *b)
{
	return b->nbits;
}

bool mig_bitmap_test(const struct mig_bitmap *b, uint64_t i)
{
	if (i >= b->nbits)
		return false;
	return load_word(b, i / WORD_BITS) & bit_mask(i);
}

bool mig_bitmap_set(struct mig_bitmap *b, uint64_t i)
{
	if (i >= b->nbits)
		return false;
	/* acq_rel: a page placed before its bit is set is visible to whoever
	 * sees the bit */
	return __atomic_fetch_or(&b->words[i / WORD_BITS], bit_mask(i),
				 __ATOMIC_ACQ_REL) & bit_mask(i);
}

bool mig_bitmap_clear(struct mig_bitmap *b, uint64_t i)
{
	if (i >= b->nbits)
		return false;
	return __atomic_fetch_and(&b->words[i / WORD_BITS], ~bit_mask(i),
				  __ATOMIC_ACQ_REL) & bit_mask(i);
}

unsigned mig_bitmap_span(uint64_t first, uint64_t n)
{
	return (unsigned)MIG_MIN(n, WORD_BITS - first % WORD_BITS);
}

/* The span's bits that exist: none past the size (the padding stays 0). */
static uint64_t span_mask(const struct mig_bitmap *b, uint64_t first,
			  unsigned span)
{
	uint64_t n;

	if (first >= b->nbits)
		return 0;
	n = MIG_MIN((uint64_t)mig_bitmap_span(first, span), b->nbits - first);
	return MIG_LOW_BITS(n);
}

uint64_t mig_bitmap_bits(const struct mig_bitmap *b, uint64_t first,
			 unsigned span)
{
	uint64_t m = span_mask(b, first, span);

	return m ? (load_word(b, first / WORD_BITS) >> (first % WORD_BITS)) & m : 0;
}

uint64_t mig_bitmap_or_bits(struct mig_bitmap *b, uint64_t first,
			    uint64_t mask)
{
	unsigned sh = first % WORD_BITS;
	uint64_t old;

	mask &= span_mask(b, first, WORD_BITS);
	if (!mask)
		return 0;
	/* acq_rel, as mig_bitmap_set */
	old = __atomic_fetch_or(&b->words[first / WORD_BITS], mask << sh,
				__ATOMIC_ACQ_REL);
	return mask & ~(old >> sh);
}

uint64_t mig_bitmap_set_range(struct mig_bitmap *b, uint64_t first,
			      uint64_t n)
{
	uint64_t added = 0;

	while (n) {
		unsigned k = mig_bitmap_span(first, n);

		added += (uint64_t)__builtin_popcountll(
			mig_bitmap_or_bits(b, first, MIG_LOW_BITS(k)));
		first += k;
		n -= k;
	}
	return added;
}

uint64_t mig_bitmap_clear_run(const struct mig_bitmap *b, uint64_t first,
			      uint64_t max)
{
	uint64_t n = 0;

	max = first < b->nbits ? MIG_MIN(max, b->nbits - first) : 0;
	while (n < max) {
		unsigned k = mig_bitmap_span(first + n, max - n);
		uint64_t set = mig_bitmap_bits(b, first + n, k);

		if (set)
			return n + (uint64_t)__builtin_ctzll(set);
		n += k;
	}
	return max;
}

void mig_bitmap_set_all(struct mig_bitmap *b)
{
	if (!b->nwords)
		return;
	memset(b->words, 0xff, b->nwords * sizeof(uint64_t));
	b->words[b->nwords - 1] &= last_word_mask(b);
}

void mig_bitmap_clear_all(struct mig_bitmap *b)
{
	memset(b->words, 0, b->nwords * sizeof(uint64_t));
}

uint64_t mig_bitmap_count(const struct mig_bitmap *b)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < b->nwords; w++)
		n += (uint64_t)__builtin_popcountll(load_word(b, w));
	return n;
}

/* First bit at or after `from` that is set in (word ^ flip). */
static uint64_t scan(const struct mig_bitmap *b, uint64_t from, uint64_t flip)
{
	uint64_t w, word;

	if (from >= b->nbits)
		return b->nbits;
	w = from / WORD_BITS;
	word = (load_word(b, w) ^ flip) & (~0ull << (from % WORD_BITS));
	while (!word) {
		if (++w >= b->nwords)
			return b->nbits;
		word = load_word(b, w) ^ flip;
	}
	/* flipped padding bits look set: clamp to the size */
	w = w * WORD_BITS + (uint64_t)__builtin_ctzll(word);
	return MIG_MIN(w, b->nbits);
}

uint64_t mig_bitmap_next_set(const struct mig_bitmap *b, uint64_t from)
{
	return scan(b, from, 0);
}

uint64_t mig_bitmap_next_clear(const struct mig_bitmap *b, uint64_t from)
{
	return scan(b, from, ~0ull);
}

static int check_range(const struct mig_bitmap *b, uint64_t first, uint64_t n)
{
	return first > b->nbits || n > b->nbits - first ? -ERANGE : 0;
}

/* 64 bits starting at bit pos (pos < nbits); bits past the end read 0. */
static uint64_t get_bits64(const struct mig_bitmap *b, uint64_t pos)
{
	uint64_t w = pos / WORD_BITS;
	unsigned sh = pos % WORD_BITS;
	uint64_t v = load_word(b, w) >> sh;

	if (sh && w + 1 < b->nwords)
		v |= load_word(b, w + 1) << (WORD_BITS - sh);
	return v;
}

/* OR v into the bits starting at pos; the caller keeps them in range. */
static void or_bits64(struct mig_bitmap *b, uint64_t pos, uint64_t v)
{
	uint64_t w = pos / WORD_BITS;
	unsigned sh = pos % WORD_BITS;

	if (!v)
		return;
	__atomic_fetch_or(&b->words[w], v << sh, __ATOMIC_ACQ_REL);
	if (sh && (v >> (WORD_BITS - sh)))
		__atomic_fetch_or(&b->words[w + 1], v >> (WORD_BITS - sh),
				  __ATOMIC_ACQ_REL);
}

int mig_bitmap_export(const struct mig_bitmap *b, uint64_t first, uint64_t n,
		      uint8_t *out)
{
	int r = check_range(b, first, n);

	if (r < 0)
		return r;
	for (uint64_t off = 0; off < n; off += WORD_BITS) {
		uint64_t chunk = MIG_MIN(n - off, (uint64_t)WORD_BITS);
		uint64_t v = get_bits64(b, first + off);

		if (chunk < WORD_BITS)
			v &= (1ull << chunk) - 1;
		for (uint64_t k = 0; k < (chunk + 7) / 8; k++)
			out[off / 8 + k] = (uint8_t)(v >> (8 * k));
	}
	return 0;
}

int mig_bitmap_import(struct mig_bitmap *b, uint64_t first, uint64_t n,
		      const uint8_t *in)
{
	int r = check_range(b, first, n);

	if (r < 0)
		return r;
	/* a set padding bit names a page outside the range: reject the lot
	 * before changing anything */
	if ((n % 8) && (in[n / 8] >> (n % 8)))
		return -EINVAL;
	for (uint64_t off = 0; off < n; off += WORD_BITS) {
		uint64_t chunk = MIG_MIN(n - off, (uint64_t)WORD_BITS);
		uint64_t v = 0;

		for (uint64_t k = 0; k < (chunk + 7) / 8; k++)
			v |= (uint64_t)in[off / 8 + k] << (8 * k);
		or_bits64(b, first + off, v);
	}
	return 0;
}

int mig_bitmap_or(struct mig_bitmap *b, const struct mig_bitmap *other)
{
	if (b->nbits != other->nbits)
		return -EINVAL;
	for (uint64_t w = 0; w < b->nwords; w++)
		__atomic_fetch_or(&b->words[w], load_word(other, w),
				  __ATOMIC_ACQ_REL);
	return 0;
}

int mig_bitmap_andnot(struct mig_bitmap *b, const struct mig_bitmap *other)
{
	if (b->nbits != other->nbits)
		return -EINVAL;
	for (uint64_t w = 0; w < b->nwords; w++)
		__atomic_fetch_and(&b->words[w], ~load_word(other, w),
				   __ATOMIC_ACQ_REL);
	return 0;
}

bool mig_page_is_zero(const void *page)
{
	const uint8_t *p = page;
	uint64_t head;

	/* most non-zero pages fail on the first word (~6 ns); a zero page
	 * is then compared against itself shifted by 8 bytes */
	memcpy(&head, p, sizeof(head));
	if (head)
		return false;
	return memcmp(p, p + 8, MIG_PAGE_SIZE - 8) == 0;
}

int64_t mig_bitmap_from_file(struct mig_bitmap *b, int fd, uint64_t npages)
{
	off_t off = 0, end = (off_t)(npages * MIG_PAGE_SIZE);
	int64_t n = 0;

	while (off < end) {
		off_t data = lseek(fd, off, SEEK_DATA), hole;

		if (data < 0)
			return errno == ENXIO ? n : -errno; /* holes to the end */
		if (data >= end)
			break;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		hole = MIG_MIN(hole, end);
		for (uint64_t p = (uint64_t)data / MIG_PAGE_SIZE;
		     p < (uint64_t)hole / MIG_PAGE_SIZE; p++)
			n += !mig_bitmap_set(b, p);
		off = hole;
	}
	return n;
}
