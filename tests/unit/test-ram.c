// SPDX-License-Identifier: MIT
/*
 * Unit tests for the page bitmaps and the zero-page test: previous-value
 * semantics, scans across word boundaries and a ragged end, the wire bit
 * order of export/import at unaligned offsets, and bulk operations.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/ram.h"
#include "base/util.h"

#define NBITS 200u /* three full words and a ragged fourth */

static struct mig_bitmap *new_bm(uint64_t n)
{
	struct mig_bitmap *b = mig_bitmap_new(n);

	assert_non_null(b);
	assert_int_equal(mig_bitmap_size(b), n);
	return b;
}

static void test_set_test_clear(void **state)
{
	struct mig_bitmap *b = new_bm(NBITS);

	assert_int_equal(mig_bitmap_count(b), 0);
	assert_false(mig_bitmap_test(b, 63));
	assert_false(mig_bitmap_set(b, 63));  /* was clear */
	assert_true(mig_bitmap_set(b, 63));   /* was set */
	assert_true(mig_bitmap_test(b, 63));
	assert_false(mig_bitmap_test(b, 62));
	assert_false(mig_bitmap_test(b, 64));
	assert_false(mig_bitmap_set(b, 64));
	assert_false(mig_bitmap_set(b, 0));
	assert_false(mig_bitmap_set(b, NBITS - 1));
	assert_int_equal(mig_bitmap_count(b), 4);
	assert_true(mig_bitmap_clear(b, 63));  /* was set */
	assert_false(mig_bitmap_clear(b, 63)); /* was clear */
	assert_false(mig_bitmap_test(b, 63));
	assert_true(mig_bitmap_test(b, 64));
	assert_int_equal(mig_bitmap_count(b), 3);
	/* out of range: ignored */
	assert_false(mig_bitmap_set(b, NBITS));
	assert_false(mig_bitmap_set(b, UINT64_MAX));
	assert_false(mig_bitmap_test(b, NBITS));
	assert_false(mig_bitmap_clear(b, NBITS));
	assert_int_equal(mig_bitmap_count(b), 3);
	mig_bitmap_free(b);
	mig_bitmap_free(NULL);
}

static void test_all(void **state)
{
	struct mig_bitmap *b = new_bm(NBITS);

	mig_bitmap_set_all(b);
	assert_int_equal(mig_bitmap_count(b), NBITS); /* padding stays clear */
	assert_true(mig_bitmap_test(b, NBITS - 1));
	assert_int_equal(mig_bitmap_next_clear(b, 0), NBITS);
	assert_int_equal(mig_bitmap_next_set(b, NBITS - 1), NBITS - 1);
	mig_bitmap_clear_all(b);
	assert_int_equal(mig_bitmap_count(b), 0);
	assert_int_equal(mig_bitmap_next_set(b, 0), NBITS);
	mig_bitmap_free(b);
}

static void test_next(void **state)
{
	struct mig_bitmap *b = new_bm(NBITS);

	assert_int_equal(mig_bitmap_next_set(b, 0), NBITS);
	assert_int_equal(mig_bitmap_next_clear(b, 0), 0);
	mig_bitmap_set(b, 5);
	mig_bitmap_set(b, 130); /* third word */
	mig_bitmap_set(b, NBITS - 1);
	assert_int_equal(mig_bitmap_next_set(b, 0), 5);
	assert_int_equal(mig_bitmap_next_set(b, 5), 5);
	assert_int_equal(mig_bitmap_next_set(b, 6), 130); /* skips a word */
	assert_int_equal(mig_bitmap_next_set(b, 131), NBITS - 1);
	assert_int_equal(mig_bitmap_next_set(b, NBITS), NBITS);
	assert_int_equal(mig_bitmap_next_set(b, UINT64_MAX), NBITS);

	/* clear scan: fill words 0..1 so it has to cross them */
	mig_bitmap_clear_all(b);
	for (uint64_t i = 0; i < 128; i++)
		mig_bitmap_set(b, i);
	assert_int_equal(mig_bitmap_next_clear(b, 0), 128);
	assert_int_equal(mig_bitmap_next_clear(b, 64), 128);
	assert_int_equal(mig_bitmap_next_clear(b, 150), 150);
	/* a full tail: the padding bits must not be reported */
	for (uint64_t i = 128; i < NBITS; i++)
		mig_bitmap_set(b, i);
	mig_bitmap_clear(b, 70);
	assert_int_equal(mig_bitmap_next_clear(b, 0), 70);
	assert_int_equal(mig_bitmap_next_clear(b, 71), NBITS);
	assert_int_equal(mig_bitmap_next_clear(b, NBITS - 1), NBITS);
	assert_int_equal(mig_bitmap_next_clear(b, NBITS), NBITS);
	mig_bitmap_free(b);
}

