/* SPDX-License-Identifier: MIT */
/*
 * userfaultfd: creation and handshake, registration, and the placement
 * ioctls. Errnos that mean something here are translated in this one place:
 * EEXIST from COPY/ZEROPAGE is a page that is already present (harmless: the
 * bulk stream and a requested page raced), ESRCH/ENOENT mean the guest process
 * or its mapping is gone.
 */
#ifndef MIG_UFFD_H
#define MIG_UFFD_H

#include <linux/userfaultfd.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The headers of the build host may predate the kernel (WP_UNPOPULATED is
 * 6.4, WP_ASYNC 6.7): the ABI values. */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

/* Create a userfaultfd (O_CLOEXEC|O_NONBLOCK) and do the UFFDIO_API
 * handshake asking for `features`: fd, or -EPERM when the caller may not use
 * userfaultfd (vm.unprivileged_userfaultfd=0 and no access to
 * /dev/userfaultfd), -ENOTSUP when a feature is missing. A uffd answers
 * UFFDIO_API only once, so this is the only place that does it. */
int mig_uffd_open(uint64_t features);
/* Register [addr, addr+len) for missing faults. */
int mig_uffd_register_missing(int uffd, void *addr, size_t len);
int mig_uffd_unregister(int uffd, void *addr, size_t len);

/* Place len bytes from src (our memory) at dst (an address in the uffd's
 * process) and wake waiters. Pages already present are skipped, not errors.
 * Returns the number of pages actually placed, or -errno. */
long mig_uffd_copy(int uffd, uint64_t dst, const void *src, size_t len);
/* The same up to the first page present: the pages placed, all of them
 * before it (they are known to be ours), or -errno. */
long mig_uffd_copy_prefix(int uffd, uint64_t dst, const void *src, size_t len);
/* Same for zero-filled pages. */
long mig_uffd_zeropage(int uffd, uint64_t dst, size_t len);
/* Wake threads waiting on [dst, dst+len) (page already there). */
int mig_uffd_wake(int uffd, uint64_t dst, size_t len);
/* Next page-fault address: 1 with *addr, 0 when none is pending (the fd is
 * non-blocking), or -errno. Non-fault events are skipped. */
int mig_uffd_read_fault(int uffd, uint64_t *addr);
/* The same, with the id of the faulting thread in *tid: 0 unless the uffd
 * was opened with UFFD_FEATURE_THREAD_ID. The kernel queues one message
 * per faulting thread, so several may name one page. */
int mig_uffd_read_fault_tid(int uffd, uint64_t *addr, pid_t *tid);

/* Translate an errno from this module into a message fragment for logs. */
const char *mig_uffd_strerror(int err);

#endif
