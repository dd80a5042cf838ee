// SPDX-License-Identifier: MIT
/*
 * RAM digest: see digest.h. Four independent lanes take the page's 64-bit
 * little-endian words in turn (word k goes to lane k % 4), each lane doing
 * h = rotl((h ^ w) * odd, 31): a bijection of h for a fixed word and of the
 * word for a fixed h, so any single changed word always changes its lane,
 * and the lanes' chains are independent so the CPU overlaps them (~15 GB/s
 * where one chain would be limited by the multiply latency). Pages are
 * whole 4 KiB, so every page feeds every lane 128 words.
 */

#include "base/bytes.h"
#include "core/digest.h"
#include "base/util.h"

/* Odd multipliers (golden ratio, and the xxHash/murmur primes): they
 * spread each bit of a word over the higher bits of the lane. */
#define MUL 0x9e3779b97f4a7c15ull
#define FMIX1 0xff51afd7ed558ccdull
#define FMIX2 0xc4ceb9fe1a85ec53ull
#define ROT 31
#define PAGE_WORDS (MIG_PAGE_SIZE / 8u)

static inline uint64_t rotl(uint64_t x, unsigned r)
{
	return x << r | x >> (64 - r);
}

static inline uint64_t step(uint64_t h, uint64_t w)
{
	return rotl((h ^ w) * MUL, ROT);
}

static uint64_t fmix(uint64_t h)
{
	h ^= h >> 33;
	h *= FMIX1;
	h ^= h >> 33;
	h *= FMIX2;
	h ^= h >> 33;
	return h;
}

void mig_digest_init(struct mig_digest_ctx *c)
{
	/* distinct starting points: lanes fed the same words still differ */
	c->lane[0] = 0x6d69672d64696731ull; /* "mig-dig1" */
	c->lane[1] = 0x6d69672d64696732ull;
	c->lane[2] = 0x6d69672d64696733ull;
	c->lane[3] = 0x6d69672d64696734ull;
	c->npages = 0;
}

void mig_digest_update(struct mig_digest_ctx *c, const void *pages,
		       uint64_t npages)
{
	const uint8_t *p = pages;
	uint64_t a = c->lane[0], b = c->lane[1], d = c->lane[2], e = c->lane[3];
	uint64_t nblocks = npages * (MIG_PAGE_SIZE / 32u);

	for (uint64_t i = 0; i < nblocks; i++, p += 32) {
		a = step(a, mig_get_le64(p));
		b = step(b, mig_get_le64(p + 8));
		d = step(d, mig_get_le64(p + 16));
		e = step(e, mig_get_le64(p + 24));
	}
	c->lane[0] = a;
	c->lane[1] = b;
	c->lane[2] = d;
	c->lane[3] = e;
	c->npages += npages;
}

void mig_digest_zero(struct mig_digest_ctx *c, uint64_t npages)
{
	uint64_t nsteps = npages * (PAGE_WORDS / 4u);

	for (int l = 0; l < 4; l++) {
		uint64_t h = c->lane[l];

		for (uint64_t i = 0; i < nsteps; i++)
			h = step(h, 0);
		c->lane[l] = h;
	}
	c->npages += npages;
}

uint64_t mig_digest_final(const struct mig_digest_ctx *c)
{
	uint64_t h = fmix(c->lane[0]);

	/* order the lanes too: swapping two lanes' words must show */
	h = step(h, fmix(c->lane[1]));
	h = step(h, fmix(c->lane[2]));
	h = step(h, fmix(c->lane[3]));
	return fmix(h ^ c->npages);
}

uint64_t mig_digest(const void *ram, uint64_t npages)
{
	struct mig_digest_ctx c;

	mig_digest_init(&c);
	mig_digest_update(&c, ram, npages);
	return mig_digest_final(&c);
}
