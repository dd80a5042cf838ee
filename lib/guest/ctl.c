// SPDX-License-Identifier: MIT
/*
 * mig-guest's control protocol: the codecs and the one-message send and
 * receive both ends use (see ctl.h). Every decoder checks the length it
 * was given, and strings from the peer are NUL-terminated here, never
 * trusted to be.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/bytes.h"
#include "base/util.h"
#include "guest/ctl.h"
#include "guest/workload.h"

static const char *const phase_names[MIG_GUEST__PHASES] = {
	[MIG_GUEST_UNBOUND] = "unbound",
	[MIG_GUEST_MIGRATING] = "migrating",
	[MIG_GUEST_SWITCHED] = "switched",
	[MIG_GUEST_COMPLETED] = "completed",
};

const char *mig_guest_phase_name(enum mig_guest_phase p)
{
	return (unsigned)p < MIG_GUEST__PHASES ? phase_names[p] : NULL;
}

static void hdr_pack(uint8_t *b, const struct mig_ctl_hdr *h)
{
	mig_put_le32(b, h->magic);
	mig_put_le16(b + 4, h->version);
	mig_put_le16(b + 6, h->op);
	mig_put_le32(b + 8, h->seq);
	mig_put_le32(b + 12, (uint32_t)h->status);
	mig_put_le32(b + 16, h->len);
}

static int hdr_unpack(const uint8_t *b, size_t len, struct mig_ctl_hdr *h)
{
	if (len < MIG_CTL_HDR_BYTES)
		return -EPROTO;
	h->magic = mig_get_le32(b);
	h->version = mig_get_le16(b + 4);
	h->op = mig_get_le16(b + 6);
	h->seq = mig_get_le32(b + 8);
	h->status = (int32_t)mig_get_le32(b + 12);
	h->len = mig_get_le32(b + 16);
	if (h->magic != MIG_CTL_MAGIC || h->version != MIG_CTL_VERSION ||
	    h->len != len - MIG_CTL_HDR_BYTES)
		return -EPROTO;
	return 0;
}

int mig_ctl_send(int sock, uint16_t op, uint32_t seq, int32_t status,
		 const void *pl, size_t plen, const int *fds, int nfds)
{
	uint8_t buf[MIG_CTL_MSG_MAX];
	struct mig_ctl_hdr h = {
		.magic = MIG_CTL_MAGIC, .version = MIG_CTL_VERSION, .op = op,
		.seq = seq, .status = status, .len = (uint32_t)plen,
	};

	if (plen > sizeof(buf) - MIG_CTL_HDR_BYTES)
		return -EMSGSIZE;
	hdr_pack(buf, &h);
	if (plen)
		memcpy(buf + MIG_CTL_HDR_BYTES, pl, plen);
	return mig_send_with_fds(sock, buf, MIG_CTL_HDR_BYTES + plen, fds, nfds);
}

void mig_ctl_msg_close_fds(struct mig_ctl_msg *m)
{
	for (int i = 0; i < m->nfds; i++)
		close(m->fds[i]);
	m->nfds = 0;
}

ssize_t mig_ctl_recv(int sock, struct mig_ctl_msg *m, int max_fds)
{
	ssize_t n;

	m->h = (struct mig_ctl_hdr){ .magic = 0 };
	m->nfds = MIG_MIN(max_fds, MIG_CTL_MAX_FDS);
	n = mig_recv_with_fds(sock, m->buf, sizeof(m->buf), m->fds, &m->nfds);
	if (n < 0)
		m->nfds = 0; /* none kept */
	if (n == 0)
		mig_ctl_msg_close_fds(m); /* an empty datagram: nothing of ours */
	if (n <= 0)
		return n;
	if (hdr_unpack(m->buf, (size_t)n, &m->h) == 0)
		return n;
	/* a seq to echo in the error reply, if there was one */
	if (n >= 12 && n < (ssize_t)MIG_CTL_HDR_BYTES)
		m->h.seq = mig_get_le32(m->buf + 8);
	mig_ctl_msg_close_fds(m);
	return -EPROTO;
}

