// SPDX-License-Identifier: MIT
/*
 * Unit tests for the kvm workload's pure parts: the boot sector's bytes
 * where kvm.c reads positions from, the slices, a vCPU's position from its
 * registers (the hole below 4 GiB included), the vCPU record check, and
 * the state blob with its machine section against hostile edits. The
 * machine itself runs in tests/bats/kvm.bats.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>

#include "base/bytes.h"
#include "base/util.h"
#include "guest/kvm.h"
#include "guest/workload.h"

#define GIB (1ull << 30)
#define PG MIG_PAGE_SIZE

/* --- the boot sector -------------------------------------------------- */

static void test_image_layout(void **s)
{
	const unsigned char *img = mig_abguest_img;
	const unsigned char add[] = { 0x48, 0x81, 0xc7, 0x00, 0x00, 0x01, 0x00 };

	(void)s;
	assert_int_equal(img[510], 0x55);
	assert_int_equal(img[511], 0xaa);
	/* sixteen `incl disp32(%rdi)`, 6 bytes each, one page apart */
	for (unsigned k = 0; k < 16; k++) {
		const unsigned char *p = img + MIG_KVM_WALK - MIG_KVM_LOAD_ADDR + 6 * k;

		assert_int_equal(p[0], 0xff);
		assert_int_equal(p[1], 0x87);
		assert_int_equal(mig_get_le32(p + 2), k * PG);
	}
	assert_memory_equal(img + MIG_KVM_WALK_ADD - MIG_KVM_LOAD_ADDR, add, sizeof(add));
	assert_int_equal(img[MIG_KVM_WALK_OUT - MIG_KVM_LOAD_ADDR], 0xee); /* out %al,%dx */
}

/* --- layout ------------------------------------------------------------ */

static void test_ram_bounds(void **s)
{
	(void)s;
	assert_null(mig_kvm_ram_check(16ull << 20, 1));
	assert_null(mig_kvm_ram_check(64 * GIB, 32));
	assert_non_null(mig_kvm_ram_check(8ull << 20, 1));
	assert_non_null(mig_kvm_ram_check(64 * GIB + (64u << 10), 1));
	assert_non_null(mig_kvm_ram_check((16ull << 20) + PG, 1));
	assert_non_null(mig_kvm_ram_check(GIB, 33));
	assert_int_equal(mig_kvm_low_end(GIB), GIB);
	assert_int_equal(mig_kvm_low_end(7 * GIB / 2), 7 * GIB / 2);
	assert_int_equal(mig_kvm_low_end(4 * GIB), 3 * GIB);
}

static void test_slices_cover(void **s)
{
	const uint64_t rams[] = { 16ull << 20, 64ull << 20, GIB, 5 * GIB };

	(void)s;
	for (size_t r = 0; r < MIG_ARRAY_SIZE(rams); r++)
		for (unsigned n = 1; n <= MIG_KVM_MAX_VCPUS; n++) {
			uint64_t next = MIG_KVM_FIRST_PAGE;

			for (unsigned i = 0; i < n; i++) {
				uint64_t first, len;

				mig_kvm_slice(rams[r], n, i, &first, &len);
				assert_int_equal(first, next);
				assert_true(len > 0);
				assert_int_equal(len % MIG_KVM_BLOCK_PAGES, 0);
				next = first + len;
			}
			assert_int_equal(next, rams[r] / PG);
		}
}

/* --- positions --------------------------------------------------------- */

static int pos(uint64_t ram, uint64_t first, uint64_t len, uint64_t rip,
	       uint64_t rdi, uint64_t *cursor, bool *pending)
{
	*cursor = UINT64_MAX;
	*pending = true;
	return mig_kvm_position(ram, first, len, rip, rdi, cursor, pending);
}

static void test_position_walk(void **s)
{
	uint64_t first, len, c;
	bool p;

	(void)s;
	mig_kvm_slice(GIB, 2, 1, &first, &len);
	/* at the top of a block: rdi is the page */
	assert_int_equal(pos(GIB, first, len, MIG_KVM_WALK, (first + 32) * PG, &c, &p), 0);
	assert_int_equal(c, 32);
	assert_false(p);
	/* five increments into the block */
	assert_int_equal(pos(GIB, first, len, MIG_KVM_WALK + 30, (first + 32) * PG, &c, &p), 0);
	assert_int_equal(c, 37);
	/* all sixteen done, the add not yet */
	assert_int_equal(pos(GIB, first, len, MIG_KVM_WALK_ADD, (first + 32) * PG, &c, &p), 0);
	assert_int_equal(c, 48);
	/* the last block's add: the pass is done, its character due */
	assert_int_equal(pos(GIB, first, len, MIG_KVM_WALK_ADD, (first + len - 16) * PG, &c, &p), 0);
	assert_int_equal(c, 0);
	assert_true(p);
	/* back at the start, at the out: still due; past it: not */
	assert_int_equal(pos(GIB, first, len, MIG_KVM_WALK_OUT, first * PG, &c, &p), 0);
	assert_true(p);
	assert_int_equal(pos(GIB, first, len, MIG_KVM_WALK_OUT + 1, first * PG, &c, &p), 0);
	assert_false(p);
	assert_int_equal(c, 0);
}