/* Compare next_set/next_clear with a linear reference on a random map. */
static void test_next_random(void **state)
{
	const uint64_t n = 1000;
	struct mig_bitmap *b = new_bm(n);
	uint64_t x = 88172645463325252ull;

	for (uint64_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if ((x & 15) == 0)
			mig_bitmap_set(b, i);
	}
	for (uint64_t from = 0; from <= n; from++) {
		uint64_t s = from, c = from;

		while (s < n && !mig_bitmap_test(b, s))
			s++;
		while (c < n && mig_bitmap_test(b, c))
			c++;
		assert_int_equal(mig_bitmap_next_set(b, from), s);
		assert_int_equal(mig_bitmap_next_clear(b, from), c);
	}
	mig_bitmap_free(b);
}

/* The word-at-a-time operations against a bit-by-bit reference, on a size
 * that ends inside a word: spans, bits, or_bits and set_range agree with
 * test and set, and never touch the padding. */
static void test_spans(void **state)
{
	const uint64_t n = 1000;
	struct mig_bitmap *b = new_bm(n), *ref = new_bm(n);
	uint64_t x = 2463534242ull;

	assert_int_equal(mig_bitmap_span(0, 1000), 64);
	assert_int_equal(mig_bitmap_span(70, 1000), 58);
	assert_int_equal(mig_bitmap_span(70, 5), 5);
	for (int round = 0; round < 2000; round++) {
		uint64_t first, len, added = 0, mask, fresh;
		unsigned k;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		first = x % (n + 10);
		len = (x >> 20) % 150;
		if (round % 2) {
			for (uint64_t i = first; i < first + len && i < n; i++)
				added += !mig_bitmap_set(ref, i);
			assert_int_equal(mig_bitmap_set_range(b, first, len), added);
			continue;
		}
		k = mig_bitmap_span(first, len ? len : 1);
		mask = (x >> 32) & ((x >> 40) | (x >> 8));
		fresh = 0;
		for (unsigned j = 0; j < 64; j++)
			if ((mask >> j & 1) && j < 64 - first % 64 &&
			    first + j < n && !mig_bitmap_set(ref, first + j))
				fresh |= 1ull << j;
		assert_true(mig_bitmap_or_bits(b, first, mask) == fresh);
		for (unsigned j = 0; j < k; j++)
			assert_int_equal(mig_bitmap_bits(b, first, k) >> j & 1,
					 mig_bitmap_test(ref, first + j));
	}
	for (uint64_t i = 0; i < n; i++)
		assert_int_equal(mig_bitmap_test(b, i), mig_bitmap_test(ref, i));
	assert_int_equal(mig_bitmap_count(b), mig_bitmap_count(ref));
	for (uint64_t f = 0; f <= n + 1; f += 7) {
		uint64_t c = 0;

		while (f + c < n && c < 100 && !mig_bitmap_test(ref, f + c))
			c++;
		assert_int_equal(mig_bitmap_clear_run(b, f, 100), c);
	}
	/* past the end: nothing, and the padding stays clear */
	assert_int_equal(mig_bitmap_set_range(b, 0, 2 * n), n - mig_bitmap_count(ref));
	assert_int_equal(mig_bitmap_count(b), n);
	assert_int_equal(mig_bitmap_next_clear(b, 0), n);
	assert_int_equal(mig_bitmap_or_bits(b, n - 1, ~0ull), 0);
	assert_int_equal(mig_bitmap_bits(b, n, 64), 0);
	mig_bitmap_free(b);
	mig_bitmap_free(ref);
}

