// SPDX-License-Identifier: MIT
/*
 * mig-pause: ask an engine to pause its postcopy migration now (from
 * postcopy-active or postcopy-recover) and wait until it is paused. The work
 * is in lib/client.c.
 */
#include <getopt.h>
#include <stdio.h>

#include "tools/client.h"
#include "base/exitcodes.h"
#include "base/log.h"
#include "base/util.h"

/* Pausing is a shutdown of the channels: seconds at most. */
#define PAUSE_TIMEOUT_MS 10000

static void usage(void)
{
	printf("Usage: mig-pause [NAME] [options]\n"
	       "\n"
	       "Pause postcopy migration NAME (default \"default\") on this host and\n"
	       "wait until it is postcopy-paused. Resume it with mig-recover.\n"
	       "\n"
	       "Options:\n"
	       "  -n, --name NAME      the migration (also the first argument)\n"
	       "  -b, --bus PATH       talk to the bus at PATH instead\n"
	       "  -s, --side SIDE      source or destination (needed when both run here)\n"
	       "  -t, --timeout SECS   wait at most SECS for the pause (default 10)\n"
	       "  -v, --verbose        more log output\n"
	       "  -q, --quiet          less log output\n"
	       "  -h, --help           this help\n"
	       "  -V, --version        print the version\n"
	       "\n"
	       "Exit status: 0 paused, 1 the engine refused or the migration ended,\n"
	       "64 usage error, 69 no such migration on this host, 124 --timeout expired.\n");
}

enum { OPT_EXIT_OK = -1, OPT_GO = 0 };

static int parse_opt(struct mig_client_sel *sel, int64_t *timeout_ms, int c,
		     const char *arg)
{
	switch (c) {
	case 'n':
		sel->name = arg;
		return OPT_GO;
	case 'b':
		sel->bus = arg;
		return OPT_GO;
	case 's':
		if (mig_client_side_parse(arg, &sel->side) < 0)
			return mig_client_usage("--side: '%s' is not source or destination",
						arg);
		return OPT_GO;
	case 't':
		if (mig_parse_seconds(arg, timeout_ms) < 0)
			return mig_client_usage("--timeout: '%s' is not a number of seconds",
						arg);
		return OPT_GO;
	case 'v':
		mig_log_adjust(1);
		return OPT_GO;
	case 'q':
		mig_log_adjust(-1);
		return OPT_GO;
	case 'h':
		usage();
		return OPT_EXIT_OK;
	case 'V':
		printf("mig-pause %s\n", MIG_VERSION);
		return OPT_EXIT_OK;
	default:
		return mig_client_usage("invalid option");
	}
}

static int parse_args(struct mig_client_sel *sel, int64_t *timeout_ms, int argc,
		      char **argv)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "bus", required_argument, NULL, 'b' },
		{ "side", required_argument, NULL, 's' },
		{ "timeout", required_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c, r;

	opterr = 0; /* our own one-line messages */
	while ((c = getopt_long(argc, argv, ":n:b:s:t:vqhV", longopts, NULL)) != -1) {
		if (c == ':')
			return mig_client_usage("option '%s' needs an argument",
						argv[optind - 1]);
		if (c == '?')
			return mig_client_usage("unknown option '%s'", argv[optind - 1]);
		r = parse_opt(sel, timeout_ms, c, optarg);
		if (r != OPT_GO)
			return r;
	}
	if (optind < argc && !sel->name)
		sel->name = argv[optind++];
	if (optind < argc)
		return mig_client_usage("unexpected argument '%s'", argv[optind]);
	if (sel->bus && (sel->name || sel->side != MIG_CLIENT_SIDE_ANY))
		return mig_client_usage("--bus names the bus: no NAME or --side with it");
	return OPT_GO;
}

int main(int argc, char **argv)
{
	struct mig_client_sel sel = { 0 };
	int64_t timeout_ms = PAUSE_TIMEOUT_MS;
	int r;

	mig_log_init(argv[0]);
	r = parse_args(&sel, &timeout_ms, argc, argv);
	if (r == OPT_EXIT_OK)
		return MIG_EXIT_OK;
	if (r != OPT_GO)
		return r;
	return mig_pause_run(&sel, timeout_ms);
}
