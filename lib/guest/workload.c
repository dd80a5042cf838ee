// SPDX-License-Identifier: MIT
/*
 * Guest workloads: see workload.h. A workload is a table of operations;
 * adding one (the `dirty` benchmark writer) means one more table entry with
 * its own param/fill/run/verify, and its execution state in the cursors.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/bytes.h"
#include "core/digest.h"
#include "base/log.h"
#include "core/ram.h"
#include "base/util.h"
#include "guest/workload.h"

/* Blob layout, little-endian: magic u32, version u16, workload id u16,
 * total length u32, vcpus u32, ram_bytes u64, spec length u32, spec bytes,
 * vcpus x the workload's per-vCPU record (u64 words: ab and idle the
 * cursor; dirty the cursor, RNG state and token-bucket bytes), FNV-1a u32
 * over everything before it. */
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

/* dirty: the bucket holds this much of a vCPU's rate: long enough that a
 * vCPU sleeps in few, coarse steps, short enough that the rate holds over
 * any 100 ms and a resumed vCPU does not burst. */
#define DIRTY_BURST_MS 10u
/* dirty: longest single sleep while waiting for tokens, so a STOP is seen
 * within about this long. */
#define DIRTY_SLEEP_MAX_NS 1000000ull
/* dirty: header words (magic, index, version, checksum); the body follows. */
#define DIRTY_W_MAGIC 0
#define DIRTY_W_INDEX 1
#define DIRTY_W_VERSION 2
#define DIRTY_W_SUM 3
#define DIRTY_HDR_WORDS 4u
/* dirty: hot pattern, the share of writes that go to the hot set, in
 * 1/2^64 units (90%). */
#define DIRTY_HOT_SHARE (UINT64_MAX / 10u * 9u)
/* splitmix64's increment (golden ratio) and finaliser multipliers. */
#define SPLITMIX_INC 0x9e3779b97f4a7c15ull
#define SPLITMIX_M1 0xbf58476d1ce4e5b9ull
#define SPLITMIX_M2 0x94d049bb133111ebull

struct workload_ops {
	const char *name;
	enum mig_workload_id id;
	unsigned state_words; /* per-vCPU u64 words in the state blob */
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
	if (spec->id != MIG_WORKLOAD_DIRTY)
		return;
	/* fixed seeds: a benchmark run is repeatable */
	for (unsigned i = 0; i < vcpus; i++)
		st->rng[i] = (i + 1) * SPLITMIX_M2;
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
		if (st->spec.id == MIG_WORKLOAD_DIRTY &&
		    st->tokens[i] > mig_workload_bucket_bytes(&st->spec, st->vcpus))
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
	unsigned words;
	uint8_t *b;

	if (!state_valid(st) || !slen || slen >= MIG_WORKLOAD_SPEC_MAX)
		return -EINVAL;
	words = ops_by_id(st->spec.id)->state_words;
	n = STATE_HDR_BYTES + slen + 8 * (size_t)words * st->vcpus +
	    STATE_SUM_BYTES;
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
		const uint64_t rec[3] = { st->cursor[i], st->rng[i], st->tokens[i] };

		for (unsigned k = 0; k < words; k++, off += 8)
			mig_put_le64(b + off, rec[k]);
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

	if (len < STATE_HDR_BYTES + STATE_SUM_BYTES ||
	    len > MIG_WORKLOAD_MAX_STATE_BYTES)
		return -EBADMSG;
	if (mig_get_le32(b) != STATE_MAGIC || mig_get_le16(b + 4) != STATE_VERSION)
		return -EBADMSG;
	if (mig_get_le32(b + 8) != len || mig_get_le64(b + 16) != ram_bytes)
		return -EBADMSG;
	v = mig_get_le32(b + 12);
	s = mig_get_le32(b + 24);
	ops = ops_by_id((enum mig_workload_id)mig_get_le16(b + 6));
	if (!ops || !v || v > MIG_WORKLOAD_MAX_VCPUS || !s ||
	    s >= MIG_WORKLOAD_SPEC_MAX)
		return -EBADMSG;
	if (STATE_HDR_BYTES + s + 8u * ops->state_words * v + STATE_SUM_BYTES != len)
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
	for (unsigned i = 0; i < vcpus; i++, rec += 8 * words) {
		st->cursor[i] = mig_get_le64(rec);
		if (words < 3)
			continue;
		st->rng[i] = mig_get_le64(rec + 8);
		st->tokens[i] = mig_get_le64(rec + 16);
	}
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
	return mig_get_le32((const uint8_t *)base + i * MIG_PAGE_SIZE);
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

