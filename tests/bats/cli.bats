#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# The command line every program shares (lib/base/cli.c): --help and
# --version on stdout, a failed write to stdout is a failure, options that
# exclude each other are refused naming both, usage errors are one line and
# "Try 'PROG --help'.", and a short option means the same in every program.

load ../helpers/common

PROGS=(mig-guest mig-send mig-recv mig-pause mig-recover mig-status)

setup() {
	mig_setup
	TOP=$BATS_TEST_DIRNAME/../..
}
teardown() { mig_teardown; }

# The "-x, --long" pairs of a program's option table, "x long" per line.
short_pairs() {
	"$MIG_BIN/$1" --help | sed -nE 's/^ +-([A-Za-z]), +--([a-z][a-z-]*).*/\1 \2/p'
}

@test "--help and --version exit 0 and write to stdout only, in every program" {
	local p
	for p in "${PROGS[@]}"; do
		"$MIG_BIN/$p" --help >"$T/out" 2>"$T/err" 3>&-
		[ -s "$T/out" ] && [ ! -s "$T/err" ] || { echo "# $p --help" >&2; false; }
		head -1 "$T/out" | grep -q "^Usage: $p "
		grep -q "^See $p(1)\.$" "$T/out"
		"$MIG_BIN/$p" -V >"$T/out" 2>"$T/err" 3>&-
		[[ $(cat "$T/out") == "$p "[0-9]* ]]
		[ ! -s "$T/err" ]
	done
}

@test "a failed write to stdout fails: --help and --version into /dev/full" {
	[ -w /dev/full ] || skip "no /dev/full"
	local p
	for p in "${PROGS[@]}"; do
		run bash -c '"$1" --help >/dev/full' _ "$MIG_BIN/$p" 3>&-
		[ "$status" -eq 1 ] || { echo "# $p --help >/dev/full: $status" >&2; false; }
		[[ $output == "$p: write error: No space left on device" ]] ||
			{ echo "# $p: $output" >&2; false; }
		run bash -c '"$1" -V >/dev/full' _ "$MIG_BIN/$p" 3>&-
		[ "$status" -eq 1 ]
		[[ $output == *"write error"* ]]
	done
}

@test "usage errors: one line naming the option, then Try 'PROG --help'" {
	local p
	for p in "${PROGS[@]}"; do
		usage_error "$p" --no-such-option=1
		[[ ${lines[0]} == *"unknown option '--no-such-option'"* ]]
		usage_error "$p" -Z
		[[ ${lines[0]} == *"unknown option '-Z'"* ]]
		usage_error "$p" -vZ
		[[ ${lines[0]} == *"unknown option '-Z'"* ]]
		usage_error "$p" --ready-fd
	done
	for p in mig-send mig-recv mig-pause mig-recover mig-status; do
		usage_error "$p" --name
		[[ ${lines[0]} == *"option '--name' needs an argument"* ]]
		usage_error "$p" -n
		[[ ${lines[0]} == *"option '-n' needs an argument"* ]]
		usage_error "$p" --name 'bad/name'
		[[ ${lines[0]} == *"--name 'bad/name' is not a name"* ]]
	done
	usage_error mig-send --guest g --to unix:x --linger 5000
	[[ ${lines[0]} == *"--linger '5000' is not a number of seconds from 0 to 3600"* ]]
	usage_error mig-recv --listen unix:x --link-timeout 0.01
	[[ ${lines[0]} == *"--link-timeout '0.01'"* ]]
	usage_error mig-recv --listen unix:x --notify ftp://x
	[[ ${lines[0]} == *"--notify 'ftp://x' is not an http:// or https:// URL"* ]]
	usage_error mig-guest --ctl "$T/g.ctl" --ram 4M --ready-fd 57
	[[ ${lines[0]} == *"--ready-fd '57' is not an open file descriptor"* ]]
	usage_error mig-status --timeout soon
	[[ ${lines[0]} == *"--timeout 'soon' is not a number of seconds"* ]]
	usage_error mig-pause one two
	[[ ${lines[0]} == *"unexpected argument 'two'"* ]]
	usage_error mig-status --side left
	[[ ${lines[0]} == *"--side 'left' is not source or destination"* ]]
}

