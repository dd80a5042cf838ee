// SPDX-License-Identifier: MIT
/*
 * mig-guest's control thread: the clients of the control socket, their
 * replies, the requests that wait for the vCPUs to park, and the poll loop
 * over the socket, the signalfd and the vCPUs' eventfd.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/bytes.h"
#include "base/log.h"
#include "base/util.h"
#include "guest/ctl.h"
#include "guest/guestd-int.h"
#include "guest/workload.h"

/* An incoming guest that no engine claims within this long was orphaned by
 * an engine that died right after spawning it. */
#define MIG_GUEST_UNCLAIMED_MS 30000u
/* Pause before accepting again after EMFILE, so poll() does not spin. */
#define MIG_GUEST_ACCEPT_BACKOFF_MS 100
/* At most one line per this long about what may repeat each round. */
#define MIG_GUEST_LOG_INTERVAL_MS 10000u

void guestd_client_close(struct guestd *gd, int ci)
{
	struct client *c = &gd->cl[ci];
	pid_t pid = c->pid;
	bool holder = gd->holder == ci;

	if (c->fd < 0)
		return;
	if (holder)
		gd->holder = -1;
	close(c->fd);
	*c = (struct client){ .fd = -1 };
	if (holder && !gd->done) /* not at our own shutdown */
		guestd_engine_gone(gd, pid);
}

void guestd_reply_fds(struct guestd *gd, int ci, uint16_t op, uint32_t seq,
		      int status, const void *pl, size_t plen, const int *fds,
		      int nfds)
{
	/* non-blocking: a client that does not read its replies is dropped
	 * rather than allowed to stall the control thread */
	int r = mig_ctl_send(gd->cl[ci].fd, op, seq, status, pl, plen, fds, nfds);

	if (r < 0) {
		mig_dbg("guest", "reply to pid %d: %s", (int)gd->cl[ci].pid,
			strerror(-r));
		guestd_client_close(gd, ci);
	}
}

void guestd_reply(struct guestd *gd, int ci, const struct mig_ctl_hdr *req,
		  int status, const void *pl, size_t plen)
{
	guestd_reply_fds(gd, ci, req->op, req->seq, status, pl, plen, NULL, 0);
}

void guestd_reply_text(struct guestd *gd, int ci, uint16_t op, uint32_t seq,
		       int status, const char *text)
{
	guestd_reply_fds(gd, ci, op, seq, status, text, strlen(text), NULL, 0);
}

static uint16_t pending_op(enum pending p)
{
	switch (p) {
	case PEND_STOP: return MIG_CTL_STOP;
	case PEND_VERIFY: return MIG_CTL_VERIFY;
	case PEND_DIGEST: return MIG_CTL_DIGEST;
	case PEND_POKE: return MIG_CTL_POKE;
	case PEND_NONE: break;
	}
	return 0;
}

/* One STOP, VERIFY, DIGEST or POKE waits per client. A client that sends another gave
 * up on the first (its reply timed out): that one is cancelled, and the
 * client drops the late reply by its seq. */
void guestd_set_pending(struct guestd *gd, int ci, enum pending p, uint32_t seq)
{
	struct client *c = &gd->cl[ci];

	if (c->pending != PEND_NONE) {
		enum pending old = c->pending;

		c->pending = PEND_NONE;
		guestd_reply_text(gd, ci, pending_op(old), c->seq, -ECANCELED, "");
		if (c->fd < 0)
			return;
	}
	c->pending = p;
	c->seq = seq;
}

/* With every vCPU parked: pokes first (a digest or verify asked at the same
 * time then sees them), then the rest, each computed once for all askers. */
