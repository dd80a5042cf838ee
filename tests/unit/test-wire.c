// SPDX-License-Identifier: MIT
/*
 * Unit tests for the migration stream codecs and framed I/O, and for the
 * LZ4 wrapper that PAGES runs use. Decoders get heap buffers of exactly the
 * length they are told, so ASan catches any read past it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "base/bytes.h"
#include "core/compress.h"
#include "base/util.h"
#include "core/wire.h"

#define PAGE MIG_PAGE_SIZE
#define RAM (64ull << 20) /* a 64 MiB guest for range checks */

/* Independent copy of the per-type payload limits from the protocol. */
static const struct {
	uint32_t type;
	const char *name;
	uint32_t min, max;
} limits[] = {
	{ MIG_MSG_HELLO, "HELLO", 32, 32 },
	{ MIG_MSG_REFUSE, "REFUSE", 4, 260 },
	{ MIG_MSG_RAM_INFO, "RAM_INFO", 16, 16 },
	{ MIG_MSG_PAGES, "PAGES", 16, 16 + 2097152 + 2097152 / 255 + 16 },
	{ MIG_MSG_SWITCHOVER, "SWITCHOVER", 1, 1u << 20 },
	{ MIG_MSG_EOS, "EOS", 0, 0 },
	{ MIG_MSG_CANCEL, "CANCEL", 0, 0 },
	{ MIG_MSG_RESUME, "RESUME", 0, 0 },
	{ MIG_MSG_PING, "PING", 8, 8 },
	{ MIG_MSG_PONG, "PONG", 8, 8 },
	{ MIG_MSG_DISCARD, "DISCARD", 16, 16 },
	{ MIG_MSG_REQ, "REQ", 16, 16 },
	{ MIG_MSG_COMPLETE, "COMPLETE", 0, 0 },
	{ MIG_MSG_BITMAP, "BITMAP", 17, 16 + 65536 },
	{ MIG_MSG_BITMAP_END, "BITMAP_END", 8, 8 },
	{ MIG_MSG_RESUME_ACK, "RESUME_ACK", 0, 0 },
};

