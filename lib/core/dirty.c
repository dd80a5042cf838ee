// SPDX-License-Identifier: MIT
/*
 * Dirty-page tracking from outside the guest: see dirty.h.
 *
 * PAGEMAP_SCAN with PM_SCAN_WP_MATCHING reports the pages whose
 * PAGE_IS_WRITTEN category is set (written since they were last
 * write-protected) and write-protects them again in the same walk, so no
 * write can fall between the report and the re-arm. PM_SCAN_CHECK_WPASYNC
 * makes a range that is not armed an error (EPERM) instead of a silent
 * "nothing written".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/dirty.h"
#include "base/log.h"
#include "core/ram.h"
#include "core/uffd.h"
#include "base/util.h"

/* The build host's headers may predate the kernel (PAGEMAP_SCAN is 6.7,
 * WP_ASYNC 6.7, WP_UNPOPULATED 6.4): the ABI values, from linux/fs.h and
 * linux/userfaultfd.h. */
#ifndef PAGEMAP_SCAN
#define PAGE_IS_WRITTEN (1 << 1)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
struct pm_scan_arg {
	uint64_t size;
	uint64_t flags;
	uint64_t start;
	uint64_t end;
	uint64_t walk_end;
	uint64_t vec;
	uint64_t vec_len;
	uint64_t max_pages;
	uint64_t category_inverted;
	uint64_t category_mask;
	uint64_t category_anyof_mask;
	uint64_t return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

_Static_assert(sizeof(struct mig_dirty_region) == 24,
	       "struct mig_dirty_region must match the kernel's page_region");

/* pagemap entry: bit 55 is the soft-dirty bit (Documentation/admin-guide/
 * mm/pagemap.rst). */
#define PM_SOFT_DIRTY (1ull << 55)
/* pagemap entries read per pread in the soft-dirty walk: 32 KiB. */
#define SOFT_CHUNK_ENTRIES 4096u
/* clear_refs value that clears the soft-dirty bits of the whole process. */
#define CLEAR_REFS_SOFT_DIRTY "4"

enum method { M_WP, M_SOFT };

struct mig_dirty {
	enum method method;
	int pagemap;
	int clear_refs;   /* soft-dirty only */
	uint64_t base, len;
	struct mig_dirty_region reg[MIG_DIRTY_SCAN_REGIONS];
};

/* --- the pure part -------------------------------------------------- */

long mig_dirty_fold(struct mig_bitmap *dirty, uint64_t base, uint64_t len,
		    uint64_t start, const struct mig_dirty_region *reg,
		    size_t n, uint64_t walk_end, uint64_t *next)
{
	uint64_t end = base + len, to = walk_end;
	long fresh = 0;

	for (size_t i = 0; i < n; i++) {
		const struct mig_dirty_region *r = &reg[i];

		if (r->start >= r->end || r->start < start || r->end > end ||
		    r->start % MIG_PAGE_SIZE || r->end % MIG_PAGE_SIZE)
			return -EPROTO;
		for (uint64_t a = r->start; a < r->end; a += MIG_PAGE_SIZE)
			fresh += !mig_bitmap_set(dirty, (a - base) / MIG_PAGE_SIZE);
	}
	/* the walk_end pitfall: never restart below what was reported */
	if (n && reg[n - 1].end > to)
		to = reg[n - 1].end;
	if (to > end)
		to = end;
	if (to <= start)
		return -EPROTO;
	*next = to;
	return fresh;
}

/* --- PAGEMAP_SCAN ---------------------------------------------------- */

static long scan_wp(struct mig_dirty *d, struct mig_bitmap *dirty)
{
	uint64_t start = d->base, end = d->base + d->len;
	long total = 0;

	while (start < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
			.start = start,
			.end = end,
			.vec = (uintptr_t)d->reg,
			.vec_len = MIG_DIRTY_SCAN_REGIONS,
			.category_mask = PAGE_IS_WRITTEN,
			.return_mask = PAGE_IS_WRITTEN,
		};
		uint64_t next;
		long n = ioctl(d->pagemap, PAGEMAP_SCAN, &a), r;

		if (n < 0)
			return -errno;
		if ((uint64_t)n > MIG_DIRTY_SCAN_REGIONS)
			return -EPROTO;
		r = mig_dirty_fold(dirty, d->base, d->len, start, d->reg,
				   (size_t)n, a.walk_end, &next);
		if (r < 0) {
			mig_err("dirty", "PAGEMAP_SCAN from 0x%" PRIx64 ": %ld "
				"regions, walk end 0x%" PRIx64 ": makes no sense",
				start, n, (uint64_t)a.walk_end);
			return r;
		}
		total += r;
		start = next;
	}
	return total;
}

