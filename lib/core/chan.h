/* SPDX-License-Identifier: MIT */
/*
 * Channels: the URIs tcp:HOST:PORT and unix:PATH, listening, connecting
 * (blocking with a timeout, or asynchronously for the preempt channel),
 * socket tuning (keepalive, timeouts) and forced shutdown, which is how a
 * pause kicks every thread blocked on a channel.
 */
#ifndef MIG_CHAN_H
#define MIG_CHAN_H

#include <stdbool.h>
#include <stddef.h>

enum mig_uri_kind {
	MIG_URI_TCP,
	MIG_URI_UNIX,
};

struct mig_uri {
	enum mig_uri_kind kind;
	char host[256];  /* tcp: name or address; IPv6 given as [addr] */
	char port[8];    /* tcp: 1..65535 */
	char path[108];  /* unix: sun_path */
};

/* Parse "tcp:HOST:PORT" or "unix:PATH". -EINVAL on anything else (unknown
 * scheme, missing/zero/non-numeric port, empty host or path, path too long
 * for sun_path). */
int mig_uri_parse(const char *s, struct mig_uri *out);
/* Back to text. */
void mig_uri_format(const struct mig_uri *u, char *buf, size_t len);

/* Listening socket (CLOEXEC). For unix:, a stale socket file nobody listens on
 * is replaced; a live one gives -EADDRINUSE. Returns fd or -errno. */
int mig_chan_listen(const struct mig_uri *u);
/* Blocking connect with a timeout in ms: fd or -errno (-ETIMEDOUT,
 * -ECONNREFUSED, -EHOSTUNREACH, -ENOENT for a unix path, -ENXIO for a host
 * name that does not resolve). */
int mig_chan_connect(const struct mig_uri *u, int timeout_ms);
/* Start a non-blocking connect: fd (connect in progress or done) or -errno.
 * Poll the fd for POLLOUT, then mig_chan_connect_finish(). */
int mig_chan_connect_start(const struct mig_uri *u);
/* 0 once connected (the fd is made blocking again), -errno on failure. */
int mig_chan_connect_finish(int fd);
/* accept4 with CLOEXEC; fd or -errno. */
int mig_chan_accept(int lfd);
/* Close a channel, ending its TLS session (core/tls) if it has one. */
void mig_chan_close(int fd);
/* Whether fd's peer is on this host (loopback, or a unix socket): a link
 * in clear that crosses no network. */
bool mig_chan_is_local(int fd);
/* Per-connection tuning: TCP_NODELAY, large buffers, TCP keepalive with
 * the given idle time (seconds; 0 leaves the system default). */
void mig_chan_tune(int fd, int keepalive_s);
/* SO_RCVTIMEO/SO_SNDTIMEO in ms (0 = none). */
int mig_chan_set_timeouts(int fd, int rcv_ms, int snd_ms);
/* A send on fd made no progress for its SO_SNDTIMEO: does the link still
 * move, the peer having acknowledged something within that time? Then
 * the send goes on (a slow link is no broken one). False for a socket
 * that is not TCP. */
bool mig_chan_moving(int fd);
/* Shut both directions down so every thread blocked on fd returns now. */
void mig_chan_kick(int fd);
/* Human-readable peer ("127.0.0.1:5000", "unix") for logs. */
void mig_chan_peer_name(int fd, char *buf, size_t len);

#endif
