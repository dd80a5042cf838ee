// SPDX-License-Identifier: MIT
/*
 * The destination's listeners: a connection is accepted without blocking
 * and held until its hello is in (bounded, see struct pending), then
 * refused, or taken as the main channel (a new migration, once its
 * RAM_INFO is in too; or a source recovering) or as the preempt channel
 * the session's main hello announced. A deferred engine's listener comes
 * from migrate-incoming.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "core/chan.h"
#include "core/tls.h"
#include "core/wire.h"
#include "dest/dest-int.h"

/* A TLS record starts with its content type, a handshake 0x16; a mig
 * hello with the header's big-endian type, 0x00. */
#define TLS_HANDSHAKE_BYTE 0x16

static void refuse(int fd, uint32_t code, const char *why)
{
	uint8_t buf[4 + MIG_WIRE_MAX_REASON];
	char peer[64];

	mig_chan_peer_name(fd, peer, sizeof(peer));
	mig_warn("chan", "refused connection from %s: %s", peer, why);
	mig_wire_send(fd, MIG_MSG_REFUSE, buf, mig_wire_enc_refuse(buf, code, why));
	mig_chan_close(fd);
}

/* Our answer to a hello of migration uuid (a bulk channel's names it). */
static int ack(struct dst *d, int fd, uint32_t role, uint32_t flags,
	       const uint8_t uuid[16])
{
	struct mig_hello h = { .version = MIG_WIRE_VERSION, .role = role,
			       .flags = flags };
	uint8_t buf[MIG_HELLO_BYTES];

	memcpy(h.uuid, uuid, 16);
	mig_chan_tune(fd, d->e.link_timeout_ms / 1000);
	mig_chan_set_timeouts(fd, d->e.link_timeout_ms, d->e.link_timeout_ms);
	return mig_wire_send(fd, MIG_MSG_HELLO, buf, mig_wire_enc_hello(buf, &h));
}

int dst_hello_ack(struct dst *d, int fd, uint32_t role)
{
	return ack(d, fd, role, 0, d->e.uuid);
}

/* The new migration's setup is valid: spawn and claim the incoming guest,
 * start serving its faults. */
static int start_session(struct dst *d, const struct mig_ram_info *ri)
{
	int r;

	d->e.ram_bytes = ri->ram_bytes;
	r = dst_alloc_pages(d);
	if (r < 0) {
		mig_engine_error(&d->e, "cannot start the incoming guest: %s",
				 strerror(-r));
		return r;
	}
	r = dst_spawn_guest(d);
	if (r == 0)
		r = dst_bind_guest(d, d->listen_uri);
	if (r == 0)
		r = dst_start_fault(d);
	if (r < 0)
		return r;
	pthread_mutex_lock(&d->rp_lock);
	d->link_up = true;
	pthread_mutex_unlock(&d->rp_lock);
	d->e.t_setup_ns = mig_now_ns();
	mig_engine_move(&d->e, MIG_STATE_ACTIVE);
	return dst_start_rx(d, MIG_CHAN_MAIN);
}

static void accept_preempt(struct dst *d, int fd, const struct mig_hello *h)
{
	enum mig_state st = mig_engine_state(&d->e);
	bool recovering = st == MIG_STATE_POSTCOPY_RECOVER;

	if (st == MIG_STATE_COMPLETED) {
		/* the source's recovery opens it before it learns we are done */
		dst_hello_ack(d, fd, MIG_ROLE_PREEMPT);
		mig_chan_close(fd);
		return;
	}
	/* only the one the session's main hello announced, of that session:
	 * anyone else who knows the UUID would write guest pages */
	if (!d->preempt_expected ||
	    mig_engine_get_chan(&d->e, MIG_CHAN_PREEMPT) >= 0 ||
	    (st != MIG_STATE_ACTIVE && st != MIG_STATE_POSTCOPY_ACTIVE &&
	     !recovering) ||
	    !(h->flags & MIG_HELLO_RESUME) != !recovering) {
		refuse(fd, MIG_REFUSE_STATE, "no preempt channel expected now");
		return;
	}
	d->preempt_expected = false;
	mig_engine_set_chan(&d->e, MIG_CHAN_PREEMPT, fd);
	if (dst_hello_ack(d, fd, MIG_ROLE_PREEMPT) < 0 ||
	    dst_start_rx(d, MIG_CHAN_PREEMPT) < 0)
		mig_engine_post(&d->e, MIG_EV_LINK_DOWN);
}

