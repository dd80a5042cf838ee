/* SPDX-License-Identifier: MIT */
/*
 * mig-guest's control protocol, the one definition both ends use: the guest
 * process (guestd) serves it, the engines' client (guest.c) speaks it. Also
 * the two things it carries that both ends keep: the migration record and
 * the guest's info.
 *
 * SOCK_SEQPACKET, one request -> one reply, each a single message: a
 * 20-byte little-endian header (magic, version, op, seq, status, payload
 * length) and a small payload (POKE's page number, DIGEST's value: u64
 * little-endian). fds travel with SCM_RIGHTS: GET_FDS's reply carries the
 * memfd (and the uffd while incoming); a state blob (up to 1 MiB, too large
 * for one datagram) travels in a sealed memfd, the payload giving its
 * length. Replies echo op and seq; status is 0 or -errno.
 */
#ifndef MIG_GUEST_CTL_H
#define MIG_GUEST_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/state.h"

/* Longest peer address a guest records, NUL included. */
#define MIG_GUEST_PEER_MAX 256u

/*
 * The migration a guest belongs to, kept by the guest itself so that it
 * outlives any engine: the state lives in the guests, not in the engines.
 * The phase only moves forward, by what the guest sees happen to it:
 */
enum mig_guest_phase {
	MIG_GUEST_UNBOUND,   /* in no migration: the rest of the record is empty */
	MIG_GUEST_MIGRATING, /* BIND: an engine migrates it; before switchover */
	MIG_GUEST_SWITCHED,  /* source: its state was saved for the destination,
			      * it never runs here again (CONT is refused);
			      * destination: its state is loaded */
	MIG_GUEST_COMPLETED, /* every page is on the destination */
	MIG_GUEST__PHASES
};

struct mig_guest_record {
	enum mig_guest_phase phase;
	uint8_t uuid[16];
	enum mig_side side;
	enum mig_state state;        /* the engine's last, as it told us */
	char peer[MIG_GUEST_PEER_MAX]; /* source: destination URI; dest: listen URI */
};

/* "unbound", "migrating", "switched", "completed"; NULL out of range. */
const char *mig_guest_phase_name(enum mig_guest_phase p);

/* What INFO tells about a guest. */
struct mig_guest_info {
	pid_t pid;
	uint64_t ram_bytes;
	uint64_t ram_base;  /* RAM's address inside the guest process: the
			     * destination of UFFDIO_COPY */
	bool incoming;      /* RAM registered for missing faults, pages due */
	bool running;       /* vCPUs running (not stopped) */
	bool attached;      /* some engine holds the claim */
	bool tracking;      /* dirty tracking armed (DIRTY_START) */
	char workload[64];  /* "ab", "idle", ... ("" while incoming, not loaded) */
	unsigned vcpus;
	uint64_t progress;  /* page writes by vCPUs so far: moves while running */
	struct mig_guest_record rec;
};

#define MIG_CTL_MAGIC 0x4347494du /* "MIGC" */
/* 2: INFO carries the migration record; BIND, SET_STATE, UNBIND, ABANDON */
#define MIG_CTL_VERSION 2u
#define MIG_CTL_HDR_BYTES 20u
/* Largest message either way: requests are a header and a few bytes, the
 * largest reply is VERIFY's one-line verdict. */
#define MIG_CTL_MSG_MAX 512u
/* Most fds one message carries: GET_FDS's memfd and uffd. */
#define MIG_CTL_MAX_FDS 2
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

/* One message as received: the header, the whole datagram, the fds. */
struct mig_ctl_msg {
	struct mig_ctl_hdr h;
	uint8_t buf[MIG_CTL_MSG_MAX]; /* the payload is at MIG_CTL_HDR_BYTES */
	int fds[MIG_CTL_MAX_FDS];
	int nfds;
};

/* The payload of a message mig_ctl_recv() accepted: h.len bytes. */
static inline const uint8_t *mig_ctl_payload(const struct mig_ctl_msg *m)
{
	return m->buf + MIG_CTL_HDR_BYTES;
}

/* Send one message: a header of our magic and version with op, seq and
 * status, plen payload bytes, and nfds fds (the kernel duplicates them:
 * the caller keeps its own). 0 or -errno; -EMSGSIZE for a payload beyond
 * MIG_CTL_MSG_MAX. */
int mig_ctl_send(int sock, uint16_t op, uint32_t seq, int32_t status,
		 const void *pl, size_t plen, const int *fds, int nfds);
/* Receive one message, keeping at most max_fds of its fds (more are
 * closed). > 0: its length, with a header of ours whose length matches;
 * m->fds are the caller's to close. 0: the peer closed. -EPROTO: not one
 * of ours, m->h holding what its bytes said (the seq from 12 bytes on,
 * every field from 20). -EAGAIN on a non-blocking socket, -EMSGSIZE too
 * large, or another -errno. On anything but > 0, m->nfds is 0 (the fds
 * are closed). */
ssize_t mig_ctl_recv(int sock, struct mig_ctl_msg *m, int max_fds);
/* Close the fds a message brought and forget them. */
void mig_ctl_msg_close_fds(struct mig_ctl_msg *m);

void mig_ctl_info_pack(uint8_t *buf, const struct mig_guest_info *info);
int mig_ctl_info_unpack(const uint8_t *buf, size_t len,
			struct mig_guest_info *info);
/* BIND's payload: the record's uuid, side and peer (phase and state are the
 * guest's to keep). Unpack: -EPROTO for a bad length or side. */
void mig_ctl_bind_pack(uint8_t *buf, const struct mig_guest_record *rec);
int mig_ctl_bind_unpack(const uint8_t *buf, size_t len,
			struct mig_guest_record *rec);

/* A state blob in a sealed memfd (too large for one datagram): fd or -errno. */
int mig_ctl_blob_fd(const uint8_t *blob, size_t len);
/* Read len bytes from a blob fd a peer sent: only a regular file at least
 * that long, len <= MIG_WORKLOAD_MAX_STATE_BYTES; -EBADMSG otherwise.
 * *out is malloc'd. */
int mig_ctl_blob_read(int fd, size_t len, uint8_t **out);

#endif