static void test_empty(void **state)
{
	struct mig_bitmap *b = new_bm(0);
	uint8_t out[1] = { 0xaa };

	assert_int_equal(mig_bitmap_count(b), 0);
	assert_int_equal(mig_bitmap_next_set(b, 0), 0);
	assert_int_equal(mig_bitmap_next_clear(b, 0), 0);
	mig_bitmap_set_all(b);
	assert_false(mig_bitmap_set(b, 0));
	assert_int_equal(mig_bitmap_export(b, 0, 0, out), 0);
	assert_int_equal(out[0], 0xaa);
	assert_int_equal(mig_bitmap_export(b, 0, 1, out), -ERANGE);
	mig_bitmap_free(b);
}

static void test_export_layout(void **state)
{
	struct mig_bitmap *b = new_bm(NBITS);
	uint8_t out[4];

	/* bit i of byte k is page first + 8k + i */
	mig_bitmap_set(b, 10);
	mig_bitmap_set(b, 17);
	mig_bitmap_set(b, 30);
	mig_bitmap_set(b, 31);
	memset(out, 0xee, sizeof(out));
	assert_int_equal(mig_bitmap_export(b, 10, 20, out), 0);
	assert_int_equal(out[0], 0x01 | 0x80); /* pages 10 and 17 */
	assert_int_equal(out[1], 0x00);
	assert_int_equal(out[2], 0x00);        /* page 30 is past n: masked */
	assert_int_equal(out[3], 0xee);        /* (20+7)/8 = 3 bytes written */
	assert_int_equal(mig_bitmap_export(b, 10, 21, out), 0);
	assert_int_equal(out[2], 0x10);        /* page 30 = bit 4 of byte 2 */
	mig_bitmap_free(b);
}

/* Export then import of every unaligned window round-trips, and the
 * imported bits land at the same pages. */
static void test_export_import(void **state)
{
	struct mig_bitmap *a = new_bm(NBITS), *b = new_bm(NBITS);
	uint8_t buf[NBITS / 8 + 1];
	static const uint64_t firsts[] = { 0, 1, 7, 8, 63, 64, 65, 127, 130 };
	static const uint64_t lens[] = { 1, 7, 8, 9, 63, 64, 65, 70 };

	for (uint64_t i = 0; i < NBITS; i++)
		if (i % 3 == 0 || i % 7 == 0)
			mig_bitmap_set(a, i);
	for (size_t f = 0; f < MIG_ARRAY_SIZE(firsts); f++) {
		for (size_t l = 0; l < MIG_ARRAY_SIZE(lens); l++) {
			uint64_t first = firsts[f], n = lens[l];

			if (first + n > NBITS)
				continue;
			mig_bitmap_clear_all(b);
			assert_int_equal(mig_bitmap_export(a, first, n, buf), 0);
			assert_int_equal(mig_bitmap_import(b, first, n, buf), 0);
			for (uint64_t i = 0; i < NBITS; i++) {
				bool in = i >= first && i < first + n;

				assert_int_equal(mig_bitmap_test(b, i),
						 in && mig_bitmap_test(a, i));
			}
		}
	}
	/* the whole map */
	mig_bitmap_clear_all(b);
	assert_int_equal(mig_bitmap_export(a, 0, NBITS, buf), 0);
	assert_int_equal(mig_bitmap_import(b, 0, NBITS, buf), 0);
	assert_int_equal(mig_bitmap_count(b), mig_bitmap_count(a));
	mig_bitmap_free(a);
	mig_bitmap_free(b);
}

static void test_import_ors(void **state)
{
	struct mig_bitmap *b = new_bm(NBITS);
	uint8_t in[2] = { 0x01, 0x00 };

	mig_bitmap_set(b, 101);
	assert_int_equal(mig_bitmap_import(b, 100, 16, in), 0);
	assert_true(mig_bitmap_test(b, 100));
	assert_true(mig_bitmap_test(b, 101)); /* not cleared */
	assert_int_equal(mig_bitmap_count(b), 2);
	mig_bitmap_free(b);
}

