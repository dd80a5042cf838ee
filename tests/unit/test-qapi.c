// SPDX-License-Identifier: MIT
/*
 * Unit tests for the bus's schema checks (lib/bus/qapi.c) against the
 * schema the engines serve: what QEMU's input visitor accepts is accepted,
 * what it refuses is refused with its message and the argument's path; and
 * the integer test those checks rest on.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "bus/bus-int.h"
#include "core/json.h"
#include "engine/schema.h"

static struct mig_qapi *q;

static int setup(void **state)
{
	q = bus_qapi_new(mig_schema_json);
	return q ? 0 : -1;
}

static int teardown(void **state)
{
	bus_qapi_free(q);
	return 0;
}

/* Check args (JSON text, or NULL) for cmd: the return, and desc. */
static int check(const char *cmd, const char *args, char *desc, size_t len)
{
	struct mig_json *a = args ? mig_json_parse(args, strlen(args)) : NULL;
	int r;

	desc[0] = 0;
	assert_true(!args || a);
	r = bus_qapi_check_args(q, cmd, a, desc, len);
	mig_json_free(a);
	return r;
}

static void accepted(const char *cmd, const char *args)
{
	char desc[256];

	if (check(cmd, args, desc, sizeof(desc)) != 0)
		fail_msg("%s %s: refused: %s", cmd, args ? args : "", desc);
}

static void refused(const char *cmd, const char *args, const char *want)
{
	char desc[256];

	assert_int_equal(check(cmd, args, desc, sizeof(desc)), -EINVAL);
	assert_string_equal(desc, want);
}

static void test_commands(void **state)
{
	char desc[256];

	assert_int_equal(check("bogus", NULL, desc, sizeof(desc)), -ENOENT);
	/* a type's name is no command */
	assert_int_equal(check("MigrationInfo", NULL, desc, sizeof(desc)), -ENOENT);
	accepted("query-migrate", NULL);
	accepted("query-migrate", "{}");
	refused("query-migrate", "{\"bogus\": 1}", "Parameter 'bogus' is unexpected");
}

static void test_scalars(void **state)
{
	accepted("migrate-recover", "{\"uri\": \"tcp:h:1\"}");
	refused("migrate-recover", "{}", "Parameter 'uri' is missing");
	refused("migrate-recover", "{\"uri\": null}",
		"Invalid parameter type for 'uri', expected: string");
	accepted("migrate-set-parameters", "{\"max-bandwidth\": 9007199254740993}");
	accepted("migrate-set-parameters", "{\"max-bandwidth\": -1}"); /* range: the handler's */
	refused("migrate-set-parameters", "{\"max-bandwidth\": 0.5}",
		"Invalid parameter type for 'max-bandwidth', expected: integer");
	refused("migrate-set-parameters", "{\"max-bandwidth\": \"1\"}",
		"Invalid parameter type for 'max-bandwidth', expected: integer");
	refused("migrate-set-parameters", "{\"max-bandwidth\": 1e300}",
		"Invalid parameter type for 'max-bandwidth', expected: integer");
	refused("migrate", "{\"resume\": 1}",
		"Invalid parameter type for 'resume', expected: boolean");
	refused("migrate-set-parameters", "[]",
		"Invalid parameter type for 'arguments', expected: object");
}

/* An alternate (StrOrNull) takes a value of any of its members' types. */
static void test_alternates(void **state)
{
	accepted("migrate-set-parameters", "{\"tls-creds\": \"psk:/k\"}");
	accepted("migrate-set-parameters", "{\"tls-hostname\": null}");
	refused("migrate-set-parameters", "{\"tls-authz\": 5}",
		"Invalid parameter type for 'tls-authz', expected: StrOrNull");
	refused("migrate-set-parameters", "{\"tls-creds\": [\"x\"]}",
		"Invalid parameter type for 'tls-creds', expected: StrOrNull");
}