		mig_put_le32(p, mig_get_le32(p) + 1u);
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
			mig_put_le64(page + 8 * k, idle_word(p, k));
	}
}

static int idle_verify(const struct mig_workload *w, char *msg, size_t len)
{
	uint64_t pages = w->st.ram_bytes / MIG_PAGE_SIZE;

	for (uint64_t p = 0; p < pages; p++) {
		const uint8_t *page = w->ram + p * MIG_PAGE_SIZE;

		for (unsigned k = 0; k < PAGE_WORDS; k++) {
			uint64_t got = mig_get_le64(page + 8 * k);

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

/* --- dirty --------------------------------------------------------------- */

/* "rate=": a bare number is MiB/s, a suffixed one bytes/s (mig_parse_size). */
static int parse_rate(const char *val, uint64_t *out)
{
	size_t n = strspn(val, "0123456789");
	uint64_t v;

	if (mig_parse_size(val, &v) < 0)
		return -EINVAL;
	if (n && !val[n]) { /* no unit */
		if (v > MIG_WORKLOAD_MAX_RATE >> 20)
			return -EINVAL;
		v <<= 20;
	}
	if (v > MIG_WORKLOAD_MAX_RATE)
		return -EINVAL;
	*out = v;
	return 0;
}

static int dirty_param(struct mig_workload_spec *spec, const char *key,
		       const char *val)
{
	static const struct {
		const char *name;
		enum mig_workload_pattern p;
	} patterns[] = {
		{ "uniform", MIG_WORKLOAD_UNIFORM },
		{ "random", MIG_WORKLOAD_RANDOM },
		{ "hot", MIG_WORKLOAD_HOT },
		{ "seq", MIG_WORKLOAD_SEQ },
		{ "split", MIG_WORKLOAD_SPLIT },
	};
	unsigned long v;

	if (!strcmp(key, "rate"))
		return parse_rate(val, &spec->rate);
	if (!strcmp(key, "hot")) {
		if (mig_parse_ulong(val, 1, 100, &v) < 0)
			return -EINVAL;
		spec->hot_pct = (unsigned)v;
		return 0;
	}
	if (strcmp(key, "pattern"))
		return -EINVAL;
	for (size_t i = 0; i < MIG_ARRAY_SIZE(patterns); i++) {
		if (!strcmp(val, patterns[i].name)) {
			spec->pattern = patterns[i].p;
			return 0;
		}
	}
	return -EINVAL;
}

uint64_t mig_workload_bucket_bytes(const struct mig_workload_spec *spec,
				   unsigned vcpus)
{
	uint64_t share;

	if (!spec->rate || !vcpus)
		return 0;
	share = spec->rate / vcpus;
	return MIG_MAX(share / (1000u / DIRTY_BURST_MS), (uint64_t)MIG_PAGE_SIZE);
}

static uint64_t splitmix(uint64_t *state)
{
	uint64_t z = (*state += SPLITMIX_INC);

	z = (z ^ (z >> 30)) * SPLITMIX_M1;
	z = (z ^ (z >> 27)) * SPLITMIX_M2;
	return z ^ (z >> 31);
}

/* A uniform draw from [0, n) (n > 0): the high half of a 128-bit product,
 * no division and no modulo bias worth the name at these sizes. */
static uint64_t below(uint64_t *rng, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)splitmix(rng) * n) >> 64);
}

/* Body word k of (index, version): one multiply per word, no chain, so it
 * costs little more than the store; varied enough that LZ4 finds nothing. */
static uint64_t body_word(uint64_t seed, unsigned k)
{
	uint64_t x = (seed ^ k) * SPLITMIX_M1;

	return x ^ (x >> 29);
}

static uint64_t body_seed(uint64_t index, uint64_t version)
{
	uint64_t s = index * SPLITMIX_INC ^ version;

	return splitmix(&s);
}

/* The checksum word: the digest of the page with that word zero. */
static uint64_t dirty_sum(const uint8_t *page)
{
	uint8_t copy[MIG_PAGE_SIZE];

	memcpy(copy, page, sizeof(copy));
	mig_put_le64(copy + 8 * DIRTY_W_SUM, 0);
	return mig_digest(copy, 1);
}

