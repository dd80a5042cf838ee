/* SPDX-License-Identifier: MIT */
/*
 * The guest workloads' shared insides, private to lib/guest/workload*.c: a
 * workload is a table of operations, one per file (workload-ab.c,
 * workload-idle.c, workload-dirty.c); workload.c parses specs and runs
 * them, workload-state.c carries their state across a migration.
 */
#ifndef MIG_WORKLOAD_INT_H
#define MIG_WORKLOAD_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "guest/workload.h"

#define PAGE_WORDS (MIG_PAGE_SIZE / 8u)

/* splitmix64's increment (golden ratio) and finaliser multipliers: the
 * dirty workload's RNG, and its fixed seeds in a fresh state. */
#define SPLITMIX_INC 0x9e3779b97f4a7c15ull
#define SPLITMIX_M1 0xbf58476d1ce4e5b9ull
#define SPLITMIX_M2 0x94d049bb133111ebull

struct workload_ops {
	const char *name;
	enum mig_workload_id id;
	unsigned state_words; /* per-vCPU u64 words in the state blob */
	/* k=v from the spec; NULL: the workload takes none. */
	int (*param)(struct mig_workload_spec *spec, const char *key,
		     const char *val);
	void (*fill)(struct mig_workload *w);          /* NULL: RAM stays zero */
	void (*run)(struct mig_workload *w, unsigned i, const atomic_bool *stop);
	int (*verify)(const struct mig_workload *w, char *msg, size_t len);
	/* NULL: mig_workload_slice */
	void (*slice)(uint64_t ram_bytes, unsigned vcpus, unsigned i,
		      uint64_t *first, uint64_t *len);
	/* kvm: its machine (NULL for the others) */
	int (*open)(struct mig_workload *w, const char **why);
	void (*close)(struct mig_workload *w);
	void (*kick)(struct mig_workload *w);
	void (*set_serial)(struct mig_workload *w, int fd);
	uint64_t (*progress)(const struct mig_workload *w); /* NULL: counted */
	/* the state's limits beyond the common ones, machine section included */
	bool (*state_valid)(const struct mig_workload_state *st);
	bool has_machine; /* the blob carries a machine section */
};

/* One per vCPU, on its own cache line: vCPUs never share a written line. */
struct vcpu_count {
	_Atomic uint64_t writes;
	char pad[64 - sizeof(uint64_t)];
};

struct mig_workload {
	struct vcpu_count count[MIG_WORKLOAD_MAX_VCPUS];
	const struct workload_ops *ops;
	/* cursor[i] is vCPU i's own while it runs; others read it only when
	 * the vCPU is parked (the parking lock orders the accesses). */
	struct mig_workload_state st;
	uint8_t *ram;
	void *priv;      /* the workload's own: kvm's machine */
};

extern const struct workload_ops workload_ab, workload_idle, workload_dirty,
	workload_kvm;

/* The workload with that id, NULL for none. */
const struct workload_ops *workload_ops_by_id(enum mig_workload_id id);
/* The limits a state must meet, whether built here or decoded. */
bool workload_state_valid(const struct mig_workload_state *st);
/* vCPU i's slice of the state's workload. */
void workload_slice(const struct mig_workload_state *st, unsigned i,
		    uint64_t *first, uint64_t *len);
/* ab's check over RAM, for every workload that walks counters (ab, kvm):
 * the name prefixes the message. */
int workload_ab_verify(const struct mig_workload *w, const char *name,
		       char *msg, size_t len);

#endif
