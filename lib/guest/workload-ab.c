// SPDX-License-Identifier: MIT
/*
 * The ab workload: QEMU's migration-test guest. Each vCPU increments a u32
 * counter in every page of its slice in turn, so a parked guest's counters
 * read n+1 ... n+1 n ... n with the step at the vCPU's cursor.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "base/bytes.h"
#include "base/util.h"
#include "guest/workload-int.h"
#include "guest/workload.h"

/* Where a walk over one slice went wrong. */
struct ab_fault {
	uint64_t at;        /* first offending index */
	uint32_t val, prev; /* its counter and the one before */
	uint64_t step;      /* where the single step down is, or UINT64_MAX */
	bool cursor;        /* pattern fine, but the step is not at the cursor */
};

typedef uint32_t (*ab_get_fn)(const void *base, uint64_t i);

/*
 * The walk behind both the unit-tested array check and VERIFY over RAM.
 * Counters are u32 and compared modulo 2^32, so n+1 wrapping to 0 is still
 * "one more"; a lost page reads 0 and is at least two below its neighbours
 * once the guest has made two passes (in the first pass, 1 ... 1 0 ... 0 is
 * exactly the expected shape, and a lost page there is caught by the cursor).
 */
static int ab_walk(ab_get_fn get, const void *base, uint64_t n,
		   uint64_t cursor, struct ab_fault *f)
{
	uint32_t prev = n ? get(base, 0) : 0;

	f->step = UINT64_MAX;
	f->cursor = false;
	for (uint64_t j = 1; j < n; j++) {
		uint32_t v = get(base, j);

		if (v == prev)
			continue;
		if (v == prev - 1u && f->step == UINT64_MAX) {
			f->step = j;
			prev = v;
			continue;
		}
		f->at = j;
		f->val = v;
		f->prev = prev;
		return -EBADMSG;
	}
	if (cursor == MIG_WORKLOAD_NO_CURSOR)
		return 0;
	/* parked vCPU at cursor c: pages [0, c) hold n+1, [c, len) hold n */
	if (f->step == (cursor ? cursor : UINT64_MAX))
		return 0;
	f->cursor = true;
	f->at = f->step == UINT64_MAX ? 0 : MIG_MIN(f->step, cursor);
	return -EBADMSG;
}

static uint32_t array_get(const void *base, uint64_t i)
{
	return ((const uint32_t *)base)[i];
}

int mig_workload_ab_check(const uint32_t *counters, uint64_t n,
			  uint64_t cursor, uint64_t *bad)
{
	struct ab_fault f;
	int r = ab_walk(array_get, counters, n, cursor, &f);

	if (r < 0 && bad)
		*bad = f.at;
	return r;
}

static uint32_t ram_get(const void *base, uint64_t i)
{
	return mig_get_le32((const uint8_t *)base + i * MIG_PAGE_SIZE);
}

static void ab_run(struct mig_workload *w, unsigned i, const atomic_bool *stop)
{
	uint64_t first, len, cur = w->st.cursor[i];
	uint64_t done = atomic_load_explicit(&w->count[i].writes,
					     memory_order_relaxed);
	uint8_t *slice;

	mig_workload_slice(w->st.ram_bytes, w->st.vcpus, i, &first, &len);
	slice = w->ram + first * MIG_PAGE_SIZE;
	/* the stop check comes before each page, so a parked vCPU always sits
	 * between two whole increments: that is the consistent point */
	while (!atomic_load_explicit(stop, memory_order_relaxed)) {
		uint8_t *p = slice + cur * MIG_PAGE_SIZE;

		mig_put_le32(p, mig_get_le32(p) + 1u);
		cur = cur + 1 == len ? 0 : cur + 1;
		atomic_store_explicit(&w->count[i].writes, ++done,
				      memory_order_relaxed);
	}
	w->st.cursor[i] = cur;
}

int workload_ab_verify(const struct mig_workload *w, const char *name,
		       char *msg, size_t len)
{
	uint32_t lo = UINT32_MAX, hi = 0;

	for (unsigned i = 0; i < w->st.vcpus; i++) {
		uint64_t first, n;
		const uint8_t *slice;
		struct ab_fault f;

		workload_slice(&w->st, i, &first, &n);
		slice = w->ram + first * MIG_PAGE_SIZE;
		if (ab_walk(ram_get, slice, n, w->st.cursor[i], &f) == 0) {
			lo = MIG_MIN(lo, ram_get(slice, n - 1));
			hi = MIG_MAX(hi, ram_get(slice, 0));
			continue;
		}
		if (!f.cursor)
			snprintf(msg, len, "%s: vcpu %u: page %" PRIu64
				 " counter %" PRIu32 " after %" PRIu32
				 ": invariant broken", name, i, first + f.at, f.val,
				 f.prev);
		else if (f.step == UINT64_MAX)
			snprintf(msg, len, "%s: vcpu %u: counters all equal but"
				 " the vcpu is at page %" PRIu64
				 ": invariant broken (lost writes)", name, i,
				 first + w->st.cursor[i]);
		else
			snprintf(msg, len, "%s: vcpu %u: counters step down at"
				 " page %" PRIu64 " but the vcpu is at page %"
				 PRIu64 ": invariant broken (stale page)", name, i,
				 first + f.step, first + w->st.cursor[i]);
		return -EBADMSG;
	}
	snprintf(msg, len, "%s: invariant holds: %u vcpus, %" PRIu64
		 " pages, counters %" PRIu32 "..%" PRIu32, name, w->st.vcpus,
		 w->st.ram_bytes / MIG_PAGE_SIZE, lo, hi);
	return 0;
}

static int ab_verify(const struct mig_workload *w, char *msg, size_t len)
{
	return workload_ab_verify(w, "ab", msg, len);
}

const struct workload_ops workload_ab = {
	.name = "ab", .id = MIG_WORKLOAD_AB, .state_words = 1, .run = ab_run,
	.verify = ab_verify,
};
