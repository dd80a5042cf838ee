// SPDX-License-Identifier: MIT
/*
 * The idle workload: no vCPU activity, RAM holding a pattern written at
 * start that every page must still hold after a migration.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "base/bytes.h"
#include "base/util.h"
#include "guest/workload-int.h"
#include "guest/workload.h"

/* idle: first word of every non-zero page, then the page index. */
#define IDLE_MAGIC 0x4d49474944c3c3c3ull
/* idle: multiplier spreading page indexes over all 64 bits (golden ratio),
 * so neighbouring pages never share words. */
#define IDLE_MIX 0x9e3779b97f4a7c15ull
#define PAGE_WORDS (MIG_PAGE_SIZE / 8u)

/* Which pages idle leaves zero: by default every fourth, so that a
 * migration exercises its zero-page path; with data=PCT all but the first
 * PCT of each hundred, the sparse guest (a mostly empty VM) that zero-page
 * handling is measured on. */
static bool idle_zero(const struct mig_workload *w, uint64_t p)
{
	unsigned pct = w->st.spec.data_pct;

	return pct ? p % 100 >= pct : p % 4 == 3;
}

static int idle_param(struct mig_workload_spec *spec, const char *key,
		      const char *val)
{
	unsigned long v;

	if (strcmp(key, "data") || mig_parse_ulong(val, 1, 100, &v) < 0)
		return -EINVAL;
	spec->data_pct = (unsigned)v;
	return 0;
}

/* Word k of page p as idle writes it. */
static uint64_t idle_word(const struct mig_workload *w, uint64_t p, unsigned k)
{
	if (idle_zero(w, p))
		return 0;
	if (k == 0)
		return IDLE_MAGIC;
	if (k == 1)
		return p;
	return p * IDLE_MIX ^ k;
}

static void idle_fill(struct mig_workload *w)
{
	uint64_t pages = w->st.ram_bytes / MIG_PAGE_SIZE;

	for (uint64_t p = 0; p < pages; p++) {
		uint8_t *page = w->ram + p * MIG_PAGE_SIZE;

		if (idle_zero(w, p))
			continue; /* fresh memfd pages read as zero */
		for (unsigned k = 0; k < PAGE_WORDS; k++)
			mig_put_le64(page + 8 * k, idle_word(w, p, k));
	}
}

static int idle_verify(const struct mig_workload *w, char *msg, size_t len)
{
	uint64_t pages = w->st.ram_bytes / MIG_PAGE_SIZE;

	for (uint64_t p = 0; p < pages; p++) {
		const uint8_t *page = w->ram + p * MIG_PAGE_SIZE;

		for (unsigned k = 0; k < PAGE_WORDS; k++) {
			uint64_t got = mig_get_le64(page + 8 * k);

			if (got == idle_word(w, p, k))
				continue;
			snprintf(msg, len, "idle: page %" PRIu64 " word %u is"
				 " 0x%016" PRIx64 ", expected 0x%016" PRIx64
				 ": invariant broken", p, k, got,
				 idle_word(w, p, k));
			return -EBADMSG;
		}
	}
	snprintf(msg, len, "idle: invariant holds: %" PRIu64 " pages match",
		 pages);
	return 0;
}

const struct workload_ops workload_idle = {
	.name = "idle", .id = MIG_WORKLOAD_IDLE, .state_words = 1,
	.param = idle_param, .fill = idle_fill, .verify = idle_verify,
};
