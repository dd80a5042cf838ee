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
 *   dirty the benchmark writer: `dirty[:rate=R,pattern=P,hot=PCT]`. Each
 *         vCPU writes whole self-describing pages (magic, index, version,
 *         checksum; see mig_workload_dirty_page_write) in its own slice,
 *         picked by the pattern: uniform (or its alias random) at random
 *         over the slice, hot (PCT% of each slice, default 10, gets 90% of
 *         the writes), seq (a sweep), split (even vCPUs write only the
 *         hot PCT% of their slice, odd ones uniformly: some vCPUs run
 *         on present pages while others wait). R is the rate over all vCPUs,
 *         shared evenly: a bare number is MiB/s, a K/M/G/T suffix
 *         (powers of 1024) makes it bytes/s ("50" and "50M" are the
 *         same); 0 or none is as fast as possible. Paced by a token bucket
 *         per vCPU. Pages never written stay zero.
 *   kvm   a real virtual machine: vCPUs under KVM run the boot sector
 *         abguest.S, which walks RAM from 1 MiB as ab does (a u32 counter
 *         per page, 16-page blocks, slices of kvm.h's arithmetic) and
 *         writes a character to its serial port after each pass. Its
 *         vCPUs' KVM state travels in the blob's machine section (kvm.h).
 *
 * The spec parser, the blob codec, the ab checker and the dirty page
 * format are pure and unit-tested; the rest runs over a real RAM mapping.
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
	MIG_WORKLOAD_DIRTY = 3,
	MIG_WORKLOAD_KVM = 4,
};

/* dirty: which pages a vCPU writes next. */
enum mig_workload_pattern {
	MIG_WORKLOAD_UNIFORM = 0, /* at random over the slice */
	MIG_WORKLOAD_RANDOM = 1,  /* the same, under the name benchmarks use */
	MIG_WORKLOAD_HOT = 2,     /* 90% of writes to the first hot_pct% */
	MIG_WORKLOAD_SEQ = 3,     /* sweep, page after page */
	MIG_WORKLOAD_SPLIT = 4,   /* even vCPUs only in their hot_pct%, odd
				   * ones uniform: a guest whose vCPUs keep
				   * running while others wait for pages */
};

/* dirty: defaults and bounds. */
#define MIG_WORKLOAD_HOT_PCT 10u
/* Highest rate= accepted, bytes/s (1 TiB/s): more is surely a typo. */
#define MIG_WORKLOAD_MAX_RATE (1ull << 40)

struct mig_workload_spec {
	enum mig_workload_id id;
	char text[MIG_WORKLOAD_SPEC_MAX]; /* canonical spelling */
	/* dirty only (zero otherwise) */
	uint64_t rate;                    /* bytes/s over all vCPUs; 0: no limit */
	enum mig_workload_pattern pattern;
	unsigned hot_pct;                 /* 1-100 */
	/* idle only: the share of pages holding data, 1-100, in runs of
	 * that many pages per hundred; 0: every fourth page zero */
	unsigned data_pct;
};

/* Everything a migration carries besides RAM. */
struct mig_workload_state {
	struct mig_workload_spec spec;
	uint64_t ram_bytes;
	unsigned vcpus;                            /* effective (clamped) */
	uint64_t cursor[MIG_WORKLOAD_MAX_VCPUS];   /* next page in the slice */
	/* dirty only (zero otherwise) */
	uint64_t rng[MIG_WORKLOAD_MAX_VCPUS];      /* splitmix64 state: any value */
	uint64_t tokens[MIG_WORKLOAD_MAX_VCPUS];   /* token bucket, bytes */
	/* kvm only (zero otherwise) */
	uint64_t passes[MIG_WORKLOAD_MAX_VCPUS];   /* pass characters written */
	bool booted[MIG_WORKLOAD_MAX_VCPUS];       /* registers are a walk */
	/* kvm: the vCPUs' records (kvm.h), borrowed: from the blob it was
	 * decoded from, or the workload it was saved from, and valid as long
	 * as that is */
	const uint8_t *machine;
	size_t machine_len;
};

/* Parse `name[:k=v,...]`: 0 or -EINVAL (unknown name or key, bad syntax,
 * too long). */
int mig_workload_parse(const char *text, struct mig_workload_spec *spec);
/* "ab, idle, dirty, kvm": for --help and error messages. */
const char *mig_workload_names(void);

/* A fresh state: vcpus clamped to [1, pages] so every vCPU owns at least one
 * page, cursors at their slice starts. ram_bytes: non-zero page multiple. */
void mig_workload_state_init(struct mig_workload_state *st,
			     const struct mig_workload_spec *spec,
			     uint64_t ram_bytes, unsigned vcpus);
/* vCPU i's slice: pages [*first, *first + *len) of RAM (ab, idle, dirty;
 * kvm's is mig_kvm_slice). */
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

/* dirty: one vCPU's token bucket holds at most this many bytes (10 ms of
 * its share of the rate, at least one page); 0 without a rate. */
uint64_t mig_workload_bucket_bytes(const struct mig_workload_spec *spec,
				   unsigned vcpus);

/*
 * The dirty workload's page, 4 KiB of little-endian u64 words: magic,
 * page index, version (1 for the first write of the page, +1 per write),
 * checksum, then a body derived from (index, version). The checksum is
 * mig_digest() of the page with the checksum word zero, so it covers every
 * byte: a flipped byte anywhere, a torn page (header of one write, body of
 * another) or a page at the wrong index all fail the check.
 */
#define MIG_WORKLOAD_DIRTY_MAGIC 0x595452494447494dull /* "MIGDIRTY" */
void mig_workload_dirty_page_write(void *page, uint64_t index,
				   uint64_t version);
/* 0: page is all zero (*version 0) or a valid page for index (*version
 * set); -EBADMSG otherwise, *why saying what is wrong. */
int mig_workload_dirty_page_check(const void *page, uint64_t index,
				  uint64_t *version, const char **why);

struct mig_workload;

/* A workload over ram (ram_bytes mapped read/write), at the execution state
 * in st. NULL with errno, and *why (may be NULL) set to what failed where
 * there is more to say than errno (kvm: "/dev/kvm", a refused MSR...). The
 * mapping stays the caller's. */
struct mig_workload *mig_workload_new(const struct mig_workload_state *st,
				      uint8_t *ram, const char **why);
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
/* After *stop is set: make vCPUs that do not look at it between page
 * writes (kvm's, in the guest) look now. Any thread. */
void mig_workload_kick(struct mig_workload *w);
/* kvm: where the guest's serial output goes (fd, appended to; -1 the log). */
void mig_workload_set_serial(struct mig_workload *w, int fd);
/* Page writes so far, all vCPUs; any thread, any time. */
uint64_t mig_workload_progress(const struct mig_workload *w);
/* Snapshot of the execution state; every vCPU must be parked. */
void mig_workload_save(const struct mig_workload *w,
		       struct mig_workload_state *st);
/* Check the invariant over all RAM (vCPUs parked): 0 holds, -EBADMSG
 * broken; msg gets a one-line verdict either way. */
int mig_workload_verify(const struct mig_workload *w, char *msg, size_t len);
/* Write the next version of one page as its vCPU would (vCPUs parked):
 * dirty workload only. 0, or -EINVAL (another workload, page beyond RAM). */
int mig_workload_poke(struct mig_workload *w, uint64_t page);

#endif
