/* SPDX-License-Identifier: MIT */
/*
 * What the destination engine's files share: struct dst and the calls
 * between them. Private to lib/dest. Threads: the control loop (dest.c)
 * accepts connections, checks hellos, owns the guest and every state move;
 * one receiver per channel places pages; the fault thread turns the guest's
 * userfaults into page requests; the bus thread runs commands and queries.
 * Only the control loop closes a channel, after the receivers are joined.
 *
 *   dest.c       mig_dest_run: lifecycle, take-over, the control loop,
 *                switchover and completion
 *   accept.c     listeners, hellos, the main and preempt channels, the
 *                session's start
 *   receive.c    receiver threads: placing pages, DISCARD, SWITCHOVER
 *   userfault.c  the fault thread, page requests, the return path
 *   recovery.c   pause, migrate-recover, the recovery handshake, resume
 *   supervise.c  the incoming guest: spawn, claim, pidfd, reaping
 *   commands.c   bus commands and query-migrate
 */
#ifndef MIG_DEST_INT_H
#define MIG_DEST_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/state.h"
#include "core/wire.h"
#include "dest/dest.h"
#include "engine/engine.h"
#include "guest/guest.h"

/* Connections still owing us their hello; a silent one is dropped after
 * HELLO_TIMEOUT_MS so it can never wedge the listener. */
#define MAX_PENDING 8
#define HELLO_TIMEOUT_MS 5000

struct mig_bitmap;

struct pending {
	int fd;
	bool recovery;      /* accepted on the recovery listener */
	uint64_t deadline_ns;
	size_t have;
	uint8_t buf[MIG_WIRE_HDR_BYTES + MIG_HELLO_BYTES];
};

struct dst {
	struct mig_engine e;
	const struct mig_dest_opts *o;
	char guest_ctl[108];
	int lfd, rfd;               /* listener; recovery listener or -1 */
	/* --defer: migrate-incoming's listener, opened on the bus thread for
	 * the control loop to adopt; incoming: it was, so no second one
	 * (both under e.lock) */
	int new_lfd;
	bool incoming;
	struct pending pend[MAX_PENDING];
	atomic_bool armed;          /* migrate-recover was issued */
	int new_rfd;                /* from the bus thread, under e.lock */
	bool have_migration;        /* the first hello fixed the UUID */

	struct mig_guest *guest;
	_Atomic pid_t guest_pid;    /* 0 once reaped or gone; the bus reads it */
	bool guest_child;           /* spawned by us: ours to reap */
	int pidfd;                  /* readable when the guest process ends */
	char listen_uri[256];       /* the main listener's */
	char armed_uri[256];        /* the recovery listener's (rfd), e.lock */
	char via_uri[256];          /* where the last main hello came in */
	int uffd, memfd;
	uint64_t base, npages;
	struct mig_bitmap *received, *requested;
	_Atomic uint64_t *fault_ns; /* per page: when a vCPU first faulted */

	pthread_mutex_t rp_lock;    /* the return path: one writer, link_up */
	bool link_up;

	pthread_t rx_thr[MIG_CHAN__COUNT], fault_thr;
	bool rx_on[MIG_CHAN__COUNT], fault_on;
	atomic_bool stop_rx, stop_fault, complete_posted;
	atomic_bool guest_started;  /* SWITCHOVER seen: pages go through uffd */
	bool source_told;           /* the source was sent our COMPLETE */
	uint64_t linger_until_ns;   /* stay until then for it to act on it */
	atomic_bool main_closed;    /* the source closed the main channel */
	/* the end is agreed: every page is here and COMPLETE goes out, or
	 * the source sent CANCEL. From now on the source closing (even
	 * resetting) a channel is the orderly end, not a broken link, though
	 * our state may not say so yet. */
	atomic_bool ending;
	int fault_efd;

	int uffd_err;               /* -EPERM: the incoming guest may not use
				     * userfaultfd; mig_dest_run's result */

	uint64_t discarded;         /* pages dropped before switchover */
	/* read by the bus thread's query-status too */
	atomic_bool switched;       /* the guest's state is loaded here */
	atomic_bool running;        /* ...and its vCPUs were started */

	pthread_mutex_t blob_lock;  /* the switchover blob, rx -> loop */
	uint8_t *blob;
	size_t blob_len;
};

/* dest.c */
void dst_end_early(struct dst *d, enum mig_state to);

/* accept.c: the control loop's side of the listeners */
void dst_add_pending(struct dst *d, int lfd, bool recovery);
void dst_read_pending(struct dst *d, struct pending *p);
void dst_expire_pending(struct dst *d);
int dst_hello_ack(struct dst *d, int fd, uint32_t role);
int dst_cmd_incoming(struct dst *d, const char *uri, char *desc, size_t desclen);

/* receive.c */
int dst_alloc_pages(struct dst *d);
int dst_start_rx(struct dst *d, enum mig_chan_slot c);
void dst_stop_rx(struct dst *d);

/* userfault.c */
int dst_rp_send(struct dst *d, uint32_t type, const void *p, size_t len);
int dst_send_req(struct dst *d, uint64_t page);
int dst_start_fault(struct dst *d);
void dst_stop_fault(struct dst *d);
void dst_heartbeat(struct dst *d, uint64_t *last_ns);

/* recovery.c */
void dst_pause(struct dst *d, const char *why);
void dst_begin_recovery(struct dst *d, int fd);
void dst_tell_complete(struct dst *d, int fd);
void dst_on_resumed(struct dst *d);
int dst_cmd_recover(struct dst *d, const char *uri, char *desc,
		    size_t desclen);

/* supervise.c */
int dst_spawn_guest(struct dst *d);
void dst_watch_guest(struct dst *d, pid_t pid, bool child);
int dst_attach_guest(struct dst *d, struct mig_guest_info *gi, bool complete);
int dst_bind_guest(struct dst *d, const char *peer);
void dst_guest_gone(struct dst *d);
int dst_run_guest(struct dst *d);
void dst_kill_guest(struct dst *d);

/* commands.c */
extern const struct mig_engine_ops dst_ops;

#endif