static void test_reasons(void **state)
{
	accepted("migrate-set-parameters", "{\"multifd-channels\": 2}");
	refused("migrate-set-capabilities",
		"{\"capabilities\": [{\"capability\": \"multifd\", \"state\": true}]}",
		"Parameter 'capabilities[0].capability' does not accept value "
		"'multifd': mig opens bulk channels whenever multifd-channels is "
		"above 1, no capability needed");
	refused("migrate-incoming", "{\"exit-on-error\": false}",
		"Parameter 'exit-on-error' is unexpected: mig-recv always ends "
		"when its incoming migration fails");
	refused("migrate-set-capabilities",
		"{\"capabilities\": [{\"capability\": \"xbzrle\", \"state\": true}]}",
		"Parameter 'capabilities[0].capability' does not accept value "
		"'xbzrle': mig sends whole pages (LZ4 with mig-send --compress)");
	/* a name mig has no reason for: QEMU's words alone */
	refused("migrate-set-parameters", "{\"foo\": 1}",
		"Parameter 'foo' is unexpected");
}

static void test_arrays_and_unions(void **state)
{
	static const char inet[] =
		"{\"channels\": [{\"channel-type\": \"main\", \"addr\": "
		"{\"transport\": \"socket\", \"type\": \"inet\", \"host\": \"h\", "
		"\"port\": \"1\"}}]}";

	accepted("migrate", inet);
	accepted("migrate-incoming", "{\"channels\": [{\"channel-type\": \"main\", "
		 "\"addr\": {\"transport\": \"socket\", \"type\": \"unix\", "
		 "\"path\": \"/p\"}}]}");
	/* the variant's members, and only its */
	refused("migrate", "{\"channels\": [{\"channel-type\": \"main\", \"addr\": "
		"{\"transport\": \"socket\", \"type\": \"unix\", \"host\": \"h\"}}]}",
		"Parameter 'channels[0].addr.host' is unexpected");
	refused("migrate", "{\"channels\": [{\"channel-type\": \"main\", \"addr\": "
		"{\"transport\": \"socket\", \"type\": \"vsock\", \"cid\": \"3\"}}]}",
		"Parameter 'channels[0].addr.type' does not accept value 'vsock': "
		"mig migrates over sockets only (tcp or unix)");
	refused("migrate", "{\"channels\": [{\"addr\": {}}]}",
		"Parameter 'channels[0].channel-type' is missing");
	refused("migrate", "{\"channels\": {}}",
		"Invalid parameter type for 'channels', expected: array");
	refused("migrate-set-capabilities", "{\"capabilities\": [{\"capability\": "
		"\"events\", \"state\": true}, {\"capability\": \"events\"}]}",
		"Parameter 'capabilities[1].state' is missing");
}

static void test_introspection(void **state)
{
	const struct mig_json *schema = bus_qapi_schema(q);
	struct mig_json *cmds = bus_qapi_commands(q);
	size_t ncmd = 0;

	for (size_t i = 0; i < mig_json_array_len(schema); i++) {
		const char *m = mig_json_get_str(mig_json_array_at(schema, i),
						 "meta-type");

		ncmd += !strcmp(m, "command");
	}
	assert_true(ncmd > 15);
	assert_int_equal(mig_json_array_len(cmds), ncmd);
	assert_string_equal(mig_json_get_str(mig_json_array_at(cmds, 0), "name"),
			    "qmp_capabilities");
	mig_json_free(cmds);
	assert_null(bus_qapi_new("{\"schema\": 5}"));
	assert_null(bus_qapi_new("not json"));
}

static void test_is_integer(void **state)
{
	static const struct {
		const char *text;
		bool ok;
		int64_t v;
	} cases[] = {
		{ "0", true, 0 },
		{ "-7", true, -7 },
		{ "9007199254740992", true, 9007199254740992LL },
		{ "-9223372036854775808", true, INT64_MIN },
		{ "9223372036854775808", false, 0 },
		{ "1e300", false, 0 },
		{ "0.5", false, 0 },
		{ "2.0", true, 2 }, /* cJSON cannot tell 2.0 from 2 */
		{ "\"3\"", false, 0 },
		{ "true", false, 0 },
		{ "null", false, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mig_json *j = mig_json_parse(cases[i].text,
						    strlen(cases[i].text));
		int64_t v = 12345;

		assert_non_null(j);
		assert_int_equal(mig_json_is_integer(j, &v), cases[i].ok);
		if (cases[i].ok)
			assert_int_equal(v, cases[i].v);
		mig_json_free(j);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_scalars),
		cmocka_unit_test(test_reasons),
		cmocka_unit_test(test_alternates),
		cmocka_unit_test(test_arrays_and_unions),
		cmocka_unit_test(test_introspection),
		cmocka_unit_test(test_is_integer),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
