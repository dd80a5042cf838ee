// SPDX-License-Identifier: MIT
/*
 * mig-guest's requests: what each control op does to the guest, who may
 * ask, and the reply. Those that need the vCPUs parked are left pending
 * (guestd-serve.c answers them); the migration record's are in
 * guestd-record.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/bytes.h"
#include "base/log.h"
#include "base/util.h"
#include "core/uffd.h"
#include "guest/ctl.h"
#include "guest/guestd-int.h"
#include "guest/workload.h"

static void do_info(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	struct mig_guest_info in = {
		.pid = getpid(),
		.ram_bytes = gd->ram_bytes,
		.ram_base = (uint64_t)(uintptr_t)gd->ram,
		.incoming = gd->incoming,
		.running = gd->running,
		.attached = gd->holder >= 0,
		.tracking = gd->wpfd >= 0,
		.rec = gd->rec,
	};
	uint8_t pl[MIG_CTL_INFO_BYTES];

	if (gd->wl) {
		snprintf(in.workload, sizeof(in.workload), "%s",
			 mig_workload_spec_text(gd->wl));
		in.vcpus = mig_workload_vcpus(gd->wl);
		in.progress = mig_workload_progress(gd->wl);
	}
	mig_ctl_info_pack(pl, &in);
	guestd_reply(gd, ci, h, 0, pl, sizeof(pl));
}

/* A holder whose engine just died may not have been noticed yet (its
 * hangup waits in this same poll round): its successor must not be refused
 * because of it. */
static void drop_dead_holder(struct guestd *gd)
{
	struct pollfd p;

	if (gd->holder < 0)
		return;
	p = (struct pollfd){ .fd = gd->cl[gd->holder].fd, .events = POLLRDHUP };
	if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR | POLLRDHUP)))
		guestd_client_close(gd, gd->holder);
}

static void do_attach(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	uint8_t pl[4];

	drop_dead_holder(gd);
	if (gd->holder >= 0 && gd->holder != ci) {
		mig_put_le32(pl, (uint32_t)gd->cl[gd->holder].pid);
		guestd_reply(gd, ci, h, -EBUSY, pl, sizeof(pl));
		return;
	}
	if (gd->holder != ci)
		mig_info("guest", "engine pid %d attached", (int)gd->cl[ci].pid);
	gd->holder = ci;
	gd->claimed = true;
	guestd_reply(gd, ci, h, 0, NULL, 0);
}

static void do_get_fds(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	int fds[2] = { gd->memfd, gd->uffd };
	int nfds = gd->incoming && gd->uffd >= 0 ? 2 : 1;
	int r = guestd_need_claim(gd, ci);
	uint8_t pl[4];

	if (r < 0) {
		guestd_reply(gd, ci, h, r, NULL, 0);
		return;
	}
	mig_put_le32(pl, (uint32_t)nfds);
	/* the kernel duplicates them: we keep our own references */
	guestd_reply_fds(gd, ci, h->op, h->seq, 0, pl, sizeof(pl), fds, nfds);
}

static void do_stop(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	int r = guestd_may_steer(gd, ci);

	if (r < 0) {
		guestd_reply(gd, ci, h, r, NULL, 0);
		return;
	}
	gd->running = false;
	guestd_set_pending(gd, ci, PEND_STOP, h->seq);
}

/*
 * The guest never runs twice. A source guest whose state went to the
 * destination never runs here again, whoever asks: only UNBIND by the engine
 * that saw the destination never take it, or the operator's ABANDON, lifts
 * that. An incoming guest whose pages are still arriving runs only when its
 * engine says the source has committed to it.
 */
static int cont_allowed(struct guestd *gd, int ci)
{
	char id[37];

	if (gd->rec.phase < MIG_GUEST_SWITCHED)
		return 0;
	if (gd->rec.side == MIG_SIDE_DEST)
		return gd->rec.phase == MIG_GUEST_COMPLETED || gd->holder == ci ?
		       0 : -EPERM;
	mig_uuid_format(gd->rec.uuid, id);
	mig_warn("guest", "CONT from pid %d refused: the guest was handed over "
		 "to the destination in migration %s", (int)gd->cl[ci].pid, id);
	return -EPERM;
}

