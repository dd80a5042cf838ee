/* SPDX-License-Identifier: MIT */
/*
 * The source engine's insides, shared by its files and by nothing else
 * (source.h is the interface). Threads: the control loop (mig_source_run)
 * owns every fd and every state move; the pump thread sends pages in bounded
 * runs; the return-path thread serves page requests; the preempt thread
 * connects the preempt channel without blocking anyone. A pause kicks the
 * channels, joins the workers, then closes, in that order.
 *
 * Where each concern lives:
 *   source.c       control loop and lifecycle: attach, choose a new
 *                  migration or take one over, setup, postcopy loop, signals
 *   pump.c         sending pages: runs, the background pump, precopy passes
 *   switchover.c   stopping the guest, the two-phase switchover,
 *                  stop-and-copy, the digest
 *   link.c         channels: connect, hello, heartbeats, workers start/stop
 *   return-path.c  what the destination sends: page requests, acks,
 *                  completion, the recovery bitmap
 *   preempt.c      the preempt channel, connected on a thread of its own
 *   recover.c      pause, and the recovery handshake back to postcopy-active
 *   commands.c     bus commands and the source's part of query-migrate
 */
#ifndef MIG_SOURCE_INT_H
#define MIG_SOURCE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/chan.h"
#include "engine/engine.h"
#include "guest/guest.h"
#include "source/precopy.h"
#include "source/source.h"

/* Pages per background run: 64 KiB amortises the UFFDIO_COPY syscall on the
 * destination; larger runs gain nothing (MACHINE-FACTS) and delay requests
 * that share the main channel. */
#define PUMP_RUN_PAGES 16u
#define CONNECT_TIMEOUT_MS 5000

struct mig_bitmap;
struct mig_dirty;

struct src {
	struct mig_engine e;
	const struct mig_source_opts *o;
	struct mig_guest *guest;
	struct mig_guest_info gi;
	/* gi.pid once attached, 0 before: query-migrate's "guest-pid", read
	 * by the bus thread while the control loop fills gi */
	_Atomic pid_t guest_pid;
	int memfd;
	const uint8_t *ram;
	uint64_t npages;
	struct mig_bitmap *sent;  /* pages whose current content was sent */
	struct mig_bitmap *ever;  /* pages sent at least once (precopy) */
	struct mig_bitmap *dirty; /* scratch: one dirty scan */
	struct mig_dirty *dt;     /* dirty tracking of the guest, precopy only */
	struct mig_precopy_policy policy;
	struct mig_pass pass;     /* the last finished precopy pass */
	uint64_t discarded;       /* pages the destination had to drop */

	pthread_mutex_t tx[MIG_CHAN__COUNT]; /* one writer per channel */
	atomic_bool preempt;      /* set live by the bus until switchover */
	struct mig_uri to;        /* where the migration goes */
	char to_uri[256];         /* ...as given: --to, or migrate's (--defer,
				   * under e.lock until started is set) */
	bool started;             /* --defer: migrate was accepted (e.lock) */
	bool compress;
	/* bytes/s, 0 = unlimited, set live by the bus: precopy's, the pump's */
	_Atomic uint64_t max_bw, max_postcopy_bw;
	atomic_bool postcopy_ram; /* the capability: may precopy end in postcopy */
	_Atomic uint64_t downtime_limit_ms;

	/* background streams, main's first, then bulk channels 1..: set by
	 * --channels and multifd-channels until channels open */
	_Atomic unsigned channels;
	struct src_pump {
		struct src *s;
		enum mig_chan_slot c;
		pthread_t thr;
		bool on;
	} pump[MIG_CHANNELS_MAX];
	unsigned npumps;         /* started for this session */
	pthread_mutex_t pump_lock; /* the pumps' cursor over `sent` */
	uint64_t pump_next;      /* where the next run starts looking */
	atomic_uint pumps_busy;  /* pumps that have not found every page sent */
	pthread_t rp_thr, pre_thr;
	bool rp_on, pre_on;
	atomic_bool stop;
	_Atomic uint64_t pump_hint; /* page after the last request, or 0 */
	struct mig_uri bulk_uri; /* where bulk channels connect */
	struct mig_uri pre_uri;  /* preempt thread's input */
	atomic_int pre_fd;       /* its output: fd, or -errno */
	int pre_err;             /* why the last attempt failed, or 0 */
	bool pre_resume;
	/* the last precopy heartbeat: kept across passes, each of which may
	 * be shorter than the period while the preempt channel idles through
	 * all of them */
	uint64_t hb_ns;

	char recover_uri[256];   /* under e.lock */
	bool stopped;            /* we stopped the guest (switchover) */
	pthread_t digest_thr;
	bool digest_on;
	bool done_before;        /* taken over after it had completed */
};

/* source.c */
int src_bind_guest(struct src *s, const char *to);
int src_cmd_start(struct src *s, const char *uri, char *desc, size_t desclen);

/* pump.c */
int src_send_msg(struct src *s, enum mig_chan_slot c, uint32_t type,
		 const void *p1, size_t l1, const void *p2, size_t l2);
/* Requested pages [first, first+n), uncompressed, split into zero and
 * data segments. */
int src_send_pages(struct src *s, enum mig_chan_slot c, uint64_t first,
		   uint64_t n);
int src_send_unsent(struct src *s, struct mig_pass *ps, uint64_t t0_ns,
		    bool news);
void *src_pump_main(void *arg);
int src_precopy(struct src *s, enum mig_precopy_next *next);

/* switchover.c */
int src_switchover(struct src *s);
int src_complete_precopy(struct src *s);
void src_join_digest(struct src *s);

/* link.c */
void src_link_down(struct src *s, const char *what, int err);
int src_secure(struct src *s, int fd, const struct mig_uri *u);
int src_say_hello(struct src *s, int fd, uint32_t role, uint32_t flags);
/* Bulk channel slot c to bulk_uri, from its pump's thread. */
int src_connect_bulk(struct src *s, enum mig_chan_slot c);
int src_open_chans(struct src *s, const struct mig_uri *u, bool resume);
int src_start_workers(struct src *s);
void src_stop_workers(struct src *s);
void src_heartbeat(struct src *s);

/* return-path.c */
void *src_rp_main(void *arg);
int src_recv_resume_ack(struct src *s);
int src_recv_complete(struct src *s);
int src_recv_bitmap(struct src *s, struct mig_bitmap *have, bool *complete);

/* preempt.c */
int src_preempt_start(struct src *s, const struct mig_uri *u, bool resume);
int src_preempt_finish(struct src *s);
void src_preempt_poll(struct src *s);
int src_preempt_settle(struct src *s);

/* recover.c */
void src_pause_now(struct src *s, const char *why);
void src_recover(struct src *s);

/* commands.c */
extern const struct mig_engine_ops src_ops;

#endif