/* The bulk channels a session's main hello announces. */
static void expect_bulk(struct dst *d, const struct mig_hello *h)
{
	d->bulk_expected = (1u << MIG_HELLO_BULK_OF(h->flags)) - 1;
}

/* A bulk channel: as a preempt channel, only the ones the session's main
 * hello announced, once each; it carries pages once the guest runs here. */
static void accept_bulk(struct dst *d, int fd, const struct mig_hello *h)
{
	enum mig_state st = mig_engine_state(&d->e);
	unsigned i = MIG_HELLO_BULK_OF(h->flags);
	enum mig_chan_slot c = MIG_CHAN_BULK + i - 1;
	uint32_t flags = MIG_HELLO_BULK(i);

	if (st == MIG_STATE_COMPLETED) {
		ack(d, fd, MIG_ROLE_BULK, flags, d->e.uuid);
		mig_chan_close(fd);
		return;
	}
	if (!(d->bulk_expected & (1u << (i - 1))) ||
	    mig_engine_get_chan(&d->e, c) >= 0 ||
	    (st != MIG_STATE_ACTIVE && st != MIG_STATE_POSTCOPY_ACTIVE &&
	     st != MIG_STATE_POSTCOPY_RECOVER)) {
		refuse(fd, MIG_REFUSE_STATE, "no such bulk channel expected now");
		return;
	}
	d->bulk_expected &= ~(1u << (i - 1));
	mig_engine_set_chan(&d->e, c, fd);
	mig_dbg("chan", "%s joined", mig_chan_slot_name(c));
	if (ack(d, fd, MIG_ROLE_BULK, flags, d->e.uuid) < 0 ||
	    dst_start_rx(d, c) < 0)
		mig_engine_post(&d->e, MIG_EV_LINK_DOWN);
}

/* A main hello with RESUME: a source recovering, or one that missed our end. */
static void accept_resume(struct dst *d, int fd, const struct mig_hello *h)
{
	enum mig_state st = mig_engine_state(&d->e);

	if (st == MIG_STATE_COMPLETED) {
		dst_tell_complete(d, fd);
		return;
	}
	if (st != MIG_STATE_POSTCOPY_PAUSED || !atomic_load(&d->armed)) {
		refuse(fd, MIG_REFUSE_STATE, st == MIG_STATE_POSTCOPY_PAUSED ?
		       "paused, but migrate-recover has not been issued "
		       "here" : "nothing to recover in this state");
		return;
	}
	d->preempt_expected = h->flags & MIG_HELLO_PREEMPT;
	expect_bulk(d, h);
	mig_engine_clear_link(&d->e, fd);
	dst_begin_recovery(d, fd);
}

static void drop(struct pending *p, const char *why)
{
	mig_warn("chan", "dropped connection from %s: %s", p->peer, why);
	mig_chan_close(p->fd);
	p->fd = -1;
}

/* Is a new migration of this UUID waiting for its RAM_INFO? */
static bool candidate(struct dst *d, const uint8_t uuid[16])
{
	for (int i = 0; i < MAX_PENDING; i++)
		if (d->pend[i].fd >= 0 && d->pend[i].stage == PEND_RAM_INFO &&
		    !memcmp(d->pend[i].h.uuid, uuid, 16))
			return true;
	return false;
}

/* A new migration's main hello: answer it, and wait (as a pending
 * connection) for the RAM_INFO that makes its setup valid. */
static void await_ram_info(struct dst *d, struct pending *p,
			   const struct mig_hello *h)
{
	int r;

	mig_set_nonblock(p->fd, false);
	r = ack(d, p->fd, MIG_ROLE_MAIN, 0, h->uuid);
	mig_set_nonblock(p->fd, true);
	if (r < 0) {
		drop(p, "cannot answer its hello");
		return;
	}
	p->stage = PEND_RAM_INFO;
	p->h = *h;
	p->have = 0;
	p->want = MIG_WIRE_HDR_BYTES + MIG_RAM_INFO_BYTES;
	p->deadline_ns = mig_deadline_ns(HELLO_TIMEOUT_MS);
}

