// SPDX-License-Identifier: MIT
/*
 * tcpref: the loopback references that `make bench` divides the engines'
 * figures by, measured in the same run on the same (noisy, shared) machine:
 *   (a) one-stream TCP throughput over 127.0.0.1: the ceiling for the pump;
 *   (b) idle 16-byte ping-pong round trip (TCP_NODELAY, blocking reads);
 *   (c) 16-byte request / 4 KiB reply round trip: the floor for one demand
 *       page request, minus userfaultfd.
 * Output is one `key=value` line per figure, for bench/run.sh to parse.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/util.h"

#define TP_WRITE_BYTES (64 * 1024)        /* per write(): what a pump run sends */
#define TP_SOCKBUF_BYTES (4 * 1024 * 1024) /* large buffers: one stream at full speed */
#define RTT_REQ_BYTES 16                  /* a page request is about this size */
#define RTT_PAGE_BYTES 4096               /* one guest page */

struct opts {
	uint64_t tp_bytes;  /* bytes per throughput run */
	unsigned tp_runs;   /* throughput runs; the median is the reference */
	unsigned iters;     /* timed round trips */
	unsigned warmup;    /* untimed round trips first */
};

static void die(const char *what)
{
	fprintf(stderr, "tcpref: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void set_int(int fd, int level, int opt, int v, const char *what)
{
	if (setsockopt(fd, level, opt, &v, sizeof(v)) < 0)
		die(what);
}

/* A connected TCP pair over 127.0.0.1. Buffer sizes must be set before
 * listen()/connect() for the window scale to be negotiated from them. */
static void tcp_pair(int sockbuf, int *a, int *b)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (l < 0 || c < 0)
		die("socket");
	if (sockbuf) {
		set_int(l, SOL_SOCKET, SO_RCVBUF, sockbuf, "SO_RCVBUF");
		set_int(l, SOL_SOCKET, SO_SNDBUF, sockbuf, "SO_SNDBUF");
		set_int(c, SOL_SOCKET, SO_RCVBUF, sockbuf, "SO_RCVBUF");
		set_int(c, SOL_SOCKET, SO_SNDBUF, sockbuf, "SO_SNDBUF");
	}
	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &len) < 0)
		die("listen");
	if (connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	*b = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (*b < 0)
		die("accept");
	*a = c;
	close(l);
}

/* (a) throughput */

struct sender {
	int fd;
	uint64_t bytes;
};

static void *send_main(void *arg)
{
	struct sender *s = arg;
	char *buf = calloc(1, TP_WRITE_BYTES);
	uint64_t left = s->bytes;

	if (!buf)
		die("calloc");
	while (left) {
		size_t n = left < TP_WRITE_BYTES ? left : TP_WRITE_BYTES;

		if (mig_write_full(s->fd, buf, n) < 0)
			die("write");
		left -= n;
	}
	free(buf);
	shutdown(s->fd, SHUT_WR);
	return NULL;
}

