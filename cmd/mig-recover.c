// SPDX-License-Identifier: MIT
/*
 * mig-recover: start recovery of a paused postcopy migration. On the
 * destination --listen gives the (new) address to listen on; on the source
 * --to gives the (new) address to connect to. Idempotent, so cron can call
 * it until the exit status says the migration runs again. The work is in
 * lib/tools/client.c.
 */
#include <stdio.h>

#include "base/cli.h"
#include "base/exitcodes.h"
#include "tools/client.h"

/* Recovery re-sends the destination's received bitmap and reconnects every
 * channel: a minute covers a slow link. */
#define RECOVER_TIMEOUT_MS 60000

struct uris {
	const char *listen, *to;
};

static const struct mig_cli_opt opts[] = {
	{ "listen", 'l', "URI", "destination: listen on URI" },
	{ "to", 'T', "URI", "source: connect to URI" },
	{ NULL },
};

static const struct mig_cli_excl excl[] = {
	{ 'l', 'T', "give exactly one" },
	{ 'n', 'b', NULL },
	{ 0 },
};

static const struct mig_cli_exit exits[] = {
	{ MIG_EXIT_OK, "running again (or completed)" },
	{ MIG_EXIT_FAIL, "failed" },
	{ MIG_EXIT_USAGE, "usage error" },
	{ MIG_EXIT_UNAVAILABLE, "no such migration on this host, or the engine went away" },
	{ MIG_EXIT_PAUSED, "still paused (try again later)" },
	{ MIG_EXIT_TIMEOUT, "--timeout expired in another state" },
	{ 0, NULL },
};

static int opt(void *ctx, int c, const char *arg)
{
	struct uris *u = ctx;

	if (c == 'l')
		u->listen = arg;
	else if (c == 'T')
		u->to = arg;
	return 0;
}

static const struct mig_cli cli = {
	.prog = "mig-recover",
	.synopsis = "[NAME] (--listen URI | --to URI) [options]",
	.about = "Recover paused postcopy migration NAME (default \"default\").\n"
		 "On the destination, --listen URI listens for the source there;\n"
		 "on the source, --to URI connects to the destination there.\n"
		 "URI is tcp:HOST:PORT or unix:PATH. Safe to repeat: nothing is sent\n"
		 "when the migration already runs or is recovering.",
	.opts = opts,
	.common = MIG_CLI_TOOL,
	.help = {
		[MIG_CLI_NAME] = MIG_CLIENT_NAME_HELP,
		[MIG_CLI_TIMEOUT] = "wait at most SECS for the outcome (default 60)",
	},
	.excl = excl,
	.exits = exits,
	.opt = opt,
};

int main(int argc, char **argv)
{
	struct mig_client_sel sel = { 0 };
	struct mig_cli_args a = { .timeout_ms = RECOVER_TIMEOUT_MS, .ready_fd = -1 };
	struct uris u = { 0 };
	int r, first;

	mig_cli_init(argv[0]);
	r = mig_cli_parse(&cli, argc, argv, &a, &u, &first);
	if (r)
		return r == MIG_CLI_DONE ? MIG_EXIT_OK : r;
	r = mig_client_select(&sel, &a, argc, argv, first);
	return r ? r : mig_recover_run(&sel, u.listen, u.to, a.timeout_ms);
}
