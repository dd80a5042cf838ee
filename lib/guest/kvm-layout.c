// SPDX-License-Identifier: MIT
/*
 * The kvm workload's arithmetic (kvm.h): where RAM is, which pages each
 * vCPU walks, and where a vCPU stands from its registers. Pure: the guest
 * (abguest.S) computes the same, and the unit tests hold both to it.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/util.h"
#include "guest/kvm.h"

#define GIB4 (1ull << 32)
#define BLOCK_BYTES ((uint64_t)MIG_KVM_BLOCK_PAGES * MIG_PAGE_SIZE)

uint64_t mig_kvm_low_end(uint64_t ram_bytes)
{
	return ram_bytes > (7ull << 29) ? MIG_KVM_LOW_MAX : ram_bytes;
}

const char *mig_kvm_ram_check(uint64_t ram_bytes, unsigned vcpus)
{
	if (ram_bytes < MIG_KVM_MIN_RAM)
		return "the kvm workload needs at least 16M of RAM";
	if (ram_bytes > MIG_KVM_MAX_RAM)
		return "the kvm workload takes at most 64G of RAM";
	if (ram_bytes % MIG_KVM_RAM_ALIGN)
		return "the kvm workload's RAM is a multiple of 64K";
	if (vcpus > MIG_KVM_MAX_VCPUS)
		return "the kvm workload runs at most 32 vCPUs";
	return NULL;
}

void mig_kvm_slice(uint64_t ram_bytes, unsigned vcpus, unsigned i,
		   uint64_t *first, uint64_t *len)
{
	uint64_t blocks = (ram_bytes / MIG_PAGE_SIZE - MIG_KVM_FIRST_PAGE) /
			  MIG_KVM_BLOCK_PAGES;
	uint64_t a = blocks * i / vcpus, b = blocks * (i + 1) / vcpus;

	*first = MIG_KVM_FIRST_PAGE + a * MIG_KVM_BLOCK_PAGES;
	*len = (b - a) * MIG_KVM_BLOCK_PAGES;
}

/* The walk's increments are 6 bytes each: k of them done at rip. */
static uint64_t walk_done(uint64_t rip)
{
	if (rip >= MIG_KVM_WALK && rip < MIG_KVM_WALK_ADD &&
	    (rip - MIG_KVM_WALK) % 6 == 0)
		return (rip - MIG_KVM_WALK) / 6;
	return rip == MIG_KVM_WALK_ADD ? MIG_KVM_BLOCK_PAGES : 0;
}

int mig_kvm_position(uint64_t ram_bytes, uint64_t first, uint64_t len,
		     uint64_t rip, uint64_t rdi, uint64_t *cursor, bool *pending)
{
	uint64_t low = mig_kvm_low_end(ram_bytes), page, raw;

	if (rdi % BLOCK_BYTES)
		return -EINVAL;
	/* the end of low RAM and 4 GiB are the same page: the loop moves
	 * from one to the other in its cmove */
	if (rdi <= low)
		page = rdi / MIG_PAGE_SIZE;
	else if (rdi >= GIB4 && rdi - GIB4 <= ram_bytes - low)
		page = (rdi - GIB4 + low) / MIG_PAGE_SIZE;
	else
		return -EINVAL;
	page += walk_done(rip);
	if (page < first || page > first + len)
		return -EINVAL;
	raw = page - first;
	*pending = raw == len || rip == MIG_KVM_WALK_OUT;
	*cursor = raw == len ? 0 : raw;
	return 0;
}
