// SPDX-License-Identifier: MIT
/* Fault injection points: see fault.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fault.h"
#include "base/log.h"

bool mig_fault(const char *name)
{
	const char *env = getenv("MIG_FAULT");
	char list[256], key[72];

	if (!env || !*env)
		return false;
	snprintf(list, sizeof(list), ",%s,", env);
	snprintf(key, sizeof(key), ",%s,", name);
	if (!strstr(list, key))
		return false;
	mig_warn("fault", "injecting fault '%s'", name);
	return true;
}
