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
 *   blocktime.c  how long vCPUs wait on missing pages
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
#include "guest/workload.h"

/*
 * Connections not yet part of the migration: owing us their hello, or (a
 * new migration's main channel) the RAM_INFO that makes its setup valid,
 * or (a preempt channel of such a one) waiting for that verdict. Nothing
 * they send can end the engine or claim the migration: a bad one is
 * dropped and logged. A silent one goes after HELLO_TIMEOUT_MS; when every
 * slot is taken the oldest goes, so that strangers holding connections
 * open cannot starve the real peer, whose hello follows its connect at
 * once (one accept per listener per round: it cannot be evicted before
 * its hello is read). 64 slots: a few KiB and fds, bounded.
 */
#define MAX_PENDING 64
#define HELLO_TIMEOUT_MS 5000
/* runs a receiver holds in hand at most (receive.c): 2 MiB of 64 KiB
 * runs, more than it reads ahead */
#define DST_HAND_SLOTS 32u

/*
 * A receiver's runs read and not placed yet (receive.c). A fault on such a
 * page needs no request; and once the page's bytes are in, the fault
 * thread places it from here at once rather than have its vCPU wait
 * behind the runs placed before it (userfault.c).
 */
struct dst_hand {
	/* (first page + 1) << 16 | pages, or 0 */
	_Atomic uint64_t run[DST_HAND_SLOTS];
	/* where the run's raw pages start in buf, or SIZE_MAX: none to take
	 * (zero, compressed, out of place, or malformed) */
	size_t data[DST_HAND_SLOTS];
	const uint8_t *buf;
	_Atomic size_t end;   /* buf[0, end) is in */
	/* page + 1 a vCPU waits on, in hand, its bytes not in yet; or 0 */
	_Atomic uint64_t want;
	/* held to move or drop bytes of buf (or buf itself), and to place a
	 * page from it: a run's bytes stay put while its slot is set */
	pthread_mutex_t lock;
	atomic_bool busy;     /* its receiver runs */
	/* a bulk receiver's thread, and whether a vCPU's want made it urgent
	 * (until the want is served) */
	pid_t tid;            /* under lock */
	int nice;             /* its engine's niceness */
	atomic_bool boosted;
};

enum pend_stage {
	PEND_TLS,       /* owes us a TLS handshake (core/tls) */
	PEND_HELLO,     /* owes us its hello */
	PEND_RAM_INFO,  /* a new migration's main channel, answered */
	PEND_HELD,      /* a preempt channel of one still in PEND_RAM_INFO */
};

struct mig_bitmap;

