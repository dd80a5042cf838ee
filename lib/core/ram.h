/* SPDX-License-Identifier: MIT */
/*
 * Page bitmaps (sent, received, requested, dirty) shared between threads:
 * single bits are set and tested atomically, so the fault thread, the channel
 * readers and the pump need no lock to agree on which pages exist.
 */
#ifndef MIG_RAM_H
#define MIG_RAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mig_bitmap;

/* All bits clear. NULL with errno=ENOMEM. */
struct mig_bitmap *mig_bitmap_new(uint64_t nbits);
void mig_bitmap_free(struct mig_bitmap *b);
uint64_t mig_bitmap_size(const struct mig_bitmap *b);
/* Out-of-range indexes: test returns false, set/clear do nothing. */
bool mig_bitmap_test(const struct mig_bitmap *b, uint64_t i);
/* Atomic; returns the previous value of the bit. */
bool mig_bitmap_set(struct mig_bitmap *b, uint64_t i);
bool mig_bitmap_clear(struct mig_bitmap *b, uint64_t i);
/* Word at a time, for loops over runs of pages: a span is up to 64 bits
 * from `first` that lie in first's word (mig_bitmap_span: how many of n),
 * and its masks have bit j for bit first + j. bits() reads the span; or()
 * sets the mask's bits, atomically, and returns those that were clear
 * (bits past the size are ignored). set_range sets [first, first+n) and
 * returns how many were clear. */
unsigned mig_bitmap_span(uint64_t first, uint64_t n);
/* The mask of a whole span of k bits (k <= 64). */
#define MIG_LOW_BITS(k) ((k) >= 64 ? ~0ull : (1ull << (k)) - 1)
uint64_t mig_bitmap_bits(const struct mig_bitmap *b, uint64_t first,
			 unsigned span);
uint64_t mig_bitmap_or_bits(struct mig_bitmap *b, uint64_t first,
			    uint64_t mask);
uint64_t mig_bitmap_set_range(struct mig_bitmap *b, uint64_t first,
			      uint64_t n);
/* How many bits from `first` are clear, counting at most max of them (and
 * none past the size): unlike next_set, never a scan to the end. */
uint64_t mig_bitmap_clear_run(const struct mig_bitmap *b, uint64_t first,
			      uint64_t max);
/* Non-atomic bulk operations: callers make sure no one else writes. */
void mig_bitmap_set_all(struct mig_bitmap *b);
void mig_bitmap_clear_all(struct mig_bitmap *b);
uint64_t mig_bitmap_count(const struct mig_bitmap *b); /* set bits */
/* First set / clear bit at or after `from`; size() when there is none. */
uint64_t mig_bitmap_next_set(const struct mig_bitmap *b, uint64_t from);
uint64_t mig_bitmap_next_clear(const struct mig_bitmap *b, uint64_t from);
/* Bits [first, first+n) as packed little-endian bytes (bit i of byte k is
 * page first + 8k + i), for the wire. export writes (n+7)/8 bytes; import ORs
 * them in (unused high bits of the last byte must be zero). -ERANGE if the
 * range leaves the bitmap, -EINVAL for set padding bits. */
int mig_bitmap_export(const struct mig_bitmap *b, uint64_t first, uint64_t n,
		      uint8_t *out);
int mig_bitmap_import(struct mig_bitmap *b, uint64_t first, uint64_t n,
		      const uint8_t *in);
/* this |= other (same size), this &= ~other: -EINVAL on size mismatch. */
int mig_bitmap_or(struct mig_bitmap *b, const struct mig_bitmap *other);
int mig_bitmap_andnot(struct mig_bitmap *b, const struct mig_bitmap *other);

/* Set the bit of every page that holds data in the file fd (a memfd of
 * npages pages), without touching its contents: SEEK_DATA/SEEK_HOLE. On an
 * incoming guest's RAM that is exactly the pages placed so far, so an
 * engine that lost its bitmap reads it back from the guest. Returns the
 * number of pages set, or -errno. */
int64_t mig_bitmap_from_file(struct mig_bitmap *b, int fd, uint64_t npages);

/* True if the 4 KiB page is all zero: cheap reject on the first 8 bytes. */
bool mig_page_is_zero(const void *page);

#endif
