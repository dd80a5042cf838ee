/* SPDX-License-Identifier: MIT */
/*
 * Guest workloads: what mig-guest's vCPU threads do to guest RAM, the small
 * state blob that carries their execution state across a migration, and the
 * invariant that says whether RAM survived it. Every workload keeps its whole
 * state in RAM plus that blob. Spec syntax: `name[:k=v,...]`.
 *
 *   ab    QEMU's migration-test guest on N vCPUs: each vCPU loops over its
 *         slice of pages incrementing a u32 counter in every page.
 *   idle  no vCPU activity; RAM holds a per-page pattern written at start.
 *
 * The spec parser, the blob codec and the ab checker are pure and
 * unit-tested; the rest runs over a real RAM mapping.
 */
#ifndef MIG_WORKLOAD_H
#define MIG_WORKLOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* vCPU threads per guest: enough to load any host this runs on. */
#define MIG_WORKLOAD_MAX_VCPUS 64u
/* Canonical spec string, NUL included: "ab", "dirty:rate=100M,...". */
#define MIG_WORKLOAD_SPEC_MAX 64u
/* Bound on a state blob: it travels to another host, so a hostile one must
 * not make us allocate without limit (same bound as the wire's). */
#define MIG_WORKLOAD_MAX_STATE_BYTES (1u << 20)
/* Guest RAM bound: 1 TiB, as the wire accepts. */
#define MIG_WORKLOAD_MAX_RAM_BYTES (1ull << 40)
/* mig_workload_ab_check(): no cursor to check the step against. */
#define MIG_WORKLOAD_NO_CURSOR UINT64_MAX

enum mig_workload_id {
	MIG_WORKLOAD_AB = 1,
	MIG_WORKLOAD_IDLE = 2,
};

struct mig_workload_spec {
	enum mig_workload_id id;
	char text[MIG_WORKLOAD_SPEC_MAX]; /* canonical spelling */
};

/* Everything a migration carries besides RAM. */
struct mig_workload_state {
	struct mig_workload_spec spec;
	uint64_t ram_bytes;
	unsigned vcpus;                            /* effective (clamped) */
	uint64_t cursor[MIG_WORKLOAD_MAX_VCPUS];   /* next page in the slice */
};

/* Parse `name[:k=v,...]`: 0 or -EINVAL (unknown name or key, bad syntax,
 * too long). */
int mig_workload_parse(const char *text, struct mig_workload_spec *spec);
/* "ab, idle": for --help and error messages. */
const char *mig_workload_names(void);

/* A fresh state: vcpus clamped to [1, pages] so every vCPU owns at least one
 * page, cursors at their slice starts. ram_bytes: non-zero page multiple. */
void mig_workload_state_init(struct mig_workload_state *st,
			     const struct mig_workload_spec *spec,
			     uint64_t ram_bytes, unsigned vcpus);
/* vCPU i's slice: pages [*first, *first + *len) of RAM. */
void mig_workload_slice(uint64_t ram_bytes, unsigned vcpus, unsigned i,
			uint64_t *first, uint64_t *len);

/* State blob: versioned, checksummed, exact length. Encode: *blob is
 * malloc'd; 0 or -ENOMEM / -EINVAL (state out of range). */
int mig_workload_state_encode(const struct mig_workload_state *st,
			      uint8_t **blob, size_t *len);
/* Decode and validate against this guest's RAM size: 0, or -EBADMSG for
 * anything malformed, truncated, for another RAM size, or out of range
 * (*st is then unspecified: decode into a scratch copy). */
int mig_workload_state_decode(const uint8_t *blob, size_t len,
			      uint64_t ram_bytes, struct mig_workload_state *st);

/* The ab invariant over one slice's counters in page order: all equal, or a
 * single step down by exactly one (n+1 ... n+1 n ... n). With a cursor (the
 * parked vCPU's next page), the step must sit exactly there, which also
 * catches a stale page. 0, or -EBADMSG with *bad the first offending index. */
int mig_workload_ab_check(const uint32_t *counters, uint64_t n,
			  uint64_t cursor, uint64_t *bad);

struct mig_workload;

/* A workload over ram (ram_bytes mapped read/write), at the execution state
 * in st. NULL with errno. The mapping stays the caller's. */
struct mig_workload *mig_workload_new(const struct mig_workload_state *st,
				      uint8_t *ram);
void mig_workload_free(struct mig_workload *w);
/* Write the initial RAM contents of a fresh guest (never on an incoming
 * guest: its RAM arrives from the source). */
void mig_workload_fill(struct mig_workload *w);
/* How many vCPU threads to run (0: the workload does nothing). */
unsigned mig_workload_threads(const struct mig_workload *w);
/* The vCPUs the workload was configured with (for info). */
unsigned mig_workload_vcpus(const struct mig_workload *w);
const char *mig_workload_spec_text(const struct mig_workload *w);
/* vCPU thread body: run vCPU i until *stop is seen (checked before every
 * page write), leaving its execution state consistent. */
void mig_workload_run(struct mig_workload *w, unsigned i,
		      const atomic_bool *stop);
/* Page writes so far, all vCPUs; any thread, any time. */
uint64_t mig_workload_progress(const struct mig_workload *w);
/* Snapshot of the execution state; every vCPU must be parked. */
void mig_workload_save(const struct mig_workload *w,
		       struct mig_workload_state *st);
/* Check the invariant over all RAM (vCPUs parked): 0 holds, -EBADMSG
 * broken; msg gets a one-line verdict either way. */
int mig_workload_verify(const struct mig_workload *w, char *msg, size_t len);

#endif