static void do_cont(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	int r = guestd_may_steer(gd, ci);

	if (r == 0 && !gd->wl) {
		mig_warn("guest", "CONT before LOAD_STATE: no workload to run");
		r = -EINVAL;
	}
	if (r == 0)
		r = cont_allowed(gd, ci);
	if (r < 0) {
		guestd_reply(gd, ci, h, r, NULL, 0);
		return;
	}
	/* a STOP still waiting for its vCPUs (unclaimed guest, two clients)
	 * is overtaken */
	for (int i = 0; i < MAX_CLIENTS; i++) {
		if (gd->cl[i].fd >= 0 && gd->cl[i].pending == PEND_STOP) {
			gd->cl[i].pending = PEND_NONE;
			guestd_reply_text(gd, i, MIG_CTL_STOP, gd->cl[i].seq,
				   -ECANCELED, "");
		}
	}
	gd->running = true;
	gd->continued = true;
	guestd_reply(gd, ci, h, 0, NULL, 0);
}

static int save_state(struct guestd *gd, int ci, int *blob_fd, size_t *len)
{
	struct mig_workload_state st;
	uint8_t *blob;
	int r = guestd_need_claim(gd, ci);

	if (r < 0)
		return r;
	if (!gd->wl)
		return -EINVAL;
	if (gd->running || !guestd_all_parked(gd))
		return -EBUSY;
	mig_workload_save(gd->wl, &st);
	r = mig_workload_state_encode(&st, &blob, len);
	if (r < 0)
		return r;
	r = mig_ctl_blob_fd(blob, *len);
	free(blob);
	if (r < 0)
		return r;
	*blob_fd = r;
	/* from the moment the state can leave, it may run there: not here */
	if (gd->rec.phase == MIG_GUEST_MIGRATING && gd->rec.side == MIG_SIDE_SOURCE)
		gd->rec.phase = MIG_GUEST_SWITCHED;
	return 0;
}

static void do_save_state(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	uint8_t pl[4];
	size_t len = 0;
	int fd = -1;
	int r = save_state(gd, ci, &fd, &len);

	if (r < 0) {
		mig_dbg("guest", "SAVE_STATE: %s", strerror(-r));
		guestd_reply(gd, ci, h, r, NULL, 0);
		return;
	}
	mig_put_le32(pl, (uint32_t)len);
	guestd_reply_fds(gd, ci, h->op, h->seq, 0, pl, sizeof(pl), &fd, 1);
	close(fd);
}

/* Decode first, then swap: a bad blob leaves the guest exactly as it was. */
static int load_state(struct guestd *gd, const uint8_t *pl, size_t plen,
		      const int *fds, int nfds)
{
	struct mig_workload_state st;
	struct mig_workload *wl;
	const char *why = NULL;
	uint8_t *blob;
	int r, e;

	if (plen != 4 || nfds != 1)
		return -EINVAL;
	r = mig_ctl_blob_read(fds[0], mig_get_le32(pl), &blob);
	if (r < 0)
		return r;
	r = mig_workload_state_decode(blob, mig_get_le32(pl), gd->ram_bytes, &st);
	/* st borrows the blob's machine section until the workload has it */
	wl = r < 0 ? NULL : mig_workload_new(&st, gd->ram, &why);
	e = errno;
	free(blob);
	if (r < 0)
		return r;
	if (!wl) {
		mig_err("guest", "loading the state: workload %s: %s%s%s", st.spec.text,
			why ? why : "", why ? ": " : "", strerror(e));
		return -e;
	}
	mig_workload_set_serial(wl, gd->serial_fd);
	/* a reload before the first CONT: the old vCPUs are parked */
	guestd_vcpus_join(gd);
	mig_workload_free(gd->wl);
	gd->wl = wl;
	atomic_store(&gd->stop, true); /* they start parked, until CONT */
	r = guestd_vcpus_start(gd);
	if (r == 0)
		mig_info("guest", "state loaded: workload %s, %u vcpus", st.spec.text,
			 st.vcpus);
	if (r == 0 && gd->rec.phase == MIG_GUEST_MIGRATING)
		gd->rec.phase = MIG_GUEST_SWITCHED;
	return r;
}

