/* SPDX-License-Identifier: MIT */
/*
 * The kvm machine's insides, shared by lib/guest/kvm*.c only: kvm.c makes
 * and runs the VM, kvm-record.c reads and loads the vCPUs' records,
 * kvm-layout.c is the pure arithmetic of RAM and positions.
 */
#ifndef MIG_KVM_INT_H
#define MIG_KVM_INT_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "guest/kvm.h"

/* kvm-record.c's list of MSRs is at most this long. */
#define MAX_MSRS 10u
#define SERIAL_LINE 64u
#define XSAVE_MIN ((uint32_t)sizeof(struct kvm_xsave))

struct vcpu {
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool in_run;           /* under m->lock: thread is in mig_kvm_run */
	uint8_t cmos_idx;      /* the CMOS index this vCPU last wrote */
	_Atomic uint64_t passes;
	bool booted;
	char failed[160];      /* "": running fine */
	uint8_t *rec;          /* m->rec_bytes in m->records */
	uint64_t rip, rdi;     /* from the last record */
};

struct mig_kvm {
	int sys, vm;
	uint8_t *ram;
	uint64_t ram_bytes, low_end;
	unsigned nvcpus, nmsrs;
	uint32_t msrs[MAX_MSRS];
	size_t run_bytes, xsave_bytes, rec_bytes;
	struct kvm_cpuid2 *cpuid;
	pthread_mutex_t lock;  /* in_run and thread; the serial line */
	int serial_fd;
	char line[SERIAL_LINE + 1];
	size_t line_len;
	struct mig_ratelimit serial_rl;
	uint8_t *records;
	struct vcpu v[MIG_KVM_MAX_VCPUS];
};

/* kvm-record.c */
int kvm_msrs_probe(struct mig_kvm *m);
size_t kvm_rec_size(const struct mig_kvm *m);
/* vCPU i's state into its record, and where it stands (rip, rdi). */
int kvm_snapshot(struct mig_kvm *m, unsigned i);

#endif
