// SPDX-License-Identifier: MIT
/*
 * The small programs' side of the bus: see client.h. A tool learns the
 * state the way a manager should: the event history (x-query-events) gives
 * where the migration is, atomically with the live events that follow, so
 * no transition is missed or seen twice and nothing is polled.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/cli.h"
#include "core/chan.h"
#include "tools/client.h"
#include "base/exitcodes.h"
#include "base/log.h"
#include "base/util.h"

static const char *sel_name(const struct mig_client_sel *sel)
{
	return sel->name ? sel->name : "default";
}

int mig_client_side_parse(const char *s, enum mig_client_side *out)
{
	if (!strcmp(s, "source") || !strcmp(s, "send"))
		*out = MIG_CLIENT_SIDE_SOURCE;
	else if (!strcmp(s, "destination") || !strcmp(s, "recv"))
		*out = MIG_CLIENT_SIDE_DEST;
	else
		return mig_cli_usage("--side '%s' is not source or destination", s);
	return 0;
}

int mig_client_select(struct mig_client_sel *sel, const struct mig_cli_args *a,
		      int argc, char **argv, int first)
{
	sel->name = a->name;
	sel->bus = a->bus;
	if (first < argc && !sel->name) {
		if (sel->bus)
			return mig_cli_usage("--bus and NAME exclude each other: "
					     "--bus names the bus");
		sel->name = argv[first++];
	}
	if (first < argc)
		return mig_cli_usage("unexpected argument '%s'", argv[first]);
	return 0;
}

static bool is_socket(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

static int add_target(const struct mig_client_sel *sel, const char *bus_side,
		      const char *side, struct mig_client_target *t)
{
	int r = mig_bus_path(sel_name(sel), bus_side, t->path, sizeof(t->path),
			     false);

	if (r < 0)
		return r;
	t->side = side;
	return is_socket(t->path) ? 1 : 0;
}

int mig_client_resolve(const struct mig_client_sel *sel,
		       struct mig_client_targets *out)
{
	static const char *const bus_sides[] = { "send", "recv" };
	static const char *const sides[] = { "source", "destination" };
	char missing[2][108];
	size_t tried = 0;

	memset(out, 0, sizeof(*out));
	if (sel->bus) {
		if (snprintf(out->t[0].path, sizeof(out->t[0].path), "%s",
			     sel->bus) >= (int)sizeof(out->t[0].path))
			return mig_cli_usage("--bus: path too long: %s", sel->bus);
		out->n = 1;
		return 0;
	}
	if (!mig_name_valid(sel_name(sel)))
		return mig_cli_usage("invalid --name '%s' (letters, digits, '.', '_', '-')",
				     sel_name(sel));
	for (int i = 0; i < 2; i++) {
		struct mig_client_target *t = &out->t[out->n];
		int r;

		if ((sel->side == MIG_CLIENT_SIDE_SOURCE && i == 1) ||
		    (sel->side == MIG_CLIENT_SIDE_DEST && i == 0))
			continue;
		r = add_target(sel, bus_sides[i], sides[i], t);
		if (r < 0) {
			if (r != -EPERM) /* a refused runtime directory: said */
				mig_cli_error("bus path for '%s': %s",
					      sel_name(sel), strerror(-r));
			return MIG_EXIT_UNAVAILABLE;
		}
		if (r > 0)
			out->n++;
		else
			memcpy(missing[tried++], t->path, sizeof(t->path));
	}
	if (out->n)
		return 0;
	mig_cli_error("no migration '%s' on this host (no bus at %s%s%s)",
		      sel_name(sel), missing[0], tried > 1 ? " or " : "",
		      tried > 1 ? missing[1] : "");
	return MIG_EXIT_UNAVAILABLE;
}

static int by_name_side(const void *a, const void *b)
{
	const struct mig_client_entry *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	/* "source" < "destination" would sort the wrong way round */
	if (c == 0)
		c = (x->t.side[0] == 'd') - (y->t.side[0] == 'd');
	return c;
}

