/* SPDX-License-Identifier: MIT */
/*
 * The migration state machine. States carry QEMU's names; each side has its
 * own table of legal moves, and mig_sm_move() is the only code that changes a
 * state: it checks the table and calls the emit hook exactly once per move,
 * which is how every transition becomes one MIGRATION event on the bus.
 */
#ifndef MIG_STATE_H
#define MIG_STATE_H

#include <stdbool.h>
#include <stdint.h>

enum mig_state {
	MIG_STATE_NONE,
	MIG_STATE_SETUP,
	MIG_STATE_ACTIVE,
	MIG_STATE_DEVICE,
	MIG_STATE_POSTCOPY_ACTIVE,
	MIG_STATE_POSTCOPY_PAUSED,
	MIG_STATE_POSTCOPY_RECOVER_SETUP, /* source only */
	MIG_STATE_POSTCOPY_RECOVER,
	MIG_STATE_COMPLETED,
	MIG_STATE_FAILED,
	MIG_STATE_CANCELLING,
	MIG_STATE_CANCELLED,
	MIG_STATE__COUNT
};

enum mig_side {
	MIG_SIDE_SOURCE,
	MIG_SIDE_DEST,
};

/* "postcopy-recover-setup" etc.; NULL for out-of-range values. */
const char *mig_state_name(enum mig_state s);
/* -EINVAL for an unknown name. */
int mig_state_from_name(const char *name, enum mig_state *out);
/* "source" / "destination"; NULL for out-of-range values. */
const char *mig_side_name(enum mig_side side);
/* Is from -> to a legal move on this side? */
bool mig_state_legal(enum mig_side side, enum mig_state from, enum mig_state to);
/* completed, failed, cancelled: nothing follows. */
bool mig_state_terminal(enum mig_state s);
/* After switchover: the guest is split between hosts, never fail. */
bool mig_state_postcopy(enum mig_state s);

/* Called with the machine's lock held, once per move, in move order. */
typedef void (*mig_sm_emit_fn)(void *ctx, enum mig_state from,
			       enum mig_state to);

struct mig_sm;

struct mig_sm *mig_sm_new(enum mig_side side, mig_sm_emit_fn emit, void *ctx);
void mig_sm_free(struct mig_sm *sm);
enum mig_state mig_sm_get(struct mig_sm *sm);
/* Monotonic ns at which the current state was entered. */
uint64_t mig_sm_since_ns(struct mig_sm *sm);
/* Move to `to`: 0, or -EPERM if illegal from the current state (nothing
 * emitted). Moving to the current state is illegal too. */
int mig_sm_move(struct mig_sm *sm, enum mig_state to);
/* Move only if the current state is `from`: 0, -EAGAIN if it is not. */
int mig_sm_move_from(struct mig_sm *sm, enum mig_state from, enum mig_state to);

#endif
