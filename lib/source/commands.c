// SPDX-License-Identifier: MIT
/*
 * The source's bus commands and its part of query-migrate (the shared
 * ones are lib/engine/commands.c).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/dirty.h"
#include "core/json.h"
#include "source/source-int.h"

/* Bus commands (bus thread: no blocking here). */
static int cmd_pause(struct src *s, char *desc, size_t desclen)
{
	enum mig_state st = mig_engine_state(&s->e);

	if (st != MIG_STATE_POSTCOPY_ACTIVE && st != MIG_STATE_POSTCOPY_RECOVER &&
	    st != MIG_STATE_POSTCOPY_RECOVER_SETUP) {
		snprintf(desc, desclen, "migrate-pause: nothing to pause in "
			 "state %s (only postcopy-active or postcopy-recover)",
			 mig_state_name(st));
		return -EINVAL;
	}
	mig_engine_post(&s->e, MIG_EV_PAUSE);
	mig_engine_kick_all(&s->e);
	return 0;
}

/* migrate: starts a deferred engine's migration, or resumes a paused one. */
static int cmd_migrate(struct src *s, const struct mig_json *args, char *desc,
		       size_t desclen)
{
	char uri[sizeof(s->recover_uri)];
	bool resume = false;
	int r;

	mig_json_get_bool(args, "resume", &resume);
	r = mig_engine_addr_arg("migrate", args, uri, sizeof(uri), desc, desclen);
	if (r < 0)
		return r;
	if (!resume)
		return src_cmd_start(s, uri, desc, desclen);
	if (mig_engine_state(&s->e) != MIG_STATE_POSTCOPY_PAUSED) {
		snprintf(desc, desclen, "Cannot resume if there is no paused "
			 "migration (state %s)",
			 mig_state_name(mig_engine_state(&s->e)));
		return -EINVAL;
	}
	pthread_mutex_lock(&s->e.lock);
	snprintf(s->recover_uri, sizeof(s->recover_uri), "%s", uri);
	pthread_mutex_unlock(&s->e.lock);
	mig_engine_post(&s->e, MIG_EV_RECOVER);
	return 0;
}

/* As QEMU, cancelling what has ended is no error; unlike QEMU, mig never
 * cancels once postcopy has started: the guest would be lost. */
static int cmd_cancel(struct src *s, const char *cmd, char *desc,
		      size_t desclen)
{
	enum mig_state st = mig_engine_state(&s->e);

	if (mig_state_terminal(st) || st == MIG_STATE_CANCELLING)
		return 0;
	if (mig_state_postcopy(st) || st == MIG_STATE_DEVICE) {
		snprintf(desc, desclen, "%s: refused: the guest has left this "
			 "host and its memory is split between the hosts; use "
			 "migrate-pause and migrate-recover", cmd);
		return -EPERM;
	}
	mig_engine_post(&s->e, MIG_EV_CANCEL);
	return 0;
}

static bool before_switchover(struct src *s)
{
	enum mig_state st = mig_engine_state(&s->e);

	return st == MIG_STATE_NONE || st == MIG_STATE_SETUP ||
	       st == MIG_STATE_ACTIVE;
}

/* postcopy-ram and postcopy-preempt matter until switchover, and may
 * change until then (QEMU takes them before the migration only). */
static int src_cap(struct mig_engine *e, const char *name, int want,
		   bool apply, char *desc, size_t desclen)
{
	struct src *s = e->ctx;
	atomic_bool *cap = !strcmp(name, "postcopy-ram") ? &s->postcopy_ram :
			   &s->preempt;

	if (want < 0)
		return atomic_load(cap);
	if (!before_switchover(s) && want != atomic_load(cap)) {
		snprintf(desc, desclen, "Capability '%s' cannot change after "
			 "switchover (state %s)", name,
			 mig_state_name(mig_engine_state(e)));
		return -EBUSY;
	}
	if (apply)
		atomic_store(cap, want);
	return 0;
}

#define DOWNTIME_LIMIT_MS_MAX 2000000

static int range(const char *name, int64_t v, int64_t max, const char *unit,
		 char *desc, size_t desclen)
{
	if (v >= 0 && v <= max)
		return 0;
	snprintf(desc, desclen, "Parameter '%s' expects an integer in the range "
		 "of 0 to %lld %s", name, (long long)max, unit);
	return -EINVAL;
}

