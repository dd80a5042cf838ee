// SPDX-License-Identifier: MIT
/* mig-send: migrate a running mig-guest to a destination with postcopy. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/client.h"
#include "core/dirty.h"
#include "base/exitcodes.h"
#include "base/log.h"
#include "source/source.h"
#include "base/util.h"

static void usage(void)
{
	printf("Usage: mig-send --guest PATH --to URI [options]\n"
	       "       mig-send --guest PATH --resume [--to URI] [options]\n"
	       "\n"
	       "Migrate the running guest whose control socket is PATH to the\n"
	       "destination listening at URI (tcp:HOST:PORT or unix:PATH), with\n"
	       "precopy first (pages are sent while the guest runs, then what it\n"
	       "dirtied, pass after pass), completing by stop-and-copy when the\n"
	       "rest fits the downtime limit, else switching to postcopy: the guest\n"
	       "then runs on the destination and its remaining pages follow, on\n"
	       "demand and in the background. Returns when the migration ends.\n"
	       "\n"
	       "A guest handed over by an engine that died after switchover is\n"
	       "taken over instead: its migration resumes through recovery, to\n"
	       "URI or the destination it recorded.\n"
	       "\n"
	       "Options:\n"
	       "  -g, --guest PATH          control socket of the running mig-guest\n"
	       "  -T, --to URI              destination (mig-recv --listen URI)\n"
	       "      --resume              only take over a migration past switchover\n"
	       "      --postcopy            switch to postcopy at once, no precopy\n"
	       "      --postcopy-after N    switch after N precopy passes, or Ns seconds\n"
	       "      --precopy-only        never switch to postcopy\n"
	       "      --downtime-limit MS   stop-and-copy when the rest fits (300)\n"
	       "      --digest              report a digest of all RAM at switchover\n"
	       "      --max-bandwidth RATE  limit the background pump, bytes/s (K/M/G)\n"
	       "      --no-preempt          send requested pages on the main channel\n"
	       "      --compress            LZ4-compress page runs (slow links only)\n"
	       "      --uuid UUID           migration UUID (default: random)\n"
	       "      --link-timeout SECS   silence after which a link is broken (5)\n"
	       "  -n, --name NAME           migration name for the status bus (default)\n"
	       "  -b, --bus PATH            status bus socket (overrides --name)\n"
	       "      --linger SECS         keep the status bus up SECS after the end\n"
	       "      --summary             print a summary line when it ends\n"
	       "      --notify URL          POST every event as JSON to URL (http(s)://)\n"
	       "      --ready-fd N          write a newline to fd N once the bus listens\n"
	       "  -v, --verbose             more log output (repeatable)\n"
	       "  -q, --quiet               less log output\n"
	       "  -h, --help                show this help and exit\n"
	       "  -V, --version             show the version and exit\n"
	       "\n"
	       "Dirty tracking on this host: %s\n"
	       "(userfaultfd write-protect in async mode with the PAGEMAP_SCAN\n"
	       "ioctl, Linux 6.7+; else soft-dirty: CONFIG_MEM_SOFT_DIRTY)\n"
	       "\n"
	       "Exit status: 0 completed; 1 failed or cancelled, or nothing to\n"
	       "resume; 64 usage error;\n"
	       "69 no guest, no destination, or userfaultfd not permitted;\n"
	       "75 stopped while paused (the guest is kept). See mig-send(1).\n",
	       mig_dirty_method() ? mig_dirty_method() :
	       "none (precopy unavailable; --postcopy works)");
}

enum { OPT_POSTCOPY = 256, OPT_AFTER, OPT_PRECOPY_ONLY, OPT_DOWNTIME,
       OPT_DIGEST, OPT_MAXBW, OPT_NOPREEMPT, OPT_COMPRESS, OPT_UUID,
       OPT_LINKTO, OPT_READY, OPT_SUMMARY, OPT_LINGER, OPT_NOTIFY, OPT_RESUME };

static const struct option longopts[] = {
	{ "guest", required_argument, NULL, 'g' },
	{ "to", required_argument, NULL, 'T' },
	{ "resume", no_argument, NULL, OPT_RESUME },
	{ "postcopy", no_argument, NULL, OPT_POSTCOPY },
	{ "postcopy-after", required_argument, NULL, OPT_AFTER },
	{ "precopy-only", no_argument, NULL, OPT_PRECOPY_ONLY },
	{ "downtime-limit", required_argument, NULL, OPT_DOWNTIME },
	{ "digest", no_argument, NULL, OPT_DIGEST },
	{ "max-bandwidth", required_argument, NULL, OPT_MAXBW },
	{ "no-preempt", no_argument, NULL, OPT_NOPREEMPT },
	{ "compress", no_argument, NULL, OPT_COMPRESS },
	{ "uuid", required_argument, NULL, OPT_UUID },
	{ "link-timeout", required_argument, NULL, OPT_LINKTO },
	{ "name", required_argument, NULL, 'n' },
	{ "bus", required_argument, NULL, 'b' },
	{ "summary", no_argument, NULL, OPT_SUMMARY },
	{ "linger", required_argument, NULL, OPT_LINGER },
	{ "notify", required_argument, NULL, OPT_NOTIFY },
	{ "ready-fd", required_argument, NULL, OPT_READY },
	{ "verbose", no_argument, NULL, 'v' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* --notify: only what the webhook module can deliver, checked here so that
 * a typo is a usage error before anything starts. */
