// SPDX-License-Identifier: MIT
/*
 * Unit tests for the workloads: the ab invariant on hand-made counter
 * arrays, spec parsing, slicing, the state blob codec against truncated and
 * hostile blobs, the dirty workload's page format and the RAM digest it
 * uses as checksum, and every workload run over a malloc'd "RAM".
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/bytes.h"
#include "core/digest.h"
#include "base/util.h"
#include "guest/workload.h"

#define NC MIG_WORKLOAD_NO_CURSOR
#define RAM_BYTES (64u * MIG_PAGE_SIZE)

static int check(const uint32_t *c, uint64_t n, uint64_t cursor, uint64_t *bad)
{
	*bad = UINT64_MAX;
	return mig_workload_ab_check(c, n, cursor, bad);
}

/* --- ab invariant ------------------------------------------------------- */

static void test_ab_all_equal(void **s)
{
	const uint32_t c[] = { 7, 7, 7, 7, 7 };
	const uint32_t zero[] = { 0, 0, 0 };
	uint64_t bad;

	(void)s;
	assert_int_equal(check(c, 5, NC, &bad), 0);
	assert_int_equal(check(c, 5, 0, &bad), 0);
	assert_int_equal(check(zero, 3, 0, &bad), 0); /* never ran yet */
	assert_int_equal(check(c, 1, 0, &bad), 0);
	assert_int_equal(check(c, 0, NC, &bad), 0);
}

static void test_ab_single_drop(void **s)
{
	const uint32_t c[] = { 9, 9, 9, 8, 8 };
	const uint32_t first_pass[] = { 1, 1, 0, 0, 0 };
	const uint32_t wrap[] = { 0, 0, UINT32_MAX, UINT32_MAX }; /* n+1 wrapped */
	const uint32_t last[] = { 5, 5, 5, 4 };
	uint64_t bad;

	(void)s;
	assert_int_equal(check(c, 5, NC, &bad), 0);
	assert_int_equal(check(c, 5, 3, &bad), 0);
	assert_int_equal(check(first_pass, 5, 2, &bad), 0);
	assert_int_equal(check(wrap, 4, 2, &bad), 0);
	assert_int_equal(check(last, 4, 3, &bad), 0);
}

static void test_ab_two_drops(void **s)
{
	const uint32_t c[] = { 9, 9, 8, 8, 7 };
	uint64_t bad;

	(void)s;
	assert_int_equal(check(c, 5, NC, &bad), -EBADMSG);
	assert_int_equal(bad, 4);
}

static void test_ab_drop_by_two(void **s)
{
	const uint32_t c[] = { 9, 9, 7, 7 };
	uint64_t bad;

	(void)s;
	assert_int_equal(check(c, 4, NC, &bad), -EBADMSG);
	assert_int_equal(bad, 2);
}

static void test_ab_rise(void **s)
{
	const uint32_t c[] = { 8, 8, 9, 9 };
	const uint32_t after_drop[] = { 9, 8, 9 };
	uint64_t bad;

	(void)s;
	assert_int_equal(check(c, 4, NC, &bad), -EBADMSG);
	assert_int_equal(bad, 2);
	assert_int_equal(check(after_drop, 3, NC, &bad), -EBADMSG);
	assert_int_equal(bad, 2);
}

static void test_ab_zero_page(void **s)
{
	const uint32_t mid[] = { 5, 5, 0, 5, 5 };
	const uint32_t after_step[] = { 5, 4, 0, 4 };
	const uint32_t first[] = { 0, 5, 5 };
	uint64_t bad;

	(void)s;
	assert_int_equal(check(mid, 5, NC, &bad), -EBADMSG);
	assert_int_equal(bad, 2);
	assert_int_equal(check(after_step, 4, NC, &bad), -EBADMSG);
	assert_int_equal(bad, 2);
	assert_int_equal(check(first, 3, NC, &bad), -EBADMSG);
	assert_int_equal(bad, 1);
}

/* A parked vCPU at cursor c: the step must be exactly at c. */
static void test_ab_cursor(void **s)
{
	const uint32_t c[] = { 9, 9, 9, 8, 8 };
	const uint32_t eq[] = { 3, 3, 3 };
	uint64_t bad;

	(void)s;
	assert_int_equal(check(c, 5, 2, &bad), -EBADMSG); /* stale page 2 */
	assert_int_equal(bad, 2);
	assert_int_equal(check(c, 5, 4, &bad), -EBADMSG); /* stale page 3 */
	assert_int_equal(bad, 3);
	assert_int_equal(check(c, 5, 0, &bad), -EBADMSG);
	assert_int_equal(check(eq, 3, 1, &bad), -EBADMSG); /* lost writes */
	assert_int_equal(bad, 0);
}

