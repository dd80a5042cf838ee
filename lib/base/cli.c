// SPDX-License-Identifier: MIT
/* The command line every mig program shares: see cli.h. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cli.h"
#include "base/exitcodes.h"
#include "base/log.h"
#include "base/util.h"

/* Own and common options of one program: more than any has. */
#define MAX_OPTS 48
/* --linger and --link-timeout: an hour is longer than any use of them. */
#define MAX_SECONDS_MS 3600000
/* --link-timeout: below 0.1 s any scheduling delay would break a link. */
#define MIN_LINK_TIMEOUT_MS 100

static const struct mig_cli_opt commons[MIG_CLI__COUNT] = {
	[MIG_CLI_NAME] = { "name", 'n', "NAME", "the migration (default \"default\")" },
	[MIG_CLI_BUS] = { "bus", 'b', "PATH", "the status bus socket (instead of NAME's)" },
	[MIG_CLI_TIMEOUT] = { "timeout", 't', "SECS", "give up after SECS" },
	[MIG_CLI_LINGER] = { "linger", MIG_CLI_KEY(MIG_CLI_LINGER), "SECS",
			     "keep the status bus up SECS after the end" },
	[MIG_CLI_SUMMARY] = { "summary", MIG_CLI_KEY(MIG_CLI_SUMMARY), NULL,
			      "print a summary line however it ends" },
	[MIG_CLI_NOTIFY] = { "notify", MIG_CLI_KEY(MIG_CLI_NOTIFY), "URL",
			     "POST every event as JSON to URL (http(s)://)" },
	[MIG_CLI_LINK_TIMEOUT] = { "link-timeout", MIG_CLI_KEY(MIG_CLI_LINK_TIMEOUT),
				   "SECS", "silence after which a link is broken (5)" },
	[MIG_CLI_READY_FD] = { "ready-fd", MIG_CLI_KEY(MIG_CLI_READY_FD), "N",
			       "write a newline to fd N once listening" },
	[MIG_CLI_TLS_PSK] = { "tls-psk", MIG_CLI_KEY(MIG_CLI_TLS_PSK), "FILE",
			      "TLS with the pre-shared keys in FILE (IDENTITY:HEXKEY)" },
	[MIG_CLI_TLS_X509] = { "tls-x509", MIG_CLI_KEY(MIG_CLI_TLS_X509), "DIR",
			       "TLS with the x509 certificates in DIR" },
	[MIG_CLI_TLS_HOSTNAME] = { "tls-hostname", MIG_CLI_KEY(MIG_CLI_TLS_HOSTNAME),
				   "NAME", "the name the destination's certificate\n"
				   "must carry (default: the URI's host)" },
	[MIG_CLI_TLS_AUTHZ] = { "tls-authz", MIG_CLI_KEY(MIG_CLI_TLS_AUTHZ), "FILE",
				"admit only the peers FILE lists, one a line" },
	[MIG_CLI_VERBOSE] = { "verbose", 'v', NULL, "more log output (repeatable)" },
	[MIG_CLI_QUIET] = { "quiet", 'q', NULL, "less log output" },
	[MIG_CLI_HELP] = { "help", 'h', NULL, "show this help and exit" },
	[MIG_CLI_VERSION] = { "version", 'V', NULL, "show the version and exit" },
};

#define EVERY_PROGRAM (MIG_CLI_TAKES(MIG_CLI_VERBOSE) | MIG_CLI_TAKES(MIG_CLI_QUIET) | \
		       MIG_CLI_TAKES(MIG_CLI_HELP) | MIG_CLI_TAKES(MIG_CLI_VERSION))

/* One option as this program takes it. */
struct ent {
	struct mig_cli_opt o;
	int common;             /* enum mig_cli_common, or -1: its own */
	bool seen;
};

struct table {
	struct ent e[MAX_OPTS];
	size_t n;
};

void mig_cli_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	mig_log_vsay(fmt, ap);
	va_end(ap);
}

int mig_cli_usage(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	mig_log_vsay(fmt, ap);
	va_end(ap);
	mig_log_hint("Try '%s --help'.", mig_log_prog());
	return MIG_EXIT_USAGE;
}

/* Own options first, then the common ones in their fixed order. */
static void build(const struct mig_cli *cli, struct table *t)
{
	unsigned common = cli->common | EVERY_PROGRAM;

	t->n = 0;
	for (const struct mig_cli_opt *o = cli->opts; o && o->name; o++)
		if (t->n < MAX_OPTS)
			t->e[t->n++] = (struct ent){ .o = *o, .common = -1 };
	for (int c = 0; c < MIG_CLI__COUNT; c++) {
		if (!(common & MIG_CLI_TAKES(c)) || t->n >= MAX_OPTS)
			continue;
		t->e[t->n] = (struct ent){ .o = commons[c], .common = c };
		if (cli->help[c])
			t->e[t->n].o.help = cli->help[c];
		t->n++;
	}
}

