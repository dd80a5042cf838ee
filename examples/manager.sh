#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A migration manager that needs no polling: it follows the source's events
# (`mig-status --watch --json`), logs each with its timestamp, and when the
# source reaches postcopy-paused it recovers the migration by itself: first
# `mig-recover --listen` on the destination (if asked to), then
# `mig-recover --to` on the source, again and again with a growing pause
# while mig-recover exits 75 (still paused), until the migration runs
# (postcopy-active) or has completed. Then it goes back to watching.
#
# Usage:
#   examples/manager.sh [NAME | --bus SRC_BUS] --to URI
#                       [--listen URI [--dst-bus DST_BUS]] [options]
#
#   NAME, --name NAME   the migration on this (source) host (default "default")
#   --bus PATH          the source's status bus instead of a name
#   --to URI            where the source reconnects (mig-recover --to)
#   --listen URI        re-arm the destination first (mig-recover --listen)
#   --dst-bus PATH      the destination's bus (default: NAME on this host)
#   --max-tries N       give up a recovery after N attempts (default 0: never)
#   --max-backoff SECS  longest pause between attempts (default 30)
#   --recover-timeout SECS  each mig-recover's --timeout (default 20)
#   --wait-bus SECS     wait this long for the bus to appear, or to come
#                       back after the engine went away (default 30)
#   -h, --help          this help
#
# For example, on the source host of migration vm1:
#   examples/manager.sh vm1 --to tcp:dst-host:4445
# or on one host that reaches both buses (as the tests run it):
#   examples/manager.sh --bus /run/mig/vm1.send.sock --to tcp:127.0.0.1:4445 \
#       --listen tcp:127.0.0.1:4445 --dst-bus /run/mig/vm1.recv.sock
#
# Log lines go to stdout: "TIME  event  STATUS" for every MIGRATION event
# (TIME is the event's own timestamp) and "TIME  manager  ..." for what the
# manager does. Programs from $MIG_BIN or $PATH; JSON read with jq, or
# python3 when jq is missing.
#
# Exit status: 0 the migration completed; 1 it failed or was cancelled, or
# a recovery gave up after --max-tries; 64 usage error; 69 no such migration
# (its bus never appeared, or went away without an end).
set -uo pipefail

usage() { sed -n '/^# Usage:/,/^set /{/^set /d;s/^# \{0,1\}//p}' "$0"; }
err() { echo "manager: $*" >&2; }
usage_err() { err "$*"; echo "Try 'manager.sh --help'." >&2; exit 64; }

name='' bus='' to='' listen='' dst_bus=''
max_tries=0 max_backoff=30 recover_timeout=20 wait_bus=30
while [ $# -gt 0 ]; do
	case $1 in
	-n|--name) name=${2-}; shift 2 || usage_err "$1 needs a value" ;;
	-b|--bus) bus=${2-}; shift 2 || usage_err "$1 needs a value" ;;
	--to) to=${2-}; shift 2 || usage_err "$1 needs a value" ;;
	--listen) listen=${2-}; shift 2 || usage_err "$1 needs a value" ;;
	--dst-bus) dst_bus=${2-}; shift 2 || usage_err "$1 needs a value" ;;
	--max-tries) max_tries=${2-}; shift 2 || usage_err "$1 needs a value" ;;
	--max-backoff) max_backoff=${2-}; shift 2 || usage_err "$1 needs a value" ;;
	--recover-timeout) recover_timeout=${2-}; shift 2 || usage_err "$1 needs a value" ;;
	--wait-bus) wait_bus=${2-}; shift 2 || usage_err "$1 needs a value" ;;
	-h|--help) usage; exit 0 ;;
	-*) usage_err "unknown option '$1'" ;;
	*) [ -z "$name" ] || usage_err "one migration only ('$name' and '$1')"; name=$1; shift ;;
	esac
done
[ -n "$to" ] || usage_err "--to URI is required (where the source reconnects)"
[ -z "$name" ] || [ -z "$bus" ] || usage_err "NAME or --bus, not both"
for n in "$max_tries" "$max_backoff" "$recover_timeout" "$wait_bus"; do
	[[ $n =~ ^[0-9]+$ ]] || usage_err "not a number: '$n'"
done
[ -n "${MIG_BIN:-}" ] && PATH=$MIG_BIN:$PATH

# How to address each side.
if [ -n "$bus" ]; then
	src=(--bus "$bus")
	src_status=(--bus "$bus")
else
	src=(--name "${name:-default}")
	src_status=(--name "${name:-default}" --side source)
fi
if [ -n "$dst_bus" ]; then dst=(--bus "$dst_bus"); else dst=(--name "${name:-default}"); fi

# One JSON reader for the whole script: jq, else python3.
if command -v jq >/dev/null; then
	# event LINE -> "SECONDS MICROSECONDS STATUS" for a MIGRATION event
	event() { jq -r 'select(.event == "MIGRATION") | "\(.timestamp.seconds) \(.timestamp.microseconds) \(.data.status)"' <<<"$1" 2>/dev/null; }
	status_field() { jq -r '.status // empty' 2>/dev/null; }
elif command -v python3 >/dev/null; then
	event() {
		python3 -c 'import json,sys
e = json.loads(sys.argv[1])
if e.get("event") == "MIGRATION":
    print(e["timestamp"]["seconds"], e["timestamp"]["microseconds"], e["data"]["status"])' "$1" 2>/dev/null
	}
	status_field() { python3 -c 'import json,sys; print(json.load(sys.stdin).get("status", ""))' 2>/dev/null; }
