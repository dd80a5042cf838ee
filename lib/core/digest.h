/* SPDX-License-Identifier: MIT */
/*
 * A fast 64-bit digest of guest RAM, page by page in order: the source
 * engine takes it at switchover and the destination guest (DIGEST on its
 * control socket) once every page has arrived; equal digests say the RAM
 * arrived whole. Defined here once so both sides compute the same value.
 * Not cryptographic: it catches lost, stale, torn and misplaced pages, not
 * an adversary.
 */
#ifndef MIG_DIGEST_H
#define MIG_DIGEST_H

#include <stdint.h>

/* Incremental form, for callers that walk RAM in pieces (and skip holes
 * with mig_digest_zero instead of reading them). Feeding the same pages in
 * the same order gives the same value as mig_digest(), however cut up. */
struct mig_digest_ctx {
	uint64_t lane[4];
	uint64_t npages;
};

void mig_digest_init(struct mig_digest_ctx *c);
/* npages whole 4 KiB pages at pages (any alignment). */
void mig_digest_update(struct mig_digest_ctx *c, const void *pages,
		       uint64_t npages);
/* npages zero pages, without reading memory: a memfd hole digests like
 * the zero page it reads as. */
void mig_digest_zero(struct mig_digest_ctx *c, uint64_t npages);
uint64_t mig_digest_final(const struct mig_digest_ctx *c);

/* The digest of npages pages at ram, in one call. */
uint64_t mig_digest(const void *ram, uint64_t npages);

#endif
