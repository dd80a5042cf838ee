// SPDX-License-Identifier: MIT
/*
 * Unit tests for the state machine: every (side, from, to) triple against a
 * table written out here independently of lib/state.c, names, and the emit
 * and compare-and-move semantics of struct mig_sm.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "core/state.h"
#include "base/util.h"

#define NSTATES MIG_STATE__COUNT

/* The expected moves, by name, as doc/design.md and QEMU spell them. */
struct move {
	const char *from;
	const char *to;
};

static const struct move source_moves[] = {
	{ "none", "setup" },
	{ "none", "postcopy-paused" },
	{ "none", "cancelled" },      /* deferred, stopped before it began */
	{ "setup", "active" },
	{ "setup", "failed" },
	{ "setup", "cancelling" },
	{ "active", "postcopy-active" },
	{ "active", "device" },
	{ "active", "failed" },
	{ "active", "cancelling" },
	{ "device", "completed" },
	{ "device", "failed" },
	{ "postcopy-active", "completed" },
	{ "postcopy-active", "postcopy-paused" },
	{ "postcopy-paused", "postcopy-recover-setup" },
	{ "postcopy-paused", "completed" },
	{ "postcopy-recover-setup", "postcopy-recover" },
	{ "postcopy-recover-setup", "postcopy-paused" },
	{ "postcopy-recover", "postcopy-active" },
	{ "postcopy-recover", "postcopy-paused" },
	{ "postcopy-recover", "completed" },
	{ "cancelling", "cancelled" },
	{ "cancelling", "failed" },
};

static const struct move dest_moves[] = {
	{ "none", "setup" },
	{ "none", "postcopy-paused" },
	{ "none", "cancelled" },
	{ "setup", "active" },
	{ "setup", "failed" },
	{ "setup", "cancelled" },
	{ "active", "postcopy-active" },
	{ "active", "completed" },
	{ "active", "failed" },
	{ "active", "cancelled" },
	{ "postcopy-active", "completed" },
	{ "postcopy-active", "postcopy-paused" },
	{ "postcopy-paused", "postcopy-recover" },
	{ "postcopy-paused", "completed" },
	{ "postcopy-recover", "postcopy-active" },
	{ "postcopy-recover", "postcopy-paused" },
	{ "postcopy-recover", "completed" },
	/* its guest process died: nothing left to recover */
	{ "postcopy-active", "failed" },
	{ "postcopy-paused", "failed" },
	{ "postcopy-recover", "failed" },
};

static const char *const all_names[NSTATES] = {
	"none", "setup", "active", "device", "postcopy-active",
	"postcopy-paused", "postcopy-recover-setup", "postcopy-recover",
	"completed", "failed", "cancelling", "cancelled",
};

/* Name to enum through the test's own table, not the library's. */
static enum mig_state st(const char *name)
{
	for (unsigned s = 0; s < NSTATES; s++)
		if (!strcmp(all_names[s], name))
			return (enum mig_state)s;
	fail_msg("no state named %s", name);
	return MIG_STATE__COUNT;
}

/* expected[side][from][to], filled from the name tables above. */
static bool expected[2][NSTATES][NSTATES];

static void fill_expected(void)
{
	memset(expected, 0, sizeof(expected));
	for (size_t i = 0; i < MIG_ARRAY_SIZE(source_moves); i++)
		expected[MIG_SIDE_SOURCE][st(source_moves[i].from)]
			[st(source_moves[i].to)] = true;
	for (size_t i = 0; i < MIG_ARRAY_SIZE(dest_moves); i++)
		expected[MIG_SIDE_DEST][st(dest_moves[i].from)]
			[st(dest_moves[i].to)] = true;
}

static int setup_expected(void **state)
{
	fill_expected();
	return 0;
}

