// SPDX-License-Identifier: MIT
/* mig-recv: receive a postcopy migration into a fresh mig-guest. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/client.h"
#include "dest/dest.h"
#include "base/exitcodes.h"
#include "base/log.h"
#include "base/util.h"

static void usage(void)
{
	printf("Usage: mig-recv --listen URI [options]\n"
	       "       mig-recv --attach PATH [--listen URI] [options]\n"
	       "\n"
	       "Wait for a migration at URI (tcp:HOST:PORT or unix:PATH), start\n"
	       "the incoming guest, serve its page faults until every page is\n"
	       "here, and leave the guest running, reachable at --guest-ctl.\n"
	       "A guest past switchover already there (its engine died) is taken\n"
	       "over instead: paused, ready for the source's recovery at URI\n"
	       "(default: the address it recorded).\n"
	       "\n"
	       "Options:\n"
	       "  -l, --listen URI          address to accept the migration on\n"
	       "  -G, --guest-ctl PATH      control socket of the migrated guest\n"
	       "                            (default $MIG_RUNTIME_DIR/NAME.guest.sock)\n"
	       "  -A, --attach PATH         only take over the guest at PATH\n"
	       "      --paused-start        keep the guest stopped after switchover\n"
	       "                            (mig-guest cont starts it)\n"
	       "      --link-timeout SECS   silence after which a link is broken (5)\n"
	       "  -n, --name NAME           migration name for the status bus (default)\n"
	       "  -b, --bus PATH            status bus socket (overrides --name)\n"
	       "      --linger SECS         keep the status bus up SECS after the end\n"
	       "      --summary             print a summary line when it ends\n"
	       "      --notify URL          POST every event as JSON to URL (http(s)://)\n"
	       "      --ready-fd N          write a newline to fd N once listening\n"
	       "  -v, --verbose             more log output (repeatable)\n"
	       "  -q, --quiet               less log output\n"
	       "  -h, --help                show this help and exit\n"
	       "  -V, --version             show the version and exit\n"
	       "\n"
	       "Exit status: 0 completed; 1 failed or cancelled (or the listen\n"
	       "address is in use, or nothing to attach to); 64 usage error;\n"
	       "69 userfaultfd not permitted, or no guest at --attach PATH;\n"
	       "75 stopped while paused (the guest is kept). See mig-recv(1).\n");
}

enum { OPT_LINKTO = 256, OPT_READY, OPT_SUMMARY, OPT_PAUSED, OPT_LINGER,
       OPT_NOTIFY };

static const struct option longopts[] = {
	{ "listen", required_argument, NULL, 'l' },
	{ "guest-ctl", required_argument, NULL, 'G' },
	{ "attach", required_argument, NULL, 'A' },
	{ "paused-start", no_argument, NULL, OPT_PAUSED },
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
static int parse(int argc, char **argv, struct mig_dest_opts *o)
{
	unsigned long ul;
	int64_t ms;
	int c;

	while ((c = getopt_long(argc, argv, "l:G:A:n:b:vqhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'l': o->listen = optarg; break;
		case 'G':
		case 'A':
			if (o->guest_ctl && strcmp(o->guest_ctl, optarg))
				return mig_client_usage("--attach and --guest-ctl "
							"name different guests");
			o->guest_ctl = optarg;
			o->attach |= c == 'A';
			break;
		case 'n': o->name = optarg; break;
		case OPT_SUMMARY: o->summary = true; break;
		case OPT_LINGER:
			if (mig_parse_seconds(optarg, &ms) < 0 || ms > 3600000)
				return mig_client_usage("bad --linger '%s' (seconds)",
							optarg);
			o->linger_ms = (int)ms;
			break;
		case OPT_PAUSED: o->paused_start = true; break;
		case 'b': o->bus_path = optarg; break;
		case OPT_NOTIFY:
			if (!mig_client_url_ok(optarg))
				return mig_client_usage("bad --notify '%s' (an http:// "
							"or https:// URL)", optarg);
			o->notify_url = optarg;
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
		case 'V': printf("mig-recv %s\n", MIG_VERSION); exit(MIG_EXIT_OK);
		default: return mig_client_usage("unknown or incomplete option");
		}
	}
	if (optind < argc)
		return mig_client_usage("unexpected argument '%s'", argv[optind]);
	if (!o->listen && !o->attach)
		return mig_client_usage("--listen is required");
	if (o->listen && !mig_client_uri_ok(o->listen))
		return mig_client_usage("bad --listen '%s' (tcp:HOST:PORT or "
					"unix:PATH)", o->listen);
	if (o->guest_ctl && strlen(o->guest_ctl) >= 108)
		return mig_client_usage("--guest-ctl path is too long");
	if (!mig_name_valid(o->name))
		return mig_client_usage("bad --name '%s'", o->name);
	return 0;
}

int main(int argc, char **argv)
{
	struct mig_dest_opts o = { .name = "default", .ready_fd = -1 };
	char bus[108];
	enum mig_state final = MIG_STATE_FAILED;
	int r;

	mig_log_init(argv[0]);
	r = parse(argc, argv, &o);
	if (r)
		return r;
	if (!o.bus_path) {
		r = mig_bus_path(o.name, "recv", bus, sizeof(bus), true);
		if (r < 0) {
			mig_client_error("cannot make the bus path for '%s': %s",
					 o.name, strerror(-r));
			return MIG_EXIT_FAIL;
		}
		o.bus_path = bus;
	}
	r = mig_dest_run(&o, &final);
	if (r == -EADDRINUSE)
		mig_client_error("address in use: %s (or the status bus %s)",
				 o.listen, o.bus_path);
	if (r == -ENOENT || r == -ECONNREFUSED)
		return MIG_EXIT_UNAVAILABLE;
	if (r < 0)
		return r == -EINVAL ? MIG_EXIT_USAGE : MIG_EXIT_FAIL;
	if (final == MIG_STATE_COMPLETED)
		return MIG_EXIT_OK;
	if (final == MIG_STATE_POSTCOPY_PAUSED)
		return MIG_EXIT_PAUSED;
	return MIG_EXIT_FAIL;
}
