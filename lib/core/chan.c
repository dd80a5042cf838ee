// SPDX-License-Identifier: MIT
/* Channels: URIs, listen, connect, tuning, forced shutdown. See chan.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/chan.h"
#include "core/tls.h"
#include "base/log.h"
#include "base/util.h"

/* Socket buffers: large enough that one 64 KiB page run never waits for the
 * reader to drain a previous one on loopback. */
#define CHAN_SOCKBUF_BYTES (4 << 20)

static int parse_tcp(const char *s, struct mig_uri *u)
{
	const char *colon;
	size_t hlen;
	unsigned long port;

	if (*s == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			return -EINVAL;
		hlen = rb - s - 1;
		colon = rb + 1;
		s++;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hlen = colon - s;
	}
	if (hlen == 0 || hlen >= sizeof(u->host))
		return -EINVAL;
	if (mig_parse_ulong(colon + 1, 1, 65535, &port) < 0)
		return -EINVAL;
	memcpy(u->host, s, hlen);
	u->host[hlen] = '\0';
	if (strchr(u->host, ':') && s[-1] != '[')
		return -EINVAL; /* bare IPv6 needs brackets */
	snprintf(u->port, sizeof(u->port), "%lu", port);
	u->kind = MIG_URI_TCP;
	return 0;
}

int mig_uri_parse(const char *s, struct mig_uri *out)
{
	struct mig_uri u;

	memset(&u, 0, sizeof(u));
	if (!s)
		return -EINVAL;
	if (!strncmp(s, "tcp:", 4)) {
		if (parse_tcp(s + 4, &u) < 0)
			return -EINVAL;
	} else if (!strncmp(s, "unix:", 5)) {
		size_t n = strlen(s + 5);

		if (n == 0 || n >= sizeof(u.path))
			return -EINVAL;
		memcpy(u.path, s + 5, n + 1);
		u.kind = MIG_URI_UNIX;
	} else {
		return -EINVAL;
	}
	*out = u;
	return 0;
}

void mig_uri_format(const struct mig_uri *u, char *buf, size_t len)
{
	if (u->kind == MIG_URI_UNIX)
		snprintf(buf, len, "unix:%s", u->path);
	else if (strchr(u->host, ':'))
		snprintf(buf, len, "tcp:[%s]:%s", u->host, u->port);
	else
		snprintf(buf, len, "tcp:%s:%s", u->host, u->port);
}

static int unix_addr(const struct mig_uri *u, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(u->path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, u->path);
	return 0;
}

static int listen_unix(const struct mig_uri *u)
{
	struct sockaddr_un sa;
	int fd, r;

	r = unix_addr(u, &sa);
	if (r < 0)
		return r;
	r = mig_sock_claim(u->path);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 16) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

static int resolve(const struct mig_uri *u, bool passive, struct addrinfo **res)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = passive ? AI_PASSIVE : 0,
	};
	int r = getaddrinfo(u->host, u->port, &hints, res);

	if (r == 0)
		return 0;
	if (r == EAI_SYSTEM)
		return -errno;
	return r == EAI_AGAIN ? -EAGAIN : -ENXIO;
}

static int listen_tcp(const struct mig_uri *u)
{
	struct addrinfo *res, *ai;
	int fd = -EADDRNOTAVAIL, r, one = 1;

	r = resolve(u, true, &res);
	if (r < 0)
		return r;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			fd = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 16) == 0)
			break;
		r = -errno;
		close(fd);
		fd = r;
	}
	freeaddrinfo(res);
	return fd;
}

int mig_chan_listen(const struct mig_uri *u)
{
	return u->kind == MIG_URI_UNIX ? listen_unix(u) : listen_tcp(u);
}

static int start_one(int family, const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int r;

	if (fd < 0)
		return -errno;
	mig_tls_forget(fd); /* a session left by a close that missed it */
	if (family != AF_UNIX)
		mig_chan_tune(fd, 0); /* buffer sizes must be set before connect */
	if (connect(fd, sa, len) == 0 || errno == EINPROGRESS)
		return fd;
	r = -errno;
	close(fd);
	return r;
}

int mig_chan_connect_start(const struct mig_uri *u)
{
	struct addrinfo *res, *ai;
	int fd = -ENXIO, r;

	if (u->kind == MIG_URI_UNIX) {
		struct sockaddr_un sa;

		r = unix_addr(u, &sa);
		if (r < 0)
			return r;
		r = start_one(AF_UNIX, (struct sockaddr *)&sa, sizeof(sa));
		/* a missing socket file reads better as "nobody listens" */
		return r == -ENOENT ? -ECONNREFUSED : r;
	}
	r = resolve(u, false, &res);
	if (r < 0)
		return r;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = start_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen);
		if (fd >= 0)
			break;
	}
	freeaddrinfo(res);
	return fd;
}

int mig_chan_connect_finish(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	if (err)
		return -err;
	return mig_set_nonblock(fd, false);
}

int mig_chan_connect(const struct mig_uri *u, int timeout_ms)
{
	struct pollfd p;
	int fd = mig_chan_connect_start(u), r;

	if (fd < 0)
		return fd;
	p.fd = fd;
	p.events = POLLOUT;
	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		r = -ETIMEDOUT;
	else if (r < 0)
		r = -errno;
	else
		r = mig_chan_connect_finish(fd);
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

int mig_chan_accept(int lfd)
{
	int fd;

	do
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return -errno;
	mig_tls_forget(fd); /* a session left by a close that missed it */
	return fd;
}

void mig_chan_close(int fd)
{
	mig_tls_forget(fd);
	close(fd);
}

bool mig_chan_is_local(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
		return false;
	if (ss.ss_family == AF_INET)
		return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss.ss_family == AF_INET6) {
		const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return ss.ss_family == AF_UNIX;
}

void mig_chan_tune(int fd, int keepalive_s)
{
	int one = 1, buf = CHAN_SOCKBUF_BYTES;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
	    ss.ss_family == AF_UNIX)
		return;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (keepalive_s > 0) {
		int intvl = keepalive_s > 3 ? keepalive_s / 3 : 1, cnt = 3;
		unsigned int user_timeout_ms = keepalive_s * 2000u;

		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &keepalive_s,
			   sizeof(keepalive_s));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
		/* unacknowledged data must not hang a send for the 15-minute
		 * kernel default: the link counts as broken after this */
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms,
			   sizeof(user_timeout_ms));
	}
}

int mig_chan_set_timeouts(int fd, int rcv_ms, int snd_ms)
{
	struct timeval r = { rcv_ms / 1000, (rcv_ms % 1000) * 1000 };
	struct timeval s = { snd_ms / 1000, (snd_ms % 1000) * 1000 };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &r, sizeof(r)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &s, sizeof(s)) < 0)
		return -errno;
	return 0;
}

/*
 * A sender blocked on a full socket buffer is woken only once a third of
 * it has drained: megabytes here, which a slow link takes longer than the
 * link timeout to move, so that SO_SNDTIMEO alone broke links that moved
 * all along. Silence is what breaks a link: no acknowledgement from the
 * peer (a window probe's counts) for as long as the timeout.
 */
bool mig_chan_moving(int fd)
{
	struct tcp_info ti;
	struct timeval tv;
	socklen_t tl = sizeof(ti), vl = sizeof(tv);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &vl) < 0)
		return false;
	return ti.tcpi_last_ack_recv < (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

void mig_chan_kick(int fd)
{
	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
}

void mig_chan_peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN];

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0) {
		snprintf(buf, len, "?");
	} else if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "unix");
	}
}
