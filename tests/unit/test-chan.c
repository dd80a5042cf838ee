// SPDX-License-Identifier: MIT
/*
 * Unit tests for channel URIs: what --listen and --to accept and reject,
 * and that formatting gives back the same URI.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "core/chan.h"
#include "base/util.h"

static struct mig_uri parse_ok(const char *s)
{
	struct mig_uri u;
	int r = mig_uri_parse(s, &u);

	if (r != 0)
		fail_msg("mig_uri_parse(\"%s\") = %d", s, r);
	return u;
}

/* Formatting a parsed URI gives the same text back. */
static void round_trip(const char *s)
{
	struct mig_uri u = parse_ok(s), again;
	char buf[512];

	mig_uri_format(&u, buf, sizeof(buf));
	assert_string_equal(buf, s);
	again = parse_ok(buf);
	assert_int_equal(again.kind, u.kind);
	assert_string_equal(again.host, u.host);
	assert_string_equal(again.port, u.port);
	assert_string_equal(again.path, u.path);
}

static void test_tcp(void **state)
{
	struct mig_uri u;

	u = parse_ok("tcp:127.0.0.1:5000");
	assert_int_equal(u.kind, MIG_URI_TCP);
	assert_string_equal(u.host, "127.0.0.1");
	assert_string_equal(u.port, "5000");
	u = parse_ok("tcp:localhost:1");
	assert_string_equal(u.host, "localhost");
	assert_string_equal(u.port, "1");
	u = parse_ok("tcp:example.org:65535");
	assert_string_equal(u.port, "65535");
	u = parse_ok("tcp:[::1]:80");
	assert_int_equal(u.kind, MIG_URI_TCP);
	assert_non_null(strstr(u.host, "::1"));
	assert_string_equal(u.port, "80");
}

static void test_unix(void **state)
{
	struct mig_uri u;
	char s[5 + 108];

	u = parse_ok("unix:/tmp/x.sock");
	assert_int_equal(u.kind, MIG_URI_UNIX);
	assert_string_equal(u.path, "/tmp/x.sock");
	/* the longest path sun_path holds with its NUL: 107 characters */
	memcpy(s, "unix:", 5);
	memset(s + 5, 'p', 107);
	s[5 + 107] = '\0';
	u = parse_ok(s);
	assert_int_equal(strlen(u.path), 107);
}

static void test_rejects(void **state)
{
	static const char *const bad[] = {
		"", "tcp:", "tcp:host", "tcp:host:", "tcp::80", "tcp:host:0",
		"tcp:host:65536", "tcp:host:80x", "udp:h:1", "unix:", "tcp:h:-1",
		"tcp:h: 80", "tcp:h:+80", "TCP:h:1", "tcp:[::1]", "tcp:[::1]80",
		"tcp:[]:80", "tcp:::1:80", "unix", "/tmp/x.sock", "h:80",
	};
	char longpath[5 + 200];
	struct mig_uri u;

	for (size_t i = 0; i < MIG_ARRAY_SIZE(bad); i++)
		if (mig_uri_parse(bad[i], &u) != -EINVAL)
			fail_msg("accepted \"%s\"", bad[i]);
	assert_int_equal(mig_uri_parse(NULL, &u), -EINVAL);
	/* 108 characters and more do not fit sun_path */
	for (size_t n = 108; n < 200; n += 91) {
		memcpy(longpath, "unix:", 5);
		memset(longpath + 5, 'p', n);
		longpath[5 + n] = '\0';
		assert_int_equal(mig_uri_parse(longpath, &u), -EINVAL);
	}
}

static void test_format(void **state)
{
	round_trip("tcp:127.0.0.1:5000");
	round_trip("tcp:localhost:1");
	round_trip("tcp:[::1]:80");
	round_trip("tcp:[fe80::1]:65535");
	round_trip("unix:/tmp/x.sock");
	round_trip("unix:relative/path");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp),
		cmocka_unit_test(test_unix),
		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