else
	err "needs jq or python3 to read JSON"; exit 69
fi

now() { date '+%F %T.%6N'; }
log() { printf '%s  manager  %s\n' "$(now)" "$*"; }
current() { mig-status "${src_status[@]}" --json 2>/dev/null | status_field; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mig-manager.XXXXXX")
watch_pid='' rec_pid=''
cleanup() {
	local p
	for p in $rec_pid $watch_pid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# recover: run mig-recover until the migration runs again. 0 when it runs
# (or completed), 1 when it gave up, 2 when the migration is gone. It runs
# in the background so that events keep being logged as they come; giving
# up leaves a mark and ends the watch, so the main loop sees it at once.
recover() {
	local attempt=0 delay=1 rc state child=
	# a TERM (the manager ending) takes the running mig-recover along
	trap '[ -z "$child" ] || kill "$child" 2>/dev/null; exit 143' TERM
	while :; do
		attempt=$((attempt + 1))
		if [ -n "$listen" ]; then
			rc=0
			mig-recover "${dst[@]}" --listen "$listen" --timeout 1 -q 2>/dev/null & child=$!
			wait "$child" || rc=$?
			case $rc in
			0) log "destination: mig-recover --listen $listen: running" ;;
			75) log "destination: mig-recover --listen $listen: armed, waiting for the source" ;;
			*) log "destination: mig-recover --listen $listen: exit $rc" ;;
			esac
		fi
		rc=0
		mig-recover "${src[@]}" --to "$to" --timeout "$recover_timeout" -q 2>"$tmp/recover.err" & child=$!
		wait "$child" || rc=$?
		case $rc in
		0) log "source: mig-recover --to $to (attempt $attempt): running again"; return 0 ;;
		69) log "source: mig-recover: no such migration any more"; return 2 ;;
		64) err "mig-recover: usage error: $(cat "$tmp/recover.err")"
			echo 64 >"$tmp/gave-up"; kill "$(cat "$tmp/watch.pid")" 2>/dev/null; return 1 ;;
		75) log "source: mig-recover --to $to (attempt $attempt): still paused, next try in ${delay}s" ;;
		*) log "source: mig-recover --to $to (attempt $attempt): exit $rc ($(tr '\n' ' ' <"$tmp/recover.err")), next try in ${delay}s" ;;
		esac
		if [ "$max_tries" -gt 0 ] && [ "$attempt" -ge "$max_tries" ]; then
			log "giving up after $attempt attempts"
			: >"$tmp/gave-up"
			kill "$(cat "$tmp/watch.pid")" 2>/dev/null
			return 1
		fi
		sleep "$delay" & child=$!
		wait "$child"
		delay=$((delay * 2 > max_backoff ? max_backoff : delay * 2))
		# someone else may have recovered it meanwhile, or it ended
		state=$(current)
		case $state in
		postcopy-active|completed) log "the migration is $state again"; return 0 ;;
		"") log "the source's bus is gone"; return 2 ;;
		esac
	done
}

# Follow the events; reconnect if the watch ends without an end state (the
# bus replays its history, so events already logged are skipped by time).
last=0 final=
mkfifo "$tmp/events"
log "watching ${src[*]}; recovery to $to${listen:+ (destination re-armed at $listen)}"
gone_since=$SECONDS
while [ -z "$final" ]; do
	if ! mig-status "${src_status[@]}" --json >/dev/null 2>&1; then
		if [ $((SECONDS - gone_since)) -ge "$wait_bus" ]; then
			err "no migration at ${src[*]} for ${wait_bus}s"
			exit 69
		fi
		sleep 0.5
		continue
	fi
	mig-status "${src_status[@]}" --watch --json >"$tmp/events" 2>"$tmp/watch.err" &
	watch_pid=$!
	echo "$watch_pid" >"$tmp/watch.pid"
	exec {ev}<"$tmp/events"
	while IFS= read -r -u "$ev" line; do
		read -r sec usec status < <(event "$line") || continue
		t=$((sec * 1000000 + usec))
		[ "$t" -gt "$last" ] || continue
		last=$t
		printf '%s.%06d  event    %s\n' "$(date -d "@$sec" '+%F %T')" "$usec" "$status"
		case $status in
		completed|failed|cancelled) final=$status ;;
		postcopy-paused)
			# one recovery at a time: a pause during it is its business
			if [ -n "$rec_pid" ] && kill -0 "$rec_pid" 2>/dev/null; then continue; fi
			# the history replays old pauses too: act on the present only
			[ "$(current)" = postcopy-paused ] || continue
			log "the source is paused: recovering"
			recover {ev}<&- &
			rec_pid=$!
			;;
		esac
	done
	exec {ev}<&-
	wait "$watch_pid" 2>/dev/null
	watch_pid=
	if [ -e "$tmp/gave-up" ]; then
		rc=$(cat "$tmp/gave-up")
		exit "${rc:-1}"
	fi
	[ -n "$final" ] && break
	log "lost the event stream; reconnecting"
	gone_since=$SECONDS
	sleep 0.5
done

if [ -n "$rec_pid" ]; then kill "$rec_pid" 2>/dev/null; wait "$rec_pid" 2>/dev/null; rec_pid=; fi
log "the migration $final"
[ "$final" = completed ]
