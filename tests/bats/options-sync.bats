#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Options, --help, man page and completions are kept in sync by this test,
# not by memory (util-linux checkcompletion, git t0450): for each program the
# options its --help lists must be exactly those its man page's OPTIONS
# section describes and those its bash and zsh completions offer. Also: every
# man page lints clean and has its sections in the house order, and every
# completion file parses and registers itself.

PROGS=(mig-guest mig-send mig-recv mig-pause mig-recover mig-status)

setup() {
	MIG_BIN=${MIG_BIN:-$BATS_TEST_DIRNAME/../../build/bin}
	TOP=$BATS_TEST_DIRNAME/../..
}

# Long options of the help's option table: the first long option of each
# line that starts with an option ("  -g, --guest PATH  ...",
# "      --postcopy  ..."), so options named in descriptions do not count.
help_long() {
	"$MIG_BIN/$1" --help | sed -nE 's/^ +(-[A-Za-z], +)?(--[a-z][a-z0-9-]*).*/\2/p' | sort -u
}

help_short() {
	"$MIG_BIN/$1" --help | sed -nE 's/^ +(-[A-Za-z]), +--.*/\1/p' | sort -u
}

# The tags of the OPTIONS section: the line after each .TP, roff dashes
# unescaped, split into words.
man_tags() {
	awk '/^\.SH /{ on = ($0 ~ /^\.SH "?OPTIONS"?$/) } on && tp { print; tp = 0 } on && /^\.TP/{ tp = 1 }' \
		"$TOP/man/$1.1" | sed 's/\\-/-/g; s/\\f[BIRP]//g' | tr ' "' '\n\n'
}

man_long() {
	man_tags "$1" | grep -E '^--[a-z][a-z0-9-]*$' | sort -u
}

man_short() {
	man_tags "$1" | grep -E '^-[A-Za-z]$' | sort -u
}

# Every long option written in the file, comments left out.
file_long() {
	grep -v '^[[:space:]]*#' "$1" | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u
}

bash_short() {
	sed -nE 's/^[[:space:]]*local opts="(.*)"$/\1/p' "$TOP/completions/bash/$1" |
		tr ' ' '\n' | grep -E '^-[A-Za-z]$' | sort -u
}

zsh_short() {
	grep -v '^[[:space:]]*#' "$TOP/completions/zsh/_$1" | grep -oE '\{-[A-Za-z]' |
		tr -d '{' | sort -u
}

# same WHAT NAME_A SET_A NAME_B SET_B: equal sets, or the difference and 1.
same() {
	local what=$1 na=$2 a=$3 nb=$4 b=$5
	if [ -z "$a" ]; then
		echo "$what: nothing found in $na"
		return 1
	fi
	if [ "$a" != "$b" ]; then
		echo "$what differ: '<' only in $na, '>' only in $nb:"
		diff <(printf '%s\n' "$a") <(printf '%s\n' "$b") | grep '^[<>]'
		return 1
	fi
}

check_prog() {
	local p=$1 rc=0 h
	[ -x "$MIG_BIN/$p" ] || {
		echo "$MIG_BIN/$p missing: run make first"
		return 1
	}
	h=$(help_long "$p")
	same "$p long options" "--help" "$h" "man/$p.1" "$(man_long "$p")" || rc=1
	same "$p long options" "--help" "$h" "completions/bash/$p" \
		"$(file_long "$TOP/completions/bash/$p")" || rc=1
	same "$p long options" "--help" "$h" "completions/zsh/_$p" \
		"$(file_long "$TOP/completions/zsh/_$p")" || rc=1
	h=$(help_short "$p")
	same "$p short options" "--help" "$h" "man/$p.1" "$(man_short "$p")" || rc=1
	same "$p short options" "--help" "$h" "completions/bash/$p" "$(bash_short "$p")" || rc=1
	same "$p short options" "--help" "$h" "completions/zsh/_$p" "$(zsh_short "$p")" || rc=1
	return "$rc"
}

@test "mig-guest: --help, man page and completions list the same options" {
	check_prog mig-guest
}

@test "mig-send: --help, man page and completions list the same options" {
	check_prog mig-send
}

@test "mig-recv: --help, man page and completions list the same options" {
	check_prog mig-recv
}

@test "mig-pause: --help, man page and completions list the same options" {
	check_prog mig-pause
}

@test "mig-recover: --help, man page and completions list the same options" {
	check_prog mig-recover
}

@test "mig-status: --help, man page and completions list the same options" {
	check_prog mig-status
}