static struct ent *by_key(struct table *t, int key)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->e[i].o.key == key)
			return &t->e[i];
	return NULL;
}

/* "-g, --guest PATH" or "    --resume": the left column of --help. */
static int left(const struct mig_cli_opt *o, char *buf, size_t len)
{
	char s[8] = "    ";

	if (o->key > 0 && o->key < 256)
		snprintf(s, sizeof(s), "-%c, ", o->key);
	return snprintf(buf, len, "%s--%s%s%s", s, o->name, o->arg ? " " : "",
			o->arg ? o->arg : "");
}

/* text, its continuation lines ('\n') starting at column col. */
static void put_text(FILE *out, const char *text, int col)
{
	const char *p, *nl;

	for (p = text; (nl = strchr(p, '\n')); p = nl + 1)
		fprintf(out, "%.*s\n%*s", (int)(nl - p), p, col, "");
	fprintf(out, "%s\n", p);
}

void mig_cli_help(const struct mig_cli *cli, FILE *out)
{
	struct table t;
	char l[96];
	int col = 0;
	const char *p, *nl;

	build(cli, &t);
	for (size_t i = 0; i < t.n; i++)
		col = MIG_MAX(col, left(&t.e[i].o, l, sizeof(l)));
	col += 2;
	for (p = cli->synopsis, nl = NULL; p; p = nl ? nl + 1 : NULL) {
		nl = strchr(p, '\n');
		fprintf(out, "%s %s %.*s\n", p == cli->synopsis ? "Usage:" : "      ",
			cli->prog, nl ? (int)(nl - p) : (int)strlen(p), p);
	}
	fprintf(out, "\n%s\n\nOptions:\n", cli->about);
	for (size_t i = 0; i < t.n; i++) {
		left(&t.e[i].o, l, sizeof(l));
		fprintf(out, "  %-*s", col, l);
		put_text(out, t.e[i].o.help, col + 2);
	}
	if (cli->more) {
		fputc('\n', out);
		cli->more(out);
	}
	fputs("\nExit status:\n", out);
	for (const struct mig_cli_exit *x = cli->exits; x && x->what; x++) {
		fprintf(out, "  %-5d", x->status);
		put_text(out, x->what, 7);
	}
	fprintf(out, "See %s(1).\n", cli->prog);
}

static bool url_ok(const char *url)
{
	size_t n = !strncmp(url, "http://", 7) ? 7 :
		   !strncmp(url, "https://", 8) ? 8 : 0;

	return n && url[n] && url[n] != '/';
}

/* SECS in [min_ms, max_ms] (max_ms < 0: no limit) into *ms. */
static int seconds(const char *opt, const char *arg, int64_t min_ms,
		   int64_t max_ms, int64_t *ms)
{
	char range[48] = "";

	if (mig_parse_seconds(arg, ms) == 0 && *ms >= min_ms &&
	    (max_ms < 0 || *ms <= max_ms))
		return 0;
	if (max_ms >= 0)
		snprintf(range, sizeof(range), " from %g to %g", min_ms / 1000.0,
			 max_ms / 1000.0);
	return mig_cli_usage("--%s '%s' is not a number of seconds%s", opt, arg,
			     range);
}

/* A common option: 0, MIG_CLI_DONE or a usage error's status. */
static int common_opt(const struct mig_cli *cli, int c, const char *arg,
		      struct mig_cli_args *a)
{
	unsigned long ul;
	int64_t ms = 0;
	int r = 0;

	switch (c) {
	case MIG_CLI_NAME:
		if (!mig_name_valid(arg))
			return mig_cli_usage("--name '%s' is not a name (at most 64 "
					     "letters, digits, '.', '_', '-')", arg);
		a->name = arg;
		break;
	case MIG_CLI_BUS: a->bus = arg; break;
	case MIG_CLI_TIMEOUT:
		r = seconds("timeout", arg, 0, -1, &a->timeout_ms);
		break;
	case MIG_CLI_LINGER:
		r = seconds("linger", arg, 0, MAX_SECONDS_MS, &ms);
		a->linger_ms = (int)ms;
		break;
	case MIG_CLI_SUMMARY: a->summary = true; break;
	case MIG_CLI_NOTIFY:
		/* only what the webhook module can deliver: a typo is a usage
		 * error before anything starts */
		if (!url_ok(arg))
			return mig_cli_usage("--notify '%s' is not an http:// or "
					     "https:// URL", arg);
		a->notify_url = arg;
		break;
	case MIG_CLI_LINK_TIMEOUT:
		r = seconds("link-timeout", arg, MIN_LINK_TIMEOUT_MS, MAX_SECONDS_MS, &ms);
		a->link_timeout_ms = (int)ms;
		break;
	case MIG_CLI_READY_FD:
		if (mig_parse_ulong(arg, 0, 1 << 20, &ul) < 0 || fcntl((int)ul, F_GETFD) < 0)
			return mig_cli_usage("--ready-fd '%s' is not an open file "
					     "descriptor", arg);
		a->ready_fd = (int)ul;
		break;
	case MIG_CLI_TLS_PSK:
	case MIG_CLI_TLS_X509:
		if (c == MIG_CLI_TLS_PSK ? a->tls_x509 : a->tls_psk)
			return mig_cli_usage("--tls-psk and --tls-x509 exclude each "
					     "other; give one");
		*(c == MIG_CLI_TLS_PSK ? &a->tls_psk : &a->tls_x509) = arg;
		break;
	case MIG_CLI_TLS_HOSTNAME: a->tls_hostname = arg; break;
	case MIG_CLI_TLS_AUTHZ: a->tls_authz = arg; break;
	case MIG_CLI_VERBOSE: mig_log_adjust(+1); break;
	case MIG_CLI_QUIET:
		a->quiet++;
		mig_log_adjust(-1);
		break;
	case MIG_CLI_HELP:
		mig_cli_help(cli, stdout);
		return MIG_CLI_DONE;
	case MIG_CLI_VERSION:
		printf("%s %s\n", cli->prog, MIG_VERSION);
		return MIG_CLI_DONE;
	}
	return r;
}

