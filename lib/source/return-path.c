// SPDX-License-Identifier: MIT
/*
 * What the destination sends back on the main channel: page requests and
 * completion (served by the return-path thread), the switchover ack, and the
 * bitmap of present pages that opens a recovery (read by the control loop).
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "base/fault.h"
#include "base/log.h"
#include "base/util.h"
#include "core/ram.h"
#include "core/wire.h"
#include "source/source-int.h"

/* Fault point: each requested run again, later, on main: the vCPU that
 * waited has been woken and has written the page by the time it lands,
 * which must not undo its write. */
static int late_duplicate(struct src *s, uint64_t first, uint32_t n)
{
	struct timespec ts = { 0, 2000000 };

	nanosleep(&ts, NULL);
	return src_send_pages(s, MIG_CHAN_MAIN, first, n);
}

static int serve_request(struct src *s, const uint8_t *buf, uint32_t len)
{
	struct mig_req req;
	enum mig_chan_slot c = s->e.chan_fd[MIG_CHAN_PREEMPT] >= 0 ?
			       MIG_CHAN_PREEMPT : MIG_CHAN_MAIN;
	uint64_t first;
	int r = mig_wire_dec_req(buf, len, s->e.ram_bytes, &req);

	if (r < 0)
		return r;
	s->e.st.requests++;
	first = req.offset / MIG_PAGE_SIZE;
	mig_bitmap_set_range(s->sent, first, req.npages);
	r = src_send_pages(s, c, first, req.npages);
	if (r == 0 && mig_fault("late-duplicates"))
		r = late_duplicate(s, first, req.npages);
	/* the vCPU most likely walks on into the pages after: the pumps go
	 * on from there, in runs, rather than this thread sending them
	 * unasked on the channel the next request waits on */
	atomic_store(&s->pump_hint, first + req.npages);
	if (r < 0)
		src_link_down(s, mig_chan_slot_name(c), r);
	return 0;
}

/* The return path: requests, the switchover ack, completion, heartbeats. */
void *src_rp_main(void *arg)
{
	struct src *s = arg;
	uint8_t *buf = malloc(MIG_WIRE_MAX_PAYLOAD);
	int fd = s->e.chan_fd[MIG_CHAN_MAIN];

	mig_thread_name("mig-return");
	mig_thread_urgent();
	while (buf && !atomic_load(&s->stop)) {
		uint32_t type, len;
		int r = mig_wire_recv(fd, &type, buf, MIG_WIRE_MAX_PAYLOAD, &len);

		if (r == 0 && type == MIG_MSG_REQ)
			r = serve_request(s, buf, len);
		else if (r == 0 && type == MIG_MSG_COMPLETE) {
			mig_engine_post(&s->e, MIG_EV_COMPLETE);
			break;
		} else if (r == 0 && type != MIG_MSG_PING) {
			mig_err("wire", "unexpected %s on the return path",
				mig_wire_type_name(type));
			r = -EBADMSG;
		}
		if (r < 0) {
			src_link_down(s, "return path", r);
			break;
		}
	}
	free(buf);
	return NULL;
}

/* The next message on the return path that is not PING (nor `also`):
 * 0 when it is `want`, -EBADMSG when another, or -errno. */
static int recv_expect(struct src *s, uint32_t want, uint32_t also)
{
	uint8_t buf[16];
	uint32_t type, len;
	int fd = mig_engine_get_chan(&s->e, MIG_CHAN_MAIN), r;

	do
		r = mig_wire_recv(fd, &type, buf, sizeof(buf), &len);
	while (r == 0 && (type == MIG_MSG_PING || type == also));
	if (r == 0 && type != want)
		r = -EBADMSG;
	return r;
}

int src_recv_complete(struct src *s)
{
	return recv_expect(s, MIG_MSG_COMPLETE, MIG_MSG_RESUME_ACK);
}

/* Recovery handshake: the destination's bitmap of present pages. */
int src_recv_bitmap(struct src *s, struct mig_bitmap *have, bool *complete)
{
	uint8_t *buf = malloc(MIG_WIRE_MAX_PAYLOAD);
	int fd = mig_engine_get_chan(&s->e, MIG_CHAN_MAIN), r = -ENOMEM;

	*complete = false;
	while (buf) {
		uint32_t type, len;
		struct mig_bitmap_chunk c;
		uint64_t total;

		r = mig_wire_recv(fd, &type, buf, MIG_WIRE_MAX_PAYLOAD, &len);
		if (r < 0)
			break;
		if (type == MIG_MSG_PING)
			continue;
		if (type == MIG_MSG_COMPLETE) {
			*complete = true;
			break;
		}
		if (type == MIG_MSG_BITMAP_END) {
			r = mig_wire_dec_u64(buf, len, &total);
			if (r == 0 && total != s->npages)
				r = -EBADMSG;
			break;
		}
		r = type == MIG_MSG_BITMAP ?
			mig_wire_dec_bitmap(buf, len, s->npages, &c) : -EBADMSG;
		if (r == 0)
			r = mig_bitmap_import(have, c.first_page, c.nbits, c.bits);
		if (r < 0)
			break;
	}
	free(buf);
	return r;
}

int src_recv_resume_ack(struct src *s)
{
	return recv_expect(s, MIG_MSG_RESUME_ACK, MIG_MSG_PING);
}