static void test_position_hole(void **s)
{
	uint64_t ram = 4 * GIB, low = 3 * GIB, first, len, c;
	bool p;

	(void)s;
	mig_kvm_slice(ram, 1, 0, &first, &len);
	/* the end of low RAM and 4 GiB are one page, before and after the
	 * walk's cmove */
	assert_int_equal(pos(ram, first, len, MIG_KVM_WALK_ADD + 10, low, &c, &p), 0);
	assert_int_equal(c, low / PG - first);
	assert_int_equal(pos(ram, first, len, MIG_KVM_WALK, 1ull << 32, &c, &p), 0);
	assert_int_equal(c, low / PG - first);
	assert_int_equal(pos(ram, first, len, MIG_KVM_WALK, (1ull << 32) + 64 * PG, &c, &p), 0);
	assert_int_equal(c, low / PG + 64 - first);
	/* the end of RAM, above 4 GiB */
	assert_int_equal(pos(ram, first, len, MIG_KVM_WALK, (1ull << 32) + GIB, &c, &p), 0);
	assert_int_equal(c, 0);
	assert_true(p);
	/* in the hole, beyond RAM, unaligned, outside the slice */
	assert_int_equal(pos(ram, first, len, MIG_KVM_WALK, low + 16 * PG, &c, &p), -EINVAL);
	assert_int_equal(pos(ram, first, len, MIG_KVM_WALK, (1ull << 32) + GIB + 16 * PG,
			     &c, &p), -EINVAL);
	assert_int_equal(pos(ram, first, len, MIG_KVM_WALK, first * PG + PG, &c, &p), -EINVAL);
	assert_int_equal(pos(ram, first, len, MIG_KVM_WALK, 0, &c, &p), -EINVAL);
}

/* --- records ----------------------------------------------------------- */

static const uint32_t sizes[] = {
	0, sizeof(struct kvm_regs), sizeof(struct kvm_sregs), sizeof(struct kvm_xcrs),
	4096, 2 * 16, sizeof(struct kvm_vcpu_events), sizeof(struct kvm_mp_state),
	sizeof(struct kvm_debugregs),
};

/* A well-formed record: the sections in order, two MSRs (TSC, PAT). */
static size_t record(uint8_t *p)
{
	size_t off = 0;

	for (uint32_t t = 1; t < MIG_ARRAY_SIZE(sizes); t++) {
		mig_put_le32(p + off, t);
		mig_put_le32(p + off + 4, sizes[t]);
		memset(p + off + 8, (int)t, sizes[t]);
		if (t == 5) {
			memset(p + off + 8, 0, sizes[t]);
			mig_put_le32(p + off + 8, 0x10);
			mig_put_le32(p + off + 8 + 16, 0x277);
		}
		off += 8 + sizes[t];
	}
	return off;
}

/* Offset of section t's header in a record(). */
static size_t sect_at(uint32_t t)
{
	size_t off = 0;

	for (uint32_t k = 1; k < t; k++)
		off += 8 + sizes[k];
	return off;
}

