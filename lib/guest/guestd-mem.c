// SPDX-License-Identifier: MIT
/*
 * mig-guest's RAM: the memfd and its mapping, the missing-page userfaultfd
 * of an incoming guest, the pages not placed yet, the digest, and dirty
 * tracking.
 *
 * Dirty tracking (DIRTY_START) is a second userfaultfd, in async
 * write-protect mode, created here because a uffd belongs to the mm of the
 * process that creates it; the engine reads it through /proc/PID/pagemap
 * (dirty.h) and never needs the fd.
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "core/digest.h"
#include "core/uffd.h"
#include "guest/guestd-int.h"

int guestd_ram_open(struct guestd *gd)
{
	gd->memfd = memfd_create("mig-guest-ram", MFD_CLOEXEC);
	if (gd->memfd < 0) {
		mig_err("guest", "memfd_create: %s", strerror(errno));
		return -errno;
	}
	if (ftruncate(gd->memfd, (off_t)gd->ram_bytes) < 0) {
		mig_err("guest", "sizing RAM to %" PRIu64 " bytes: %s",
			gd->ram_bytes, strerror(errno));
		return -errno;
	}
	gd->ram = mmap(NULL, gd->ram_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
		       gd->memfd, 0);
	if (gd->ram == MAP_FAILED) {
		gd->ram = NULL;
		mig_err("guest", "mapping RAM: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

/* Incoming: every page faults until an engine places it. Registered before
 * any vCPU exists, and nothing here touches RAM afterwards. THREAD_ID: the
 * engine tells which vCPU waits, for its blocktime. */
int guestd_uffd_setup(struct guestd *gd)
{
	int r = mig_uffd_open(UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_THREAD_ID);

	if (r < 0) {
		mig_err("guest", "userfaultfd: %s", mig_uffd_strerror(r));
		return r;
	}
	gd->uffd = r;
	r = mig_uffd_register_missing(gd->uffd, gd->ram, gd->ram_bytes);
	if (r < 0)
		mig_err("guest", "registering RAM with userfaultfd: %s",
			mig_uffd_strerror(r));
	return r;
}

/*
 * Unregister all of RAM from the missing-page uffd, then wake every thread
 * waiting in a fault on it. The unregister wakes waiters itself, but the
 * kernel does so before it detaches the uffd from the VMA, and only the
 * mmap lock it holds orders the two against faults: a fault taken under
 * the per-VMA lock (shmem faults are, on current kernels) still sees the
 * uffd in that window, queues after the wake and sleeps on a range nobody
 * serves any more. Detaching write-locks the VMA, which waits until such a
 * fault has queued and let go of the VMA; so once the ioctl has returned no
 * new waiter can appear, and one UFFDIO_WAKE (it needs no registration:
 * it wakes the uffd's queues by address) releases the stragglers. A woken
 * thread retries its fault, which now just allocates a zero page.
 * 0 or the unregister's -errno; the wake is tried either way.
 */
int guestd_ram_unregister(struct guestd *gd)
{
	int r = mig_uffd_unregister(gd->uffd, gd->ram, gd->ram_bytes);
	int w = mig_uffd_wake(gd->uffd, (uint64_t)(uintptr_t)gd->ram, gd->ram_bytes);

	if (w < 0)
		mig_warn("guest", "UFFDIO_WAKE: %s", mig_uffd_strerror(w));
	return r;
}

/* Pages of RAM not in the memfd yet (never placed): SEEK_HOLE sees them
 * without touching the mapping, so this never faults. */
int64_t guestd_count_missing(struct guestd *gd, uint64_t *first)
{
	off_t off = 0, end = (off_t)gd->ram_bytes;
	int64_t missing = 0;

	*first = UINT64_MAX;
	while (off < end) {
		off_t hole = lseek(gd->memfd, off, SEEK_HOLE), data;

		if (hole < 0)
			return -errno;
		if (hole >= end)
			break;
		data = lseek(gd->memfd, hole, SEEK_DATA);
		if (data < 0 && errno != ENXIO)
			return -errno;
		if (data < 0 || data > end)
			data = end;
		if (*first == UINT64_MAX)
			*first = (uint64_t)hole / MIG_PAGE_SIZE;
		missing += (data - hole) / MIG_PAGE_SIZE;
		off = data;
	}
	return missing;
}

/* All of RAM in page order; memfd holes digest as the zero pages they read
 * as, without being read (reading one through the mapping would allocate
 * it). Called with the vCPUs parked and, when incoming, no page missing. */
int guestd_digest_ram(struct guestd *gd, uint64_t *out)
{
	struct mig_digest_ctx c;
	off_t off = 0, end = (off_t)gd->ram_bytes;

	mig_digest_init(&c);
	while (off < end) {
		off_t data = lseek(gd->memfd, off, SEEK_DATA), hole;

		if (data < 0 && errno != ENXIO)
			return -errno;
		if (data < 0 || data > end)
			data = end;
		mig_digest_zero(&c, (uint64_t)(data - off) / MIG_PAGE_SIZE);
		if (data == end)
			break;
		hole = lseek(gd->memfd, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		if (hole > end)
			hole = end;
		mig_digest_update(&c, gd->ram + data, (uint64_t)(hole - data) /
				  MIG_PAGE_SIZE);
		off = hole;
	}
	*out = mig_digest_final(&c);
	return 0;
}

void guestd_tracking_stop(struct guestd *gd)
{
	int r;

	if (gd->wpfd < 0)
		return;
	/* unregistering drops the write-protection with it */
	r = mig_uffd_unregister(gd->wpfd, gd->ram, gd->ram_bytes);
	if (r < 0)
		mig_warn("guest", "dirty tracking: UFFDIO_UNREGISTER: %s",
			 mig_uffd_strerror(r));
	close(gd->wpfd);
	gd->wpfd = -1;
	mig_info("guest", "dirty tracking off");
}

/* Arm: register RAM for write-protect with a WP_ASYNC uffd and protect it
 * all. From then on the first write to a page clears its protection and
 * marks it written, in the kernel, without a fault message: nobody has to
 * read this fd. WP_UNPOPULATED makes never-touched pages count too (their
 * first write would otherwise go unnoticed). */
int guestd_tracking_start(struct guestd *gd)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)gd->ram, .len = gd->ram_bytes },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	struct uffdio_writeprotect wp = {
		.range = reg.range, .mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};
	uint64_t t0 = mig_now_ns();
	int fd = mig_uffd_open(UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED);
	int r = 0;

	if (fd < 0) {
		mig_warn("guest", "dirty tracking: userfaultfd: %s",
			 mig_uffd_strerror(fd));
		return fd;
	}
	if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
		r = -errno;
		mig_warn("guest", "dirty tracking: UFFDIO_REGISTER (write-protect): %s",
			 strerror(errno));
	} else if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp) < 0) {
		r = -errno;
		mig_warn("guest", "dirty tracking: UFFDIO_WRITEPROTECT: %s",
			 strerror(errno));
		mig_uffd_unregister(fd, gd->ram, gd->ram_bytes);
	}
	if (r < 0) {
		close(fd);
		return r;
	}
	gd->wpfd = fd;
	mig_info("guest", "dirty tracking armed (%.1f ms)",
		 (mig_now_ns() - t0) / 1e6);
	return 0;
}
