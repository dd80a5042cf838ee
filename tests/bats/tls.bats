#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# TLS on every channel (mig-protocol(7), TLS): a migration, its pause and
# its recovery run over TLS 1.3 with a pre-shared key or x509 certificates;
# whoever does not authenticate is refused, logged and told as
# MIG_AUTH_FAILED, and never touches the migration; a clear peer and a TLS
# one that meet are told so; bad credentials stop an engine at once.

load ../helpers/common

BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-120}

# Credentials, once for the file: good (the migration's), rogue (a CA of
# its own), impostor (rogue client certificate, good CA: only the
# destination can tell), other (good's CA vouches for CN=other-src, whom
# authz does not list), and keys: psk (the pair's), wrong (same identity,
# another key).
setup_file() {
	command -v certtool >/dev/null && command -v gnutls-cli >/dev/null || return 0
	local d=$BATS_FILE_TMPDIR helpers=$BATS_TEST_DIRNAME/../helpers
	"$helpers/tls-certs.sh" "$d/good"
	"$helpers/tls-certs.sh" "$d/rogue" rogue-
	mkdir "$d/impostor"
	cp "$d/good/ca-cert.pem" "$d/impostor/"
	cp "$d/rogue/client-cert.pem" "$d/rogue/client-key.pem" "$d/impostor/"
	mkdir "$d/other"
	cp "$d/good/ca-cert.pem" "$d/good/ca-key.pem" "$d/other/"
	"$helpers/tls-certs.sh" "$d/other" other-
	echo "src:$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$d/psk"
	echo "src:$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$d/wrong"
	echo "CN=src" >"$d/authz"
}

setup() {
	command -v certtool >/dev/null || skip "certtool (gnutls-bin) is not installed"
	command -v gnutls-cli >/dev/null || skip "gnutls-cli (gnutls-bin) is not installed"
	mig_setup
	require_uffd
	C=$BATS_FILE_TMPDIR
	# an address off the loopback when the host has one: a link in clear
	# there is warned of, so that no warning means TLS
	ADDR=$(ip -4 -o addr show scope global 2>/dev/null | awk '{ sub("/.*", "", $4); print $4; exit }')
	ADDR=${ADDR:-127.0.0.1}
	PORT=$(free_port)
	DST=tcp:$ADDR:$PORT
	SRC_BUS=$(bus_of m send)
	DST_BUS=$(bus_of m recv)
	FAKE=$BATS_TEST_DIRNAME/../helpers/fakepeer.py
	# the source's x509 options: the certificates name localhost, not $ADDR
	X509_SEND=(--tls-x509 "$C/good" --tls-hostname localhost)
}
teardown() { mig_teardown; }

# recv_at ARGS: the destination at $DST, watched as wr.
recv_at() {
	start recv mig-recv --name m --listen "$DST" --guest-ctl "$T/dst.ctl" "$@"
	bg wr mig-status --bus "$DST_BUS" --watch --json
}

# send_to ARGS: a postcopy migration of the guest src to $DST, watched as ws.
send_to() {
	start send mig-send --postcopy --name m --guest "$T/src.ctl" --to "$DST" "$@"
	bg ws mig-status --bus "$SRC_BUS" --watch --json
}

# send_deferred ARGS: the same, attached and waiting for go: its
# parameters can be read and set with nothing under way.
send_deferred() {
	start send mig-send --postcopy --name m --defer --guest "$T/src.ctl" "$@"
	bg ws mig-status --bus "$SRC_BUS" --watch --json
}

# go: the deferred source migrates to $DST.
go() { qmp_ok "$SRC_BUS" migrate "{\"uri\":\"$DST\"}"; }

# busy_guest SIZE: the source's guest, every page written.
busy_guest() {
	guest src "$1" --workload ab
	guest_wrote "$T/src.ctl" $(($(numfmt --from=iec "$1") / 4096))
}

# lasting_guest: the source's guest, 64 MiB, whose postcopy lasts as long as
# the pump's limit (1 MiB/s: 48 s for its 48 MiB not zero) makes it, until
# lifted: no vCPU asks for a page.
lasting_guest() { guest src 64M --workload idle; }

# no_warning NAME: the engine's log holds no warning or error.
no_warning() {
	if grep -E 'warning|error' "$T/$1.log" >&2; then
		echo "# $1 warned (above)" >&2
		return 1
	fi
}

# param BUS NAME: a parameter as query-migrate-parameters reports it.
param() {
	qmp_send "$1" '{"execute":"query-migrate-parameters","id":"p"}' |
		jq -r --arg n "$2" 'select(.id == "p") | .return[$n]'
}

