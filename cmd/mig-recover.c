// SPDX-License-Identifier: MIT
/*
 * mig-recover: start recovery of a paused postcopy migration. On the
 * destination --listen gives the (new) address to listen on; on the source
 * --to gives the (new) address to connect to. Idempotent, so cron can call
 * it until the exit status says the migration runs again. The work is in
 * lib/client.c.
 */
#include <getopt.h>
#include <stdio.h>

#include "tools/client.h"
#include "base/exitcodes.h"
#include "base/log.h"
#include "base/util.h"

/* Recovery re-sends the destination's received bitmap and reconnects every
 * channel: a minute covers a slow link. */
#define RECOVER_TIMEOUT_MS 60000

struct opts {
	struct mig_client_sel sel;
	const char *listen_uri;
	const char *to_uri;
	int64_t timeout_ms;
};

static void usage(void)
{
	printf("Usage: mig-recover [NAME] (--listen URI | --to URI) [options]\n"
	       "\n"
	       "Recover paused postcopy migration NAME (default \"default\").\n"
	       "On the destination, --listen URI listens for the source there;\n"
	       "on the source, --to URI connects to the destination there.\n"
	       "URI is tcp:HOST:PORT or unix:PATH. Safe to repeat: nothing is sent\n"
	       "when the migration already runs or is recovering.\n"
	       "\n"
	       "Options:\n"
	       "  -l, --listen URI     destination: listen on URI\n"
	       "  -T, --to URI         source: connect to URI\n"
	       "  -n, --name NAME      the migration (also the first argument)\n"
	       "  -b, --bus PATH       talk to the bus at PATH instead\n"
	       "  -t, --timeout SECS   wait at most SECS for the outcome (default 60)\n"
	       "  -v, --verbose        more log output\n"
	       "  -q, --quiet          less log output\n"
	       "  -h, --help           this help\n"
	       "  -V, --version        print the version\n"
	       "\n"
	       "Exit status: 0 running again (or completed), 1 failed, 64 usage error,\n"
	       "69 no such migration on this host, 75 still paused (try again later),\n"
	       "124 --timeout expired in another state.\n");
}

enum { OPT_EXIT_OK = -1, OPT_GO = 0 };

static int parse_opt(struct opts *o, int c, const char *arg)
{
	switch (c) {
	case 'l':
		o->listen_uri = arg;
		return OPT_GO;
	case 'T':
		o->to_uri = arg;
		return OPT_GO;
	case 'n':
		o->sel.name = arg;
		return OPT_GO;
	case 'b':
		o->sel.bus = arg;
		return OPT_GO;
	case 't':
		if (mig_parse_seconds(arg, &o->timeout_ms) < 0)
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
		printf("mig-recover %s\n", MIG_VERSION);
		return OPT_EXIT_OK;
	default:
		return mig_client_usage("invalid option");
	}
}

static int parse_args(struct opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "to", required_argument, NULL, 'T' },
		{ "name", required_argument, NULL, 'n' },
		{ "bus", required_argument, NULL, 'b' },
		{ "timeout", required_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c, r;

	opterr = 0; /* our own one-line messages */
	while ((c = getopt_long(argc, argv, ":l:T:n:b:t:vqhV", longopts, NULL)) != -1) {
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
	if (o->sel.bus && o->sel.name)
		return mig_client_usage("--bus names the bus: no NAME with it");
	if (!o->listen_uri == !o->to_uri)
		return mig_client_usage("give exactly one of --listen URI and --to URI");
	return OPT_GO;
}

int main(int argc, char **argv)
{
	struct opts o = { .timeout_ms = RECOVER_TIMEOUT_MS };
	int r;

	mig_log_init(argv[0]);
	r = parse_args(&o, argc, argv);
	if (r == OPT_EXIT_OK)
		return MIG_EXIT_OK;
	if (r != OPT_GO)
		return r;
	return mig_recover_run(&o.sel, o.listen_uri, o.to_uri, o.timeout_ms);
}
