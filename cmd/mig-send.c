// SPDX-License-Identifier: MIT
/* mig-send: migrate a running mig-guest to a destination with postcopy. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "exitcodes.h"
#include "log.h"
#include "source.h"
#include "util.h"

static void usage(void)
{
	printf("Usage: mig-send --guest PATH --to URI [options]\n"
	       "\n"
	       "Migrate the running guest whose control socket is PATH to the\n"
	       "destination listening at URI (tcp:HOST:PORT or unix:PATH), with\n"
	       "postcopy: the guest runs on the destination at once and its pages\n"
	       "follow, on demand and in the background. Returns when the\n"
	       "migration ends.\n"
	       "\n"
	       "Options:\n"
	       "  -g, --guest PATH          control socket of the running mig-guest\n"
	       "  -T, --to URI              destination (mig-recv --listen URI)\n"
	       "      --postcopy            switch to postcopy at once (the default)\n"
	       "      --max-bandwidth RATE  limit the background pump, bytes/s (K/M/G)\n"
	       "      --no-preempt          send requested pages on the main channel\n"
	       "      --compress            LZ4-compress page runs (slow links only)\n"
	       "      --uuid UUID           migration UUID (default: random)\n"
	       "      --link-timeout SECS   silence after which a link is broken (5)\n"
	       "  -n, --name NAME           migration name for the status bus (default)\n"
	       "  -b, --bus PATH            status bus socket (overrides --name)\n"
	       "      --summary             print a summary line when it ends\n"
	       "      --ready-fd N          write a newline to fd N once the bus listens\n"
	       "  -v, --verbose             more log output (repeatable)\n"
	       "  -q, --quiet               less log output\n"
	       "  -h, --help                show this help and exit\n"
	       "  -V, --version             show the version and exit\n"
	       "\n"
	       "Exit status: 0 completed; 1 failed or cancelled; 64 usage error;\n"
	       "69 no guest, no destination, or userfaultfd not permitted;\n"
	       "75 stopped while paused (the guest is kept). See mig-send(1).\n");
}

enum { OPT_POSTCOPY = 256, OPT_MAXBW, OPT_NOPREEMPT, OPT_COMPRESS, OPT_UUID,
       OPT_LINKTO, OPT_READY, OPT_SUMMARY };

static const struct option longopts[] = {
	{ "guest", required_argument, NULL, 'g' },
	{ "to", required_argument, NULL, 'T' },
	{ "postcopy", no_argument, NULL, OPT_POSTCOPY },
	{ "max-bandwidth", required_argument, NULL, OPT_MAXBW },
	{ "no-preempt", no_argument, NULL, OPT_NOPREEMPT },
	{ "compress", no_argument, NULL, OPT_COMPRESS },
	{ "uuid", required_argument, NULL, OPT_UUID },
	{ "link-timeout", required_argument, NULL, OPT_LINKTO },
	{ "name", required_argument, NULL, 'n' },
	{ "bus", required_argument, NULL, 'b' },
	{ "summary", no_argument, NULL, OPT_SUMMARY },
	{ "ready-fd", required_argument, NULL, OPT_READY },
	{ "verbose", no_argument, NULL, 'v' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static int parse(int argc, char **argv, struct mig_source_opts *o)
{
	unsigned long ul;
	int64_t ms;
	uint8_t uuid[16];
	int c;

	while ((c = getopt_long(argc, argv, "g:T:n:b:vqhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'g': o->guest_ctl = optarg; break;
		case 'T': o->to = optarg; break;
		case 'n': o->name = optarg; break;
		case OPT_SUMMARY: o->summary = true; break;
		case 'b': o->bus_path = optarg; break;
		case OPT_POSTCOPY: break;
		case OPT_NOPREEMPT: o->preempt = false; break;
		case OPT_COMPRESS: o->compress = true; break;
		case OPT_MAXBW:
			if (mig_parse_size(optarg, &o->max_bandwidth) < 0)
				return mig_client_usage("bad --max-bandwidth '%s' "
							"(bytes/s, K/M/G)", optarg);
			break;
		case OPT_UUID:
			if (mig_uuid_parse(optarg, uuid) < 0)
				return mig_client_usage("bad --uuid '%s'", optarg);
			o->uuid = optarg;
			break;
		case OPT_LINKTO:
			if (mig_parse_seconds(optarg, &ms) < 0 || ms < 100)
				return mig_client_usage("bad --link-timeout '%s' "
							"(seconds, >= 0.1)", optarg);
			o->link_timeout_ms = (int)MIG_MIN(ms, 3600000);
			break;
		case OPT_READY:
			if (mig_parse_ulong(optarg, 0, 1 << 20, &ul) < 0)
				return mig_client_usage("bad --ready-fd '%s'", optarg);
			o->ready_fd = (int)ul;
			break;
		case 'v': mig_log_adjust(+1); break;
		case 'q': mig_log_adjust(-1); break;
		case 'h': usage(); exit(MIG_EXIT_OK);
		case 'V': printf("mig-send %s\n", MIG_VERSION); exit(MIG_EXIT_OK);
		default: return mig_client_usage("unknown or incomplete option");
		}
	}
	if (optind < argc)
		return mig_client_usage("unexpected argument '%s'", argv[optind]);
	if (!o->guest_ctl || !o->to)
		return mig_client_usage("--guest and --to are required");
	if (!mig_client_uri_ok(o->to))
		return mig_client_usage("bad --to '%s' (tcp:HOST:PORT or unix:PATH)",
					o->to);
	if (!mig_name_valid(o->name))
		return mig_client_usage("bad --name '%s'", o->name);
	return 0;
}

static int exit_for(int r, enum mig_state final)
{
	switch (r) {
	case 0:
		break;
	case -ENOENT: case -ECONNREFUSED: case -ETIMEDOUT: case -EHOSTUNREACH:
	case -ENETUNREACH: case -ENXIO: case -EPERM: case -EACCES:
		return MIG_EXIT_UNAVAILABLE;
	case -EADDRINUSE:
		mig_client_error("the status bus is in use: another migration "
				 "with this --name runs here");
		return MIG_EXIT_FAIL;
	default:
		return MIG_EXIT_FAIL;
	}
	if (final == MIG_STATE_COMPLETED)
		return MIG_EXIT_OK;
	return final == MIG_STATE_POSTCOPY_PAUSED ? MIG_EXIT_PAUSED : MIG_EXIT_FAIL;
}

int main(int argc, char **argv)
{
	struct mig_source_opts o = { .name = "default", .preempt = true,
				     .ready_fd = -1 };
	char bus[108];
	enum mig_state final = MIG_STATE_FAILED;
	int r;

	mig_log_init(argv[0]);
	r = parse(argc, argv, &o);
	if (r)
		return r;
	if (!o.bus_path) {
		r = mig_bus_path(o.name, "send", bus, sizeof(bus), true);
		if (r < 0) {
			mig_client_error("cannot make the bus path for '%s': %s",
					 o.name, strerror(-r));
			return MIG_EXIT_FAIL;
		}
		o.bus_path = bus;
	}
	r = mig_source_run(&o, &final);
	return exit_for(r, final);
}
