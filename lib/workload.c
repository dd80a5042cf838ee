// SPDX-License-Identifier: MIT
/*
 * Guest workloads: see workload.h. A workload is a table of operations;
 * adding one (the `dirty` benchmark writer) means one more table entry with
 * its own param/fill/run/verify, and its execution state in the cursors.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"
#include "workload.h"

/* Blob layout, little-endian: magic u32, version u16, workload id u16,
 * total length u32, vcpus u32, ram_bytes u64, spec length u32, spec bytes,
 * vcpus x u64 cursor, FNV-1a u32 over everything before it. */
#define STATE_MAGIC 0x5347494du /* "MIGS" */
#define STATE_VERSION 1u
#define STATE_HDR_BYTES 28u
#define STATE_SUM_BYTES 4u

/* idle: first word of every non-zero page, then the page index. */
#define IDLE_MAGIC 0x4d49474944c3c3c3ull
/* idle: multiplier spreading page indexes over all 64 bits (golden ratio),
 * so neighbouring pages never share words. */
#define IDLE_MIX 0x9e3779b97f4a7c15ull
#define PAGE_WORDS (MIG_PAGE_SIZE / 8u)

struct workload_ops {
	const char *name;
	enum mig_workload_id id;
	/* k=v from the spec; NULL: the workload takes none. */
	int (*param)(struct mig_workload_spec *spec, const char *key,
		     const char *val);
	void (*fill)(struct mig_workload *w);          /* NULL: RAM stays zero */
	void (*run)(struct mig_workload *w, unsigned i, const atomic_bool *stop);
	int (*verify)(const struct mig_workload *w, char *msg, size_t len);
};

/* One per vCPU, on its own cache line: vCPUs never share a written line. */
struct vcpu_count {
	_Atomic uint64_t writes;
	char pad[64 - sizeof(uint64_t)];
};

struct mig_workload {
	struct vcpu_count count[MIG_WORKLOAD_MAX_VCPUS];
	const struct workload_ops *ops;
	/* cursor[i] is vCPU i's own while it runs; others read it only when
	 * the vCPU is parked (the parking lock orders the accesses). */
	struct mig_workload_state st;
	uint8_t *ram;
};

static const struct workload_ops *ops_by_id(enum mig_workload_id id);

/* --- small pure helpers --------------------------------------------- */

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static uint32_t fnv1a(const uint8_t *p, size_t len)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

/* --- spec ------------------------------------------------------------- */

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

static const struct workload_ops *ops_by_name(const char *name, size_t len);

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

/* --- layout ----------------------------------------------------------- */

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
}

/* The limits a state must meet, whether built here or decoded. */
static bool state_valid(const struct mig_workload_state *st)
{
	uint64_t pages = st->ram_bytes / MIG_PAGE_SIZE;

	if (!st->ram_bytes || st->ram_bytes % MIG_PAGE_SIZE ||
	    st->ram_bytes > MIG_WORKLOAD_MAX_RAM_BYTES)
		return false;
	if (!st->vcpus || st->vcpus > MIG_WORKLOAD_MAX_VCPUS ||
	    st->vcpus > pages || !ops_by_id(st->spec.id))
		return false;
	for (unsigned i = 0; i < st->vcpus; i++) {
		uint64_t first, len;

		mig_workload_slice(st->ram_bytes, st->vcpus, i, &first, &len);
		if (st->cursor[i] >= len)
			return false;
	}
	return true;
}

/* --- state blob -------------------------------------------------------- */