@test "every man page passes mandoc -Tlint -W warning" {
	command -v mandoc >/dev/null || skip "mandoc not installed (make deps)"
	local m out rc=0 n=0
	for m in "$TOP"/man/*.[17]; do
		[ -e "$m" ] || continue
		n=$((n + 1))
		out=$(mandoc -Tlint -W warning "$m" 2>&1)
		if [ -n "$out" ]; then
			printf '%s\n' "$out"
			rc=1
		fi
	done
	[ "$n" -ge 8 ] || { echo "only $n man pages"; rc=1; }
	return "$rc"
}

@test "every man page has its sections in the house order" {
	local want m got rc=0
	want=$(printf '%s\n' NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" \
		ENVIRONMENT FILES EXAMPLES "SEE ALSO")
	for m in "$TOP"/man/*.[17]; do
		got=$(sed -nE 's/^\.SH +"?([^"]*)"?$/\1/p' "$m")
		if [ "$got" != "$want" ]; then
			echo "${m##*/}: sections are:" $got
			rc=1
		fi
	done
	return "$rc"
}

@test "every program has a man page and bash and zsh completions" {
	local p rc=0
	for p in "${PROGS[@]}"; do
		for f in "man/$p.1" "completions/bash/$p" "completions/zsh/_$p"; do
			[ -f "$TOP/$f" ] || { echo "missing: $f"; rc=1; }
		done
	done
	for f in man/mig.7 man/mig-protocol.7; do
		[ -f "$TOP/$f" ] || { echo "missing: $f"; rc=1; }
	done
	return "$rc"
}

@test "bash completions parse and register their program" {
	local p out rc=0
	for p in "${PROGS[@]}"; do
		bash -n "$TOP/completions/bash/$p" || { echo "$p: bash -n failed"; rc=1; continue; }
		out=$(bash -c 'source "$1" && complete -p "$2"' _ "$TOP/completions/bash/$p" "$p" 2>&1) ||
			{ echo "$p: not registered: $out"; rc=1; }
	done
	return "$rc"
}

@test "zsh completions parse" {
	command -v zsh >/dev/null || skip "zsh not installed"
	local p rc=0
	for p in "${PROGS[@]}"; do
		zsh -n "$TOP/completions/zsh/_$p" || { echo "_$p: zsh -n failed"; rc=1; }
		[ "$(head -1 "$TOP/completions/zsh/_$p")" = "#compdef $p" ] ||
			{ echo "_$p: first line is not '#compdef $p'"; rc=1; }
	done
	return "$rc"
}

@test "bash completion: --wait-for offers the states mig-status --help lists" {
	local states
	states=$("$MIG_BIN/mig-status" --help | sed -n 's/^States: *//p' | tr -d ',')
	[ -n "$states" ]
	run bash -c '
		PATH=$1:$PATH
		source "$2"
		COMP_WORDS=(mig-status --wait-for postcopy-active,)
		COMP_CWORD=2
		_mig_status
		printf "%s\n" "${COMPREPLY[@]}"' _ "$MIG_BIN" "$TOP/completions/bash/mig-status"
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq "$(wc -w <<<"$states")" ]
	[[ " ${lines[*]} " == *" postcopy-active,postcopy-recover-setup "* ]]
}

@test "bash completion: --name and NAME offer the migrations on this host" {
	local dir
	dir=$(mktemp -d /tmp/mig.XXXXXX)
	python3 -c 'import socket, sys
for n in sys.argv[1:]:
    socket.socket(socket.AF_UNIX).bind(n)' "$dir/vm1.send.sock" "$dir/vm1.recv.sock" "$dir/db.recv.sock"
	run env MIG_RUNTIME_DIR="$dir" bash -c '
		source "$1"; source "$2"
		COMP_WORDS=(mig-pause --name ""); COMP_CWORD=2; _mig_pause
		echo "name: ${COMPREPLY[*]}"
		COMP_WORDS=(mig-status ""); COMP_CWORD=1; _mig_status
		echo "positional: ${COMPREPLY[*]}"
		COMP_WORDS=(mig-status vm1 ""); COMP_CWORD=2; _mig_status
		echo "second: ${COMPREPLY[*]}"' _ \
		"$TOP/completions/bash/mig-pause" "$TOP/completions/bash/mig-status"
	rm -rf "$dir"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "name: db vm1" ]
	[ "${lines[1]}" = "positional: db vm1" ]
	[ "${lines[2]}" = "second: " ]
}
