// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: the QMP client (qmp.c) reading what a server sends.
 * The input is the server's whole side of a conversation, written to a
 * socketpair whose server end is then shut for writing, so the client
 * reads it and then an end of stream, never a wait. The client takes the
 * greeting and negotiates, then runs commands and reads events until the
 * stream fails; what it sends is drained so that it never blocks.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/util.h"
#include "bus/bus-int.h"

/* Each wait ends at once on a shut stream; this only bounds a bug. */
#define FUZZ_TIMEOUT_MS 1000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void drain(int fd)
{
	char buf[4096];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

/* One call of the client's API, chosen by the round. */
static int call(struct mig_qmp *q, unsigned round)
{
	struct mig_json *ret = NULL;
	char err[128];
	int r;

	switch (round % 3) {
	case 0:
		r = mig_qmp_execute(q, "query-status", NULL, &ret, err,
				    sizeof(err), FUZZ_TIMEOUT_MS);
		break;
	case 1:
		r = mig_qmp_query_events(q, &ret, FUZZ_TIMEOUT_MS);
		if (r == 0 && !mig_json_is_array(ret))
			abort();
		break;
	default:
		r = mig_qmp_next_event(q, &ret, FUZZ_TIMEOUT_MS);
		if (r == 0 && !mig_json_get_str(ret, "event"))
			abort();
		break;
	}
	if (r < 0 && ret)
		abort(); /* a failed call hands nothing out */
	mig_json_free(ret);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mig_qmp *q;
	int sv[2];
	int r = 0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
		       sv) < 0)
		abort();
	/* -max_len stays well below a socket buffer: one write takes it all */
	if (size && write(sv[0], data, size) != (ssize_t)size)
		abort();
	shutdown(sv[0], SHUT_WR);
	q = bus_qmp_open_fd(sv[1], mig_deadline_ns(FUZZ_TIMEOUT_MS));
	if (!q) {
		if (errno == ETIMEDOUT)
			abort(); /* the stream ended: that is not a timeout */
		goto out;
	}
	for (unsigned round = 0; r == 0; round++) {
		drain(sv[0]);
		r = call(q, round);
	}
	if (r == -ETIMEDOUT)
		abort();
	mig_qmp_close(q);
out:
	close(sv[0]);
	return 0;
}
