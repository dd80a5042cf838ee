// SPDX-License-Identifier: MIT
/*
 * mig-status: show a migration's state and statistics, --watch its events,
 * or --wait-for a state. Options only: the work is in lib/status.c.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/client.h"
#include "base/exitcodes.h"
#include "base/log.h"
#include "tools/status.h"
#include "base/util.h"

static void usage(void)
{
	printf("Usage: mig-status [NAME] [options]\n"
	       "\n"
	       "Show the state and statistics of migration NAME, follow its events,\n"
	       "or wait for a state. Without NAME: \"default\" if it runs here, else\n"
	       "the only migration here; with several, a list of them all.\n"
	       "\n"
	       "Options:\n"
	       "  -n, --name NAME        the migration (also the first argument)\n"
	       "  -b, --bus PATH         talk to the bus at PATH instead\n"
	       "  -s, --side SIDE        source or destination (default: whichever\n"
	       "                         runs here; both if both do)\n"
	       "  -j, --json             machine-readable output\n"
	       "  -w, --watch            print every MIGRATION event from the start\n"
	       "                         until the migration ends (on a terminal,\n"
	       "                         under a live progress line)\n"
	       "  -W, --wait-for STATES  wait until the state is one of STATES\n"
	       "                         (comma-separated)\n"
	       "  -t, --timeout SECS     give up after SECS (default: wait forever)\n"
	       "  -v, --verbose          more log output\n"
	       "  -q, --quiet            less log output, no progress line\n"
	       "  -h, --help             this help\n"
	       "  -V, --version          print the version\n"
	       "\n"
	       "States: %s\n"
	       "\n"
	       "Exit status: 0 success (--watch: completed; --wait-for: reached),\n"
	       "1 failed (or the migration ended elsewhere), 64 usage error\n"
	       "(also: no NAME with --watch or --wait-for and several here),\n"
	       "69 no such migration on this host, 124 --timeout expired.\n",
	       mig_client_state_list());
}

enum { OPT_BAD = MIG_EXIT_USAGE, OPT_EXIT_OK = -1, OPT_GO = 0 };

static int parse_wait(struct mig_status_opts *o, const char *arg)
{
	char bad[64];

	if (mig_client_parse_states(arg, o->want, &o->nwant, bad, sizeof(bad)) < 0)
		return mig_client_usage("--wait-for: unknown state '%s' (valid: %s)",
					bad, mig_client_state_list());
	return OPT_GO;
}

static int parse_opt(struct mig_status_opts *o, int c, const char *arg)
{
	switch (c) {
	case 'n':
		o->sel.name = arg;
		return OPT_GO;
	case 'b':
		o->sel.bus = arg;
		return OPT_GO;
	case 's':
		if (mig_client_side_parse(arg, &o->sel.side) < 0)
			return mig_client_usage("--side: '%s' is not source or destination",
						arg);
		return OPT_GO;
	case 'j':
		o->json = true;
		return OPT_GO;
	case 'w':
		o->watch = true;
		return OPT_GO;
	case 'W':
		return parse_wait(o, arg);
	case 't':
		if (mig_parse_seconds(arg, &o->timeout_ms) < 0)
			return mig_client_usage("--timeout: '%s' is not a number of seconds",
						arg);
		return OPT_GO;
	case 'v':
		mig_log_adjust(1);
		return OPT_GO;
	case 'q':
		o->quiet = true;
		mig_log_adjust(-1);
		return OPT_GO;
	case 'h':
		usage();
		return OPT_EXIT_OK;
	case 'V':
		printf("mig-status %s\n", MIG_VERSION);
		return OPT_EXIT_OK;
	default:
		return mig_client_usage("invalid option");
	}
}

static int parse_args(struct mig_status_opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "bus", required_argument, NULL, 'b' },
		{ "side", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "watch", no_argument, NULL, 'w' },
		{ "wait-for", required_argument, NULL, 'W' },
		{ "timeout", required_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c, r;

	opterr = 0; /* our own one-line messages */
	while ((c = getopt_long(argc, argv, ":n:b:s:jwW:t:vqhV", longopts,
				NULL)) != -1) {
		if (c == ':')
			return mig_client_usage("option '%s' needs an argument",
						argv[optind - 1]);
		if (c == '?')
			return mig_client_usage("unknown option '%s'", argv[optind - 1]);
		r = parse_opt(o, c, optarg);
		if (r != OPT_GO)
			return r;
	}
	if (optind < argc && !o->sel.name)
		o->sel.name = argv[optind++];
	if (optind < argc)
		return mig_client_usage("unexpected argument '%s'", argv[optind]);
	if (o->sel.bus && (o->sel.name || o->sel.side != MIG_CLIENT_SIDE_ANY))
		return mig_client_usage("--bus names the bus: no NAME or --side with it");
	if (o->watch && o->nwant)
		return mig_client_usage("--watch and --wait-for do not go together");
	return OPT_GO;
}

int main(int argc, char **argv)
{
	struct mig_status_opts o = { .timeout_ms = -1 };
	int r;

	mig_log_init(argv[0]);
	r = parse_args(&o, argc, argv);
	if (r == OPT_EXIT_OK)
		return MIG_EXIT_OK;
	if (r != OPT_GO)
		return r;
	return mig_status_run(&o);
}
