// SPDX-License-Identifier: MIT
/*
 * The channels to the destination: connecting (interruptibly, so a pause is
 * never stuck behind a connect), the hello handshake, heartbeats, a link
 * that went down, and starting and stopping the workers that use them.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "core/tls.h"
#include "core/wire.h"
#include "source/source-int.h"

void src_link_down(struct src *s, const char *what, int err)
{
	if (!atomic_load(&s->stop))
		mig_warn("link", "%s: %s", what, strerror(-err));
	mig_engine_post(&s->e, MIG_EV_LINK_DOWN);
}

/* Receive the peer's answer to our hello: its hello, or its refusal. */
static int hello_answer(struct src *s, int fd, uint32_t role)
{
	uint8_t buf[MIG_WIRE_MAX_REASON + 8];
	uint32_t type, len;
	struct mig_hello h;
	struct mig_refuse rf;
	int r = mig_wire_recv(fd, &type, buf, sizeof(buf), &len);

	if (r < 0)
		return r;
	if (type == MIG_MSG_REFUSE) {
		if (mig_wire_dec_refuse(buf, len, &rf) < 0)
			return -EBADMSG;
		mig_engine_error(&s->e, "destination refused the connection: %s",
				 rf.reason);
		return -EPROTO;
	}
	if (type != MIG_MSG_HELLO)
		return -EBADMSG;
	r = mig_wire_dec_hello(buf, len, &h);
	if (r < 0)
		return r;
	if (memcmp(h.uuid, s->e.uuid, 16) || h.role != role) {
		mig_engine_error(&s->e, "destination answered for another migration");
		return -EPROTO;
	}
	return 0;
}

/* Our hello could not go out. A TLS 1.3 destination that refused our
 * certificate did so after our handshake ended, and its alert may be
 * queued here still, behind the reset that failed the write: read it if
 * it is there (never wait), so that the reason is told, not the reset. */
static int refused_why(int fd, int r)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint8_t b;

	if (!mig_tls_active(fd) || poll(&p, 1, 0) != 1)
		return r;
	return mig_tls_read(fd, &b, 1) < 0 && errno == EACCES ? -EACCES : r;
}

int src_say_hello(struct src *s, int fd, uint32_t role, uint32_t flags)
{
	struct mig_hello h = { .version = MIG_WIRE_VERSION, .role = role,
			       .flags = flags };
	uint8_t buf[MIG_HELLO_BYTES];
	int r;

	memcpy(h.uuid, s->e.uuid, 16);
	mig_chan_tune(fd, s->e.link_timeout_ms / 1000);
	r = mig_chan_set_timeouts(fd, s->e.link_timeout_ms, s->e.link_timeout_ms);
	if (r == 0)
		r = mig_wire_send(fd, MIG_MSG_HELLO, buf, mig_wire_enc_hello(buf, &h));
	if (r < 0)
		return refused_why(fd, r);
	return hello_answer(s, fd, role);
}

/* TLS first when it is on: not a byte of ours crosses before the
 * destination has proved who it is. 0, or -EACCES and friends with the
 * migration's error set. */
int src_secure(struct src *s, int fd, const struct mig_uri *u)
{
	char host[256], err[600], name[300];
	struct mig_tls *t = mig_engine_tls(&s->e, host, sizeof(host));
	int r;

	if (!t) {
		mig_engine_clear_link(&s->e, fd);
		return 0;
	}
	if (!host[0] && u->kind == MIG_URI_TCP)
		snprintf(host, sizeof(host), "%s", u->host);
	r = mig_tls_client(t, fd, host, atomic_load(&s->e.link_timeout_ms),
			   err, sizeof(err));
	mig_tls_unref(t);
	mig_uri_format(u, name, sizeof(name));
	if (r == -EACCES)
		mig_engine_auth_failed(&s->e, name, err);
	else if (r < 0)
		mig_engine_error(&s->e, "TLS with %s failed: %s", name, err);
	return r;
}