static void answer_pending(struct guestd *gd)
{
	char msg[MIG_CTL_TEXT_MAX] = "";
	bool verified = false, digested = false;
	uint8_t dpl[8];
	uint64_t dv = 0;
	int vr = 0, dr = 0;

	for (int i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = &gd->cl[i];

		if (c->fd < 0 || c->pending != PEND_POKE)
			continue;
		c->pending = PEND_NONE;
		guestd_reply_text(gd, i, MIG_CTL_POKE, c->seq,
			   mig_workload_poke(gd->wl, c->page), "");
	}
	for (int i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = &gd->cl[i];
		enum pending p = c->pending;

		if (c->fd < 0 || p == PEND_NONE)
			continue;
		c->pending = PEND_NONE;
		if (p == PEND_VERIFY && !verified) {
			/* pages never go missing again: the precheck holds */
			vr = mig_workload_verify(gd->wl, msg, sizeof(msg));
			verified = true;
			mig_info("guest", "verify: %s", msg);
		}
		if (p == PEND_DIGEST && !digested) {
			uint64_t t0 = mig_now_ns();

			dr = guestd_digest_ram(gd, &dv);
			digested = true;
			mig_put_le64(dpl, dv);
			mig_info("guest", "digest %016" PRIx64 " (%.1f ms)", dv,
				 (mig_now_ns() - t0) / 1e6);
		}
		if (p == PEND_DIGEST)
			guestd_reply(gd, i, &(struct mig_ctl_hdr){ .op = MIG_CTL_DIGEST,
				  .seq = c->seq }, dr, dpl, dr == 0 ? 8 : 0);
		else
			guestd_reply_text(gd, i, pending_op(p), c->seq,
				   p == PEND_STOP ? 0 : vr,
				   p == PEND_STOP ? "" : msg);
	}
}

/* After every event: answer STOP/VERIFY once the vCPUs are parked, then park
 * or release them as the clients now want. */
static void settle(struct guestd *gd)
{
	bool pending = false;

	for (int i = 0; i < MAX_CLIENTS; i++)
		pending |= gd->cl[i].fd >= 0 && gd->cl[i].pending != PEND_NONE;
	guestd_set_stop(gd, !gd->running || pending);
	/* with no vCPU threads (idle, or nothing loaded yet) nobody wakes us
	 * later: they count as parked at once */
	if (pending && guestd_all_parked(gd)) {
		answer_pending(gd);
		guestd_set_stop(gd, !gd->running);
	}
}

/* One message from a client: anything malformed gets an error reply. */
static void client_read(struct guestd *gd, int ci)
{
	struct mig_ctl_msg m;
	ssize_t n = mig_ctl_recv(gd->cl[ci].fd, &m, MIG_CTL_MAX_FDS);

	if (n == -EAGAIN)
		return;
	if (n == 0 || (n < 0 && n != -EMSGSIZE && n != -EPROTO)) {
		guestd_client_close(gd, ci);
		return;
	}
	if (n > 0 && m.h.status == 0)
		guestd_dispatch(gd, ci, &m.h, mig_ctl_payload(&m), m.fds, m.nfds);
	else if (gd->cl[ci].fd >= 0)
		/* echo a seq if there was a header to take it from */
		guestd_reply_fds(gd, ci, 0, m.h.seq, n == -EMSGSIZE ? -EMSGSIZE : -EPROTO,
			  NULL, 0, NULL, 0);
	mig_ctl_msg_close_fds(&m);
}

/* Out of fds (a flood of connections, or fds that came in messages):
 * the pending connection stays in the backlog and the listening socket
 * readable, so pause accepting rather than spin in poll(). */
static void accept_failed(struct guestd *gd)
{
	int err = errno;
	unsigned more;

	if (err == EAGAIN || err == EINTR || err == ECONNABORTED)
		return;
	if (err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOBUFS)
		gd->accept_after_ns = mig_deadline_ns(MIG_GUEST_ACCEPT_BACKOFF_MS);
	if (mig_ratelimit_ok(&gd->accept_rl, MIG_GUEST_LOG_INTERVAL_MS, &more))
		mig_warn("guest", "accept: %s (%u such not logged)",
			 strerror(err), more);
}

/* Only our own uid and root: the socket's mode is not the only guard. */
static bool peer_ok(struct guestd *gd, int fd, pid_t *pid)
{
	unsigned more;
	uid_t uid;
	int r = mig_peer_check(fd, &uid, pid);

	if (r == 0)
		return true;
	if (mig_ratelimit_ok(&gd->refuse_rl, MIG_GUEST_LOG_INTERVAL_MS, &more))
		mig_warn("guest", "refusing a client of uid %d (pid %d): %s "
			 "(%u such not logged)", (int)uid, (int)*pid,
			 r == -EACCES ? "only our uid and root may connect" :
			 strerror(-r), more);
	return false;
}

