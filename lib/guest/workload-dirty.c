// SPDX-License-Identifier: MIT
/*
 * The dirty workload, the benchmark writer: vCPUs write whole
 * self-describing pages at a paced rate, picked by a pattern (see
 * workload.h), and VERIFY checks every page describes itself.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/bytes.h"
#include "base/util.h"
#include "core/digest.h"
#include "core/ram.h"
#include "guest/workload-int.h"
#include "guest/workload.h"

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


const struct workload_ops workload_dirty = {
	.name = "dirty", .id = MIG_WORKLOAD_DIRTY, .state_words = 3,
	.param = dirty_param, .run = dirty_run, .verify = dirty_verify,
};