/* Connect, unless a pause arrives first (the fd is not yet kickable). */
static int connect_interruptible(struct src *s, const struct mig_uri *u)
{
	struct pollfd p[1 + MIG_ENGINE_NPOLL] = { { .events = POLLOUT } };
	uint64_t deadline = mig_deadline_ns(CONNECT_TIMEOUT_MS);
	int fd = mig_chan_connect_start(u), r = -ETIMEDOUT, left;

	if (fd < 0)
		return fd;
	p[0].fd = fd;
	mig_engine_pollfds(&s->e, p + 1);
	while ((left = mig_deadline_left_ms(deadline)) > 0) {
		bool paused;

		r = poll(p, 1 + MIG_ENGINE_NPOLL, left);
		if (r < 0 && errno != EINTR) {
			r = -errno;
			break;
		}
		if (r > 0 && p[0].revents) {
			r = mig_chan_connect_finish(fd);
			break;
		}
		pthread_mutex_lock(&s->e.lock);
		paused = s->e.pending & MIG_EV_PAUSE;
		pthread_mutex_unlock(&s->e.lock);
		/* a signal is left unread: the loop takes it next */
		if (paused || (p[2].revents & POLLIN)) {
			r = -EINTR;
			break;
		}
		if (r > 0)
			p[1].fd = -1; /* other news: the loop takes it later */
		r = -ETIMEDOUT;
	}
	if (r < 0) {
		mig_chan_close(fd);
		return r;
	}
	return fd;
}

static void close_chans(struct src *s)
{
	for (int c = 0; c < MIG_CHAN__COUNT; c++) {
		int fd = mig_engine_get_chan(&s->e, c);

		mig_engine_set_chan(&s->e, c, -1);
		if (fd >= 0)
			mig_chan_close(fd);
	}
}

/* Connect the main channel (and start the preempt one) to u. */
int src_open_chans(struct src *s, const struct mig_uri *u, bool resume)
{
	char name[300];
	uint32_t flags = (resume ? MIG_HELLO_RESUME : 0) |
			 (atomic_load(&s->preempt) ? MIG_HELLO_PREEMPT : 0);
	int fd = connect_interruptible(s, u), r;

	/* this session's streams, fixed now: the hello announces them */
	s->npumps = atomic_load(&s->channels);
	flags |= MIG_HELLO_BULK(s->npumps - 1);
	s->bulk_uri = *u;

	s->pre_err = 0; /* a new attempt: old preempt failures are history */
	mig_uri_format(u, name, sizeof(name));
	if (fd < 0) {
		mig_engine_error(&s->e, "cannot connect to %s: %s", name,
				 fd == -ENXIO ? "unknown host" : strerror(-fd));
		return fd;
	}
	mig_engine_set_chan(&s->e, MIG_CHAN_MAIN, fd); /* a pause kicks it */
	r = src_secure(s, fd, u);
	if (r < 0) {
		close_chans(s);
		return r;
	}
	r = src_say_hello(s, fd, MIG_ROLE_MAIN, flags);
	if (r == -EACCES) /* TLS 1.3 checks our certificate after our hello */
		mig_engine_error(&s->e, "TLS with %s failed: the destination refused "
				 "our certificate", name);
	if (r < 0) {
		if (r != -EPROTO && r != -EACCES)
			mig_engine_error(&s->e, "hello with %s failed: %s", name,
					 strerror(-r));
		close_chans(s);
		return r;
	}
	if (atomic_load(&s->preempt)) {
		r = src_preempt_start(s, u, resume);
		if (r < 0)
			close_chans(s);
	}
	return r;
}

/* Connect to u within CONNECT_TIMEOUT_MS, unless stop is set meanwhile:
 * a pump's bulk channel, which no pause could kick before it has an fd. */
