// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: json.c, the one JSON parser behind the bus, the QMP
 * client and the status tools. A parsed value is walked through every
 * getter the bus uses, and printing must be a fixed point: what we print
 * parses back and prints the same again (a reply we forward or replay from
 * the history is the same reply).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const struct mig_json *j, unsigned depth)
{
	const char *kind = mig_json_kind(j);
	int64_t i;
	double d;
	bool b;

	if (!kind)
		abort(); /* every parsed value has a kind */
	(void)mig_json_is_integer(j, &i);
	(void)mig_json_str_value(j);
	if (mig_json_is_array(j)) {
		for (size_t k = 0; k < mig_json_array_len(j); k++)
			walk(mig_json_array_at(j, k), depth + 1);
		if (mig_json_array_at(j, mig_json_array_len(j)))
			abort();
	}
	if (!mig_json_is_object(j))
		return;
	for (size_t k = 0; k < mig_json_members_len(j); k++) {
		const struct mig_json *m = mig_json_member_at(j, k);
		const char *key = mig_json_key(m);

		if (!key)
			abort();
		/* the getters find the first member of a name */
		(void)mig_json_get_str(j, key);
		(void)mig_json_get_int(j, key, &i);
		(void)mig_json_get_double(j, key, &d);
		(void)mig_json_get_bool(j, key, &b);
		if (!mig_json_get(j, key))
			abort();
		walk(m, depth + 1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mig_json *j = mig_json_parse((const char *)data, size), *again, *dup;
	char *text, *text2, *text3;

	if (!j)
		return 0;
	walk(j, 0);
	text = mig_json_print(j, false);
	dup = mig_json_dup(j);
	text3 = mig_json_print(dup, true);
	if (!text || !dup || !text3)
		abort();
	again = mig_json_parse(text, strlen(text));
	if (!again)
		abort(); /* we printed something we cannot read back */
	text2 = mig_json_print(again, false);
	if (!text2 || strcmp(text, text2))
		abort();
	mig_json_free(again);
	mig_json_free(dup);
	mig_json_free(j);
	free(text);
	free(text2);
	free(text3);
	return 0;
}
