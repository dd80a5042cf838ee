// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: the migration stream as a destination reads it. The
 * input is the byte stream (hello, then messages), read with
 * mig_wire_recv() like the receive loop does; each payload goes to its
 * decoder, and every PAGES run the decoder accepts is applied to a guest
 * RAM buffer exactly that large (plain copy, zero fill, LZ4 expansion) and
 * followed by an inaccessible page, so that a run the decoder lets outside
 * guest RAM faults even where ASan does not look (inside liblz4).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/compress.h"
#include "core/wire.h"
#include "frames.h"

/* Guest RAM for the run: small, so that a RAM_INFO may shrink it. */
#define FUZZ_RAM_BYTES (64u * 4096u)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *ram_buf;

static void apply_pages(const struct mig_pages *p, uint8_t *ram)
{
	size_t bytes = (size_t)p->npages * 4096u;

	if (p->flags & MIG_PAGES_ZERO)
		memset(ram + p->offset, 0, bytes);
	else if (p->flags & MIG_PAGES_LZ4)
		(void)mig_decompress(p->data, p->datalen, ram + p->offset, bytes);
	else
		memcpy(ram + p->offset, p->data, bytes);
}

static void decode(uint32_t type, const uint8_t *pl, uint32_t len, void *ctx)
{
	uint64_t *ram_bytes = ctx;

	struct mig_hello h;
	struct mig_refuse rf;
	struct mig_ram_info ri;
	struct mig_pages p;
	struct mig_req rq;
	uint64_t v;

	switch (type) {
	case MIG_MSG_HELLO:
		(void)mig_wire_dec_hello(pl, len, &h);
		break;
	case MIG_MSG_REFUSE:
		if (mig_wire_dec_refuse(pl, len, &rf) == 0 &&
		    strlen(rf.reason) != len - 4)
			abort(); /* the reason is all the payload, NUL-free */
		break;
	case MIG_MSG_RAM_INFO:
		/* the guest RAM the peer announces, if it fits our buffer */
		if (mig_wire_dec_ram_info(pl, len, &ri) == 0 &&
		    ri.ram_bytes <= FUZZ_RAM_BYTES)
			*ram_bytes = ri.ram_bytes;
		break;
	case MIG_MSG_PAGES:
		if (mig_wire_dec_pages(pl, len, *ram_bytes, &p) == 0)
			apply_pages(&p, ram_buf + FUZZ_RAM_BYTES - *ram_bytes);
		break;
	case MIG_MSG_DISCARD:
		if (mig_wire_dec_req(pl, len, *ram_bytes, &rq) == 0)
			memset(ram_buf + FUZZ_RAM_BYTES - *ram_bytes + rq.offset,
			       0, (size_t)rq.npages * 4096u);
		break;
	case MIG_MSG_PING:
	case MIG_MSG_PONG:
		(void)mig_wire_dec_u64(pl, len, &v);
		break;
	default: /* SWITCHOVER's blob is the workload's; the rest are empty */
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t ram_bytes = FUZZ_RAM_BYTES;

	if (!ram_buf) {
		/* RAM ends at the guard page (a smaller one announced by
		 * RAM_INFO too), so a write past its end faults */
		ram_buf = mmap(NULL, FUZZ_RAM_BYTES + 4096u, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (ram_buf == MAP_FAILED ||
		    mprotect(ram_buf + FUZZ_RAM_BYTES, 4096u, PROT_NONE) < 0)
			abort();
	}
	fuzz_frames(data, size, decode, &ram_bytes);
	return 0;
}