# set_creds BUS JSON: migrate-set-parameters with JSON's tls-* members.
set_creds() { qmp_ok "$1" migrate-set-parameters "$2"; }

# auth_failures BUS: the MIG_AUTH_FAILED events so far, one JSON data a line.
auth_failures() {
	qmp_send "$1" '{"execute":"x-query-events","id":"h"}' |
		jq -c 'select(.id == "h") | .return[] | select(.event == "MIG_AUTH_FAILED") | .data'
}

# uuid_of BUS: the migration's UUID, as a stranger could learn it.
uuid_of() { mig-status --bus "$1" --json 3>&- | jq -r '."x-uuid"'; }

# finished [SRC DST]: both engines exit 0, the guest verifies on the
# destination, and each side's events were exactly SRC and DST (default:
# no pause).
finished() {
	local plain="setup active postcopy-active completed"
	finish_and_verify
	wait_exit ws 10
	wait_exit wr 10
	events_match ws "${1:-$plain}"
	events_match wr "${2:-$plain}"
}

# pause_and_recover: mig-pause, then the destination armed and the source
# recovering to it, each mig-recover's own status checked.
pause_and_recover() {
	state "$SRC_BUS" postcopy-active
	expect 0 mig-pause --bus "$SRC_BUS"
	state "$SRC_BUS" postcopy-paused
	state "$DST_BUS" postcopy-paused
	expect 75 mig-recover --bus "$DST_BUS" --listen "$DST" --timeout 0.5
	expect 0 mig-recover --bus "$SRC_BUS" --to "$DST" --timeout 20
}

# One pause and one recovery, as each side sees them.
PAUSED="setup active postcopy-active postcopy-paused postcopy-recover-setup postcopy-recover postcopy-active completed"
PAUSED_DST="setup active postcopy-active postcopy-paused postcopy-recover postcopy-active completed"

@test "postcopy with a pre-shared key: completes, verifies, no warning, tls-creds on both buses" {
	busy_guest 64M
	recv_at --tls-psk "$C/psk"
	send_deferred --tls-psk "$C/psk"
	assert_eq "source tls-creds" "$(param "$SRC_BUS" tls-creds)" "psk:$C/psk"
	assert_eq "destination tls-creds" "$(param "$DST_BUS" tls-creds)" "psk:$C/psk"
	go
	finished
	no_warning send
	no_warning recv
}

@test "postcopy with x509 and an authz list set on the buses: completes, verifies, no warning" {
	busy_guest 64M
	recv_at
	set_creds "$DST_BUS" "{\"tls-creds\":\"x509:$C/good\",\"tls-authz\":\"$C/authz\"}"
	send_deferred
	set_creds "$SRC_BUS" "{\"tls-creds\":\"x509:$C/good\",\"tls-hostname\":\"localhost\"}"
	assert_eq "source tls-creds" "$(param "$SRC_BUS" tls-creds)" "x509:$C/good"
	assert_eq "source tls-hostname" "$(param "$SRC_BUS" tls-hostname)" localhost
	assert_eq "destination tls-creds" "$(param "$DST_BUS" tls-creds)" "x509:$C/good"
	assert_eq "destination tls-authz" "$(param "$DST_BUS" tls-authz)" "$C/authz"
	go
	finished
	no_warning send
	no_warning recv
}

@test "without TLS, a link off the host is warned of once on each side" {
	[ "$ADDR" != 127.0.0.1 ] || skip "no address off the loopback here"
	guest src 64M --workload ab
	recv_at
	send_to
	finished
	[ "$(grep -c 'neither encrypted nor authenticated' "$T/send.log")" -eq 1 ]
	[ "$(grep -c 'neither encrypted nor authenticated' "$T/recv.log")" -eq 1 ]
}

@test "pause and recovery over TLS with a pre-shared key" {
	lasting_guest
	recv_at --tls-psk "$C/psk"
	send_to --tls-psk "$C/psk" --max-bandwidth 1M
	pause_and_recover
	set_bandwidth "$SRC_BUS" 0
	finished "$PAUSED" "$PAUSED_DST"
}

@test "pause and recovery over TLS with x509" {
	lasting_guest
	recv_at --tls-x509 "$C/good" --tls-authz "$C/authz"
	send_to "${X509_SEND[@]}" --max-bandwidth 1M
	pause_and_recover
	set_bandwidth "$SRC_BUS" 0
	finished "$PAUSED" "$PAUSED_DST"
}