static void test_names(void **state)
{
	for (unsigned s = 0; s < NSTATES; s++) {
		enum mig_state back;

		assert_string_equal(mig_state_name(s), all_names[s]);
		assert_int_equal(mig_state_from_name(all_names[s], &back), 0);
		assert_int_equal(back, s);
	}
	assert_null(mig_state_name(MIG_STATE__COUNT));
	assert_null(mig_state_name((enum mig_state)-1));
	assert_string_equal(mig_side_name(MIG_SIDE_SOURCE), "source");
	assert_string_equal(mig_side_name(MIG_SIDE_DEST), "destination");
}

static void test_unknown_name(void **state)
{
	enum mig_state s = MIG_STATE_ACTIVE;

	assert_int_equal(mig_state_from_name("", &s), -EINVAL);
	assert_int_equal(mig_state_from_name("Active", &s), -EINVAL);
	assert_int_equal(mig_state_from_name("postcopy", &s), -EINVAL);
	assert_int_equal(mig_state_from_name("active ", &s), -EINVAL);
	assert_int_equal(mig_state_from_name(NULL, &s), -EINVAL);
	assert_int_equal(s, MIG_STATE_ACTIVE);
}

static void test_every_triple(void **state)
{
	unsigned legal = 0;

	for (int side = MIG_SIDE_SOURCE; side <= MIG_SIDE_DEST; side++) {
		for (unsigned from = 0; from < NSTATES; from++) {
			for (unsigned to = 0; to < NSTATES; to++) {
				bool got = mig_state_legal(side, from, to);

				if (got != expected[side][from][to])
					fail_msg("%s: %s -> %s: got %d",
						 mig_side_name(side),
						 all_names[from], all_names[to],
						 got);
				legal += got;
			}
		}
	}
	assert_int_equal(legal, MIG_ARRAY_SIZE(source_moves) +
					MIG_ARRAY_SIZE(dest_moves));
	/* out-of-range values are never legal */
	assert_false(mig_state_legal(MIG_SIDE_SOURCE, MIG_STATE__COUNT,
				     MIG_STATE_SETUP));
	assert_false(mig_state_legal(MIG_SIDE_SOURCE, MIG_STATE_NONE,
				     MIG_STATE__COUNT));
	assert_false(mig_state_legal((enum mig_side)2, MIG_STATE_NONE,
				     MIG_STATE_SETUP));
}

/* The reason the toolkit exists: nothing after switchover may fail, but
 * for the destination whose guest process is gone (no link failure). */
static void test_postcopy_never_fails(void **state)
{
	for (int side = MIG_SIDE_SOURCE; side <= MIG_SIDE_DEST; side++) {
		for (unsigned from = 0; from < NSTATES; from++) {
			if (!mig_state_postcopy(from))
				continue;
			if (side == MIG_SIDE_SOURCE)
				assert_false(mig_state_legal(side, from,
							     MIG_STATE_FAILED));
			assert_false(mig_state_legal(side, from,
						     MIG_STATE_CANCELLING));
			assert_false(mig_state_legal(side, from,
						     MIG_STATE_CANCELLED));
		}
	}
}

static void test_predicates(void **state)
{
	for (unsigned s = 0; s < NSTATES; s++) {
		const char *n = all_names[s];
		bool term = !strcmp(n, "completed") || !strcmp(n, "failed") ||
			    !strcmp(n, "cancelled");
		bool post = !strncmp(n, "postcopy-", 9);

		assert_int_equal(mig_state_terminal(s), term);
		assert_int_equal(mig_state_postcopy(s), post);
		if (term)
			for (unsigned to = 0; to < NSTATES; to++) {
				assert_false(mig_state_legal(MIG_SIDE_SOURCE, s, to));
				assert_false(mig_state_legal(MIG_SIDE_DEST, s, to));
			}
	}
}

/* Emit recorder. */
struct rec {
	unsigned n;
	enum mig_state from[64];
	enum mig_state to[64];
};

static void record(void *ctx, enum mig_state from, enum mig_state to)
{
	struct rec *r = ctx;

	assert_true(r->n < MIG_ARRAY_SIZE(r->from));
	r->from[r->n] = from;
	r->to[r->n] = to;
	r->n++;
}

/* Shortest path from none to every state along the expected table (BFS);
 * prev[s] = NSTATES for unreachable states. */