void mig_workload_dirty_page_write(void *page, uint64_t index,
				   uint64_t version)
{
	/* built aside, then copied in one go: the guest page never holds a
	 * half-written header with a stale checksum for longer than the copy */
	uint8_t buf[MIG_PAGE_SIZE];
	uint64_t seed = body_seed(index, version);

	mig_put_le64(buf + 8 * DIRTY_W_MAGIC, MIG_WORKLOAD_DIRTY_MAGIC);
	mig_put_le64(buf + 8 * DIRTY_W_INDEX, index);
	mig_put_le64(buf + 8 * DIRTY_W_VERSION, version);
	mig_put_le64(buf + 8 * DIRTY_W_SUM, 0);
	for (unsigned k = DIRTY_HDR_WORDS; k < PAGE_WORDS; k++)
		mig_put_le64(buf + 8 * k, body_word(seed, k));
	mig_put_le64(buf + 8 * DIRTY_W_SUM, mig_digest(buf, 1));
	memcpy(page, buf, sizeof(buf));
}

int mig_workload_dirty_page_check(const void *page, uint64_t index,
				  uint64_t *version, const char **why)
{
	const uint8_t *p = page;
	const char *bad = NULL;

	*version = 0;
	if (mig_page_is_zero(p))
		return 0;
	if (mig_get_le64(p + 8 * DIRTY_W_MAGIC) != MIG_WORKLOAD_DIRTY_MAGIC)
		bad = "not a dirty-workload page (bad magic)";
	else if (mig_get_le64(p + 8 * DIRTY_W_INDEX) != index)
		bad = "holds another page's index (misplaced)";
	else if (!mig_get_le64(p + 8 * DIRTY_W_VERSION))
		bad = "version 0";
	else if (mig_get_le64(p + 8 * DIRTY_W_SUM) != dirty_sum(p))
		bad = "checksum mismatch (torn or corrupt)";
	if (bad) {
		if (why)
			*why = bad;
		return -EBADMSG;
	}
	*version = mig_get_le64(p + 8 * DIRTY_W_VERSION);
	return 0;
}

/* The next version of page index: one more than what the page holds (a
 * zero or unreadable page starts again at 1). */
static void dirty_write(struct mig_workload *w, uint64_t index)
{
	uint8_t *p = w->ram + index * MIG_PAGE_SIZE;
	uint64_t v = 0;

	if (mig_get_le64(p + 8 * DIRTY_W_MAGIC) == MIG_WORKLOAD_DIRTY_MAGIC &&
	    mig_get_le64(p + 8 * DIRTY_W_INDEX) == index)
		v = mig_get_le64(p + 8 * DIRTY_W_VERSION);
	mig_workload_dirty_page_write(p, index, v + 1);
}

/* Which page of its slice (len pages) a vCPU writes next. */
static uint64_t dirty_pick(const struct mig_workload_spec *spec, unsigned vcpu,
			   uint64_t len, uint64_t *rng, uint64_t *cursor)
{
	uint64_t hot, j;

	switch (spec->pattern) {
	case MIG_WORKLOAD_SPLIT:
		if (vcpu % 2)
			return below(rng, len);
		return below(rng, MIG_MAX(len * spec->hot_pct / 100, 1u));
	case MIG_WORKLOAD_SEQ:
		j = *cursor;
		*cursor = j + 1 == len ? 0 : j + 1;
		return j;
	case MIG_WORKLOAD_HOT:
		hot = MIG_MAX(len * spec->hot_pct / 100, 1u);
		if (hot >= len)
			return below(rng, len);
		if (splitmix(rng) <= DIRTY_HOT_SHARE)
			return below(rng, hot);
		return hot + below(rng, len - hot);
	case MIG_WORKLOAD_UNIFORM:
	case MIG_WORKLOAD_RANDOM:
	default:
		return below(rng, len);
	}
}

/* One vCPU's token bucket: bytes, refilled from the clock at its share of
 * the rate, holding at most cap. */
struct bucket {
	uint64_t rate, cap, tokens, last_ns;
};

static void bucket_refill(struct bucket *b)
{
	uint64_t now = mig_now_ns(), dt = now - b->last_ns, add;

	/* a second's worth always fills it (the bucket holds 10 ms) */
	if (dt >= 1000000000ull) {
		b->tokens = b->cap;
		b->last_ns = now;
		return;
	}
	/* 128 bits: dt < 1 s times up to 1 TiB/s overflows 64 */
	add = (uint64_t)((unsigned __int128)dt * b->rate / 1000000000ull);
	if (!add)
		return; /* keep last_ns: the fraction is not lost */
	b->tokens = MIG_MIN(b->tokens + add, b->cap);
	/* advance by the time those bytes took, keeping the remainder */
	b->last_ns += (uint64_t)((unsigned __int128)add * 1000000000ull / b->rate);
	if (b->tokens == b->cap)
		b->last_ns = now;
}

