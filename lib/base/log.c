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
