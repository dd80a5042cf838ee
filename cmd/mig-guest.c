// SPDX-License-Identifier: MIT
/*
 * mig-guest: the guest-memory process (lib/guestd.c), and its small client
 * subcommands verify / info / digest / poke / stop / cont / quit
 * (lib/guestcli.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "base/exitcodes.h"
#include "guest/guestcli.h"
#include "guest/guestd.h"
#include "base/log.h"
#include "base/util.h"
#include "guest/workload.h"

struct args {
	struct mig_guestd_opts o;
	struct mig_guestcli_opts c; /* c.cmd NULL: run a guest */
	bool run_opt, page_set, uuid_set;
};

static void usage(void)
{
	printf("Usage: mig-guest --ctl PATH --ram SIZE [options]\n"
	       "       mig-guest verify --ctl PATH\n"
	       "       mig-guest info --ctl PATH [--json]\n"
	       "       mig-guest digest --ctl PATH\n"
	       "       mig-guest poke --ctl PATH --page N\n"
	       "       mig-guest stop|cont|quit --ctl PATH\n"
	       "       mig-guest abandon --ctl PATH --uuid UUID\n"
	       "\n"
	       "Run a guest: RAM of SIZE bytes (K/M/G suffixes) and vCPU threads running\n"
	       "a workload over it, driven by migration engines through the control\n"
	       "socket PATH. verify checks the workload's invariant, info shows the\n"
	       "guest, digest prints a digest of all its RAM (16 hex digits), poke\n"
	       "writes a new version of one page (dirty workload), stop parks its\n"
	       "vCPUs and cont resumes them, quit asks it to exit. abandon releases a\n"
	       "source guest handed over in migration UUID, whose engine is gone, so\n"
	       "that cont may run it here again: only when its destination is known\n"
	       "never to run it (see mig-guest(1)).\n"
	       "\n"
	       "Workload SPEC: ab | idle | dirty[:rate=R,pattern=P,hot=PCT], where R\n"
	       "is MiB/s (or bytes/s with a K/M/G suffix; 0: no limit), P one of\n"
	       "uniform, random, hot, seq, and PCT the hot set in %% of RAM (10).\n"
	       "\n"
	       "Options:\n"
	       "  -c, --ctl PATH       control socket (mode 0600)\n"
	       "  -r, --ram SIZE       guest RAM, a multiple of 4K, at most 1T\n"
	       "  -w, --workload SPEC  %s (default ab)\n"
	       "  -n, --vcpus N        vCPU threads, 1-%u (default 1)\n"
	       "  -i, --incoming       destination: RAM arrives through userfaultfd\n"
	       "      --ready-fd N     write a newline to fd N once listening\n"
	       "  -j, --json           info: one JSON object\n"
	       "  -p, --page N         poke: the page to write\n"
	       "  -u, --uuid UUID      abandon: the migration to abandon\n"
	       "  -v, --verbose        more log output\n"
	       "  -q, --quiet          less log output\n"
	       "  -h, --help           this help\n"
	       "  -V, --version        print the version\n"
	       "\n"
	       "Exit status: 0 success (verify: the invariant holds), 1 failure\n"
	       "(verify: broken), 64 usage error, 69 no guest at PATH or userfaultfd\n"
	       "not permitted.\n", mig_workload_names(), MIG_WORKLOAD_MAX_VCPUS);
}

__attribute__((format(printf, 1, 2)))
static int usage_err(const char *fmt, ...)
{
	va_list ap;

	fputs("mig-guest: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'mig-guest --help'.\n", stderr);
	return MIG_EXIT_USAGE;
}

enum { OPT_READY_FD = 256, OPT_DONE = -1 };

static int parse_page(struct args *a, const char *arg)
{
	unsigned long v;

	if (mig_parse_ulong(arg, 0, MIG_WORKLOAD_MAX_RAM_BYTES / MIG_PAGE_SIZE - 1,
			    &v) < 0)
		return usage_err("--page: '%s' is not a page number", arg);
	a->c.page = v;
	a->page_set = true;
	return 0;
}

