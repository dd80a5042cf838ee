/* SPDX-License-Identifier: MIT */
/*
 * The migration stream (man/mig-protocol.7 has the byte layout). Every
 * message is an 8-byte header (big-endian u32 type, u32 payload length)
 * followed by the payload. Encoders write into caller buffers; decoders
 * validate every length, flag and offset and return an error for anything
 * malformed or hostile: a bad stream can never make us write outside guest
 * RAM or read past a buffer.
 */
#ifndef MIG_WIRE_H
#define MIG_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define MIG_WIRE_MAGIC 0x4d494757u /* "MIGW": first word of every hello */
#define MIG_WIRE_VERSION 1u
#define MIG_WIRE_HDR_BYTES 8u
/* Largest page run in one PAGES message: 2 MiB, one huge page's worth; the
 * pump sends 64 KiB runs (no placement gain above that, MACHINE-FACTS) but
 * a decoder accepts up to this. */
#define MIG_WIRE_MAX_RUN_PAGES 512u
/* Guest state blobs are small (vCPU cursors); 1 MiB bounds a hostile one. */
#define MIG_WIRE_MAX_STATE_BYTES (1u << 20)
/* Bits per BITMAP chunk: 512 Ki pages = 2 GiB of guest RAM per message. */
#define MIG_WIRE_MAX_BITMAP_BITS (512u * 1024u)
/* Guest RAM limit accepted from a peer: 1 TiB. */
#define MIG_WIRE_MAX_RAM_BYTES (1ull << 40)
#define MIG_WIRE_MAX_REASON 256u
/* Largest PAGES data: LZ4's worst case for a maximal run of 4 KiB pages
 * (LZ4_COMPRESSBOUND, n + n/255 + 16, spelled out so that lz4.h stays inside
 * the compression module). Raw runs are smaller. */
#define MIG_WIRE_MAX_RUN_BYTES (MIG_WIRE_MAX_RUN_PAGES * 4096u)
#define MIG_WIRE_MAX_PAGES_DATA \
	(MIG_WIRE_MAX_RUN_BYTES + MIG_WIRE_MAX_RUN_BYTES / 255u + 16u)
/* Upper bound on any payload, for receive buffers: a maximal LZ4 page run
 * (2 MiB + 8 KiB) is the largest message, larger than a state blob. */
#define MIG_WIRE_MAX_PAYLOAD (16u + MIG_WIRE_MAX_PAGES_DATA)

enum mig_msg_type {
	/* either direction, first message on every channel */
	MIG_MSG_HELLO = 1,      /* struct mig_hello */
	MIG_MSG_REFUSE = 2,     /* struct mig_refuse, then the sender closes */
	/* source -> destination (main and preempt channels) */
	MIG_MSG_RAM_INFO = 3,   /* struct mig_ram_info */
	MIG_MSG_PAGES = 4,      /* struct mig_pages */
	MIG_MSG_SWITCHOVER = 5, /* guest state blob; the guest runs on the dest */
	MIG_MSG_EOS = 6,        /* every page has been sent at least once */
	MIG_MSG_CANCEL = 7,     /* migration cancelled before switchover */
	MIG_MSG_RESUME = 8,     /* recovery: bitmap applied, resume postcopy */
	MIG_MSG_PING = 9,       /* heartbeat, be64 sequence; either direction */
	MIG_MSG_PONG = 10,      /* heartbeat answer, same sequence */
	MIG_MSG_DISCARD = 11,   /* struct mig_req: drop these received pages */
	/* destination -> source (return path) */
	MIG_MSG_REQ = 16,       /* struct mig_req: pages a vCPU is waiting for */
	MIG_MSG_COMPLETE = 17,  /* every page is present on the destination */
	MIG_MSG_BITMAP = 18,    /* struct mig_bitmap_chunk: pages received */
	MIG_MSG_BITMAP_END = 19,/* be64 total pages: the bitmap is complete */
	MIG_MSG_RESUME_ACK = 20,/* the guest runs here: after SWITCHOVER or RESUME */
};

/* Channel roles carried in the hello. */
enum mig_role {
	MIG_ROLE_MAIN = 1,
	MIG_ROLE_PREEMPT = 2,
	MIG_ROLE_BULK = 3,      /* another stream of background pages */
};

