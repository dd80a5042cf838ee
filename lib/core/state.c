// SPDX-License-Identifier: MIT
/*
 * The migration state machine (see state.h): names, the legal moves of each
 * side, and struct mig_sm, the one place a state changes. A move and its
 * event happen under one lock so listeners see moves in the order they
 * happened, exactly once each.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/state.h"
#include "base/util.h"

static const char *const state_names[MIG_STATE__COUNT] = {
	[MIG_STATE_NONE] = "none",
	[MIG_STATE_SETUP] = "setup",
	[MIG_STATE_ACTIVE] = "active",
	[MIG_STATE_DEVICE] = "device",
	[MIG_STATE_POSTCOPY_ACTIVE] = "postcopy-active",
	[MIG_STATE_POSTCOPY_PAUSED] = "postcopy-paused",
	[MIG_STATE_POSTCOPY_RECOVER_SETUP] = "postcopy-recover-setup",
	[MIG_STATE_POSTCOPY_RECOVER] = "postcopy-recover",
	[MIG_STATE_COMPLETED] = "completed",
	[MIG_STATE_FAILED] = "failed",
	[MIG_STATE_CANCELLING] = "cancelling",
	[MIG_STATE_CANCELLED] = "cancelled",
};

#define S(x) (1u << MIG_STATE_##x)

/*
 * Legal moves: legal[side][from] is the set of states `from` may move to.
 *
 * Once a side is in a postcopy state the guest runs on the destination
 * while part of its memory still exists only on the source. Failing or
 * cancelling then would throw away one half of a running guest, so no
 * postcopy state leads to failed or cancelling: a broken link pauses
 * (postcopy-paused), and the only ways out are recovery or completion.
 */
static const uint16_t legal[2][MIG_STATE__COUNT] = {
	/* none -> postcopy-paused: a restarted engine taking over a guest
	 * past switchover starts where its predecessor could only be.
	 * none -> cancelled: a deferred engine (--defer) stopped before it
	 * was told to start: nothing began, so nothing is failed. */
	[MIG_SIDE_SOURCE] = {
		[MIG_STATE_NONE] = S(SETUP) | S(POSTCOPY_PAUSED) | S(CANCELLED),
		[MIG_STATE_SETUP] = S(ACTIVE) | S(FAILED) | S(CANCELLING),
		[MIG_STATE_ACTIVE] = S(POSTCOPY_ACTIVE) | S(DEVICE) |
				     S(FAILED) | S(CANCELLING),
		[MIG_STATE_DEVICE] = S(COMPLETED) | S(FAILED),
		[MIG_STATE_POSTCOPY_ACTIVE] = S(COMPLETED) | S(POSTCOPY_PAUSED),
		[MIG_STATE_POSTCOPY_PAUSED] = S(POSTCOPY_RECOVER_SETUP) |
					      S(COMPLETED),
		[MIG_STATE_POSTCOPY_RECOVER_SETUP] = S(POSTCOPY_RECOVER) |
						     S(POSTCOPY_PAUSED),
		[MIG_STATE_POSTCOPY_RECOVER] = S(POSTCOPY_ACTIVE) |
					       S(POSTCOPY_PAUSED) | S(COMPLETED),
		[MIG_STATE_CANCELLING] = S(CANCELLED) | S(FAILED),
	},
	/* The destination has no device, recover-setup or cancelling state:
	 * it cancels at once, and it starts recovery by listening. After
	 * switchover it fails only when its guest process itself is gone:
	 * no link failure can do that, and nothing is left to recover. */
	[MIG_SIDE_DEST] = {
		[MIG_STATE_NONE] = S(SETUP) | S(POSTCOPY_PAUSED) | S(CANCELLED),
		[MIG_STATE_SETUP] = S(ACTIVE) | S(FAILED) | S(CANCELLED),
		[MIG_STATE_ACTIVE] = S(POSTCOPY_ACTIVE) | S(COMPLETED) |
				     S(FAILED) | S(CANCELLED),
		[MIG_STATE_POSTCOPY_ACTIVE] = S(COMPLETED) | S(POSTCOPY_PAUSED) |
					      S(FAILED),
		[MIG_STATE_POSTCOPY_PAUSED] = S(POSTCOPY_RECOVER) | S(COMPLETED) |
					      S(FAILED),
		[MIG_STATE_POSTCOPY_RECOVER] = S(POSTCOPY_ACTIVE) |
					       S(POSTCOPY_PAUSED) | S(COMPLETED) |
					       S(FAILED),
	},
};