/* --- specs and slices ------------------------------------------------------ */

static void test_spec_parse(void **s)
{
	static const char *const bad[] = {
		"", "AB", "a", "abc", "idl", "idle ", " ab", "ab:", "ab:x=1",
		"ab:=1", "ab:x=", "ab:x", "ab,", "ab::", "foo", "dirt",
		"idle:rate=1", "ab:x=1,", "dirty:", "dirty:rate=", "dirty:rate=x",
		"dirty:rate=-1", "dirty:rate=5Q", "dirty:rate=2000000",
		"dirty:pattern=zipf", "dirty:pattern=", "dirty:hot=0",
		"dirty:hot=101", "dirty:hot=1.5", "dirty:speed=1",
		"dirty:rate=1,", "dirty:rate=1,,hot=2", "dirty:Rate=1",
		"idle:data=0", "idle:data=101", "idle:data=", "idle:data=5%",
		"ab:data=10", "dirty:data=10",
		"abababababababababababababababababababababababababababababababab",
	};
	struct mig_workload_spec spec;

	(void)s;
	assert_int_equal(mig_workload_parse("ab", &spec), 0);
	assert_int_equal(spec.id, MIG_WORKLOAD_AB);
	assert_string_equal(spec.text, "ab");
	assert_int_equal(mig_workload_parse("idle", &spec), 0);
	assert_int_equal(spec.id, MIG_WORKLOAD_IDLE);
	assert_string_equal(spec.text, "idle");
	assert_int_equal(spec.data_pct, 0);
	assert_int_equal(mig_workload_parse("idle:data=10", &spec), 0);
	assert_int_equal(spec.data_pct, 10);
	assert_string_equal(spec.text, "idle:data=10");
	for (size_t i = 0; i < MIG_ARRAY_SIZE(bad); i++)
		assert_int_equal(mig_workload_parse(bad[i], &spec), -EINVAL);
	assert_int_equal(mig_workload_parse(NULL, &spec), -EINVAL);
}

static void test_spec_dirty(void **s)
{
	struct mig_workload_spec spec;

	(void)s;
	assert_int_equal(mig_workload_parse("dirty", &spec), 0);
	assert_int_equal(spec.id, MIG_WORKLOAD_DIRTY);
	assert_int_equal(spec.rate, 0);
	assert_int_equal(spec.pattern, MIG_WORKLOAD_UNIFORM);
	assert_int_equal(spec.hot_pct, 10);
	/* a bare rate is MiB/s; a suffix makes it bytes/s */
	assert_int_equal(mig_workload_parse("dirty:rate=50", &spec), 0);
	assert_int_equal(spec.rate, 50ull << 20);
	assert_int_equal(mig_workload_parse("dirty:rate=50M", &spec), 0);
	assert_int_equal(spec.rate, 50ull << 20);
	assert_int_equal(mig_workload_parse("dirty:rate=512K", &spec), 0);
	assert_int_equal(spec.rate, 512ull << 10);
	assert_int_equal(mig_workload_parse("dirty:rate=1G", &spec), 0);
	assert_int_equal(spec.rate, 1ull << 30);
	assert_int_equal(mig_workload_parse("dirty:rate=0", &spec), 0);
	assert_int_equal(spec.rate, 0);
	assert_int_equal(mig_workload_parse("dirty:pattern=hot,hot=25,rate=1",
					    &spec), 0);
	assert_int_equal(spec.pattern, MIG_WORKLOAD_HOT);
	assert_int_equal(spec.hot_pct, 25);
	assert_int_equal(spec.rate, 1ull << 20);
	assert_string_equal(spec.text, "dirty:pattern=hot,hot=25,rate=1");
	assert_int_equal(mig_workload_parse("dirty:pattern=seq", &spec), 0);
	assert_int_equal(spec.pattern, MIG_WORKLOAD_SEQ);
	assert_int_equal(mig_workload_parse("dirty:pattern=random", &spec), 0);
	assert_int_equal(spec.pattern, MIG_WORKLOAD_RANDOM);
	assert_int_equal(mig_workload_parse("dirty:pattern=uniform", &spec), 0);
	assert_int_equal(spec.pattern, MIG_WORKLOAD_UNIFORM);
	/* the bucket: 10 ms of a vCPU's share, at least a page */
	assert_int_equal(mig_workload_parse("dirty:rate=100M", &spec), 0);
	assert_int_equal(mig_workload_bucket_bytes(&spec, 2),
			 (100ull << 20) / 2 / 100);
	assert_int_equal(mig_workload_parse("dirty:rate=1K", &spec), 0);
	assert_int_equal(mig_workload_bucket_bytes(&spec, 4), MIG_PAGE_SIZE);
	assert_int_equal(mig_workload_parse("dirty", &spec), 0);
	assert_int_equal(mig_workload_bucket_bytes(&spec, 4), 0);
}