/* A heap copy of exactly len bytes (ASan flags any read past it). */
static uint8_t *exact(const void *src, size_t len)
{
	uint8_t *p = malloc(len); /* malloc(0) under ASan: any read is caught */

	if (!p && !len)
		p = malloc(1);
	assert_non_null(p);
	if (len)
		memcpy(p, src, len);
	return p;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* ---- header ---- */

static int dec_hdr_raw(uint32_t type, uint32_t len)
{
	uint8_t b[8];
	uint32_t t, l;

	mig_put_be32(b, type);
	mig_put_be32(b + 4, len);
	return mig_wire_dec_hdr(b, &t, &l);
}

static void test_hdr_round_trip(void **state)
{
	for (size_t i = 0; i < MIG_ARRAY_SIZE(limits); i++) {
		uint32_t lens[2] = { limits[i].min, limits[i].max };

		for (int k = 0; k < 2; k++) {
			uint8_t b[MIG_WIRE_HDR_BYTES];
			uint32_t t = 0, l = 1;

			mig_wire_enc_hdr(b, limits[i].type, lens[k]);
			assert_int_equal(b[3], limits[i].type); /* big-endian */
			assert_int_equal(mig_wire_dec_hdr(b, &t, &l), 0);
			assert_int_equal(t, limits[i].type);
			assert_int_equal(l, lens[k]);
		}
		assert_string_equal(mig_wire_type_name(limits[i].type),
				    limits[i].name);
	}
	assert_true(MIG_WIRE_MAX_PAYLOAD >= limits[3].max);
}

static void test_hdr_rejects(void **state)
{
	static const uint32_t unknown[] = { 0, 12, 13, 14, 15, 21, 255,
					    0x01000000, UINT32_MAX };

	for (size_t i = 0; i < MIG_ARRAY_SIZE(unknown); i++) {
		assert_int_equal(dec_hdr_raw(unknown[i], 0), -EBADMSG);
		assert_int_equal(dec_hdr_raw(unknown[i], 16), -EBADMSG);
		assert_string_equal(mig_wire_type_name(unknown[i]), "?");
	}
	for (size_t i = 0; i < MIG_ARRAY_SIZE(limits); i++) {
		assert_int_equal(dec_hdr_raw(limits[i].type, limits[i].max + 1),
				 -EBADMSG);
		assert_int_equal(dec_hdr_raw(limits[i].type, UINT32_MAX),
				 -EBADMSG);
		if (limits[i].min)
			assert_int_equal(dec_hdr_raw(limits[i].type,
						     limits[i].min - 1), -EBADMSG);
	}
}

/* ---- truncation of every fixed-size message ---- */

typedef int (*dec_fn)(const uint8_t *in, size_t len);

static int dec_hello_w(const uint8_t *in, size_t len)
{
	struct mig_hello h;

	return mig_wire_dec_hello(in, len, &h);
}

static int dec_ram_info_w(const uint8_t *in, size_t len)
{
	struct mig_ram_info ri;

	return mig_wire_dec_ram_info(in, len, &ri);
}

static int dec_req_w(const uint8_t *in, size_t len)
{
	struct mig_req r;

	return mig_wire_dec_req(in, len, RAM, &r);
}

static int dec_u64_w(const uint8_t *in, size_t len)
{
	uint64_t v;

	return mig_wire_dec_u64(in, len, &v);
}

/* valid[0..n) decodes; every shorter length and n+1 do not. */
static void check_truncations(dec_fn dec, const uint8_t *valid, size_t n)
{
	uint8_t longer[64] = { 0 };
	uint8_t *p;

	assert_true(n + 1 <= sizeof(longer));
	p = exact(valid, n);
	assert_int_equal(dec(p, n), 0);
	free(p);
	for (size_t len = 0; len < n; len++) {
		p = exact(valid, len);
		assert_int_equal(dec(p, len), -EBADMSG);
		free(p);
	}
	memcpy(longer, valid, n);
	p = exact(longer, n + 1);
	assert_int_equal(dec(p, n + 1), -EBADMSG);
	free(p);
}

static void test_truncations(void **state)
{
	uint8_t b[64];
	struct mig_hello h = { .version = MIG_WIRE_VERSION,
			       .role = MIG_ROLE_MAIN };
	struct mig_ram_info ri = { .ram_bytes = RAM, .page_size = PAGE };
	struct mig_req r = { .offset = PAGE, .npages = 1 };

	check_truncations(dec_hello_w, b, mig_wire_enc_hello(b, &h));
	check_truncations(dec_ram_info_w, b, mig_wire_enc_ram_info(b, &ri));
	check_truncations(dec_req_w, b, mig_wire_enc_req(b, &r));
	check_truncations(dec_u64_w, b, mig_wire_enc_u64(b, 42));
}

/* ---- hello ---- */

static void make_hello(uint8_t b[32], uint32_t magic, uint32_t version,
		       uint32_t role, uint32_t flags)
{
	mig_put_be32(b, magic);
	mig_put_be32(b + 4, version);
	mig_put_be32(b + 8, role);
	mig_put_be32(b + 12, flags);
	for (int i = 0; i < 16; i++)
		b[16 + i] = (uint8_t)(0xa0 + i);
}

static int dec_hello_fields(uint32_t magic, uint32_t version, uint32_t role,
			    uint32_t flags)
{
	uint8_t b[32];
	struct mig_hello h;
	uint8_t *p;
	int r;

	make_hello(b, magic, version, role, flags);
	p = exact(b, sizeof(b));
	r = mig_wire_dec_hello(p, sizeof(b), &h);
	free(p);
	return r;
}

static void test_hello(void **state)
{
	struct mig_hello in = { .version = MIG_WIRE_VERSION,
				.role = MIG_ROLE_PREEMPT,
				.flags = MIG_HELLO_RESUME };
	struct mig_hello out;
	uint8_t b[MIG_HELLO_BYTES], ref[32];

	for (int i = 0; i < 16; i++)
		in.uuid[i] = (uint8_t)(0xa0 + i);
	assert_int_equal(mig_wire_enc_hello(b, &in), MIG_HELLO_BYTES);
	make_hello(ref, MIG_WIRE_MAGIC, MIG_WIRE_VERSION, MIG_ROLE_PREEMPT,
		   MIG_HELLO_RESUME);
	assert_memory_equal(b, ref, 32); /* exact byte layout */
	assert_int_equal(mig_wire_dec_hello(b, sizeof(b), &out), 0);
	assert_int_equal(out.version, MIG_WIRE_VERSION);
	assert_int_equal(out.role, MIG_ROLE_PREEMPT);
	assert_int_equal(out.flags, MIG_HELLO_RESUME);
	assert_memory_equal(out.uuid, in.uuid, 16);

	assert_int_equal(dec_hello_fields(MIG_WIRE_MAGIC, 1, MIG_ROLE_MAIN, 0), 0);
	assert_int_equal(dec_hello_fields(0x5747494d, 1, 1, 0), -EPROTO);
	assert_int_equal(dec_hello_fields(0, 1, 1, 0), -EPROTO);
	assert_int_equal(dec_hello_fields(MIG_WIRE_MAGIC, 0, 1, 0), -EPROTO);
	assert_int_equal(dec_hello_fields(MIG_WIRE_MAGIC, 2, 1, 0), -EPROTO);
	assert_int_equal(dec_hello_fields(MIG_WIRE_MAGIC, 1, 0, 0), -EBADMSG);
	assert_int_equal(dec_hello_fields(MIG_WIRE_MAGIC, 1, 4, 0), -EBADMSG);
	/* a bulk channel names itself, 1-7; main says how many follow */
	assert_int_equal(dec_hello_fields(MIG_WIRE_MAGIC, 1, MIG_ROLE_BULK, 0),
			 -EBADMSG);
	assert_int_equal(dec_hello_fields(MIG_WIRE_MAGIC, 1, MIG_ROLE_BULK,
					  MIG_HELLO_BULK(1)), 0);
	assert_int_equal(dec_hello_fields(MIG_WIRE_MAGIC, 1, MIG_ROLE_BULK,
					  MIG_HELLO_BULK(7) | MIG_HELLO_RESUME), 0);
	assert_int_equal(dec_hello_fields(MIG_WIRE_MAGIC, 1, MIG_ROLE_PREEMPT,
					  MIG_HELLO_BULK(1)), -EBADMSG);
	assert_int_equal(dec_hello_fields(MIG_WIRE_MAGIC, 1, MIG_ROLE_MAIN,
					  MIG_HELLO_BULK(0)), 0);
	assert_int_equal(dec_hello_fields(MIG_WIRE_MAGIC, 1, MIG_ROLE_MAIN,
					  MIG_HELLO_BULK(7)), 0);
	assert_int_equal(dec_hello_fields(MIG_WIRE_MAGIC, 1, MIG_ROLE_MAIN,
					  MIG_HELLO_BULK(8)), -EBADMSG);
	/* the lowest flag bit not defined */
	assert_int_equal(dec_hello_fields(MIG_WIRE_MAGIC, 1, 1,
					  ~MIG_HELLO_FLAGS_ALL &
						  (MIG_HELLO_FLAGS_ALL + 1)),
			 -EBADMSG);
	assert_int_equal(dec_hello_fields(MIG_WIRE_MAGIC, 1, 1,
					  MIG_HELLO_FLAGS_ALL), 0);
	assert_int_equal(dec_hello_fields(MIG_WIRE_MAGIC, 1, 1, 0x80000000),
			 -EBADMSG);
}

/* ---- refuse ---- */

static void test_refuse(void **state)
{
	uint8_t b[4 + MIG_WIRE_MAX_REASON + 8];
	char longr[400];
	struct mig_refuse r;
	size_t n;
	uint8_t *p;

	n = mig_wire_enc_refuse(b, MIG_REFUSE_UUID, "wrong uuid");
	assert_int_equal(n, 4 + 10);
	p = exact(b, n);
	assert_int_equal(mig_wire_dec_refuse(p, n, &r), 0);
	free(p);
	assert_int_equal(r.code, MIG_REFUSE_UUID);
	assert_string_equal(r.reason, "wrong uuid");

	/* empty and NULL reasons */
	n = mig_wire_enc_refuse(b, MIG_REFUSE_STATE, NULL);
	assert_int_equal(n, 4);
	p = exact(b, n);
	assert_int_equal(mig_wire_dec_refuse(p, n, &r), 0);
	free(p);
	assert_string_equal(r.reason, "");

	/* long reasons are cut at MIG_WIRE_MAX_REASON */
	memset(longr, 'x', sizeof(longr) - 1);
	longr[sizeof(longr) - 1] = '\0';
	n = mig_wire_enc_refuse(b, MIG_REFUSE_PROTOCOL, longr);
	assert_int_equal(n, 4 + MIG_WIRE_MAX_REASON);
	p = exact(b, n);
	assert_int_equal(mig_wire_dec_refuse(p, n, &r), 0);
	free(p);
	assert_int_equal(strlen(r.reason), MIG_WIRE_MAX_REASON);

	/* non-printable bytes (and an embedded NUL) become '?' */
	mig_put_be32(b, MIG_REFUSE_ROLE);
	memcpy(b + 4, "a\x1b[2J\n\0\x7f\xff" "b", 10);
	p = exact(b, 14);
	assert_int_equal(mig_wire_dec_refuse(p, 14, &r), 0);
	free(p);
	assert_string_equal(r.reason, "a?[2J????b");

	/* too short, too long */
	for (size_t len = 0; len < 4; len++) {
		p = exact(b, len);
		assert_int_equal(mig_wire_dec_refuse(p, len, &r), -EBADMSG);
		free(p);
	}
	memset(b, 'y', sizeof(b));
	p = exact(b, 4 + MIG_WIRE_MAX_REASON + 1);
	assert_int_equal(mig_wire_dec_refuse(p, 4 + MIG_WIRE_MAX_REASON + 1, &r),
			 -EBADMSG);
	free(p);
}

/* ---- ram info ---- */

static int dec_ram_fields(uint64_t ram, uint32_t psz, uint32_t flags)
{
	uint8_t b[16];
	struct mig_ram_info ri;

	mig_put_be64(b, ram);
	mig_put_be32(b + 8, psz);
	mig_put_be32(b + 12, flags);
	return mig_wire_dec_ram_info(b, sizeof(b), &ri);
}

static void test_ram_info(void **state)
{
	struct mig_ram_info in = { .ram_bytes = 3ull << 30, .page_size = PAGE };
	struct mig_ram_info out;
	uint8_t b[16];

	assert_int_equal(mig_wire_enc_ram_info(b, &in), MIG_RAM_INFO_BYTES);
	assert_int_equal(mig_wire_dec_ram_info(b, sizeof(b), &out), 0);
	assert_int_equal(out.ram_bytes, 3ull << 30);
	assert_int_equal(out.page_size, PAGE);
	assert_int_equal(out.flags, 0);

	assert_int_equal(dec_ram_fields(PAGE, PAGE, 0), 0);
	assert_int_equal(dec_ram_fields(MIG_WIRE_MAX_RAM_BYTES, PAGE, 0), 0);
	assert_int_equal(dec_ram_fields(0, PAGE, 0), -ERANGE);
	assert_int_equal(dec_ram_fields(MIG_WIRE_MAX_RAM_BYTES + PAGE, PAGE, 0),
			 -ERANGE);
	assert_int_equal(dec_ram_fields(UINT64_MAX, PAGE, 0), -ERANGE);
	assert_int_equal(dec_ram_fields(PAGE + 1, PAGE, 0), -EBADMSG);
	assert_int_equal(dec_ram_fields(RAM, 2 * PAGE, 0), -EBADMSG);
	assert_int_equal(dec_ram_fields(RAM, 0, 0), -EBADMSG);
	assert_int_equal(dec_ram_fields(RAM, PAGE, 1), -EBADMSG);
}

/* ---- pages ---- */

/* Decode a PAGES payload with the given header fields and datalen bytes of
 * data, from an exact-size heap buffer. */
static int dec_pages_fields(uint64_t offset, uint32_t npages, uint32_t flags,
			    size_t datalen, uint64_t ram, struct mig_pages *p)
{
	size_t len = MIG_PAGES_HDR_BYTES + datalen;
	uint8_t *b = calloc(1, len);
	int r;

	assert_non_null(b);
	assert_int_equal(mig_wire_enc_pages_hdr(b, offset, npages, flags),
			 MIG_PAGES_HDR_BYTES);
	r = mig_wire_dec_pages(b, len, ram, p);
	free(b);
	return r;
}

static void test_pages_round_trip(void **state)
{
	uint8_t b[MIG_PAGES_HDR_BYTES + 2 * PAGE];
	uint8_t ref[16];
	struct mig_pages p;

	mig_wire_enc_pages_hdr(b, 5 * PAGE, 2, 0);
	mig_put_be64(ref, 5 * PAGE);
	mig_put_be32(ref + 8, 2);
	mig_put_be32(ref + 12, 0);
	assert_memory_equal(b, ref, 16);
	memset(b + 16, 0x5a, 2 * PAGE);
	assert_int_equal(mig_wire_dec_pages(b, sizeof(b), RAM, &p), 0);
	assert_int_equal(p.offset, 5 * PAGE);
	assert_int_equal(p.npages, 2);
	assert_int_equal(p.flags, 0);
	assert_ptr_equal(p.data, b + 16);
	assert_int_equal(p.datalen, 2 * PAGE);

	assert_int_equal(dec_pages_fields(0, 7, MIG_PAGES_ZERO, 0, RAM, &p), 0);
	assert_int_equal(p.flags, MIG_PAGES_ZERO);
	assert_int_equal(p.datalen, 0);
	assert_int_equal(dec_pages_fields(0, 1, MIG_PAGES_LZ4, 100, RAM, &p), 0);
	assert_int_equal(p.datalen, 100);
	/* the last pages of RAM, and a maximal run */
	assert_int_equal(dec_pages_fields(RAM - PAGE, 1, MIG_PAGES_ZERO, 0, RAM,
					  &p), 0);
	assert_int_equal(dec_pages_fields(0, MIG_WIRE_MAX_RUN_PAGES, 0,
					  MIG_WIRE_MAX_RUN_PAGES * PAGE, RAM, &p), 0);
	assert_int_equal(dec_pages_fields(0, MIG_WIRE_MAX_RUN_PAGES,
					  MIG_PAGES_LZ4,
					  MIG_WIRE_MAX_PAGES_DATA, RAM, &p), 0);
}

static void test_pages_rejects(void **state)
{
	struct mig_pages p;
	const uint32_t max = MIG_WIRE_MAX_RUN_PAGES;

	/* outside RAM */
	assert_int_equal(dec_pages_fields(RAM, 1, MIG_PAGES_ZERO, 0, RAM, &p),
			 -ERANGE);
	assert_int_equal(dec_pages_fields(RAM - PAGE, 2, MIG_PAGES_ZERO, 0, RAM,
					  &p), -ERANGE);
	assert_int_equal(dec_pages_fields(0, 1, MIG_PAGES_ZERO, 0, 0, &p),
			 -ERANGE);
	/* offset + length wrapping around 2^64 */
	assert_int_equal(dec_pages_fields(UINT64_MAX - PAGE + 1, 2,
					  MIG_PAGES_ZERO, 0, UINT64_MAX, &p),
			 -ERANGE);
	assert_int_equal(dec_pages_fields(0xfffffffffffff000ull, max,
					  MIG_PAGES_ZERO, 0, RAM, &p), -ERANGE);
	/* misaligned offset */
	assert_int_equal(dec_pages_fields(1, 1, MIG_PAGES_ZERO, 0, RAM, &p),
			 -EBADMSG);
	assert_int_equal(dec_pages_fields(PAGE + 2048, 1, MIG_PAGES_ZERO, 0,
					  RAM, &p), -EBADMSG);
	/* npages 0 and MAX+1 */
	assert_int_equal(dec_pages_fields(0, 0, MIG_PAGES_ZERO, 0, RAM, &p),
			 -ERANGE);
	assert_int_equal(dec_pages_fields(0, 0, 0, 0, RAM, &p), -ERANGE);
	assert_int_equal(dec_pages_fields(0, max + 1, MIG_PAGES_ZERO, 0, RAM,
					  &p), -ERANGE);
	/* data inconsistent with flags */
	assert_int_equal(dec_pages_fields(0, 1, MIG_PAGES_ZERO, 1, RAM, &p),
			 -EBADMSG);
	assert_int_equal(dec_pages_fields(0, 1, MIG_PAGES_ZERO, PAGE, RAM, &p),
			 -EBADMSG);
	assert_int_equal(dec_pages_fields(0, 2, 0, 2 * PAGE - 1, RAM, &p),
			 -EBADMSG);
	assert_int_equal(dec_pages_fields(0, 2, 0, 2 * PAGE + 1, RAM, &p),
			 -EBADMSG);
	assert_int_equal(dec_pages_fields(0, 2, 0, 0, RAM, &p), -EBADMSG);
	assert_int_equal(dec_pages_fields(0, 1, MIG_PAGES_LZ4, 0, RAM, &p),
			 -EBADMSG);
	assert_int_equal(dec_pages_fields(0, 1, MIG_PAGES_LZ4,
					  PAGE + PAGE / 255 + 17, RAM, &p),
			 -EBADMSG);
	assert_int_equal(dec_pages_fields(0, max, MIG_PAGES_LZ4,
					  MIG_WIRE_MAX_PAGES_DATA + 1, RAM, &p),
			 -EBADMSG);
	/* flags: both, unknown */
	assert_int_equal(dec_pages_fields(0, 1, MIG_PAGES_ZERO | MIG_PAGES_LZ4,
					  0, RAM, &p), -EBADMSG);
	assert_int_equal(dec_pages_fields(0, 1, MIG_PAGES_ZERO | MIG_PAGES_LZ4,
					  10, RAM, &p), -EBADMSG);
	assert_int_equal(dec_pages_fields(0, 1, 0x4, PAGE, RAM, &p), -EBADMSG);
	assert_int_equal(dec_pages_fields(0, 1, 0x80000001u, 0, RAM, &p),
			 -EBADMSG);
}

static void test_pages_short(void **state)
{
	uint8_t b[MIG_PAGES_HDR_BYTES];
	struct mig_pages p;

	mig_wire_enc_pages_hdr(b, 0, 1, MIG_PAGES_ZERO);
	for (size_t len = 0; len < MIG_PAGES_HDR_BYTES; len++) {
		uint8_t *e = exact(b, len);

		assert_int_equal(mig_wire_dec_pages(e, len, RAM, &p), -EBADMSG);
		free(e);
	}
}

/* ---- req ---- */

static int dec_req_fields(uint64_t offset, uint32_t npages, uint32_t rsvd,
			  struct mig_req *r)
{
	uint8_t b[16];

	mig_put_be64(b, offset);
	mig_put_be32(b + 8, npages);
	mig_put_be32(b + 12, rsvd);
	return mig_wire_dec_req(b, sizeof(b), RAM, r);
}

static void test_req(void **state)
{
	struct mig_req in = { .offset = 9 * PAGE, .npages = 16 }, out;
	uint8_t b[16], ref[16];

	assert_int_equal(mig_wire_enc_req(b, &in), MIG_REQ_BYTES);
	mig_put_be64(ref, 9 * PAGE);
	mig_put_be32(ref + 8, 16);
	mig_put_be32(ref + 12, 0);
	assert_memory_equal(b, ref, 16);
	assert_int_equal(mig_wire_dec_req(b, sizeof(b), RAM, &out), 0);
	assert_int_equal(out.offset, 9 * PAGE);
	assert_int_equal(out.npages, 16);

	assert_int_equal(dec_req_fields(RAM - PAGE, 1, 0, &out), 0);
	assert_int_equal(dec_req_fields(0, MIG_WIRE_MAX_RUN_PAGES, 0, &out), 0);
	assert_int_equal(dec_req_fields(0, 1, 1, &out), -EBADMSG);
	assert_int_equal(dec_req_fields(0, 0, 0, &out), -ERANGE);
	assert_int_equal(dec_req_fields(0, MIG_WIRE_MAX_RUN_PAGES + 1, 0, &out),
			 -ERANGE);
	assert_int_equal(dec_req_fields(RAM, 1, 0, &out), -ERANGE);
	assert_int_equal(dec_req_fields(RAM - PAGE, 2, 0, &out), -ERANGE);
	assert_int_equal(dec_req_fields(0xfffffffffffff000ull, 1, 0, &out),
			 -ERANGE);
	assert_int_equal(dec_req_fields(100, 1, 0, &out), -EBADMSG);
}

/* ---- bitmap ---- */

/* A BITMAP payload with nbytes of bits (all 0xff, then last byte `last`). */
static int dec_bitmap_fields(uint64_t first, uint32_t nbits, uint32_t rsvd,
			     size_t nbytes, uint8_t last, uint64_t total,
			     struct mig_bitmap_chunk *c)
{
	size_t len = MIG_BITMAP_HDR_BYTES + nbytes;
	uint8_t *b = malloc(len);
	int r;

	assert_non_null(b);
	mig_wire_enc_bitmap_hdr(b, first, nbits);
	mig_put_be32(b + 12, rsvd);
	memset(b + 16, 0xff, nbytes);
	if (nbytes)
		b[len - 1] = last;
	r = mig_wire_dec_bitmap(b, len, total, c);
	free(b);
	return r;
}

static void test_bitmap(void **state)
{
	uint8_t b[16 + 3], ref[16];
	struct mig_bitmap_chunk c;
	const uint64_t total = 1000;

	assert_int_equal(mig_wire_enc_bitmap_hdr(b, 77, 20), MIG_BITMAP_HDR_BYTES);
	mig_put_be64(ref, 77);
	mig_put_be32(ref + 8, 20);
	mig_put_be32(ref + 12, 0);
	assert_memory_equal(b, ref, 16);
	b[16] = 0x81;
	b[17] = 0x00;
	b[18] = 0x0f; /* bits 16..19 set, 20..23 padding clear */
	assert_int_equal(mig_wire_dec_bitmap(b, sizeof(b), total, &c), 0);
	assert_int_equal(c.first_page, 77);
	assert_int_equal(c.nbits, 20);
	assert_ptr_equal(c.bits, b + 16);

	/* exact fit at the end, full bytes */
	assert_int_equal(dec_bitmap_fields(992, 8, 0, 1, 0xff, total, &c), 0);
	assert_int_equal(dec_bitmap_fields(0, 1, 0, 1, 0x01, total, &c), 0);
	/* padding bits set */
	assert_int_equal(dec_bitmap_fields(0, 1, 0, 1, 0x03, total, &c), -EBADMSG);
	assert_int_equal(dec_bitmap_fields(0, 20, 0, 3, 0x10, total, &c),
			 -EBADMSG);
	assert_int_equal(dec_bitmap_fields(0, 15, 0, 2, 0x80, total, &c),
			 -EBADMSG);
	/* nbits 0 and too large */
	assert_int_equal(dec_bitmap_fields(0, 0, 0, 1, 0, total, &c), -ERANGE);
	assert_int_equal(dec_bitmap_fields(0, MIG_WIRE_MAX_BITMAP_BITS + 8, 0,
					   MIG_WIRE_MAX_BITMAP_BITS / 8 + 1, 0,
					   UINT64_MAX, &c), -ERANGE);
	assert_int_equal(dec_bitmap_fields(0, MIG_WIRE_MAX_BITMAP_BITS, 0,
					   MIG_WIRE_MAX_BITMAP_BITS / 8, 0xff,
					   MIG_WIRE_MAX_BITMAP_BITS, &c), 0);
	/* length does not match nbits */
	assert_int_equal(dec_bitmap_fields(0, 16, 0, 1, 0, total, &c), -EBADMSG);
	assert_int_equal(dec_bitmap_fields(0, 16, 0, 3, 0, total, &c), -EBADMSG);
	assert_int_equal(dec_bitmap_fields(0, 9, 0, 0, 0, total, &c), -EBADMSG);
	/* reserved */
	assert_int_equal(dec_bitmap_fields(0, 8, 1, 1, 0, total, &c), -EBADMSG);
	/* out of range, and overflow of first_page + nbits */
	assert_int_equal(dec_bitmap_fields(993, 8, 0, 1, 0, total, &c), -ERANGE);
	assert_int_equal(dec_bitmap_fields(1000, 1, 0, 1, 0, total, &c), -ERANGE);
	assert_int_equal(dec_bitmap_fields(UINT64_MAX - 3, 8, 0, 1, 0,
					   UINT64_MAX, &c), -ERANGE);
	/* shorter than the header */
	for (size_t len = 0; len < MIG_BITMAP_HDR_BYTES + 1; len++) {
		uint8_t *e = exact(b, len);

		assert_int_not_equal(mig_wire_dec_bitmap(e, len, total, &c), 0);
		free(e);
	}
}

/* The byte-order helpers every codec and these tests build on, against
 * bytes spelled out, at an odd address. */
static void test_bytes(void **state)
{
	uint8_t b[9] = { 0 };

	mig_put_be32(b + 1, 0x01020304u);
	assert_memory_equal(b + 1, ((const uint8_t[]){ 1, 2, 3, 4 }), 4);
	assert_int_equal(mig_get_be32(b + 1), 0x01020304u);
	mig_put_be64(b + 1, 0x0102030405060708ull);
	assert_memory_equal(b + 1, ((const uint8_t[]){ 1, 2, 3, 4, 5, 6, 7, 8 }), 8);
	assert_int_equal(mig_get_be64(b + 1), 0x0102030405060708ull);
	mig_put_le16(b + 1, 0x0102u);
	assert_memory_equal(b + 1, ((const uint8_t[]){ 2, 1 }), 2);
	assert_int_equal(mig_get_le16(b + 1), 0x0102u);
	mig_put_le32(b + 1, 0x01020304u);
	assert_memory_equal(b + 1, ((const uint8_t[]){ 4, 3, 2, 1 }), 4);
	assert_int_equal(mig_get_le32(b + 1), 0x01020304u);
	mig_put_le64(b + 1, 0x0102030405060708ull);
	assert_memory_equal(b + 1, ((const uint8_t[]){ 8, 7, 6, 5, 4, 3, 2, 1 }), 8);
	assert_int_equal(mig_get_le64(b + 1), 0x0102030405060708ull);
	assert_int_equal(b[0], 0);
}

static void test_u64(void **state)
{
	uint8_t b[8];
	uint64_t v = 0;

	assert_int_equal(mig_wire_enc_u64(b, 0x0102030405060708ull), 8);
	assert_memory_equal(b, ((const uint8_t[]){ 1, 2, 3, 4, 5, 6, 7, 8 }), 8);
	assert_int_equal(mig_wire_dec_u64(b, 8, &v), 0);
	assert_int_equal(v, 0x0102030405060708ull);
}

/* ---- random input: every decoder fails cleanly or stays in bounds ---- */

static bool known_error(int r)
{
	return r == 0 || r == -EBADMSG || r == -ERANGE || r == -EPROTO;
}

static void fuzz_one(const uint8_t *in, size_t len)
{
	struct mig_hello h;
	struct mig_refuse rf;
	struct mig_ram_info ri;
	struct mig_pages p;
	struct mig_req rq;
	struct mig_bitmap_chunk c;
	uint64_t v;
	int r;

	assert_true(known_error(mig_wire_dec_hello(in, len, &h)));
	r = mig_wire_dec_refuse(in, len, &rf);
	assert_true(known_error(r));
	if (r == 0)
		assert_int_equal(strlen(rf.reason), len - 4);
	assert_true(known_error(mig_wire_dec_ram_info(in, len, &ri)));
	r = mig_wire_dec_pages(in, len, UINT64_MAX, &p);
	assert_true(known_error(r));
	if (r == 0) {
		assert_int_equal(p.datalen, len - MIG_PAGES_HDR_BYTES);
		assert_true(p.offset + (uint64_t)p.npages * PAGE >= p.offset);
	}
	assert_true(known_error(mig_wire_dec_req(in, len, UINT64_MAX, &rq)));
	r = mig_wire_dec_bitmap(in, len, UINT64_MAX, &c);
	assert_true(known_error(r));
	if (r == 0)
		assert_int_equal(len, MIG_BITMAP_HDR_BYTES + (c.nbits + 7) / 8);
	assert_true(known_error(mig_wire_dec_u64(in, len, &v)));
}

static void test_fuzz_decoders(void **state)
{
	uint8_t raw[64];

	for (int iter = 0; iter < 20000; iter++) {
		size_t len = rng() % sizeof(raw);
		uint8_t *p;

		for (size_t i = 0; i < sizeof(raw); i += 8) {
			uint64_t v = rng();

			memcpy(raw + i, &v, 8);
		}
		/* small numbers in the length-like fields hit more paths */
		if (iter & 1) {
			memset(raw, 0, 8);
			raw[8] = raw[9] = raw[10] = 0;
			raw[11] &= 0x3f;
			raw[12] = raw[13] = raw[14] = 0;
			raw[15] &= 3;
		}
		p = exact(raw, len);
		fuzz_one(p, len);
		free(p);
	}
}

/* ---- compression ---- */

static void fill_text(uint8_t *p, size_t len)
{
	static const char words[] = "the quick brown fox jumps over the lazy dog ";

	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)words[(i + i / 97) % (sizeof(words) - 1)];
}