/* The option getopt_long stopped at, as the user wrote it: an unknown
 * short one is optopt (argv[optind - 1] may be an earlier word when it
 * sits inside a cluster), a long one is the word without "=VALUE". */
static int bad_option(int c, char **argv)
{
	const char *arg = argv[optind - 1];
	char what[64];

	if ((c == ':' || !optopt) && !strncmp(arg, "--", 2))
		snprintf(what, sizeof(what), "%.*s", (int)strcspn(arg, "="), arg);
	else
		snprintf(what, sizeof(what), "-%c", optopt);
	if (c == ':')
		return mig_cli_usage("option '%s' needs an argument", what);
	return mig_cli_usage("unknown option '%s'", what);
}

static int check_excl(const struct mig_cli *cli, struct table *t)
{
	for (const struct mig_cli_excl *x = cli->excl; x && x->a; x++) {
		struct ent *a = by_key(t, x->a), *b = by_key(t, x->b);

		if (a && b && a->seen && b->seen)
			return mig_cli_usage("--%s and --%s exclude each other%s%s",
					     a->o.name, b->o.name, x->why ? ": " : "",
					     x->why ? x->why : "");
	}
	return 0;
}

int mig_cli_parse(const struct mig_cli *cli, int argc, char **argv,
		  struct mig_cli_args *a, void *ctx, int *first)
{
	struct option longopts[MAX_OPTS + 1];
	char shorts[2 + 2 * MAX_OPTS + 1] = ":";
	size_t ns = 1;
	struct table t;
	int c, r;

	build(cli, &t);
	for (size_t i = 0; i < t.n; i++) {
		const struct mig_cli_opt *o = &t.e[i].o;

		longopts[i] = (struct option){ o->name, o->arg ? required_argument :
					       no_argument, NULL, o->key };
		if (o->key < 256) {
			shorts[ns++] = (char)o->key;
			if (o->arg)
				shorts[ns++] = ':';
		}
	}
	longopts[t.n] = (struct option){ 0 };
	shorts[ns] = '\0';
	opterr = 0; /* our own one-line messages */
	while ((c = getopt_long(argc, argv, shorts, longopts, NULL)) != -1) {
		struct ent *e = c == '?' || c == ':' ? NULL : by_key(&t, c);

		if (!e)
			return bad_option(c, argv);
		e->seen = true;
		r = e->common >= 0 ? common_opt(cli, e->common, optarg, a) :
		    cli->opt(ctx, c, optarg);
		if (r)
			return r;
	}
	*first = optind;
	return check_excl(cli, &t);
}

int mig_cli_bus_path(struct mig_cli_args *a, const char *side, char *buf,
		     size_t len)
{
	int r;

	if (a->bus)
		return 0;
	r = mig_bus_path(a->name, side, buf, len, true);
	if (r < 0) {
		if (r != -EPERM) /* a refused runtime directory: said */
			mig_cli_error("cannot make the bus path for '%s': %s",
				      a->name, strerror(-r));
		return MIG_EXIT_FAIL;
	}
	a->bus = buf;
	return 0;
}

/*
 * After --help, a view or a summary: a full disk or a closed stdout must
 * not look like success (util-linux close_stdout). A reader that went away
 * (EPIPE) chose to stop reading: not reported.
 */
static void close_stdout(void)
{
	bool pending = __fpending(stdout) != 0;
	bool failed = ferror(stdout) != 0;
	int err = 0;

	if (fclose(stdout) != 0) {
		err = errno;
		failed |= pending || err != EBADF;
	}
	if (!failed || err == EPIPE)
		return;
	if (err)
		mig_log_say("write error: %s", strerror(err));
	else
		mig_log_say("write error");
	_exit(MIG_EXIT_FAIL);
}

void mig_cli_init(const char *argv0)
{
	mig_log_init(argv0);
	atexit(close_stdout);
}
