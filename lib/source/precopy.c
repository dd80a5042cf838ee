// SPDX-License-Identifier: MIT
/* Precopy pass decisions: see precopy.h. */
#include <errno.h>
#include <string.h>

#include "source/precopy.h"
#include "base/util.h"

int mig_precopy_parse_after(const char *s, struct mig_precopy_policy *p)
{
	size_t n = s ? strlen(s) : 0;
	unsigned long passes;
	int64_t ms;
	char buf[32];

	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	if (s[n - 1] == 's') {
		memcpy(buf, s, n - 1);
		buf[n - 1] = '\0';
		if (mig_parse_seconds(buf, &ms) < 0 || ms <= 0)
			return -EINVAL;
		p->kind = MIG_SWITCH_AFTER_MS;
		p->after = (uint64_t)ms;
		return 0;
	}
	if (mig_parse_ulong(s, 1, 1000, &passes) < 0)
		return -EINVAL;
	p->kind = MIG_SWITCH_AFTER_PASSES;
	p->after = passes;
	return 0;
}

uint64_t mig_precopy_estimate_ms(const struct mig_pass *cur, uint64_t pages)
{
	double bytes_per_ns;

	if (!pages)
		return 0;
	if (!cur->ns || !cur->bytes_sent)
		return UINT64_MAX; /* no rate measured: cannot promise anything */
	bytes_per_ns = (double)cur->bytes_sent / (double)cur->ns;
	return (uint64_t)((double)pages * MIG_PAGE_SIZE / bytes_per_ns / 1e6);
}

static bool converging(const struct mig_pass *cur, const struct mig_pass *prev)
{
	if (!prev)
		return true;
	return cur->dirty_after * 100 <= prev->dirty_after * MIG_PRECOPY_CONVERGE_PCT;
}

enum mig_precopy_next mig_precopy_decide(const struct mig_precopy_policy *p,
					 const struct mig_pass *cur,
					 const struct mig_pass *prev,
					 uint64_t elapsed_ms)
{
	if (p->kind == MIG_SWITCH_NOW)
		return MIG_PRECOPY_POSTCOPY;
	/* whatever the policy, a rest that fits the downtime limit is best
	 * sent with the guest stopped: no postcopy, no page requests */
	if (mig_precopy_estimate_ms(cur, cur->dirty_after) <= p->downtime_limit_ms)
		return MIG_PRECOPY_COMPLETE;
	switch (p->kind) {
	case MIG_SWITCH_AFTER_PASSES:
		return cur->n >= p->after ? MIG_PRECOPY_POSTCOPY : MIG_PRECOPY_CONTINUE;
	case MIG_SWITCH_AFTER_MS:
		return elapsed_ms >= p->after ? MIG_PRECOPY_POSTCOPY :
						MIG_PRECOPY_CONTINUE;
	case MIG_SWITCH_NEVER:
		return MIG_PRECOPY_CONTINUE;
	default:
		if (cur->n >= MIG_PRECOPY_MAX_PASSES_AUTO ||
		    (cur->n >= 2 && !converging(cur, prev)))
			return MIG_PRECOPY_POSTCOPY;
		return MIG_PRECOPY_CONTINUE;
	}
}

bool mig_precopy_deadline(const struct mig_precopy_policy *p,
			  uint64_t elapsed_ms)
{
	return p->kind == MIG_SWITCH_AFTER_MS && elapsed_ms >= p->after;
}
