// SPDX-License-Identifier: MIT
/*
 * The destination's listeners: a connection is accepted without blocking
 * and held until its hello is in (bounded, see struct pending), then
 * refused, or taken as the main channel (a new migration, or a source
 * recovering) or as the preempt channel. A deferred engine's listener
 * comes from migrate-incoming.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "core/chan.h"
#include "core/wire.h"
#include "dest/dest-int.h"

static void refuse(int fd, uint32_t code, const char *why)
{
	uint8_t buf[4 + MIG_WIRE_MAX_REASON];
	char peer[64];

	mig_chan_peer_name(fd, peer, sizeof(peer));
	mig_warn("chan", "refused connection from %s: %s", peer, why);
	mig_wire_send(fd, MIG_MSG_REFUSE, buf, mig_wire_enc_refuse(buf, code, why));
	close(fd);
}

int dst_hello_ack(struct dst *d, int fd, uint32_t role)
{
	struct mig_hello h = { .version = MIG_WIRE_VERSION, .role = role };
	uint8_t buf[MIG_HELLO_BYTES];

	memcpy(h.uuid, d->e.uuid, 16);
	mig_chan_tune(fd, d->e.link_timeout_ms / 1000);
	mig_chan_set_timeouts(fd, d->e.link_timeout_ms, d->e.link_timeout_ms);
	return mig_wire_send(fd, MIG_MSG_HELLO, buf, mig_wire_enc_hello(buf, &h));
}

static int recv_ram_info(struct dst *d, int fd, struct mig_ram_info *ri)
{
	uint8_t buf[MIG_RAM_INFO_BYTES];
	uint32_t type, len;
	int r = mig_wire_recv(fd, &type, buf, sizeof(buf), &len);

	if (r == 0 && type != MIG_MSG_RAM_INFO)
		r = -EBADMSG;
	if (r == 0)
		r = mig_wire_dec_ram_info(buf, len, ri);
	if (r < 0)
		mig_engine_error(&d->e, "source sent no valid RAM description: %s",
				 strerror(-r));
	return r;
}

/* The first main connection: learn the RAM size, spawn and claim the
 * incoming guest, start serving its faults. */