static void test_record_check(void **s)
{
	uint8_t *r = malloc(16384), *bad = malloc(16384);
	size_t n = record(r);

	(void)s;
	assert_int_equal(mig_kvm_record_check(r, n), (long)n);
	assert_int_equal(mig_kvm_record_check(r, n + 100), (long)n); /* another follows */
	for (size_t cut = 0; cut < n; cut += 97)
		assert_int_equal(mig_kvm_record_check(r, cut), -EBADMSG);
	/* a section out of order, a wrong size, an odd XSAVE, an MSR not
	 * ours, a length past the end */
	memcpy(bad, r, n);
	mig_put_le32(bad + sect_at(2), 3);
	assert_int_equal(mig_kvm_record_check(bad, n), -EBADMSG);
	memcpy(bad, r, n);
	mig_put_le32(bad + sect_at(1) + 4, sizes[1] - 8);
	assert_int_equal(mig_kvm_record_check(bad, n), -EBADMSG);
	memcpy(bad, r, n);
	mig_put_le32(bad + sect_at(4) + 4, 4098);
	assert_int_equal(mig_kvm_record_check(bad, n), -EBADMSG);
	memcpy(bad, r, n);
	mig_put_le32(bad + sect_at(5) + 8 + 16, 0xc0010117); /* not on our list */
	assert_int_equal(mig_kvm_record_check(bad, n), -EBADMSG);
	memcpy(bad, r, n);
	mig_put_le32(bad + sect_at(8) + 4, 0xfffffff0u);
	assert_int_equal(mig_kvm_record_check(bad, n), -EBADMSG);
	free(r);
	free(bad);
}

/* --- the blob ---------------------------------------------------------- */

static void kvm_state(struct mig_workload_state *st, uint8_t *machine, size_t *mlen,
		      unsigned vcpus)
{
	struct mig_workload_spec spec;
	size_t off = 0;

	assert_int_equal(mig_workload_parse("kvm", &spec), 0);
	mig_workload_state_init(st, &spec, GIB, vcpus);
	for (unsigned i = 0; i < vcpus; i++) {
		off += record(machine + off);
		st->cursor[i] = 16 * i + 3;
		st->passes[i] = 100 + i;
		st->booted[i] = true;
	}
	st->machine = machine;
	st->machine_len = *mlen = off;
}

static void test_blob_machine(void **s)
{
	struct mig_workload_state st, out;
	uint8_t *machine = malloc(3 * 16384), *blob;
	size_t mlen, len;

	(void)s;
	kvm_state(&st, machine, &mlen, 3);
	assert_int_equal(mig_workload_state_encode(&st, &blob, &len), 0);
	assert_int_equal(mig_workload_state_decode(blob, len, GIB, &out), 0);
	assert_int_equal(out.spec.id, MIG_WORKLOAD_KVM);
	assert_int_equal(out.vcpus, 3);
	assert_int_equal(out.machine_len, mlen);
	assert_memory_equal(out.machine, machine, mlen);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(out.cursor[i], 16 * i + 3);
		assert_int_equal(out.passes[i], 100 + i);
		assert_true(out.booted[i]);
	}
	/* another RAM size, and a truncated blob */
	assert_int_equal(mig_workload_state_decode(blob, len, 2 * GIB, &out), -EBADMSG);
	for (size_t cut = 0; cut < len; cut += 211)
		assert_int_equal(mig_workload_state_decode(blob, cut, GIB, &out), -EBADMSG);
	free(blob);
	/* records for two vCPUs in a three-vCPU state; a fourth too many */
	st.machine_len = mlen / 3 * 2;
	assert_int_equal(mig_workload_state_encode(&st, &blob, &len), -EINVAL);
	st.machine_len = mlen;
	st.vcpus = 2;
	assert_int_equal(mig_workload_state_encode(&st, &blob, &len), -EINVAL);
	/* more vCPUs than the kvm workload runs */
	kvm_state(&st, machine, &mlen, 3);
	st.vcpus = 33;
	assert_int_equal(mig_workload_state_encode(&st, &blob, &len), -EINVAL);
	free(machine);
}

/* Each byte of the machine section flipped: the checksum refuses it, and
 * with the checksum made good again the record check refuses what it
 * must (and nothing crashes either way). */
static void test_blob_hostile(void **s)
{
	struct mig_workload_state st, out;
	uint8_t *machine = malloc(16384), *blob;
	size_t mlen, len;

	(void)s;
	kvm_state(&st, machine, &mlen, 1);
	assert_int_equal(mig_workload_state_encode(&st, &blob, &len), 0);
	for (size_t i = 0; i < len - 4; i += 13) {
		blob[i] ^= 0x5a;
		assert_int_equal(mig_workload_state_decode(blob, len, GIB, &out), -EBADMSG);
		blob[i] ^= 0x5a;
	}
	assert_int_equal(mig_workload_state_decode(blob, len, GIB, &out), 0);
	free(blob);
	free(machine);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_image_layout),
		cmocka_unit_test(test_ram_bounds),
		cmocka_unit_test(test_slices_cover),
		cmocka_unit_test(test_position_walk),
		cmocka_unit_test(test_position_hole),
		cmocka_unit_test(test_record_check),
		cmocka_unit_test(test_blob_machine),
		cmocka_unit_test(test_blob_hostile),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
