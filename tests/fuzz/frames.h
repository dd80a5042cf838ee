/* SPDX-License-Identifier: MIT */
/*
 * For the stream harnesses (fuzz-wire, fuzz-return-path): the input as a
 * byte stream, read message by message with mig_wire_recv() as the
 * engines' receive loops do, each payload handed on in a buffer exactly
 * its length, so that a decoder reading past it is caught by ASan.
 */
#ifndef MIG_FUZZ_FRAMES_H
#define MIG_FUZZ_FRAMES_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/wire.h"

typedef void (*fuzz_frame_fn)(uint32_t type, const uint8_t *pl, uint32_t len,
			      void *ctx);

static void fuzz_frames(const uint8_t *data, size_t size, fuzz_frame_fn fn,
			void *ctx)
{
	static uint8_t *payload;
	uint32_t type, len;
	int fd;

	if (!payload && !(payload = malloc(MIG_WIRE_MAX_PAYLOAD)))
		abort();
	fd = memfd_create("fuzz-frames", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	if (write(fd, data, size) != (ssize_t)size || lseek(fd, 0, SEEK_SET) != 0)
		abort();
	while (mig_wire_recv(fd, &type, payload, MIG_WIRE_MAX_PAYLOAD, &len) == 0) {
		uint8_t *pl = malloc(len ? len : 1);

		if (!pl)
			abort();
		memcpy(pl, payload, len);
		fn(type, pl, len, ctx);
		free(pl);
	}
	close(fd);
}

#endif
