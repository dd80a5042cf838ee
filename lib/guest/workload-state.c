// SPDX-License-Identifier: MIT
/*
 * The workload state blob: everything a migration carries besides RAM,
 * versioned, checksummed and of exact length, decoded only after every
 * length and bound is checked (it comes from another host).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/bytes.h"
#include "guest/workload-int.h"
#include "guest/workload.h"

/* Blob layout, little-endian: magic u32, version u16, workload id u16,
 * total length u32, vcpus u32, ram_bytes u64, spec length u32, spec bytes,
 * vcpus x the workload's per-vCPU record (u64 words: ab and idle the
 * cursor; dirty the cursor, RNG state and token-bucket bytes; kvm the
 * cursor, pass characters written and 1 once booted), then for kvm its
 * machine section (length u32, the vCPUs' records of kvm.h one after the
 * other), FNV-1a u32 over everything before it. */
#define STATE_MAGIC 0x5347494du /* "MIGS" */
#define STATE_VERSION 1u
#define STATE_HDR_BYTES 28u
#define STATE_SUM_BYTES 4u

#define MACHINE_HDR_BYTES 4u

/* vCPU i's per-vCPU words, in blob order. */
static void words_get(const struct mig_workload_state *st, unsigned i,
		      uint64_t rec[3])
{
	rec[0] = st->cursor[i];
	if (st->spec.id == MIG_WORKLOAD_KVM) {
		rec[1] = st->passes[i];
		rec[2] = st->booted[i];
	} else {
		rec[1] = st->rng[i];
		rec[2] = st->tokens[i];
	}
}

static bool words_set(struct mig_workload_state *st, unsigned i,
		      const uint8_t *p, unsigned words)
{
	uint64_t w[3] = { 0, 0, 0 };

	for (unsigned k = 0; k < words; k++)
		w[k] = mig_get_le64(p + 8 * k);
	st->cursor[i] = w[0];
	if (st->spec.id != MIG_WORKLOAD_KVM) {
		st->rng[i] = w[1];
		st->tokens[i] = w[2];
		return true;
	}
	st->passes[i] = w[1];
	st->booted[i] = w[2] == 1;
	return w[2] <= 1;
}

static uint32_t fnv1a(const uint8_t *p, size_t len)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

int mig_workload_state_encode(const struct mig_workload_state *st,
			      uint8_t **blob, size_t *len)
{
	size_t slen = strnlen(st->spec.text, MIG_WORKLOAD_SPEC_MAX);
	const struct workload_ops *ops;
	size_t n, off;
	unsigned words;
	uint8_t *b;

	if (!workload_state_valid(st) || !slen || slen >= MIG_WORKLOAD_SPEC_MAX)
		return -EINVAL;
	ops = workload_ops_by_id(st->spec.id);
	words = ops->state_words;
	n = STATE_HDR_BYTES + slen + 8 * (size_t)words * st->vcpus +
	    (ops->has_machine ? MACHINE_HDR_BYTES + st->machine_len : 0) +
	    STATE_SUM_BYTES;
	if (n > MIG_WORKLOAD_MAX_STATE_BYTES)
		return -EINVAL;
	b = malloc(n);
	if (!b)
		return -ENOMEM;
	mig_put_le32(b, STATE_MAGIC);
	mig_put_le16(b + 4, STATE_VERSION);
	mig_put_le16(b + 6, (uint16_t)st->spec.id);
	mig_put_le32(b + 8, (uint32_t)n);
	mig_put_le32(b + 12, st->vcpus);
	mig_put_le64(b + 16, st->ram_bytes);
	mig_put_le32(b + 24, (uint32_t)slen);
	memcpy(b + STATE_HDR_BYTES, st->spec.text, slen);
	off = STATE_HDR_BYTES + slen;
	for (unsigned i = 0; i < st->vcpus; i++) {
		uint64_t rec[3];

		words_get(st, i, rec);
		for (unsigned k = 0; k < words; k++, off += 8)
			mig_put_le64(b + off, rec[k]);
	}
	if (ops->has_machine) {
		mig_put_le32(b + off, (uint32_t)st->machine_len);
		if (st->machine_len)
			memcpy(b + off + MACHINE_HDR_BYTES, st->machine, st->machine_len);
		off += MACHINE_HDR_BYTES + st->machine_len;
	}
	mig_put_le32(b + off, fnv1a(b, off));
	*blob = b;
	*len = n;
	return 0;
}

/* The fixed header: framing only, nothing about the contents yet. */
static int decode_header(const uint8_t *b, size_t len, uint64_t ram_bytes,
			 unsigned *vcpus, size_t *slen, unsigned *words)
{
	const struct workload_ops *ops;
	uint32_t v, s;
	size_t fixed;

	if (len < STATE_HDR_BYTES + STATE_SUM_BYTES ||
	    len > MIG_WORKLOAD_MAX_STATE_BYTES)
		return -EBADMSG;
	if (mig_get_le32(b) != STATE_MAGIC || mig_get_le16(b + 4) != STATE_VERSION)
		return -EBADMSG;
	if (mig_get_le32(b + 8) != len || mig_get_le64(b + 16) != ram_bytes)
		return -EBADMSG;
	v = mig_get_le32(b + 12);
	s = mig_get_le32(b + 24);
	ops = workload_ops_by_id((enum mig_workload_id)mig_get_le16(b + 6));
	if (!ops || !v || v > MIG_WORKLOAD_MAX_VCPUS || !s ||
	    s >= MIG_WORKLOAD_SPEC_MAX)
		return -EBADMSG;
	fixed = STATE_HDR_BYTES + s + 8u * ops->state_words * v + STATE_SUM_BYTES;
	if (ops->has_machine)
		fixed = len < fixed + MACHINE_HDR_BYTES ? 0 : fixed + MACHINE_HDR_BYTES +
			mig_get_le32(b + fixed - STATE_SUM_BYTES);
	if (fixed != len)
		return -EBADMSG;
	if (mig_get_le32(b + len - STATE_SUM_BYTES) != fnv1a(b, len - STATE_SUM_BYTES))
		return -EBADMSG;
	*vcpus = v;
	*slen = s;
	*words = ops->state_words;
	return 0;
}

int mig_workload_state_decode(const uint8_t *b, size_t len,
			      uint64_t ram_bytes, struct mig_workload_state *st)
{
	char text[MIG_WORKLOAD_SPEC_MAX];
	unsigned vcpus, words;
	size_t slen;
	const uint8_t *rec;

	if (!b || decode_header(b, len, ram_bytes, &vcpus, &slen, &words) < 0)
		return -EBADMSG;
	memcpy(text, b + STATE_HDR_BYTES, slen);
	text[slen] = '\0';
	memset(st, 0, sizeof(*st));
	if (strlen(text) != slen || mig_workload_parse(text, &st->spec) < 0 ||
	    (unsigned)st->spec.id != mig_get_le16(b + 6))
		return -EBADMSG;
	st->ram_bytes = ram_bytes;
	st->vcpus = vcpus;
	rec = b + STATE_HDR_BYTES + slen;
	for (unsigned i = 0; i < vcpus; i++, rec += 8 * words)
		if (!words_set(st, i, rec, words))
			return -EBADMSG;
	if (workload_ops_by_id(st->spec.id)->has_machine) {
		st->machine_len = mig_get_le32(rec);
		st->machine = rec + MACHINE_HDR_BYTES;
	}
	return workload_state_valid(st) ? 0 : -EBADMSG;
}
