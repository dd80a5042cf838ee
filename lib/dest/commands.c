// SPDX-License-Identifier: MIT
/*
 * The destination's bus commands and its part of query-migrate. They run
 * on the bus thread: no blocking here; what the control loop must do is
 * posted to it as an event.
 */
#include <errno.h>
#include <string.h>
#include <stdio.h>

#include "base/latency.h"
#include "core/json.h"
#include "dest/dest-int.h"

static int dst_command(struct mig_engine *e, const char *cmd,
		       const struct mig_json *args, struct mig_json **ret,
		       char *desc, size_t desclen)
{
	struct dst *d = e->ctx;
	enum mig_state st = mig_engine_state(e);

	*ret = NULL;
	if (!strcmp(cmd, "migrate-recover"))
		return dst_cmd_recover(d, args, desc, desclen);
	if (!strcmp(cmd, "migrate-pause")) {
		if (st != MIG_STATE_POSTCOPY_ACTIVE && st != MIG_STATE_POSTCOPY_RECOVER) {
			snprintf(desc, desclen, "migrate-pause: nothing to pause "
				 "in state %s (only postcopy-active or "
				 "postcopy-recover)", mig_state_name(st));
			return -EINVAL;
		}
		mig_engine_post(e, MIG_EV_PAUSE);
		mig_engine_kick_all(e);
		return 0;
	}
	if (!strcmp(cmd, "migrate-cancel")) {
		snprintf(desc, desclen, "migrate-cancel: %s", mig_state_postcopy(st) ?
			 "refused: postcopy has started and the guest's memory "
			 "is split between the hosts; use migrate-pause and "
			 "migrate-recover" : "cancel the migration on the source");
		return -EPERM;
	}
	return -ENOENT;
}

static void dst_query(struct mig_engine *e, struct mig_json *ret)
{
	struct dst *d = e->ctx;
	struct mig_latency_summary s;
	struct mig_json *lat;
	pid_t pid;

	if (!d->e.lat)
		return;
	mig_latency_summary(d->e.lat, &s);
	lat = mig_json_new_object();
	mig_json_add_int(lat, "count", s.count);
	mig_json_add_double(lat, "p50-us", s.p50_ns / 1e3);
	mig_json_add_double(lat, "p90-us", s.p90_ns / 1e3);
	mig_json_add_double(lat, "p99-us", s.p99_ns / 1e3);
	mig_json_add_double(lat, "max-us", s.max_ns / 1e3);
	mig_json_add(ret, "postcopy-latency", lat);
	if (mig_json_get(ret, "ram"))
		mig_json_add_int(mig_json_get(ret, "ram"), "discarded", d->discarded);
	mig_json_add_double(ret, "postcopy-blocktime", s.sum_ns / 1e6);
	if (d->guest_ctl[0])
		mig_json_add_str(ret, "guest-ctl", d->guest_ctl);
	/* the guest we spawned or took over, for whoever must find it */
	pid = d->guest_pid;
	if (pid > 0)
		mig_json_add_int(ret, "guest-pid", pid);
}

const struct mig_engine_ops dst_ops = {
	.command = dst_command,
	.query = dst_query,
};