@test "options that exclude each other are refused with both named" {
	local pair
	check_excl() { # PROG A B ARGS...: A and B (with ARGS) are refused
		local p=$1 a=$2 b=$3 an bn
		shift 3
		an=${a%%=*} bn=${b%%=*}
		usage_error "$p" "$@" ${a/=/ } ${b/=/ }
		[[ ${lines[0]} == *"$an and $bn exclude each other"* ]] ||
			{ echo "# $p $a $b: ${lines[0]}" >&2; return 1; }
	}
	local g=(--guest "$T/g.ctl" --to unix:"$T/x")
	check_excl mig-send --postcopy --postcopy-after=2 "${g[@]}"
	check_excl mig-send --postcopy --precopy-only "${g[@]}"
	check_excl mig-send --postcopy-after=2 --precopy-only "${g[@]}"
	check_excl mig-send --resume --postcopy "${g[@]}"
	check_excl mig-send --resume --postcopy-after=1s "${g[@]}"
	check_excl mig-send --resume --precopy-only "${g[@]}"
	check_excl mig-status --watch --wait-for=completed
	for p in mig-pause mig-status; do
		check_excl "$p" --name=a --bus="$T/b.sock"
		check_excl "$p" --side=source --bus="$T/b.sock"
	done
	check_excl mig-recover --name=a --bus="$T/b.sock" --to unix:"$T/x"
	check_excl mig-recover --listen=unix:"$T/a" --to=unix:"$T/b"
	# the operand NAME is --name by position
	usage_error mig-status a --bus "$T/b.sock"
	[[ ${lines[0]} == *"--bus and NAME exclude each other"* ]]
	# either alone is fine as far as the command line goes: 69, nothing there
	expect 69 mig-status --bus "$T/b.sock"
	expect 69 mig-status --name a
}

@test "a short option means the same long option in every program" {
	local p x long rc=0
	declare -A seen where
	for p in "${PROGS[@]}"; do
		while read -r x long; do
			if [ -n "${seen[$x]-}" ] && [ "${seen[$x]}" != "$long" ]; then
				echo "# -$x is --${seen[$x]} in ${where[$x]} but --$long in $p" >&2
				rc=1
			fi
			seen[$x]=$long where[$x]="${where[$x]-} $p"
		done < <(short_pairs "$p")
	done
	[ "${#seen[@]}" -gt 10 ]
	[ "${seen[n]}" = name ] && [ "${seen[b]}" = bus ] && [ "${seen[t]}" = timeout ]
	[ "${seen[v]}" = verbose ] && [ "${seen[q]}" = quiet ]
	[ "${seen[h]}" = help ] && [ "${seen[V]}" = version ]
	return "$rc"
}

@test "a long option has at most one short letter across the programs" {
	local p x long rc=0
	declare -A letter
	for p in "${PROGS[@]}"; do
		while read -r x long; do
			if [ -n "${letter[$long]-}" ] && [ "${letter[$long]}" != "$x" ]; then
				echo "# --$long is -${letter[$long]} and -$x" >&2
				rc=1
			fi
			letter[$long]=$x
		done < <(short_pairs "$p")
	done
	return "$rc"
}

@test "the exit statuses --help lists are those the man page's EXIT STATUS lists" {
	local p help man rc=0
	for p in "${PROGS[@]}"; do
		help=$("$MIG_BIN/$p" --help | sed -n '/^Exit status:$/,$p' |
			sed -nE 's/^  ([0-9]+) .*/\1/p' | sort -n | tr '\n' ' ')
		man=$(awk '/^\.SH /{ on = ($0 ~ /EXIT STATUS/) } on && tp { print; tp = 0 } on && /^\.TP/{ tp = 1 }' \
			"$TOP/man/$p.1" | sed -nE 's/^\.B ([0-9]+)$/\1/p' | sort -n | tr '\n' ' ')
		[ -n "$help" ] || { echo "# $p: no exit statuses in --help" >&2; rc=1; }
		[ "$help" = "$man" ] || { echo "# $p: --help '$help', man page '$man'" >&2; rc=1; }
	done
	return "$rc"
}