_Static_assert(MIG_STATE__COUNT <= 16, "legal[] holds states in a uint16_t");

static bool state_valid(enum mig_state s)
{
	return (unsigned)s < MIG_STATE__COUNT;
}

const char *mig_state_name(enum mig_state s)
{
	return state_valid(s) ? state_names[s] : NULL;
}

int mig_state_from_name(const char *name, enum mig_state *out)
{
	if (!name)
		return -EINVAL;
	for (unsigned s = 0; s < MIG_STATE__COUNT; s++) {
		if (strcmp(name, state_names[s]) == 0) {
			*out = (enum mig_state)s;
			return 0;
		}
	}
	return -EINVAL;
}

const char *mig_side_name(enum mig_side side)
{
	switch (side) {
	case MIG_SIDE_SOURCE:
		return "source";
	case MIG_SIDE_DEST:
		return "destination";
	}
	return NULL;
}

bool mig_state_legal(enum mig_side side, enum mig_state from, enum mig_state to)
{
	if ((unsigned)side >= MIG_ARRAY_SIZE(legal) || !state_valid(from) ||
	    !state_valid(to))
		return false;
	return legal[side][from] & (1u << to);
}

bool mig_state_terminal(enum mig_state s)
{
	return s == MIG_STATE_COMPLETED || s == MIG_STATE_FAILED ||
	       s == MIG_STATE_CANCELLED;
}

bool mig_state_postcopy(enum mig_state s)
{
	return s == MIG_STATE_POSTCOPY_ACTIVE ||
	       s == MIG_STATE_POSTCOPY_PAUSED ||
	       s == MIG_STATE_POSTCOPY_RECOVER_SETUP ||
	       s == MIG_STATE_POSTCOPY_RECOVER;
}

struct mig_sm {
	pthread_mutex_t lock;
	enum mig_side side;
	enum mig_state state;
	uint64_t since_ns;
	mig_sm_emit_fn emit;
	void *ctx;
};

struct mig_sm *mig_sm_new(enum mig_side side, mig_sm_emit_fn emit, void *ctx)
{
	struct mig_sm *sm;

	if ((unsigned)side >= MIG_ARRAY_SIZE(legal)) {
		errno = EINVAL;
		return NULL;
	}
	sm = calloc(1, sizeof(*sm));
	if (!sm)
		return NULL;
	pthread_mutex_init(&sm->lock, NULL);
	sm->side = side;
	sm->state = MIG_STATE_NONE;
	sm->since_ns = mig_now_ns();
	sm->emit = emit;
	sm->ctx = ctx;
	return sm;
}

void mig_sm_free(struct mig_sm *sm)
{
	if (!sm)
		return;
	pthread_mutex_destroy(&sm->lock);
	free(sm);
}

enum mig_state mig_sm_get(struct mig_sm *sm)
{
	enum mig_state s;

	pthread_mutex_lock(&sm->lock);
	s = sm->state;
	pthread_mutex_unlock(&sm->lock);
	return s;
}

uint64_t mig_sm_since_ns(struct mig_sm *sm)
{
	uint64_t t;

	pthread_mutex_lock(&sm->lock);
	t = sm->since_ns;
	pthread_mutex_unlock(&sm->lock);
	return t;
}

/* Called with the lock held. */
static int move_locked(struct mig_sm *sm, enum mig_state to)
{
	enum mig_state from = sm->state;

	if (!mig_state_legal(sm->side, from, to))
		return -EPERM;
	sm->state = to;
	sm->since_ns = mig_now_ns();
	/* under the lock: events leave in the order the moves happened */
	if (sm->emit)
		sm->emit(sm->ctx, from, to);
	return 0;
}

int mig_sm_move(struct mig_sm *sm, enum mig_state to)
{
	int r;

	pthread_mutex_lock(&sm->lock);
	r = move_locked(sm, to);
	pthread_mutex_unlock(&sm->lock);
	return r;
}

int mig_sm_move_from(struct mig_sm *sm, enum mig_state from, enum mig_state to)
{
	int r = -EAGAIN;

	pthread_mutex_lock(&sm->lock);
	if (sm->state == from)
		r = move_locked(sm, to);
	pthread_mutex_unlock(&sm->lock);
	return r;
}
