// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: mig-guest's control protocol as either end receives
 * it. The first input byte says how many fds ride along (memfds, 0..3: one
 * more than a message may carry), the rest is one datagram, sent over a
 * SOCK_SEQPACKET pair and taken by mig_ctl_recv(); an accepted message's
 * payload goes to the decoder of its op, as guestd and guest.c use them.
 * After each input no fd may be left open: a leak of a peer's fds is a
 * finding too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/bytes.h"
#include "base/util.h"
#include "guest/ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A state blob's length (the u32 payload) and a memfd holding the rest. */
static void blob(const uint8_t *pl, size_t len)
{
	uint8_t *out = NULL;
	int fd;

	if (len < 4)
		return;
	fd = memfd_create("fuzz-blob", MFD_CLOEXEC);
	if (fd < 0 || mig_write_full(fd, pl + 4, len - 4) < 0)
		abort();
	if (mig_ctl_blob_read(fd, mig_get_le32(pl), &out) == 0 && !out)
		abort();
	free(out);
	close(fd);
}

static void decode(const struct mig_ctl_msg *m)
{
	const uint8_t *pl = mig_ctl_payload(m);
	struct mig_guest_info info;
	struct mig_guest_record rec;

	switch (m->h.op) {
	case MIG_CTL_INFO:
		if (mig_ctl_info_unpack(pl, m->h.len, &info) == 0 &&
		    (strlen(info.workload) >= sizeof(info.workload) ||
		     strlen(info.rec.peer) >= sizeof(info.rec.peer) ||
		     !mig_guest_phase_name(info.rec.phase)))
			abort();
		break;
	case MIG_CTL_BIND:
		if (mig_ctl_bind_unpack(pl, m->h.len, &rec) == 0 &&
		    strlen(rec.peer) >= sizeof(rec.peer))
			abort();
		break;
	case MIG_CTL_SAVE_STATE:
	case MIG_CTL_LOAD_STATE:
		blob(pl, m->h.len);
		break;
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mig_ctl_msg m;
	int sv[2], fds[3], nfds, probe;
	ssize_t n;

	if (size < 1)
		return 0;
	nfds = data[0] % 4;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	for (int i = 0; i < nfds; i++)
		if ((fds[i] = memfd_create("fuzz-fd", MFD_CLOEXEC)) < 0)
			abort();
	/* an empty datagram is one too: the peer-closed case is recv's 0 */
	if (mig_send_with_fds(sv[0], data + 1, size - 1, fds, nfds) < 0)
		goto out;
	n = mig_ctl_recv(sv[1], &m, data[0] / 4 % 3);
	if (n > 0) {
		if ((size_t)n != MIG_CTL_HDR_BYTES + m.h.len)
			abort();
		decode(&m);
		mig_ctl_msg_close_fds(&m);
	} else if (m.nfds != 0) {
		abort(); /* ctl.h: no fds kept on anything but > 0 */
	}
out:
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	close(sv[0]);
	close(sv[1]);
	/* the lowest free fd is where it was: nothing the peer sent leaked */
	probe = dup(2);
	if (probe != sv[0])
		abort();
	close(probe);
	return 0;
}
