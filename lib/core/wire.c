// SPDX-License-Identifier: MIT
/*
 * The migration stream: codecs and framed I/O (see wire.h). Every decoder
 * checks the length it was given before it reads a byte, so a hostile peer
 * can make a message fail but never make us read past it or accept a page
 * run outside guest RAM.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/bytes.h"
#include "base/util.h"
#include "core/chan.h"
#include "core/tls.h"
#include "core/wire.h"

_Static_assert(MIG_PAGE_SIZE == 4096u, "wire.h spells the page size out");
_Static_assert(MIG_WIRE_MAX_PAYLOAD >= MIG_WIRE_MAX_STATE_BYTES,
	       "a state blob must fit a receive buffer");
_Static_assert(MIG_WIRE_MAX_PAYLOAD >=
		       MIG_BITMAP_HDR_BYTES + MIG_WIRE_MAX_BITMAP_BITS / 8,
	       "a bitmap chunk must fit a receive buffer");

/* Payload length limits per message type; name == NULL: unknown type. */
struct msg_limits {
	const char *name;
	uint32_t min;
	uint32_t max;
};

#define LIM(t, lo, hi) [MIG_MSG_##t] = { #t, (lo), (hi) }

static const struct msg_limits msg_limits[] = {
	LIM(HELLO, MIG_HELLO_BYTES, MIG_HELLO_BYTES),
	LIM(REFUSE, 4, 4 + MIG_WIRE_MAX_REASON),
	LIM(RAM_INFO, MIG_RAM_INFO_BYTES, MIG_RAM_INFO_BYTES),
	LIM(PAGES, MIG_PAGES_HDR_BYTES,
	    MIG_PAGES_HDR_BYTES + MIG_WIRE_MAX_PAGES_DATA),
	LIM(SWITCHOVER, 1, MIG_WIRE_MAX_STATE_BYTES),
	LIM(EOS, 0, 0),
	LIM(CANCEL, 0, 0),
	LIM(RESUME, 0, 0),
	LIM(PING, 8, 8),
	LIM(PONG, 8, 8),
	LIM(DISCARD, MIG_REQ_BYTES, MIG_REQ_BYTES),
	LIM(REQ, MIG_REQ_BYTES, MIG_REQ_BYTES),
	LIM(COMPLETE, 0, 0),
	LIM(BITMAP, MIG_BITMAP_HDR_BYTES + 1,
	    MIG_BITMAP_HDR_BYTES + MIG_WIRE_MAX_BITMAP_BITS / 8),
	LIM(BITMAP_END, 8, 8),
	LIM(RESUME_ACK, 0, 0),
};

static const struct msg_limits *limits_of(uint32_t type)
{
	if (type >= MIG_ARRAY_SIZE(msg_limits) || !msg_limits[type].name)
		return NULL;
	return &msg_limits[type];
}

static bool len_ok(uint32_t type, uint64_t len)
{
	const struct msg_limits *l = limits_of(type);

	return l && len >= l->min && len <= l->max;
}

void mig_wire_enc_hdr(uint8_t out[MIG_WIRE_HDR_BYTES], uint32_t type,
		      uint32_t len)
{
	mig_put_be32(out, type);
	mig_put_be32(out + 4, len);
}

int mig_wire_dec_hdr(const uint8_t in[MIG_WIRE_HDR_BYTES], uint32_t *type,
		     uint32_t *len)
{
	uint32_t t = mig_get_be32(in), l = mig_get_be32(in + 4);

	if (!len_ok(t, l))
		return -EBADMSG;
	*type = t;
	*len = l;
	return 0;
}

const char *mig_wire_type_name(uint32_t type)
{
	const struct msg_limits *l = limits_of(type);

	return l ? l->name : "?";
}

size_t mig_wire_enc_hello(uint8_t *out, const struct mig_hello *h)
{
	mig_put_be32(out, MIG_WIRE_MAGIC);
	mig_put_be32(out + 4, h->version);
	mig_put_be32(out + 8, h->role);
	mig_put_be32(out + 12, h->flags);
	memcpy(out + 16, h->uuid, 16);
	return MIG_HELLO_BYTES;
}

