// SPDX-License-Identifier: MIT
/*
 * The bus commands both engines answer the same way, QEMU's way:
 * query-status, the capabilities, the parameters mig shares between its
 * sides, and the address of migrate/migrate-incoming in either of QEMU's
 * forms. The bus has already checked the arguments against the schema
 * (types, names, enums), so what is left here is meaning: ranges, states,
 * and what mig cannot do. Side-specific parts come through the ops.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/chan.h"
#include "engine/engine.h"

/* QEMU's capability order; the ones mig always has, with why they stay. */
static const struct {
	const char *name;
	const char *fixed; /* NULL: the side decides */
} caps[] = {
	{ "events", "mig always emits MIGRATION events" },
	{ "postcopy-ram", NULL },
	{ "return-path", "mig always opens a return path" },
	{ "postcopy-blocktime", "mig always measures postcopy blocktime" },
	{ "validate-uuid", "mig always checks the migration's UUID" },
	{ "postcopy-preempt", NULL },
};

#define NCAPS (sizeof(caps) / sizeof(caps[0]))

static bool cap_state(struct mig_engine *e, size_t i)
{
	return caps[i].fixed ? true : e->ops->cap(e, caps[i].name, -1, false,
						   NULL, 0) > 0;
}

static struct mig_json *query_caps(struct mig_engine *e)
{
	struct mig_json *list = mig_json_new_array();

	for (size_t i = 0; i < NCAPS; i++) {
		struct mig_json *c = mig_json_new_object();

		mig_json_add_str(c, "capability", caps[i].name);
		mig_json_add_bool(c, "state", cap_state(e, i));
		mig_json_append(list, c);
	}
	return list;
}

/* One change: checked (apply false) or made. */
static int set_cap(struct mig_engine *e, const struct mig_json *c, bool apply,
		   char *desc, size_t desclen)
{
	const char *name = mig_json_get_str(c, "capability");
	bool on = false;
	size_t i;

	mig_json_get_bool(c, "state", &on);
	for (i = 0; i < NCAPS && strcmp(caps[i].name, name); i++)
		;
	if (i == NCAPS)
		return -EINVAL; /* the schema's enum let it through: cannot be */
	if (caps[i].fixed) {
		if (on)
			return 0;
		snprintf(desc, desclen, "Capability '%s' cannot be disabled: %s",
			 name, caps[i].fixed);
		return -EPERM;
	}
	return e->ops->cap(e, name, on, apply, desc, desclen);
}

/* All checked, then all made: a refused change leaves every one as it was. */
static int set_caps(struct mig_engine *e, const struct mig_json *args,
		    char *desc, size_t desclen)
{
	const struct mig_json *list = mig_json_get(args, "capabilities");
	size_t n = mig_json_array_len(list);
	int r;

	for (int apply = 0; apply < 2; apply++)
		for (size_t i = 0; i < n; i++) {
			r = set_cap(e, mig_json_array_at(list, i), apply, desc,
				    desclen);
			if (r < 0)
				return r;
		}
	return 0;
}

/* x-link-timeout and the tls-* parameters, the ones both sides have: they
 * apply to the connections made from then on (a recovery's), not to ones
 * already up. */
#define LINK_TIMEOUT_MS_MIN 100
#define LINK_TIMEOUT_MS_MAX 3600000

static int set_params(struct mig_engine *e, const struct mig_json *args,
		      char *desc, size_t desclen)
{
	struct mig_tls_change tls;
	int64_t lt = -1;
	int r;

	if (mig_json_get_int(args, "x-link-timeout", &lt) &&
	    (lt < LINK_TIMEOUT_MS_MIN || lt > LINK_TIMEOUT_MS_MAX)) {
		snprintf(desc, desclen, "Parameter 'x-link-timeout' expects an "
			 "integer in the range of %d to %d milliseconds",
			 LINK_TIMEOUT_MS_MIN, LINK_TIMEOUT_MS_MAX);
		return -EINVAL;
	}
	r = mig_engine_tls_prepare(e, args, &tls, desc, desclen);
	if (r < 0)
		return r;
	r = e->ops->params(e, args, false, desc, desclen);
	if (r < 0) {
		mig_engine_tls_drop(&tls);
		return r;
	}
	if (lt >= 0)
		atomic_store(&e->link_timeout_ms, (int)lt);
	mig_engine_tls_commit(e, &tls);
	return e->ops->params(e, args, true, desc, desclen);
}

