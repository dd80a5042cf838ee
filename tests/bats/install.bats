#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# make install puts programs, man pages, completions and examples under
# PREFIX/DESTDIR, the installed programs run, and make uninstall removes
# exactly what install put there.

setup() {
	D=$(mktemp -d /tmp/mig-inst.XXXXXX)
	TOP=$BATS_TEST_DIRNAME/../..
}
teardown() { rm -rf "$D"; }

@test "make install and uninstall under DESTDIR and PREFIX" {
	run make -s -C "$TOP" install DESTDIR="$D" PREFIX=/opt/mig 3>&-
	[ "$status" -eq 0 ] || { echo "$output"; false; }
	for p in mig-guest mig-send mig-recv mig-pause mig-recover mig-status; do
		[ -x "$D/opt/mig/bin/$p" ]
		[ -f "$D/opt/mig/share/man/man1/$p.1" ]
		[ -f "$D/opt/mig/share/bash-completion/completions/$p" ]
		[ -f "$D/opt/mig/share/zsh/vendor-completions/_$p" ]
		run "$D/opt/mig/bin/$p" --version 3>&-
		[ "$status" -eq 0 ]
	done
	[ -f "$D/opt/mig/share/man/man7/mig.7" ]
	[ -f "$D/opt/mig/share/man/man7/mig-protocol.7" ]
	[ -x "$D/opt/mig/share/mig/cron-recover.sh" ]
	[ -f "$D/opt/mig/share/mig/systemd/mig-send@.service" ]
	[ -f "$D/opt/mig/share/mig/systemd/mig-recv@.service" ]
	run make -s -C "$TOP" uninstall DESTDIR="$D" PREFIX=/opt/mig 3>&-
	[ "$status" -eq 0 ]
	run find "$D" -type f
	[ -z "$output" ] || { echo "# left behind: $output" >&2; false; }
}