static int parse_opt(struct args *a, int c, const char *arg)
{
	unsigned long v;

	a->run_opt |= c == 'r' || c == 'w' || c == 'n' || c == 'i' ||
		      c == OPT_READY_FD;
	switch (c) {
	case 'c': a->o.ctl_path = a->c.ctl_path = arg; break;
	case 'r':
		if (mig_parse_size(arg, &a->o.ram_bytes) < 0 || !a->o.ram_bytes ||
		    a->o.ram_bytes % MIG_PAGE_SIZE ||
		    a->o.ram_bytes > MIG_WORKLOAD_MAX_RAM_BYTES)
			return usage_err("--ram: '%s' is not a non-zero multiple of 4K up to 1T",
					 arg);
		break;
	case 'w': a->o.workload = arg; break;
	case 'n':
		if (mig_parse_ulong(arg, 1, MIG_WORKLOAD_MAX_VCPUS, &v) < 0)
			return usage_err("--vcpus: '%s' is not a number from 1 to %u",
					 arg, MIG_WORKLOAD_MAX_VCPUS);
		a->o.vcpus = (unsigned)v;
		break;
	case 'i': a->o.incoming = true; break;
	case OPT_READY_FD:
		if (mig_parse_ulong(arg, 0, 1 << 20, &v) < 0 ||
		    fcntl((int)v, F_GETFD) < 0)
			return usage_err("--ready-fd: '%s' is not an open file descriptor",
					 arg);
		a->o.ready_fd = (int)v;
		break;
	case 'j': a->c.json = true; break;
	case 'p': return parse_page(a, arg);
	case 'u':
		if (mig_uuid_parse(arg, a->c.uuid) < 0)
			return usage_err("--uuid: '%s' is not a UUID", arg);
		a->uuid_set = true;
		break;
	case 'v': mig_log_adjust(1); break;
	case 'q': mig_log_adjust(-1); break;
	case 'h': usage(); return OPT_DONE;
	case 'V': printf("mig-guest %s\n", MIG_VERSION); return OPT_DONE;
	default: return MIG_EXIT_USAGE;
	}
	return 0;
}

static int check_args(struct args *a, int argc, char **argv)
{
	struct mig_workload_spec spec;

	const char *cmd = NULL;

	if (optind < argc) {
		cmd = a->c.cmd = argv[optind++];
		if (!mig_guestcli_known(cmd))
			return usage_err("unknown command '%s'", cmd);
		if (optind < argc)
			return usage_err("unexpected argument '%s'", argv[optind]);
	}
	if (!a->o.ctl_path)
		return usage_err("--ctl PATH is required");
	if (strlen(a->o.ctl_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return usage_err("--ctl: path too long for a UNIX socket (max %zu bytes)",
				 sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
	if (cmd && a->run_opt)
		return usage_err("'%s' takes only --ctl%s", cmd,
				 !strcmp(cmd, "info") ? " and --json" :
				 !strcmp(cmd, "poke") ? " and --page" :
				 !strcmp(cmd, "abandon") ? " and --uuid" : "");
	if (a->c.json && (!cmd || strcmp(cmd, "info")))
		return usage_err("--json is only for 'info'");
	if (a->page_set != (cmd && !strcmp(cmd, "poke")))
		return usage_err(a->page_set ? "--page is only for 'poke'" :
				 "poke: --page N is required");
	if (a->uuid_set != (cmd && !strcmp(cmd, "abandon")))
		return usage_err(a->uuid_set ? "--uuid is only for 'abandon'" :
				 "abandon: --uuid UUID is required (the migration, "
				 "as 'mig-guest info' shows it)");
	if (cmd)
		return 0;
	if (!a->o.ram_bytes)
		return usage_err("--ram SIZE is required");
	if (a->o.workload && mig_workload_parse(a->o.workload, &spec) < 0)
		return usage_err("--workload: '%s' is not a workload (%s)",
				 a->o.workload, mig_workload_names());
	return 0;
}

static int parse_args(struct args *a, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "ctl", required_argument, NULL, 'c' },
		{ "ram", required_argument, NULL, 'r' },
		{ "workload", required_argument, NULL, 'w' },
		{ "vcpus", required_argument, NULL, 'n' },
		{ "incoming", no_argument, NULL, 'i' },
		{ "ready-fd", required_argument, NULL, OPT_READY_FD },
		{ "json", no_argument, NULL, 'j' },
		{ "page", required_argument, NULL, 'p' },
		{ "uuid", required_argument, NULL, 'u' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c, r;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:r:w:n:ijp:u:vqhV", longopts, NULL)) != -1) {
		if (c == '?' || c == ':') {
			const char *what = c == '?' ? "unrecognized option" :
					   "missing argument for";

			const char *arg = argv[optind - 1];

			if (!strncmp(arg, "--", 2))
				return usage_err("%s '%.*s'", what,
						 (int)strcspn(arg, "="), arg);
			return usage_err("%s '-%c'", what, optopt);
		}
		r = parse_opt(a, c, optarg);
		if (r)
			return r;
	}
	return check_args(a, argc, argv);
}

int main(int argc, char **argv)
{
	struct args a = { .o = { .ready_fd = -1 } };
	int r;

	mig_log_init(argv[0]);
	r = parse_args(&a, argc, argv);
	if (r)
		return r == OPT_DONE ? MIG_EXIT_OK : r;
	if (a.c.cmd)
		return mig_guestcli_run(&a.c);
	r = mig_guestd_run(&a.o);
	if (r == -EPERM || r == -ENOTSUP)
		return MIG_EXIT_UNAVAILABLE;
	if (r == -EINVAL || r == -ENAMETOOLONG)
		return MIG_EXIT_USAGE;
	return r < 0 ? MIG_EXIT_FAIL : MIG_EXIT_OK;
}