/* A zero-length PAGEMAP_SCAN: 0 where the ioctl exists, ENOTTY (or
 * EINVAL from a kernel that knows another "f" ioctl 16) where not. */
static bool have_pagemap_scan(int pagemap, uint64_t addr)
{
	struct pm_scan_arg a = { .size = sizeof(a), .start = addr, .end = addr };

	return ioctl(pagemap, PAGEMAP_SCAN, &a) == 0;
}

/* Is [base, base+len) armed (every VMA in async write-protect mode)? A
 * walk that reports nothing and protects nothing: 0 or -EPERM. */
static int check_armed(int pagemap, uint64_t base, uint64_t len)
{
	struct pm_scan_arg a = {
		.size = sizeof(a),
		.flags = PM_SCAN_CHECK_WPASYNC,
		.start = base,
		.end = base + len,
		.category_mask = PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_WRITTEN,
	};

	return ioctl(pagemap, PAGEMAP_SCAN, &a) < 0 ? -errno : 0;
}

/* --- soft-dirty -------------------------------------------------------- */

/*
 * Not exercised on the machines this was written on (no
 * CONFIG_MEM_SOFT_DIRTY there): kept simple and careful instead. Read the
 * pagemap entries of the range, then re-arm the whole process. A write
 * between the read and the clear_refs is lost (see dirty.h: the caller
 * holds the vCPUs still). Pages never touched have no entry bits at all and
 * are not dirty, the same as with the uffd method.
 */
static int soft_clear(int fd)
{
	ssize_t n = pwrite(fd, CLEAR_REFS_SOFT_DIRTY, 1, 0);

	if (n < 0)
		return -errno;
	return n == 1 ? 0 : -EIO;
}

static long scan_soft(struct mig_dirty *d, struct mig_bitmap *dirty)
{
	uint64_t npages = d->len / MIG_PAGE_SIZE, first = d->base / MIG_PAGE_SIZE;
	uint64_t *buf = malloc(SOFT_CHUNK_ENTRIES * sizeof(*buf));
	long total = 0;
	int r;

	if (!buf)
		return -ENOMEM;
	for (uint64_t i = 0; i < npages; ) {
		uint64_t want = MIG_MIN(npages - i, SOFT_CHUNK_ENTRIES);
		ssize_t n = pread(d->pagemap, buf, want * sizeof(*buf),
				  (off_t)((first + i) * sizeof(*buf)));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || n % sizeof(*buf)) {
			total = n < 0 ? -errno : -EIO;
			goto out;
		}
		for (uint64_t k = 0; k < (uint64_t)n / sizeof(*buf); k++)
			if (buf[k] & PM_SOFT_DIRTY)
				total += !mig_bitmap_set(dirty, i + k);
		i += (uint64_t)n / sizeof(*buf);
	}
	r = soft_clear(d->clear_refs);
	if (r < 0)
		total = r;
out:
	free(buf);
	return total;
}

/* --- the probe ----------------------------------------------------------- */

static const char *probed;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

/* Two shmem pages armed with async write-protect, the second written:
 * one PAGEMAP_SCAN must report exactly it, and a second scan nothing. */
static bool probe_wp(void)
{
	const size_t len = 2 * MIG_PAGE_SIZE;
	struct mig_dirty_region reg[4];
	struct uffdio_register rg = { .mode = UFFDIO_REGISTER_MODE_WP };
	struct uffdio_writeprotect wp = { .mode = UFFDIO_WRITEPROTECT_MODE_WP };
	struct pm_scan_arg a = {
		.size = sizeof(a),
		.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		.vec = (uintptr_t)reg, .vec_len = MIG_ARRAY_SIZE(reg),
		.category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN,
	};
	int uffd = -1, mfd = -1, pm = -1;
	uint8_t *p = MAP_FAILED;
	bool ok = false;
	long n;

	uffd = mig_uffd_open(UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED);
	if (uffd < 0)
		goto out;
	mfd = memfd_create("mig-dirty-probe", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, (off_t)len) < 0)
		goto out;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (p == MAP_FAILED || pm < 0)
		goto out;
	rg.range = (struct uffdio_range){ .start = (uintptr_t)p, .len = len };
	wp.range = rg.range;
	if (ioctl(uffd, UFFDIO_REGISTER, &rg) < 0 ||
	    ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
		goto out;
	*(volatile uint8_t *)(p + MIG_PAGE_SIZE) = 1;
	a.start = (uintptr_t)p;
	a.end = (uintptr_t)p + len;
	n = ioctl(pm, PAGEMAP_SCAN, &a);
	ok = n == 1 && reg[0].start == (uintptr_t)p + MIG_PAGE_SIZE &&
	     reg[0].end == (uintptr_t)p + len;
	n = ok ? ioctl(pm, PAGEMAP_SCAN, &a) : -1;
	ok = ok && n == 0;
	ioctl(uffd, UFFDIO_UNREGISTER, &rg.range);
out:
	if (p != MAP_FAILED)
		munmap(p, len);
	if (pm >= 0)
		close(pm);
	if (mfd >= 0)
		close(mfd);
	if (uffd >= 0)
		close(uffd);
	return ok;
}

