// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: the return path as the source reads it (page
 * requests, the received-pages bitmap of a recovery, acks, heartbeats).
 * Framed like fuzz-wire; each REQ run is touched in a RAM-sized buffer and
 * each BITMAP chunk's bits are applied to a bitmap of exactly the guest's
 * pages, so ASan catches anything a decoder lets past the guest's end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/wire.h"
#include "frames.h"

#define FUZZ_RAM_PAGES 100u /* not a multiple of 8: the last byte is partial */
#define FUZZ_RAM_BYTES (FUZZ_RAM_PAGES * 4096ull)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *ram_buf, *received_buf;

static void apply_bitmap(const struct mig_bitmap_chunk *c, uint8_t *received)
{
	for (uint32_t i = 0; i < c->nbits; i++) {
		uint64_t page = c->first_page + i;

		if (c->bits[i / 8] & (1u << (i % 8)))
			received[page] = 1;
	}
}

static void decode(uint32_t type, const uint8_t *pl, uint32_t len, void *ctx)
{
	uint8_t *ram = ram_buf, *received = received_buf;

	struct mig_req rq;
	struct mig_bitmap_chunk c;
	uint64_t v;

	switch (type) {
	case MIG_MSG_REQ:
		if (mig_wire_dec_req(pl, len, FUZZ_RAM_BYTES, &rq) == 0)
			memset(ram + rq.offset, 1, (size_t)rq.npages * 4096u);
		break;
	case MIG_MSG_BITMAP:
		if (mig_wire_dec_bitmap(pl, len, FUZZ_RAM_PAGES, &c) == 0)
			apply_bitmap(&c, received);
		break;
	case MIG_MSG_BITMAP_END:
	case MIG_MSG_PING:
	case MIG_MSG_PONG:
		(void)mig_wire_dec_u64(pl, len, &v);
		break;
	default: /* COMPLETE and RESUME_ACK are empty: the header said so */
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ram_buf) {
		ram_buf = malloc(FUZZ_RAM_BYTES);
		received_buf = malloc(FUZZ_RAM_PAGES);
		if (!ram_buf || !received_buf)
			abort();
	}
	fuzz_frames(data, size, decode, NULL);
	return 0;
}