static int parse(int argc, char **argv, struct mig_source_opts *o)
{
	unsigned long ul;
	int64_t ms;
	uint8_t uuid[16];
	int c, policies = 0;

	while ((c = getopt_long(argc, argv, "g:T:n:b:vqhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'g': o->guest_ctl = optarg; break;
		case 'T': o->to = optarg; break;
		case OPT_RESUME: o->resume = true; break;
		case 'n': o->name = optarg; break;
		case OPT_SUMMARY: o->summary = true; break;
		case OPT_LINGER:
			if (mig_parse_seconds(optarg, &ms) < 0 || ms > 3600000)
				return mig_client_usage("bad --linger '%s' (seconds)",
							optarg);
			o->linger_ms = (int)ms;
			break;
		case 'b': o->bus_path = optarg; break;
		case OPT_NOTIFY:
			if (!mig_client_url_ok(optarg))
				return mig_client_usage("bad --notify '%s' (an http:// "
							"or https:// URL)", optarg);
			o->notify_url = optarg;
			break;
		case OPT_POSTCOPY:
			o->policy.kind = MIG_SWITCH_NOW;
			policies++;
			break;
		case OPT_PRECOPY_ONLY:
			o->policy.kind = MIG_SWITCH_NEVER;
			policies++;
			break;
		case OPT_DIGEST: o->digest = true; break;
		case OPT_AFTER:
			if (mig_precopy_parse_after(optarg, &o->policy) < 0)
				return mig_client_usage("bad --postcopy-after '%s' "
							"(passes, or seconds as 2.5s)", optarg);
			policies++;
			break;
		case OPT_DOWNTIME:
			if (mig_parse_ulong(optarg, 0, 2000000, &ul) < 0)
				return mig_client_usage("bad --downtime-limit '%s' "
							"(milliseconds)", optarg);
			o->downtime_limit_ms = ul;
			break;
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
	if (policies > 1)
		return mig_client_usage("--postcopy, --postcopy-after and "
					"--precopy-only exclude each other");
	if (!o->guest_ctl || (!o->to && !o->resume))
		return mig_client_usage("--guest and --to are required");
	if (o->resume && policies)
		return mig_client_usage("--resume takes over a migration past "
					"switchover: no switchover policy applies");
	if (o->to && !mig_client_uri_ok(o->to))
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
	struct mig_source_opts o = {
		.name = "default", .preempt = true, .ready_fd = -1,
		.downtime_limit_ms = MIG_DOWNTIME_LIMIT_MS_DEFAULT,
	};
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
