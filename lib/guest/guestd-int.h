/* SPDX-License-Identifier: MIT */
/*
 * mig-guest's guest process, shared among its files: the state the control
 * thread and the vCPU threads share, and the functions one file offers the
 * others. Private to lib/guest/guestd*.c.
 *
 * Threads: one control thread (the caller of mig_guestd_run) serves every
 * client with poll(); N vCPU threads run the workload. The control thread
 * never blocks on a vCPU: STOP and VERIFY are answered once the last vCPU
 * to park wakes it through an eventfd, because on an incoming guest a vCPU
 * can sit in a userfault for as long as no engine serves it, and a restarted
 * engine must still be able to attach meanwhile. For the same reason the
 * control thread never reads RAM that may be missing. DIGEST and POKE wait
 * for the parked vCPUs the same way.
 *
 * Files: guestd.c setup and teardown, guestd-serve.c the clients and the
 * poll loop, guestd-ops.c the requests, guestd-record.c the migration
 * record, guestd-vcpu.c the vCPU threads, guestd-mem.c RAM, its
 * userfaultfds and its digest.
 */
#ifndef MIG_GUESTD_INT_H
#define MIG_GUESTD_INT_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/util.h"
#include "guest/ctl.h"
#include "guest/guestd.h"
#include "guest/workload.h"

/* Concurrent control connections: an engine plus a handful of mig-guest
 * info/verify runs and scripts; more are refused, not queued. */
#define MAX_CLIENTS 32

enum pending { PEND_NONE, PEND_STOP, PEND_VERIFY, PEND_DIGEST, PEND_POKE };

struct client {
	int fd;               /* -1: free slot */
	pid_t pid;            /* SO_PEERCRED at accept */
	enum pending pending; /* answered once every vCPU is parked */
	uint32_t seq;         /* of the pending request */
	uint64_t page;        /* PEND_POKE: which */
};

struct guestd;

struct vcpu {
	struct guestd *gd;
	unsigned idx;
	pthread_t tid;
};

struct guestd {
	const struct mig_guestd_opts *o;
	uint64_t ram_bytes;
	uint8_t *ram;
	int memfd, uffd, lfd, sigfd, evfd, ready_fd;
	int wpfd;       /* dirty tracking: async write-protect uffd, or -1 */
	int serial_fd;  /* --serial, or -1 */
	bool incoming;  /* RAM registered, pages due */
	bool continued; /* CONT seen: LOAD_STATE is refused from then on */
	bool running;   /* as the clients see it: STOP / CONT */
	bool done;      /* leave the loop */
	struct mig_workload *wl; /* NULL on an incoming guest until LOAD_STATE */
	struct vcpu vc[MIG_WORKLOAD_MAX_VCPUS];
	unsigned nthreads;
	/* vCPU parking: stop is read lock-free before every page write;
	 * parked, quit and the cond are under lock. */
	atomic_bool stop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned parked;
	bool quit;
	struct client cl[MAX_CLIENTS];
	int holder;     /* slot holding the claim, -1 none */
	struct mig_guest_record rec; /* the migration we belong to */
	bool claimed;   /* some engine ever held the claim */
	uint64_t t_start_ns;
	uint64_t accept_after_ns; /* EMFILE backoff: no accept() before */
	struct mig_ratelimit accept_rl, refuse_rl;
	struct mig_sock_owner sock; /* so we unlink only our own socket */
	sigset_t oldmask;
	bool masked;
};

/* Needs the claim: -EACCES if nobody holds it, -EBUSY if another does. */
static inline int guestd_need_claim(const struct guestd *gd, int ci)
{
	return gd->holder == ci ? 0 : gd->holder < 0 ? -EACCES : -EBUSY;
}

/* STOP/CONT/LOAD_STATE: by the claim holder, or by anyone when unclaimed. */
static inline int guestd_may_steer(const struct guestd *gd, int ci)
{
	return gd->holder < 0 || gd->holder == ci ? 0 : -EBUSY;
}

/* guestd-vcpu.c: the vCPU threads. */
void guestd_set_stop(struct guestd *gd, bool stop);
bool guestd_all_parked(struct guestd *gd);
int guestd_vcpus_start(struct guestd *gd);
void guestd_vcpus_join(struct guestd *gd);
bool guestd_vcpus_teardown(struct guestd *gd);

/* guestd-mem.c: RAM, its userfaultfds, its digest. */
int guestd_ram_open(struct guestd *gd);
int guestd_uffd_setup(struct guestd *gd);
int guestd_ram_unregister(struct guestd *gd);
int64_t guestd_count_missing(struct guestd *gd, uint64_t *first);
int guestd_digest_ram(struct guestd *gd, uint64_t *out);
int guestd_tracking_start(struct guestd *gd);
void guestd_tracking_stop(struct guestd *gd);

/* guestd-serve.c: the clients, their replies, the poll loop. */
int guestd_serve(struct guestd *gd);
void guestd_client_close(struct guestd *gd, int ci);
void guestd_reply_fds(struct guestd *gd, int ci, uint16_t op, uint32_t seq,
		      int status, const void *pl, size_t plen, const int *fds,
		      int nfds);
void guestd_reply(struct guestd *gd, int ci, const struct mig_ctl_hdr *req,
		  int status, const void *pl, size_t plen);
void guestd_reply_text(struct guestd *gd, int ci, uint16_t op, uint32_t seq,
		       int status, const char *text);
void guestd_set_pending(struct guestd *gd, int ci, enum pending p, uint32_t seq);

/* guestd-ops.c: one request, its payload and fds (the caller closes them). */
void guestd_dispatch(struct guestd *gd, int ci, const struct mig_ctl_hdr *h,
		     const uint8_t *pl, const int *fds, int nfds);

/* guestd-record.c: the migration record. */
void guestd_engine_gone(struct guestd *gd, pid_t pid);
void guestd_op_bind(struct guestd *gd, int ci, const struct mig_ctl_hdr *h,
		    const uint8_t *pl);
void guestd_op_set_state(struct guestd *gd, int ci, const struct mig_ctl_hdr *h,
			 const uint8_t *pl);
void guestd_op_unbind(struct guestd *gd, int ci, const struct mig_ctl_hdr *h);
void guestd_op_abandon(struct guestd *gd, int ci, const struct mig_ctl_hdr *h,
		       const uint8_t *pl);

#endif
