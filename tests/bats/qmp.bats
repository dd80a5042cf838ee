#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# The status bus as a QMP client written for QEMU sees it: the schema it
# serves, every reply and event checked against that schema in every state
# of a migration, a whole migration driven by QEMU's commands alone, and
# QEMU's error replies. Links are held mid-handshake by tests/helpers/proxy.py
# so that the short-lived states last until the checker has seen them.

load ../helpers/common

setup() {
	mig_setup
	require_uffd
	H=$BATS_TEST_DIRNAME/../helpers
	SRC_BUS=$(bus_of q send)
	DST_BUS=$(bus_of q recv)
}
teardown() { mig_teardown; }

# q BUS CMD [ARGS]: one command, its reply in $output, checked against the
# schema the bus serves (status 5 if it does not fit); 0 ok, 2 error reply.
# On a bus served (below), through that connection; else a connection of
# its own.
q() {
	if [ -z "${SERVED_IN[$1]:-}" ]; then
		run env MIG_QAPI_CHECK=1 python3 "$H/qmp.py" "$@" 3>&-
		return 0
	fi
	# a line each: JSON has no raw newline but between tokens
	local args=${3:-}
	printf '%s %s\n' "$2" "${args//$'\n'/ }" >&"${SERVED_IN[$1]}"
	if ! read -r -t 10 status output <&"${SERVED_OUT[$1]}"; then
		status=4 output="qmp.py --serve on $1 did not answer"
	fi
}

