// SPDX-License-Identifier: MIT
/*
 * mig-guest: the guest-memory process (lib/guest/guestd.c), and its small
 * client subcommands verify / info / digest / poke / stop / cont / quit /
 * abandon (lib/guest/guestcli.c).
 */
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "base/cli.h"
#include "base/exitcodes.h"
#include "base/util.h"
#include "guest/guestcli.h"
#include "guest/guestd.h"
#include "guest/kvm.h"
#include "guest/workload.h"

#define SUN_PATH_BYTES sizeof(((struct sockaddr_un *)0)->sun_path)

struct args {
	struct mig_guestd_opts o;
	struct mig_guestcli_opts c; /* c.cmd NULL: run a guest */
	bool run_opt, page_set, uuid_set;
};

enum { OPT_WORKLOAD = 256, OPT_VCPUS, OPT_SERIAL };

static const struct mig_cli_opt opts[] = {
	{ "ctl", 'c', "PATH", "control socket (mode 0600)" },
	{ "ram", 'r', "SIZE", "guest RAM, a multiple of 4K, at most 1T" },
	{ "workload", OPT_WORKLOAD, "SPEC", "the vCPUs' workload (default ab)" },
	{ "vcpus", OPT_VCPUS, "N", "vCPU threads (default 1)" },
	{ "serial", OPT_SERIAL, "FILE", "kvm: append the guest's serial output to FILE" },
	{ "incoming", 'i', NULL, "destination: RAM arrives through userfaultfd" },
	{ "json", 'j', NULL, "info: one JSON object" },
	{ "page", 'p', "N", "poke: the page to write" },
	{ "uuid", 'u', "UUID", "abandon: the migration to abandon" },
	{ NULL },
};

static const struct mig_cli_exit exits[] = {
	{ MIG_EXIT_OK, "success (verify: the invariant holds)" },
	{ MIG_EXIT_FAIL, "failure (verify: broken)" },
	{ MIG_EXIT_USAGE, "usage error" },
	{ MIG_EXIT_UNAVAILABLE, "no guest at PATH, userfaultfd not permitted, or "
	  "no /dev/kvm for the kvm workload" },
	{ 0, NULL },
};

static void more(FILE *out)
{
	fprintf(out, "Workload SPEC: ab | idle | dirty[:rate=R,pattern=P,hot=PCT] | kvm,\n"
		"where R is MiB/s (or bytes/s with a K/M/G suffix; 0: no limit), P\n"
		"one of uniform, random, hot, seq, split (even vCPUs on their hot\n"
		"PCT, odd ones on all their slice), and PCT the hot set in %% (10).\n"
		"kvm runs a virtual machine under /dev/kvm (RAM 16M to 64G, a\n"
		"multiple of 64K; at most %u vCPUs), its serial output in the log\n"
		"or --serial FILE.\n"
		"At most %u vCPUs.\n"
		"Workloads: %s\n", MIG_KVM_MAX_VCPUS, MIG_WORKLOAD_MAX_VCPUS,
		mig_workload_names());
}

static int opt(void *ctx, int c, const char *arg)
{
	struct args *a = ctx;
	unsigned long v;

	a->run_opt |= c == 'r' || c == OPT_WORKLOAD || c == OPT_VCPUS || c == 'i' ||
		      c == OPT_SERIAL;
	switch (c) {
	case 'c': a->o.ctl_path = a->c.ctl_path = arg; break;
	case 'r':
		if (mig_parse_size(arg, &a->o.ram_bytes) < 0 || !a->o.ram_bytes ||
		    a->o.ram_bytes % MIG_PAGE_SIZE ||
		    a->o.ram_bytes > MIG_WORKLOAD_MAX_RAM_BYTES)
			return mig_cli_usage("--ram '%s' is not a non-zero multiple of "
					     "4K up to 1T", arg);
		break;
	case OPT_WORKLOAD: a->o.workload = arg; break;
	case OPT_VCPUS:
		if (mig_parse_ulong(arg, 1, MIG_WORKLOAD_MAX_VCPUS, &v) < 0)
			return mig_cli_usage("--vcpus '%s' is not a number from 1 to %u",
					     arg, MIG_WORKLOAD_MAX_VCPUS);
		a->o.vcpus = (unsigned)v;
		break;
	case 'i': a->o.incoming = true; break;
	case OPT_SERIAL:
		if (!*arg)
			return mig_cli_usage("--serial: the file name is empty");
		a->o.serial = arg;
		break;
	case 'j': a->c.json = true; break;
	case 'p':
		if (mig_parse_ulong(arg, 0, MIG_WORKLOAD_MAX_RAM_BYTES / MIG_PAGE_SIZE - 1,
				    &v) < 0)
			return mig_cli_usage("--page '%s' is not a page number", arg);
		a->c.page = v;
		a->page_set = true;
		break;
	case 'u':
		if (mig_uuid_parse(arg, a->c.uuid) < 0)
			return mig_cli_usage("--uuid '%s' is not a UUID", arg);
		a->uuid_set = true;
		break;
	}
	return 0;
}