static void test_compress_round_trip(void **state)
{
	const size_t len = 16 * PAGE;
	size_t bound = mig_compress_bound(len), clen;
	uint8_t *src = malloc(len), *dst = malloc(len), *c = malloc(bound);

	assert_non_null(src);
	assert_non_null(dst);
	assert_non_null(c);
	assert_true(bound >= len);
	assert_true(bound <= len + len / 255 + 16);
	fill_text(src, len);
	clen = mig_compress(src, len, c, bound);
	assert_true(clen > 0 && clen < len);
	assert_int_equal(mig_decompress(c, clen, dst, len), 0);
	assert_memory_equal(src, dst, len);
	/* the decoded size must be exact */
	assert_int_equal(mig_decompress(c, clen, dst, len - 1), -EBADMSG);
	assert_int_equal(mig_decompress(c, clen, dst, len - PAGE), -EBADMSG);
	/* random data does not shrink: send raw */
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = rng();

		memcpy(src + i, &v, 8);
	}
	assert_int_equal(mig_compress(src, len, c, bound), 0);
	free(src);
	free(dst);
	free(c);
}

static void test_decompress_corrupt(void **state)
{
	const size_t len = 4 * PAGE;
	size_t bound = mig_compress_bound(len), clen;
	uint8_t *src = malloc(len), *dst = malloc(len), *c = malloc(bound);
	uint8_t *bad;

	assert_non_null(src);
	assert_non_null(dst);
	assert_non_null(c);
	fill_text(src, len);
	clen = mig_compress(src, len, c, bound);
	assert_true(clen > 0);
	/* truncated block */
	bad = exact(c, clen / 2);
	assert_int_equal(mig_decompress(bad, clen / 2, dst, len), -EBADMSG);
	free(bad);
	/* a match offset pointing before the start of the output */
	{
		static const uint8_t evil[] = { 0x1f, 'a', 0xff, 0xff, 0xff,
						0x00, 0x00, 0x00 };

		bad = exact(evil, sizeof(evil));
		assert_int_equal(mig_decompress(bad, sizeof(evil), dst, len),
				 -EBADMSG);
		free(bad);
	}
	/* garbage */
	bad = malloc(64);
	assert_non_null(bad);
	memset(bad, 0xff, 64);
	assert_int_equal(mig_decompress(bad, 64, dst, len), -EBADMSG);
	free(bad);
	assert_int_equal(mig_decompress(c, 0, dst, len), -EBADMSG);
	free(src);
	free(dst);
	free(c);
}

