/* SPDX-License-Identifier: MIT */
/*
 * Everything a program writes on stderr, in two shapes only. Diagnostics:
 * "prog: level: module: message". A command's own verdict to whoever ran
 * it (a usage error, a tool's one-line failure), as coreutils word theirs:
 * "prog: message", perhaps followed by a hint line ("Try 'prog --help'.").
 * Machines read the status bus instead. -v/-q move the level; MIG_DEBUG=
 * mod1,mod2 (or "all") turns on debug output for single modules.
 */
#ifndef MIG_LOG_H
#define MIG_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

enum mig_log_level {
	MIG_LOG_ERR = 0,
	MIG_LOG_WARN = 1,
	MIG_LOG_INFO = 2,
	MIG_LOG_DEBUG = 3,
};

/* Call once from main(); reads MIG_DEBUG. Default level is WARN. */
void mig_log_init(const char *prog);
/* -v raises by one, -q lowers by one. */
void mig_log_adjust(int delta);
int mig_log_level(void);
const char *mig_log_prog(void);
bool mig_log_enabled(int level, const char *module);

void mig_log(int level, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* "prog: message" (and a bare hint line), shown unless -q silenced errors. */
void mig_log_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mig_log_vsay(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
void mig_log_hint(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The UTF-8 character at p, n > 0 bytes left: its length (1 to 4) if it
 * is valid UTF-8 (RFC 3629: shortest form, no surrogate, at most
 * U+10FFFF), else minus the bytes of its maximal invalid part (-1 to -3),
 * the bytes one U+FFFD stands for in Unicode's replacement practice. */
int mig_log_utf8_char(const char *p, size_t n);

/* Text another program sent (a bus's reply), made fit for a terminal or a
 * log line: s copied into buf (len > 0) with each control character (C0,
 * ESC among them, DEL, C1) and each invalid UTF-8 sequence replaced by
 * one '?', and cut at a character boundary if it does not fit. NULL is taken as "".
 * Returns buf. */
const char *mig_log_sanitize(const char *s, char *buf, size_t len);

#define mig_err(mod, ...) mig_log(MIG_LOG_ERR, mod, __VA_ARGS__)
#define mig_warn(mod, ...) mig_log(MIG_LOG_WARN, mod, __VA_ARGS__)
#define mig_info(mod, ...) mig_log(MIG_LOG_INFO, mod, __VA_ARGS__)
#define mig_dbg(mod, ...) mig_log(MIG_LOG_DEBUG, mod, __VA_ARGS__)

#endif
