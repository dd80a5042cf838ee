// SPDX-License-Identifier: MIT
/*
 * mig-guest, the guest-memory process: see guestd.h, and ctl.h for the
 * protocol it serves. This file sets it up and tears it down; guestd-int.h
 * says which file does what else.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "guest/guestd-int.h"
#include "guest/guestd.h"
#include "guest/workload.h"

/* Connections not accepted yet: the loop accepts all of them each round. */
#define LISTEN_BACKLOG 16

static int sock_bind(struct guestd *gd, const struct sockaddr_un *sa)
{
	mode_t old;
	int r;

	/* umask rather than chmod after bind: no window where another user
	 * could connect. Single-threaded here, so the process-wide umask is
	 * ours to borrow. */
	old = umask(0177);
	r = bind(gd->lfd, (const struct sockaddr *)sa, sizeof(*sa));
	umask(old);
	if (r < 0)
		return -errno;
	mig_sock_own(sa->sun_path, &gd->sock);
	return listen(gd->lfd, LISTEN_BACKLOG) < 0 ? -errno : 0;
}

static int sock_listen(struct guestd *gd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = gd->o->ctl_path;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		mig_err("guest", "control socket path is too long (max %zu bytes): %s",
			sizeof(sa.sun_path) - 1, path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	r = mig_sock_claim(path);
	if (r == -EADDRINUSE)
		mig_err("guest", "control socket %s is in use", path);
	else if (r == -EEXIST)
		mig_err("guest", "%s exists and is not a socket", path);
	else if (r < 0)
		mig_err("guest", "control socket %s: %s", path, strerror(-r));
	if (r < 0)
		return r;
	gd->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (gd->lfd < 0) {
		mig_err("guest", "socket: %s", strerror(errno));
		return -errno;
	}
	r = sock_bind(gd, &sa);
	if (r < 0)
		mig_err("guest", "listening on %s: %s", path, strerror(-r));
	return r;
}

/* SIGTERM/SIGINT arrive on a signalfd: a clean stop through the loop. The
 * mask is set before any vCPU starts so every thread inherits it. */
static int signals_setup(struct guestd *gd)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	/* an inherited SIG_IGN would discard them before the signalfd sees them */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	if (pthread_sigmask(SIG_BLOCK, &set, &gd->oldmask) != 0)
		return -EINVAL;
	gd->masked = true;
	gd->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (gd->sigfd < 0) {
		mig_err("guest", "signalfd: %s", strerror(errno));
		return -errno;
	}
	gd->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (gd->evfd < 0) {
		mig_err("guest", "eventfd: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

/* The serial file is opened before anything runs: a path we cannot write
 * is an error at start, not a guest that goes silent. */
static int serial_open(struct guestd *gd)
{
	if (!gd->o->serial)
		return 0;
	gd->serial_fd = open(gd->o->serial, O_WRONLY | O_APPEND | O_CREAT |
			     O_CLOEXEC, 0644);
	if (gd->serial_fd < 0) {
		mig_err("guest", "--serial %s: %s", gd->o->serial, strerror(errno));
		return -errno;
	}
	return 0;
}

static int workload_setup(struct guestd *gd)
{
	const char *text = gd->o->workload ? gd->o->workload : "ab";
	struct mig_workload_spec spec;
	struct mig_workload_state st;
	const char *why = NULL;

	if (mig_workload_parse(text, &spec) < 0) {
		mig_err("guest", "unknown workload '%s' (%s)", text,
			mig_workload_names());
		return -EINVAL;
	}
	if (gd->o->incoming) {
		/* the state blob brings the workload; one that will need KVM
		 * is refused now rather than at switchover */
		if (spec.id == MIG_WORKLOAD_KVM && access("/dev/kvm", R_OK | W_OK) < 0) {
			mig_err("guest", "workload kvm: /dev/kvm: %s", strerror(errno));
			return -errno;
		}
		return 0;
	}
	mig_workload_state_init(&st, &spec, gd->ram_bytes, gd->o->vcpus);
	gd->wl = mig_workload_new(&st, gd->ram, &why);
	if (!gd->wl) {
		mig_err("guest", "workload %s: %s%s%s", text, why ? why : "",
			why ? ": " : "", strerror(errno));
		return -errno;
	}
	mig_workload_set_serial(gd->wl, gd->serial_fd);
	mig_workload_fill(gd->wl);
	gd->running = true;
	return 0;
}

static int start(struct guestd *gd)
{
	int r = signals_setup(gd);

	if (r == 0)
		r = guestd_ram_open(gd);
	if (r == 0 && gd->o->incoming)
		r = guestd_uffd_setup(gd);
	if (r == 0)
		r = serial_open(gd);
	if (r == 0)
		r = workload_setup(gd);
	if (r == 0)
		r = sock_listen(gd);
	if (r == 0 && gd->wl)
		r = guestd_vcpus_start(gd);
	return r;
}

static void sock_close(struct guestd *gd)
{
	for (int i = 0; i < MAX_CLIENTS; i++)
		guestd_client_close(gd, i);
	mig_sock_release(gd->o->ctl_path, &gd->sock);
	if (gd->lfd >= 0)
		close(gd->lfd);
}

/*
 * Orderly shutdown: the vCPUs (guestd_vcpus_teardown), then the clients and the
 * socket, then RAM. A vCPU that would not go keeps RAM, the workload and
 * gd: -EBUSY, and the caller must not free gd either.
 */
static int teardown(struct guestd *gd)
{
	bool joined = guestd_vcpus_teardown(gd);

	guestd_tracking_stop(gd);
	sock_close(gd);
	/* the vCPUs are gone or given up on; for one that is stuck,
	 * closing the last reference makes the kernel wake every waiter */
	if (gd->uffd >= 0)
		close(gd->uffd);
	if (!joined)
		return -EBUSY;
	mig_workload_free(gd->wl);
	if (gd->ram)
		munmap(gd->ram, gd->ram_bytes);
	if (gd->memfd >= 0)
		close(gd->memfd);
	if (gd->sigfd >= 0)
		close(gd->sigfd);
	if (gd->evfd >= 0)
		close(gd->evfd);
	if (gd->serial_fd >= 0)
		close(gd->serial_fd);
	if (gd->masked)
		pthread_sigmask(SIG_SETMASK, &gd->oldmask, NULL);
	if (gd->ready_fd >= 0)
		close(gd->ready_fd); /* never ready: the waiter sees EOF */
	pthread_mutex_destroy(&gd->lock);
	pthread_cond_destroy(&gd->cond);
	return 0;
}

static int opts_check(const struct mig_guestd_opts *o)
{
	if (!o->ctl_path || !*o->ctl_path || !o->ram_bytes ||
	    o->ram_bytes % MIG_PAGE_SIZE || o->ram_bytes > MIG_WORKLOAD_MAX_RAM_BYTES ||
	    o->vcpus > MIG_WORKLOAD_MAX_VCPUS) {
		mig_err("guest", "invalid options");
		return -EINVAL;
	}
	return 0;
}

int mig_guestd_run(const struct mig_guestd_opts *o)
{
	struct guestd *gd;
	char sz[32];
	int r = opts_check(o);

	if (r < 0)
		return r;
	gd = calloc(1, sizeof(*gd));
	if (!gd)
		return -ENOMEM;
	gd->o = o;
	gd->ram_bytes = o->ram_bytes;
	gd->memfd = gd->uffd = gd->lfd = gd->sigfd = gd->evfd = gd->wpfd = -1;
	gd->serial_fd = -1;
	gd->ready_fd = o->ready_fd;
	gd->incoming = o->incoming;
	gd->holder = -1;
	gd->t_start_ns = mig_now_ns();
	atomic_init(&gd->stop, false);
	pthread_mutex_init(&gd->lock, NULL);
	pthread_cond_init(&gd->cond, NULL);
	for (int i = 0; i < MAX_CLIENTS; i++)
		gd->cl[i].fd = -1;
	r = start(gd);
	if (r == 0) {
		mig_info("guest", "pid %d listening on %s: %s RAM at %p, %s%s",
			 (int)getpid(), o->ctl_path,
			 mig_fmt_bytes(o->ram_bytes, sz, sizeof(sz)), (void *)gd->ram,
			 gd->wl ? mig_workload_spec_text(gd->wl) : "incoming",
			 gd->wl ? "" : " (RAM registered, waiting for pages)");
		mig_ready_notify(&gd->ready_fd);
		r = guestd_serve(gd);
	}
	if (teardown(gd) < 0)
		return r < 0 ? r : -EBUSY; /* gd stays: a vCPU still uses it */
	free(gd);
	return r;
}