static void do_load_state(struct guestd *gd, int ci, const struct mig_ctl_hdr *h,
			  const uint8_t *pl, const int *fds, int nfds)
{
	int r = guestd_may_steer(gd, ci);

	if (r == 0 && (!gd->o->incoming || gd->continued))
		r = -EINVAL; /* only into a guest that never ran here */
	if (r == 0)
		r = load_state(gd, pl, h->len, fds, nfds);
	/* a malformed blob is worth a warning; a request out of turn is the
	 * client's to report */
	if (r == -EBADMSG)
		mig_warn("guest", "LOAD_STATE from pid %d: malformed state blob "
			 "refused", (int)gd->cl[ci].pid);
	else if (r < 0)
		mig_dbg("guest", "LOAD_STATE from pid %d refused: %s",
			(int)gd->cl[ci].pid, strerror(-r));
	guestd_reply(gd, ci, h, r, NULL, 0);
}

static void do_incoming_done(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	uint64_t first;
	int64_t missing;
	int r = guestd_need_claim(gd, ci);

	if (r < 0 || !gd->incoming) { /* done twice: already so */
		guestd_reply(gd, ci, h, r, NULL, 0);
		return;
	}
	/* an engine may legitimately leave zero pages unplaced: after the
	 * unregister they read as zero. Say so, for whoever debugs it. */
	missing = guestd_count_missing(gd, &first);
	if (missing > 0)
		mig_info("guest", "incoming done with %" PRId64 " pages never "
			 "placed (first: page %" PRIu64 "): they read as zero",
			 missing, first);
	/* and wakes any vCPU still waiting in a fault: after the close
	 * nothing could (an engine may keep the uffd open) */
	r = guestd_ram_unregister(gd);
	if (r < 0) {
		mig_err("guest", "UFFDIO_UNREGISTER: %s", mig_uffd_strerror(r));
		guestd_reply(gd, ci, h, r, NULL, 0);
		return;
	}
	close(gd->uffd);
	gd->uffd = -1;
	gd->incoming = false;
	if (gd->rec.phase != MIG_GUEST_UNBOUND)
		gd->rec.phase = MIG_GUEST_COMPLETED;
	mig_info("guest", "incoming done: every page present");
	guestd_reply(gd, ci, h, 0, NULL, 0);
}

/* What VERIFY can say before parking anything: nothing loaded yet, or
 * pages still missing. Missing pages are reported, not read: reading one
 * would block this thread until an engine places it, and the vCPUs might
 * never park either, waiting in the same faults. 1: go ahead and park. */
static int verify_precheck(struct guestd *gd, char *msg, size_t len)
{
	uint64_t first;
	int64_t missing;

	if (!gd->wl) {
		snprintf(msg, len, "no workload yet: the state has not been loaded");
		return -EAGAIN;
	}
	if (!gd->incoming)
		return 1;
	missing = guestd_count_missing(gd, &first);
	if (missing < 0) {
		snprintf(msg, len, "counting missing pages: %s",
			 strerror((int)-missing));
		return (int)missing;
	}
	if (missing > 0) {
		snprintf(msg, len, "incoming: %" PRId64 " pages not placed yet "
			 "(first: page %" PRIu64 ")", missing, first);
		return -EAGAIN;
	}
	return 1;
}

static void do_verify(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	char msg[MIG_CTL_TEXT_MAX];
	int r = verify_precheck(gd, msg, sizeof(msg));

	if (r == 1)
		guestd_set_pending(gd, ci, PEND_VERIFY, h->seq);
	else
		guestd_reply_text(gd, ci, h->op, h->seq, r, msg);
}

static void do_dirty_start(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	int r = guestd_need_claim(gd, ci);

	/* the missing-page uffd owns RAM until every page is there */
	if (r == 0 && gd->incoming)
		r = -EBUSY;
	if (r == 0) {
		guestd_tracking_stop(gd); /* armed again: a fresh start */
		r = guestd_tracking_start(gd);
	}
	guestd_reply(gd, ci, h, r, NULL, 0);
}

static void do_dirty_stop(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	int r = guestd_need_claim(gd, ci);

	if (r == 0)
		guestd_tracking_stop(gd);
	guestd_reply(gd, ci, h, r, NULL, 0);
}

static void do_digest(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	uint64_t first;
	int64_t missing = gd->incoming ? guestd_count_missing(gd, &first) : 0;

	if (missing != 0) { /* pages missing: never read them (see VERIFY) */
		if (missing > 0)
			mig_dbg("guest", "DIGEST: %" PRId64 " pages not placed yet "
				"(first: page %" PRIu64 ")", missing, first);
		guestd_reply(gd, ci, h, missing > 0 ? -EAGAIN : (int)missing, NULL, 0);
		return;
	}
	guestd_set_pending(gd, ci, PEND_DIGEST, h->seq);
}