static int pagemap_entry(int pm, const void *addr, uint64_t *e)
{
	off_t off = (off_t)((uintptr_t)addr / MIG_PAGE_SIZE * sizeof(*e));

	return pread(pm, e, sizeof(*e), off) == (ssize_t)sizeof(*e) ? 0 : -1;
}

/* A page written, the bits cleared: clean; written again: soft-dirty.
 * (Clears this process's own soft-dirty bits, which nothing else uses.) */
static bool probe_soft(void)
{
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int cr = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	uint8_t *p = mmap(NULL, MIG_PAGE_SIZE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t e1 = 0, e2 = 0;
	bool ok = false;

	if (pm < 0 || cr < 0 || p == MAP_FAILED)
		goto out;
	*(volatile uint8_t *)p = 1;
	if (soft_clear(cr) < 0 || pagemap_entry(pm, p, &e1) < 0)
		goto out;
	*(volatile uint8_t *)p = 2;
	if (pagemap_entry(pm, p, &e2) < 0)
		goto out;
	ok = !(e1 & PM_SOFT_DIRTY) && (e2 & PM_SOFT_DIRTY);
out:
	if (p != MAP_FAILED)
		munmap(p, MIG_PAGE_SIZE);
	if (pm >= 0)
		close(pm);
	if (cr >= 0)
		close(cr);
	return ok;
}

static void probe(void)
{
	if (probe_wp())
		probed = MIG_DIRTY_METHOD_WP;
	else if (probe_soft())
		probed = MIG_DIRTY_METHOD_SOFT;
	mig_dbg("dirty", "dirty-page tracking here: %s",
		probed ? probed : "none");
}

const char *mig_dirty_method(void)
{
	pthread_once(&probe_once, probe);
	return probed;
}

/* --- lifecycle ------------------------------------------------------------ */

struct mig_dirty *mig_dirty_open(pid_t pid, uint64_t base, uint64_t len)
{
	char path[64];
	struct mig_dirty *d;
	int r = 0;

	if (pid <= 0 || !len || base % MIG_PAGE_SIZE || len % MIG_PAGE_SIZE ||
	    base + len < base) {
		errno = EINVAL;
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->base = base;
	d->len = len;
	d->clear_refs = -1;
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	d->pagemap = open(path, O_RDONLY | O_CLOEXEC);
	if (d->pagemap < 0) {
		r = errno == ENOENT ? -ESRCH : -errno;
		goto out;
	}
	if (have_pagemap_scan(d->pagemap, base)) {
		d->method = M_WP;
		r = check_armed(d->pagemap, base, len);
		if (r == -EPERM)
			mig_dbg("dirty", "pid %d: RAM at 0x%" PRIx64 " is not armed "
				"for async write-protect (no DIRTY_START?)",
				(int)pid, base);
		goto out;
	}
	/* no PAGEMAP_SCAN: soft-dirty, if this kernel has it */
	if (mig_dirty_method() == NULL ||
	    strcmp(mig_dirty_method(), MIG_DIRTY_METHOD_SOFT)) {
		r = -ENOTSUP;
		goto out;
	}
	d->method = M_SOFT;
	snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)pid);
	d->clear_refs = open(path, O_WRONLY | O_CLOEXEC);
	if (d->clear_refs < 0)
		r = errno == ENOENT ? -ESRCH : -errno;
	else
		r = soft_clear(d->clear_refs); /* tracking starts now */
out:
	if (r < 0) {
		mig_dirty_close(d);
		errno = -r;
		return NULL;
	}
	return d;
}

void mig_dirty_close(struct mig_dirty *d)
{
	if (!d)
		return;
	if (d->pagemap >= 0)
		close(d->pagemap);
	if (d->clear_refs >= 0)
		close(d->clear_refs);
	free(d);
}

long mig_dirty_scan(struct mig_dirty *d, struct mig_bitmap *dirty)
{
	if (mig_bitmap_size(dirty) < d->len / MIG_PAGE_SIZE)
		return -EINVAL;
	return d->method == M_WP ? scan_wp(d, dirty) : scan_soft(d, dirty);
}

const char *mig_dirty_method_of(const struct mig_dirty *d)
{
	return d->method == M_WP ? MIG_DIRTY_METHOD_WP : MIG_DIRTY_METHOD_SOFT;
}