static void test_slices(void **s)
{
	struct mig_workload_spec spec;
	struct mig_workload_state st;

	(void)s;
	for (unsigned v = 1; v <= 7; v++) {
		uint64_t next = 0, first, len;

		for (unsigned i = 0; i < v; i++) {
			mig_workload_slice(10 * MIG_PAGE_SIZE, v, i, &first, &len);
			assert_int_equal(first, next);
			assert_true(len == 10 / v || len == 10 / v + 1);
			next = first + len;
		}
		assert_int_equal(next, 10);
	}
	assert_int_equal(mig_workload_parse("ab", &spec), 0);
	mig_workload_state_init(&st, &spec, 3 * MIG_PAGE_SIZE, 8);
	assert_int_equal(st.vcpus, 3); /* every vCPU gets at least one page */
	mig_workload_state_init(&st, &spec, RAM_BYTES, 0);
	assert_int_equal(st.vcpus, 1);
	mig_workload_state_init(&st, &spec, RAM_BYTES, 1000);
	assert_int_equal(st.vcpus, MIG_WORKLOAD_MAX_VCPUS);
}

/* --- state blob -------------------------------------------------------- */

static void sample_state(struct mig_workload_state *st)
{
	struct mig_workload_spec spec;

	assert_int_equal(mig_workload_parse("ab", &spec), 0);
	mig_workload_state_init(st, &spec, RAM_BYTES, 3);
	st->cursor[0] = 5;
	st->cursor[1] = 20; /* slice 1 is 21 pages */
	st->cursor[2] = 0;
}

/* FNV-1a over all but the last 4 bytes, as the blob format says: lets a
 * test forge a blob whose checksum is right and whose fields are not. */
static void reseal(uint8_t *b, size_t len)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i + 4 < len; i++)
		h = (h ^ b[i]) * 16777619u;
	mig_put_le32(b + len - 4, h);
}

static void test_blob_round_trip(void **s)
{
	struct mig_workload_state st, out;
	uint8_t *b;
	size_t len;

	(void)s;
	sample_state(&st);
	assert_int_equal(mig_workload_state_encode(&st, &b, &len), 0);
	assert_int_equal(len, 28 + 2 + 3 * 8 + 4);
	assert_int_equal(mig_workload_state_decode(b, len, RAM_BYTES, &out), 0);
	assert_string_equal(out.spec.text, "ab");
	assert_int_equal(out.spec.id, MIG_WORKLOAD_AB);
	assert_int_equal(out.ram_bytes, RAM_BYTES);
	assert_int_equal(out.vcpus, 3);
	assert_int_equal(out.cursor[0], 5);
	assert_int_equal(out.cursor[1], 20);
	assert_int_equal(out.cursor[2], 0);
	/* another guest's RAM size */
	assert_int_equal(mig_workload_state_decode(b, len, 2 * RAM_BYTES, &out),
			 -EBADMSG);
	free(b);
}

static void test_blob_truncated_and_flipped(void **s)
{
	struct mig_workload_state st, out;
	uint8_t *b, *longer;
	size_t len;

	(void)s;
	sample_state(&st);
	assert_int_equal(mig_workload_state_encode(&st, &b, &len), 0);
	for (size_t n = 0; n < len; n++)
		assert_int_equal(mig_workload_state_decode(b, n, RAM_BYTES, &out),
				 -EBADMSG);
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			b[i] ^= (uint8_t)(1 << bit);
			assert_int_equal(mig_workload_state_decode(b, len, RAM_BYTES,
								   &out), -EBADMSG);
			b[i] ^= (uint8_t)(1 << bit);
		}
	}
	longer = calloc(1, len + 1);
	assert_non_null(longer);
	memcpy(longer, b, len);
	assert_int_equal(mig_workload_state_decode(longer, len + 1, RAM_BYTES, &out),
			 -EBADMSG);
	assert_int_equal(mig_workload_state_decode(NULL, 0, RAM_BYTES, &out),
			 -EBADMSG);
	free(longer);
	free(b);
}

/* Blobs with a correct checksum and a lying field. */
static void forge(uint8_t *base, size_t len, size_t off, uint32_t v, size_t wlen)
{
	struct mig_workload_state out;
	uint8_t *b = malloc(len);

	assert_non_null(b);
	memcpy(b, base, len);
	if (wlen == 4)
		mig_put_le32(b + off, v);
	else
		b[off] = (uint8_t)v;
	reseal(b, len);
	assert_int_equal(mig_workload_state_decode(b, len, RAM_BYTES, &out), -EBADMSG);
	free(b);
}

