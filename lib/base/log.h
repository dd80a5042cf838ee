/* SPDX-License-Identifier: MIT */
/*
 * Logging for people: "prog: level: module: message" on stderr. Machines read
 * the status bus instead. -v/-q move the level; MIG_DEBUG=mod1,mod2 (or "all")
 * turns on debug output for single modules without rebuilding.
 */
#ifndef MIG_LOG_H
#define MIG_LOG_H

#include <stdbool.h>

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

#define mig_err(mod, ...) mig_log(MIG_LOG_ERR, mod, __VA_ARGS__)
#define mig_warn(mod, ...) mig_log(MIG_LOG_WARN, mod, __VA_ARGS__)
#define mig_info(mod, ...) mig_log(MIG_LOG_INFO, mod, __VA_ARGS__)
#define mig_dbg(mod, ...) mig_log(MIG_LOG_DEBUG, mod, __VA_ARGS__)

#endif