static double throughput_once(uint64_t bytes)
{
	struct sender s = { .bytes = bytes };
	size_t bufsz = TP_WRITE_BYTES;
	char *buf = malloc(bufsz);
	uint64_t got = 0, t0, t1;
	pthread_t th;
	int rfd;

	if (!buf)
		die("malloc");
	tcp_pair(TP_SOCKBUF_BYTES, &s.fd, &rfd);
	t0 = mig_now_ns();
	if ((errno = pthread_create(&th, NULL, send_main, &s)))
		die("pthread_create");
	for (;;) {
		ssize_t n = read(rfd, buf, bufsz);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read");
		if (n == 0)
			break;
		got += n;
	}
	t1 = mig_now_ns();
	pthread_join(th, NULL);
	close(s.fd);
	close(rfd);
	free(buf);
	if (got != bytes) {
		fprintf(stderr, "tcpref: received %llu of %llu bytes\n",
			(unsigned long long)got, (unsigned long long)bytes);
		exit(1);
	}
	return bytes / ((t1 - t0) / 1e9);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void throughput(const struct opts *o)
{
	double r[16];
	unsigned n = o->tp_runs;

	for (unsigned i = 0; i < n; i++)
		r[i] = throughput_once(o->tp_bytes);
	qsort(r, n, sizeof(r[0]), cmp_double);
	printf("tcp_bytes_per_s=%.0f\n", r[n / 2]);
	printf("tcp_bytes_per_s_min=%.0f\n", r[0]);
	printf("tcp_bytes_per_s_max=%.0f\n", r[n - 1]);
	printf("tcp_runs=%u\n", n);
}

/* (b), (c) round trips */

struct echo {
	int fd;
	size_t reply;
	unsigned count;
};

/* Answer each request with `reply` bytes, blocking, like a return path. */
static void *echo_main(void *arg)
{
	struct echo *e = arg;
	char req[RTT_REQ_BYTES], *rep = calloc(1, e->reply);

	if (!rep)
		die("calloc");
	for (unsigned i = 0; i < e->count; i++) {
		if (mig_read_full(e->fd, req, sizeof(req)) < 0)
			die("echo read");
		if (mig_write_full(e->fd, rep, e->reply) < 0)
			die("echo write");
	}
	free(rep);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static void round_trip(const struct opts *o, const char *key, size_t reply)
{
	struct echo e = { .reply = reply, .count = o->warmup + o->iters };
	uint64_t *ns = calloc(o->iters, sizeof(*ns));
	char req[RTT_REQ_BYTES] = { 0 }, *rep = malloc(reply);
	pthread_t th;
	int c;

	if (!ns || !rep)
		die("calloc");
	tcp_pair(0, &c, &e.fd);
	set_int(c, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
	set_int(e.fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
	if ((errno = pthread_create(&th, NULL, echo_main, &e)))
		die("pthread_create");
	for (unsigned i = 0; i < e.count; i++) {
		uint64_t t0 = mig_now_ns();

		if (mig_write_full(c, req, sizeof(req)) < 0)
			die("write");
		if (mig_read_full(c, rep, reply) < 0)
			die("read");
		if (i >= o->warmup)
			ns[i - o->warmup] = mig_now_ns() - t0;
	}
	pthread_join(th, NULL);
	close(c);
	close(e.fd);
	qsort(ns, o->iters, sizeof(*ns), cmp_u64);
	printf("%s_p50_us=%.1f\n", key, ns[o->iters / 2] / 1e3);
	printf("%s_p99_us=%.1f\n", key, ns[(size_t)(o->iters * 0.99)] / 1e3);
	printf("%s_max_us=%.1f\n", key, ns[o->iters - 1] / 1e3);
	free(ns);
	free(rep);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: tcpref [options]\n"
		"\n"
		"Loopback TCP references for make bench, as key=value lines.\n"
		"\n"
		"Options:\n"
		"  -b, --bytes SIZE    bytes per throughput run (default 1G)\n"
		"  -r, --runs N        throughput runs, median reported (default 3)\n"
		"  -n, --iters N       timed round trips (default 2000)\n"
		"  -w, --warmup N      untimed round trips first (default 200)\n"
		"  -h, --help          this help\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "bytes", required_argument, NULL, 'b' },
		{ "runs", required_argument, NULL, 'r' },
		{ "iters", required_argument, NULL, 'n' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct opts o = { .tp_bytes = 1ULL << 30, .tp_runs = 3, .iters = 2000,
			  .warmup = 200 };
	unsigned long v;
	int c;

	while ((c = getopt_long(argc, argv, "b:r:n:w:h", lo, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (mig_parse_size(optarg, &o.tp_bytes) < 0 || !o.tp_bytes)
				goto bad;
			break;
		case 'r':
			if (mig_parse_ulong(optarg, 1, 15, &v) < 0)
				goto bad;
			o.tp_runs = v;
			break;
		case 'n':
			if (mig_parse_ulong(optarg, 1, 10000000, &v) < 0)
				goto bad;
			o.iters = v;
			break;
		case 'w':
			if (mig_parse_ulong(optarg, 0, 10000000, &v) < 0)
				goto bad;
			o.warmup = v;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			goto try;
		}
	}
	if (optind != argc)
		goto try;
	throughput(&o);
	fflush(stdout);
	round_trip(&o, "rtt16", RTT_REQ_BYTES);
	fflush(stdout);
	round_trip(&o, "rtt4k", RTT_PAGE_BYTES);
	return 0;
bad:
	fprintf(stderr, "tcpref: bad value for -%c: '%s'\n", c, optarg);
try:
	fprintf(stderr, "Try 'tcpref --help'.\n");
	return 64;
}
