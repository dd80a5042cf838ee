#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run the libFuzzer harnesses built in DIR (make fuzz-build).
#   run.sh DIR SECONDS [NAME...]  fuzz each for SECONDS over a copy of its
#                                 corpus in DIR/corpus (new inputs stay there),
#                                 with tests/fuzz/dict/NAME.dict if there is one
#   run.sh DIR check [NAME...]    run each once over its committed corpus and
#                                 print "fuzz: NAME: ok" or "fuzz: NAME: FAILED"
# Exit 1 if any harness crashed, leaked, timed out or failed a check.
set -u
cd "$(dirname "$0")/../.."
dir=${1:?usage: run.sh DIR SECONDS|check [NAME...]}
mode=${2:?usage: run.sh DIR SECONDS|check [NAME...]}
shift 2
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
	for src in tests/fuzz/fuzz-*.c; do
		n=${src#tests/fuzz/fuzz-}
		names+=("${n%.c}")
	done
fi

# Longest input per harness: a few messages of each kind fit (PAGES runs of
# a few raw pages), a datagram a little over MIG_CTL_MSG_MAX, JSON of a few
# kilobytes (a reply with nested members).
max_len() {
	case "$1" in
	wire) echo 70000 ;;
	return-path) echo 16384 ;;
	ctl) echo 600 ;;
	state) echo 20000 ;;
	*) echo 8192 ;;
	esac
}

rc=0
for n in "${names[@]}"; do
	bin=$dir/fuzz-$n
	if [ ! -x "$bin" ]; then
		echo "fuzz: $n: FAILED (no $bin: make fuzz-build)"; rc=1; continue
	fi
	if [ "$mode" = check ]; then
		# each committed input exactly once: a regression comes back here
		if "$bin" -max_len="$(max_len "$n")" tests/fuzz/corpus/"$n"/* \
			>"$dir/fuzz-$n.check.log" 2>&1; then
			echo "fuzz: $n: ok"
		else
			tail -n 30 "$dir/fuzz-$n.check.log"
			echo "fuzz: $n: FAILED (log: $dir/fuzz-$n.check.log)"; rc=1
		fi
		continue
	fi
	mkdir -p "$dir/corpus/$n" "$dir/artifacts"
	cp -n tests/fuzz/corpus/"$n"/* "$dir/corpus/$n/"
	echo "fuzz: $n for ${mode}s"
	dict=()
	[ ! -f tests/fuzz/dict/"$n".dict ] || dict=(-dict=tests/fuzz/dict/"$n".dict)
	"$bin" -max_total_time="$mode" -max_len="$(max_len "$n")" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
		-artifact_prefix="$dir/artifacts/$n-" "$dir/corpus/$n" \
		>"$dir/fuzz-$n.log" 2>&1 || {
		tail -n 40 "$dir/fuzz-$n.log"
		echo "fuzz: $n: FAILED (log: $dir/fuzz-$n.log, input: $dir/artifacts/)"
		rc=1; continue; }
	grep -E '^#[0-9]+.*(DONE|cov:)' "$dir/fuzz-$n.log" | tail -n 1 | sed "s/^/fuzz: $n: /"
done
exit $rc
