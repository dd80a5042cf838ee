// SPDX-License-Identifier: MIT
/*
 * Guest workloads: see workload.h. A workload is a table of operations
 * (workload-int.h); adding one (the `dirty` benchmark writer) means one
 * more file with its own param/fill/run/verify, one more table entry here,
 * and its execution state in the cursors. This file parses specs, lays out
 * the vCPUs' slices and runs a workload over RAM.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "guest/workload-int.h"
#include "guest/workload.h"

static const struct workload_ops *const workloads[] = {
	&workload_ab, &workload_idle, &workload_dirty, &workload_kvm,
};

static const struct workload_ops *ops_by_name(const char *name, size_t len)
{
	for (size_t i = 0; i < MIG_ARRAY_SIZE(workloads); i++)
		if (strlen(workloads[i]->name) == len &&
		    !memcmp(workloads[i]->name, name, len))
			return workloads[i];
	return NULL;
}

const struct workload_ops *workload_ops_by_id(enum mig_workload_id id)
{
	for (size_t i = 0; i < MIG_ARRAY_SIZE(workloads); i++)
		if (workloads[i]->id == id)
			return workloads[i];
	return NULL;
}

const char *mig_workload_names(void)
{
	return "ab, idle, dirty, kvm";
}

static bool key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
	       c == '_';
}

static bool val_char(char c)
{
	return key_char(c) || (c >= 'A' && c <= 'Z') || c == '.';
}

/* One "k=v" token of length len: checked, then handed to the workload. */
static int parse_param(const struct workload_ops *ops,
		       struct mig_workload_spec *spec, const char *tok,
		       size_t len)
{
	char key[MIG_WORKLOAD_SPEC_MAX], val[MIG_WORKLOAD_SPEC_MAX];
	const char *eq = memchr(tok, '=', len);
	size_t klen, vlen;

	if (!eq)
		return -EINVAL;
	klen = eq - tok;
	vlen = len - klen - 1;
	if (!klen || !vlen)
		return -EINVAL;
	for (size_t i = 0; i < klen; i++)
		if (!key_char(tok[i]))
			return -EINVAL;
	for (size_t i = 0; i < vlen; i++)
		if (!val_char(eq[1 + i]))
			return -EINVAL;
	memcpy(key, tok, klen);
	key[klen] = '\0';
	memcpy(val, eq + 1, vlen);
	val[vlen] = '\0';
	return ops->param ? ops->param(spec, key, val) : -EINVAL;
}

int mig_workload_parse(const char *text, struct mig_workload_spec *spec)
{
	size_t len = text ? strlen(text) : 0;
	const char *colon, *p;
	const struct workload_ops *ops;

	if (!len || len >= MIG_WORKLOAD_SPEC_MAX)
		return -EINVAL;
	colon = strchr(text, ':');
	ops = ops_by_name(text, colon ? (size_t)(colon - text) : len);
	if (!ops)
		return -EINVAL;
	memset(spec, 0, sizeof(*spec));
	spec->id = ops->id;
	if (ops->id == MIG_WORKLOAD_DIRTY)
		spec->hot_pct = MIG_WORKLOAD_HOT_PCT;
	for (p = colon; p; ) {
		const char *tok = p + 1, *comma = strchr(tok, ',');
		size_t tlen = comma ? (size_t)(comma - tok) : strlen(tok);
		int r = parse_param(ops, spec, tok, tlen);

		if (r < 0)
			return r;
		p = comma;
	}
	memcpy(spec->text, text, len + 1);
	return 0;
}

void mig_workload_slice(uint64_t ram_bytes, unsigned vcpus, unsigned i,
			uint64_t *first, uint64_t *len)
{
	uint64_t pages = ram_bytes / MIG_PAGE_SIZE;
	/* pages <= 2^28 and vcpus <= 64: the products never overflow */
	uint64_t a = pages * i / vcpus, b = pages * (i + 1) / vcpus;

	*first = a;
	*len = b - a;
}

void mig_workload_state_init(struct mig_workload_state *st,
			     const struct mig_workload_spec *spec,
			     uint64_t ram_bytes, unsigned vcpus)
{
	uint64_t pages = ram_bytes / MIG_PAGE_SIZE;

	memset(st, 0, sizeof(*st));
	st->spec = *spec;
	st->ram_bytes = ram_bytes;
	vcpus = MIG_MAX(vcpus, 1u);
	vcpus = MIG_MIN(vcpus, MIG_WORKLOAD_MAX_VCPUS);
	if (pages && vcpus > pages)
		vcpus = (unsigned)pages;
	st->vcpus = vcpus;
	if (spec->id != MIG_WORKLOAD_DIRTY)
		return;
	/* fixed seeds: a benchmark run is repeatable */
	for (unsigned i = 0; i < vcpus; i++)
		st->rng[i] = (i + 1) * SPLITMIX_M2;
}

