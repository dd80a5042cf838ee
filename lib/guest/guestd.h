/* SPDX-License-Identifier: MIT */
/*
 * mig-guest, the guest-memory process: guest RAM (a memfd mapped MAP_SHARED),
 * the vCPU threads running a workload over it, and the control socket an
 * engine drives it through (the protocol: ctl.h).
 */
#ifndef MIG_GUESTD_H
#define MIG_GUESTD_H

#include <stdbool.h>
#include <stdint.h>

struct mig_guestd_opts {
	const char *ctl_path;
	uint64_t ram_bytes;   /* non-zero multiple of the page size */
	const char *workload; /* spec; NULL: "ab" */
	unsigned vcpus;       /* 0: 1 */
	bool incoming;
	const char *serial;   /* kvm: the guest's serial output, appended;
			       * NULL: the log */
	int ready_fd;         /* -1: none */
};

/* Run the guest until QUIT, SIGTERM or SIGINT: create RAM (registered with
 * userfaultfd when incoming), listen on the control socket, notify
 * readiness, serve. Returns 0 on a clean exit, or -errno: -EINVAL bad
 * options, -ENAMETOOLONG socket path, -EADDRINUSE socket in use, -EPERM /
 * -ENOTSUP userfaultfd not permitted / not available, -ENOENT / -EACCES
 * no /dev/kvm for the kvm workload, or the serial file, -EBUSY a vCPU would
 * not exit at teardown (it is left running: the process must exit now).
 * Logs its errors. */
int mig_guestd_run(const struct mig_guestd_opts *opts);

#endif