static void test_blob_hostile(void **s)
{
	struct mig_workload_state st;
	uint8_t *b;
	size_t len, cur1 = 28 + 2 + 8;

	(void)s;
	sample_state(&st);
	assert_int_equal(mig_workload_state_encode(&st, &b, &len), 0);
	forge(b, len, 0, 0x5347494e, 4);        /* magic */
	forge(b, len, 4, 2, 1);                 /* version */
	forge(b, len, 6, MIG_WORKLOAD_IDLE, 1); /* id disagrees with the spec */
	forge(b, len, 6, 99, 1);                /* unknown id */
	forge(b, len, 8, (uint32_t)len + 8, 4); /* total length */
	forge(b, len, 12, 0, 4);                /* vcpus 0 */
	forge(b, len, 12, 2, 4);                /* vcpus vs length */
	forge(b, len, 12, 65, 4);               /* vcpus > max */
	forge(b, len, 12, UINT32_MAX, 4);       /* overflow bait */
	forge(b, len, 24, 0, 4);                /* empty spec */
	forge(b, len, 24, 64, 4);               /* spec too long */
	forge(b, len, 24, UINT32_MAX, 4);
	forge(b, len, 28, 'x', 1);              /* unknown workload "xb" */
	forge(b, len, 29, 0, 1);                /* NUL inside the spec */
	forge(b, len, cur1, 21, 4);             /* cursor == slice length */
	forge(b, len, cur1 + 4, 1, 1);          /* cursor >= 2^32 */
	free(b);

	/* more vCPUs than pages, with an exact length */
	{
		struct mig_workload_spec spec;
		struct mig_workload_state out;

		assert_int_equal(mig_workload_parse("ab", &spec), 0);
		mig_workload_state_init(&st, &spec, 2 * MIG_PAGE_SIZE, 2);
		assert_int_equal(mig_workload_state_encode(&st, &b, &len), 0);
		assert_int_equal(mig_workload_state_decode(b, len, 2 * MIG_PAGE_SIZE,
							   &out), 0);
		free(b);
		st.vcpus = 3; /* forged by hand: init would clamp */
		assert_int_equal(mig_workload_state_encode(&st, &b, &len), -EINVAL);
	}
}

static void test_blob_encode_rejects(void **s)
{
	struct mig_workload_state st;
	uint8_t *b = NULL;
	size_t len;

	(void)s;
	sample_state(&st);
	st.cursor[1] = 21;
	assert_int_equal(mig_workload_state_encode(&st, &b, &len), -EINVAL);
	sample_state(&st);
	st.ram_bytes = RAM_BYTES + 1;
	assert_int_equal(mig_workload_state_encode(&st, &b, &len), -EINVAL);
	assert_null(b);
}

/* --- the digest (the dirty page checksum) -------------------------------- */

static void test_digest(void **s)
{
	uint8_t *ram = calloc(4, MIG_PAGE_SIZE);
	struct mig_digest_ctx c;
	uint64_t whole, zero4;

	(void)s;
	assert_non_null(ram);
	zero4 = mig_digest(ram, 4);
	mig_digest_init(&c);
	mig_digest_zero(&c, 4);
	assert_true(mig_digest_final(&c) == zero4); /* a hole digests as zeros */
	assert_true(mig_digest(ram, 3) != zero4);   /* the length counts */
	for (size_t i = 0; i < 4 * MIG_PAGE_SIZE; i++)
		ram[i] = (uint8_t)(i * 7 + i / 4096);
	whole = mig_digest(ram, 4);
	/* cut up any way, holes or not: the same value */
	mig_digest_init(&c);
	mig_digest_update(&c, ram, 1);
	mig_digest_update(&c, ram + MIG_PAGE_SIZE, 3);
	assert_true(mig_digest_final(&c) == whole);
	/* any single byte changed anywhere changes it */
	for (size_t i = 0; i < 4 * MIG_PAGE_SIZE; i += 509) {
		ram[i] ^= 0x80;
		assert_true(mig_digest(ram, 4) != whole);
		ram[i] ^= 0x80;
	}
	/* two pages swapped */
	{
		uint8_t tmp[MIG_PAGE_SIZE];

		memcpy(tmp, ram, MIG_PAGE_SIZE);
		memcpy(ram, ram + MIG_PAGE_SIZE, MIG_PAGE_SIZE);
		memcpy(ram + MIG_PAGE_SIZE, tmp, MIG_PAGE_SIZE);
		assert_true(mig_digest(ram, 4) != whole);
	}
	/* unaligned input gives the same value */
	{
		uint8_t *u = malloc(MIG_PAGE_SIZE + 1);

		assert_non_null(u);
		memcpy(u + 1, ram, MIG_PAGE_SIZE);
		assert_true(mig_digest(u + 1, 1) == mig_digest(ram, 1));
		free(u);
	}
	free(ram);
}

