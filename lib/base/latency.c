// SPDX-License-Identifier: MIT
/* Latency histogram: see latency.h. */
#include <pthread.h>
#include <stdlib.h>

#include "base/latency.h"

#define SUB_BITS 3                  /* 8 sub-buckets per power of two */
#define NBUCKETS (64 << SUB_BITS)

struct mig_latency {
	pthread_mutex_t lock;
	uint64_t count, sum, max;
	uint64_t bucket[NBUCKETS];
};

static unsigned bucket_of(uint64_t v)
{
	unsigned msb;

	if (v < (1u << SUB_BITS))
		return (unsigned)v;
	msb = 63 - __builtin_clzll(v);
	return ((msb - SUB_BITS + 1) << SUB_BITS) |
	       (unsigned)((v >> (msb - SUB_BITS)) & ((1u << SUB_BITS) - 1));
}

/* Middle of a bucket's range, for reporting. */
static uint64_t bucket_value(unsigned b)
{
	unsigned shift;
	uint64_t lo;

	if (b < (1u << SUB_BITS))
		return b;
	shift = (b >> SUB_BITS) - 1;
	lo = ((uint64_t)((1u << SUB_BITS) | (b & ((1u << SUB_BITS) - 1)))) << shift;
	return lo + ((1ull << shift) >> 1);
}

struct mig_latency *mig_latency_new(void)
{
	struct mig_latency *l = calloc(1, sizeof(*l));

	if (l)
		pthread_mutex_init(&l->lock, NULL);
	return l;
}

void mig_latency_free(struct mig_latency *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->lock);
	free(l);
}

void mig_latency_add(struct mig_latency *l, uint64_t ns)
{
	pthread_mutex_lock(&l->lock);
	l->count++;
	l->sum += ns;
	if (ns > l->max)
		l->max = ns;
	l->bucket[bucket_of(ns)]++;
	pthread_mutex_unlock(&l->lock);
}

static uint64_t quantile_locked(struct mig_latency *l, double q)
{
	uint64_t want = (uint64_t)(q * (double)l->count), seen = 0;

	if (!l->count)
		return 0;
	if (want >= l->count)
		want = l->count - 1;
	for (unsigned b = 0; b < NBUCKETS; b++) {
		seen += l->bucket[b];
		if (seen > want) {
			uint64_t v = bucket_value(b);

			return v > l->max ? l->max : v;
		}
	}
	return l->max;
}

void mig_latency_summary(struct mig_latency *l, struct mig_latency_summary *s)
{
	pthread_mutex_lock(&l->lock);
	s->count = l->count;
	s->sum_ns = l->sum;
	s->max_ns = l->max;
	s->p50_ns = quantile_locked(l, 0.50);
	s->p90_ns = quantile_locked(l, 0.90);
	s->p99_ns = quantile_locked(l, 0.99);
	pthread_mutex_unlock(&l->lock);
}
