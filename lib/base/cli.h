/* SPDX-License-Identifier: MIT */
/*
 * The command line of every mig program: the common options (--name, --bus,
 * --timeout, --linger, --summary, --notify, --link-timeout, --ready-fd,
 * --tls-psk, --tls-x509, --tls-hostname, --tls-authz, -v,
 * -q, -h, -V) parsed here the same way for all, the program's own options
 * handed to it, options that exclude each other checked from a table, and
 * --help generated from the same declarations, so that the help, the
 * parser and the option list cannot drift apart. Usage errors are one line
 * and "Try 'prog --help'.", exit 64 (util-linux errtryhelp); a failed write
 * to stdout fails the program (util-linux close_stdout).
 */
#ifndef MIG_CLI_H
#define MIG_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* The common options, in the order --help lists them. */
enum mig_cli_common {
	MIG_CLI_NAME,           /* -n, --name NAME */
	MIG_CLI_BUS,            /* -b, --bus PATH */
	MIG_CLI_TIMEOUT,        /* -t, --timeout SECS */
	MIG_CLI_LINGER,         /* --linger SECS */
	MIG_CLI_SUMMARY,        /* --summary */
	MIG_CLI_NOTIFY,         /* --notify URL */
	MIG_CLI_LINK_TIMEOUT,   /* --link-timeout SECS */
	MIG_CLI_READY_FD,       /* --ready-fd N */
	MIG_CLI_TLS_PSK,        /* --tls-psk FILE */
	MIG_CLI_TLS_X509,       /* --tls-x509 DIR */
	MIG_CLI_TLS_HOSTNAME,   /* --tls-hostname NAME */
	MIG_CLI_TLS_AUTHZ,      /* --tls-authz FILE */
	MIG_CLI_VERBOSE,        /* -v, --verbose: every program */
	MIG_CLI_QUIET,          /* -q, --quiet: every program */
	MIG_CLI_HELP,           /* -h, --help: every program */
	MIG_CLI_VERSION,        /* -V, --version: every program */
	MIG_CLI__COUNT
};

/* struct mig_cli.common: the common options a program takes. */
#define MIG_CLI_TAKES(c) (1u << (c))

/* The common options of the engines (mig-send, mig-recv), and of the
 * tools that talk to them (mig-pause, mig-recover, mig-status). */
#define MIG_CLI_ENGINE (MIG_CLI_TAKES(MIG_CLI_NAME) | MIG_CLI_TAKES(MIG_CLI_BUS) | \
			MIG_CLI_TAKES(MIG_CLI_LINGER) | MIG_CLI_TAKES(MIG_CLI_SUMMARY) | \
			MIG_CLI_TAKES(MIG_CLI_NOTIFY) | \
			MIG_CLI_TAKES(MIG_CLI_LINK_TIMEOUT) | \
			MIG_CLI_TAKES(MIG_CLI_READY_FD) | MIG_CLI_TAKES(MIG_CLI_TLS_PSK) | \
			MIG_CLI_TAKES(MIG_CLI_TLS_X509) | \
			MIG_CLI_TAKES(MIG_CLI_TLS_HOSTNAME) | \
			MIG_CLI_TAKES(MIG_CLI_TLS_AUTHZ))
#define MIG_CLI_TOOL (MIG_CLI_TAKES(MIG_CLI_NAME) | MIG_CLI_TAKES(MIG_CLI_BUS) | \
		      MIG_CLI_TAKES(MIG_CLI_TIMEOUT))

/* The key of a common option without a short letter (in exclusion
 * tables); the program's own long-only options use keys 256 and up. */
#define MIG_CLI_KEY(c) (0x10000 + (c))

/* One option of the program's own. */
struct mig_cli_opt {
	const char *name;       /* long name, without "--" */
	int key;                /* its short letter, or a key >= 256: long only */
	const char *arg;        /* the argument's name in --help; NULL: none */
	const char *help;       /* for --help; '\n' goes on on the next line */
};

/* Two options (by key) that exclude each other; why may add a reason. */
struct mig_cli_excl {
	int a, b;
	const char *why;
};

/* One row of the exit-status table --help ends with. */
struct mig_cli_exit {
	int status;
	const char *what;
};

struct mig_cli {
	const char *prog;
	const char *synopsis;   /* after "Usage: prog "; '\n' starts another */
	const char *about;      /* the description paragraph(s) */
	const struct mig_cli_opt *opts;     /* own options, { NULL } ends */
	unsigned common;        /* MIG_CLI_TAKES() of the common ones taken */
	const char *help[MIG_CLI__COUNT];   /* a common option's help here,
					     * NULL: the usual one */
	const struct mig_cli_excl *excl;    /* { 0 } ends; NULL: none */
	void (*more)(FILE *out);            /* after the options; NULL: none */
	const struct mig_cli_exit *exits;   /* { 0, NULL } ends */
	/* An own option: 0, or the exit status to stop with (mig_cli_usage). */
	int (*opt)(void *ctx, int key, const char *arg);
};

/* The values of the common options. The caller sets the defaults; what
 * was not given keeps them. */
struct mig_cli_args {
	const char *name, *bus, *notify_url;
	const char *tls_psk, *tls_x509, *tls_hostname, *tls_authz;
	int64_t timeout_ms;
	int linger_ms, link_timeout_ms, ready_fd;
	bool summary;
	unsigned quiet;         /* how many -q */
};

/* mig_cli_parse(): --help or --version was written; exit 0. */
#define MIG_CLI_DONE (-1)

/* The first call of every main: the program's name for messages, and
 * stdout checked at exit, so that a failed write is a failure. */
void mig_cli_init(const char *argv0);

/* Parse argv: common options into *a, the program's own through cli->opt,
 * then the exclusions. *first: the first operand (argv index). 0 to go
 * on, MIG_CLI_DONE, or the exit status of a usage error (printed). */
int mig_cli_parse(const struct mig_cli *cli, int argc, char **argv,
		  struct mig_cli_args *a, void *ctx, int *first);

/* The --help text, as written to stdout by --help. */
void mig_cli_help(const struct mig_cli *cli, FILE *out);

/* "prog: message" on stderr (unless -qq). */
void mig_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A usage error: the line, then "Try 'prog --help'."; returns 64. */
int mig_cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The engines' default bus path for a->name and side ("send", "recv"),
 * into buf, unless --bus gave one: 0, or an exit status (printed). */
int mig_cli_bus_path(struct mig_cli_args *a, const char *side, char *buf,
		     size_t len);

#endif
