// SPDX-License-Identifier: MIT
/*
 * The engines' TLS settings: --tls-psk, --tls-x509, --tls-hostname and
 * --tls-authz, and the same as the bus parameters tls-creds, tls-hostname
 * and tls-authz (QEMU's names); the credentials each new channel takes a
 * reference on, so that a change never pulls them from under a handshake;
 * the refusal of a peer that does not authenticate; the warning for a link
 * in clear.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "core/chan.h"
#include "core/json.h"
#include "core/tls.h"
#include "engine/engine.h"

static int load(struct mig_engine *e, const char *creds, const char *authz,
		struct mig_tls **t, char *err, size_t errlen)
{
	*t = NULL;
	if (!*creds)
		return 0;
	return mig_tls_load(creds, authz, e->side == MIG_SIDE_SOURCE ?
			    MIG_TLS_CLIENT : MIG_TLS_SERVER, t, err, errlen);
}

int mig_engine_tls_init(struct mig_engine *e, const struct mig_cli_args *c)
{
	char err[600];
	int r;

	if (c->tls_psk)
		snprintf(e->tls_creds, sizeof(e->tls_creds), "psk:%s", c->tls_psk);
	else if (c->tls_x509)
		snprintf(e->tls_creds, sizeof(e->tls_creds), "x509:%s", c->tls_x509);
	snprintf(e->tls_hostname, sizeof(e->tls_hostname), "%s",
		 c->tls_hostname ? c->tls_hostname : "");
	snprintf(e->tls_authz, sizeof(e->tls_authz), "%s",
		 c->tls_authz ? c->tls_authz : "");
	r = load(e, e->tls_creds, e->tls_authz, &e->tls, err, sizeof(err));
	if (r < 0)
		mig_err("tls", "%s", err);
	return r < 0 ? -EINVAL : 0;
}

void mig_engine_tls_fini(struct mig_engine *e)
{
	mig_tls_unref(e->tls);
	e->tls = NULL;
}

/* One string parameter: absent leaves cur, null or "" clears it (QEMU's
 * StrOrNull). */
static void take(const struct mig_json *args, const char *name, char *cur,
		 size_t len, bool *any)
{
	const struct mig_json *v = mig_json_get(args, name);

	if (!v)
		return;
	*any = true;
	snprintf(cur, len, "%s", mig_json_get_str(args, name) ?
		 mig_json_get_str(args, name) : "");
}

int mig_engine_tls_prepare(struct mig_engine *e, const struct mig_json *args,
			   struct mig_tls_change *ch, char *desc, size_t desclen)
{
	char err[600];
	int r;

	memset(ch, 0, sizeof(*ch));
	pthread_mutex_lock(&e->lock);
	memcpy(ch->creds, e->tls_creds, sizeof(ch->creds));
	memcpy(ch->hostname, e->tls_hostname, sizeof(ch->hostname));
	memcpy(ch->authz, e->tls_authz, sizeof(ch->authz));
	pthread_mutex_unlock(&e->lock);
	take(args, "tls-creds", ch->creds, sizeof(ch->creds), &ch->any);
	take(args, "tls-hostname", ch->hostname, sizeof(ch->hostname), &ch->any);
	take(args, "tls-authz", ch->authz, sizeof(ch->authz), &ch->any);
	if (!ch->any)
		return 0;
	r = load(e, ch->creds, ch->authz, &ch->tls, err, sizeof(err));
	if (r < 0)
		snprintf(desc, desclen, "Parameter 'tls-creds': %s", err);
	return r;
}

void mig_engine_tls_commit(struct mig_engine *e, struct mig_tls_change *ch)
{
	struct mig_tls *old;

	if (!ch->any)
		return;
	pthread_mutex_lock(&e->lock);
	memcpy(e->tls_creds, ch->creds, sizeof(ch->creds));
	memcpy(e->tls_hostname, ch->hostname, sizeof(ch->hostname));
	memcpy(e->tls_authz, ch->authz, sizeof(ch->authz));
	old = e->tls;
	e->tls = ch->tls;
	pthread_mutex_unlock(&e->lock);
	ch->tls = NULL;
	mig_tls_unref(old); /* handshakes under way hold their own */
}

void mig_engine_tls_drop(struct mig_tls_change *ch)
{
	mig_tls_unref(ch->tls);
	ch->tls = NULL;
}

void mig_engine_tls_query(struct mig_engine *e, struct mig_json *ret)
{
	pthread_mutex_lock(&e->lock);
	mig_json_add_str(ret, "tls-creds", e->tls_creds);
	mig_json_add_str(ret, "tls-hostname", e->tls_hostname);
	mig_json_add_str(ret, "tls-authz", e->tls_authz);
	pthread_mutex_unlock(&e->lock);
}

struct mig_tls *mig_engine_tls(struct mig_engine *e, char *host, size_t len)
{
	struct mig_tls *t;

	pthread_mutex_lock(&e->lock);
	t = mig_tls_ref(e->tls);
	snprintf(host, len, "%s", e->tls_hostname);
	pthread_mutex_unlock(&e->lock);
	return t;
}

void mig_engine_auth_failed(struct mig_engine *e, const char *peer,
			    const char *why)
{
	struct mig_json *data = mig_json_new_object();

	/* the source's own link is the migration's error; a stranger at the
	 * destination's door is not */
	if (e->side == MIG_SIDE_SOURCE)
		mig_engine_error(e, "TLS with %s failed: %s", peer, why);
	else
		mig_warn("tls", "TLS with %s failed: %s", peer, why);
	mig_json_add_str(data, "peer", peer);
	mig_json_add_str(data, "reason", why);
	mig_engine_emit(e, "MIG_AUTH_FAILED", data);
}

void mig_engine_clear_link(struct mig_engine *e, int fd)
{
	char peer[64];

	if (mig_tls_active(fd) || mig_chan_is_local(fd) ||
	    atomic_exchange(&e->warned_clear, true))
		return;
	mig_chan_peer_name(fd, peer, sizeof(peer));
	mig_warn("tls", "the link with %s is neither encrypted nor "
		 "authenticated: guest memory crosses the network in clear "
		 "(--tls-psk or --tls-x509 on both sides)", peer);
}