/* Where a connection with a valid hello goes: into the migration, to the
 * setup it opens or waits for, or away. */
static void route(struct dst *d, struct pending *p, const struct mig_hello *h)
{
	char want[37], got[37], why[128];
	int fd = p->fd;

	if (d->have_migration && memcmp(h->uuid, d->e.uuid, 16)) {
		mig_uuid_format(d->e.uuid, want);
		mig_uuid_format(h->uuid, got);
		snprintf(why, sizeof(why), "migration UUID %s is not the one "
			 "running here (%s)", got, want);
		p->fd = -1;
		refuse(fd, MIG_REFUSE_UUID, why);
		return;
	}
	if (h->role == MIG_ROLE_MAIN && !(h->flags & MIG_HELLO_RESUME) &&
	    !d->have_migration) {
		await_ram_info(d, p, h);
		return;
	}
	if (h->role == MIG_ROLE_PREEMPT && !d->have_migration &&
	    candidate(d, h->uuid)) {
		p->stage = PEND_HELD;
		p->h = *h;
		return;
	}
	p->fd = -1;
	mig_set_nonblock(fd, false);
	if (h->role == MIG_ROLE_PREEMPT && d->have_migration) {
		accept_preempt(d, fd, h);
	} else if (h->role == MIG_ROLE_BULK && d->have_migration) {
		accept_bulk(d, fd, h);
	} else if (h->role != MIG_ROLE_MAIN) {
		refuse(fd, MIG_REFUSE_ROLE, h->role == MIG_ROLE_PREEMPT ?
		       "preempt channel before any migration" :
		       "bulk channel before any migration");
	} else if (!(h->flags & MIG_HELLO_RESUME)) {
		refuse(fd, MIG_REFUSE_STATE, "a migration is already running here");
	} else {
		pthread_mutex_lock(&d->e.lock);
		snprintf(d->via_uri, sizeof(d->via_uri), "%s",
			 p->recovery ? d->armed_uri : d->listen_uri);
		pthread_mutex_unlock(&d->e.lock);
		accept_resume(d, fd, h);
	}
}

/* A setup was settled, one way or the other: held preempt channels learn
 * where they go. */
static void release_held(struct dst *d)
{
	for (int i = 0; i < MAX_PENDING; i++)
		if (d->pend[i].fd >= 0 && d->pend[i].stage == PEND_HELD)
			route(d, &d->pend[i], &d->pend[i].h);
}

static void on_hello(struct dst *d, struct pending *p)
{
	struct mig_hello h;
	uint32_t type, len;
	int r = mig_wire_dec_hdr(p->buf, &type, &len);

	if (r == 0 && (type != MIG_MSG_HELLO || len != MIG_HELLO_BYTES))
		r = -EBADMSG;
	if (r == 0)
		r = mig_wire_dec_hello(p->buf + MIG_WIRE_HDR_BYTES, len, &h);
	if (r < 0) {
		int fd = p->fd;

		p->fd = -1;
		mig_set_nonblock(fd, false);
		refuse(fd, r == -EPROTO ? MIG_REFUSE_VERSION : MIG_REFUSE_PROTOCOL,
		       p->buf[0] == TLS_HANDSHAKE_BYTE ? "a TLS handshake, but "
		       "TLS is off here (--tls-psk or --tls-x509 on both sides)" :
		       r == -EPROTO ? "not a mig peer of protocol version 1" :
		       "malformed hello");
		return;
	}
	route(d, p, &h);
}

/* A new migration's RAM_INFO is in: a valid one makes its setup valid and
 * the migration its own; anything else drops the connection, and the
 * engine waits on for a source, as if it had never come. */