/* --- the dirty page format ------------------------------------------------ */

static void test_dirty_page(void **s)
{
	uint8_t *p = aligned_alloc(MIG_PAGE_SIZE, 3 * MIG_PAGE_SIZE);
	const char *why;
	uint64_t v;

	(void)s;
	assert_non_null(p);
	memset(p, 0, 3 * MIG_PAGE_SIZE);
	assert_int_equal(mig_workload_dirty_page_check(p, 7, &v, &why), 0);
	assert_int_equal(v, 0); /* never written */
	mig_workload_dirty_page_write(p, 7, 1);
	assert_int_equal(mig_workload_dirty_page_check(p, 7, &v, &why), 0);
	assert_int_equal(v, 1);
	mig_workload_dirty_page_write(p, 7, 42);
	assert_int_equal(mig_workload_dirty_page_check(p, 7, &v, &why), 0);
	assert_int_equal(v, 42);
	/* at the wrong index: misplaced */
	assert_int_equal(mig_workload_dirty_page_check(p, 8, &v, &why), -EBADMSG);
	assert_non_null(strstr(why, "index"));
	/* every byte, one flipped bit each (and the top one): always caught */
	for (size_t i = 0; i < MIG_PAGE_SIZE; i++) {
		for (int bit = 0; bit < 8; bit += 7) {
			p[i] ^= (uint8_t)(1 << bit);
			assert_int_equal(mig_workload_dirty_page_check(p, 7, &v, &why),
					 -EBADMSG);
			p[i] ^= (uint8_t)(1 << bit);
		}
	}
	assert_int_equal(mig_workload_dirty_page_check(p, 7, &v, &why), 0);
	/* torn: header of version 43, body of 42 (and the other way round) */
	mig_workload_dirty_page_write(p + MIG_PAGE_SIZE, 7, 43);
	memcpy(p + 2 * MIG_PAGE_SIZE, p + MIG_PAGE_SIZE, 2048);
	memcpy(p + 2 * MIG_PAGE_SIZE + 2048, p + 2048, 2048);
	assert_int_equal(mig_workload_dirty_page_check(p + 2 * MIG_PAGE_SIZE, 7,
						       &v, &why), -EBADMSG);
	assert_non_null(strstr(why, "checksum"));
	memcpy(p + 2 * MIG_PAGE_SIZE, p, 32);
	memcpy(p + 2 * MIG_PAGE_SIZE + 32, p + MIG_PAGE_SIZE + 32,
	       MIG_PAGE_SIZE - 32);
	assert_int_equal(mig_workload_dirty_page_check(p + 2 * MIG_PAGE_SIZE, 7,
						       &v, &why), -EBADMSG);
	/* another workload's page, and a page that is zero but for one byte */
	memset(p + MIG_PAGE_SIZE, 0, MIG_PAGE_SIZE);
	p[MIG_PAGE_SIZE + 4095] = 1;
	assert_int_equal(mig_workload_dirty_page_check(p + MIG_PAGE_SIZE, 7, &v,
						       &why), -EBADMSG);
	assert_non_null(strstr(why, "magic"));
	/* version 0 with a right checksum is still not a written page */
	mig_workload_dirty_page_write(p, 7, 0);
	assert_int_equal(mig_workload_dirty_page_check(p, 7, &v, &why), -EBADMSG);
	/* the body depends on the version: two versions differ past the header */
	mig_workload_dirty_page_write(p, 7, 1);
	mig_workload_dirty_page_write(p + MIG_PAGE_SIZE, 7, 2);
	assert_memory_not_equal(p + 64, p + MIG_PAGE_SIZE + 64, MIG_PAGE_SIZE - 64);
	free(p);
}

/* --- the dirty workload's state blob -------------------------------------- */

static void dirty_state(struct mig_workload_state *st, const char *text)
{
	struct mig_workload_spec spec;

	assert_int_equal(mig_workload_parse(text, &spec), 0);
	mig_workload_state_init(st, &spec, RAM_BYTES, 3);
	st->cursor[0] = 5;
	st->cursor[1] = 20;
	st->rng[0] = 0x0123456789abcdefull;
	st->rng[1] = UINT64_MAX;
	st->rng[2] = 0;
	st->tokens[0] = 100;
	st->tokens[2] = mig_workload_bucket_bytes(&spec, 3);
}