/* ---- I/O over a socketpair ---- */

static void pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
}

static void test_send_recv(void **state)
{
	uint8_t payload[8], buf[64];
	uint32_t type, len;
	uint64_t seq;
	int sv[2];

	pair(sv);
	mig_wire_enc_u64(payload, 12345);
	assert_int_equal(mig_wire_send(sv[0], MIG_MSG_PING, payload, 8), 0);
	assert_int_equal(mig_wire_send(sv[0], MIG_MSG_EOS, NULL, 0), 0);
	assert_int_equal(mig_wire_recv(sv[1], &type, buf, sizeof(buf), &len), 0);
	assert_int_equal(type, MIG_MSG_PING);
	assert_int_equal(len, 8);
	assert_int_equal(mig_wire_dec_u64(buf, len, &seq), 0);
	assert_int_equal(seq, 12345);
	assert_int_equal(mig_wire_recv(sv[1], &type, buf, sizeof(buf), &len), 0);
	assert_int_equal(type, MIG_MSG_EOS);
	assert_int_equal(len, 0);
	/* what the peer would reject is never sent */
	assert_int_equal(mig_wire_send(sv[0], MIG_MSG_PING, payload, 7), -EINVAL);
	assert_int_equal(mig_wire_send(sv[0], 99, payload, 8), -EINVAL);
	assert_int_equal(mig_wire_send(sv[0], MIG_MSG_EOS, payload, 1), -EINVAL);
	/* a payload larger than the buffer */
	assert_int_equal(mig_wire_send(sv[0], MIG_MSG_PING, payload, 8), 0);
	assert_int_equal(mig_wire_recv(sv[1], &type, buf, 4, &len), -EMSGSIZE);
	close(sv[0]);
	close(sv[1]);
}