static void on_ram_info(struct dst *d, struct pending *p)
{
	struct mig_ram_info ri;
	uint32_t type, len;
	int fd = p->fd, r = mig_wire_dec_hdr(p->buf, &type, &len);
	char why[128];

	if (r == 0 && type != MIG_MSG_RAM_INFO)
		r = -EBADMSG;
	if (r == 0)
		r = mig_wire_dec_ram_info(p->buf + MIG_WIRE_HDR_BYTES, len, &ri);
	if (r < 0) {
		snprintf(why, sizeof(why), "sent no valid RAM description (%s); "
			 "still waiting for a source", strerror(-r));
		drop(p, why);
	} else if (d->have_migration) {
		p->fd = -1;
		mig_set_nonblock(fd, false);
		refuse(fd, MIG_REFUSE_STATE, "a migration is already running here");
	} else {
		p->fd = -1;
		mig_set_nonblock(fd, false);
		d->have_migration = true;
		d->preempt_expected = p->h.flags & MIG_HELLO_PREEMPT;
		expect_bulk(d, &p->h);
		memcpy(d->e.uuid, p->h.uuid, 16);
		mig_uuid_format(d->e.uuid, d->e.uuid_str);
		pthread_mutex_lock(&d->e.lock);
		snprintf(d->via_uri, sizeof(d->via_uri), "%s",
			 p->recovery ? d->armed_uri : d->listen_uri);
		pthread_mutex_unlock(&d->e.lock);
		mig_engine_set_chan(&d->e, MIG_CHAN_MAIN, fd);
		mig_engine_clear_link(&d->e, fd);
		if (start_session(d, &ri) < 0)
			dst_end_early(d, MIG_STATE_FAILED); /* its error said why */
	}
	release_held(d);
}

/* Make room for one more: the oldest pending connection goes. */
static struct pending *evict_oldest(struct dst *d)
{
	struct pending *old = &d->pend[0];

	for (int i = 1; i < MAX_PENDING; i++)
		if (d->pend[i].since_ns < old->since_ns)
			old = &d->pend[i];
	drop(old, "every slot taken: the oldest connection not yet in the "
	     "migration makes room");
	if (old->stage == PEND_RAM_INFO)
		release_held(d);
	return old;
}

void dst_add_pending(struct dst *d, int lfd, bool recovery)
{
	int fd = mig_chan_accept(lfd);
	struct pending *p = NULL;
	struct mig_tls *t;
	char host[256];
	int r;

	if (fd < 0)
		return;
	t = mig_engine_tls(&d->e, host, sizeof(host));
	if (t && (r = mig_tls_server_start(t, fd)) < 0) {
		mig_warn("tls", "cannot start TLS: %s", strerror(-r));
		mig_tls_unref(t);
		mig_chan_close(fd);
		return;
	}
	for (int i = 0; i < MAX_PENDING && !p; i++)
		if (d->pend[i].fd < 0)
			p = &d->pend[i];
	if (!p)
		p = evict_oldest(d);
	mig_set_nonblock(fd, true);
	*p = (struct pending){ .fd = fd, .stage = t ? PEND_TLS : PEND_HELLO,
		.recovery = recovery, .since_ns = mig_now_ns(),
		.deadline_ns = mig_deadline_ns(HELLO_TIMEOUT_MS),
		.want = MIG_WIRE_HDR_BYTES + MIG_HELLO_BYTES };
	mig_chan_peer_name(fd, p->peer, sizeof(p->peer));
	mig_tls_unref(t); /* the session holds its own */
}

/* A source in clear meets a destination that wants TLS: tell it so, in
 * clear, rather than drop it without a word. */
static bool clear_peer(struct pending *p)
{
	uint8_t b;

	if (recv(p->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) != 1)
		return false; /* nothing yet, or EOF: the handshake step sees it */
	p->peeked = true;
	if (b == TLS_HANDSHAKE_BYTE)
		return false;
	mig_tls_forget(p->fd);
	mig_set_nonblock(p->fd, false);
	refuse(p->fd, MIG_REFUSE_PROTOCOL, "TLS is required here (--tls-psk "
	       "or --tls-x509 on both sides)");
	p->fd = -1;
	return true;
}

