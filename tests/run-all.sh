#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run the test suites (all, or those named: selftest unit bats man headers
# fuzz tsan)
# and end with one line "N passed, N failed, N skipped" summing them; exit 1
# on any failure. Used by `make check` and .ci/run. selftest checks this
# script's own counting of bats output on tests/fixtures.
set -u
cd "$(dirname "$0")/.."

passed=0 failed=0 skipped=0
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(selftest unit headers man fuzz bats)

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

# tally WHAT: count bats TAP output on stdin, echoing it unless QUIET is
# set; sets TP TF TS and prints "WHAT: N passed, N failed, N skipped", the
# reasons of the skips (each once, with a count) and a line for tests
# declared ("1..N") but never run, which count as failed (a setup_file that dies runs none of its
# file's tests; bats reports one failure for them all).
tally() {
	local what=$1 line plan=0 ran rc=0
	local -a reasons=()
	TP=0 TF=0 TS=0
	while IFS= read -r line; do
		case "$line" in
		"bats-exit "*) ;;
		*) [ -n "${QUIET:-}" ] || printf '%s\n' "$line" ;;
		esac
		case "$line" in
		1..*) plan=$((plan + ${line#1..})) ;;
		"ok "*" # skip"*)
			TS=$((TS + 1))
			reasons+=("${line#* # skip}") ;;
		"ok "*) TP=$((TP + 1)) ;;
		"not ok "*) TF=$((TF + 1)) ;;
		"bats-exit "*) rc=${line#bats-exit } ;;
		esac
	done
	ran=$((TP + TF + TS))
	if [ "$ran" -lt "$plan" ]; then
		echo "$what: $plan tests declared, $((plan - ran)) of them never reported: counted as failed"
		TF=$((TF + plan - ran))
	fi
	# bats itself failing (syntax error, no tests found) is a failure too
	if [ "$rc" -ne 0 ] && [ "$TF" -eq 0 ]; then TF=1; fi
	echo "$what: $TP passed, $TF failed, $TS skipped"
	# each reason once, with how many tests it skipped
	[ ${#reasons[@]} -eq 0 ] || printf '%s\n' "${reasons[@]}" | sort | uniq -c |
		while read -r n r; do echo "$what: $n skipped: ${r:-(no reason given)}"; done
}

# bats_tap ARGS...: bats --tap ARGS, then its exit status as "bats-exit N".
bats_tap() { bats --tap "$@" 2>&1; echo "bats-exit $?"; }

run_bats() {
	export BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-180}
	# MIG_BATS_FILES: a subset (make check SANITIZE=thread runs a few)
	# shellcheck disable=SC2086
	tally bats < <(bats_tap ${MIG_BATS_FILES:-tests/bats})
	count "$TP" "$TF" "$TS"
}

# selftest: tally on the fixtures must give exactly what they hold.
run_selftest() {
	local p=0 f=0 got fx out
	out=$(mktemp)
	selftest_case() {
		fx=$1
		QUIET=1 tally fixture < <(bats_tap "tests/fixtures/$fx") >"$out"
		got="$TP $TF $TS|$(tr '\n' '|' <"$out")"
		if [[ $got == "$2"* ]] && [[ $got == *"$3"* ]]; then
			p=$((p + 1))
		else
			echo "selftest: $fx: got '$got', expected '$2' and '$3'"; f=$((f + 1))
		fi
	}
	if ! command -v bats >/dev/null; then
		echo "selftest: bats missing (make deps)"; count 0 1; return
	fi
	selftest_case setup-file-dies.bats "0 3 0|" "3 tests declared, 2 of them never reported: counted as failed"
	selftest_case tally.bats "1 1 1|" "1 skipped: the fixture's reason"
	rm -f "$out"
	echo "selftest: $p passed, $f failed"
	count "$p" "$f"
}

# fuzz: each libFuzzer harness in $MIG_FUZZ_DIR (make fuzz-build) over its
# committed corpus, one pass per harness; skipped, one per harness, when the
# harnesses could not be built (no clang).
run_fuzz() {
	local dir=${MIG_FUZZ_DIR:-} src n p=0 f=0 total=0 line
	for src in tests/fuzz/fuzz-*.c; do total=$((total + 1)); done
	if [ -z "$dir" ]; then
		echo "fuzz: $total skipped: clang missing (make deps)"; count 0 0 "$total"; return
	fi
	while IFS= read -r line; do
		echo "$line"
		case "$line" in
		"fuzz: "*": ok") p=$((p + 1)) ;;
		"fuzz: "*": FAILED"*) f=$((f + 1)) ;;
		esac
	done < <(tests/fuzz/run.sh "$dir" check)
	# a harness that reported nothing (missing binary, script died) failed
	n=$((total - p - f))
	[ "$n" -le 0 ] || { echo "fuzz: $n harnesses did not report"; f=$((f + n)); }
	echo "fuzz: $p passed, $f failed"
	count "$p" "$f"
}

# tsan: every ThreadSanitizer report the programs and unit tests wrote
# under $MIG_TSAN_LOGS (TSAN_OPTIONS log_path) is a failure; a run with
# none is one pass.
run_tsan() {
	local dir=${MIG_TSAN_LOGS:?MIG_TSAN_LOGS: where TSAN_OPTIONS log_path writes} n
	n=$(cat "$dir"/* 2>/dev/null | grep -c '^WARNING: ThreadSanitizer')
	if [ "$n" -eq 0 ]; then
		echo "tsan: no report"; count 1 0; return
	fi
	cat "$dir"/* | grep '^SUMMARY: ThreadSanitizer' | sort | uniq -c | sed 's/^/tsan: /'
	echo "tsan: $n reports, in $dir"
	count 0 "$n"
}

for s in "${suites[@]}"; do
	case "$s" in
	unit) run_unit ;;
	headers) run_headers ;;
	man) run_man ;;
	fuzz) run_fuzz ;;
	bats) run_bats ;;
	selftest) run_selftest ;;
	tsan) run_tsan ;;
	*) echo "run-all: unknown suite '$s'" >&2; exit 64 ;;
	esac
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