void workload_slice(const struct mig_workload_state *st, unsigned i,
		    uint64_t *first, uint64_t *len)
{
	const struct workload_ops *ops = workload_ops_by_id(st->spec.id);

	(ops && ops->slice ? ops->slice : mig_workload_slice)(st->ram_bytes,
							       st->vcpus, i, first, len);
}

bool workload_state_valid(const struct mig_workload_state *st)
{
	const struct workload_ops *ops = workload_ops_by_id(st->spec.id);
	uint64_t pages = st->ram_bytes / MIG_PAGE_SIZE;

	if (!st->ram_bytes || st->ram_bytes % MIG_PAGE_SIZE ||
	    st->ram_bytes > MIG_WORKLOAD_MAX_RAM_BYTES)
		return false;
	if (!st->vcpus || st->vcpus > MIG_WORKLOAD_MAX_VCPUS ||
	    st->vcpus > pages || !ops)
		return false;
	if (ops->state_valid && !ops->state_valid(st))
		return false;
	for (unsigned i = 0; i < st->vcpus; i++) {
		uint64_t first, len;

		workload_slice(st, i, &first, &len);
		if (st->cursor[i] >= len)
			return false;
		if (st->spec.id == MIG_WORKLOAD_DIRTY &&
		    st->tokens[i] > mig_workload_bucket_bytes(&st->spec, st->vcpus))
			return false;
	}
	return true;
}

struct mig_workload *mig_workload_new(const struct mig_workload_state *st,
				      uint8_t *ram, const char **why)
{
	struct mig_workload *w;
	const char *dummy;

	if (!why)
		why = &dummy;
	*why = NULL;
	if (!workload_state_valid(st) || !ram) {
		errno = EINVAL;
		return NULL;
	}
	/* aligned: the per-vCPU counters each own a cache line */
	w = aligned_alloc(64, (sizeof(*w) + 63) & ~(size_t)63);
	if (!w)
		return NULL;
	memset(w, 0, sizeof(*w));
	w->ops = workload_ops_by_id(st->spec.id);
	w->st = *st;
	w->ram = ram;
	if (w->ops->open && w->ops->open(w, why) < 0) {
		int e = errno;

		free(w);
		errno = e;
		return NULL;
	}
	return w;
}

void mig_workload_free(struct mig_workload *w)
{
	if (w && w->ops->close)
		w->ops->close(w);
	free(w);
}

void mig_workload_kick(struct mig_workload *w)
{
	if (w && w->ops->kick)
		w->ops->kick(w);
}

void mig_workload_set_serial(struct mig_workload *w, int fd)
{
	if (w->ops->set_serial)
		w->ops->set_serial(w, fd);
}

void mig_workload_fill(struct mig_workload *w)
{
	if (w->ops->fill)
		w->ops->fill(w);
}

unsigned mig_workload_threads(const struct mig_workload *w)
{
	return w->ops->run ? w->st.vcpus : 0;
}

unsigned mig_workload_vcpus(const struct mig_workload *w)
{
	return w->st.vcpus;
}

const char *mig_workload_spec_text(const struct mig_workload *w)
{
	return w->st.spec.text;
}

void mig_workload_run(struct mig_workload *w, unsigned i,
		      const atomic_bool *stop)
{
	if (w->ops->run && i < w->st.vcpus)
		w->ops->run(w, i, stop);
}

uint64_t mig_workload_progress(const struct mig_workload *w)
{
	uint64_t sum = 0;

	if (w->ops->progress)
		return w->ops->progress(w);
	for (unsigned i = 0; i < w->st.vcpus; i++)
		sum += atomic_load_explicit(&w->count[i].writes,
					    memory_order_relaxed);
	return sum;
}

void mig_workload_save(const struct mig_workload *w,
		       struct mig_workload_state *st)
{
	*st = w->st;
}

int mig_workload_verify(const struct mig_workload *w, char *msg, size_t len)
{
	return w->ops->verify(w, msg, len);
}
