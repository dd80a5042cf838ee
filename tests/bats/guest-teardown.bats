#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# An incoming guest exits on QUIT and on SIGTERM whatever its vCPUs are
# doing in userfaults at that moment: many rounds of
# tests/helpers/teardown-stress.c, each a fresh incoming guest whose vCPUs
# fault while the helper places pages, told to go at a random moment.

load ../helpers/common

setup() {
	mig_setup
	require_uffd
}
teardown() { mig_teardown; }

@test "an incoming guest whose vCPUs fault exits on QUIT and on SIGTERM, every round" {
	local stress=$MIG_BIN/../tests/helpers/teardown-stress
	[ -x "$stress" ] || { echo "# $stress is missing: run make" >&2; return 1; }
	# 1000 rounds, about 10 s on two cores; at most 20 s of them (about
	# 300 rounds under ASan). The old teardown, which woke waiters only
	# through UFFDIO_UNREGISTER, hung in about one round in 140 here: 1000
	# rounds miss it with odds under one in a thousand. A round's guest
	# gets 3 s to exit; expect's 60 s bound covers the last round's setup
	# and wait too.
	expect 0 "$stress" --guest "$MIG_BIN/mig-guest" --dir "$T" --rounds 1000 \
		--seconds 20 --hang-ms 3000
	[[ "$output" == *" 0 hangs, 0 bad exits"* ]]
	echo "# $output" >&3
}
