// SPDX-License-Identifier: MIT
/*
 * uffdref: the placement reference for `make bench`: how fast this machine
 * lets one thread place pages with UFFDIO_COPY into a fresh MAP_SHARED memfd
 * registered for MISSING faults, in 64 KiB runs as the pump sends them. That,
 * not loopback TCP, is the ceiling of a destination engine's throughput here.
 *
 * Two passes, each into a new memfd of the same size: the first takes pages
 * as the kernel hands them out (on a VM, memory freed a while ago is often
 * cold: its first touch costs a hypervisor fault, as it does for a migrating
 * guest), the second reuses the pages the first just freed (warm).
 * Output: `key=value` lines for bench/run.sh.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/util.h"

#define RUN_BYTES (64 * 1024) /* a pump run: 16 pages of 4 KiB (source.c) */

static void die(const char *what)
{
	fprintf(stderr, "uffdref: %s: %s\n", what, strerror(errno));
	exit(errno == EPERM ? 69 : 1);
}

static double place_once(uint64_t bytes, const char *src)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	uint64_t t0, t1;
	char *m;
	int fd, u;

	fd = memfd_create("uffdref", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0)
		die("memfd");
	m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		die("mmap");
	u = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (u < 0)
		die("userfaultfd");
	if (ioctl(u, UFFDIO_API, &api) < 0)
		die("UFFDIO_API");
	reg.range.start = (unsigned long)m;
	reg.range.len = bytes;
	if (ioctl(u, UFFDIO_REGISTER, &reg) < 0)
		die("UFFDIO_REGISTER");
	t0 = mig_now_ns();
	for (uint64_t off = 0; off < bytes; off += RUN_BYTES) {
		struct uffdio_copy c = { .dst = (unsigned long)m + off,
					 .src = (unsigned long)src,
					 .len = RUN_BYTES };

		if (ioctl(u, UFFDIO_COPY, &c) < 0)
			die("UFFDIO_COPY");
	}
	t1 = mig_now_ns();
	munmap(m, bytes);
	close(u);
	close(fd);
	return bytes / ((t1 - t0) / 1e9);
}

int main(int argc, char **argv)
{
	uint64_t bytes = 1ULL << 30;
	char *src;

	if (argc > 2 || (argc == 2 && (mig_parse_size(argv[1], &bytes) < 0 ||
				       bytes < RUN_BYTES || bytes % RUN_BYTES))) {
		fprintf(stderr, "Usage: uffdref [SIZE]   (a multiple of 64K, default 1G)\n");
		return 64;
	}
	src = aligned_alloc(4096, RUN_BYTES);
	if (!src)
		die("aligned_alloc");
	memset(src, 0x5a, RUN_BYTES); /* not zero: a real page copy */
	printf("uffd_copy_first_bytes_per_s=%.0f\n", place_once(bytes, src));
	fflush(stdout);
	printf("uffd_copy_reused_bytes_per_s=%.0f\n", place_once(bytes, src));
	free(src);
	return 0;
}
