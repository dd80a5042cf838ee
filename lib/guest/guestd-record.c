// SPDX-License-Identifier: MIT
/*
 * mig-guest's migration record: which migration the guest belongs to, on
 * which side, how far it got. BIND, SET_STATE, UNBIND and ABANDON change
 * it, and so does the claim holder's going away.
 */
#include <errno.h>
#include <string.h>

#include "base/bytes.h"
#include "base/log.h"
#include "base/util.h"
#include "core/state.h"
#include "guest/ctl.h"
#include "guest/guestd-int.h"

static void record_clear(struct guestd *gd)
{
	gd->rec = (struct mig_guest_record){ .phase = MIG_GUEST_UNBOUND };
}

/*
 * The engine holding the claim went away (it closed, or died). From
 * switchover on the guest waits, as it is, for the next engine: its RAM and
 * its record are the truth and a restarted engine takes over. Before
 * switchover the migration has failed with its engine: the guest is whole
 * on the source, which runs on; an incoming guest holds nothing anyone
 * needs and exits, so nothing is left behind.
 */
void guestd_engine_gone(struct guestd *gd, pid_t pid)
{
	bool early = gd->rec.phase < MIG_GUEST_SWITCHED;
	char id[37];

	mig_info("guest", "engine pid %d detached", (int)pid);
	if (!early || (gd->rec.phase == MIG_GUEST_UNBOUND && !gd->incoming))
		return;
	if (gd->incoming) {
		mig_warn("guest", "engine gone before switchover: the migration "
			 "failed, nothing here to keep; exiting");
		gd->done = true;
		return;
	}
	mig_uuid_format(gd->rec.uuid, id);
	mig_warn("guest", "engine gone before switchover: migration %s failed; "
		 "the guest runs on here", id);
	guestd_tracking_stop(gd);
	record_clear(gd);
	gd->running = true;
}

/* A guest belongs to one migration at a time, and never to another. One
 * that arrived completely is free to leave again: as a source, in a new
 * migration. */
static int bind_check(const struct guestd *gd, const struct mig_guest_record *r)
{
	bool arrived = gd->rec.phase == MIG_GUEST_COMPLETED &&
		       gd->rec.side == MIG_SIDE_DEST;

	if (gd->rec.phase == MIG_GUEST_UNBOUND || (arrived && memcmp(gd->rec.uuid, r->uuid, 16)))
		return r->side == (gd->incoming ? MIG_SIDE_DEST : MIG_SIDE_SOURCE) ?
		       0 : -EINVAL;
	if (memcmp(gd->rec.uuid, r->uuid, 16))
		return -EEXIST;
	return gd->rec.side == r->side ? 0 : -EINVAL;
}

void guestd_op_bind(struct guestd *gd, int ci, const struct mig_ctl_hdr *h,
		    const uint8_t *pl)
{
	/* zeroed: the uuid is formatted below even when unpack never ran */
	struct mig_guest_record r = { .phase = MIG_GUEST_UNBOUND };
	char id[37], have[37];
	int e = guestd_need_claim(gd, ci);

	if (e == 0)
		e = mig_ctl_bind_unpack(pl, h->len, &r) < 0 ? -EINVAL : bind_check(gd, &r);
	mig_uuid_format(r.uuid, id);
	mig_uuid_format(gd->rec.uuid, have);
	if (e == -EEXIST)
		mig_warn("guest", "engine pid %d refused: migration %s is not "
			 "ours (%s)", (int)gd->cl[ci].pid, id, have);
	if (e == 0 && (gd->rec.phase == MIG_GUEST_UNBOUND ||
		       memcmp(gd->rec.uuid, r.uuid, 16))) {
		gd->rec = r;
		gd->rec.phase = MIG_GUEST_MIGRATING;
		gd->rec.state = MIG_STATE_SETUP;
		mig_info("guest", "bound to migration %s (%s, peer %s)", id,
			 mig_side_name(r.side), r.peer);
	} else if (e == 0) {
		memcpy(gd->rec.peer, r.peer, sizeof(r.peer));
		mig_info("guest", "engine pid %d resumes migration %s (%s)",
			 (int)gd->cl[ci].pid, id, mig_guest_phase_name(gd->rec.phase));
	}
	guestd_reply(gd, ci, h, e, NULL, 0);
}

void guestd_op_set_state(struct guestd *gd, int ci, const struct mig_ctl_hdr *h,
			 const uint8_t *pl)
{
	int e = guestd_need_claim(gd, ci);

	if (e == 0 && (h->len != 4 || mig_get_le32(pl) >= MIG_STATE__COUNT))
		e = -EINVAL;
	if (e == 0 && gd->rec.phase == MIG_GUEST_UNBOUND)
		e = -ESRCH;
	if (e == 0) {
		gd->rec.state = (enum mig_state)mig_get_le32(pl);
		/* the engine saw the destination hold every page */
		if (gd->rec.state == MIG_STATE_COMPLETED &&
		    gd->rec.phase == MIG_GUEST_SWITCHED)
			gd->rec.phase = MIG_GUEST_COMPLETED;
	}
	guestd_reply(gd, ci, h, e, NULL, 0);
}

void guestd_op_unbind(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	int e = guestd_need_claim(gd, ci);
	char id[37];

	if (e == 0 && gd->rec.phase != MIG_GUEST_UNBOUND) {
		mig_uuid_format(gd->rec.uuid, id);
		mig_info("guest", "migration %s ended before switchover: unbound", id);
		record_clear(gd);
	}
	guestd_reply(gd, ci, h, e, NULL, 0);
}

void guestd_op_abandon(struct guestd *gd, int ci, const struct mig_ctl_hdr *h,
		       const uint8_t *pl)
{
	char id[37];
	int e = 0;

	if (h->len != 16)
		e = -EINVAL;
	else if (gd->holder >= 0)
		e = -EBUSY;
	else if (gd->rec.phase == MIG_GUEST_UNBOUND || memcmp(pl, gd->rec.uuid, 16))
		e = -ESRCH;
	else if (gd->rec.side != MIG_SIDE_SOURCE)
		e = -EINVAL;
	if (e == 0) {
		mig_uuid_format(gd->rec.uuid, id);
		mig_warn("guest", "migration %s abandoned by pid %d (%s): this "
			 "guest may run here again", id, (int)gd->cl[ci].pid,
			 mig_guest_phase_name(gd->rec.phase));
		record_clear(gd);
	}
	guestd_reply(gd, ci, h, e, NULL, 0);
}