# stranger NAME CREDS...: a mig-send of an idle guest of its own (NAME) to the
# destination's listener, with CREDS; its exit status and output in
# $status and $output.
stranger() {
	local name=$1; shift
	guest "$name" 4M --workload idle
	expect 69 mig-send --postcopy --name "$name" --guest "$T/$name.ctl" --to "$DST" "$@"
}

# refused_as N TEXT: the destination's Nth MIG_AUTH_FAILED event comes
# (bounded: it may follow the refusal the stranger saw), its reason has TEXT.
refused_as() {
	wait_for 5 "MIG_AUTH_FAILED number $1" nth_failure "$1"
	nth_failure "$1" | jq -e --arg t "$2" '.reason | contains($t)' >/dev/null ||
		{ echo "# MIG_AUTH_FAILED number $1 does not say '$2':" >&2; auth_failures "$DST_BUS" >&2; return 1; }
}
nth_failure() {
	local e; e=$(auth_failures "$DST_BUS" | sed -n "$1p")
	[ -n "$e" ] && echo "$e"
}

@test "strangers at an x509 migration's door are refused; it completes undisturbed" {
	lasting_guest
	recv_at --tls-x509 "$C/good" --tls-authz "$C/authz"
	send_to "${X509_SEND[@]}" --max-bandwidth 1M
	state "$SRC_BUS" postcopy-active
	local uuid; uuid=$(uuid_of "$DST_BUS")
	# a source of another CA does not trust the destination; the
	# destination hears it
	stranger s1 --tls-x509 "$C/rogue" --tls-hostname localhost
	says "mig-send: error: engine: TLS with $DST failed: the peer's certificate: The certificate is NOT trusted"
	refused_as 1 "the peer refused us"
	# GnuTLS offers no certificate of a CA the destination does not name
	stranger s2 --tls-x509 "$C/impostor" --tls-hostname localhost
	says "mig-send: error: engine: TLS with $DST failed: the destination refused our certificate"
	refused_as 2 "Certificate is required"
	# one of its own CA whom authz does not list
	stranger s3 --tls-x509 "$C/other" --tls-hostname localhost
	says "mig-send: error: engine: TLS with $DST failed: the destination refused our certificate"
	refused_as 3 "subject 'CN=other-src' is not in the authz list"
	# preempt channels of this migration: another CA's certificate...
	expect 3 "$FAKE" preempt "$DST" "$uuid" --tls "$C/impostor"
	says "refused tls "
	refused_as 4 "the peer's certificate: The certificate is NOT trusted. The certificate issuer is unknown."
	# ... one authz does not list, one that does not trust the destination
	expect 3 "$FAKE" preempt "$DST" "$uuid" --tls "$C/other"
	says "refused tls "
	refused_as 5 "subject 'CN=other-src' is not in the authz list"
	expect 3 "$FAKE" preempt "$DST" "$uuid" --tls "$C/rogue"
	says "refused tls CERTIFICATE_VERIFY_FAILED"
	refused_as 6 "" # its alert in clear: GnuTLS cannot decrypt it
	# ... and one in clear, told so in clear
	expect 3 "$FAKE" preempt "$DST" "$uuid"
	says "TLS is required here (--tls-psk or --tls-x509 on both sides)"
	log_says recv "mig-recv: warning: tls: TLS with $ADDR:"
	state "$SRC_BUS" postcopy-active 1
	set_bandwidth "$SRC_BUS" 0
	finished
	# the destination's watcher heard each refusal too, and no other
	assert_eq "MIG_AUTH_FAILED events seen by wr" \
		"$(jq -c 'select(.event == "MIG_AUTH_FAILED")' "$T/wr.log" | wc -l)" 6
}