/* A large PAGES run: more than a socket buffer, so writes are partial and
 * the reader must loop. */
struct reader {
	int fd;
	uint8_t *buf;
	int r;
	uint32_t type, len;
};

static void *reader_thread(void *arg)
{
	struct reader *rd = arg;

	rd->r = mig_wire_recv(rd->fd, &rd->type, rd->buf, MIG_WIRE_MAX_PAYLOAD,
			      &rd->len);
	return NULL;
}

static void test_send2_large(void **state)
{
	const uint32_t npages = MIG_WIRE_MAX_RUN_PAGES;
	uint8_t hdr[MIG_PAGES_HDR_BYTES];
	uint8_t *data = malloc((size_t)npages * PAGE);
	struct reader rd = { .buf = malloc(MIG_WIRE_MAX_PAYLOAD) };
	struct mig_pages p;
	pthread_t th;
	int sv[2];

	assert_non_null(data);
	assert_non_null(rd.buf);
	for (size_t i = 0; i < (size_t)npages * PAGE; i++)
		data[i] = (uint8_t)(i * 7 + i / PAGE);
	pair(sv);
	rd.fd = sv[1];
	assert_int_equal(pthread_create(&th, NULL, reader_thread, &rd), 0);
	mig_wire_enc_pages_hdr(hdr, PAGE, npages, 0);
	assert_int_equal(mig_wire_send2(sv[0], MIG_MSG_PAGES, hdr, sizeof(hdr),
					data, (size_t)npages * PAGE), 0);
	pthread_join(th, NULL);
	assert_int_equal(rd.r, 0);
	assert_int_equal(rd.type, MIG_MSG_PAGES);
	assert_int_equal(rd.len, sizeof(hdr) + (size_t)npages * PAGE);
	assert_int_equal(mig_wire_dec_pages(rd.buf, rd.len, RAM, &p), 0);
	assert_int_equal(p.offset, PAGE);
	assert_int_equal(p.npages, npages);
	assert_memory_equal(p.data, data, (size_t)npages * PAGE);
	close(sv[0]);
	close(sv[1]);
	free(data);
	free(rd.buf);
}