int mig_workload_state_encode(const struct mig_workload_state *st,
			      uint8_t **blob, size_t *len)
{
	size_t slen = strnlen(st->spec.text, MIG_WORKLOAD_SPEC_MAX);
	size_t n, off;
	uint8_t *b;

	if (!state_valid(st) || !slen || slen >= MIG_WORKLOAD_SPEC_MAX)
		return -EINVAL;
	n = STATE_HDR_BYTES + slen + 8 * (size_t)st->vcpus + STATE_SUM_BYTES;
	b = malloc(n);
	if (!b)
		return -ENOMEM;
	put_le32(b, STATE_MAGIC);
	b[4] = STATE_VERSION & 0xff;
	b[5] = STATE_VERSION >> 8;
	b[6] = (uint8_t)st->spec.id;
	b[7] = (uint8_t)((unsigned)st->spec.id >> 8);
	put_le32(b + 8, (uint32_t)n);
	put_le32(b + 12, st->vcpus);
	put_le64(b + 16, st->ram_bytes);
	put_le32(b + 24, (uint32_t)slen);
	memcpy(b + STATE_HDR_BYTES, st->spec.text, slen);
	off = STATE_HDR_BYTES + slen;
	for (unsigned i = 0; i < st->vcpus; i++, off += 8)
		put_le64(b + off, st->cursor[i]);
	put_le32(b + off, fnv1a(b, off));
	*blob = b;
	*len = n;
	return 0;
}

/* The fixed header: framing only, nothing about the contents yet. */
static int decode_header(const uint8_t *b, size_t len, uint64_t ram_bytes,
			 unsigned *vcpus, size_t *slen)
{
	uint32_t v, s;

	if (len < STATE_HDR_BYTES + STATE_SUM_BYTES ||
	    len > MIG_WORKLOAD_MAX_STATE_BYTES)
		return -EBADMSG;
	if (get_le32(b) != STATE_MAGIC || (b[4] | b[5] << 8) != STATE_VERSION)
		return -EBADMSG;
	if (get_le32(b + 8) != len || get_le64(b + 16) != ram_bytes)
		return -EBADMSG;
	v = get_le32(b + 12);
	s = get_le32(b + 24);
	if (!v || v > MIG_WORKLOAD_MAX_VCPUS || !s || s >= MIG_WORKLOAD_SPEC_MAX)
		return -EBADMSG;
	if (STATE_HDR_BYTES + s + 8u * v + STATE_SUM_BYTES != len)
		return -EBADMSG;
	if (get_le32(b + len - STATE_SUM_BYTES) != fnv1a(b, len - STATE_SUM_BYTES))
		return -EBADMSG;
	*vcpus = v;
	*slen = s;
	return 0;
}

int mig_workload_state_decode(const uint8_t *b, size_t len,
			      uint64_t ram_bytes, struct mig_workload_state *st)
{
	char text[MIG_WORKLOAD_SPEC_MAX];
	unsigned vcpus;
	size_t slen;

	if (!b || decode_header(b, len, ram_bytes, &vcpus, &slen) < 0)
		return -EBADMSG;
	memcpy(text, b + STATE_HDR_BYTES, slen);
	text[slen] = '\0';
	memset(st, 0, sizeof(*st));
	if (strlen(text) != slen || mig_workload_parse(text, &st->spec) < 0 ||
	    (unsigned)st->spec.id != (unsigned)(b[6] | b[7] << 8))
		return -EBADMSG;
	st->ram_bytes = ram_bytes;
	st->vcpus = vcpus;
	for (unsigned i = 0; i < vcpus; i++)
		st->cursor[i] = get_le64(b + STATE_HDR_BYTES + slen + 8 * i);
	return state_valid(st) ? 0 : -EBADMSG;
}

/* --- ab ---------------------------------------------------------------- */

/* Where a walk over one slice went wrong. */
struct ab_fault {
	uint64_t at;        /* first offending index */
	uint32_t val, prev; /* its counter and the one before */
	uint64_t step;      /* where the single step down is, or UINT64_MAX */
	bool cursor;        /* pattern fine, but the step is not at the cursor */
};

typedef uint32_t (*ab_get_fn)(const void *base, uint64_t i);

/*
 * The walk behind both the unit-tested array check and VERIFY over RAM.
 * Counters are u32 and compared modulo 2^32, so n+1 wrapping to 0 is still
 * "one more"; a lost page reads 0 and is at least two below its neighbours
 * once the guest has made two passes (in the first pass, 1 ... 1 0 ... 0 is
 * exactly the expected shape, and a lost page there is caught by the cursor).
 */