static int src_params(struct mig_engine *e, const struct mig_json *args,
		      bool apply, char *desc, size_t desclen)
{
	struct src *s = e->ctx;
	const struct {
		const char *name;
		_Atomic uint64_t *v;
		int64_t max;
		const char *unit;
	} p[] = {
		{ "max-bandwidth", &s->max_bw, INT64_MAX, "bytes/second" },
		{ "max-postcopy-bandwidth", &s->max_postcopy_bw, INT64_MAX,
		  "bytes/second" },
		{ "downtime-limit", &s->downtime_limit_ms, DOWNTIME_LIMIT_MS_MAX,
		  "milliseconds" },
	};
	int64_t v;
	int r;

	/* the next connection's (a recovery's too): each hello fixes its own */
	if (mig_json_get_int(args, "multifd-channels", &v)) {
		if (v < 1 || v > MIG_CHANNELS_MAX) {
			snprintf(desc, desclen, "Parameter 'multifd-channels' "
				 "expects a value between 1 and %d",
				 MIG_CHANNELS_MAX);
			return -EINVAL;
		}
		if (apply)
			atomic_store(&s->channels, (unsigned)v);
	}
	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++) {
		if (!mig_json_get_int(args, p[i].name, &v))
			continue;
		r = range(p[i].name, v, p[i].max, p[i].unit, desc, desclen);
		if (r < 0)
			return r;
		if (apply)
			atomic_store(p[i].v, (uint64_t)v);
	}
	return 0;
}

static void src_query_params(struct mig_engine *e, struct mig_json *r)
{
	struct src *s = e->ctx;

	mig_json_add_int(r, "max-bandwidth", (int64_t)atomic_load(&s->max_bw));
	mig_json_add_int(r, "downtime-limit",
			 (int64_t)atomic_load(&s->downtime_limit_ms));
	mig_json_add_int(r, "max-postcopy-bandwidth",
			 (int64_t)atomic_load(&s->max_postcopy_bw));
	mig_json_add_bool(r, "x-compress", s->compress);
	mig_json_add_int(r, "multifd-channels", atomic_load(&s->channels));
}

/* The source guest runs until it is stopped for switchover, and never
 * again here once the destination may run it. */
static const char *src_run_state(struct mig_engine *e, bool *running)
{
	enum mig_state st = mig_engine_state(e);
	bool left = e->t_run_ns || mig_state_postcopy(st) ||
		    st == MIG_STATE_COMPLETED;

	*running = !e->t_stop_ns || (!left && mig_state_terminal(st));
	if (*running)
		return "running";
	return left ? "postmigrate" : "finish-migrate";
}

static int src_command(struct mig_engine *e, const char *cmd,
		       const struct mig_json *args, struct mig_json **ret,
		       char *desc, size_t desclen)
{
	struct src *s = e->ctx;

	*ret = NULL;
	if (!strcmp(cmd, "migrate-start-postcopy")) {
		if (!atomic_load(&s->postcopy_ram)) {
			snprintf(desc, desclen, "Enable postcopy with "
				 "migrate-set-capabilities before the start of "
				 "migration");
			return -EINVAL;
		}
		if (mig_engine_state(e) != MIG_STATE_ACTIVE) {
			snprintf(desc, desclen, "migrate-start-postcopy: only in "
				 "state active (precopy), not %s",
				 mig_state_name(mig_engine_state(e)));
			return -EINVAL;
		}
		mig_engine_post(e, MIG_EV_SWITCH);
		return 0;
	}
	if (!strcmp(cmd, "migrate-pause"))
		return cmd_pause(s, desc, desclen);
	if (!strcmp(cmd, "migrate"))
		return cmd_migrate(s, args, desc, desclen);
	if (!strcmp(cmd, "migrate_cancel") || !strcmp(cmd, "migrate-cancel"))
		return cmd_cancel(s, cmd, desc, desclen);
	if (!strcmp(cmd, "migrate-recover") || !strcmp(cmd, "migrate-incoming")) {
		snprintf(desc, desclen, "%s is a destination command; on the "
			 "source use migrate with resume", cmd);
		return -EINVAL;
	}
	return -ENOENT;
}

static void src_query(struct mig_engine *e, struct mig_json *ret)
{
	struct src *s = e->ctx;
	struct mig_json *ram = mig_json_get(ret, "ram");
	struct mig_pass ps;
	pid_t pid;

	pthread_mutex_lock(&e->lock);
	ps = s->pass;
	pthread_mutex_unlock(&e->lock);
	mig_json_add_str(ret, "x-dirty-tracking",
			 s->dt ? mig_dirty_method_of(s->dt) : "none");
	/* the source guest's process, once attached, so that scripts and
	 * tests find it through what the engine reports */
	pid = atomic_load(&s->guest_pid);
	if (pid > 0)
		mig_json_add_int(ret, "x-guest-pid", pid);
	if (!ram)
		return;
	mig_json_add_int(ram, "dirty-sync-count", ps.n);
	mig_json_add_int(ram, "dirty-pages-rate",
			 ps.ns ? (int64_t)(ps.dirty_after * 1e9 / (double)ps.ns) : 0);
	mig_json_add_int(ram, "x-last-pass-pages", ps.pages_sent);
	mig_json_add_int(ram, "x-discarded", s->discarded);
}

const struct mig_engine_ops src_ops = {
	.command = src_command,
	.query = src_query,
	.cap = src_cap,
	.params = src_params,
	.query_params = src_query_params,
	.run_state = src_run_state,
};