/* Whether page can be poked now: 0, or the reply's error. */
static int poke_check(struct guestd *gd, int ci, uint64_t page)
{
	struct mig_workload_spec spec;
	off_t off = (off_t)(page * MIG_PAGE_SIZE);

	/* anyone may poke, claim or not: it is a write by the guest itself,
	 * exactly what a migration must cope with at any moment */
	(void)ci;
	if (!gd->wl)
		return -EAGAIN; /* incoming, no state loaded: no workload yet */
	/* only the dirty workload's pages say what a new version is; a write
	 * into ab's or idle's pages would break their invariant */
	if (mig_workload_parse(mig_workload_spec_text(gd->wl), &spec) < 0 ||
	    spec.id != MIG_WORKLOAD_DIRTY || page >= gd->ram_bytes / MIG_PAGE_SIZE)
		return -EINVAL;
	/* a missing page would fault this thread: it must be there */
	if (gd->incoming && lseek(gd->memfd, off, SEEK_DATA) != off)
		return -EAGAIN;
	return 0;
}

static void do_poke(struct guestd *gd, int ci, const struct mig_ctl_hdr *h,
		    const uint8_t *pl)
{
	uint64_t page = h->len == 8 ? mig_get_le64(pl) : UINT64_MAX;
	int r = h->len == 8 ? poke_check(gd, ci, page) : -EINVAL;

	if (r < 0) {
		guestd_reply(gd, ci, h, r, NULL, 0);
		return;
	}
	gd->cl[ci].page = page;
	guestd_set_pending(gd, ci, PEND_POKE, h->seq);
}

void guestd_dispatch(struct guestd *gd, int ci, const struct mig_ctl_hdr *h,
		     const uint8_t *pl, const int *fds, int nfds)
{
	bool payload = h->op == MIG_CTL_LOAD_STATE || h->op == MIG_CTL_POKE ||
		       h->op == MIG_CTL_BIND || h->op == MIG_CTL_SET_STATE ||
		       h->op == MIG_CTL_ABANDON;

	/* only LOAD_STATE carries an fd */
	if ((h->op != MIG_CTL_LOAD_STATE && nfds) || (!payload && h->len)) {
		guestd_reply(gd, ci, h, -EINVAL, NULL, 0);
		return;
	}
	switch (h->op) {
	case MIG_CTL_INFO: do_info(gd, ci, h); break;
	case MIG_CTL_ATTACH: do_attach(gd, ci, h); break;
	case MIG_CTL_GET_FDS: do_get_fds(gd, ci, h); break;
	case MIG_CTL_STOP: do_stop(gd, ci, h); break;
	case MIG_CTL_CONT: do_cont(gd, ci, h); break;
	case MIG_CTL_SAVE_STATE: do_save_state(gd, ci, h); break;
	case MIG_CTL_LOAD_STATE: do_load_state(gd, ci, h, pl, fds, nfds); break;
	case MIG_CTL_INCOMING_DONE: do_incoming_done(gd, ci, h); break;
	case MIG_CTL_VERIFY: do_verify(gd, ci, h); break;
	case MIG_CTL_DIRTY_START: do_dirty_start(gd, ci, h); break;
	case MIG_CTL_DIRTY_STOP: do_dirty_stop(gd, ci, h); break;
	case MIG_CTL_DIGEST: do_digest(gd, ci, h); break;
	case MIG_CTL_POKE: do_poke(gd, ci, h, pl); break;
	case MIG_CTL_BIND: guestd_op_bind(gd, ci, h, pl); break;
	case MIG_CTL_SET_STATE: guestd_op_set_state(gd, ci, h, pl); break;
	case MIG_CTL_UNBIND: guestd_op_unbind(gd, ci, h); break;
	case MIG_CTL_ABANDON: guestd_op_abandon(gd, ci, h, pl); break;
	case MIG_CTL_QUIT:
		mig_info("guest", "quit requested by pid %d", (int)gd->cl[ci].pid);
		guestd_reply(gd, ci, h, 0, NULL, 0);
		gd->done = true;
		break;
	default:
		guestd_reply(gd, ci, h, -EOPNOTSUPP, NULL, 0);
	}
}
