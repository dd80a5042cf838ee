// SPDX-License-Identifier: MIT
/*
 * mig-status with no name when several migrations run here: one row (or
 * JSON object) per bus, each asked query-migrate; a bus that does not
 * answer is a row saying so.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/exitcodes.h"
#include "base/log.h"
#include "tools/status-int.h"
#include "base/util.h"

struct row {
	const struct mig_client_entry *e;
	struct mig_json *r;      /* query-migrate's reply, NULL if none */
	char err[128];           /* why not */
	char state[64];          /* its "status", fit for a terminal */
	double pct;              /* < 0: unknown */
};

static void list_query(struct row *w)
{
	struct mig_qmp *q = mig_qmp_connect(w->e->t.path, MIG_CLIENT_RPC_MS);
	int64_t total = 0, done;
	int r;

	w->pct = -1;
	if (!q) {
		snprintf(w->err, sizeof(w->err), "%s", strerror(errno));
		return;
	}
	r = mig_qmp_execute(q, "query-migrate", NULL, &w->r, w->err,
			    sizeof(w->err), MIG_CLIENT_RPC_MS);
	mig_qmp_close(q);
	if (r < 0 && r != -EREMOTEIO)
		snprintf(w->err, sizeof(w->err), "%s", strerror(-r));
	if (r < 0)
		return;
	mig_log_sanitize(mig_json_get_str(w->r, "status"), w->state,
			 sizeof(w->state));
	done = status_ram_done(mig_json_get(w->r, "ram"), &total);
	if (done >= 0)
		w->pct = status_percent(done, total);
}

/* An array of query-migrate replies, each with the name and side of its
 * socket, "bus", and "percent" when known; a bus that does not answer
 * has "status": null and "error-desc". */
static void list_json(const struct row *rows, size_t n)
{
	struct mig_json *arr = mig_json_new_array();

	for (size_t i = 0; i < n; i++) {
		struct mig_json *o = rows[i].r ? mig_json_dup(rows[i].r) :
				     mig_json_new_object();

		mig_json_add_str(o, "name", rows[i].e->name);
		mig_json_add_str(o, "side", rows[i].e->t.side);
		if (!rows[i].r) {
			mig_json_add(o, "status", mig_json_parse("null", 4));
			mig_json_add_str(o, "error-desc", rows[i].err);
		}
		if (rows[i].pct >= 0)
			mig_json_add_double(o, "percent",
					    (double)(int64_t)(rows[i].pct * 10 + 0.5) / 10);
		mig_json_add_str(o, "bus", rows[i].e->t.path);
		mig_json_append(arr, o);
	}
	status_print_json(arr);
	mig_json_free(arr);
}

static const char *row_state(const struct row *w)
{
	return w->r && mig_json_get_str(w->r, "status") ? w->state : "unreachable";
}

/* NAME SIDE STATE DONE, columns as wide as their widest cell. */
static void list_text(const struct row *rows, size_t n)
{
	int wn = 4, ws = 4, wst = 5;

	for (size_t i = 0; i < n; i++) {
		wn = MIG_MAX(wn, (int)strlen(rows[i].e->name));
		ws = MIG_MAX(ws, (int)strlen(rows[i].e->t.side));
		wst = MIG_MAX(wst, (int)strlen(row_state(&rows[i])));
	}
	printf("%-*s  %-*s  %-*s  %6s\n", wn, "NAME", ws, "SIDE", wst, "STATE", "DONE");
	for (size_t i = 0; i < n; i++) {
		printf("%-*s  %-*s  %-*s  ", wn, rows[i].e->name, ws,
		       rows[i].e->t.side, wst, row_state(&rows[i]));
		if (rows[i].pct >= 0)
			printf("%5.1f%%\n", rows[i].pct);
		else
			printf("%6s\n", "-");
	}
}

/* Exit 0 once listed: a bus that does not answer (its engine was killed
 * and left its socket) is a row saying so, not a failure of the list. */
int status_list(const struct mig_status_opts *o, const struct mig_client_entry *es,
		size_t n)
{
	struct row *rows = calloc(n, sizeof(*rows));

	if (!rows) {
		mig_cli_error("%s", strerror(ENOMEM));
		return MIG_EXIT_FAIL;
	}
	for (size_t i = 0; i < n; i++) {
		rows[i].e = &es[i];
		list_query(&rows[i]);
	}
	if (o->json)
		list_json(rows, n);
	else
		list_text(rows, n);
	for (size_t i = 0; i < n; i++)
		mig_json_free(rows[i].r);
	free(rows);
	return MIG_EXIT_OK;
}