static struct mig_json *query_params(struct mig_engine *e)
{
	struct mig_json *r = mig_json_new_object();

	e->ops->query_params(e, r);
	mig_json_add_int(r, "x-link-timeout", atomic_load(&e->link_timeout_ms));
	mig_engine_tls_query(e, r);
	return r;
}

static struct mig_json *query_status(struct mig_engine *e)
{
	struct mig_json *r = mig_json_new_object();
	bool running = false;
	const char *status = e->ops->run_state(e, &running);

	mig_json_add_bool(r, "running", running);
	mig_json_add_str(r, "status", status);
	return r;
}

/* QEMU's newer form: one channel, main, a socket address. */
static int channel_uri(const struct mig_json *chans, char *uri, size_t len,
		       char *desc, size_t desclen)
{
	const struct mig_json *addr =
		mig_json_get(mig_json_array_at(chans, 0), "addr");
	const char *type = mig_json_get_str(addr, "type");

	if (mig_json_array_len(chans) != 1) {
		snprintf(desc, desclen, "Channel list has %s entries",
			 mig_json_array_len(chans) ? "more than one" : "no");
		return -EINVAL;
	}
	if (!strcmp(type, "unix")) {
		snprintf(uri, len, "unix:%s", mig_json_get_str(addr, "path"));
	} else {
		const char *host = mig_json_get_str(addr, "host");

		snprintf(uri, len, strchr(host, ':') && host[0] != '[' ?
			 "tcp:[%s]:%s" : "tcp:%s:%s", host,
			 mig_json_get_str(addr, "port"));
	}
	return 0;
}

int mig_engine_addr_arg(const char *cmd, const struct mig_json *args,
			char *uri, size_t len, char *desc, size_t desclen)
{
	const char *u = mig_json_get_str(args, "uri");
	const struct mig_json *chans = mig_json_get(args, "channels");
	struct mig_uri parsed;
	int r = 0;

	if (!!u == !!chans) {
		snprintf(desc, desclen, u ? "'uri' and 'channels' arguments are "
			 "mutually exclusive; exactly one of the two should be "
			 "present in '%s' qmp command" :
			 "need either 'uri' or 'channels' argument", cmd);
		return -EINVAL;
	}
	if (u)
		snprintf(uri, len, "%s", u);
	else
		r = channel_uri(chans, uri, len, desc, desclen);
	if (r == 0 && mig_uri_parse(uri, &parsed) < 0) {
		snprintf(desc, desclen, "Invalid migration address '%.120s': "
			 "tcp:HOST:PORT or unix:PATH", uri);
		r = -EINVAL;
	}
	return r;
}

int mig_engine_command(struct mig_engine *e, const char *cmd,
		       const struct mig_json *args, struct mig_json **ret,
		       char *desc, size_t desclen)
{
	if (!strcmp(cmd, "query-status"))
		*ret = query_status(e);
	else if (!strcmp(cmd, "query-migrate-capabilities"))
		*ret = query_caps(e);
	else if (!strcmp(cmd, "migrate-set-capabilities"))
		return set_caps(e, args, desc, desclen);
	else if (!strcmp(cmd, "query-migrate-parameters"))
		*ret = query_params(e);
	else if (!strcmp(cmd, "migrate-set-parameters"))
		return set_params(e, args, desc, desclen);
	else
		return e->ops->command(e, cmd, args, ret, desc, desclen);
	return 0;
}
