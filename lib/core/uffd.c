// SPDX-License-Identifier: MIT
/* userfaultfd wrappers: see uffd.h. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/log.h"
#include "core/uffd.h"
#include "base/util.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

static int uffd_create(void)
{
	int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int dev, saved;

	if (fd >= 0)
		return fd;
	saved = errno;
	/* vm.unprivileged_userfaultfd=0: the device node is the other door,
	 * governed by its file permissions. */
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -(saved == EPERM || errno == EACCES ? EPERM : saved);
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	saved = errno;
	close(dev);
	return fd >= 0 ? fd : -saved;
}

int mig_uffd_open(uint64_t features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int fd = uffd_create();

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		int e = errno;

		close(fd);
		return e == EINVAL ? -ENOTSUP : -e;
	}
	if ((api.features & features) != features) {
		close(fd);
		return -ENOTSUP;
	}
	return fd;
}

int mig_uffd_register_missing(int uffd, void *addr, size_t len)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};

	return ioctl(uffd, UFFDIO_REGISTER, &reg) < 0 ? -errno : 0;
}

int mig_uffd_unregister(int uffd, void *addr, size_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	return ioctl(uffd, UFFDIO_UNREGISTER, &r) < 0 ? -errno : 0;
}

/*
 * COPY and ZEROPAGE share their retry rules: a run may be partly present
 * (the bulk stream and a requested page raced), which the kernel reports as
 * EEXIST after placing the pages before it, with the bytes done in the
 * result field. We step over the present page and go on, so a run is placed
 * whole whatever raced with it; or, told to stop, end there, so the caller
 * knows which pages were its own (receive.c counts the others).
 */
static long place(int uffd, uint64_t dst, const void *src, size_t len,
		  bool zero, bool stop)
{
	long placed = 0;

	while (len) {
		int r;
		int64_t done;

		if (zero) {
			struct uffdio_zeropage z = {
				.range = { .start = dst, .len = len },
			};

			r = ioctl(uffd, UFFDIO_ZEROPAGE, &z);
			done = z.zeropage;
		} else {
			struct uffdio_copy c = {
				.dst = dst, .src = (uintptr_t)src, .len = len,
			};

			r = ioctl(uffd, UFFDIO_COPY, &c);
			done = c.copy;
		}
		if (r == 0) {
			placed += len / MIG_PAGE_SIZE;
			break;
		}
		if (errno == EINTR)
			continue;
		if (done > 0) { /* partial: account for what landed */
			placed += done / MIG_PAGE_SIZE;
		} else if (errno == EAGAIN) {
			/* mapping changing under us (fork, mremap): retry */
			continue;
		} else if (errno == EEXIST) {
			if (stop)
				break;
			done = MIG_PAGE_SIZE; /* skip the one present page */
		} else {
			return -errno;
		}
		done &= ~(int64_t)(MIG_PAGE_SIZE - 1);
		if (done <= 0)
			done = MIG_PAGE_SIZE;
		dst += done;
		if (!zero)
			src = (const char *)src + done;
		len -= MIG_MIN((size_t)done, len);
	}
	return placed;
}

long mig_uffd_copy(int uffd, uint64_t dst, const void *src, size_t len)
{
	return place(uffd, dst, src, len, false, false);
}

long mig_uffd_copy_prefix(int uffd, uint64_t dst, const void *src, size_t len)
{
	return place(uffd, dst, src, len, false, true);
}

long mig_uffd_zeropage(int uffd, uint64_t dst, size_t len)
{
	return place(uffd, dst, NULL, len, true, false);
}

int mig_uffd_wake(int uffd, uint64_t dst, size_t len)
{
	struct uffdio_range r = { .start = dst, .len = len };

	return ioctl(uffd, UFFDIO_WAKE, &r) < 0 ? -errno : 0;
}

int mig_uffd_read_fault_tid(int uffd, uint64_t *addr, pid_t *tid)
{
	struct uffd_msg msg;

	for (;;) {
		ssize_t n = read(uffd, &msg, sizeof(msg));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -errno;
		}
		if (n != sizeof(msg))
			return -EIO;
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		*addr = msg.arg.pagefault.address & ~(uint64_t)(MIG_PAGE_SIZE - 1);
		/* zero without UFFD_FEATURE_THREAD_ID: the field is unset */
		*tid = (pid_t)msg.arg.pagefault.feat.ptid;
		return 1;
	}
}

int mig_uffd_read_fault(int uffd, uint64_t *addr)
{
	pid_t tid;

	return mig_uffd_read_fault_tid(uffd, addr, &tid);
}

const char *mig_uffd_strerror(int err)
{
	switch (err < 0 ? -err : err) {
	case EPERM:
		return "userfaultfd not permitted (needs root, or access to "
		       "/dev/userfaultfd, or vm.unprivileged_userfaultfd=1)";
	case ENOTSUP:
		return "kernel lacks a needed userfaultfd feature";
	case ESRCH:
		return "the guest process is gone";
	case ENOENT:
		return "guest RAM is no longer mapped";
	default:
		return strerror(err < 0 ? -err : err);
	}
}