static void test_import_rejects(void **state)
{
	struct mig_bitmap *b = new_bm(NBITS);
	uint8_t in[2] = { 0x00, 0x02 }; /* bit 9: padding when n = 9 */
	uint8_t out[2];

	assert_int_equal(mig_bitmap_import(b, 0, 9, in), -EINVAL);
	in[1] = 0x80;
	assert_int_equal(mig_bitmap_import(b, 0, 15, in), -EINVAL);
	assert_int_equal(mig_bitmap_count(b), 0); /* nothing applied */
	assert_int_equal(mig_bitmap_import(b, 0, 16, in), 0);
	assert_true(mig_bitmap_test(b, 15));
	/* ranges leaving the map */
	assert_int_equal(mig_bitmap_import(b, NBITS - 8, 9, in), -ERANGE);
	assert_int_equal(mig_bitmap_import(b, NBITS + 1, 0, in), -ERANGE);
	assert_int_equal(mig_bitmap_import(b, UINT64_MAX - 2, 8, in), -ERANGE);
	assert_int_equal(mig_bitmap_export(b, NBITS - 8, 9, out), -ERANGE);
	assert_int_equal(mig_bitmap_export(b, UINT64_MAX - 2, 8, out), -ERANGE);
	assert_int_equal(mig_bitmap_export(b, NBITS - 8, 8, out), 0);
	assert_int_equal(mig_bitmap_import(b, NBITS, 0, in), 0);
	mig_bitmap_free(b);
}

static void test_or_andnot(void **state)
{
	struct mig_bitmap *a = new_bm(NBITS), *b = new_bm(NBITS);
	struct mig_bitmap *c = new_bm(NBITS + 1);

	mig_bitmap_set(a, 1);
	mig_bitmap_set(a, 64);
	mig_bitmap_set(b, 64);
	mig_bitmap_set(b, NBITS - 1);
	assert_int_equal(mig_bitmap_or(a, b), 0);
	assert_int_equal(mig_bitmap_count(a), 3);
	assert_true(mig_bitmap_test(a, NBITS - 1));
	assert_int_equal(mig_bitmap_count(b), 2); /* other untouched */
	assert_int_equal(mig_bitmap_andnot(a, b), 0);
	assert_int_equal(mig_bitmap_count(a), 1);
	assert_true(mig_bitmap_test(a, 1));
	assert_int_equal(mig_bitmap_or(a, c), -EINVAL);
	assert_int_equal(mig_bitmap_andnot(a, c), -EINVAL);
	assert_int_equal(mig_bitmap_count(a), 1);
	mig_bitmap_free(a);
	mig_bitmap_free(b);
	mig_bitmap_free(c);
}

static void test_page_is_zero(void **state)
{
	uint8_t *p = aligned_alloc(MIG_PAGE_SIZE, MIG_PAGE_SIZE);

	assert_non_null(p);
	memset(p, 0, MIG_PAGE_SIZE);
	assert_true(mig_page_is_zero(p));
	p[0] = 1;
	assert_false(mig_page_is_zero(p));
	p[0] = 0;
	p[MIG_PAGE_SIZE - 1] = 0x80;
	assert_false(mig_page_is_zero(p));
	p[MIG_PAGE_SIZE - 1] = 0;
	p[8] = 1; /* just after the cheap first-word check */
	assert_false(mig_page_is_zero(p));
	p[8] = 0;
	p[2048] = 1;
	assert_false(mig_page_is_zero(p));
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_test_clear),
		cmocka_unit_test(test_all),
		cmocka_unit_test(test_next),
		cmocka_unit_test(test_next_random),
		cmocka_unit_test(test_spans),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_export_layout),
		cmocka_unit_test(test_export_import),
		cmocka_unit_test(test_import_ors),
		cmocka_unit_test(test_import_rejects),
		cmocka_unit_test(test_or_andnot),
		cmocka_unit_test(test_page_is_zero),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
