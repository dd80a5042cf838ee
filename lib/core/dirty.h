/* SPDX-License-Identifier: MIT */
/*
 * Dirty-page tracking of a guest's RAM, read from another process (the
 * source engine) during precopy. The guest arms it (DIRTY_START on its
 * control socket: a userfaultfd in async write-protect mode over its RAM,
 * which only the guest can create, since a uffd is bound to the mm of its
 * creator); from then on a vCPU's first write to a page marks it written
 * without any fault reaching user space. One scan here lists the pages
 * written since the previous scan and write-protects them again, in one
 * PAGEMAP_SCAN ioctl walk on /proc/PID/pagemap.
 *
 * Kernels without PAGEMAP_SCAN (before 6.7) fall back to soft-dirty
 * (clear_refs "4", pagemap bit 55) when the kernel has that. Soft-dirty
 * reads and re-arms in two steps for the whole process, so a write landing
 * between them is lost: with that method the caller must keep the guest's
 * vCPUs stopped during each scan (CRIU freezes its tasks for the same
 * reason).
 */
#ifndef MIG_DIRTY_H
#define MIG_DIRTY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mig_bitmap;

/* Regions per PAGEMAP_SCAN call: the kernel's own bounce buffer holds 512
 * (PAGEMAP_WALK_SIZE >> PAGE_SHIFT), so a larger one buys nothing. */
#define MIG_DIRTY_SCAN_REGIONS 512u

/* What mig_dirty_method() and mig_dirty_method_of() return. */
#define MIG_DIRTY_METHOD_WP "userfaultfd-wp-async+pagemap-scan"
#define MIG_DIRTY_METHOD_SOFT "soft-dirty"

/* One region of a PAGEMAP_SCAN reply: the layout of the kernel's struct
 * page_region ([start, end) addresses, categories). */
struct mig_dirty_region {
	uint64_t start;
	uint64_t end;
	uint64_t categories;
};

struct mig_dirty;

/* Track [base, base+len) (page-aligned) in process pid's address space:
 * opens /proc/PID/pagemap read-only. Call after the guest's DIRTY_START
 * (mig_guest_dirty_start): with PAGEMAP_SCAN the range must already be
 * registered for async write-protect. With soft-dirty this clears the bits
 * (tracking starts now). NULL with errno: ESRCH no such process, EACCES /
 * EPERM not allowed to read its pagemap, EPERM also when the range is not
 * armed, ENOTSUP neither method works here, EINVAL bad range. */
struct mig_dirty *mig_dirty_open(pid_t pid, uint64_t base, uint64_t len);
/* NULL is a no-op. Does not disarm the guest's tracking (DIRTY_STOP does). */
void mig_dirty_close(struct mig_dirty *d);
/* One pass: every page written since the previous scan (or since tracking
 * started) gets its bit set in dirty (bit i = page at base + i * 4096;
 * bits already set stay set) and is write-protected again. Returns the
 * number of bits newly set, or -errno: -EINVAL dirty is smaller than the
 * range, -EPERM the range is not armed (no DIRTY_START, or a DIRTY_STOP
 * since), -EPROTO the kernel's reply made no sense. After an error some
 * pages may have been re-protected without being reported: restart
 * tracking and treat every page as dirty. */
long mig_dirty_scan(struct mig_dirty *d, struct mig_bitmap *dirty);
/* The method this kernel offers, probed once per process (a two-page
 * self-test of each): MIG_DIRTY_METHOD_WP, MIG_DIRTY_METHOD_SOFT, or NULL
 * when neither works (or userfaultfd is not permitted to this process). */
const char *mig_dirty_method(void);
/* The method d uses. */
const char *mig_dirty_method_of(const struct mig_dirty *d);

/*
 * The pure part of a PAGEMAP_SCAN pass, for unit tests: fold the n regions
 * one ioctl returned for a walk that began at start into dirty (tracked
 * range [base, base+len)), and say where the next call must begin: the
 * later of walk_end and the end of the last region. (When a call fills its
 * region buffer the kernel can report a walk_end below the regions it
 * returned; restarting there would report the tail twice.) Returns the
 * number of bits newly set, or -EPROTO for a region that is empty,
 * unaligned or outside [start, base+len), or a reply that makes no
 * progress (*next <= start). *next is clamped to base+len.
 */
long mig_dirty_fold(struct mig_bitmap *dirty, uint64_t base, uint64_t len,
		    uint64_t start, const struct mig_dirty_region *reg,
		    size_t n, uint64_t walk_end, uint64_t *next);

#endif
