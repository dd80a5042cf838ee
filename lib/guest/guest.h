/* SPDX-License-Identifier: MIT */
/*
 * The engine side of mig-guest: connect to a guest's control socket, claim
 * it, obtain its memfd and userfaultfd (SCM_RIGHTS), stop and continue its
 * vCPUs, save and load its state blob, verify its invariant, and spawn a
 * fresh guest in incoming mode on the destination. The guest keeps its own
 * copies of both fds, so an engine that dies loses nothing. The migration
 * record and the info it returns are the protocol's (ctl.h).
 */
#ifndef MIG_GUEST_H
#define MIG_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/state.h"
#include "guest/ctl.h"

struct mig_guest;

/* NULL with errno: ENOENT/ECONNREFUSED (no guest there), ETIMEDOUT,
 * EPROTO (not a mig-guest). */
struct mig_guest *mig_guest_connect(const char *ctl_path, int timeout_ms);
/* Reply timeout for the requests that follow (the connect timeout until
 * then); < 0 waits as long as the guest lives, e.g. for a long VERIFY. */
void mig_guest_set_timeout(struct mig_guest *g, int timeout_ms);
/* Closing releases the claim if this connection held it. NULL is a no-op. */
void mig_guest_close(struct mig_guest *g);
/* Claim the guest for one engine: -EBUSY (with the holder's pid in *holder)
 * if another connection holds it. */
int mig_guest_attach(struct mig_guest *g, pid_t *holder);
int mig_guest_info(struct mig_guest *g, struct mig_guest_info *info);
/* Needs the claim (-EACCES without it, -EBUSY if another holds it). *uffd
 * is -1 unless the guest is incoming. Both fds are the caller's to close. */
int mig_guest_get_fds(struct mig_guest *g, int *memfd, int *uffd);
/* Returns once every vCPU is parked at a consistent point. STOP, CONT and
 * LOAD_STATE are for the claim holder, or anyone while nobody holds it
 * (-EBUSY otherwise). A STOP that times out stays requested: the guest parks
 * when it can (a vCPU waiting in a userfault parks once its page arrives). */
int mig_guest_stop(struct mig_guest *g);
/* -EINVAL on an incoming guest whose state is not loaded yet; -EPERM on a
 * source guest handed over to its destination (the guest never runs
 * twice), and on an incoming guest still receiving pages from anyone but
 * its engine. */
int mig_guest_cont(struct mig_guest *g);
/* Needs the claim and stopped vCPUs. *blob is malloc'd. */
int mig_guest_save_state(struct mig_guest *g, uint8_t **blob, size_t *len);
/* Incoming guest only, before its first CONT (-EINVAL otherwise); -EBADMSG
 * for a malformed blob or one for another RAM size (nothing changed). */
int mig_guest_load_state(struct mig_guest *g, const uint8_t *blob, size_t len);
/* Every page is present: the guest unregisters and closes its uffd (pages
 * never placed read as zero from then on). Again after that: 0. */
int mig_guest_incoming_done(struct mig_guest *g);
/* Check the workload's invariant (vCPUs are parked meanwhile): 0 holds,
 * -EBADMSG broken, -EAGAIN not yet checkable (incoming with pages still
 * missing, or no state loaded); msg gets a one-line verdict in all three. */
int mig_guest_verify(struct mig_guest *g, char *msg, size_t len);
/* Ask the guest process to exit. */
int mig_guest_quit(struct mig_guest *g);

/* Bind the guest to a migration (needs the claim): rec's uuid, side and
 * peer. 0 also when already bound to that uuid and side (the peer is
 * updated: a recovery may use a new address); -EEXIST bound to another
 * migration, -EINVAL another side. Bound, the guest keeps the record until
 * the migration ends; an engine that disappears before switchover ends it
 * (a source guest runs on, an incoming guest exits). */
int mig_guest_bind(struct mig_guest *g, const struct mig_guest_record *rec);
/* The engine's latest state, for whoever restarts it (needs the claim). */
int mig_guest_set_state(struct mig_guest *g, enum mig_state st);
/* The migration failed before the destination could run the guest: drop
 * the record, so the guest may run here again (needs the claim). Only an
 * engine that knows the destination never acknowledged the state may call
 * it; a restarted one never knows that. */
int mig_guest_unbind(struct mig_guest *g);
/* The operator's deliberate release of a switched source guest that nobody
 * holds, naming its migration: -ESRCH another uuid (or none), -EBUSY an
 * engine holds it, -EINVAL a destination guest. It stays stopped. */
int mig_guest_abandon(struct mig_guest *g, const uint8_t uuid[16]);

/* Arm dirty-page tracking in the guest (needs the claim): the guest creates
 * a userfaultfd in async write-protect mode over its RAM and protects all
 * of it, so from now on the first write to each page is recorded without a
 * fault; read and re-arm with mig_dirty_scan() (dirty.h) on the pid and
 * ram_base from mig_guest_info(). Armed again: a fresh start (everything
 * protected). Stays armed when the claim is released (a restarted engine
 * finds it so) until DIRTY_STOP or the guest exits. -EBUSY on an incoming
 * guest (its RAM belongs to the missing-page uffd), -ENOTSUP when the
 * kernel lacks async write-protect, -EPERM when userfaultfd is not
 * permitted. */
int mig_guest_dirty_start(struct mig_guest *g);
/* Disarm (needs the claim); 0 when not armed. */
int mig_guest_dirty_stop(struct mig_guest *g);
/* A digest of all guest RAM (digest.h: the value mig_digest() gives over
 * the same pages), taken with the vCPUs parked, which then resume if they
 * were running. Anyone may ask, as for VERIFY. -EAGAIN on an incoming
 * guest with pages still missing (nothing is read: they would fault). */
int mig_guest_digest(struct mig_guest *g, uint64_t *out);
/* Write a new version of page `page` through the guest's own mapping, as a
 * vCPU would (so dirty tracking sees it), with the vCPUs parked meanwhile.
 * Only for the dirty workload, whose pages describe themselves (-EINVAL for
 * others, and for a page beyond RAM); -EAGAIN while the page is missing on
 * an incoming guest. Same rules as STOP for who may ask. */
int mig_guest_poke(struct mig_guest *g, uint64_t page);

/* Start mig-guest (from the directory of the running program) with
 * --ctl ctl_path --ram ram_bytes (and --serial serial unless NULL), in
 * incoming mode if asked, in its own
 * session so it outlives the engine; returns once its control socket
 * answers (or -ETIMEDOUT after timeout_ms; the child is then killed). */
int mig_guest_spawn(const char *ctl_path, uint64_t ram_bytes, bool incoming,
		    const char *workload, unsigned vcpus, const char *serial,
		    int timeout_ms, pid_t *pid);

#endif
