// SPDX-License-Identifier: MIT
/*
 * Unit tests for the workloads: the ab invariant on hand-made counter
 * arrays, spec parsing, slicing, the state blob codec against truncated and
 * hostile blobs, and both workloads run over a malloc'd "RAM".
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

#include "util.h"
#include "workload.h"

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
		"ab:=1", "ab:x=", "ab:x", "ab,", "ab::", "foo", "dirty",
		"idle:rate=1", "ab:x=1,",
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
	for (size_t i = 0; i < MIG_ARRAY_SIZE(bad); i++)
		assert_int_equal(mig_workload_parse(bad[i], &spec), -EINVAL);
	assert_int_equal(mig_workload_parse(NULL, &spec), -EINVAL);
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
	for (int i = 0; i < 4; i++)
		b[len - 4 + i] = (uint8_t)(h >> (8 * i));
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
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
		put32(b + off, v);
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
	w = mig_workload_new(&st, *ram);
	assert_non_null(w);
	mig_workload_fill(w);
	return w;
}

static void test_ab_runs(void **s)
{
	struct mig_workload_state st;
	pthread_t t[2];
	struct runner r[2];
	atomic_bool stop = false;
	char msg[256];
	uint8_t *ram;
	struct mig_workload *w = new_workload("ab", 2, &ram);

	(void)s;
	assert_int_equal(mig_workload_threads(w), 2);
	for (unsigned i = 0; i < 2; i++) {
		r[i] = (struct runner){ .w = w, .vcpu = i, .stop = &stop };
		assert_int_equal(pthread_create(&t[i], NULL, run_vcpu, &r[i]), 0);
	}
	usleep(20000);
	atomic_store(&stop, true);
	for (unsigned i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	assert_true(mig_workload_progress(w) > 0);
	assert_int_equal(mig_workload_verify(w, msg, sizeof(msg)), 0);
	assert_non_null(strstr(msg, "invariant holds"));
	/* a zeroed page in vCPU 1's slice (pages 32..63) */
	mig_workload_save(w, &st);
	memset(ram + 40 * MIG_PAGE_SIZE, 0, 4);
	assert_int_equal(mig_workload_verify(w, msg, sizeof(msg)), -EBADMSG);
	assert_non_null(strstr(msg, "vcpu 1: page 40"));
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
