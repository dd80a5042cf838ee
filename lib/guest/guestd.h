/* SPDX-License-Identifier: MIT */
/*
 * mig-guest, the guest-memory process: guest RAM (a memfd mapped MAP_SHARED),
 * the vCPU threads running a workload over it, and the control socket an
 * engine drives it through. Also the control protocol's wire definitions,
 * shared with the client in guest.c.
 *
 * Control protocol: SOCK_SEQPACKET, one request -> one reply, each a single
 * message: a 20-byte little-endian header (magic, version, op, seq, status,
 * payload length) and a small payload (POKE's page number, DIGEST's value:
 * u64 little-endian). fds travel with SCM_RIGHTS: GET_FDS's
 * reply carries the memfd (and the uffd while incoming); a state blob (up to
 * 1 MiB, too large for one datagram) travels in a sealed memfd, the payload
 * giving its length. Replies echo op and seq; status is 0 or -errno.
 */
#ifndef MIG_GUESTD_H
#define MIG_GUESTD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest/guest.h"

#define MIG_CTL_MAGIC 0x4347494du /* "MIGC" */
/* 2: INFO carries the migration record; BIND, SET_STATE, UNBIND, ABANDON */
#define MIG_CTL_VERSION 2u
#define MIG_CTL_HDR_BYTES 20u
/* Largest message either way: requests are a header and a few bytes, the
 * largest reply is VERIFY's one-line verdict. */
#define MIG_CTL_MSG_MAX 512u
/* VERIFY's verdict, NUL included. */
#define MIG_CTL_TEXT_MAX 256u
/* INFO reply payload: pid, flags, vcpus u32; ram_bytes, ram_base,
 * progress u64; workload spec (NUL-padded); then the migration record:
 * uuid[16], side, phase, state, reserved (u8 each), peer (NUL-padded). */
#define MIG_CTL_INFO_BYTES (12u + 24u + 64u + 20u + MIG_GUEST_PEER_MAX)
/* BIND request payload: uuid[16], side u8, reserved[3], peer (NUL-padded). */
#define MIG_CTL_BIND_BYTES (20u + MIG_GUEST_PEER_MAX)

enum mig_ctl_op {
	MIG_CTL_INFO = 1,          /* -> info payload */
	MIG_CTL_ATTACH = 2,        /* -> 0, or -EBUSY + u32 holder pid */
	MIG_CTL_GET_FDS = 3,       /* claim; -> u32 nfds + fds (memfd, uffd) */
	MIG_CTL_STOP = 4,          /* -> once every vCPU is parked */
	MIG_CTL_CONT = 5,
	MIG_CTL_SAVE_STATE = 6,    /* claim, stopped; -> u32 len + blob memfd */
	MIG_CTL_LOAD_STATE = 7,    /* u32 len + blob memfd; incoming, pre-CONT */
	MIG_CTL_INCOMING_DONE = 8, /* claim; every page present */
	MIG_CTL_VERIFY = 9,        /* -> 0 / -EBADMSG + verdict text */
	MIG_CTL_QUIT = 10,
	MIG_CTL_DIRTY_START = 11,  /* claim; not incoming; -> 0 / -ENOTSUP */
	MIG_CTL_DIRTY_STOP = 12,   /* claim */
	MIG_CTL_DIGEST = 13,       /* -> u64 digest of all RAM (vCPUs parked) */
	MIG_CTL_POKE = 14,         /* u64 page; dirty workload (vCPUs parked) */
	MIG_CTL_BIND = 15,         /* claim; bind payload; -> 0 / -EEXIST */
	MIG_CTL_SET_STATE = 16,    /* claim, bound; u32 enum mig_state */
	MIG_CTL_UNBIND = 17,       /* claim; the migration failed before the
				    * destination could run the guest */
	MIG_CTL_ABANDON = 18,      /* uuid[16]; unclaimed source guest only */
};

#define MIG_CTL_F_INCOMING 0x1u
#define MIG_CTL_F_RUNNING 0x2u
#define MIG_CTL_F_ATTACHED 0x4u
#define MIG_CTL_F_TRACKING 0x8u

struct mig_ctl_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t op;
	uint32_t seq;    /* the reply echoes it: stale replies are dropped */
	int32_t status;  /* replies: 0 or -errno; requests: 0 */
	uint32_t len;    /* payload bytes after the header */
};

void mig_ctl_hdr_pack(uint8_t *buf, const struct mig_ctl_hdr *h);
/* -EPROTO unless buf holds a whole header with our magic and version and a
 * length matching the message. */
int mig_ctl_hdr_unpack(const uint8_t *buf, size_t len, struct mig_ctl_hdr *h);
void mig_ctl_info_pack(uint8_t *buf, const struct mig_guest_info *info);
int mig_ctl_info_unpack(const uint8_t *buf, size_t len,
			struct mig_guest_info *info);
/* BIND's payload: the record's uuid, side and peer (phase and state are the
 * guest's to keep). Unpack: -EPROTO for a bad length, side or phase. */
void mig_ctl_bind_pack(uint8_t *buf, const struct mig_guest_record *rec);
int mig_ctl_bind_unpack(const uint8_t *buf, size_t len,
			struct mig_guest_record *rec);

/* A state blob in a sealed memfd (too large for one datagram): fd or -errno. */
int mig_ctl_blob_fd(const uint8_t *blob, size_t len);
/* Read len bytes from a blob fd a peer sent: only a regular file at least
 * that long, len <= MIG_WORKLOAD_MAX_STATE_BYTES; -EBADMSG otherwise.
 * *out is malloc'd. */
int mig_ctl_blob_read(int fd, size_t len, uint8_t **out);

struct mig_guestd_opts {
	const char *ctl_path;
	uint64_t ram_bytes;   /* non-zero multiple of the page size */
	const char *workload; /* spec; NULL: "ab" */
	unsigned vcpus;       /* 0: 1 */
	bool incoming;
	int ready_fd;         /* -1: none */
};

/* Run the guest until QUIT, SIGTERM or SIGINT: create RAM (registered with
 * userfaultfd when incoming), listen on the control socket, notify
 * readiness, serve. Returns 0 on a clean exit, or -errno: -EINVAL bad
 * options, -ENAMETOOLONG socket path, -EADDRINUSE socket in use, -EPERM /
 * -ENOTSUP userfaultfd not permitted / not available, -EBUSY a vCPU would
 * not exit at teardown (it is left running: the process must exit now).
 * Logs its errors. */
int mig_guestd_run(const struct mig_guestd_opts *opts);

#endif
