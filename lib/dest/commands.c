// SPDX-License-Identifier: MIT
/*
 * The destination's bus commands and its part of query-migrate (the
 * shared ones are lib/engine/commands.c). They run on the bus thread: no
 * blocking here; what the control loop must do is posted to it as an event.
 */
#include <errno.h>
#include <string.h>
#include <stdio.h>

#include "base/latency.h"
#include "core/json.h"
#include "dest/dest-int.h"

static int cmd_pause(struct dst *d, char *desc, size_t desclen)
{
	enum mig_state st = mig_engine_state(&d->e);

	if (st != MIG_STATE_POSTCOPY_ACTIVE && st != MIG_STATE_POSTCOPY_RECOVER) {
		snprintf(desc, desclen, "migrate-pause: nothing to pause in state "
			 "%s (only postcopy-active or postcopy-recover)",
			 mig_state_name(st));
		return -EINVAL;
	}
	mig_engine_post(&d->e, MIG_EV_PAUSE);
	mig_engine_kick_all(&d->e);
	return 0;
}

/* Nothing to cancel is no error (QEMU's rule); the rest is the source's
 * to cancel, and once postcopy has started no one's. */
static int cmd_cancel(struct dst *d, const char *cmd, char *desc,
		      size_t desclen)
{
	enum mig_state st = mig_engine_state(&d->e);

	if (st == MIG_STATE_NONE || mig_state_terminal(st))
		return 0;
	snprintf(desc, desclen, "%s: %s", cmd, mig_state_postcopy(st) ?
		 "refused: postcopy has started and the guest's memory is "
		 "split between the hosts; use migrate-pause and "
		 "migrate-recover" : "cancel the migration on the source");
	return -EPERM;
}

static int cmd_incoming(struct dst *d, const struct mig_json *args,
			char *desc, size_t desclen)
{
	char uri[sizeof(d->listen_uri)];
	int r = mig_engine_addr_arg("migrate-incoming", args, uri, sizeof(uri),
				    desc, desclen);

	return r < 0 ? r : dst_cmd_incoming(d, uri, desc, desclen);
}

static int dst_command(struct mig_engine *e, const char *cmd,
		       const struct mig_json *args, struct mig_json **ret,
		       char *desc, size_t desclen)
{
	struct dst *d = e->ctx;

	*ret = NULL;
	if (!strcmp(cmd, "migrate-recover"))
		return dst_cmd_recover(d, mig_json_get_str(args, "uri"), desc,
				       desclen);
	if (!strcmp(cmd, "migrate-incoming"))
		return cmd_incoming(d, args, desc, desclen);
	if (!strcmp(cmd, "migrate-pause"))
		return cmd_pause(d, desc, desclen);
	if (!strcmp(cmd, "migrate_cancel") || !strcmp(cmd, "migrate-cancel"))
		return cmd_cancel(d, cmd, desc, desclen);
	if (!strcmp(cmd, "migrate") || !strcmp(cmd, "migrate-start-postcopy")) {
		snprintf(desc, desclen, "%s is a source command; on the "
			 "destination use migrate-incoming or migrate-recover",
			 cmd);
		return -EINVAL;
	}
	return -ENOENT;
}

/* The destination takes whatever the source chooses. */
static int dst_cap(struct mig_engine *e, const char *name, int want,
		   bool apply, char *desc, size_t desclen)
{
	if (want != 0)
		return 1;
	snprintf(desc, desclen, "Capability '%s' cannot be disabled on the "
		 "destination: it follows what the source does", name);
	return -EPERM;
}

static int dst_params(struct mig_engine *e, const struct mig_json *args,
		      bool apply, char *desc, size_t desclen)
{
	static const char *const source_only[] = {
		"max-bandwidth", "max-postcopy-bandwidth", "downtime-limit",
		"multifd-channels",
	};

	for (size_t i = 0; i < sizeof(source_only) / sizeof(source_only[0]); i++)
		if (mig_json_get(args, source_only[i])) {
			snprintf(desc, desclen, "Parameter '%s' has no effect on "
				 "the destination: set it on the source",
				 source_only[i]);
			return -EINVAL;
		}
	return 0;
}

static void dst_query_params(struct mig_engine *e, struct mig_json *r)
{
}

/* The incoming guest runs from the source's go-ahead on (vCPUs may block
 * on missing pages, paused link or not); before, it waits; a migration
 * that failed before switchover took it down. */
static const char *dst_run_state(struct mig_engine *e, bool *running)
{
	struct dst *d = e->ctx;
	enum mig_state st = mig_engine_state(e);

	*running = d->running;
	if (d->running)
		return "running";
	if (d->switched)
		return "paused"; /* --paused-start: mig-guest cont runs it */
	return mig_state_terminal(st) && st != MIG_STATE_COMPLETED ?
	       "shutdown" : "inmigrate";
}

static void dst_query(struct mig_engine *e, struct mig_json *ret)
{
	struct dst *d = e->ctx;
	struct mig_latency_summary s;
	struct dst_blocktime bt;
	struct mig_json *lat, *vbt, *ram = mig_json_get(ret, "ram");
	pid_t pid;

	if (ram) {
		mig_json_add_int(ram, "x-discarded", d->discarded);
		mig_json_add_int(ram, "x-duplicate-pages", d->e.st.duplicates);
		mig_json_add_int(ram, "x-pages-from-hand", d->from_hand);
		mig_json_add_int(ram, "x-hedged-requests", d->hedged);
	}
	if (d->guest_ctl[0])
		mig_json_add_str(ret, "x-guest-ctl", d->guest_ctl);
	/* the guest we spawned or took over, for whoever must find it */
	pid = d->guest_pid;
	if (pid > 0)
		mig_json_add_int(ret, "x-guest-pid", pid);
	dst_blocktime_get(d, &bt);
	mig_json_add_int(ret, "postcopy-blocktime", bt.total_ms);
	vbt = mig_json_new_array();
	for (uint32_t v = 0; v < bt.nvcpus; v++)
		mig_json_append(vbt, mig_json_new_int(bt.vcpu_ms[v]));
	mig_json_add(ret, "postcopy-vcpu-blocktime", vbt);
	if (!d->e.lat)
		return;
	mig_latency_summary(d->e.lat, &s);
	lat = mig_json_new_object();
	mig_json_add_int(lat, "count", s.count);
	mig_json_add_double(lat, "p50-us", s.p50_ns / 1e3);
	mig_json_add_double(lat, "p90-us", s.p90_ns / 1e3);
	mig_json_add_double(lat, "p99-us", s.p99_ns / 1e3);
	mig_json_add_double(lat, "max-us", s.max_ns / 1e3);
	mig_json_add(ret, "x-postcopy-latency", lat);
}

const struct mig_engine_ops dst_ops = {
	.command = dst_command,
	.query = dst_query,
	.cap = dst_cap,
	.params = dst_params,
	.query_params = dst_query_params,
	.run_state = dst_run_state,
};
