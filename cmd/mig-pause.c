// SPDX-License-Identifier: MIT
/*
 * mig-pause: ask an engine to pause its postcopy migration now (from
 * postcopy-active or postcopy-recover) and wait until it is paused. The work
 * is in lib/tools/client.c.
 */
#include <stdio.h>

#include "base/cli.h"
#include "base/exitcodes.h"
#include "tools/client.h"

/* Pausing is a shutdown of the channels: seconds at most. */
#define PAUSE_TIMEOUT_MS 10000

static const struct mig_cli_opt opts[] = {
	{ "side", 's', "SIDE", "source or destination (needed when both run here)" },
	{ NULL },
};

static const struct mig_cli_excl excl[] = {
	{ 'n', 'b', NULL },
	{ 's', 'b', "--bus names the bus" },
	{ 0 },
};

static const struct mig_cli_exit exits[] = {
	{ MIG_EXIT_OK, "paused (now, or it already was)" },
	{ MIG_EXIT_FAIL, "the engine refused or the migration ended" },
	{ MIG_EXIT_USAGE, "usage error" },
	{ MIG_EXIT_UNAVAILABLE, "no such migration on this host, or the engine went away" },
	{ MIG_EXIT_TIMEOUT, "--timeout expired" },
	{ 0, NULL },
};

static int opt(void *ctx, int c, const char *arg)
{
	struct mig_client_sel *sel = ctx;

	return c == 's' ? mig_client_side_parse(arg, &sel->side) : 0;
}

static const struct mig_cli cli = {
	.prog = "mig-pause",
	.synopsis = "[NAME] [options]",
	.about = "Pause postcopy migration NAME (default \"default\") on this host and\n"
		 "wait until it is postcopy-paused. Resume it with mig-recover.",
	.opts = opts,
	.common = MIG_CLI_TOOL,
	.help = {
		[MIG_CLI_NAME] = MIG_CLIENT_NAME_HELP,
		[MIG_CLI_TIMEOUT] = "wait at most SECS for the pause (default 10)",
	},
	.excl = excl,
	.exits = exits,
	.opt = opt,
};

int main(int argc, char **argv)
{
	struct mig_client_sel sel = { 0 };
	struct mig_cli_args a = { .timeout_ms = PAUSE_TIMEOUT_MS, .ready_fd = -1 };
	int r, first;

	mig_cli_init(argv[0]);
	r = mig_cli_parse(&cli, argc, argv, &a, &sel, &first);
	if (r)
		return r == MIG_CLI_DONE ? MIG_EXIT_OK : r;
	r = mig_client_select(&sel, &a, argc, argv, first);
	return r ? r : mig_pause_run(&sel, a.timeout_ms);
}
