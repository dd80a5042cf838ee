#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run the test suites (all, or those named: unit bats man headers) and end
# with one line "N passed, N failed, N skipped" summing them; exit 1 on any
# failure. Used by `make check` and .ci/run.
set -u
cd "$(dirname "$0")/.."

passed=0 failed=0 skipped=0
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(unit headers man bats)

count() { passed=$((passed + $1)); failed=$((failed + $2)); skipped=$((skipped + ${3:-0})); }

run_unit() {
	local dir=${MIG_UNIT_DIR:-build/tests} t out p f
	for t in "$dir"/test-*; do
		[ -x "$t" ] || continue
		out=$("$t" 2>&1); local rc=$?
		p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' <<<"$out")
		f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' <<<"$out")
		p=${p:-0} f=${f:-0}
		# a crash before cmocka's summary still counts as a failure
		if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
		[ "$f" -eq 0 ] || printf '%s\n' "$out"
		echo "unit: $(basename "$t"): $p passed, $f failed"
		count "$p" "$f"
	done
}

run_headers() {
	local h p=0 f=0
	for h in lib/*/*.h; do
		if printf '#include "%s"\n' "${h#lib/}" |
			${CC:-cc} -std=gnu11 -D_GNU_SOURCE -Wall -Werror -fsyntax-only -Ilib -x c - 2>/dev/null; then
			p=$((p + 1))
		else
			echo "headers: $h does not compile on its own"; f=$((f + 1))
		fi
	done
	echo "headers: $p passed, $f failed"
	count "$p" "$f"
}

run_man() {
	local m p=0 f=0 out
	if ! command -v mandoc >/dev/null; then
		echo "man: mandoc missing (make deps)"; count 0 1; return
	fi
	for m in man/*.[17]; do
		[ -e "$m" ] || continue
		out=$(mandoc -Tlint -W warning "$m" 2>&1)
		if [ -z "$out" ]; then p=$((p + 1)); else echo "$out"; f=$((f + 1)); fi
	done
	echo "man: $p passed, $f failed"
	count "$p" "$f"
}

run_bats() {
	local line p=0 f=0 s=0 rc=0
	export BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-180}
	while IFS= read -r line; do
		printf '%s\n' "$line"
		case "$line" in
		"ok "*"# skip"*) s=$((s + 1)) ;;
		"ok "*) p=$((p + 1)) ;;
		"not ok "*) f=$((f + 1)) ;;
		"bats-exit "*) rc=${line#bats-exit } ;;
		esac
	done < <(bats --tap tests/bats 2>&1; echo "bats-exit $?")
	# bats itself failing (syntax error, no tests found) is a failure too
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	echo "bats: $p passed, $f failed, $s skipped"
	count "$p" "$f" "$s"
}

for s in "${suites[@]}"; do
	case "$s" in
	unit) run_unit ;;
	headers) run_headers ;;
	man) run_man ;;
	bats) run_bats ;;
	*) echo "run-all: unknown suite '$s'" >&2; exit 64 ;;
	esac
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