/* mig_wire_send_file, one max run of a memfd (past the pipe's and the
 * socket's buffers): spliced, the pipe kept; from the mapping without a
 * pipe; and where the file cannot splice, the pipe closed and the bytes
 * sent from the mapping, whole either way. */
static void send_file_once(int file, const uint8_t *map, int pipe[2])
{
	const uint32_t npages = MIG_WIRE_MAX_RUN_PAGES;
	uint8_t hdr[MIG_PAGES_HDR_BYTES];
	struct reader rd = { .buf = malloc(MIG_WIRE_MAX_PAYLOAD) };
	struct mig_pages p;
	pthread_t th;
	int sv[2];

	assert_non_null(rd.buf);
	pair(sv);
	rd.fd = sv[1];
	assert_int_equal(pthread_create(&th, NULL, reader_thread, &rd), 0);
	mig_wire_enc_pages_hdr(hdr, 2 * PAGE, npages, 0);
	assert_int_equal(mig_wire_send_file(sv[0], MIG_MSG_PAGES, hdr, sizeof(hdr),
					    file, 2 * PAGE, map + 2 * PAGE,
					    (size_t)npages * PAGE, pipe), 0);
	pthread_join(th, NULL);
	assert_int_equal(rd.r, 0);
	assert_int_equal(rd.type, MIG_MSG_PAGES);
	assert_int_equal(mig_wire_dec_pages(rd.buf, rd.len, RAM, &p), 0);
	assert_int_equal(p.offset, 2 * PAGE);
	assert_int_equal(p.npages, npages);
	assert_memory_equal(p.data, map + 2 * PAGE, (size_t)npages * PAGE);
	close(sv[0]);
	close(sv[1]);
	free(rd.buf);
}