/* Wait until a page's worth is there: false if told to stop first. */
static bool bucket_take(struct bucket *b, const atomic_bool *stop)
{
	while (!atomic_load_explicit(stop, memory_order_relaxed)) {
		uint64_t need, ns;
		struct timespec ts;

		bucket_refill(b);
		if (b->tokens >= MIG_PAGE_SIZE) {
			b->tokens -= MIG_PAGE_SIZE;
			return true;
		}
		need = MIG_PAGE_SIZE - b->tokens;
		ns = MIG_MIN(need * 1000000000ull / b->rate + 1, DIRTY_SLEEP_MAX_NS);
		ts = (struct timespec){ .tv_nsec = (long)ns };
		nanosleep(&ts, NULL);
	}
	return false;
}

static void dirty_run(struct mig_workload *w, unsigned i, const atomic_bool *stop)
{
	const struct mig_workload_spec *spec = &w->st.spec;
	uint64_t first, len, rng = w->st.rng[i], cur = w->st.cursor[i];
	struct bucket b = {
		.rate = spec->rate / w->st.vcpus,
		.cap = mig_workload_bucket_bytes(spec, w->st.vcpus),
		.tokens = w->st.tokens[i],
		/* time parked earns nothing: a resumed vCPU does not burst */
		.last_ns = mig_now_ns(),
	};

	mig_workload_slice(w->st.ram_bytes, w->st.vcpus, i, &first, &len);
	b.rate = MIG_MAX(b.rate, 1u);
	/* the stop check comes before each page: a parked vCPU never leaves a
	 * page half written */
	while (!atomic_load_explicit(stop, memory_order_relaxed)) {
		if (spec->rate && !bucket_take(&b, stop))
			break;
		dirty_write(w, first + dirty_pick(spec, i, len, &rng, &cur));
		atomic_fetch_add_explicit(&w->count[i].writes, 1,
					  memory_order_relaxed);
	}
	w->st.rng[i] = rng;
	w->st.cursor[i] = cur;
	w->st.tokens[i] = spec->rate ? MIG_MIN(b.tokens, b.cap) : 0;
}

static int dirty_verify(const struct mig_workload *w, char *msg, size_t len)
{
	uint64_t pages = w->st.ram_bytes / MIG_PAGE_SIZE, written = 0, top = 0;

	for (uint64_t p = 0; p < pages; p++) {
		const char *why = "";
		uint64_t v;

		if (mig_workload_dirty_page_check(w->ram + p * MIG_PAGE_SIZE, p,
						  &v, &why) < 0) {
			snprintf(msg, len, "dirty: page %" PRIu64 ": %s: invariant"
				 " broken", p, why);
			return -EBADMSG;
		}
		written += v != 0;
		top = MIG_MAX(top, v);
	}
	snprintf(msg, len, "dirty: invariant holds: %" PRIu64 " pages, %" PRIu64
		 " written (max version %" PRIu64 "), the rest zero", pages,
		 written, top);
	return 0;
}

/* --- table and lifecycle ------------------------------------------------ */

static const struct workload_ops workloads[] = {
	{ .name = "ab", .id = MIG_WORKLOAD_AB, .state_words = 1, .run = ab_run,
	  .verify = ab_verify },
	{ .name = "idle", .id = MIG_WORKLOAD_IDLE, .state_words = 1,
	  .fill = idle_fill, .verify = idle_verify },
	{ .name = "dirty", .id = MIG_WORKLOAD_DIRTY, .state_words = 3,
	  .param = dirty_param, .run = dirty_run, .verify = dirty_verify },
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
	return "ab, idle, dirty";
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

int mig_workload_poke(struct mig_workload *w, uint64_t page)
{
	if (w->st.spec.id != MIG_WORKLOAD_DIRTY ||
	    page >= w->st.ram_bytes / MIG_PAGE_SIZE)
		return -EINVAL;
	dirty_write(w, page);
	/* counted as a write of the vCPU that owns the page */
	for (unsigned i = 0; i < w->st.vcpus; i++) {
		uint64_t first, len;

		mig_workload_slice(w->st.ram_bytes, w->st.vcpus, i, &first, &len);
		if (page < first + len) {
			atomic_fetch_add_explicit(&w->count[i].writes, 1,
						  memory_order_relaxed);
			break;
		}
	}
	return 0;
}