/* NAME.send.sock / NAME.recv.sock: the side, and NAME into name[]. */
static const char *entry_side(const char *file, char *name, size_t len)
{
	static const struct { const char *suffix, *side; } kinds[] = {
		{ ".send.sock", "source" },
		{ ".recv.sock", "destination" },
	};
	size_t n = strlen(file);

	for (size_t i = 0; i < MIG_ARRAY_SIZE(kinds); i++) {
		size_t sl = strlen(kinds[i].suffix);

		if (n <= sl || n - sl >= len || strcmp(file + n - sl, kinds[i].suffix))
			continue;
		snprintf(name, len, "%.*s", (int)(n - sl), file);
		return mig_name_valid(name) ? kinds[i].side : NULL;
	}
	return NULL;
}

int mig_client_scan(enum mig_client_side side, struct mig_client_entry **out,
		    size_t *n)
{
	struct mig_client_entry *v = NULL, *grown;
	size_t cap = 0;
	struct dirent *de;
	char dir[256];
	DIR *d = NULL;
	int r;

	*out = NULL;
	*n = 0;
	r = mig_runtime_dir(dir, sizeof(dir), false);
	if (r < 0)
		goto out;
	d = opendir(dir);
	if (!d) {
		r = errno == ENOENT ? 0 : -errno;
		goto out;
	}
	while ((de = readdir(d))) {
		struct mig_client_entry e;
		const char *s = entry_side(de->d_name, e.name, sizeof(e.name));

		if (!s || (side == MIG_CLIENT_SIDE_SOURCE && s[0] != 's') ||
		    (side == MIG_CLIENT_SIDE_DEST && s[0] != 'd'))
			continue;
		e.t.side = s;
		if (snprintf(e.t.path, sizeof(e.t.path), "%s/%s", dir,
			     de->d_name) >= (int)sizeof(e.t.path) ||
		    !is_socket(e.t.path))
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 8;
			grown = realloc(v, cap * sizeof(*v));
			if (!grown) {
				r = -ENOMEM;
				goto out;
			}
			v = grown;
		}
		v[(*n)++] = e;
	}
	if (*n)
		qsort(v, *n, sizeof(*v), by_name_side);
	*out = v;
	v = NULL;
	r = 0;
out:
	if (d)
		closedir(d);
	free(v);
	if (r < 0)
		*n = 0;
	return r;
}

size_t mig_client_scan_names(const struct mig_client_entry *entries, size_t n)
{
	size_t names = 0;

	for (size_t i = 0; i < n; i++)
		names += i == 0 || strcmp(entries[i].name, entries[i - 1].name);
	return names;
}

struct mig_qmp *mig_client_connect(const struct mig_client_sel *sel,
				   const struct mig_client_target *t)
{
	struct mig_qmp *q = mig_qmp_connect(t->path, MIG_CLIENT_RPC_MS);
	int err = errno;

	if (q)
		return q;
	if (!sel->bus && (err == ENOENT || err == ECONNREFUSED))
		mig_cli_error("no migration '%s' on this host (no bus at %s)",
			      sel_name(sel), t->path);
	else if (err == EPROTO)
		mig_cli_error("%s: not a mig status bus", t->path);
	else
		mig_cli_error("no bus at %s: %s", t->path, strerror(err));
	errno = err;
	return NULL;
}

bool mig_client_event_state(const struct mig_json *ev, enum mig_state *st)
{
	const char *name = mig_json_get_str(ev, "event");
	const char *status = mig_json_get_str(mig_json_get(ev, "data"), "status");

	if (!name || strcmp(name, "MIGRATION") || !status)
		return false;
	return mig_state_from_name(status, st) == 0;
}

