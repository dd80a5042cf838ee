// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: the workload state blob (workload.h), which a
 * destination decodes from another host, the kvm workload's machine
 * section included. The input's length field and checksum are made good
 * first, so that mutations reach what lies behind them rather than the
 * checksum; the RAM size is the one the blob names, as a guest of that
 * size would see it. A blob that decodes must encode again, and that
 * encoding decode to the same vCPU count and machine section.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/bytes.h"
#include "guest/workload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t fnv1a(const uint8_t *p, size_t len)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mig_workload_state st, again;
	uint8_t *b, *out = NULL;
	size_t len = 0;

	if (size < 32 || size > MIG_WORKLOAD_MAX_STATE_BYTES)
		return 0;
	b = malloc(size);
	if (!b)
		return 0;
	memcpy(b, data, size);
	mig_put_le32(b + 8, (uint32_t)size);
	mig_put_le32(b + size - 4, fnv1a(b, size - 4));
	if (mig_workload_state_decode(b, size, mig_get_le64(b + 16), &st) == 0) {
		if (mig_workload_state_encode(&st, &out, &len) < 0 ||
		    mig_workload_state_decode(out, len, st.ram_bytes, &again) < 0 ||
		    again.vcpus != st.vcpus || again.machine_len != st.machine_len ||
		    (st.machine_len && memcmp(again.machine, st.machine, st.machine_len)))
			abort();
		free(out);
	}
	free(b);
	return 0;
}