static void client_accept(struct guestd *gd)
{
	for (;;) {
		int fd = accept4(gd->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		pid_t pid;
		int ci;

		if (fd < 0) {
			accept_failed(gd);
			return;
		}
		if (!peer_ok(gd, fd, &pid)) {
			close(fd);
			continue;
		}
		for (ci = 0; ci < MAX_CLIENTS && gd->cl[ci].fd >= 0; ci++)
			;
		if (ci == MAX_CLIENTS) {
			mig_warn("guest", "too many control connections (%d): refusing one",
				 MAX_CLIENTS);
			close(fd);
			continue;
		}
		gd->cl[ci] = (struct client){ .fd = fd, .pid = pid };
		mig_dbg("guest", "client pid %d connected", (int)pid);
	}
}

static void on_signal(struct guestd *gd)
{
	struct signalfd_siginfo si;

	if (read(gd->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		mig_info("guest", "%s: exiting", strsignal((int)si.ssi_signo));
		gd->done = true;
	}
}

/* An incoming guest exists for the engine that spawned it: if that engine
 * died before it could claim us, nobody ever will. */
static int orphan_check(struct guestd *gd)
{
	uint64_t waited_ms;

	if (!gd->o->incoming || gd->claimed)
		return -1;
	waited_ms = (mig_now_ns() - gd->t_start_ns) / 1000000;
	if (waited_ms < MIG_GUEST_UNCLAIMED_MS)
		return (int)(MIG_GUEST_UNCLAIMED_MS - waited_ms);
	mig_warn("guest", "incoming, and no engine claimed us in %u s: exiting",
		 MIG_GUEST_UNCLAIMED_MS / 1000);
	gd->done = true;
	return 0;
}

int guestd_serve(struct guestd *gd)
{
	struct pollfd pfd[3 + MAX_CLIENTS];
	int slot[MAX_CLIENTS];

	while (!gd->done) {
		nfds_t n = 3;
		uint64_t ev;
		int timeout_ms = orphan_check(gd);
		int backoff = mig_deadline_left_ms(gd->accept_after_ns);

		if (backoff > 0 && (timeout_ms < 0 || backoff < timeout_ms))
			timeout_ms = backoff;
		pfd[0] = (struct pollfd){ .fd = backoff > 0 ? -1 : gd->lfd,
					  .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = gd->sigfd, .events = POLLIN };
		pfd[2] = (struct pollfd){ .fd = gd->evfd, .events = POLLIN };
		for (int i = 0; i < MAX_CLIENTS; i++) {
			if (gd->cl[i].fd < 0)
				continue;
			pfd[n].fd = gd->cl[i].fd;
			pfd[n].events = POLLIN;
			slot[n - 3] = i;
			n++;
		}
		if (gd->done)
			break;
		if (poll(pfd, n, timeout_ms) < 0) {
			if (errno == EINTR)
				continue;
			mig_err("guest", "poll: %s", strerror(errno));
			return -errno;
		}
		if (pfd[1].revents)
			on_signal(gd);
		if ((pfd[2].revents & POLLIN) && read(gd->evfd, &ev, sizeof(ev)) < 0)
			mig_dbg("guest", "eventfd read: %s", strerror(errno));
		for (nfds_t k = 3; k < n && !gd->done; k++) {
			int ci = slot[k - 3];

			if (gd->cl[ci].fd != pfd[k].fd)
				continue; /* closed meanwhile */
			if (pfd[k].revents & POLLIN)
				client_read(gd, ci);
			else if (pfd[k].revents & (POLLHUP | POLLERR | POLLNVAL))
				guestd_client_close(gd, ci);
		}
		if (pfd[0].revents & POLLIN)
			client_accept(gd);
		settle(gd);
	}
	return 0;
}