int mig_wire_dec_hello(const uint8_t *in, size_t len, struct mig_hello *h)
{
	uint32_t role, flags;

	if (len != MIG_HELLO_BYTES)
		return -EBADMSG;
	/* magic and version first: a peer speaking something else is a
	 * protocol mismatch to report as such, not a malformed message */
	if (mig_get_be32(in) != MIG_WIRE_MAGIC ||
	    mig_get_be32(in + 4) != MIG_WIRE_VERSION)
		return -EPROTO;
	role = mig_get_be32(in + 8);
	flags = mig_get_be32(in + 12);
	if ((role != MIG_ROLE_MAIN && role != MIG_ROLE_PREEMPT &&
	     role != MIG_ROLE_BULK) || (flags & ~MIG_HELLO_FLAGS_ALL))
		return -EBADMSG;
	/* a bulk channel says which it is; main, how many follow it */
	if (role != MIG_ROLE_MAIN &&
	    (role == MIG_ROLE_BULK) != (MIG_HELLO_BULK_OF(flags) != 0))
		return -EBADMSG;
	h->version = MIG_WIRE_VERSION;
	h->role = role;
	h->flags = flags;
	memcpy(h->uuid, in + 16, 16);
	return 0;
}

size_t mig_wire_enc_refuse(uint8_t *out, uint32_t code, const char *reason)
{
	size_t n = reason ? strnlen(reason, MIG_WIRE_MAX_REASON) : 0;

	mig_put_be32(out, code);
	memcpy(out + 4, reason ? reason : "", n);
	return 4 + n;
}

/* Any code is accepted: a refusal with a code we do not know is still a
 * refusal, and its reason text says why. */
