/* SPDX-License-Identifier: MIT */
/*
 * Fault injection for tests: named points, enabled by MIG_FAULT=name[,name],
 * inert unless set. Used next to real failures (killed proxies, silent
 * peers) where a real failure cannot hit an exact moment.
 */
#ifndef MIG_FAULT_H
#define MIG_FAULT_H

#include <stdbool.h>

/* Is fault point `name` enabled? */
bool mig_fault(const char *name);

#endif
