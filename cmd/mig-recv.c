// SPDX-License-Identifier: MIT
/* mig-recv: receive a postcopy migration into a fresh mig-guest. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/cli.h"
#include "base/exitcodes.h"
#include "dest/dest.h"
#include "tools/client.h"

enum { OPT_PAUSED = 256, OPT_DEFER, OPT_SERIAL };

static const struct mig_cli_opt opts[] = {
	{ "listen", 'l', "URI", "address to accept the migration on" },
	{ "defer", OPT_DEFER, NULL, "listen only where the bus command\n"
	  "migrate-incoming says (QEMU's -incoming defer)" },
	{ "guest-ctl", 'G', "PATH", "control socket of the migrated guest\n"
	  "(default $MIG_RUNTIME_DIR/NAME.guest.sock)" },
	{ "attach", 'A', "PATH", "only take over the guest at PATH" },
	{ "paused-start", OPT_PAUSED, NULL, "keep the guest stopped after switchover\n"
	  "(mig-guest cont starts it)" },
	{ "guest-serial", OPT_SERIAL, "FILE", "the guest's serial output, appended to\n"
	  "FILE (kvm workload; default: its log)" },
	{ NULL },
};

static const struct mig_cli_excl excl[] = {
	{ OPT_DEFER, 'l', "migrate-incoming gives the address" },
	{ OPT_DEFER, 'A', NULL },
	{ 0 },
};

static const struct mig_cli_exit exits[] = {
	{ MIG_EXIT_OK, "completed" },
	{ MIG_EXIT_FAIL, "failed or cancelled (stopped while deferred too),\n"
	  "or the listen address is in use, or nothing to attach to,\n"
	  "or unusable TLS credentials" },
	{ MIG_EXIT_USAGE, "usage error" },
	{ MIG_EXIT_UNAVAILABLE, "userfaultfd not permitted, or no guest at --attach PATH" },
	{ MIG_EXIT_PAUSED, "stopped while paused (the guest is kept)" },
	{ 0, NULL },
};

static int opt(void *ctx, int c, const char *arg)
{
	struct mig_dest_opts *o = ctx;

	switch (c) {
	case 'l':
		if (!mig_client_uri_ok(arg))
			return mig_cli_usage("--listen '%s' is not tcp:HOST:PORT or "
					     "unix:PATH", arg);
		o->listen = arg;
		break;
	case 'G':
	case 'A':
		if (strlen(arg) >= 108)
			return mig_cli_usage("--%s: path too long for a UNIX socket",
					     c == 'A' ? "attach" : "guest-ctl");
		/* the same guest twice is fine; two guests are not */
		if (o->guest_ctl && strcmp(o->guest_ctl, arg))
			return mig_cli_usage("--attach and --guest-ctl name different guests");
		o->guest_ctl = arg;
		o->attach |= c == 'A';
		break;
	case OPT_PAUSED: o->paused_start = true; break;
	case OPT_DEFER: o->defer = true; break;
	case OPT_SERIAL:
		if (!*arg)
			return mig_cli_usage("--guest-serial: the file name is empty");
		o->guest_serial = arg;
		break;
	}
	return 0;
}

static const struct mig_cli cli = {
	.prog = "mig-recv",
	.synopsis = "--listen URI [options]\n"
		    "--defer [options]\n"
		    "--attach PATH [--listen URI] [options]",
	.about = "Wait for a migration at URI (tcp:HOST:PORT or unix:PATH), start\n"
		 "the incoming guest, serve its page faults until every page is\n"
		 "here, and leave the guest running, reachable at --guest-ctl.\n"
		 "A guest past switchover already there (its engine died) is taken\n"
		 "over instead: paused, ready for the source's recovery at URI\n"
		 "(default: the address it recorded).\n"
		 "\n"
		 "With --defer it listens nowhere and waits, in state none, for\n"
		 "the bus command migrate-incoming {\"uri\": URI}, then goes on as\n"
		 "--listen URI would have.",
	.opts = opts,
	.common = MIG_CLI_ENGINE & ~MIG_CLI_TAKES(MIG_CLI_TLS_HOSTNAME), /* the source checks names */
	.excl = excl,
	.exits = exits,
	.opt = opt,
};

int main(int argc, char **argv)
{
	struct mig_dest_opts o = { 0 };
	struct mig_cli_args a = { .name = "default", .ready_fd = -1 };
	enum mig_state final = MIG_STATE_FAILED;
	char bus[108];
	int r, first;

	mig_cli_init(argv[0]);
	r = mig_cli_parse(&cli, argc, argv, &a, &o, &first);
	if (r)
		return r == MIG_CLI_DONE ? MIG_EXIT_OK : r;
	if (first < argc)
		return mig_cli_usage("unexpected argument '%s'", argv[first]);
	if (!o.listen && !o.attach && !o.defer)
		return mig_cli_usage("--listen or --defer is required");
	r = mig_cli_bus_path(&a, "recv", bus, sizeof(bus));
	if (r)
		return r;
	o.common = a;
	r = mig_dest_run(&o, &final);
	if (r == -EADDRINUSE && o.defer)
		mig_cli_error("the status bus is in use: %s", o.common.bus);
	else if (r == -EADDRINUSE)
		mig_cli_error("address in use: %s (or the status bus %s)", o.listen,
			      o.common.bus);
	return r < 0 ? mig_exit_of_errno(r) : mig_client_exit_of_state(final);
}