/* Hello flags. */
#define MIG_HELLO_RESUME 0x1u   /* this connection recovers a paused migration */
#define MIG_HELLO_PREEMPT 0x2u  /* main hello: a preempt channel will follow */
/* Bits 8-10: in a main hello, how many bulk channels follow it (0-7); in
 * a bulk hello, which one this is (1-7). */
#define MIG_HELLO_BULK_SHIFT 8
#define MIG_HELLO_BULK_MASK (7u << MIG_HELLO_BULK_SHIFT)
#define MIG_WIRE_MAX_BULK 7u
#define MIG_HELLO_BULK(n) ((uint32_t)(n) << MIG_HELLO_BULK_SHIFT)
#define MIG_HELLO_BULK_OF(flags) (((flags) & MIG_HELLO_BULK_MASK) >> \
				  MIG_HELLO_BULK_SHIFT)
#define MIG_HELLO_FLAGS_ALL (MIG_HELLO_RESUME | MIG_HELLO_PREEMPT | \
			     MIG_HELLO_BULK_MASK)

/* Refusal reasons. */
enum mig_refuse_code {
	MIG_REFUSE_VERSION = 1,
	MIG_REFUSE_UUID = 2,
	MIG_REFUSE_ROLE = 3,
	MIG_REFUSE_STATE = 4,   /* not expecting this connection now */
	MIG_REFUSE_PROTOCOL = 5,
};

/* PAGES flags. */
#define MIG_PAGES_ZERO 0x1u /* every page of the run is zero: no data */
#define MIG_PAGES_LZ4 0x2u  /* data is one LZ4 block of npages*4096 bytes */
#define MIG_PAGES_FLAGS_ALL (MIG_PAGES_ZERO | MIG_PAGES_LZ4)

struct mig_hello {
	uint32_t version;
	uint32_t role;   /* enum mig_role */
	uint32_t flags;  /* MIG_HELLO_* */
	uint8_t uuid[16];
};
#define MIG_HELLO_BYTES 32u

struct mig_refuse {
	uint32_t code;                        /* enum mig_refuse_code */
	char reason[MIG_WIRE_MAX_REASON + 1]; /* NUL-terminated, printable */
};

struct mig_ram_info {
	uint64_t ram_bytes; /* multiple of page_size, 1..MIG_WIRE_MAX_RAM_BYTES */
	uint32_t page_size; /* must be MIG_PAGE_SIZE */
	uint32_t flags;     /* reserved, 0 */
};
#define MIG_RAM_INFO_BYTES 16u

/* PAGES payload: be64 offset, be32 npages, be32 flags, then data. */
struct mig_pages {
	uint64_t offset;     /* bytes into guest RAM, page aligned */
	uint32_t npages;     /* 1..MIG_WIRE_MAX_RUN_PAGES */
	uint32_t flags;      /* MIG_PAGES_* (ZERO and LZ4 exclusive) */
	const uint8_t *data; /* points into the decoded buffer */
	uint32_t datalen;    /* raw: npages*4096; zero: 0; lz4: 1..bound */
};
#define MIG_PAGES_HDR_BYTES 16u

/* REQ / DISCARD payload: be64 offset, be32 npages, be32 reserved (0). */
struct mig_req {
	uint64_t offset;
	uint32_t npages;
};
#define MIG_REQ_BYTES 16u

/* BITMAP payload: be64 first_page, be32 nbits, be32 reserved, packed bits
 * (bit i of byte k = page first_page + 8k + i), (nbits+7)/8 bytes. */
struct mig_bitmap_chunk {
	uint64_t first_page;
	uint32_t nbits;      /* 1..MIG_WIRE_MAX_BITMAP_BITS */
	const uint8_t *bits;
};
#define MIG_BITMAP_HDR_BYTES 16u

/* Decoders return 0, or -EBADMSG (malformed: wrong length, reserved bits,
 * unknown flags), -ERANGE (offsets/sizes outside guest RAM or limits),
 * -EPROTO (wrong magic or version in a hello). */

/* Header: type must be known and len within that type's limit. */
void mig_wire_enc_hdr(uint8_t out[MIG_WIRE_HDR_BYTES], uint32_t type,
		      uint32_t len);
int mig_wire_dec_hdr(const uint8_t in[MIG_WIRE_HDR_BYTES], uint32_t *type,
		     uint32_t *len);
/* Name for logs ("PAGES"); "?" if unknown. */
const char *mig_wire_type_name(uint32_t type);