static void test_send_file(void **state)
{
	const size_t len = (MIG_WIRE_MAX_RUN_PAGES + 2) * PAGE;
	int mfd = memfd_create("test-wire", MFD_CLOEXEC), pp[2], none[2] = { -1, -1 };
	int dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	uint8_t *map;

	assert_true(mfd >= 0 && dir >= 0);
	assert_int_equal(ftruncate(mfd, (off_t)len), 0);
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	assert_true(map != MAP_FAILED);
	for (size_t i = 0; i < len; i++)
		map[i] = (uint8_t)(i * 13 + i / PAGE);
	assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
	send_file_once(mfd, map, pp);
	assert_true(pp[0] >= 0 && pp[1] >= 0); /* spliced */
	send_file_once(mfd, map, none);
	/* a directory has no splice_read: EINVAL, as a file that cannot */
	send_file_once(dir, map, pp);
	assert_int_equal(pp[0], -1);
	assert_int_equal(pp[1], -1);
	munmap(map, len);
	close(mfd);
	close(dir);
}

static void test_recv_eof(void **state)
{
	uint8_t raw[8 + 5], buf[64];
	uint32_t type, len;
	int sv[2];

	/* peer closes mid-payload: header says 16 bytes, 5 arrive */
	pair(sv);
	mig_put_be32(raw, MIG_MSG_REQ);
	mig_put_be32(raw + 4, 16);
	memset(raw + 8, 0, 5);
	assert_int_equal(write(sv[0], raw, sizeof(raw)), (ssize_t)sizeof(raw));
	close(sv[0]);
	assert_int_equal(mig_wire_recv(sv[1], &type, buf, sizeof(buf), &len),
			 -ECONNRESET);
	close(sv[1]);

	/* peer closes mid-header */
	pair(sv);
	assert_int_equal(write(sv[0], raw, 3), 3);
	close(sv[0]);
	assert_int_equal(mig_wire_recv(sv[1], &type, buf, sizeof(buf), &len),
			 -ECONNRESET);
	close(sv[1]);

	/* peer closes before anything */
	pair(sv);
	close(sv[0]);
	assert_int_equal(mig_wire_recv(sv[1], &type, buf, sizeof(buf), &len),
			 -ECONNRESET);
	close(sv[1]);
}

