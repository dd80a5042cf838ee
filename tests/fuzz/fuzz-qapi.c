// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: the bus's argument checks (qapi.c) against the schema
 * the engines serve. The input is a QMP request; as session.c does, a
 * well-formed one (an object with a string "execute" and, if any, an
 * object "arguments") has its arguments checked, which must end in 0,
 * -ENOENT or -EINVAL with a message.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus-int.h"
#include "engine/schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mig_qapi *qapi;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mig_json *req = mig_json_parse((const char *)data, size);
	const struct mig_json *args = mig_json_get(req, "arguments");
	const char *cmd = mig_json_get_str(req, "execute");
	char desc[256];
	int r;

	if (!qapi && !(qapi = bus_qapi_new(mig_schema_json)))
		abort();
	if (!cmd || (args && !mig_json_is_object(args)))
		goto out;
	desc[0] = '\0';
	memset(desc + 1, 'x', sizeof(desc) - 1);
	r = bus_qapi_check_args(qapi, cmd, args, desc, sizeof(desc));
	if (r != 0 && r != -ENOENT && r != -EINVAL)
		abort();
	if (r == -EINVAL && (!desc[0] || !memchr(desc, '\0', sizeof(desc))))
		abort(); /* a refusal says why, in a string */
out:
	mig_json_free(req);
	return 0;
}
