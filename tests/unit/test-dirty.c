// SPDX-License-Identifier: MIT
/*
 * Unit tests for dirty tracking's pure part: folding PAGEMAP_SCAN replies
 * (hand-made region arrays) into a bitmap, the walk_end restart rule, the
 * merge into a bitmap that already has bits, and malformed replies. The
 * ioctl itself needs the kernel: see the bats tests and bench.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>

#include "core/dirty.h"
#include "core/ram.h"
#include "base/util.h"

#define BASE 0x7f0000000000ull
#define NPAGES 1024u
#define LEN ((uint64_t)NPAGES * MIG_PAGE_SIZE)
#define A(page) (BASE + (uint64_t)(page) * MIG_PAGE_SIZE)

static struct mig_dirty_region reg(uint64_t first, uint64_t npages)
{
	return (struct mig_dirty_region){
		.start = A(first), .end = A(first + npages), .categories = 2,
	};
}

static void test_fold_basic(void **s)
{
	struct mig_bitmap *b = mig_bitmap_new(NPAGES);
	const struct mig_dirty_region r[] = { reg(0, 1), reg(10, 3), reg(1023, 1) };
	uint64_t next = 0;

	(void)s;
	assert_non_null(b);
	assert_int_equal(mig_dirty_fold(b, BASE, LEN, BASE, r, 3, A(NPAGES), &next),
			 5);
	assert_true(next == A(NPAGES));
	assert_int_equal(mig_bitmap_count(b), 5);
	assert_true(mig_bitmap_test(b, 0));
	assert_false(mig_bitmap_test(b, 9));
	assert_true(mig_bitmap_test(b, 10) && mig_bitmap_test(b, 12));
	assert_false(mig_bitmap_test(b, 13));
	assert_true(mig_bitmap_test(b, 1023));
	/* nothing written: the walk simply ends */
	assert_int_equal(mig_dirty_fold(b, BASE, LEN, BASE, NULL, 0, A(NPAGES),
					&next), 0);
	assert_true(next == A(NPAGES));
	mig_bitmap_free(b);
}

/* Bits already set are not counted again: the caller merges passes. */
static void test_fold_merge(void **s)
{
	struct mig_bitmap *b = mig_bitmap_new(NPAGES);
	const struct mig_dirty_region r[] = { reg(4, 8) };
	uint64_t next;

	(void)s;
	assert_non_null(b);
	mig_bitmap_set(b, 5);
	mig_bitmap_set(b, 11);
	mig_bitmap_set(b, 100);
	assert_int_equal(mig_dirty_fold(b, BASE, LEN, BASE, r, 1, A(NPAGES), &next),
			 6);
	assert_int_equal(mig_bitmap_count(b), 9);
	assert_int_equal(mig_dirty_fold(b, BASE, LEN, BASE, r, 1, A(NPAGES), &next),
			 0);
	mig_bitmap_free(b);
}

/*
 * The pitfall: a call that filled its buffer reported walk_end below the
 * end of the regions it returned. Restarting at walk_end would report the
 * tail again; the fold restarts after the last region instead, and a
 * walk_end beyond it (clean pages walked after the buffer filled, or a
 * correct kernel) is kept.
 */
static void test_fold_walk_end(void **s)
{
	struct mig_bitmap *b = mig_bitmap_new(NPAGES);
	struct mig_dirty_region r[MIG_DIRTY_SCAN_REGIONS];
	uint64_t next, start = BASE;
	long total = 0, n;

	(void)s;
	assert_non_null(b);
	/* 512 one-page regions on even pages 0..1022 */
	for (unsigned i = 0; i < MIG_DIRTY_SCAN_REGIONS; i++)
		r[i] = reg(2 * i, 1);
	/* first reply: the first 300, walk_end claims only page 100 */
	n = mig_dirty_fold(b, BASE, LEN, start, r, 300, A(100), &next);
	assert_int_equal(n, 300);
	assert_true(next == A(599)); /* after region 299 (page 598) */
	total += n;
	start = next;
	/* the rest, restarting where the fold said */
	n = mig_dirty_fold(b, BASE, LEN, start, r + 300, 212, A(NPAGES), &next);
	assert_int_equal(n, 212);
	total += n;
	assert_true(next == A(NPAGES));
	assert_int_equal(total, 512);
	assert_int_equal(mig_bitmap_count(b), 512);
	/* walk_end past the last region is kept */
	n = mig_dirty_fold(b, BASE, LEN, BASE, r, 2, A(700), &next);
	assert_int_equal(n, 0);
	assert_true(next == A(700));
	/* and clamped to the range */
	n = mig_dirty_fold(b, BASE, LEN, BASE, r, 2, A(NPAGES + 5), &next);
	assert_true(next == A(NPAGES));
	mig_bitmap_free(b);
}

