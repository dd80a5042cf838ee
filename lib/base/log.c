// SPDX-License-Identifier: MIT
/* Logging: see log.h. One write(2) per line so lines from threads never mix. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"

static const char *log_prog = "mig";
static int log_level = MIG_LOG_WARN;
static char log_debug_mods[256];

static const char *const level_names[] = { "error", "warning", "info", "debug" };

void mig_log_init(const char *prog)
{
	const char *slash = strrchr(prog, '/');
	const char *dbg = getenv("MIG_DEBUG");

	log_prog = slash ? slash + 1 : prog;
	if (dbg)
		snprintf(log_debug_mods, sizeof(log_debug_mods), ",%s,", dbg);
}

void mig_log_adjust(int delta)
{
	log_level += delta;
	if (log_level < -1)
		log_level = -1; /* -qq silences even errors */
	if (log_level > MIG_LOG_DEBUG)
		log_level = MIG_LOG_DEBUG;
}

int mig_log_level(void)
{
	return log_level;
}

const char *mig_log_prog(void)
{
	return log_prog;
}

bool mig_log_enabled(int level, const char *module)
{
	char key[40];

	if (level <= log_level)
		return true;
	if (!log_debug_mods[0])
		return false;
	if (strstr(log_debug_mods, ",all,"))
		return true;
	snprintf(key, sizeof(key), ",%s,", module);
	return strstr(log_debug_mods, key) != NULL;
}

int mig_log_utf8_char(const char *p, size_t n)
{
	const unsigned char *u = (const unsigned char *)p;
	unsigned char lo = 0x80, hi = 0xbf;
	int more;

	if (u[0] < 0x80)
		return 1;
	if (u[0] >= 0xc2 && u[0] <= 0xdf) {
		more = 1;
	} else if (u[0] >= 0xe0 && u[0] <= 0xef) {
		more = 2;
		/* E0: no overlong form; ED: no UTF-16 surrogate */
		lo = u[0] == 0xe0 ? 0xa0 : 0x80;
		hi = u[0] == 0xed ? 0x9f : 0xbf;
	} else if (u[0] >= 0xf0 && u[0] <= 0xf4) {
		more = 3;
		/* F0: no overlong form; F4: nothing past U+10FFFF */
		lo = u[0] == 0xf0 ? 0x90 : 0x80;
		hi = u[0] == 0xf4 ? 0x8f : 0xbf;
	} else {
		return -1; /* a continuation byte, or C0, C1, F5..FF: no lead byte */
	}
	for (int i = 1; i <= more; i++) {
		if ((size_t)i >= n || u[i] < lo || u[i] > hi)
			return -i;
		lo = 0x80;
		hi = 0xbf;
	}
	return more + 1;
}

/* A C0 control (ESC included), DEL, or C1 (U+0080..U+009F, C2 80..C2 9F):
 * what a terminal may take as a command rather than text. */
static bool is_control(const unsigned char *u, int n)
{
	if (n == 1)
		return u[0] < 0x20 || u[0] == 0x7f;
	return n == 2 && u[0] == 0xc2 && u[1] < 0xa0;
}

const char *mig_log_sanitize(const char *s, char *buf, size_t len)
{
	size_t in = 0, out = 0, n = s ? strlen(s) : 0;

	while (in < n) {
		int c = mig_log_utf8_char(s + in, n - in);
		bool bad = c < 0 || is_control((const unsigned char *)s + in, c);
		size_t w = bad ? 1 : (size_t)c;

		if (out + w >= len)
			break;
		if (bad)
			buf[out] = '?';
		else
			memcpy(buf + out, s + in, w);
		out += w;
		in += c < 0 ? (size_t)-c : (size_t)c;
	}
	buf[out] = '\0';
	return buf;
}

/* One write(2) per line: lines of several threads never interleave. */
static void emit(char *line, int n, size_t size)
{
	if (n >= (int)size - 1)
		n = (int)size - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nowhere left to report it */
	}
}

static void __attribute__((format(printf, 2, 0)))
vsay(bool prefix, const char *fmt, va_list ap)
{
	char line[1024];
	int n = 0;

	if (log_level < MIG_LOG_ERR)
		return;
	if (prefix)
		n = snprintf(line, sizeof(line), "%s: ", log_prog);
	n += vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	emit(line, n, sizeof(line));
}

void mig_log_vsay(const char *fmt, va_list ap)
{
	vsay(true, fmt, ap);
}

void mig_log_say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(true, fmt, ap);
	va_end(ap);
}

void mig_log_hint(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(false, fmt, ap);
	va_end(ap);
}

void mig_log(int level, const char *module, const char *fmt, ...)
{
	char line[1024];
	int n = 0;
	va_list ap;

	if (!mig_log_enabled(level, module))
		return;
	if (log_level >= MIG_LOG_DEBUG) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		n = snprintf(line, sizeof(line), "[%ld.%06ld] ", (long)ts.tv_sec,
			     ts.tv_nsec / 1000);
	}
	n += snprintf(line + n, sizeof(line) - n, "%s: %s: %s: ", log_prog,
		      level_names[level], module);
	va_start(ap, fmt);
	if (n < (int)sizeof(line))
		n += vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	emit(line, n, sizeof(line));
}