int mig_wire_dec_refuse(const uint8_t *in, size_t len, struct mig_refuse *r)
{
	size_t n;

	if (len < 4 || len > 4 + MIG_WIRE_MAX_REASON)
		return -EBADMSG;
	n = len - 4;
	r->code = mig_get_be32(in);
	for (size_t i = 0; i < n; i++) {
		uint8_t c = in[4 + i];

		/* the reason ends up in logs and on terminals */
		r->reason[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	r->reason[n] = '\0';
	return 0;
}

size_t mig_wire_enc_ram_info(uint8_t *out, const struct mig_ram_info *ri)
{
	mig_put_be64(out, ri->ram_bytes);
	mig_put_be32(out + 8, ri->page_size);
	mig_put_be32(out + 12, ri->flags);
	return MIG_RAM_INFO_BYTES;
}

int mig_wire_dec_ram_info(const uint8_t *in, size_t len,
			  struct mig_ram_info *ri)
{
	uint64_t ram;

	if (len != MIG_RAM_INFO_BYTES)
		return -EBADMSG;
	ram = mig_get_be64(in);
	if (mig_get_be32(in + 8) != MIG_PAGE_SIZE || mig_get_be32(in + 12) != 0)
		return -EBADMSG;
	if (ram == 0 || ram > MIG_WIRE_MAX_RAM_BYTES)
		return -ERANGE;
	if (ram % MIG_PAGE_SIZE)
		return -EBADMSG;
	ri->ram_bytes = ram;
	ri->page_size = MIG_PAGE_SIZE;
	ri->flags = 0;
	return 0;
}

/* A page run [offset, offset + npages pages) inside ram_bytes, written so
 * that offset near UINT64_MAX cannot wrap around. */
static int check_run(uint64_t offset, uint32_t npages, uint64_t ram_bytes)
{
	uint64_t bytes = (uint64_t)npages * MIG_PAGE_SIZE;

	if (offset % MIG_PAGE_SIZE)
		return -EBADMSG;
	if (npages == 0 || npages > MIG_WIRE_MAX_RUN_PAGES)
		return -ERANGE;
	if (offset > ram_bytes || bytes > ram_bytes - offset)
		return -ERANGE;
	return 0;
}

size_t mig_wire_enc_pages_hdr(uint8_t *out, uint64_t offset, uint32_t npages,
			      uint32_t flags)
{
	mig_put_be64(out, offset);
	mig_put_be32(out + 8, npages);
	mig_put_be32(out + 12, flags);
	return MIG_PAGES_HDR_BYTES;
}

static bool pages_datalen_ok(uint32_t flags, uint32_t npages, size_t datalen)
{
	size_t raw = (size_t)npages * MIG_PAGE_SIZE;

	if (flags & MIG_PAGES_ZERO)
		return datalen == 0;
	if (flags & MIG_PAGES_LZ4)
		return datalen >= 1 && datalen <= raw + raw / 255 + 16;
	return datalen == raw;
}

int mig_wire_dec_pages(const uint8_t *in, size_t len, uint64_t ram_bytes,
		       struct mig_pages *p)
{
	uint64_t offset;
	uint32_t npages, flags;
	size_t datalen;
	int r;

	if (len < MIG_PAGES_HDR_BYTES ||
	    len - MIG_PAGES_HDR_BYTES > MIG_WIRE_MAX_PAGES_DATA)
		return -EBADMSG;
	offset = mig_get_be64(in);
	npages = mig_get_be32(in + 8);
	flags = mig_get_be32(in + 12);
	datalen = len - MIG_PAGES_HDR_BYTES;
	if ((flags & ~MIG_PAGES_FLAGS_ALL) ||
	    (flags & MIG_PAGES_FLAGS_ALL) == MIG_PAGES_FLAGS_ALL)
		return -EBADMSG;
	r = check_run(offset, npages, ram_bytes);
	if (r < 0)
		return r;
	if (!pages_datalen_ok(flags, npages, datalen))
		return -EBADMSG;
	p->offset = offset;
	p->npages = npages;
	p->flags = flags;
	p->data = datalen ? in + MIG_PAGES_HDR_BYTES : NULL;
	p->datalen = (uint32_t)datalen;
	return 0;
}

size_t mig_wire_enc_req(uint8_t *out, const struct mig_req *r)
{
	mig_put_be64(out, r->offset);
	mig_put_be32(out + 8, r->npages);
	mig_put_be32(out + 12, 0);
	return MIG_REQ_BYTES;
}

int mig_wire_dec_req(const uint8_t *in, size_t len, uint64_t ram_bytes,
		     struct mig_req *r)
{
	uint64_t offset;
	uint32_t npages;
	int ret;

	if (len != MIG_REQ_BYTES || mig_get_be32(in + 12) != 0)
		return -EBADMSG;
	offset = mig_get_be64(in);
	npages = mig_get_be32(in + 8);
	ret = check_run(offset, npages, ram_bytes);
	if (ret < 0)
		return ret;
	r->offset = offset;
	r->npages = npages;
	return 0;
}

size_t mig_wire_enc_bitmap_hdr(uint8_t *out, uint64_t first_page,
			       uint32_t nbits)
{
	mig_put_be64(out, first_page);
	mig_put_be32(out + 8, nbits);
	mig_put_be32(out + 12, 0);
	return MIG_BITMAP_HDR_BYTES;
}

int mig_wire_dec_bitmap(const uint8_t *in, size_t len, uint64_t total_pages,
			struct mig_bitmap_chunk *c)
{
	uint64_t first;
	uint32_t nbits;
	const uint8_t *bits;

	if (len < MIG_BITMAP_HDR_BYTES || mig_get_be32(in + 12) != 0)
		return -EBADMSG;
	bits = in + MIG_BITMAP_HDR_BYTES;
	first = mig_get_be64(in);
	nbits = mig_get_be32(in + 8);
	if (nbits == 0 || nbits > MIG_WIRE_MAX_BITMAP_BITS)
		return -ERANGE;
	if (len - MIG_BITMAP_HDR_BYTES != (nbits + 7) / 8)
		return -EBADMSG;
	/* bits past nbits in the last byte must be zero: they would name
	 * pages this chunk does not cover */
	if ((nbits % 8) && (bits[nbits / 8] >> (nbits % 8)))
		return -EBADMSG;
	if (first > total_pages || nbits > total_pages - first)
		return -ERANGE;
	c->first_page = first;
	c->nbits = nbits;
	c->bits = bits;
	return 0;
}

size_t mig_wire_enc_u64(uint8_t *out, uint64_t v)
{
	mig_put_be64(out, v);
	return 8;
}

int mig_wire_dec_u64(const uint8_t *in, size_t len, uint64_t *v)
{
	if (len != 8)
		return -EBADMSG;
	*v = mig_get_be64(in);
	return 0;
}

/* Drop n written bytes from the front of msg's iovec array. */
static void iov_advance(struct msghdr *msg, size_t n)
{
	while (msg->msg_iovlen && n >= msg->msg_iov->iov_len) {
		n -= msg->msg_iov->iov_len;
		msg->msg_iov++;
		msg->msg_iovlen--;
	}
	if (msg->msg_iovlen) {
		msg->msg_iov->iov_base = (uint8_t *)msg->msg_iov->iov_base + n;
		msg->msg_iov->iov_len -= n;
	}
}

static int send_iov(int fd, struct iovec *iov, int cnt, int flags)
{
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = cnt };

	if (mig_tls_active(fd))
		return mig_tls_sendv(fd, iov, cnt);
	iov_advance(&msg, 0);
	while (msg.msg_iovlen) {
		/* MSG_NOSIGNAL: a vanished peer is an error to handle (a
		 * pause), not a SIGPIPE that kills the engine */
		ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | flags);

		if (n < 0 && errno == ENOTSOCK)
			n = writev(fd, msg.msg_iov, (int)msg.msg_iovlen);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			if (!mig_chan_moving(fd))
				return -ETIMEDOUT;
			continue;
		}
		iov_advance(&msg, (size_t)n);
	}
	return 0;
}

/* The header of a message of two parts; -EINVAL for one the peer would
 * reject as a bad header, which is then never sent. */
