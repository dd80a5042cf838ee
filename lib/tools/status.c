// SPDX-License-Identifier: MIT
/*
 * mig-status: see status.h. This file picks what to show (one migration,
 * both its sides, or the list of all of them) and runs the one-shot view
 * and --wait-for; the rest is status-print.c, status-list.c and
 * status-watch.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "base/exitcodes.h"
#include "base/log.h"
#include "tools/status-int.h"
#include "base/util.h"

/* ---- one-shot view ---- */

static struct mig_json *query(const struct mig_status_opts *o,
			      const struct mig_client_target *t, int *status)
{
	struct mig_json *ret = NULL;
	struct mig_qmp *q = mig_client_connect(&o->sel, t);
	char desc[256], safe[256];
	int r;

	if (!q) {
		*status = MIG_EXIT_UNAVAILABLE;
		return NULL;
	}
	r = mig_qmp_execute(q, "query-migrate", NULL, &ret, desc, sizeof(desc),
			    MIG_CLIENT_RPC_MS);
	mig_qmp_close(q);
	if (r == -EREMOTEIO)
		mig_cli_error("query-migrate: %s",
			      mig_log_sanitize(desc, safe, sizeof(safe)));
	else if (r < 0)
		mig_cli_error("query-migrate: %s", strerror(-r));
	*status = r == -ECONNRESET ? MIG_EXIT_UNAVAILABLE : MIG_EXIT_FAIL;
	return ret;
}

static int show(const struct mig_status_opts *o, const struct mig_client_targets *ts)
{
	struct mig_json *both = mig_json_new_object();
	int status = MIG_EXIT_OK, err = MIG_EXIT_OK;
	size_t shown = 0;

	for (size_t i = 0; i < ts->n; i++) {
		struct mig_json *r = query(o, &ts->t[i], &err);

		if (!r)
			continue;
		if (o->json && ts->n > 1)
			mig_json_add(both, ts->t[i].side, mig_json_dup(r));
		else if (o->json)
			status_print_json(r);
		else if (ts->n > 1)
			printf("%s%s:\n", shown ? "\n" : "", ts->t[i].side);
		if (!o->json)
			mig_status_print(stdout, r, ts->n > 1 ? "  " : "");
		mig_json_free(r);
		shown++;
	}
	if (o->json && ts->n > 1 && shown)
		status_print_json(both);
	mig_json_free(both);
	if (shown < ts->n)
		status = shown ? MIG_EXIT_FAIL : err;
	return status;
}

/* ---- --wait-for ---- */

static int wait_for(const struct mig_status_opts *o, const struct mig_client_target *t)
{
	struct mig_qmp *q = mig_client_connect(&o->sel, t);
	enum mig_state last = MIG_STATE_NONE;
	int r;

	if (!q)
		return MIG_EXIT_UNAVAILABLE;
	r = mig_client_wait_for(q, o->want, o->nwant, o->timeout_ms, &last);
	mig_qmp_close(q);
	return mig_client_wait_exit(r, last);
}

/* implicit_name(): list them all instead of showing one. */
#define LIST_ALL (-1)

/* No name and no --bus: "default" if it is here, else the only name here
 * (into *name, which points into *es), else LIST_ALL when there are
 * several. 0 to go on with *name, LIST_ALL, or an exit status. */
static int implicit_name(const struct mig_status_opts *o, const char **name,
			 struct mig_client_entry **es, size_t *n)
{
	size_t names;
	int r = mig_client_scan(o->sel.side, es, n);

	if (r < 0) {
		/* then as before: "default", and its error if it is not here */
		mig_dbg("client", "runtime directory: %s", strerror(-r));
		return 0;
	}
	names = mig_client_scan_names(*es, *n);
	for (size_t i = 0; i < *n; i++)
		if (!strcmp((*es)[i].name, "default"))
			return 0;
	if (names == 0 && o->sel.side == MIG_CLIENT_SIDE_ANY) {
		char dir[256];

		if (mig_runtime_dir(dir, sizeof(dir), false) < 0)
			snprintf(dir, sizeof(dir), "$MIG_RUNTIME_DIR");
		mig_cli_error("no migration on this host (no status bus in %s)", dir);
		return MIG_EXIT_UNAVAILABLE;
	}
	if (names == 1)
		*name = (*es)[0].name;
	if (names <= 1)
		return 0;
	if (o->watch || o->nwant)
		return mig_cli_usage("%zu migrations run on this host (%s, %s%s): name one",
					names, (*es)[0].name, (*es)[*n - 1].name,
					names > 2 ? ", ..." : "");
	return LIST_ALL;
}

int mig_status_run(const struct mig_status_opts *opts)
{
	struct mig_status_opts o = *opts;
	struct mig_client_entry *es = NULL;
	struct mig_client_targets ts;
	size_t n = 0;
	int r = 0;

	if (!o.sel.bus && !o.sel.name) {
		r = implicit_name(&o, &o.sel.name, &es, &n);
		if (r == LIST_ALL) {
			r = status_list(&o, es, n);
			goto out;
		}
		if (r)
			goto out;
	}
	r = mig_client_resolve(&o.sel, &ts);
	if (r)
		goto out;
	if (o.watch)
		r = status_watch(&o, &ts);
	else if (o.nwant && ts.n > 1)
		r = mig_cli_usage("both sides of '%s' run on this host: pick one with --side",
				     o.sel.name ? o.sel.name : "default");
	else if (o.nwant)
		r = wait_for(&o, &ts.t[0]);
	else
		r = show(&o, &ts);
out:
	free(es);
	return r;
}