# serve BUS: q's commands to BUS go through one connection from now on, as
# a QEMU manager's do (a new process and connection for each costs more
# than the command); it ends with the test.
declare -gA SERVED_IN=() SERVED_OUT=()
serve() {
	local n=${#SERVED_IN[@]} fd
	mkfifo "$T/serve$n.in" "$T/serve$n.out"
	MIG_QAPI_CHECK=1 python3 "$H/qmp.py" "$1" --serve <"$T/serve$n.in" >"$T/serve$n.out" \
		2>"$T/serve$n.log" 3>&- &
	echo "$! serve$n" >>"$T/pids"
	exec {fd}>"$T/serve$n.in"
	SERVED_IN[$1]=$fd
	exec {fd}<"$T/serve$n.out"
	SERVED_OUT[$1]=$fd
}

# ok BUS CMD [ARGS]: the command succeeds.
ok() {
	q "$@"
	[ "$status" -eq 0 ] || { echo "# $2 on $1: status $status: $output" >&2; return 1; }
}

# refused BUS CMD ARGS CLASS DESC: an error reply of CLASS whose desc is
# exactly DESC (a leading ~ makes DESC a regular expression).
refused() {
	q "$1" "$2" "$3"
	[ "$status" -eq 2 ] || { echo "# $2 $3 on $1: status $status: $output" >&2; return 1; }
	local cls desc
	cls=$(jq -r .error.class <<<"$output")
	desc=$(jq -r .error.desc <<<"$output")
	[ "$cls" = "$4" ] || { echo "# $2 $3: class $cls, not $4" >&2; return 1; }
	if [[ $5 == "~"* ]]; then
		[[ $desc =~ ${5#\~} ]] || { echo "# $2 $3: '$desc' !~ '${5#\~}'" >&2; return 1; }
	else
		[ "$desc" = "$5" ] || { echo "# $2 $3: '$desc', not '$5'" >&2; return 1; }
	fi
}

# bus_state BUS STATE [SECS]: wait for STATE through QMP alone.
bus_state() {
	run python3 "$H/qmp.py" "$1" --wait-status "$2" "${3:-30}" 3>&-
	[ "$status" -eq 0 ] || { echo "# $1: not $2: $output" >&2; return 1; }
}

# checked SIDE STATE: the schema checker has checked a whole round there.
checked() {
	wait_for 30 "the checker to see the $1 in $2" grep -qx "$1 $2" "$T/progress"
}

# hold NAME LISTEN_PORT TARGET_PORT SPEC: a proxy whose first connection's
# replies are held as --hold-reply SPEC says, until release NAME.
hold() {
	start "$1" python3 "$H/proxy.py" "tcp:127.0.0.1:$2" "tcp:127.0.0.1:$3" \
		--hold-reply "1:$4"
}
release() { kill -USR1 "$(pid_of "$1")"; }

@test "query-qmp-schema on both sides: self-consistent, and QEMU's names and types wherever it shares them" {
	guest src 64M --workload idle
	start recv mig-recv --name q --defer --guest-ctl "$T/dst.ctl"
	start send mig-send --name q --defer --guest "$T/src.ctl"
	for bus in "$SRC_BUS" "$DST_BUS"; do
		run python3 "$H/qapi_check.py" schema "$bus" 3>&-
		[ "$status" -eq 0 ] || { echo "# $bus: $output" >&2; false; }
		ok "$bus" query-commands
		# exactly the commands the schema lists
		diff <(jq -r '.return[].name' <<<"$output" | sort) \
			<(python3 "$H/qmp.py" "$bus" query-qmp-schema 3>&- |
			  jq -r '.return[] | select(."meta-type" == "command") | .name' | sort)
		ok "$bus" query-version
		jq -e '.return.package == "mig 0.1.0" and .return.qemu.major == 0' <<<"$output"
	done
	run python3 "$H/qmp.py" "$SRC_BUS" --greeting 3>&-
	jq -e '.QMP.version.package == "mig 0.1.0" and .QMP.capabilities == []' <<<"$output"
	# mig-protocol(7) documents every command, event, member and
	# capability served, each marked QEMU's or mig's
	local man=$BATS_TEST_DIRNAME/../../man/mig-protocol.7 name missing=
	for name in $(python3 "$H/qmp.py" "$SRC_BUS" query-qmp-schema 3>&- | jq -r '
		.return[] | select(."meta-type" == "command" or ."meta-type" == "event"
			or (."meta-type" == "object" and (.name | test("^Schema|^q_|Version|Command") | not)))
		| .name, (.members[]?.name)' | sort -u) \
		$(python3 "$H/qmp.py" "$SRC_BUS" query-qmp-schema 3>&- | jq -r '
		.return[] | select(.name == "MigrationCapability" or .name == "RunState") | .members[].name'); do
		[[ $name =~ ^[a-z_-]+$|^[A-Z_]+$ ]] || continue
		grep -qF -- "${name//-/\\-}" "$man" || missing+=" $name"
	done
	[ -z "$missing" ] || { echo "# not in mig-protocol(7):$missing" >&2; false; }
	grep -c '\[QEMU\]' "$man" | awk '$1 < 30 { exit 1 }'
	grep -c '\[mig\]' "$man" | awk '$1 < 10 { exit 1 }'
}

@test "every reply and event fits the schema in every state, both sides, paused and recovering included" {
	local dport pport p1port p2port rport dead
	dport=$(free_port) pport=$(free_port) rport=$(free_port) dead=$(free_port)
	p1port=$(free_port) p2port=$(free_port)
	guest src 256M --workload ab
	start recv mig-recv --name q --listen "tcp:127.0.0.1:$dport" --guest-ctl "$T/dst.ctl" \
		--link-timeout 30 --linger 10
	bg cr python3 "$H/qapi_check.py" watch --bus "destination=$DST_BUS" \
		--report "$T/recv.report" --progress "$T/progress"
	checked destination setup
	# the source's setup lasts while the destination's hello is held
	hold p0 "$pport" "$dport" 60
	start send mig-send --name q --guest "$T/src.ctl" --to "tcp:127.0.0.1:$pport" \
		--precopy-only --no-preempt --max-bandwidth 16M --link-timeout 30 --linger 10
	bg cs python3 "$H/qapi_check.py" watch --bus "source=$SRC_BUS" \
		--report "$T/send.report" --progress "$T/progress"
	checked source setup
	release p0
	checked source active
	checked destination active
	# MIGRATION_PASS comes as a pass starts (QEMU's rule): pass 1 is
	# announced while its 16 s at 16 MB/s have barely begun
	q "$SRC_BUS" query-migrate
	jq -e '.return.ram."dirty-sync-count" == 0' <<<"$output"
	qmp "$SRC_BUS" '{"execute":"x-query-events","id":"h"}'
	grep '"id":"h"' <<<"$output" | jq -e '[.return[] | select(.event == "MIGRATION_PASS")] ==
		[.return[] | select(.event == "MIGRATION_PASS" and .data == {"pass": 1})] and
		([.return[] | select(.event == "MIGRATION_PASS")] | length) == 1'
	ok "$SRC_BUS" migrate-start-postcopy
	checked source postcopy-active
	checked destination postcopy-active
	ok "$SRC_BUS" migrate-pause
	checked source postcopy-paused
	checked destination postcopy-paused
	# a failed recovery: nothing listens there
	ok "$DST_BUS" migrate-recover "{\"uri\": \"tcp:127.0.0.1:$rport\"}"
	ok "$SRC_BUS" migrate "{\"uri\": \"tcp:127.0.0.1:$dead\", \"resume\": true}"
	wait_for 20 "the failed attempt" events_have "$SRC_BUS" postcopy-recover-setup
	bus_state "$SRC_BUS" postcopy-paused
	# held before the destination's answer: recover-setup here, recover there
	hold p1 "$p1port" "$rport" 60
	ok "$SRC_BUS" migrate "{\"uri\": \"tcp:127.0.0.1:$p1port\", \"resume\": true}"
	checked source postcopy-recover-setup
	checked destination postcopy-recover
	release p1
	bus_state "$SRC_BUS" postcopy-active
	# held after the hello (40 bytes): postcopy-recover on the source too
	ok "$SRC_BUS" migrate-pause
	bus_state "$DST_BUS" postcopy-paused
	ok "$DST_BUS" migrate-recover "{\"uri\": \"tcp:127.0.0.1:$rport\"}"
	hold p2 "$p2port" "$rport" 60:40
	ok "$SRC_BUS" migrate "{\"uri\": \"tcp:127.0.0.1:$p2port\", \"resume\": true}"
	checked source postcopy-recover
	release p2
	ok "$SRC_BUS" migrate-set-parameters '{"max-postcopy-bandwidth": 0}'
	checked source completed
	checked destination completed
	wait_exit cs 30
	[ "$status" -eq 0 ] || { jq -r '.errors[:20][]' "$T/send.report" >&2; false; }
	wait_exit cr 30
	[ "$status" -eq 0 ] || { jq -r '.errors[:20][]' "$T/recv.report" >&2; false; }
	jq -e '.events > 5 and .replies > 100 and (.states.source | index("postcopy-recover-setup"))' "$T/send.report"
	jq -e '.events > 5 and (.states.destination | index("postcopy-recover"))' "$T/recv.report"
	# the checkers are done with the buses: end --linger (0 still, as it ended)
	kill -TERM "$PID_send" "$PID_recv"
	finish_and_verify
}

# events_have BUS STATUS: a MIGRATION event with STATUS is in the history.
events_have() { [[ " $(history "$1") " == *" $2 "* ]]; }

@test "a manager drives a whole migration through both buses alone, by QEMU's commands" {
	local dport rport dead
	dport=$(free_port) rport=$(free_port) dead=$(free_port)
	guest src 128M --workload ab
	# the incoming guest kept stopped (QEMU's -S): no vCPU asks for pages,
	# so postcopy lasts as long as the pump's limit says, loaded or not
	start recv mig-recv --name q --defer --guest-ctl "$T/dst.ctl" --paused-start --linger 10
	# the manager decides when to switch, as with QEMU
	start send mig-send --name q --defer --guest "$T/src.ctl" --precopy-only --linger 10
	for bus in "$SRC_BUS" "$DST_BUS"; do
		ok "$bus" migrate-set-capabilities '{"capabilities": [
			{"capability": "events", "state": true},
			{"capability": "postcopy-ram", "state": true},
			{"capability": "postcopy-blocktime", "state": true}]}'
		ok "$bus" query-migrate
		jq -e '.return.status == "none"' <<<"$output"
	done
	ok "$SRC_BUS" migrate-set-capabilities \
		'{"capabilities": [{"capability": "postcopy-preempt", "state": true}]}'
	ok "$SRC_BUS" migrate-set-parameters '{"max-bandwidth": 33554432,
		"max-postcopy-bandwidth": 1048576, "downtime-limit": 300}'
	ok "$SRC_BUS" query-migrate-parameters
	jq -e '.return."max-postcopy-bandwidth" == 1048576' <<<"$output"
	ok "$DST_BUS" migrate-incoming "{\"channels\": [{\"channel-type\": \"main\",
		\"addr\": {\"transport\": \"socket\", \"type\": \"inet\",
		\"host\": \"127.0.0.1\", \"port\": \"$dport\"}}]}"
	ok "$DST_BUS" query-status
	jq -e '.return == {"running": false, "status": "inmigrate"}' <<<"$output"
	ok "$SRC_BUS" migrate "{\"uri\": \"tcp:127.0.0.1:$dport\"}"
	bus_state "$SRC_BUS" active
	ok "$SRC_BUS" query-status
	jq -e '.return == {"running": true, "status": "running"}' <<<"$output"
	ok "$SRC_BUS" query-migrate
	jq -e '.return.ram.mbps > 0 and .return.ram."pages-per-second" > 0' <<<"$output"
	ok "$SRC_BUS" migrate-start-postcopy
	bus_state "$SRC_BUS" postcopy-active
	bus_state "$DST_BUS" postcopy-active
	ok "$SRC_BUS" query-status
	jq -e '.return == {"running": false, "status": "postmigrate"}' <<<"$output"
	ok "$DST_BUS" query-status
	jq -e '.return == {"running": false, "status": "paused"}' <<<"$output"
	ok "$DST_BUS" migrate-pause
	bus_state "$SRC_BUS" postcopy-paused
	bus_state "$DST_BUS" postcopy-paused
	# mbps and pages-per-second are current rates: nothing flows, they fall to 0
	wait_for 10 "the source's rates to fall to 0 while paused" rates_zero "$SRC_BUS"
	# a failed recovery, then one by the channels form
	ok "$SRC_BUS" migrate "{\"uri\": \"tcp:127.0.0.1:$dead\", \"resume\": true}"
	wait_for 20 "the failed attempt" events_have "$SRC_BUS" postcopy-recover-setup
	bus_state "$SRC_BUS" postcopy-paused
	ok "$DST_BUS" migrate-recover "{\"uri\": \"tcp:127.0.0.1:$rport\"}"
	ok "$SRC_BUS" migrate "{\"resume\": true, \"channels\": [{\"channel-type\": \"main\",
		\"addr\": {\"transport\": \"socket\", \"type\": \"inet\",
		\"host\": \"127.0.0.1\", \"port\": \"$rport\"}}]}"
	bus_state "$SRC_BUS" postcopy-active
	ok "$SRC_BUS" migrate-set-parameters '{"max-postcopy-bandwidth": 0}'
	bus_state "$SRC_BUS" completed 60
	bus_state "$DST_BUS" completed 60
	ok "$SRC_BUS" query-migrate
	jq -e '.return.status == "completed" and (.return.downtime | type) == "number"
		and .return.ram."postcopy-bytes" > 0 and .return.ram."precopy-bytes" > 0' <<<"$output"
	ok "$DST_BUS" query-migrate
	jq -e '(.return."postcopy-blocktime" | type) == "number"
		and (.return."postcopy-vcpu-blocktime" | length) == 1' <<<"$output"
	# cancelling what has ended is no error, as in QEMU
	ok "$SRC_BUS" migrate_cancel
	events_match_bus "$SRC_BUS" "setup active postcopy-active postcopy-paused postcopy-recover-setup postcopy-paused postcopy-recover-setup postcopy-recover postcopy-active completed"
	events_match_bus "$DST_BUS" "setup active postcopy-active postcopy-paused postcopy-recover postcopy-active completed"
	kill -TERM "$PID_send" "$PID_recv" # end --linger: the exit status is still the migration's
	finish_and_verify
}

# rates_zero BUS: query-migrate's current rates are both 0.
rates_zero() {
	python3 "$H/qmp.py" "$1" query-migrate 3>&- |
		jq -e '.return.ram.mbps == 0 and .return.ram."pages-per-second" == 0'
}

# events_match_bus BUS STATES: the MIGRATION statuses of the history, in order.
events_match_bus() {
	local got
	got=$(history "$1")
	[ "$got" = "$2" ] || { echo "# history of $1: $got" >&2; return 1; }
}

@test "errors as QEMU gives them: class and a description naming the problem, nothing applied" {
	guest src 64M --workload idle
	start recv mig-recv --name q --defer --guest-ctl "$T/dst.ctl"
	start send mig-send --name q --defer --guest "$T/src.ctl"
	serve "$SRC_BUS"
	serve "$DST_BUS"
	for bus in "$SRC_BUS" "$DST_BUS"; do
		refused "$bus" bogus '{}' CommandNotFound "The command bogus has not been found"
		refused "$bus" query-migrate '{"bogus": 1}' GenericError "Parameter 'bogus' is unexpected"
		refused "$bus" migrate-recover '{}' GenericError "Parameter 'uri' is missing"
		refused "$bus" migrate-recover '{"uri": 5}' GenericError \
			"Invalid parameter type for 'uri', expected: string"
		refused "$bus" migrate-set-parameters '{"x-link-timeout": 0.5}' GenericError \
			"Invalid parameter type for 'x-link-timeout', expected: integer"
		refused "$bus" migrate-set-parameters '{"x-link-timeout": 1e300}' GenericError \
			"Invalid parameter type for 'x-link-timeout', expected: integer"
		refused "$bus" migrate-set-parameters '{"x-link-timeout": 10}' GenericError \
			"Parameter 'x-link-timeout' expects an integer in the range of 100 to 3600000 milliseconds"
		refused "$bus" migrate-set-parameters '{"tls-creds": "tls0"}' GenericError \
			"Parameter 'tls-creds': 'tls0' is neither psk:FILE nor x509:DIR"
		refused "$bus" migrate-set-parameters '{"tls-creds": "psk:/nonexistent"}' GenericError \
			"Parameter 'tls-creds': /nonexistent: No such file or directory"
		refused "$bus" migrate-set-parameters '{"tls-hostname": 5}' GenericError \
			"Invalid parameter type for 'tls-hostname', expected: StrOrNull"
		refused "$bus" migrate-set-capabilities \
			'{"capabilities": [{"capability": "multifd", "state": true}]}' GenericError \
			"Parameter 'capabilities[0].capability' does not accept value 'multifd': mig opens bulk channels whenever multifd-channels is above 1, no capability needed"
		refused "$bus" migrate-set-capabilities \
			'{"capabilities": [{"capability": "events", "state": false}]}' GenericError \
			"Capability 'events' cannot be disabled: mig always emits MIGRATION events"
		refused "$bus" migrate-set-capabilities '{"capabilities": [{"state": true}]}' \
			GenericError "Parameter 'capabilities[0].capability' is missing"
	done
	# the address, in either of QEMU's forms: migrate-incoming's as migrate's
	for cmd in "$DST_BUS migrate-incoming" "$SRC_BUS migrate"; do
		set -- $cmd
		refused "$1" "$2" '{"uri": "tcp:127.0.0.1:1", "channels": []}' GenericError \
			"'uri' and 'channels' arguments are mutually exclusive; exactly one of the two should be present in '$2' qmp command"
		refused "$1" "$2" '{}' GenericError "need either 'uri' or 'channels' argument"
		refused "$1" "$2" '{"channels": [{"channel-type": "main",
			"addr": {"transport": "exec", "args": ["nc"]}}]}' GenericError \
			"Parameter 'channels[0].addr.transport' does not accept value 'exec': mig migrates over sockets only (tcp or unix)"
		refused "$1" "$2" '{"channels": [{"channel-type": "main",
			"addr": {"transport": "socket", "type": "inet", "host": "h"}}]}' GenericError \
			"Parameter 'channels[0].addr.port' is missing"
		refused "$1" "$2" '{"uri": "exec:nc"}' GenericError \
			"Invalid migration address 'exec:nc': tcp:HOST:PORT or unix:PATH"
	done
	# source-only ranges, and a refused change leaves the others alone
	ok "$SRC_BUS" migrate-set-parameters '{"max-bandwidth": 1000000}'
	refused "$SRC_BUS" migrate-set-parameters '{"max-bandwidth": 5, "downtime-limit": 3000000}' \
		GenericError "Parameter 'downtime-limit' expects an integer in the range of 0 to 2000000 milliseconds"
	refused "$SRC_BUS" migrate-set-parameters '{"max-bandwidth": -1}' GenericError \
		"~^Parameter 'max-bandwidth' expects an integer in the range of 0 to"
	ok "$SRC_BUS" query-migrate-parameters
	jq -e '.return."max-bandwidth" == 1000000 and .return."downtime-limit" == 300' <<<"$output"
	refused "$SRC_BUS" migrate-set-parameters '{"multifd-channels": 9}' GenericError \
		"Parameter 'multifd-channels' expects a value between 1 and 8"
	ok "$SRC_BUS" migrate-set-parameters '{"multifd-channels": 3}'
	ok "$SRC_BUS" query-migrate-parameters
	jq -e '.return."multifd-channels" == 3' <<<"$output"
	refused "$DST_BUS" migrate-set-parameters '{"max-bandwidth": 5}' GenericError \
		"Parameter 'max-bandwidth' has no effect on the destination: set it on the source"
	refused "$DST_BUS" migrate-set-parameters '{"multifd-channels": 2}' GenericError \
		"Parameter 'multifd-channels' has no effect on the destination: set it on the source"
	refused "$DST_BUS" migrate '{"uri": "tcp:127.0.0.1:1"}' GenericError "~is a source command"
	# a failed listen is the command's error, whatever its errno
	refused "$DST_BUS" migrate-incoming '{"uri": "unix:/nonexistent/in.sock"}' GenericError \
		"migrate-incoming: cannot listen on unix:/nonexistent/in.sock: No such file or directory"
	# QMP itself: members of the request, capabilities negotiation
	run python3 -c '
import json, sys
sys.path.insert(0, sys.argv[1])
import qmp
q = qmp.QMP(sys.argv[2], negotiate=False)
print(json.dumps(q.cmd("qmp_capabilities", {"enable": ["oob"]})))
print(json.dumps(q.cmd("query-migrate")))
print(json.dumps(q.cmd("qmp_capabilities")))
print(json.dumps(q.cmd("query-status", None, bogus=1)))
q.send_raw("{\"execute\": 5, \"id\": 9}")
print(json.dumps(q.read()))
' "$H" "$SRC_BUS" 3>&-
	[ "$status" -eq 0 ]
	jq -s -e '.[0].error == {"class": "GenericError", "desc": "Capability oob not available"}
		and .[1].error.class == "CommandNotFound"
		and .[2].return == {}
		and .[3].error.desc == "QMP input member '"'"'bogus'"'"' is unexpected"
		and .[4].error.desc == "QMP input member '"'"'execute'"'"' must be a string"' <<<"$output"
}