struct pending {
	int fd;
	enum pend_stage stage;
	bool recovery;      /* accepted on the recovery listener */
	bool peeked;        /* PEND_TLS: its first byte was a handshake's */
	char peer[64];      /* its address, while it still has one to ask */
	uint64_t since_ns;  /* accepted then: the oldest is evicted first */
	uint64_t deadline_ns;
	struct mig_hello h; /* past PEND_HELLO */
	size_t have, want;
	/* a hello, or later a RAM_INFO (smaller), header included */
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
	bool have_migration;        /* a valid setup fixed the UUID */
	/* the current session's main hello announced a preempt channel, and
	 * none has been taken yet: no other may write pages */
	bool preempt_expected;
	/* ...and how many bulk channels; bit i-1 of bulk_expected: bulk
	 * channel i is announced and not yet taken */
	unsigned bulk_expected;
	/* the source is committed to postcopy (its go-ahead RESUME, a
	 * recovery, a stop-and-copy that ran the guest here): it never
	 * sends CANCEL any more, and one that comes is out of place */
	atomic_bool committed;

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
	/* received as zero and left a hole, which reads as zero once the
	 * range is unregistered at completion: never allocated unless a vCPU
	 * faults on it first (receive.c, userfault.c) */
	struct mig_bitmap *unplaced;
	_Atomic uint64_t *fault_ns; /* per page: when a vCPU first faulted */
	struct dst_hand hand[MIG_CHAN__COUNT];
	/* placed by the fault thread from a receiver's hand: the receiver's
	 * own placement, refused there, is no page twice */
	struct mig_bitmap *taken;
	atomic_uint_fast64_t from_hand; /* pages so placed */
	atomic_uint_fast64_t hedged;    /* in hand, asked for all the same */
	struct dst_bt *bt;          /* blocktime.c; outlives the bus */

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

/* receive.c: is the page in a receiver's hand, about to be placed? If
 * its bytes are in, it is placed from there now (the fault thread's);
 * if not, *late_run is set to the run they are to come with (else 0). */
bool dst_in_hand(struct dst *d, uint64_t page, uint64_t *late_run);

/* userfault.c */
/* A zero page left a hole (unplaced): place it now, waking its waiters,
 * and those of the unplaced pages right after it, max in all. 1 placed, 0
 * it was not unplaced (or another placed it), or -errno. */
long dst_place_unplaced(struct dst *d, uint64_t page, uint64_t max);
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

/*
 * blocktime.c: postcopy blocktime as QEMU's query-migrate reports it. Per
 * vCPU, the time it spent waiting on missing pages; in all, the time during
 * which every vCPU waited at once. The accounting is pure (dst_bt_acct_*:
 * the caller passes the time, which never goes back, and serialises the
 * calls); struct dst_bt wraps it with a lock for the engine's threads.
 */
struct dst_bt_vcpu {
	uint64_t since_ns;          /* waiting since; 0 while it runs */
	uint64_t page;              /* what it waits for, while it does */
	uint64_t ns;                /* its waits that ended */
};

struct dst_bt_acct {
	unsigned nvcpus;
	unsigned nblocked;          /* vCPUs waiting now */
	uint64_t all_since_ns;      /* the last one's wait began, while all wait */
	uint64_t all_ns;            /* all-waiting intervals that ended */
	struct dst_bt_vcpu v[MIG_WORKLOAD_MAX_VCPUS];
};

/* What query-migrate shows: ongoing waits counted up to now. */
struct dst_blocktime {
	uint32_t total_ms;
	uint32_t nvcpus;
	uint32_t vcpu_ms[MIG_WORKLOAD_MAX_VCPUS];
};

/* nvcpus vCPUs, none waiting (clamped to MIG_WORKLOAD_MAX_VCPUS). */
void dst_bt_acct_reset(struct dst_bt_acct *a, unsigned nvcpus);
/* vCPU v faulted on page: it waits from now on. One already waiting (woken,
 * it faulted again before its page was seen placed) waits on, for this one.
 * A v out of range is not counted. */
void dst_bt_acct_fault(struct dst_bt_acct *a, unsigned v, uint64_t page,
		       uint64_t now_ns);
/* page is present: the vCPUs waiting on it run again. */
void dst_bt_acct_placed(struct dst_bt_acct *a, uint64_t page, uint64_t now_ns);
void dst_bt_acct_read(const struct dst_bt_acct *a, uint64_t now_ns,
		      struct dst_blocktime *out);

/* Made before the bus opens, freed after it closes (NULL: a no-op). */
struct dst_bt *dst_blocktime_new(void);
void dst_blocktime_free(struct dst_bt *bt);
/* The guest runs nvcpus vCPUs: counting starts afresh, before it runs. */
void dst_blocktime_start(struct dst *d, unsigned nvcpus);
/* The fault thread's: the vCPU index of thread tid of the guest, or -1
 * (not a vCPU, or unknown). */
int dst_blocktime_vcpu(struct dst *d, pid_t tid);
/* The fault thread's: vCPU vcpu waits on page. */
void dst_blocktime_fault(struct dst *d, int vcpu, uint64_t page);
/* page is present: call only for a page a vCPU faulted on, whoever saw it
 * present first (fault_ns[page] was set, or the fault thread found it
 * there). */
void dst_blocktime_placed(struct dst *d, uint64_t page);
/* Any thread, at any time: the counts up to now (zero before the start). */
void dst_blocktime_get(struct dst *d, struct dst_blocktime *out);

#endif