/* A walk through a buffer-sized series of replies, as scan_wp loops:
 * every page of a fully dirty range counted exactly once, whatever the
 * kernel says walk_end is. */
static void test_fold_loop(void **s)
{
	struct mig_bitmap *b = mig_bitmap_new(NPAGES);
	struct mig_dirty_region r[4];
	uint64_t start = BASE, next, want = 0;
	long total = 0;

	(void)s;
	assert_non_null(b);
	while (start < BASE + LEN) {
		uint64_t p = (start - BASE) / MIG_PAGE_SIZE;
		size_t n = 0;

		/* alternate 1- and 3-page regions with one clean page between,
		 * 4 per reply, walk_end always "too low" (the reply's start) */
		while (n < 4 && p < NPAGES) {
			uint64_t len = MIG_MIN((uint64_t)(n % 2 ? 3 : 1), NPAGES - p);

			r[n++] = reg(p, len);
			want += len;
			p += len + 1;
		}
		if (!n)
			break;
		long f = mig_dirty_fold(b, BASE, LEN, start, r, n, start, &next);

		assert_true(f > 0);
		total += f;
		assert_true(next > start);
		start = next;
	}
	assert_int_equal(total, mig_bitmap_count(b));
	assert_int_equal(total, want);
	assert_true(want > NPAGES / 2);
	mig_bitmap_free(b);
}

static void test_fold_malformed(void **s)
{
	struct mig_bitmap *b = mig_bitmap_new(NPAGES);
	struct mig_dirty_region r[1];
	uint64_t next = 12345;

	(void)s;
	assert_non_null(b);
	r[0] = (struct mig_dirty_region){ .start = A(3), .end = A(3) };
	assert_int_equal(mig_dirty_fold(b, BASE, LEN, BASE, r, 1, A(9), &next),
			 -EPROTO); /* empty */
	r[0] = (struct mig_dirty_region){ .start = A(4), .end = A(3) };
	assert_int_equal(mig_dirty_fold(b, BASE, LEN, BASE, r, 1, A(9), &next),
			 -EPROTO); /* backwards */
	r[0] = (struct mig_dirty_region){ .start = A(3) + 1, .end = A(4) };
	assert_int_equal(mig_dirty_fold(b, BASE, LEN, BASE, r, 1, A(9), &next),
			 -EPROTO); /* unaligned */
	r[0] = reg(NPAGES - 1, 2);
	assert_int_equal(mig_dirty_fold(b, BASE, LEN, BASE, r, 1, A(9), &next),
			 -EPROTO); /* beyond the range */
	r[0] = (struct mig_dirty_region){ .start = BASE - MIG_PAGE_SIZE, .end = A(1) };
	assert_int_equal(mig_dirty_fold(b, BASE, LEN, BASE, r, 1, A(9), &next),
			 -EPROTO); /* before it */
	r[0] = reg(3, 1);
	assert_int_equal(mig_dirty_fold(b, BASE, LEN, A(10), r, 1, A(20), &next),
			 -EPROTO); /* before where this walk began */
	/* no progress: would loop for ever */
	assert_int_equal(mig_dirty_fold(b, BASE, LEN, A(10), NULL, 0, A(10), &next),
			 -EPROTO);
	assert_int_equal(mig_dirty_fold(b, BASE, LEN, A(10), NULL, 0, 0, &next),
			 -EPROTO);
	assert_true(next == 12345);
	mig_bitmap_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fold_basic),
		cmocka_unit_test(test_fold_merge),
		cmocka_unit_test(test_fold_walk_end),
		cmocka_unit_test(test_fold_loop),
		cmocka_unit_test(test_fold_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
