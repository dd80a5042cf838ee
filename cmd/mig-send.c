// SPDX-License-Identifier: MIT
/* mig-send: migrate a running mig-guest to a destination with postcopy. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/cli.h"
#include "base/exitcodes.h"
#include "base/util.h"
#include "core/dirty.h"
#include "source/source.h"
#include "tools/client.h"

enum { OPT_POSTCOPY = 256, OPT_AFTER, OPT_PRECOPY_ONLY, OPT_DOWNTIME,
       OPT_DIGEST, OPT_MAXBW, OPT_NOPREEMPT, OPT_COMPRESS, OPT_UUID, OPT_RESUME,
       OPT_DEFER, OPT_CHANNELS };

static const struct mig_cli_opt opts[] = {
	{ "guest", 'g', "PATH", "control socket of the running mig-guest" },
	{ "to", 'T', "URI", "destination (mig-recv --listen URI)" },
	{ "resume", OPT_RESUME, NULL, "only take over a migration past switchover" },
	{ "defer", OPT_DEFER, NULL, "attach, then wait for the bus command migrate" },
	{ "postcopy", OPT_POSTCOPY, NULL, "switch to postcopy at once, no precopy" },
	{ "postcopy-after", OPT_AFTER, "N", "switch after N precopy passes, or Ns seconds" },
	{ "precopy-only", OPT_PRECOPY_ONLY, NULL, "never switch to postcopy" },
	{ "downtime-limit", OPT_DOWNTIME, "MS", "stop-and-copy when the rest fits (300)" },
	{ "digest", OPT_DIGEST, NULL, "report a digest of all RAM at switchover" },
	{ "max-bandwidth", OPT_MAXBW, "RATE", "limit the background pump, bytes/s (K/M/G)" },
	{ "no-preempt", OPT_NOPREEMPT, NULL, "send requested pages on the main channel" },
	{ "channels", OPT_CHANNELS, "N", "background streams in postcopy, 1-8 (by cores)" },
	{ "compress", OPT_COMPRESS, NULL, "LZ4-compress page runs (slow links only)" },
	{ "uuid", OPT_UUID, "UUID", "migration UUID (default: random)" },
	{ NULL },
};

#define RESUME_WHY "a migration past switchover has no switchover policy"

static const struct mig_cli_excl excl[] = {
	{ OPT_POSTCOPY, OPT_AFTER, NULL },
	{ OPT_POSTCOPY, OPT_PRECOPY_ONLY, NULL },
	{ OPT_AFTER, OPT_PRECOPY_ONLY, NULL },
	{ OPT_RESUME, OPT_POSTCOPY, RESUME_WHY },
	{ OPT_RESUME, OPT_AFTER, RESUME_WHY },
	{ OPT_RESUME, OPT_PRECOPY_ONLY, RESUME_WHY },
	{ OPT_DEFER, 'T', "migrate gives the destination" },
	{ OPT_DEFER, OPT_RESUME, NULL },
	{ 0 },
};

static const struct mig_cli_exit exits[] = {
	{ MIG_EXIT_OK, "completed" },
	{ MIG_EXIT_FAIL, "failed or cancelled (stopped while deferred too),\n"
	  "or nothing to resume, or unusable TLS credentials" },
	{ MIG_EXIT_USAGE, "usage error" },
	{ MIG_EXIT_UNAVAILABLE, "no guest, no destination, TLS authentication failed,\n"
	  "or userfaultfd not permitted" },
	{ MIG_EXIT_PAUSED, "stopped while paused (the guest is kept)" },
	{ 0, NULL },
};

static void more(FILE *out)
{
	fprintf(out, "Dirty tracking on this host: %s\n"
		"(userfaultfd write-protect in async mode with the PAGEMAP_SCAN\n"
		"ioctl, Linux 6.7+; else soft-dirty: CONFIG_MEM_SOFT_DIRTY)\n",
		mig_dirty_method() ? mig_dirty_method() :
		"none (precopy unavailable; --postcopy works)");
}

static int opt(void *ctx, int c, const char *arg)
{
	struct mig_source_opts *o = ctx;
	unsigned long ul;
	uint8_t uuid[16];

	switch (c) {
	case 'g': o->guest_ctl = arg; break;
	case 'T':
		if (!mig_client_uri_ok(arg))
			return mig_cli_usage("--to '%s' is not tcp:HOST:PORT or unix:PATH",
					     arg);
		o->to = arg;
		break;
	case OPT_RESUME: o->resume = true; break;
	case OPT_DEFER: o->defer = true; break;
	case OPT_POSTCOPY: o->policy.kind = MIG_SWITCH_NOW; break;
	case OPT_PRECOPY_ONLY: o->policy.kind = MIG_SWITCH_NEVER; break;
	case OPT_AFTER:
		if (mig_precopy_parse_after(arg, &o->policy) < 0)
			return mig_cli_usage("--postcopy-after '%s' is not a number of "
					     "passes, or seconds as 2.5s", arg);
		break;
	case OPT_DIGEST: o->digest = true; break;
	case OPT_DOWNTIME:
		if (mig_parse_ulong(arg, 0, 2000000, &ul) < 0)
			return mig_cli_usage("--downtime-limit '%s' is not a number of "
					     "milliseconds", arg);
		o->downtime_limit_ms = ul;
		break;
	case OPT_NOPREEMPT: o->preempt = false; break;
	case OPT_CHANNELS:
		if (mig_parse_ulong(arg, 1, MIG_SOURCE_CHANNELS_MAX, &ul) < 0)
			return mig_cli_usage("--channels '%s' is not a number from 1 "
					     "to %d", arg, MIG_SOURCE_CHANNELS_MAX);
		o->channels = (unsigned)ul;
		break;
	case OPT_COMPRESS: o->compress = true; break;
	case OPT_MAXBW:
		if (mig_parse_size(arg, &o->max_bandwidth) < 0)
			return mig_cli_usage("--max-bandwidth '%s' is not bytes/s "
					     "(K/M/G)", arg);
		break;
	case OPT_UUID:
		if (mig_uuid_parse(arg, uuid) < 0)
			return mig_cli_usage("--uuid '%s' is not a UUID", arg);
		o->uuid = arg;
		break;
	}
	return 0;
}

static const struct mig_cli cli = {
	.prog = "mig-send",
	.synopsis = "--guest PATH --to URI [options]\n"
		    "--guest PATH --resume [--to URI] [options]\n"
		    "--guest PATH --defer [options]",
	.about = "Migrate the running guest whose control socket is PATH to the\n"
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
		 "With --defer it attaches to the guest and waits, in state none,\n"
		 "for the bus command migrate {\"uri\": URI}, then goes on as\n"
		 "--to URI would have.",
	.opts = opts,
	.common = MIG_CLI_ENGINE,
	.excl = excl,
	.more = more,
	.exits = exits,
	.opt = opt,
};

int main(int argc, char **argv)
{
	struct mig_source_opts o = {
		.preempt = true, .downtime_limit_ms = MIG_DOWNTIME_LIMIT_MS_DEFAULT,
	};
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
	if (!o.guest_ctl && o.defer)
		return mig_cli_usage("--guest is required");
	if (!o.guest_ctl || (!o.to && !o.resume && !o.defer))
		return mig_cli_usage("--guest and --to are required");
	r = mig_cli_bus_path(&a, "send", bus, sizeof(bus));
	if (r)
		return r;
	o.common = a;
	r = mig_source_run(&o, &final);
	if (r == -EADDRINUSE)
		mig_cli_error("the status bus is in use: another migration with "
			      "this --name runs here");
	return r < 0 ? mig_exit_of_errno(r) : mig_client_exit_of_state(final);
}