static void test_dirty_blob(void **s)
{
	struct mig_workload_state st, out;
	uint8_t *b;
	size_t len, rec = 28 + strlen("dirty:rate=30M,pattern=seq");

	(void)s;
	dirty_state(&st, "dirty:rate=30M,pattern=seq");
	assert_int_equal(mig_workload_state_encode(&st, &b, &len), 0);
	assert_int_equal(len, rec + 3 * 24 + 4);
	assert_int_equal(mig_workload_state_decode(b, len, RAM_BYTES, &out), 0);
	assert_int_equal(out.spec.id, MIG_WORKLOAD_DIRTY);
	assert_int_equal(out.spec.pattern, MIG_WORKLOAD_SEQ);
	assert_int_equal(out.spec.rate, 30ull << 20);
	assert_int_equal(out.vcpus, 3);
	for (unsigned i = 0; i < 3; i++) {
		assert_true(out.cursor[i] == st.cursor[i]);
		assert_true(out.rng[i] == st.rng[i]);
		assert_true(out.tokens[i] == st.tokens[i]);
	}
	for (size_t n = 0; n < len; n++)
		assert_int_equal(mig_workload_state_decode(b, n, RAM_BYTES, &out),
				 -EBADMSG);
	for (size_t i = 0; i < len; i++) {
		b[i] ^= 0x10;
		assert_int_equal(mig_workload_state_decode(b, len, RAM_BYTES, &out),
				 -EBADMSG);
		b[i] ^= 0x10;
	}
	/* checksummed lies: a full bucket plus one, a cursor past the slice,
	 * an ab id (records of one word, not three), the ab spec */
	forge(b, len, rec + 2 * 24 + 16, (uint32_t)st.tokens[2] + 1, 4);
	forge(b, len, rec + 24, 21, 4);
	forge(b, len, 6, MIG_WORKLOAD_AB, 1);
	forge(b, len, 28, 'D', 1);
	free(b);
	/* no rate: the bucket must be empty */
	dirty_state(&st, "dirty");
	assert_int_equal(mig_workload_state_encode(&st, &b, &len), -EINVAL);
	st.tokens[0] = st.tokens[2] = 0;
	assert_int_equal(mig_workload_state_encode(&st, &b, &len), 0);
	assert_int_equal(mig_workload_state_decode(b, len, RAM_BYTES, &out), 0);
	forge(b, len, 28 + 5 + 16, 1, 1);
	free(b);
}

/* --- workloads over malloc'd RAM ----------------------------------------- */

struct runner {
	struct mig_workload *w;
	unsigned vcpu;
	atomic_bool *stop;
};

static void *run_vcpu(void *arg)
{
	struct runner *r = arg;

	mig_workload_run(r->w, r->vcpu, r->stop);
	return NULL;
}

static struct mig_workload *new_workload(const char *text, unsigned vcpus,
					 uint8_t **ram)
{
	struct mig_workload_spec spec;
	struct mig_workload_state st;
	struct mig_workload *w;

	*ram = calloc(1, RAM_BYTES);
	assert_non_null(*ram);
	assert_int_equal(mig_workload_parse(text, &spec), 0);
	mig_workload_state_init(&st, &spec, RAM_BYTES, vcpus);
	w = mig_workload_new(&st, *ram, NULL);
	assert_non_null(w);
	mig_workload_fill(w);
	return w;
}

/* Run n vCPUs until they have written at least `writes` pages in all: a
 * count, not a duration, so a slow or loaded host only makes it longer
 * (bounded: a workload that stops writing fails the test). */