static void paths(int side, unsigned prev[NSTATES])
{
	unsigned queue[NSTATES], head = 0, tail = 0;
	bool seen[NSTATES] = { [MIG_STATE_NONE] = true };

	for (unsigned s = 0; s < NSTATES; s++)
		prev[s] = NSTATES;
	queue[tail++] = MIG_STATE_NONE;
	while (head < tail) {
		unsigned from = queue[head++];

		for (unsigned to = 0; to < NSTATES; to++) {
			if (!expected[side][from][to] || seen[to])
				continue;
			seen[to] = true;
			prev[to] = from;
			queue[tail++] = to;
		}
	}
}

/* Drive sm from none to target along prev[], checking each emit. */
static void drive(struct mig_sm *sm, struct rec *r, const unsigned prev[NSTATES],
		  unsigned target)
{
	unsigned path[NSTATES], n = 0;

	for (unsigned s = target; s != MIG_STATE_NONE; s = prev[s])
		path[n++] = s;
	while (n--) {
		unsigned before = r->n;
		enum mig_state from = mig_sm_get(sm);

		assert_int_equal(mig_sm_move(sm, path[n]), 0);
		assert_int_equal(r->n, before + 1);
		assert_int_equal(r->from[before], from);
		assert_int_equal(r->to[before], path[n]);
	}
	assert_int_equal(mig_sm_get(sm), target);
}

static void check_moves_from(int side, const unsigned prev[NSTATES],
			     unsigned from)
{
	for (unsigned to = 0; to < NSTATES; to++) {
		struct rec r = { 0 };
		struct mig_sm *sm = mig_sm_new(side, record, &r);
		unsigned before;

		assert_non_null(sm);
		drive(sm, &r, prev, from);
		before = r.n;
		if (expected[side][from][to]) {
			assert_int_equal(mig_sm_move(sm, to), 0);
			assert_int_equal(r.n, before + 1);
			assert_int_equal(r.from[before], from);
			assert_int_equal(r.to[before], to);
			assert_int_equal(mig_sm_get(sm), to);
		} else {
			assert_int_equal(mig_sm_move(sm, to), -EPERM);
			assert_int_equal(r.n, before);
			assert_int_equal(mig_sm_get(sm), from);
		}
		mig_sm_free(sm);
	}
}

static void test_sm_every_move(void **state)
{
	for (int side = MIG_SIDE_SOURCE; side <= MIG_SIDE_DEST; side++) {
		unsigned prev[NSTATES];

		paths(side, prev);
		for (unsigned from = 0; from < NSTATES; from++)
			if (from == MIG_STATE_NONE || prev[from] != NSTATES)
				check_moves_from(side, prev, from);
	}
}

static void test_sm_initial(void **state)
{
	struct rec r = { 0 };
	struct mig_sm *sm = mig_sm_new(MIG_SIDE_DEST, record, &r);
	uint64_t t0, t1;

	assert_non_null(sm);
	assert_int_equal(mig_sm_get(sm), MIG_STATE_NONE);
	assert_int_equal(r.n, 0);
	t0 = mig_sm_since_ns(sm);
	assert_true(t0 > 0);
	assert_int_equal(mig_sm_move(sm, MIG_STATE_NONE), -EPERM);
	assert_int_equal(mig_sm_since_ns(sm), t0);
	assert_int_equal(mig_sm_move(sm, MIG_STATE_SETUP), 0);
	t1 = mig_sm_since_ns(sm);
	assert_true(t1 >= t0);
	/* moving to the current state is illegal */
	assert_int_equal(mig_sm_move(sm, MIG_STATE_SETUP), -EPERM);
	assert_int_equal(r.n, 1);
	mig_sm_free(sm);
	mig_sm_free(NULL);
}

static void test_sm_no_emit_hook(void **state)
{
	struct mig_sm *sm = mig_sm_new(MIG_SIDE_SOURCE, NULL, NULL);

	assert_non_null(sm);
	assert_int_equal(mig_sm_move(sm, MIG_STATE_SETUP), 0);
	assert_int_equal(mig_sm_get(sm), MIG_STATE_SETUP);
	mig_sm_free(sm);
}

