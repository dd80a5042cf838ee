// SPDX-License-Identifier: MIT
/*
 * mig-status: show a migration's state and statistics, --watch its events,
 * or --wait-for a state. Options only: the work is in lib/tools/status.c.
 */
#include <stdio.h>

#include "base/cli.h"
#include "base/exitcodes.h"
#include "tools/client.h"
#include "tools/status.h"

static const struct mig_cli_opt opts[] = {
	{ "side", 's', "SIDE", "source or destination (default: whichever\n"
	  "runs here; both if both do)" },
	{ "json", 'j', NULL, "machine-readable output" },
	{ "watch", 'w', NULL, "print every MIGRATION event from the start\n"
	  "until the migration ends (on a terminal,\nunder a live progress line)" },
	{ "wait-for", 'W', "STATES", "wait until the state is one of STATES\n"
	  "(comma-separated)" },
	{ NULL },
};

static const struct mig_cli_excl excl[] = {
	{ 'w', 'W', NULL },
	{ 'n', 'b', NULL },
	{ 's', 'b', "--bus names the bus" },
	{ 0 },
};

static const struct mig_cli_exit exits[] = {
	{ MIG_EXIT_OK, "success (--watch: completed; --wait-for: reached)" },
	{ MIG_EXIT_FAIL, "failed (or the migration ended elsewhere)" },
	{ MIG_EXIT_USAGE, "usage error (also: no NAME with --watch or --wait-for\n"
	  "and several here)" },
	{ MIG_EXIT_UNAVAILABLE, "no such migration on this host, or the engine went away" },
	{ MIG_EXIT_TIMEOUT, "--timeout expired" },
	{ 0, NULL },
};

static void more(FILE *out)
{
	fprintf(out, "States: %s\n", mig_client_state_list());
}

static int opt(void *ctx, int c, const char *arg)
{
	struct mig_status_opts *o = ctx;
	char bad[64];

	switch (c) {
	case 's': return mig_client_side_parse(arg, &o->sel.side);
	case 'j': o->json = true; break;
	case 'w': o->watch = true; break;
	case 'W':
		if (mig_client_parse_states(arg, o->want, &o->nwant, bad, sizeof(bad)) < 0)
			return mig_cli_usage("--wait-for: unknown state '%s' (valid: %s)",
					     bad, mig_client_state_list());
		break;
	}
	return 0;
}

static const struct mig_cli cli = {
	.prog = "mig-status",
	.synopsis = "[NAME] [options]",
	.about = "Show the state and statistics of migration NAME, follow its events,\n"
		 "or wait for a state. Without NAME: \"default\" if it runs here, else\n"
		 "the only migration here; with several, a list of them all.",
	.opts = opts,
	.common = MIG_CLI_TOOL,
	.help = {
		[MIG_CLI_NAME] = MIG_CLIENT_NAME_HELP,
		[MIG_CLI_TIMEOUT] = "give up after SECS (default: wait forever)",
		[MIG_CLI_QUIET] = "less log output, no progress line",
	},
	.excl = excl,
	.more = more,
	.exits = exits,
	.opt = opt,
};

int main(int argc, char **argv)
{
	struct mig_status_opts o = { 0 };
	struct mig_cli_args a = { .timeout_ms = -1, .ready_fd = -1 };
	int r, first;

	mig_cli_init(argv[0]);
	r = mig_cli_parse(&cli, argc, argv, &a, &o, &first);
	if (r)
		return r == MIG_CLI_DONE ? MIG_EXIT_OK : r;
	o.timeout_ms = a.timeout_ms;
	o.quiet = a.quiet > 0;
	r = mig_client_select(&o.sel, &a, argc, argv, first);
	return r ? r : mig_status_run(&o);
}