static int ab_walk(ab_get_fn get, const void *base, uint64_t n,
		   uint64_t cursor, struct ab_fault *f)
{
	uint32_t prev = n ? get(base, 0) : 0;

	f->step = UINT64_MAX;
	f->cursor = false;
	for (uint64_t j = 1; j < n; j++) {
		uint32_t v = get(base, j);

		if (v == prev)
			continue;
		if (v == prev - 1u && f->step == UINT64_MAX) {
			f->step = j;
			prev = v;
			continue;
		}
		f->at = j;
		f->val = v;
		f->prev = prev;
		return -EBADMSG;
	}
	if (cursor == MIG_WORKLOAD_NO_CURSOR)
		return 0;
	/* parked vCPU at cursor c: pages [0, c) hold n+1, [c, len) hold n */
	if (f->step == (cursor ? cursor : UINT64_MAX))
		return 0;
	f->cursor = true;
	f->at = f->step == UINT64_MAX ? 0 : MIG_MIN(f->step, cursor);
	return -EBADMSG;
}

static uint32_t array_get(const void *base, uint64_t i)
{
	return ((const uint32_t *)base)[i];
}

int mig_workload_ab_check(const uint32_t *counters, uint64_t n,
			  uint64_t cursor, uint64_t *bad)
{
	struct ab_fault f;
	int r = ab_walk(array_get, counters, n, cursor, &f);

	if (r < 0 && bad)
		*bad = f.at;
	return r;
}

static uint32_t ram_get(const void *base, uint64_t i)
{
	return get_le32((const uint8_t *)base + i * MIG_PAGE_SIZE);
}

static void ab_run(struct mig_workload *w, unsigned i, const atomic_bool *stop)
{
	uint64_t first, len, cur = w->st.cursor[i];
	uint64_t done = atomic_load_explicit(&w->count[i].writes,
					     memory_order_relaxed);
	uint8_t *slice;

	mig_workload_slice(w->st.ram_bytes, w->st.vcpus, i, &first, &len);
	slice = w->ram + first * MIG_PAGE_SIZE;
	/* the stop check comes before each page, so a parked vCPU always sits
	 * between two whole increments: that is the consistent point */
	while (!atomic_load_explicit(stop, memory_order_relaxed)) {
		uint8_t *p = slice + cur * MIG_PAGE_SIZE;

		put_le32(p, get_le32(p) + 1u);
		cur = cur + 1 == len ? 0 : cur + 1;
		atomic_store_explicit(&w->count[i].writes, ++done,
				      memory_order_relaxed);
	}
	w->st.cursor[i] = cur;
}

static int ab_verify(const struct mig_workload *w, char *msg, size_t len)
{
	uint32_t lo = UINT32_MAX, hi = 0;

	for (unsigned i = 0; i < w->st.vcpus; i++) {
		uint64_t first, n;
		const uint8_t *slice;
		struct ab_fault f;

		mig_workload_slice(w->st.ram_bytes, w->st.vcpus, i, &first, &n);
		slice = w->ram + first * MIG_PAGE_SIZE;
		if (ab_walk(ram_get, slice, n, w->st.cursor[i], &f) == 0) {
			lo = MIG_MIN(lo, ram_get(slice, n - 1));
			hi = MIG_MAX(hi, ram_get(slice, 0));
			continue;
		}
		if (!f.cursor)
			snprintf(msg, len, "ab: vcpu %u: page %" PRIu64
				 " counter %" PRIu32 " after %" PRIu32
				 ": invariant broken", i, first + f.at, f.val,
				 f.prev);
		else if (f.step == UINT64_MAX)
			snprintf(msg, len, "ab: vcpu %u: counters all equal but"
				 " the vcpu is at page %" PRIu64
				 ": invariant broken (lost writes)", i,
				 first + w->st.cursor[i]);
		else
			snprintf(msg, len, "ab: vcpu %u: counters step down at"
				 " page %" PRIu64 " but the vcpu is at page %"
				 PRIu64 ": invariant broken (stale page)", i,
				 first + f.step, first + w->st.cursor[i]);
		return -EBADMSG;
	}
	snprintf(msg, len, "ab: invariant holds: %u vcpus, %" PRIu64
		 " pages, counters %" PRIu32 "..%" PRIu32, w->st.vcpus,
		 w->st.ram_bytes / MIG_PAGE_SIZE, lo, hi);
	return 0;
}

