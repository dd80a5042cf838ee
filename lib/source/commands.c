// SPDX-License-Identifier: MIT
/*
 * The source's bus commands and its part of query-migrate.
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

static int cmd_migrate(struct src *s, const struct mig_json *args, char *desc,
		       size_t desclen)
{
	const char *uri = args ? mig_json_get_str(args, "uri") : NULL;
	bool resume = false;
	struct mig_uri u;

	if (args)
		mig_json_get_bool(args, "resume", &resume);
	if (!resume) {
		snprintf(desc, desclen, "migrate: this engine runs its "
			 "migration already; only 'resume': true is accepted");
		return -EINVAL;
	}
	if (!uri || mig_uri_parse(uri, &u) < 0) {
		snprintf(desc, desclen, "migrate: bad or missing 'uri' "
			 "(tcp:HOST:PORT or unix:PATH)");
		return -EINVAL;
	}
	if (mig_engine_state(&s->e) != MIG_STATE_POSTCOPY_PAUSED) {
		snprintf(desc, desclen, "migrate: resume needs state "
			 "postcopy-paused, not %s",
			 mig_state_name(mig_engine_state(&s->e)));
		return -EINVAL;
	}
	pthread_mutex_lock(&s->e.lock);
	snprintf(s->recover_uri, sizeof(s->recover_uri), "%s", uri);
	pthread_mutex_unlock(&s->e.lock);
	mig_engine_post(&s->e, MIG_EV_RECOVER);
	return 0;
}

static int cmd_cancel(struct src *s, char *desc, size_t desclen)
{
	enum mig_state st = mig_engine_state(&s->e);

	if (mig_state_postcopy(st)) {
		snprintf(desc, desclen, "migrate-cancel: refused: postcopy has "
			 "started and the guest's memory is split between the "
			 "hosts; use migrate-pause and migrate-recover");
		return -EPERM;
	}
	if (mig_state_terminal(st)) {
		snprintf(desc, desclen, "migrate-cancel: migration already %s",
			 mig_state_name(st));
		return -EINVAL;
	}
	mig_engine_post(&s->e, MIG_EV_CANCEL);
	return 0;
}

static int cmd_set_parameters(struct src *s, const struct mig_json *args,
			      char *desc, size_t desclen)
{
	int64_t bw = -1, dl = -1;

	bool preempt = false, set_preempt = false;

	if (!args || !mig_json_is_object(args)) {
		snprintf(desc, desclen, "migrate-set-parameters: arguments missing");
		return -EINVAL;
	}
	if (mig_json_get(args, "postcopy-preempt")) {
		enum mig_state st = mig_engine_state(&s->e);

		if (!mig_json_get_bool(args, "postcopy-preempt", &preempt)) {
			snprintf(desc, desclen, "postcopy-preempt: true or false");
			return -EINVAL;
		}
		if (st != MIG_STATE_NONE && st != MIG_STATE_SETUP &&
		    st != MIG_STATE_ACTIVE) {
			snprintf(desc, desclen, "postcopy-preempt: only before "
				 "postcopy starts (state %s)", mig_state_name(st));
			return -EINVAL;
		}
		set_preempt = true;
	}
	if (mig_json_get(args, "max-bandwidth") &&
	    (!mig_json_get_int(args, "max-bandwidth", &bw) || bw < 0)) {
		snprintf(desc, desclen, "max-bandwidth: bytes per second, >= 0");
		return -EINVAL;
	}
	if (mig_json_get(args, "downtime-limit") &&
	    (!mig_json_get_int(args, "downtime-limit", &dl) || dl < 0 ||
	     dl > 2000000)) {
		snprintf(desc, desclen, "downtime-limit: milliseconds, 0-2000000");
		return -EINVAL;
	}
	/* all checked: apply all, or (above) nothing */
	if (set_preempt)
		atomic_store(&s->preempt, preempt);
	if (bw >= 0)
		atomic_store(&s->max_bw, (uint64_t)bw);
	if (dl >= 0)
		atomic_store(&s->downtime_limit_ms, (uint64_t)dl);
	return 0;
}

static struct mig_json *query_parameters(struct src *s)
{
	struct mig_json *r = mig_json_new_object();

	mig_json_add_int(r, "max-bandwidth", (int64_t)atomic_load(&s->max_bw));
	mig_json_add_int(r, "downtime-limit",
			 (int64_t)atomic_load(&s->downtime_limit_ms));
	mig_json_add_bool(r, "postcopy-preempt", atomic_load(&s->preempt));
	mig_json_add_bool(r, "compress", s->compress);
	mig_json_add_int(r, "link-timeout", s->e.link_timeout_ms);
	return r;
}

static int src_command(struct mig_engine *e, const char *cmd,
		       const struct mig_json *args, struct mig_json **ret,
		       char *desc, size_t desclen)
{
	struct src *s = e->ctx;

	*ret = NULL;
	if (!strcmp(cmd, "migrate-start-postcopy")) {
		if (mig_engine_state(e) != MIG_STATE_ACTIVE) {
			snprintf(desc, desclen, "migrate-start-postcopy: only in "
				 "state active (precopy), not %s",
				 mig_state_name(mig_engine_state(e)));
			return -EINVAL;
		}
		mig_engine_post(e, MIG_EV_SWITCH);
		return 0;
	}
	if (!strcmp(cmd, "migrate-set-parameters"))
		return cmd_set_parameters(s, args, desc, desclen);
	if (!strcmp(cmd, "query-migrate-parameters")) {
		*ret = query_parameters(s);
		return 0;
	}
	if (!strcmp(cmd, "migrate-pause"))
		return cmd_pause(s, desc, desclen);
	if (!strcmp(cmd, "migrate"))
		return cmd_migrate(s, args, desc, desclen);
	if (!strcmp(cmd, "migrate-cancel"))
		return cmd_cancel(s, desc, desclen);
	if (!strcmp(cmd, "migrate-recover")) {
		snprintf(desc, desclen, "migrate-recover is a destination "
			 "command; on the source use migrate with resume");
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
	mig_json_add_str(ret, "dirty-tracking", s->dt ? mig_dirty_method_of(s->dt) : "none");
	/* "guest-pid": the source guest's process, once attached, so that
	 * scripts and tests find it through what the engine reports */
	pid = atomic_load(&s->guest_pid);
	if (pid > 0)
		mig_json_add_int(ret, "guest-pid", pid);
	if (!ram)
		return;
	mig_json_add_int(ram, "dirty-sync-count", ps.n);
	mig_json_add_double(ram, "dirty-pages-rate",
			    ps.ns ? ps.dirty_after * 1e9 / (double)ps.ns : 0);
	mig_json_add_int(ram, "last-pass-pages", ps.pages_sent);
	mig_json_add_int(ram, "discarded", s->discarded);
}

const struct mig_engine_ops src_ops = {
	.command = src_command,
	.query = src_query,
};
