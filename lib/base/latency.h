/* SPDX-License-Identifier: MIT */
/*
 * Page-request latency: a log-linear histogram (8 buckets per power of two,
 * so percentiles are within ~9%) that costs O(1) memory however many
 * requests a migration makes. Adds come from several threads.
 */
#ifndef MIG_LATENCY_H
#define MIG_LATENCY_H

#include <stdint.h>

struct mig_latency;

struct mig_latency_summary {
	uint64_t count;
	uint64_t sum_ns;  /* total time vCPUs waited on requested pages */
	uint64_t p50_ns, p90_ns, p99_ns, max_ns;
};

struct mig_latency *mig_latency_new(void);
void mig_latency_free(struct mig_latency *l);
void mig_latency_add(struct mig_latency *l, uint64_t ns);
void mig_latency_summary(struct mig_latency *l, struct mig_latency_summary *s);

#endif