int mig_client_query_state(struct mig_qmp *q, enum mig_state *st)
{
	struct mig_json *ret = NULL;
	const char *status;
	int r;

	r = mig_qmp_execute(q, "query-migrate", NULL, &ret, NULL, 0,
			    MIG_CLIENT_RPC_MS);
	if (r < 0)
		return r;
	status = mig_json_get_str(ret, "status");
	r = status && mig_state_from_name(status, st) == 0 ? 0 : -EPROTO;
	mig_json_free(ret);
	return r;
}

int mig_client_current(struct mig_qmp *q, enum mig_state *st)
{
	struct mig_json *events = NULL;
	bool found = false;
	int r;

	r = mig_qmp_query_events(q, &events, MIG_CLIENT_RPC_MS);
	if (r < 0)
		return r;
	for (size_t i = mig_json_array_len(events); i-- > 0 && !found;)
		found = mig_client_event_state(mig_json_array_at(events, i), st);
	mig_json_free(events);
	if (found)
		return 0;
	/* no transition yet: whatever the engine says (normally "none") */
	return mig_client_query_state(q, st);
}

int mig_client_follow(struct mig_qmp *q, mig_client_state_fn fn, void *ctx,
		      int64_t timeout_ms)
{
	uint64_t deadline = mig_deadline_ns(timeout_ms);

	for (;;) {
		int left = mig_deadline_left_ms(deadline);
		struct mig_json *ev = NULL;
		enum mig_state st;
		bool stop = false;
		int r;

		r = mig_qmp_next_event(q, &ev, left);
		if (r < 0)
			return r;
		if (mig_client_event_state(ev, &st))
			stop = fn(ctx, st, ev);
		mig_json_free(ev);
		if (stop)
			return 0;
	}
}

struct wait_ctx {
	const enum mig_state *want;
	size_t nwant;
	enum mig_state last;
};

static bool wanted(const struct wait_ctx *w, enum mig_state st)
{
	for (size_t i = 0; i < w->nwant; i++)
		if (w->want[i] == st)
			return true;
	return false;
}

static bool wait_step(void *ctx, enum mig_state st, const struct mig_json *ev)
{
	struct wait_ctx *w = ctx;

	w->last = st;
	return wanted(w, st) || mig_state_terminal(st);
}

int mig_client_wait_for(struct mig_qmp *q, const enum mig_state *want,
			size_t nwant, int64_t timeout_ms, enum mig_state *last)
{
	/* from what the caller knew, should the engine go before it answers */
	struct wait_ctx w = { .want = want, .nwant = nwant,
			      .last = last ? *last : MIG_STATE_NONE };
	int r = mig_client_current(q, &w.last);

	if (r == 0 && !wait_step(&w, w.last, NULL))
		r = mig_client_follow(q, wait_step, &w, timeout_ms);
	if (last)
		*last = w.last;
	if (r < 0)
		return r;
	return wanted(&w, w.last) ? 0 : -ECANCELED;
}

int mig_client_parse_states(const char *list, enum mig_state *want,
			    size_t *nwant, char *bad, size_t badlen)
{
	const char *p = list;

	*nwant = 0;
	do {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char name[32];
		enum mig_state st;

		if (len >= sizeof(name) || snprintf(name, sizeof(name), "%.*s",
						    (int)len, p) < 0 ||
		    mig_state_from_name(name, &st) < 0 ||
		    *nwant >= MIG_STATE__COUNT) {
			snprintf(bad, badlen, "%.*s", (int)len, p);
			return -EINVAL;
		}
		want[(*nwant)++] = st;
		p = comma ? comma + 1 : NULL;
	} while (p);
	return 0;
}

const char *mig_client_state_list(void)
{
	static char buf[256];

	if (!buf[0]) {
		size_t n = 0;

		for (int s = 0; s < MIG_STATE__COUNT; s++)
			n += snprintf(buf + n, sizeof(buf) - n, "%s%s",
				      s ? ", " : "", mig_state_name(s));
	}
	return buf;
}

bool mig_client_uri_ok(const char *uri)
{
	struct mig_uri u;

	return mig_uri_parse(uri, &u) == 0;
}