static void tls_step(struct dst *d, struct pending *p)
{
	char err[600];
	int r;

	if (!p->peeked && clear_peer(p))
		return;
	r = mig_tls_server_step(p->fd, err, sizeof(err));
	if (r == -EAGAIN)
		return;
	if (r < 0) {
		if (r == -EACCES)
			mig_engine_auth_failed(&d->e, p->peer, err);
		else if (r != -ECONNRESET)
			mig_warn("tls", "dropped connection from %s: %s", p->peer, err);
		mig_chan_close(p->fd);
		p->fd = -1;
		return;
	}
	mig_dbg("tls", "peer authenticated: %s", mig_tls_peer(p->fd));
	p->stage = PEND_HELLO;
}

static void read_once(struct dst *d, struct pending *p)
{
	ssize_t n;

	if (p->stage == PEND_TLS) {
		tls_step(d, p);
		return;
	}
	n = mig_tls_read(p->fd, p->buf + p->have, p->want - p->have);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (p->stage == PEND_RAM_INFO) {
			drop(p, "closed before its RAM description; still "
			     "waiting for a source");
			release_held(d);
			return;
		}
		mig_chan_close(p->fd);
		p->fd = -1;
		return;
	}
	p->have += (size_t)n;
	if (p->have < p->want)
		return;
	if (p->stage == PEND_HELLO)
		on_hello(d, p);
	else
		on_ram_info(d, p);
}

/* What TLS has decrypted already, a poll cannot see: take it now. */
void dst_read_pending(struct dst *d, struct pending *p)
{
	do {
		if (p->fd < 0 || p->stage == PEND_HELD)
			return; /* settled earlier in this round */
		read_once(d, p);
	} while (p->fd >= 0 && p->stage != PEND_HELD && p->stage != PEND_TLS &&
		 mig_tls_pending(p->fd));
}

void dst_expire_pending(struct dst *d)
{
	uint64_t now = mig_now_ns();
	bool released = false;

	for (int i = 0; i < MAX_PENDING; i++) {
		struct pending *p = &d->pend[i];

		if (p->fd < 0 || now <= p->deadline_ns)
			continue;
		if (p->stage == PEND_TLS || p->stage == PEND_HELLO) {
			mig_warn("chan", "dropped a connection that sent no %s",
				 p->stage == PEND_TLS ? "TLS handshake in time" :
				 "hello");
			mig_chan_close(p->fd);
			p->fd = -1;
			continue;
		}
		released |= p->stage == PEND_RAM_INFO;
		drop(p, p->stage == PEND_RAM_INFO ? "sent no RAM description "
		     "in time; still waiting for a source" :
		     "its main channel never became a migration");
	}
	if (released)
		release_held(d);
}

/* migrate-incoming, for an engine started with --defer (bus thread: no
 * blocking). The socket is opened here so that an address in use fails
 * the command, not the engine, which waits on in none for another try;
 * the control loop adopts it and goes on as --listen URI would have. */
int dst_cmd_incoming(struct dst *d, const char *uri, char *desc, size_t desclen)
{
	struct mig_uri u;
	bool started;
	int fd;

	pthread_mutex_lock(&d->e.lock);
	started = !d->o->defer || d->incoming;
	pthread_mutex_unlock(&d->e.lock);
	if (started) {
		/* QEMU's words, which managers written for it may match */
		snprintf(desc, desclen, "The incoming migration has already been "
			 "started");
		return -EBUSY;
	}
	if (!uri || mig_uri_parse(uri, &u) < 0) {
		snprintf(desc, desclen, "migrate-incoming: bad or missing 'uri' "
			 "(tcp:HOST:PORT or unix:PATH)");
		return -EINVAL;
	}
	fd = mig_chan_listen(&u);
	if (fd < 0) {
		snprintf(desc, desclen, "migrate-incoming: cannot listen on %s: %s",
			 uri, strerror(-fd));
		return fd;
	}
	pthread_mutex_lock(&d->e.lock);
	d->new_lfd = fd;
	d->incoming = true;
	snprintf(d->listen_uri, sizeof(d->listen_uri), "%s", uri);
	pthread_mutex_unlock(&d->e.lock);
	mig_engine_signal(&d->e);
	return 0;
}