@test "strangers at a pre-shared key migration's door are refused; it completes undisturbed" {
	lasting_guest
	recv_at --tls-psk "$C/psk"
	bg wr-human mig-status --bus "$DST_BUS" --watch
	send_to --tls-psk "$C/psk" --max-bandwidth 1M
	state "$SRC_BUS" postcopy-active
	stranger s1 --tls-psk "$C/wrong"
	says "mig-send: error: engine: TLS with $DST failed: the peer refused us (not the same pre-shared key?): "
	refused_as 1 "(not the same pre-shared key, or an unknown identity?)"
	local key prio='NORMAL:-VERS-ALL:+VERS-TLS1.3:-KX-ALL:+ECDHE-PSK'
	key=$(cut -d: -f2 "$C/wrong")
	expect 1 gnutls-cli --pskusername src --pskkey "$key" --priority "$prio" -p "$PORT" "$ADDR" </dev/null
	refused_as 2 "(not the same pre-shared key, or an unknown identity?)"
	expect 1 gnutls-cli --pskusername nobody --pskkey "$key" --priority "$prio" -p "$PORT" "$ADDR" </dev/null
	refused_as 3 "(not the same pre-shared key, or an unknown identity?)"
	expect 3 "$FAKE" main "$DST" close
	says "TLS is required here (--tls-psk or --tls-x509 on both sides)"
	state "$SRC_BUS" postcopy-active 1
	set_bandwidth "$SRC_BUS" 0
	finished
	# the destination's watcher heard each refusal too, and no other
	assert_eq "MIG_AUTH_FAILED events seen by wr" \
		"$(jq -c 'select(.event == "MIG_AUTH_FAILED")' "$T/wr.log" | wc -l)" 3
	# and a person watching reads one line each, with the reason
	wait_exit wr-human 20
	assert_eq "refusals in the human view" \
		"$(grep -c " destination refused $ADDR:[0-9]*: .*pre-shared key" "$T/wr-human.log")" 3
}

# wrong_then_right SEND-CREDS WRONG TEXT: a migration whose source has
# SEND-CREDS (tls-creds), paused; a recovery with the source's tls-creds
# WRONG is refused (the destination's MIG_AUTH_FAILED says TEXT) and
# leaves both paused; with SEND-CREDS again, the next one completes.
wrong_then_right() {
	local right=$1 wrong=$2 text=$3
	state "$SRC_BUS" postcopy-active
	expect 0 mig-pause --bus "$SRC_BUS"
	state "$SRC_BUS" postcopy-paused
	state "$DST_BUS" postcopy-paused
	expect 75 mig-recover --bus "$DST_BUS" --listen "$DST" --timeout 0.5
	set_creds "$SRC_BUS" "{\"tls-creds\":\"$wrong\"}"
	assert_eq "source tls-creds" "$(param "$SRC_BUS" tls-creds)" "$wrong"
	expect 75 mig-recover --bus "$SRC_BUS" --to "$DST" --timeout 20
	says "recovery failed: still postcopy-paused"
	refused_as 1 "$text"
	log_says recv "mig-recv: warning: tls: TLS with $ADDR:"
	log_says send "mig-send: error: engine: TLS with $DST failed: "
	state "$DST_BUS" postcopy-paused 1
	set_creds "$SRC_BUS" "{\"tls-creds\":\"$right\"}"
	expect 0 mig-recover --bus "$SRC_BUS" --to "$DST" --timeout 20
	set_bandwidth "$SRC_BUS" 0
	finished "setup active postcopy-active postcopy-paused postcopy-recover-setup postcopy-paused $(
		)postcopy-recover-setup postcopy-recover postcopy-active completed" "$PAUSED_DST"
}

@test "a recovery with the wrong pre-shared key is refused and stays paused; the right key recovers" {
	lasting_guest
	recv_at --tls-psk "$C/psk"
	send_to --tls-psk "$C/psk" --max-bandwidth 1M
	wrong_then_right "psk:$C/psk" "psk:$C/wrong" "(not the same pre-shared key, or an unknown identity?)"
}

@test "a recovery with a certificate of another CA is refused and stays paused; the right one recovers" {
	lasting_guest
	recv_at --tls-x509 "$C/good" --tls-authz "$C/authz"
	send_to "${X509_SEND[@]}" --max-bandwidth 1M
	wrong_then_right "x509:$C/good" "x509:$C/impostor" "Certificate is required"
}

@test "a source in clear at a TLS destination is refused, which waits on for a TLS source" {
	guest src 64M --workload ab
	recv_at --tls-psk "$C/psk"
	# refused, as by any destination that will not take it: 1
	expect 1 mig-send --postcopy --name m --guest "$T/src.ctl" --to "$DST"
	says "mig-send: error: engine: destination refused the connection: TLS is required here (--tls-psk or --tls-x509 on both sides)"
	guest_runs "$T/src.ctl"
	state "$DST_BUS" setup 1
	send_to --tls-psk "$C/psk"
	finished
}