static void test_recv_garbage(void **state)
{
	static const char junk[] = "GET / HTTP/1.1\r\n";
	uint8_t raw[8], buf[64];
	uint32_t type, len;
	int sv[2];

	pair(sv);
	assert_int_equal(write(sv[0], junk, 16), 16);
	assert_int_equal(mig_wire_recv(sv[1], &type, buf, sizeof(buf), &len),
			 -EBADMSG);
	close(sv[0]);
	close(sv[1]);

	/* a known type with a hostile length */
	pair(sv);
	mig_put_be32(raw, MIG_MSG_SWITCHOVER);
	mig_put_be32(raw + 4, UINT32_MAX);
	assert_int_equal(write(sv[0], raw, 8), 8);
	assert_int_equal(mig_wire_recv(sv[1], &type, buf, sizeof(buf), &len),
			 -EBADMSG);
	close(sv[0]);
	close(sv[1]);
}

static void test_recv_timeout(void **state)
{
	struct timeval tv = { .tv_usec = 20000 };
	uint8_t buf[64];
	uint32_t type, len;
	int sv[2];

	pair(sv);
	assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv,
				    sizeof(tv)), 0);
	assert_int_equal(mig_wire_recv(sv[1], &type, buf, sizeof(buf), &len),
			 -ETIMEDOUT);
	close(sv[0]);
	close(sv[1]);
}

static void test_send_closed_peer(void **state)
{
	uint8_t payload[8] = { 0 };
	int sv[2];

	/* no SIGPIPE (it would kill this test), just an error */
	pair(sv);
	close(sv[1]);
	assert_int_equal(mig_wire_send(sv[0], MIG_MSG_PING, payload, 8), -EPIPE);
	close(sv[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_round_trip),
		cmocka_unit_test(test_hdr_rejects),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_refuse),
		cmocka_unit_test(test_ram_info),
		cmocka_unit_test(test_pages_round_trip),
		cmocka_unit_test(test_pages_rejects),
		cmocka_unit_test(test_pages_short),
		cmocka_unit_test(test_req),
		cmocka_unit_test(test_bitmap),
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_u64),
		cmocka_unit_test(test_fuzz_decoders),
		cmocka_unit_test(test_compress_round_trip),
		cmocka_unit_test(test_decompress_corrupt),
		cmocka_unit_test(test_send_recv),
		cmocka_unit_test(test_send2_large),
		cmocka_unit_test(test_send_file),
		cmocka_unit_test(test_recv_eof),
		cmocka_unit_test(test_recv_garbage),
		cmocka_unit_test(test_recv_timeout),
		cmocka_unit_test(test_send_closed_peer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