void mig_ctl_info_pack(uint8_t *b, const struct mig_guest_info *in)
{
	uint32_t flags = (in->incoming ? MIG_CTL_F_INCOMING : 0) |
			 (in->running ? MIG_CTL_F_RUNNING : 0) |
			 (in->attached ? MIG_CTL_F_ATTACHED : 0) |
			 (in->tracking ? MIG_CTL_F_TRACKING : 0);

	mig_put_le32(b, (uint32_t)in->pid);
	mig_put_le32(b + 4, flags);
	mig_put_le32(b + 8, in->vcpus);
	mig_put_le64(b + 12, in->ram_bytes);
	mig_put_le64(b + 20, in->ram_base);
	mig_put_le64(b + 28, in->progress);
	memset(b + 36, 0, sizeof(in->workload));
	memcpy(b + 36, in->workload, strnlen(in->workload, sizeof(in->workload) - 1));
	memcpy(b + 100, in->rec.uuid, 16);
	b[116] = (uint8_t)in->rec.side;
	b[117] = (uint8_t)in->rec.phase;
	b[118] = (uint8_t)in->rec.state;
	b[119] = 0;
	memset(b + 120, 0, MIG_GUEST_PEER_MAX);
	memcpy(b + 120, in->rec.peer, strnlen(in->rec.peer, MIG_GUEST_PEER_MAX - 1));
}

/* The record's fields after the first byte at b: uuid, side, peer. */
static int record_unpack(const uint8_t *b, struct mig_guest_record *rec)
{
	memcpy(rec->uuid, b, 16);
	if (b[16] > MIG_SIDE_DEST)
		return -EPROTO;
	rec->side = (enum mig_side)b[16];
	memcpy(rec->peer, b + 20, MIG_GUEST_PEER_MAX - 1);
	rec->peer[MIG_GUEST_PEER_MAX - 1] = '\0';
	return 0;
}

void mig_ctl_bind_pack(uint8_t *b, const struct mig_guest_record *rec)
{
	memcpy(b, rec->uuid, 16);
	memset(b + 16, 0, 4 + MIG_GUEST_PEER_MAX);
	b[16] = (uint8_t)rec->side;
	memcpy(b + 20, rec->peer, strnlen(rec->peer, MIG_GUEST_PEER_MAX - 1));
}

int mig_ctl_bind_unpack(const uint8_t *b, size_t len, struct mig_guest_record *rec)
{
	memset(rec, 0, sizeof(*rec));
	if (len != MIG_CTL_BIND_BYTES)
		return -EPROTO;
	return record_unpack(b, rec);
}

int mig_ctl_info_unpack(const uint8_t *b, size_t len, struct mig_guest_info *in)
{
	uint32_t flags;

	if (len != MIG_CTL_INFO_BYTES)
		return -EPROTO;
	memset(in, 0, sizeof(*in));
	in->pid = (pid_t)mig_get_le32(b);
	flags = mig_get_le32(b + 4);
	in->incoming = flags & MIG_CTL_F_INCOMING;
	in->running = flags & MIG_CTL_F_RUNNING;
	in->attached = flags & MIG_CTL_F_ATTACHED;
	in->tracking = flags & MIG_CTL_F_TRACKING;
	in->vcpus = mig_get_le32(b + 8);
	in->ram_bytes = mig_get_le64(b + 12);
	in->ram_base = mig_get_le64(b + 20);
	in->progress = mig_get_le64(b + 28);
	/* NUL-terminate whatever came: never trust the peer's padding */
	memcpy(in->workload, b + 36, sizeof(in->workload) - 1);
	in->workload[sizeof(in->workload) - 1] = '\0';
	if (record_unpack(b + 100, &in->rec) < 0 || b[117] >= MIG_GUEST__PHASES ||
	    b[118] >= MIG_STATE__COUNT)
		return -EPROTO;
	in->rec.phase = (enum mig_guest_phase)b[117];
	in->rec.state = (enum mig_state)b[118];
	return 0;
}

int mig_ctl_blob_fd(const uint8_t *blob, size_t len)
{
	int fd = memfd_create("mig-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	int r;

	if (fd < 0)
		return -errno;
	r = mig_write_full(fd, blob, len);
	/* sealed: the receiver reads exactly what we wrote, nothing later */
	if (r == 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
			    F_SEAL_WRITE | F_SEAL_SEAL) < 0)
		r = -errno;
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

int mig_ctl_blob_read(int fd, size_t len, uint8_t **out)
{
	struct stat st;
	uint8_t *b;
	size_t got = 0;

	if (fstat(fd, &st) < 0)
		return -errno;
	/* only a regular file (memfd) of at least len bytes: never a pipe or
	 * socket a hostile peer could leave us blocked on */
	if (!S_ISREG(st.st_mode) || !len || len > MIG_WORKLOAD_MAX_STATE_BYTES ||
	    (uint64_t)st.st_size < len)
		return -EBADMSG;
	b = malloc(len);
	if (!b)
		return -ENOMEM;
	while (got < len) {
		ssize_t n = pread(fd, b + got, len - got, (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(b);
			return n < 0 ? -errno : -EBADMSG;
		}
		got += (size_t)n;
	}
	*out = b;
	return 0;
}

