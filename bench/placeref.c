// SPDX-License-Identifier: MIT
/*
 * placeref: the destination's floor for `make bench`, the best a
 * migration can do here with the kernel's own parts and nothing of mig's:
 * N loopback TCP streams, each spliced from a memfd by a sender thread (as
 * mig's postcopy pumps send) and read by a receiver thread that places its
 * 64 KiB runs with UFFDIO_COPY into one fresh memfd shared by all (as
 * mig-recv places them), with no vCPU and nothing else to do: a ceiling
 * for mig's bulk rate with as many streams, which shares the machine with
 * its vCPU and does its bookkeeping too. Two passes of each, the faster
 * kept: the first pass's pages are often cold on this VM.
 *
 * Output: `key=value` lines for bench/run.sh:
 *   place_<N>s_bytes_per_s     wall-clock rate of the N streams together
 *   place_<N>s_recv_cpu_s      the receivers' CPU time for all of it
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/util.h"
#include "core/uffd.h"

#define RUN_BYTES (64 * 1024)        /* a pump run (source-int.h) */
#define SRC_BYTES (64u * 1024 * 1024) /* what the senders splice, over and over */
#define MAX_STREAMS 2

struct stream {
	uint64_t base, bytes; /* the part of the guest this stream fills */
	int sfd, rfd;         /* sender's and receiver's socket */
	double recv_cpu;
};

static char *guest;
static int uffd, src_fd;

static void die(const char *what)
{
	fprintf(stderr, "placeref: %s: %s\n", what, strerror(errno));
	exit(errno == EPERM ? 69 : 1);
}

static double thread_cpu_s(void)
{
	struct rusage r;

	getrusage(RUSAGE_THREAD, &r);
	return (double)r.ru_utime.tv_sec + (double)r.ru_stime.tv_sec +
	       (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

/* From the page cache into the socket through a pipe, no copy. */
static void *sender(void *arg)
{
	struct stream *s = arg;
	int p[2];

	if (pipe(p) < 0)
		die("pipe");
	fcntl(p[1], F_SETPIPE_SZ, RUN_BYTES);
	for (uint64_t sent = 0; sent < s->bytes; sent += RUN_BYTES) {
		loff_t off = (loff_t)(sent % SRC_BYTES);
		size_t in = 0, out = 0;

		while (in < RUN_BYTES) {
			ssize_t n = splice(src_fd, &off, p[1], NULL, RUN_BYTES - in,
					   SPLICE_F_MOVE);
			if (n <= 0)
				die("splice from memfd");
			in += (size_t)n;
		}
		while (out < RUN_BYTES) {
			ssize_t n = splice(p[0], NULL, s->sfd, NULL, RUN_BYTES - out,
					   SPLICE_F_MOVE | SPLICE_F_MORE);
			if (n <= 0)
				die("splice to socket");
			out += (size_t)n;
		}
	}
	close(p[0]);
	close(p[1]);
	shutdown(s->sfd, SHUT_WR);
	return NULL;
}

static void *receiver(void *arg)
{
	struct stream *s = arg;
	char *buf = aligned_alloc(4096, RUN_BYTES);
	double c0 = thread_cpu_s();

	if (!buf)
		die("aligned_alloc");
	for (uint64_t off = 0; off < s->bytes; off += RUN_BYTES) {
		struct uffdio_copy c = { .dst = (unsigned long)guest + s->base + off,
					 .src = (unsigned long)buf,
					 .len = RUN_BYTES };
		ssize_t n = recv(s->rfd, buf, RUN_BYTES, MSG_WAITALL);

		if (n != RUN_BYTES)
			die("recv");
		if (ioctl(uffd, UFFDIO_COPY, &c) < 0)
			die("UFFDIO_COPY");
	}
	s->recv_cpu = thread_cpu_s() - c0;
	free(buf);
	return NULL;
}

static void connect_pair(struct stream *s)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &al) < 0 || listen(l, 1) < 0)
		die("listen");
	s->sfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->sfd < 0 || connect(s->sfd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	s->rfd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (s->rfd < 0)
		die("accept");
	close(l);
}

static void map_guest(uint64_t bytes)
{
	int fd = memfd_create("placeref-guest", MFD_CLOEXEC), r;

	if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0)
		die("memfd");
	guest = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (guest == MAP_FAILED)
		die("mmap");
	uffd = mig_uffd_open(0);
	if (uffd < 0 || (r = mig_uffd_register_missing(uffd, guest, bytes)) < 0) {
		errno = uffd < 0 ? -uffd : -r;
		die("userfaultfd");
	}
}

/* One pass: the wall-clock rate; *cpu the receivers' CPU seconds. */
static double pass(uint64_t bytes, unsigned n, double *cpu)
{
	struct stream s[MAX_STREAMS];
	pthread_t st[MAX_STREAMS], rt[MAX_STREAMS];
	uint64_t t0, t1;

	map_guest(bytes);
	for (unsigned i = 0; i < n; i++) {
		s[i] = (struct stream){ .base = bytes / n * i, .bytes = bytes / n };
		connect_pair(&s[i]);
	}
	t0 = mig_now_ns();
	for (unsigned i = 0; i < n; i++)
		if (pthread_create(&rt[i], NULL, receiver, &s[i]) ||
		    pthread_create(&st[i], NULL, sender, &s[i]))
			die("pthread_create");
	*cpu = 0;
	for (unsigned i = 0; i < n; i++) {
		pthread_join(st[i], NULL);
		pthread_join(rt[i], NULL);
		*cpu += s[i].recv_cpu;
		close(s[i].sfd);
		close(s[i].rfd);
	}
	t1 = mig_now_ns();
	if (guest[bytes - 1] != 0x5a)
		fprintf(stderr, "placeref: the last page did not arrive\n"), exit(1);
	munmap(guest, bytes);
	close(uffd);
	return bytes / ((t1 - t0) / 1e9);
}

static void measure(uint64_t bytes, unsigned n)
{
	double best = 0, best_cpu = 0;

	for (int i = 0; i < 2; i++) {
		double cpu, r = pass(bytes, n, &cpu);

		if (r > best)
			best = r, best_cpu = cpu;
	}
	printf("place_%us_bytes_per_s=%.0f\n", n, best);
	printf("place_%us_recv_cpu_s=%.3f\n", n, best_cpu);
	fflush(stdout);
}

static void fill_source(void)
{
	char *p;

	src_fd = memfd_create("placeref-source", MFD_CLOEXEC);
	if (src_fd < 0 || ftruncate(src_fd, SRC_BYTES) < 0)
		die("memfd");
	p = mmap(NULL, SRC_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, src_fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	memset(p, 0x5a, SRC_BYTES); /* not zero: a real page copy */
	munmap(p, SRC_BYTES);
}

int main(int argc, char **argv)
{
	uint64_t bytes = 1ULL << 30;

	if (argc > 2 || (argc == 2 && (mig_parse_size(argv[1], &bytes) < 0 ||
				       bytes < 2 * RUN_BYTES ||
				       bytes % (2 * RUN_BYTES)))) {
		fprintf(stderr, "Usage: placeref [SIZE]   (a multiple of 128K, default 1G)\n");
		return 64;
	}
	fill_source();
	measure(bytes, 1);
	measure(bytes, 2);
	close(src_fd);
	return 0;
}