static void run_until(struct mig_workload *w, unsigned n, uint64_t writes)
{
	pthread_t t[MIG_WORKLOAD_MAX_VCPUS];
	struct runner r[MIG_WORKLOAD_MAX_VCPUS];
	atomic_bool stop = false;
	unsigned waited_ms = 0;

	for (unsigned i = 0; i < n; i++) {
		r[i] = (struct runner){ .w = w, .vcpu = i, .stop = &stop };
		assert_int_equal(pthread_create(&t[i], NULL, run_vcpu, &r[i]), 0);
	}
	while (mig_workload_progress(w) < writes && waited_ms++ < 60000)
		usleep(1000);
	atomic_store(&stop, true);
	for (unsigned i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	assert_true(mig_workload_progress(w) >= writes);
}

static void test_ab_runs(void **s)
{
	struct mig_workload_state st;
	char msg[256];
	uint8_t *ram;
	struct mig_workload *w = new_workload("ab", 2, &ram);

	(void)s;
	assert_int_equal(mig_workload_threads(w), 2);
	/* until vCPU 1 has written its whole slice (pages 32..63) once, so
	 * that zeroing one of its pages always breaks the invariant: vCPU 0
	 * alone may reach any count, and a slow vCPU 1 (TSan) may not */
	for (int i = 0; i < 1000 && !*(volatile uint32_t *)(ram + 63 * MIG_PAGE_SIZE); i++)
		run_until(w, 2, mig_workload_progress(w) + 1000);
	assert_int_equal(mig_workload_verify(w, msg, sizeof(msg)), 0);
	assert_non_null(strstr(msg, "invariant holds"));
	/* a zeroed page in vCPU 1's slice (pages 32..63) */
	mig_workload_save(w, &st);
	memset(ram + 40 * MIG_PAGE_SIZE, 0, 4);
	assert_int_equal(mig_workload_verify(w, msg, sizeof(msg)), -EBADMSG);
	/* named as a counter out of order or as a step away from the cursor,
	 * depending on where vCPU 1 stopped: either way, there */
	assert_non_null(strstr(msg, "ab: vcpu 1: "));
	assert_non_null(strstr(msg, " page 40 "));
	mig_workload_free(w);
	free(ram);
}

static void test_idle_pattern(void **s)
{
	char msg[256];
	uint8_t *ram;
	struct mig_workload *w = new_workload("idle", 4, &ram);
	uint64_t magic;

	(void)s;
	assert_int_equal(mig_workload_threads(w), 0);
	memcpy(&magic, ram, 8);
	assert_true(magic == 0x4d49474944c3c3c3ull);
	for (size_t i = 0; i < MIG_PAGE_SIZE; i++)
		assert_int_equal(ram[3 * MIG_PAGE_SIZE + i], 0);
	assert_int_equal(mig_workload_verify(w, msg, sizeof(msg)), 0);
	ram[7 * MIG_PAGE_SIZE + 100] = 1; /* a zero page that is not */
	ram[9 * MIG_PAGE_SIZE + 9] ^= 1;
	assert_int_equal(mig_workload_verify(w, msg, sizeof(msg)), -EBADMSG);
	assert_non_null(strstr(msg, "page 7 "));
	mig_workload_free(w);
	free(ram);
}

/* data=PCT: the first PCT pages of each hundred hold data, the rest zero. */
static void test_idle_sparse(void **s)
{
	char msg[256];
	uint8_t *ram;
	struct mig_workload *w = new_workload("idle:data=10", 1, &ram);
	uint64_t pages = RAM_BYTES / MIG_PAGE_SIZE, data = 0;

	(void)s;
	for (uint64_t p = 0; p < pages; p++) {
		bool zero = true;

		for (size_t i = 0; i < MIG_PAGE_SIZE && zero; i++)
			zero = !ram[p * MIG_PAGE_SIZE + i];
		assert_int_equal(zero, p % 100 >= 10);
		data += !zero;
	}
	assert_true(data > 0);
	assert_int_equal(mig_workload_verify(w, msg, sizeof(msg)), 0);
	ram[50 * MIG_PAGE_SIZE + 8] = 1; /* a zero page that is not */
	assert_int_equal(mig_workload_verify(w, msg, sizeof(msg)), -EBADMSG);
	assert_non_null(strstr(msg, "page 50 "));
	mig_workload_free(w);
	free(ram);
}

static void test_dirty_runs(void **s)
{
	struct mig_workload_state st;
	struct mig_workload *w2;
	char msg[256];
	uint8_t *ram;
	struct mig_workload *w = new_workload("dirty", 2, &ram);
	uint64_t before, v;
	const char *why;

	(void)s;
	assert_int_equal(mig_workload_threads(w), 2);
	run_until(w, 2, 65);
	assert_int_equal(mig_workload_verify(w, msg, sizeof(msg)), 0);
	assert_non_null(strstr(msg, "invariant holds"));
	/* poke: one more version of page 33, counted as a write */
	assert_int_equal(mig_workload_dirty_page_check(ram + 33 * MIG_PAGE_SIZE,
						       33, &v, &why), 0);
	before = mig_workload_progress(w);
	assert_int_equal(mig_workload_poke(w, 33), 0);
	assert_int_equal(mig_workload_progress(w), before + 1);
	{
		uint64_t v2;

		assert_int_equal(mig_workload_dirty_page_check(
			ram + 33 * MIG_PAGE_SIZE, 33, &v2, &why), 0);
		assert_int_equal(v2, v + 1);
	}
	assert_int_equal(mig_workload_poke(w, 64), -EINVAL);
	/* the state carries on in a new workload (a migration) */
	mig_workload_save(w, &st);
	w2 = mig_workload_new(&st, ram, NULL);
	assert_non_null(w2);
	run_until(w2, 2, mig_workload_progress(w2) + 64);
	assert_int_equal(mig_workload_verify(w2, msg, sizeof(msg)), 0);
	mig_workload_free(w2);
	/* a flipped byte, then a page moved elsewhere */
	ram[17 * MIG_PAGE_SIZE + 1000] ^= 4;
	assert_int_equal(mig_workload_verify(w, msg, sizeof(msg)), -EBADMSG);
	assert_non_null(strstr(msg, "page 17:"));
	ram[17 * MIG_PAGE_SIZE + 1000] ^= 4;
	/* both written, whether or not vCPU 1 got to them: a page never
	 * written is zero, and a zero page copied onto another says nothing */
	assert_int_equal(mig_workload_poke(w, 40), 0);
	assert_int_equal(mig_workload_poke(w, 41), 0);
	memcpy(ram + 40 * MIG_PAGE_SIZE, ram + 41 * MIG_PAGE_SIZE, MIG_PAGE_SIZE);
	assert_int_equal(mig_workload_verify(w, msg, sizeof(msg)), -EBADMSG);
	assert_non_null(strstr(msg, "page 40:"));
	mig_workload_free(w);
	free(ram);
	/* no poking another workload */
	w = new_workload("ab", 1, &ram);
	assert_int_equal(mig_workload_poke(w, 0), -EINVAL);
	mig_workload_free(w);
	free(ram);
}

/* Under a rate limit the vCPUs still write, sweep their slices in order
 * (seq), and never hold more tokens than the bucket. How close the rate
 * holds is a speed, measured in make bench, not asserted here. */
static void test_dirty_rate(void **s)
{
	uint8_t *ram;
	struct mig_workload *w = new_workload("dirty:rate=4M,pattern=seq", 2, &ram);
	struct mig_workload_state st;
	uint64_t n;

	(void)s;
	run_until(w, 2, 40);
	n = mig_workload_progress(w);
	/* seq: each vCPU swept its slice from the start */
	mig_workload_save(w, &st);
	assert_int_equal((st.cursor[0] + st.cursor[1]) % 32, n % 32);
	assert_true(st.tokens[0] <= mig_workload_bucket_bytes(&st.spec, 2));
	mig_workload_free(w);
	free(ram);
}

/* hot: the first 25% of each slice takes about 90% of the writes. */
static void test_dirty_hot(void **s)
{
	uint8_t *ram;
	struct mig_workload *w = new_workload("dirty:pattern=hot,hot=25", 1, &ram);
	uint64_t hot = 0, cold = 0;
	char msg[256];

	(void)s;
	run_until(w, 1, 5000);
	for (uint64_t p = 0; p < 64; p++) {
		uint64_t v;
		const char *why;

		assert_int_equal(mig_workload_dirty_page_check(
			ram + p * MIG_PAGE_SIZE, p, &v, &why), 0);
		if (p < 16)
			hot += v;
		else
			cold += v;
	}
	assert_true(hot + cold == mig_workload_progress(w));
	assert_true(hot > 5 * cold);
	assert_int_equal(mig_workload_verify(w, msg, sizeof(msg)), 0);
	mig_workload_free(w);
	free(ram);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ab_all_equal),
		cmocka_unit_test(test_ab_single_drop),
		cmocka_unit_test(test_ab_two_drops),
		cmocka_unit_test(test_ab_drop_by_two),
		cmocka_unit_test(test_ab_rise),
		cmocka_unit_test(test_ab_zero_page),
		cmocka_unit_test(test_ab_cursor),
		cmocka_unit_test(test_spec_parse),
		cmocka_unit_test(test_slices),
		cmocka_unit_test(test_blob_round_trip),
		cmocka_unit_test(test_blob_truncated_and_flipped),
		cmocka_unit_test(test_blob_hostile),
		cmocka_unit_test(test_blob_encode_rejects),
		cmocka_unit_test(test_ab_runs),
		cmocka_unit_test(test_idle_pattern),
		cmocka_unit_test(test_idle_sparse),
		cmocka_unit_test(test_spec_dirty),
		cmocka_unit_test(test_digest),
		cmocka_unit_test(test_dirty_page),
		cmocka_unit_test(test_dirty_blob),
		cmocka_unit_test(test_dirty_runs),
		cmocka_unit_test(test_dirty_rate),
		cmocka_unit_test(test_dirty_hot),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