/* --- idle -------------------------------------------------------------- */

/* Word k of page p as idle writes it; pages p % 4 == 3 stay zero so a
 * migration exercises its zero-page path. */
static uint64_t idle_word(uint64_t p, unsigned k)
{
	if (p % 4 == 3)
		return 0;
	if (k == 0)
		return IDLE_MAGIC;
	if (k == 1)
		return p;
	return p * IDLE_MIX ^ k;
}

static void idle_fill(struct mig_workload *w)
{
	uint64_t pages = w->st.ram_bytes / MIG_PAGE_SIZE;

	for (uint64_t p = 0; p < pages; p++) {
		uint8_t *page = w->ram + p * MIG_PAGE_SIZE;

		if (p % 4 == 3)
			continue; /* fresh memfd pages read as zero */
		for (unsigned k = 0; k < PAGE_WORDS; k++)
			put_le64(page + 8 * k, idle_word(p, k));
	}
}

static int idle_verify(const struct mig_workload *w, char *msg, size_t len)
{
	uint64_t pages = w->st.ram_bytes / MIG_PAGE_SIZE;

	for (uint64_t p = 0; p < pages; p++) {
		const uint8_t *page = w->ram + p * MIG_PAGE_SIZE;

		for (unsigned k = 0; k < PAGE_WORDS; k++) {
			uint64_t got = get_le64(page + 8 * k);

			if (got == idle_word(p, k))
				continue;
			snprintf(msg, len, "idle: page %" PRIu64 " word %u is"
				 " 0x%016" PRIx64 ", expected 0x%016" PRIx64
				 ": invariant broken", p, k, got,
				 idle_word(p, k));
			return -EBADMSG;
		}
	}
	snprintf(msg, len, "idle: invariant holds: %" PRIu64 " pages match",
		 pages);
	return 0;
}

/* --- table and lifecycle ------------------------------------------------ */

static const struct workload_ops workloads[] = {
	{ .name = "ab", .id = MIG_WORKLOAD_AB, .run = ab_run,
	  .verify = ab_verify },
	{ .name = "idle", .id = MIG_WORKLOAD_IDLE, .fill = idle_fill,
	  .verify = idle_verify },
};

static const struct workload_ops *ops_by_name(const char *name, size_t len)
{
	for (size_t i = 0; i < MIG_ARRAY_SIZE(workloads); i++)
		if (strlen(workloads[i].name) == len &&
		    !memcmp(workloads[i].name, name, len))
			return &workloads[i];
	return NULL;
}

static const struct workload_ops *ops_by_id(enum mig_workload_id id)
{
	for (size_t i = 0; i < MIG_ARRAY_SIZE(workloads); i++)
		if (workloads[i].id == id)
			return &workloads[i];
	return NULL;
}

const char *mig_workload_names(void)
{
	return "ab, idle";
}

struct mig_workload *mig_workload_new(const struct mig_workload_state *st,
				      uint8_t *ram)
{
	struct mig_workload *w;

	if (!state_valid(st) || !ram) {
		errno = EINVAL;
		return NULL;
	}
	/* aligned: the per-vCPU counters each own a cache line */
	w = aligned_alloc(64, (sizeof(*w) + 63) & ~(size_t)63);
	if (!w)
		return NULL;
	memset(w, 0, sizeof(*w));
	w->ops = ops_by_id(st->spec.id);
	w->st = *st;
	w->ram = ram;
	return w;
}

void mig_workload_free(struct mig_workload *w)
{
	free(w);
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
