// SPDX-License-Identifier: MIT
/* mig-guest's client subcommands: see guestcli.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/exitcodes.h"
#include "guest/ctl.h"
#include "guest/guest.h"
#include "guest/guestcli.h"
#include "base/log.h"
#include "base/util.h"

/* A local guest answers at once; a stopped one still answers. */
#define CLIENT_TIMEOUT_MS 5000

static const char *const cmds[] = {
	"verify", "info", "digest", "poke", "stop", "cont", "quit", "abandon",
};

bool mig_guestcli_known(const char *name)
{
	for (size_t i = 0; i < MIG_ARRAY_SIZE(cmds); i++)
		if (!strcmp(name, cmds[i]))
			return true;
	return false;
}

/* JSON string contents: the peer and workload come from the guest's bytes */
static void print_escaped(const char *s)
{
	for (const char *p = s; *p; p++) {
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 ||
		    (unsigned char)*p >= 0x7f)
			printf("\\u%04x", (unsigned char)*p);
		else
			putchar(*p);
	}
}

static void print_record(const struct mig_guest_record *r, bool json)
{
	char id[37];

	mig_uuid_format(r->uuid, id);
	if (json && r->phase == MIG_GUEST_UNBOUND) {
		printf(",\"migration\":null");
	} else if (json) {
		printf(",\"migration\":{\"uuid\":\"%s\",\"side\":\"%s\","
		       "\"phase\":\"%s\",\"state\":\"%s\",\"peer\":\"", id,
		       mig_side_name(r->side), mig_guest_phase_name(r->phase),
		       mig_state_name(r->state));
		print_escaped(r->peer);
		printf("\"}");
	} else if (r->phase == MIG_GUEST_UNBOUND) {
		printf("migration: none\n");
	} else {
		printf("migration: %s\nside:      %s\nphase:     %s\n"
		       "state:     %s (the engine's last)\npeer:      %s\n", id,
		       mig_side_name(r->side), mig_guest_phase_name(r->phase),
		       mig_state_name(r->state), r->peer);
	}
}

static void print_info(const struct mig_guest_info *in, bool json)
{
	char sz[32];

	if (json) {
		printf("{\"pid\":%d,\"ram-bytes\":%" PRIu64 ",\"ram-base\":%" PRIu64
		       ",\"incoming\":%s,\"running\":%s,\"attached\":%s,"
		       "\"dirty-tracking\":%s,\"workload\":\"",
		       (int)in->pid, in->ram_bytes, in->ram_base,
		       in->incoming ? "true" : "false", in->running ? "true" : "false",
		       in->attached ? "true" : "false",
		       in->tracking ? "true" : "false");
		/* the spec is [a-zA-Z0-9:=,._-] when a guest wrote it; escape anyway */
		print_escaped(in->workload);
		printf("\",\"vcpus\":%u,\"progress\":%" PRIu64, in->vcpus,
		       in->progress);
		print_record(&in->rec, true);
		printf("}\n");
		return;
	}
	printf("pid:       %d\nram:       %s (%" PRIu64 " bytes at 0x%" PRIx64 ")\n"
	       "workload:  %s\nvcpus:     %u\nincoming:  %s\nrunning:   %s\n"
	       "attached:  %s\ntracking:  %s\nprogress:  %" PRIu64 " page writes\n",
	       (int)in->pid, mig_fmt_bytes(in->ram_bytes, sz, sizeof(sz)),
	       in->ram_bytes, in->ram_base,
	       *in->workload ? in->workload : "(none loaded)", in->vcpus,
	       in->incoming ? "yes" : "no", in->running ? "yes" : "no",
	       in->attached ? "yes" : "no", in->tracking ? "dirty pages" : "no",
	       in->progress);
	print_record(&in->rec, false);
}

/* Why a request was refused, in the words of this tool. */
static void report(const struct mig_guestcli_opts *o, int r)
{
	const char *why = NULL;

	if (r == -EBUSY)
		why = "another engine holds the guest";
	else if (r == -EAGAIN && !strcmp(o->cmd, "digest"))
		why = "pages still missing (incoming): try again once they arrived";
	else if (r == -EAGAIN && !strcmp(o->cmd, "poke"))
		why = "not yet: the page or the workload has not arrived";
	else if (r == -EINVAL && !strcmp(o->cmd, "poke"))
		why = "only the dirty workload can be poked, at a page inside RAM";
	else if (r == -EINVAL && !strcmp(o->cmd, "cont"))
		why = "no workload loaded yet";
	else if (r == -EPERM && !strcmp(o->cmd, "cont"))
		why = "refused: the guest was handed over to its destination, or "
		      "is still receiving its pages (see 'mig-guest info'; "
		      "'mig-guest abandon' releases a handed-over source guest)";
	else if (r == -ESRCH && !strcmp(o->cmd, "abandon"))
		why = "the guest is not in that migration (see 'mig-guest info')";
	else if (r == -EBUSY && !strcmp(o->cmd, "abandon"))
		why = "an engine holds the guest: stop it first";
	else if (r == -EINVAL && !strcmp(o->cmd, "abandon"))
		why = "only a source guest can be abandoned; quit a destination "
		      "guest instead";
	if (why)
		mig_err("guest", "%s %s: %s", o->cmd, o->ctl_path, why);
	else
		mig_err("guest", "%s %s: %s", o->cmd, o->ctl_path, strerror(-r));
}

static int run(struct mig_guest *g, const struct mig_guestcli_opts *o)
{
	struct mig_guest_info in;
	char msg[MIG_CTL_TEXT_MAX];
	uint64_t d;
	int r;

	if (!strcmp(o->cmd, "verify")) {
		mig_guest_set_timeout(g, -1); /* all of RAM is read: may take a while */
		r = mig_guest_verify(g, msg, sizeof(msg));
		if (*msg)
			printf("%s\n", msg);
		return r == -EBADMSG || r == -EAGAIN ? 1 : r; /* verdict printed */
	}
	if (!strcmp(o->cmd, "info")) {
		r = mig_guest_info(g, &in);
		if (r == 0)
			print_info(&in, o->json);
		return r;
	}
	if (!strcmp(o->cmd, "digest")) {
		mig_guest_set_timeout(g, -1); /* reads all of RAM too */
		r = mig_guest_digest(g, &d);
		if (r == 0)
			printf("%016" PRIx64 "\n", d);
		return r;
	}
	if (!strcmp(o->cmd, "poke"))
		return mig_guest_poke(g, o->page);
	if (!strcmp(o->cmd, "stop"))
		return mig_guest_stop(g);
	if (!strcmp(o->cmd, "cont"))
		return mig_guest_cont(g);
	if (!strcmp(o->cmd, "abandon"))
		return mig_guest_abandon(g, o->uuid);
	return mig_guest_quit(g);
}

int mig_guestcli_run(const struct mig_guestcli_opts *o)
{
	struct mig_guest *g = mig_guest_connect(o->ctl_path, CLIENT_TIMEOUT_MS);
	int r;

	if (!g) {
		r = errno;
		if (r == ENOENT || r == ECONNREFUSED || r == ENOTSOCK) {
			mig_err("guest", "no guest at %s", o->ctl_path);
			return MIG_EXIT_UNAVAILABLE;
		}
		mig_err("guest", "%s: %s", o->ctl_path,
			r == EPROTO ? "not a mig-guest control socket" : strerror(r));
		return MIG_EXIT_FAIL;
	}
	r = run(g, o);
	if (r < 0)
		report(o, r);
	mig_guest_close(g);
	return r == 0 ? MIG_EXIT_OK : MIG_EXIT_FAIL;
}