static void test_sm_move_from(void **state)
{
	struct rec r = { 0 };
	struct mig_sm *sm = mig_sm_new(MIG_SIDE_SOURCE, record, &r);

	assert_non_null(sm);
	assert_int_equal(mig_sm_move(sm, MIG_STATE_SETUP), 0);
	assert_int_equal(mig_sm_move(sm, MIG_STATE_ACTIVE), 0);
	assert_int_equal(mig_sm_move(sm, MIG_STATE_POSTCOPY_ACTIVE), 0);
	assert_int_equal(r.n, 3);
	/* wrong expected state: nothing happens, even for a move that would
	 * be legal from the current one */
	assert_int_equal(mig_sm_move_from(sm, MIG_STATE_POSTCOPY_RECOVER,
					  MIG_STATE_POSTCOPY_PAUSED), -EAGAIN);
	assert_int_equal(mig_sm_get(sm), MIG_STATE_POSTCOPY_ACTIVE);
	assert_int_equal(r.n, 3);
	/* right state, illegal move */
	assert_int_equal(mig_sm_move_from(sm, MIG_STATE_POSTCOPY_ACTIVE,
					  MIG_STATE_FAILED), -EPERM);
	assert_int_equal(r.n, 3);
	/* right state, legal move */
	assert_int_equal(mig_sm_move_from(sm, MIG_STATE_POSTCOPY_ACTIVE,
					  MIG_STATE_POSTCOPY_PAUSED), 0);
	assert_int_equal(r.n, 4);
	assert_int_equal(r.from[3], MIG_STATE_POSTCOPY_ACTIVE);
	assert_int_equal(r.to[3], MIG_STATE_POSTCOPY_PAUSED);
	/* a second identical CAS loses */
	assert_int_equal(mig_sm_move_from(sm, MIG_STATE_POSTCOPY_ACTIVE,
					  MIG_STATE_POSTCOPY_PAUSED), -EAGAIN);
	assert_int_equal(r.n, 4);
	mig_sm_free(sm);
}

/* Many threads race the same compare-and-move: exactly one wins. */
struct race {
	struct mig_sm *sm;
	int result;
};

static void *race_thread(void *arg)
{
	struct race *rc = arg;

	rc->result = mig_sm_move_from(rc->sm, MIG_STATE_POSTCOPY_ACTIVE,
				      MIG_STATE_POSTCOPY_PAUSED);
	return NULL;
}

static void test_sm_move_from_race(void **state)
{
	struct rec r = { 0 };
	struct mig_sm *sm = mig_sm_new(MIG_SIDE_DEST, record, &r);
	struct race rc[8];
	pthread_t th[8];
	int wins = 0;

	assert_non_null(sm);
	assert_int_equal(mig_sm_move(sm, MIG_STATE_SETUP), 0);
	assert_int_equal(mig_sm_move(sm, MIG_STATE_ACTIVE), 0);
	assert_int_equal(mig_sm_move(sm, MIG_STATE_POSTCOPY_ACTIVE), 0);
	for (int i = 0; i < 8; i++) {
		rc[i] = (struct race){ .sm = sm, .result = 1 };
		assert_int_equal(pthread_create(&th[i], NULL, race_thread, &rc[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		if (rc[i].result == 0)
			wins++;
		else
			assert_int_equal(rc[i].result, -EAGAIN);
	}
	assert_int_equal(wins, 1);
	assert_int_equal(r.n, 4);
	mig_sm_free(sm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_unknown_name),
		cmocka_unit_test(test_every_triple),
		cmocka_unit_test(test_postcopy_never_fails),
		cmocka_unit_test(test_predicates),
		cmocka_unit_test(test_sm_every_move),
		cmocka_unit_test(test_sm_initial),
		cmocka_unit_test(test_sm_no_emit_hook),
		cmocka_unit_test(test_sm_move_from),
		cmocka_unit_test(test_sm_move_from_race),
	};

	return cmocka_run_group_tests(tests, setup_expected, NULL);
}
