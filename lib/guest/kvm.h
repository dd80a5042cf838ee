/* SPDX-License-Identifier: MIT */
/*
 * The kvm workload's machine: a KVM virtual machine over mig-guest's RAM
 * mapping, vCPUs that run the boot sector abguest.S, and the few devices
 * that guest talks to (serial port, CMOS, INFO_PORT), emulated on I/O
 * exits. RAM is one memfd mapping: pages [0, low end) at guest-physical 0,
 * the rest at 4 GiB, as QEMU's pc machine lays it out.
 *
 * Each vCPU's execution state travels as a record: tagged sections of the
 * kernel's own structures (registers, special registers, XCRs, XSAVE area,
 * MSRs, pending events, MP state, debug registers), checked section by
 * section before any is loaded. x86-64 only.
 *
 * The layout math and the record check are pure and unit-tested; the rest
 * needs /dev/kvm.
 */
#ifndef MIG_KVM_H
#define MIG_KVM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds of the kvm workload: the guest's page tables map 66 GiB, less
 * the hole below 4 GiB; 16 MiB is the least the CMOS can describe; one
 * pass character per vCPU, 'B' and the 31 after it. */
#define MIG_KVM_MIN_RAM (16ull << 20)
#define MIG_KVM_MAX_RAM (64ull << 30)
#define MIG_KVM_RAM_ALIGN (64u << 10)
#define MIG_KVM_MAX_VCPUS 32u
/* Low RAM ends here when RAM is larger than 3.5 GiB, as on QEMU's pc. */
#define MIG_KVM_LOW_MAX (3ull << 30)

/* abguest.S: where it is loaded and where its walk is. */
#define MIG_KVM_LOAD_ADDR 0x7c00u
#define MIG_KVM_IMG_BYTES 512u
#define MIG_KVM_WALK (MIG_KVM_LOAD_ADDR + 0x08u) /* 16 increments, 6 bytes each */
#define MIG_KVM_WALK_ADD (MIG_KVM_WALK + 16u * 6u) /* the next block */
#define MIG_KVM_WALK_OUT (MIG_KVM_WALK_ADD + 22u)  /* the pass's character */
#define MIG_KVM_FIRST_PAGE 256u                    /* 1 MiB */
#define MIG_KVM_BLOCK_PAGES 16u
#define MIG_KVM_SERIAL_PORT 0x3f8u
#define MIG_KVM_INFO_PORT 0xff0u

/* The boot sector, assembled from abguest.S at build time. */
extern const unsigned char mig_abguest_img[MIG_KVM_IMG_BYTES];

/* NULL if RAM of that size can run the kvm workload on that many vCPUs,
 * else why not (a phrase for an error message). */
const char *mig_kvm_ram_check(uint64_t ram_bytes, unsigned vcpus);
/* Where low RAM ends (bytes): all of RAM, or 3 GiB above 3.5 GiB. */
uint64_t mig_kvm_low_end(uint64_t ram_bytes);
/* vCPU i's slice, in pages of RAM: the guest's own arithmetic. */
void mig_kvm_slice(uint64_t ram_bytes, unsigned vcpus, unsigned i,
		   uint64_t *first, uint64_t *len);
/* Where a walking vCPU stands, from its rip and rdi: the next page to
 * increment (0 to len-1, within its slice), and whether a pass is done in
 * RAM but its character not written yet. 0, or -EINVAL for registers that
 * are not a walk over that slice. */
int mig_kvm_position(uint64_t ram_bytes, uint64_t first, uint64_t len,
		     uint64_t rip, uint64_t rdi, uint64_t *cursor, bool *pending);
/* A vCPU record's sections are all there, in order, of the sizes this
 * format allows: its length, or -EBADMSG. */
long mig_kvm_record_check(const uint8_t *p, size_t len);

struct mig_kvm;

/* Where the guest's serial output goes: appended to fd, or, with -1, to
 * the log in lines. */
struct mig_kvm *mig_kvm_open(uint8_t *ram, uint64_t ram_bytes, unsigned vcpus,
			     const char **why);
void mig_kvm_close(struct mig_kvm *m);
void mig_kvm_set_serial(struct mig_kvm *m, int fd);
/* Fresh vCPUs at the boot sector's first instruction, in real mode. */
int mig_kvm_reset(struct mig_kvm *m);
/* Load vCPU i from its record (checked with mig_kvm_record_check). */
int mig_kvm_load(struct mig_kvm *m, unsigned i, const uint8_t *rec, size_t len,
		 const char **why);
/* Run vCPU i on the calling thread until *stop is seen; its record
 * (mig_kvm_record) is up to date when this returns. */
void mig_kvm_run(struct mig_kvm *m, unsigned i, const atomic_bool *stop);
/* Make every vCPU thread in mig_kvm_run look at its stop flag now. */
void mig_kvm_kick(struct mig_kvm *m);

/* What the vCPU's last park left: its record and where it stood. */
struct mig_kvm_vcpu_view {
	const uint8_t *rec;
	size_t rec_len;
	uint64_t rip, rdi;
	uint64_t passes;   /* pass characters written, all hosts */
	bool booted;       /* its registers are a walk */
	const char *failed; /* NULL, or why it stopped for good */
};
void mig_kvm_view(const struct mig_kvm *m, unsigned i,
		  struct mig_kvm_vcpu_view *v);
/* Carried across a migration beside the records. */
void mig_kvm_set_progress(struct mig_kvm *m, unsigned i, uint64_t passes,
			  bool booted);
/* Pass characters written by vCPU i so far: any thread, any time. */
uint64_t mig_kvm_passes(const struct mig_kvm *m, unsigned i);

#endif