static int start_session(struct dst *d, int fd)
{
	struct mig_ram_info ri;
	int r = recv_ram_info(d, fd, &ri);

	if (r < 0)
		return r;
	d->e.ram_bytes = ri.ram_bytes;
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

static void accept_preempt(struct dst *d, int fd)
{
	enum mig_state st = mig_engine_state(&d->e);

	if (st == MIG_STATE_COMPLETED) {
		/* the source's recovery opens it before it learns we are done */
		dst_hello_ack(d, fd, MIG_ROLE_PREEMPT);
		close(fd);
		return;
	}

	if (mig_engine_get_chan(&d->e, MIG_CHAN_PREEMPT) >= 0 ||
	    (st != MIG_STATE_ACTIVE && st != MIG_STATE_POSTCOPY_ACTIVE &&
	     st != MIG_STATE_POSTCOPY_RECOVER)) {
		refuse(fd, MIG_REFUSE_STATE, "no preempt channel expected now");
		return;
	}
	mig_engine_set_chan(&d->e, MIG_CHAN_PREEMPT, fd);
	if (dst_hello_ack(d, fd, MIG_ROLE_PREEMPT) < 0 ||
	    dst_start_rx(d, MIG_CHAN_PREEMPT) < 0)
		mig_engine_post(&d->e, MIG_EV_LINK_DOWN);
}

static void accept_main(struct dst *d, int fd, const struct mig_hello *h)
{
	enum mig_state st = mig_engine_state(&d->e);

	if ((h->flags & MIG_HELLO_RESUME) && st == MIG_STATE_COMPLETED) {
		dst_tell_complete(d, fd);
		return;
	}
	if (h->flags & MIG_HELLO_RESUME) {
		if (st != MIG_STATE_POSTCOPY_PAUSED || !atomic_load(&d->armed))
			refuse(fd, MIG_REFUSE_STATE, st == MIG_STATE_POSTCOPY_PAUSED ?
			       "paused, but migrate-recover has not been issued "
			       "here" : "nothing to recover in this state");
		else
			dst_begin_recovery(d, fd);
		return;
	}
	if (d->have_migration) {
		refuse(fd, MIG_REFUSE_STATE, "a migration is already running here");
		return;
	}
	d->have_migration = true;
	memcpy(d->e.uuid, h->uuid, 16);
	mig_uuid_format(d->e.uuid, d->e.uuid_str);
	mig_engine_set_chan(&d->e, MIG_CHAN_MAIN, fd);
	if (dst_hello_ack(d, fd, MIG_ROLE_MAIN) < 0)
		mig_engine_post(&d->e, MIG_EV_LINK_DOWN);
	else if (start_session(d, fd) < 0)
		dst_end_early(d, MIG_STATE_FAILED); /* its error said why */
}

static void on_hello(struct dst *d, struct pending *p)
{
	struct mig_hello h;
	uint32_t type, len;
	int fd = p->fd, r;
	char want[37], got[37], why[128];

	p->fd = -1;
	mig_set_nonblock(fd, false);
	r = mig_wire_dec_hdr(p->buf, &type, &len);
	if (r == 0 && (type != MIG_MSG_HELLO || len != MIG_HELLO_BYTES))
		r = -EBADMSG;
	if (r == 0)
		r = mig_wire_dec_hello(p->buf + MIG_WIRE_HDR_BYTES, len, &h);
	if (r < 0) {
		refuse(fd, r == -EPROTO ? MIG_REFUSE_VERSION : MIG_REFUSE_PROTOCOL,
		       r == -EPROTO ? "not a mig peer of protocol version 1" :
		       "malformed hello");
		return;
	}
	if (d->have_migration && memcmp(h.uuid, d->e.uuid, 16)) {
		mig_uuid_format(d->e.uuid, want);
		mig_uuid_format(h.uuid, got);
		snprintf(why, sizeof(why), "migration UUID %s is not the one "
			 "running here (%s)", got, want);
		refuse(fd, MIG_REFUSE_UUID, why);
		return;
	}
	if (h.role == MIG_ROLE_PREEMPT && d->have_migration) {
		accept_preempt(d, fd);
	} else if (h.role == MIG_ROLE_MAIN) {
		pthread_mutex_lock(&d->e.lock);
		snprintf(d->via_uri, sizeof(d->via_uri), "%s",
			 p->recovery ? d->armed_uri : d->listen_uri);
		pthread_mutex_unlock(&d->e.lock);
		accept_main(d, fd, &h);
	}
	else
		refuse(fd, MIG_REFUSE_ROLE, "preempt channel before any migration");
}

void dst_add_pending(struct dst *d, int lfd, bool recovery)
{
	int fd = mig_chan_accept(lfd);

	if (fd < 0)
		return;
	for (int i = 0; i < MAX_PENDING; i++) {
		if (d->pend[i].fd >= 0)
			continue;
		mig_set_nonblock(fd, true);
		d->pend[i] = (struct pending){ .fd = fd, .recovery = recovery,
			.deadline_ns = mig_deadline_ns(HELLO_TIMEOUT_MS) };
		return;
	}
	mig_warn("chan", "too many connections waiting for their hello");
	close(fd);
}

void dst_read_pending(struct dst *d, struct pending *p)
{
	ssize_t n = read(p->fd, p->buf + p->have, sizeof(p->buf) - p->have);

	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		close(p->fd);
		p->fd = -1;
		return;
	}
	p->have += n;
	if (p->have == sizeof(p->buf))
		on_hello(d, p);
}

void dst_expire_pending(struct dst *d)
{
	uint64_t now = mig_now_ns();

	for (int i = 0; i < MAX_PENDING; i++) {
		if (d->pend[i].fd >= 0 && now > d->pend[i].deadline_ns) {
			mig_warn("chan", "dropped a connection that sent no hello");
			close(d->pend[i].fd);
			d->pend[i].fd = -1;
		}
	}
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