static const struct mig_cli cli = {
	.prog = "mig-guest",
	.synopsis = "--ctl PATH --ram SIZE [options]\n"
		    "verify --ctl PATH\n"
		    "info --ctl PATH [--json]\n"
		    "digest --ctl PATH\n"
		    "poke --ctl PATH --page N\n"
		    "stop|cont|quit --ctl PATH\n"
		    "abandon --ctl PATH --uuid UUID",
	.about = "Run a guest: RAM of SIZE bytes (K/M/G suffixes) and vCPU threads running\n"
		 "a workload over it, driven by migration engines through the control\n"
		 "socket PATH. verify checks the workload's invariant, info shows the\n"
		 "guest, digest prints a digest of all its RAM (16 hex digits), poke\n"
		 "writes a new version of one page (dirty workload), stop parks its\n"
		 "vCPUs and cont resumes them, quit asks it to exit. abandon releases a\n"
		 "source guest handed over in migration UUID, whose engine is gone, so\n"
		 "that cont may run it here again: only when its destination is known\n"
		 "never to run it (see mig-guest(1)).",
	.opts = opts,
	.common = MIG_CLI_TAKES(MIG_CLI_READY_FD),
	.more = more,
	.exits = exits,
	.opt = opt,
};

/* Which options go with which subcommand. */
static int check_cmd(const struct args *a, const char *cmd)
{
	if (cmd && a->run_opt)
		return mig_cli_usage("'%s' takes only --ctl%s", cmd,
				     !strcmp(cmd, "info") ? " and --json" :
				     !strcmp(cmd, "poke") ? " and --page" :
				     !strcmp(cmd, "abandon") ? " and --uuid" : "");
	if (a->c.json && (!cmd || strcmp(cmd, "info")))
		return mig_cli_usage("--json is only for 'info'");
	if (a->page_set != (cmd && !strcmp(cmd, "poke")))
		return mig_cli_usage(a->page_set ? "--page is only for 'poke'" :
				     "poke: --page N is required");
	if (a->uuid_set != (cmd && !strcmp(cmd, "abandon")))
		return mig_cli_usage(a->uuid_set ? "--uuid is only for 'abandon'" :
				     "abandon: --uuid UUID is required (the migration, "
				     "as 'mig-guest info' shows it)");
	return 0;
}

static int check_args(struct args *a, int argc, char **argv, int first)
{
	struct mig_workload_spec spec;
	const char *cmd = NULL, *why;
	int r;

	if (first < argc) {
		cmd = a->c.cmd = argv[first++];
		if (!mig_guestcli_known(cmd))
			return mig_cli_usage("unknown command '%s'", cmd);
		if (first < argc)
			return mig_cli_usage("unexpected argument '%s'", argv[first]);
	}
	if (!a->o.ctl_path)
		return mig_cli_usage("--ctl PATH is required");
	if (strlen(a->o.ctl_path) >= SUN_PATH_BYTES)
		return mig_cli_usage("--ctl: path too long for a UNIX socket (max %zu bytes)",
				     SUN_PATH_BYTES - 1);
	r = check_cmd(a, cmd);
	if (r || cmd)
		return r;
	if (!a->o.ram_bytes)
		return mig_cli_usage("--ram SIZE is required");
	if (a->o.workload && mig_workload_parse(a->o.workload, &spec) < 0)
		return mig_cli_usage("--workload '%s' is not a workload (%s)",
				     a->o.workload, mig_workload_names());
	why = a->o.workload && spec.id == MIG_WORKLOAD_KVM ?
	      mig_kvm_ram_check(a->o.ram_bytes, a->o.vcpus) : NULL;
	if (why)
		return mig_cli_usage("--workload kvm: %s", why);
	if (a->o.serial && (!a->o.workload || spec.id != MIG_WORKLOAD_KVM) &&
	    !a->o.incoming)
		return mig_cli_usage("--serial is for --workload kvm");
	return 0;
}

int main(int argc, char **argv)
{
	struct args a = { 0 };
	struct mig_cli_args ca = { .ready_fd = -1 };
	int r, first;

	mig_cli_init(argv[0]);
	r = mig_cli_parse(&cli, argc, argv, &ca, &a, &first);
	if (r)
		return r == MIG_CLI_DONE ? MIG_EXIT_OK : r;
	a.o.ready_fd = ca.ready_fd;
	a.run_opt |= ca.ready_fd >= 0;
	r = check_args(&a, argc, argv, first);
	if (r)
		return r;
	if (a.c.cmd)
		return mig_guestcli_run(&a.c);
	return mig_exit_of_errno(mig_guestd_run(&a.o));
}