@test "a TLS source at a clear destination fails and says why; the destination logs it" {
	guest src 64M --workload ab
	recv_at
	expect 69 mig-send --postcopy --name m --guest "$T/src.ctl" --to "$DST" "${X509_SEND[@]}"
	says "mig-send: error: engine: TLS with $DST failed: the peer does not speak TLS 1.3"
	says "is TLS on at both ends?"
	expect 69 mig-send --postcopy --name m --guest "$T/src.ctl" --to "$DST" --tls-psk "$C/psk"
	says "mig-send: error: engine: TLS with $DST failed: the peer does not speak TLS 1.3"
	[ "$(grep -c 'a TLS handshake, but TLS is off here (--tls-psk or --tls-x509 on both sides)' "$T/recv.log")" -eq 2 ]
	guest_runs "$T/src.ctl"
	send_to
	finished
}

# bad_creds FILE TEXT PROG ARGS...: PROG stops at once: exit 1, one line,
# naming FILE and saying TEXT; nothing of it left running.
bad_creds() {
	local file=$1 text=$2 prog=$3; shift 2
	expect 1 "$@"
	[ "${#lines[@]}" -eq 1 ] || { echo "# $prog: not one line: $output" >&2; return 1; }
	assert_eq "$prog's line" "${lines[0]}" "$prog: error: tls: $file: $text"
	no_procs
}

@test "bad credentials at startup: one line naming the file, exit 1, nothing left" {
	local recv=(mig-recv --name m --listen "$DST" --guest-ctl "$T/dst.ctl")
	local send=(mig-send --postcopy --name m --guest "$T/src.ctl" --to "$DST")
	printf 'src\n' >"$T/nocolon"
	printf 'src:00112233445566778899aabbccddee\n' >"$T/short"
	printf 'src:zz112233445566778899aabbccddeeff\n' >"$T/badhex"
	printf '# no key\n\n' >"$T/empty"
	mkdir "$T/x509"
	cp "$C/good/ca-cert.pem" "$T/x509/"
	local p
	for p in recv send; do
		local -n cmd=$p
		bad_creds "$T/missing" "No such file or directory" "${cmd[@]}" --tls-psk "$T/missing"
		bad_creds "$T/nocolon" "not lines of IDENTITY:HEXKEY" "${cmd[@]}" --tls-psk "$T/nocolon"
		bad_creds "$T/short" "a key is shorter than 128 bits" "${cmd[@]}" --tls-psk "$T/short"
		bad_creds "$T/badhex" "not lines of IDENTITY:HEXKEY" "${cmd[@]}" --tls-psk "$T/badhex"
		bad_creds "$T/empty" "holds no key" "${cmd[@]}" --tls-psk "$T/empty"
		bad_creds "$T/empty" "lists nobody" "${cmd[@]}" --tls-psk "$C/psk" --tls-authz "$T/empty"
		usage_error "${cmd[@]}" --tls-psk "$C/psk" --tls-x509 "$C/good"
		says "--tls-psk and --tls-x509 exclude each other"
		no_procs
	done
	bad_creds "$T/x509/server-cert.pem" "No such file or directory" "${recv[@]}" --tls-x509 "$T/x509"
	bad_creds "$T/x509/client-cert.pem" "No such file or directory" "${send[@]}" --tls-x509 "$T/x509"
	# a key that is not the certificate's
	cp "$C/good/server-cert.pem" "$T/x509/"
	cp "$C/rogue/server-key.pem" "$T/x509/"
	run "${recv[@]}" --tls-x509 "$T/x509" 3>&-
	[ "$status" -eq 1 ] && [ "${#lines[@]}" -eq 1 ] && [[ ${lines[0]} == "mig-recv: error: tls: $T/x509/server-cert.pem: "* ]] ||
		{ echo "# $status: $output" >&2; false; }
	no_procs
}

@test "tls-creds set on the bus: bad ones refused with the file named, the old ones kept" {
	recv_at --tls-psk "$C/psk"
	qmp "$DST_BUS" "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"tls-creds\":\"psk:$T/missing\"},\"id\":1}"
	grep '"id":1' <<<"$output" | jq -e --arg d "Parameter 'tls-creds': $T/missing: No such file or directory" '.error.desc == $d'
	qmp "$DST_BUS" '{"execute":"migrate-set-parameters","arguments":{"tls-creds":"pkcs:x"},"id":2}'
	grep '"id":2' <<<"$output" | jq -e '.error.desc | test("neither psk:FILE nor x509:DIR")'
	assert_eq "tls-creds" "$(param "$DST_BUS" tls-creds)" "psk:$C/psk"
	# null, as QEMU's StrOrNull: TLS off for what comes next
	set_creds "$DST_BUS" '{"tls-creds":null}'
	assert_eq "tls-creds" "$(param "$DST_BUS" tls-creds)" ""
	guest src 64M --workload ab
	send_to
	finished
}
