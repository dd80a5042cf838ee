// SPDX-License-Identifier: MIT
/*
 * Unit tests for the small helpers: size, number and seconds parsing (what
 * every option goes through), UUIDs, migration names and deadlines.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <unistd.h>
#include <sys/resource.h>
#include <limits.h>
#include <string.h>

#include "base/util.h"

static void size_ok(const char *s, uint64_t want)
{
	uint64_t v = 0;

	if (mig_parse_size(s, &v) != 0)
		fail_msg("mig_parse_size(\"%s\") failed", s);
	if (v != want)
		fail_msg("mig_parse_size(\"%s\") = %llu, want %llu", s,
			 (unsigned long long)v, (unsigned long long)want);
}

static void size_bad(const char *s, int err)
{
	uint64_t v = 7;
	int r = mig_parse_size(s, &v);

	if (r != err)
		fail_msg("mig_parse_size(\"%s\") = %d, want %d", s, r, err);
	assert_int_equal(v, 7); /* untouched on error */
}

static void test_parse_size(void **state)
{
	size_ok("4096", 4096);
	size_ok("0", 0);
	size_ok("64k", 64 << 10);
	size_ok("64K", 64 << 10);
	size_ok("64KiB", 64 << 10);
	size_ok("512M", 512ull << 20);
	size_ok("1G", 1ull << 30);
	size_ok("1GiB", 1ull << 30);
	size_ok("1GB", 1ull << 30);
	size_ok("2T", 2ull << 40);
	size_bad("", -EINVAL);
	size_bad("-1", -EINVAL);
	size_bad("+1", -EINVAL);
	size_bad("12X", -EINVAL);
	size_bad("1.5G", -EINVAL);
	size_bad(" 1", -EINVAL);
	size_bad("1 ", -EINVAL);
	size_bad("G", -EINVAL);
	size_bad("1Gx", -EINVAL);
	size_bad("99999999999T", -ERANGE);
	size_bad("99999999999999999999999", -ERANGE);
	size_bad(NULL, -EINVAL);
}