static int enc_hdr2(uint8_t *hdr, uint32_t type, size_t l1, size_t l2)
{
	if (l1 > UINT32_MAX || l2 > UINT32_MAX ||
	    !len_ok(type, (uint64_t)l1 + l2))
		return -EINVAL;
	mig_wire_enc_hdr(hdr, type, (uint32_t)(l1 + l2));
	return 0;
}

int mig_wire_send2(int fd, uint32_t type, const void *p1, size_t l1,
		   const void *p2, size_t l2)
{
	uint8_t hdr[MIG_WIRE_HDR_BYTES];
	struct iovec iov[3];

	if (enc_hdr2(hdr, type, l1, l2) < 0)
		return -EINVAL;
	iov[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
	iov[1] = (struct iovec){ .iov_base = (void *)p1, .iov_len = l1 };
	iov[2] = (struct iovec){ .iov_base = (void *)p2, .iov_len = l2 };
	return send_iov(fd, iov, 3, 0);
}

/* Move len bytes of file at off through pipe into socket fd, counting in
 * *done those that reached the socket. */
static int splice_out(int fd, int file, uint64_t off, size_t len,
		      const int pipe[2], size_t *done)
{
	loff_t o = (loff_t)off;

	while (*done < len) {
		ssize_t in = splice(file, &o, pipe[1], NULL, len - *done,
				    SPLICE_F_MOVE);

		if (in < 0 && errno == EINTR)
			continue;
		if (in <= 0)
			return in < 0 ? -errno : -EIO;
		while (in) {
			bool more = *done + (size_t)in < len;
			ssize_t n = splice(pipe[0], NULL, fd, NULL, (size_t)in,
					   SPLICE_F_MOVE |
					   (more ? SPLICE_F_MORE : 0));

			if (n < 0 && (errno == EINTR ||
				      (errno == EAGAIN && mig_chan_moving(fd))))
				continue;
			if (n < 0)
				return errno == EAGAIN ? -ETIMEDOUT : -errno;
			in -= n;
			*done += (size_t)n;
		}
	}
	return 0;
}

int mig_wire_send_file(int fd, uint32_t type, const void *p1, size_t l1,
		       int file, uint64_t off, const void *map, size_t len,
		       int pipe[2])
{
	uint8_t hdr[MIG_WIRE_HDR_BYTES];
	size_t done = 0;
	int r;

	if (pipe[0] < 0 || mig_tls_active(fd))
		return mig_wire_send2(fd, type, p1, l1, map, len);
	if (enc_hdr2(hdr, type, l1, len) < 0)
		return -EINVAL;
	/* MSG_MORE: the header leaves in the data's first segment */
	r = send_iov(fd, (struct iovec[]){ { hdr, sizeof(hdr) },
					   { (void *)p1, l1 } }, 2, MSG_MORE);
	if (r < 0 || (r = splice_out(fd, file, off, len, pipe, &done)) == 0)
		return r;
	/* the pipe may hold bytes of this message: it goes with them, and
	 * later sends copy; this pair cannot splice (EINVAL): the rest of
	 * the message goes from the mapping */
	close(pipe[0]);
	close(pipe[1]);
	pipe[0] = pipe[1] = -1;
	if (r == -EINVAL)
		r = send_iov(fd, (struct iovec[]){
			{ (uint8_t *)map + done, len - done } }, 1, 0);
	return r;
}

int mig_wire_send(int fd, uint32_t type, const void *payload, size_t len)
{
	return mig_wire_send2(fd, type, payload, len, NULL, 0);
}

/* EOF, even mid-message, is -ECONNRESET; a SO_RCVTIMEO expiry -ETIMEDOUT. */
static int recv_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = mig_tls_read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ?
			       -ETIMEDOUT : -errno;
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int mig_wire_recv_hdr(int fd, uint32_t *type, uint32_t *len)
{
	uint8_t hdr[MIG_WIRE_HDR_BYTES];
	int r = recv_full(fd, hdr, sizeof(hdr));

	return r < 0 ? r : mig_wire_dec_hdr(hdr, type, len);
}

int mig_wire_recv_bytes(int fd, uint8_t *buf, size_t len)
{
	return recv_full(fd, buf, len);
}

int mig_wire_recv(int fd, uint32_t *type, uint8_t *buf, size_t cap,
		  uint32_t *len)
{
	uint32_t t, l;
	int r = mig_wire_recv_hdr(fd, &t, &l);

	if (r < 0)
		return r;
	if (l > cap)
		return -EMSGSIZE;
	r = recv_full(fd, buf, l);
	if (r < 0)
		return r;
	*type = t;
	*len = l;
	return 0;
}
