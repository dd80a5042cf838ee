// SPDX-License-Identifier: MIT
/* The one errno-to-exit-status mapping: see exitcodes.h. */
#include <errno.h>

#include "base/exitcodes.h"

int mig_exit_of_errno(int err)
{
	switch (err) {
	case 0:
		return MIG_EXIT_OK;
	case -ENOENT:           /* no socket at the path */
	case -ECONNREFUSED:     /* a socket, nobody listening */
	case -ETIMEDOUT:        /* the destination did not answer the connect */
	case -EHOSTUNREACH:
	case -ENETUNREACH:
	case -ENXIO:            /* unknown host */
	case -EPERM:            /* userfaultfd not permitted */
	case -EACCES:           /* ... or a socket we may not open */
	case -ENOTSUP:          /* the kernel lacks a userfaultfd feature */
		return MIG_EXIT_UNAVAILABLE;
	default:
		return MIG_EXIT_FAIL;
	}
}