/* ---- mig-pause ---- */

/* One target only: both sides of a name on one host need --side. */
static int resolve_one(const struct mig_client_sel *sel,
		       struct mig_client_targets *ts)
{
	int r = mig_client_resolve(sel, ts);

	if (r == 0 && ts->n > 1)
		return mig_cli_usage("both sides of '%s' run on this host: pick one with --side",
				     sel_name(sel));
	return r;
}

int mig_client_wait_exit(int r, enum mig_state last)
{
	switch (r) {
	case 0:
		return MIG_EXIT_OK;
	case -ETIMEDOUT:
		mig_cli_error("timed out in state %s", mig_state_name(last));
		return MIG_EXIT_TIMEOUT;
	case -ECANCELED:
		mig_cli_error("migration ended: %s", mig_state_name(last));
		return MIG_EXIT_FAIL;
	case -ECONNRESET:
		mig_cli_error("the engine went away (last state %s)",
			      mig_state_name(last));
		return MIG_EXIT_UNAVAILABLE;
	default:
		mig_cli_error("bus: %s", strerror(-r));
		return mig_exit_of_errno(r);
	}
}

int mig_client_exit_of_state(enum mig_state final)
{
	switch (final) {
	case MIG_STATE_COMPLETED:
		return MIG_EXIT_OK;
	case MIG_STATE_POSTCOPY_PAUSED:
		return MIG_EXIT_PAUSED;
	default:
		return MIG_EXIT_FAIL;
	}
}

static int pause_on(struct mig_qmp *q, int64_t timeout_ms)
{
	static const enum mig_state paused = MIG_STATE_POSTCOPY_PAUSED;
	enum mig_state st = MIG_STATE_NONE;
	char desc[256], safe[256];
	int r;

	r = mig_client_current(q, &st);
	if (r == 0 && st == paused)
		return MIG_EXIT_OK; /* already there: nothing to do */
	if (r == 0)
		r = mig_qmp_execute(q, "migrate-pause", NULL, NULL, desc,
				    sizeof(desc), MIG_CLIENT_RPC_MS);
	if (r == -EREMOTEIO) {
		mig_cli_error("%s", mig_log_sanitize(desc, safe, sizeof(safe)));
		return MIG_EXIT_FAIL;
	}
	if (r == 0)
		r = mig_client_wait_for(q, &paused, 1, timeout_ms, &st);
	return mig_client_wait_exit(r, st);
}

int mig_pause_run(const struct mig_client_sel *sel, int64_t timeout_ms)
{
	struct mig_client_targets ts;
	struct mig_qmp *q;
	int r = resolve_one(sel, &ts);

	if (r)
		return r;
	q = mig_client_connect(sel, &ts.t[0]);
	if (!q)
		return MIG_EXIT_UNAVAILABLE;
	r = pause_on(q, timeout_ms);
	mig_qmp_close(q);
	return r;
}

/* ---- mig-recover ---- */

struct recover_ctx {
	enum mig_state last;
	bool began;   /* a recovery was seen under way */
	int result;   /* exit status once decided */
};

static bool recover_step(void *ctx, enum mig_state st, const struct mig_json *ev)
{
	struct recover_ctx *rc = ctx;

	rc->last = st;
	switch (st) {
	case MIG_STATE_POSTCOPY_ACTIVE:
	case MIG_STATE_COMPLETED:
		rc->result = MIG_EXIT_OK;
		return true;
	case MIG_STATE_POSTCOPY_RECOVER_SETUP:
	case MIG_STATE_POSTCOPY_RECOVER:
		rc->began = true;
		return false;
	case MIG_STATE_POSTCOPY_PAUSED:
		/* back to paused after trying: this attempt failed */
		rc->result = MIG_EXIT_PAUSED;
		return rc->began;
	default:
		rc->result = MIG_EXIT_FAIL;
		return mig_state_terminal(st);
	}
}

