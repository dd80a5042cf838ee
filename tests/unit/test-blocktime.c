// SPDX-License-Identifier: MIT
/*
 * Unit tests for the destination's blocktime accounting (lib/dest/
 * blocktime.c) with made-up times: per-vCPU waits, the intervals during
 * which all vCPUs wait, waits still going at the time of a read, and
 * faults that count for no vCPU.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dest/dest-int.h"

#define MS 1000000ull
/* the clock never reads 0 (a wait's start of 0 means none) */
#define T0 (1000 * MS)

static struct dst_bt_acct a;

static struct dst_blocktime read_at(uint64_t now)
{
	struct dst_blocktime bt;

	dst_bt_acct_read(&a, now, &bt);
	return bt;
}

static void test_nothing_waited(void **state)
{
	struct dst_blocktime bt;

	(void)state;
	dst_bt_acct_reset(&a, 3);
	bt = read_at(T0 + 50 * MS);
	assert_int_equal(bt.nvcpus, 3);
	assert_int_equal(bt.total_ms, 0);
	for (unsigned v = 0; v < 3; v++)
		assert_int_equal(bt.vcpu_ms[v], 0);
}

/* Two vCPUs on one page: all wait from the second's fault. */
static void test_all_wait_on_one_page(void **state)
{
	struct dst_blocktime bt;

	(void)state;
	dst_bt_acct_reset(&a, 2);
	dst_bt_acct_fault(&a, 0, 7, T0);
	dst_bt_acct_fault(&a, 1, 7, T0 + 3 * MS);
	dst_bt_acct_placed(&a, 7, T0 + 10 * MS);
	bt = read_at(T0 + 20 * MS);
	assert_int_equal(bt.vcpu_ms[0], 10);
	assert_int_equal(bt.vcpu_ms[1], 7);
	assert_int_equal(bt.total_ms, 7);
}

/* Each waits on its own page; the all-waiting interval ends when the first
 * of them runs again, and begins anew only when all wait again. */
static void test_overlapping_waits(void **state)
{
	struct dst_blocktime bt;

	(void)state;
	dst_bt_acct_reset(&a, 2);
	dst_bt_acct_fault(&a, 0, 1, T0);
	dst_bt_acct_fault(&a, 1, 2, T0 + 2 * MS);
	dst_bt_acct_placed(&a, 1, T0 + 5 * MS);     /* all: 3 */
	dst_bt_acct_fault(&a, 0, 3, T0 + 6 * MS);
	dst_bt_acct_placed(&a, 2, T0 + 8 * MS);     /* all: 2 more */
	dst_bt_acct_placed(&a, 3, T0 + 9 * MS);
	dst_bt_acct_placed(&a, 3, T0 + 12 * MS);    /* nobody waits on it now */
	bt = read_at(T0 + 30 * MS);
	assert_int_equal(bt.vcpu_ms[0], 5 + 3);
	assert_int_equal(bt.vcpu_ms[1], 6);
	assert_int_equal(bt.total_ms, 5);
}

/* A read while vCPUs wait counts their waits up to the time of the read,
 * and changes nothing. */
static void test_ongoing_waits(void **state)
{
	struct dst_blocktime bt;

	(void)state;
	dst_bt_acct_reset(&a, 2);
	dst_bt_acct_fault(&a, 1, 4, T0);
	bt = read_at(T0 + 4 * MS);
	assert_int_equal(bt.vcpu_ms[0], 0);
	assert_int_equal(bt.vcpu_ms[1], 4);
	assert_int_equal(bt.total_ms, 0);
	dst_bt_acct_fault(&a, 0, 5, T0 + 6 * MS);
	bt = read_at(T0 + 10 * MS);
	assert_int_equal(bt.vcpu_ms[0], 4);
	assert_int_equal(bt.vcpu_ms[1], 10);
	assert_int_equal(bt.total_ms, 4);
	dst_bt_acct_placed(&a, 5, T0 + 11 * MS);
	dst_bt_acct_placed(&a, 4, T0 + 12 * MS);
	bt = read_at(T0 + 40 * MS);
	assert_int_equal(bt.vcpu_ms[0], 5);
	assert_int_equal(bt.vcpu_ms[1], 12);
	assert_int_equal(bt.total_ms, 5);
}

/* A vCPU woken whose next fault is seen before its page's placement is
 * one wait, ended by the page it waits on last; a fault from a vCPU index
 * the guest does not have counts for nobody. */
static void test_refault_and_stray_vcpu(void **state)
{
	struct dst_blocktime bt;

	(void)state;
	dst_bt_acct_reset(&a, 1);
	dst_bt_acct_fault(&a, 0, 1, T0);
	dst_bt_acct_fault(&a, 0, 2, T0 + 3 * MS);
	dst_bt_acct_placed(&a, 1, T0 + 4 * MS);
	dst_bt_acct_fault(&a, 5, 2, T0 + 4 * MS);
	bt = read_at(T0 + 6 * MS);
	assert_int_equal(bt.nvcpus, 1);
	assert_int_equal(bt.vcpu_ms[0], 6);
	assert_int_equal(bt.total_ms, 6);
	dst_bt_acct_placed(&a, 2, T0 + 7 * MS);
	bt = read_at(T0 + 9 * MS);
	assert_int_equal(bt.vcpu_ms[0], 7);
	assert_int_equal(bt.total_ms, 7);
}

/* Milliseconds are whole ones, rounded down, and saturate at UINT32_MAX. */
static void test_rounding_and_saturation(void **state)
{
	struct dst_blocktime bt;

	(void)state;
	dst_bt_acct_reset(&a, 1);
	dst_bt_acct_fault(&a, 0, 1, T0);
	dst_bt_acct_placed(&a, 1, T0 + MS - 1);
	assert_int_equal(read_at(T0 + 2 * MS).vcpu_ms[0], 0);
	dst_bt_acct_fault(&a, 0, 1, T0 + 2 * MS);
	bt = read_at(T0 + 2 * MS + (uint64_t)UINT32_MAX * 2 * MS);
	assert_int_equal(bt.vcpu_ms[0], UINT32_MAX);
	assert_int_equal(bt.total_ms, UINT32_MAX);
}

/* No more vCPUs than a guest can have; a reset forgets every wait. */
static void test_reset(void **state)
{
	struct dst_blocktime bt;

	(void)state;
	dst_bt_acct_reset(&a, MIG_WORKLOAD_MAX_VCPUS + 10);
	assert_int_equal(a.nvcpus, MIG_WORKLOAD_MAX_VCPUS);
	dst_bt_acct_fault(&a, MIG_WORKLOAD_MAX_VCPUS - 1, 1, T0);
	dst_bt_acct_reset(&a, 2);
	bt = read_at(T0 + 5 * MS);
	assert_int_equal(bt.nvcpus, 2);
	assert_int_equal(bt.vcpu_ms[0] + bt.vcpu_ms[1] + bt.total_ms, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nothing_waited),
		cmocka_unit_test(test_all_wait_on_one_page),
		cmocka_unit_test(test_overlapping_waits),
		cmocka_unit_test(test_ongoing_waits),
		cmocka_unit_test(test_refault_and_stray_vcpu),
		cmocka_unit_test(test_rounding_and_saturation),
		cmocka_unit_test(test_reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