static void test_parse_ulong(void **state)
{
	unsigned long v = 0;

	assert_int_equal(mig_parse_ulong("5", 1, 10, &v), 0);
	assert_int_equal(v, 5);
	assert_int_equal(mig_parse_ulong("1", 1, 10, &v), 0);
	assert_int_equal(mig_parse_ulong("10", 1, 10, &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(mig_parse_ulong("0", 1, 10, &v), -ERANGE);
	assert_int_equal(mig_parse_ulong("11", 1, 10, &v), -ERANGE);
	assert_int_equal(mig_parse_ulong("99999999999999999999999", 0, ULONG_MAX,
					 &v), -ERANGE);
	assert_int_equal(mig_parse_ulong("", 0, 10, &v), -EINVAL);
	assert_int_equal(mig_parse_ulong("-1", 0, 10, &v), -EINVAL);
	assert_int_equal(mig_parse_ulong("+1", 0, 10, &v), -EINVAL);
	assert_int_equal(mig_parse_ulong(" 1", 0, 10, &v), -EINVAL);
	assert_int_equal(mig_parse_ulong("1x", 0, 10, &v), -EINVAL);
	assert_int_equal(mig_parse_ulong("0x10", 0, 100, &v), -EINVAL);
	assert_int_equal(v, 10);
}

static void test_parse_seconds(void **state)
{
	int64_t ms = -1;

	assert_int_equal(mig_parse_seconds("2.5", &ms), 0);
	assert_int_equal(ms, 2500);
	assert_int_equal(mig_parse_seconds("0", &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(mig_parse_seconds("30", &ms), 0);
	assert_int_equal(ms, 30000);
	assert_int_equal(mig_parse_seconds("0.001", &ms), 0);
	assert_int_equal(ms, 1);
	assert_int_equal(mig_parse_seconds("", &ms), -EINVAL);
	assert_int_equal(mig_parse_seconds("-1", &ms), -EINVAL);
	assert_int_equal(mig_parse_seconds("abc", &ms), -EINVAL);
	assert_int_equal(mig_parse_seconds("1s", &ms), -EINVAL);
	assert_int_equal(mig_parse_seconds(" 1", &ms), -EINVAL);
	assert_int_equal(ms, 1);
}

static void test_uuid(void **state)
{
	uint8_t a[16], b[16];
	char s[37];

	mig_uuid_generate(a);
	assert_int_equal(a[6] >> 4, 4);       /* version 4 */
	assert_int_equal(a[8] & 0xc0, 0x80);  /* RFC 4122 variant */
	mig_uuid_format(a, s);
	assert_int_equal(strlen(s), 36);
	assert_int_equal(s[8], '-');
	assert_int_equal(s[23], '-');
	assert_int_equal(mig_uuid_parse(s, b), 0);
	assert_memory_equal(a, b, 16);
	mig_uuid_generate(b);
	assert_memory_not_equal(a, b, 16);

	assert_int_equal(mig_uuid_parse("00112233-4455-6677-8899-AABBCCDDEEFF",
					b), 0);
	assert_int_equal(b[0], 0x00);
	assert_int_equal(b[10], 0xaa);
	assert_int_equal(b[15], 0xff);
	mig_uuid_format(b, s);
	assert_string_equal(s, "00112233-4455-6677-8899-aabbccddeeff");
}

static void test_uuid_bad(void **state)
{
	static const char *const bad[] = {
		"",
		"00112233-4455-6677-8899-aabbccddeef",   /* short */
		"00112233-4455-6677-8899-aabbccddeeff0", /* long */
		"00112233-4455-6677-8899-aabbccddeefg",  /* not hex */
		"0011223304455-6677-8899-aabbccddeeff",  /* dash missing */
		"001122334-455-6677-8899-aabbccddeeff",  /* dash moved */
		"00112233-4455-6677-8899-aabbccddee-f",
		" 0112233-4455-6677-8899-aabbccddeeff",
		"00112233445566778899aabbccddeeff",
	};
	uint8_t u[16];

	for (size_t i = 0; i < MIG_ARRAY_SIZE(bad); i++)
		if (mig_uuid_parse(bad[i], u) != -EINVAL)
			fail_msg("accepted uuid \"%s\"", bad[i]);
	assert_int_equal(mig_uuid_parse(NULL, u), -EINVAL);
}

static void test_deadline(void **state)
{
	int left = mig_deadline_left_ms(mig_deadline_ns(60000));

	assert_true(mig_deadline_ns(-1) == MIG_DEADLINE_NONE);
	assert_true(mig_deadline_ns(INT64_MAX) == MIG_DEADLINE_NONE);
	assert_int_equal(mig_deadline_left_ms(MIG_DEADLINE_NONE), -1);
	assert_int_equal(mig_deadline_left_ms(mig_deadline_ns(0)), 0);
	assert_int_equal(mig_deadline_left_ms(0), 0);
	/* rounded up, never more than was asked */
	assert_true(left > 0 && left <= 60000);
}

static void test_name_valid(void **state)
{
	char n64[65], n65[66];

	memset(n64, 'a', 64);
	n64[64] = '\0';
	memset(n65, 'a', 65);
	n65[65] = '\0';
	assert_true(mig_name_valid("default"));
	assert_true(mig_name_valid("vm-1.test_A"));
	assert_true(mig_name_valid("a"));
	assert_true(mig_name_valid(n64));
	assert_false(mig_name_valid(n65));
	assert_false(mig_name_valid(""));
	assert_false(mig_name_valid(".hidden"));
	assert_false(mig_name_valid(".."));
	assert_false(mig_name_valid("a/b"));
	assert_false(mig_name_valid("a b"));
	assert_false(mig_name_valid("a\nb"));
	assert_false(mig_name_valid("caf\xc3\xa9"));
}

struct nice_case {
	int start, after;
};

static void *bulk_at(void *arg)
{
	struct nice_case *c = arg;

	if (setpriority(PRIO_PROCESS, 0, c->start) < 0)
		return NULL;
	mig_thread_bulk();
	errno = 0;
	c->after = getpriority(PRIO_PROCESS, 0);
	return NULL;
}

/* The bulk thread is nicer than the engine that starts it, whatever the
 * engine's own niceness, and never past the bottom of the scale. */
static void test_thread_bulk_relative(void **state)
{
	struct nice_case cases[] = { { 0, 5 }, { 10, 15 }, { 17, 19 }, { 19, 19 } };

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct nice_case c = { cases[i].start, -100 };
		pthread_t t;

		assert_int_equal(pthread_create(&t, NULL, bulk_at, &c), 0);
		pthread_join(t, NULL);
		assert_int_equal(c.after, cases[i].after);
	}
}

struct urgent_case {
	int start, urgent, bulk_again, policy_urgent, policy_bulk;
};

static void *urgent_at(void *arg)
{
	struct urgent_case *c = arg;

	if (setpriority(PRIO_PROCESS, 0, c->start) < 0)
		return NULL;
	mig_thread_urgent();
	c->urgent = getpriority(PRIO_PROCESS, 0);
	c->policy_urgent = sched_getscheduler(0);
	/* made urgent for a while, then bulk work again */
	mig_thread_class(0, false, c->start);
	c->bulk_again = getpriority(PRIO_PROCESS, 0);
	c->policy_bulk = sched_getscheduler(0);
	return NULL;
}

/* An urgent thread is 10 less nice than its engine where the user may
 * (root here; otherwise it keeps the engine's), never past the top of the
 * scale, and goes back to bulk work relative to the engine, not to itself. */
static void test_thread_urgent_relative(void **state)
{
	bool root = geteuid() == 0;
	struct urgent_case cases[] = {
		{ 0, root ? -10 : 0, 5, 0, 0 }, { 15, root ? 5 : 15, 19, 0, 0 },
		{ -15, -20, -10, 0, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct urgent_case c = { cases[i].start, 99, 99, -1, -1 };
		pthread_t t;

		if (c.start < 0 && !root)
			continue; /* a negative start needs the privilege too */
		assert_int_equal(pthread_create(&t, NULL, urgent_at, &c), 0);
		pthread_join(t, NULL);
		assert_int_equal(c.urgent, cases[i].urgent);
		assert_int_equal(c.policy_urgent, SCHED_OTHER);
		assert_int_equal(c.bulk_again, cases[i].bulk_again);
		assert_int_equal(c.policy_bulk, SCHED_BATCH);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_ulong),
		cmocka_unit_test(test_parse_seconds),
		cmocka_unit_test(test_uuid),
		cmocka_unit_test(test_uuid_bad),
		cmocka_unit_test(test_name_valid),
		cmocka_unit_test(test_thread_bulk_relative),
		cmocka_unit_test(test_thread_urgent_relative),
		cmocka_unit_test(test_deadline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