static int recover_send(struct mig_qmp *q, const char *listen_uri,
			const char *to_uri)
{
	struct mig_json *args = mig_json_new_object();
	const char *cmd = listen_uri ? "migrate-recover" : "migrate";
	char desc[256], safe[256];
	int r;

	mig_json_add_str(args, "uri", listen_uri ? listen_uri : to_uri);
	if (to_uri)
		mig_json_add_bool(args, "resume", true);
	r = mig_qmp_execute(q, cmd, args, NULL, desc, sizeof(desc),
			    MIG_CLIENT_RPC_MS);
	if (r == -EREMOTEIO)
		mig_cli_error("%s", mig_log_sanitize(desc, safe, sizeof(safe)));
	else if (r < 0)
		mig_cli_error("%s: %s", cmd, strerror(-r));
	return r;
}

static int recover_wait(struct mig_qmp *q, struct recover_ctx *rc,
			int64_t timeout_ms)
{
	int r = mig_client_follow(q, recover_step, rc, timeout_ms);

	if (r == 0 && rc->result == MIG_EXIT_PAUSED)
		mig_cli_error("recovery failed: still postcopy-paused, try again later");
	if (r == 0)
		return rc->result;
	if (r == -ETIMEDOUT) {
		mig_cli_error("timed out in state %s", mig_state_name(rc->last));
		return rc->last == MIG_STATE_POSTCOPY_PAUSED ? MIG_EXIT_PAUSED
							     : MIG_EXIT_TIMEOUT;
	}
	if (rc->last == MIG_STATE_COMPLETED)
		return MIG_EXIT_OK;
	return mig_client_wait_exit(r, rc->last);
}

static int recover_on(struct mig_qmp *q, const char *listen_uri,
		      const char *to_uri, int64_t timeout_ms)
{
	struct recover_ctx rc = { .result = MIG_EXIT_FAIL };
	int r = mig_client_current(q, &rc.last);

	if (r < 0)
		return mig_client_wait_exit(r, rc.last);
	/* idempotent for cron: running, done or already recovering */
	if (rc.last == MIG_STATE_POSTCOPY_ACTIVE || rc.last == MIG_STATE_COMPLETED) {
		mig_info("client", "already %s", mig_state_name(rc.last));
		return MIG_EXIT_OK;
	}
	if (mig_state_terminal(rc.last)) {
		mig_cli_error("migration ended: %s", mig_state_name(rc.last));
		return MIG_EXIT_FAIL;
	}
	if (rc.last == MIG_STATE_POSTCOPY_RECOVER_SETUP ||
	    rc.last == MIG_STATE_POSTCOPY_RECOVER)
		rc.began = true;
	else if (recover_send(q, listen_uri, to_uri) < 0)
		return MIG_EXIT_FAIL;
	return recover_wait(q, &rc, timeout_ms);
}

int mig_recover_run(const struct mig_client_sel *sel, const char *listen_uri,
		    const char *to_uri, int64_t timeout_ms)
{
	struct mig_client_sel s = *sel;
	struct mig_client_targets ts;
	struct mig_qmp *q;
	int r;

	if (!listen_uri == !to_uri)
		return mig_cli_usage("give exactly one of --listen and --to");
	if (!mig_client_uri_ok(listen_uri ? listen_uri : to_uri))
		return mig_cli_usage("invalid URI '%s' (tcp:HOST:PORT or unix:PATH)",
				     listen_uri ? listen_uri : to_uri);
	s.side = listen_uri ? MIG_CLIENT_SIDE_DEST : MIG_CLIENT_SIDE_SOURCE;
	r = mig_client_resolve(&s, &ts);
	if (r)
		return r;
	q = mig_client_connect(&s, &ts.t[0]);
	if (!q)
		return MIG_EXIT_UNAVAILABLE;
	r = recover_on(q, listen_uri, to_uri, timeout_ms);
	mig_qmp_close(q);
	return r;
}