static int connect_stoppable(struct src *s, const struct mig_uri *u)
{
	uint64_t deadline = mig_deadline_ns(CONNECT_TIMEOUT_MS);
	struct pollfd p = { .events = POLLOUT };
	int r = -ETIMEDOUT;

	p.fd = mig_chan_connect_start(u);
	if (p.fd < 0)
		return p.fd;
	while (!atomic_load(&s->stop) && mig_deadline_left_ms(deadline) > 0) {
		r = poll(&p, 1, MIG_MIN(100, mig_deadline_left_ms(deadline)));
		if (r > 0) {
			r = mig_chan_connect_finish(p.fd);
			break;
		}
		r = r < 0 && errno != EINTR ? -errno : -ETIMEDOUT;
		if (r != -ETIMEDOUT)
			break;
	}
	if (atomic_load(&s->stop))
		r = -EINTR;
	if (r < 0) {
		mig_chan_close(p.fd);
		return r;
	}
	return p.fd;
}

/* Under the channel's tx mutex throughout, so that no heartbeat goes out
 * on it before its hello is answered. */
int src_connect_bulk(struct src *s, enum mig_chan_slot c)
{
	int fd, r = 0;

	pthread_mutex_lock(&s->tx[c]);
	fd = connect_stoppable(s, &s->bulk_uri);
	if (fd < 0)
		r = fd;
	/* registered first, so that a pause kicks the handshakes; one that
	 * began kicking before it was there has set stop, seen here */
	if (r == 0)
		mig_engine_set_chan(&s->e, c, fd);
	if (r == 0 && atomic_load(&s->stop))
		r = -EINTR;
	if (r == 0)
		r = src_secure(s, fd, &s->bulk_uri);
	if (r == 0)
		r = src_say_hello(s, fd, MIG_ROLE_BULK,
				  MIG_HELLO_BULK(c - MIG_CHAN_BULK + 1));
	pthread_mutex_unlock(&s->tx[c]);
	return r;
}

/* The return path, then one pump a background stream: main's at once,
 * the others as their bulk channels connect. */
int src_start_workers(struct src *s)
{
	int r;

	atomic_store(&s->stop, false);
	r = pthread_create(&s->rp_thr, NULL, src_rp_main, s);
	if (r)
		return -r;
	s->rp_on = true;
	atomic_store(&s->pumps_busy, s->npumps);
	for (unsigned i = 0; i < s->npumps; i++) {
		struct src_pump *pm = &s->pump[i];

		pm->s = s;
		pm->c = i ? MIG_CHAN_BULK + i - 1 : MIG_CHAN_MAIN;
		r = pthread_create(&pm->thr, NULL, src_pump_main, pm);
		if (r)
			return -r;
		pm->on = true;
	}
	return 0;
}

/* Stop flag, kick the channels so blocked threads return, join, close. */
void src_stop_workers(struct src *s)
{
	atomic_store(&s->stop, true);
	mig_engine_kick_all(&s->e);
	for (unsigned i = 0; i < MIG_CHANNELS_MAX; i++) {
		if (s->pump[i].on)
			pthread_join(s->pump[i].thr, NULL);
		s->pump[i].on = false;
	}
	if (s->rp_on)
		pthread_join(s->rp_thr, NULL);
	if (s->pre_on)
		src_preempt_finish(s);
	s->rp_on = false;
	close_chans(s);
}

void src_heartbeat(struct src *s)
{
	uint8_t buf[8];

	for (int c = 0; c < MIG_CHAN__COUNT; c++) {
		int fd, r = 0;

		if (pthread_mutex_trylock(&s->tx[c]))
			continue; /* a message is going out: that is a heartbeat */
		/* read under tx: a bulk channel's pump sets it under tx */
		fd = s->e.chan_fd[c];
		if (fd >= 0)
			r = mig_wire_send(fd, MIG_MSG_PING, buf,
					  mig_wire_enc_u64(buf, 0));
		pthread_mutex_unlock(&s->tx[c]);
		if (r < 0)
			src_link_down(s, mig_chan_slot_name(c), r);
	}
}