size_t mig_wire_enc_hello(uint8_t *out, const struct mig_hello *h);
int mig_wire_dec_hello(const uint8_t *in, size_t len, struct mig_hello *h);

/* Reason is truncated to MIG_WIRE_MAX_REASON. out needs 4+256 bytes. */
size_t mig_wire_enc_refuse(uint8_t *out, uint32_t code, const char *reason);
/* Non-printable bytes in the reason are replaced by '?'. */
int mig_wire_dec_refuse(const uint8_t *in, size_t len, struct mig_refuse *r);

size_t mig_wire_enc_ram_info(uint8_t *out, const struct mig_ram_info *ri);
int mig_wire_dec_ram_info(const uint8_t *in, size_t len,
			  struct mig_ram_info *ri);

/* Only the 16-byte PAGES header; the data follows it on the wire. */
size_t mig_wire_enc_pages_hdr(uint8_t *out, uint64_t offset, uint32_t npages,
			      uint32_t flags);
/* ram_bytes bounds offset + npages*4096. */
int mig_wire_dec_pages(const uint8_t *in, size_t len, uint64_t ram_bytes,
		       struct mig_pages *p);

size_t mig_wire_enc_req(uint8_t *out, const struct mig_req *r);
int mig_wire_dec_req(const uint8_t *in, size_t len, uint64_t ram_bytes,
		     struct mig_req *r);

/* Only the 16-byte BITMAP header; the bits follow. */
size_t mig_wire_enc_bitmap_hdr(uint8_t *out, uint64_t first_page,
			       uint32_t nbits);
/* total_pages bounds first_page + nbits. */
int mig_wire_dec_bitmap(const uint8_t *in, size_t len, uint64_t total_pages,
			struct mig_bitmap_chunk *c);

/* be64 payloads: PING/PONG sequence, BITMAP_END total pages. */
size_t mig_wire_enc_u64(uint8_t *out, uint64_t v);
int mig_wire_dec_u64(const uint8_t *in, size_t len, uint64_t *v);

/* I/O on a connected stream socket. The caller serialises writers. */
/* Header + payload in one sendmsg (MSG_NOSIGNAL; writev on a non-socket),
 * retried over short writes and EINTR: 0, -EINVAL if type/len would not pass
 * the peer's header check, -ETIMEDOUT on a SO_SNDTIMEO expiry, else -errno.
 * After an error the stream is out of sync: close it. */
int mig_wire_send(int fd, uint32_t type, const void *payload, size_t len);
/* header + two payload parts (e.g. PAGES header and page data), no copy. */
int mig_wire_send2(int fd, uint32_t type, const void *p1, size_t l1,
		   const void *p2, size_t l2);
/* Like mig_wire_send2, the second part being len bytes of `file` at off,
 * spliced through `pipe` (the caller's, empty, or -1s) into the socket:
 * the kernel takes references to the file's pages instead of copying them,
 * so they must not change until the peer has them (a stopped guest's).
 * The bytes go from `map` (the same bytes, mapped) over TLS or with no
 * pipe. A splice that fails closes the pipe (sets it to -1s: it never
 * holds stale bytes); where the pair cannot splice (EINVAL) the rest goes
 * from `map`, and so do later sends. */
int mig_wire_send_file(int fd, uint32_t type, const void *p1, size_t l1,
		       int file, uint64_t off, const void *map, size_t len,
		       int pipe[2]);
/* Read one message: validates the header, payload into buf (cap bytes,
 * at least MIG_WIRE_MAX_PAYLOAD is always enough). -EBADMSG on a bad header,
 * -EMSGSIZE if it does not fit, -ECONNRESET on EOF (also mid-message),
 * -ETIMEDOUT when SO_RCVTIMEO expires (EAGAIN), else -errno. After any error
 * the stream is out of sync: close it. */
int mig_wire_recv(int fd, uint32_t *type, uint8_t *buf, size_t cap,
		  uint32_t *len);
/* The same in parts, for a reader that acts on a payload's start before
 * the rest is in: a validated header, then exactly len bytes (as often as
 * needed until the payload is read). Errors as mig_wire_recv's. */
int mig_wire_recv_hdr(int fd, uint32_t *type, uint32_t *len);
int mig_wire_recv_bytes(int fd, uint8_t *buf, size_t len);

#endif
