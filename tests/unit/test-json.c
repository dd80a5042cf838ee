// SPDX-License-Identifier: MIT
/*
 * Unit tests for the text rules of json.h and log.h: the parser refuses
 * what is not valid UTF-8 (as QEMU's does), every string json.h makes is
 * valid UTF-8 whatever it was given, so a reply that echoes a client's
 * bytes or cuts a message inside a character still is; and text from a
 * bus is stripped of terminal controls before a tool prints it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "core/json.h"

static bool valid_utf8(const char *s)
{
	size_t n = strlen(s);

	for (size_t i = 0; i < n;) {
		int c = mig_log_utf8_char(s + i, n - i);

		if (c < 0)
			return false;
		i += (size_t)c;
	}
	return true;
}

static void test_utf8_char(void **state)
{
	(void)state;
	assert_int_equal(mig_log_utf8_char("a", 1), 1);
	assert_int_equal(mig_log_utf8_char("\xc3\xa9", 2), 2);
	assert_int_equal(mig_log_utf8_char("\xe2\x82\xac", 3), 3);
	assert_int_equal(mig_log_utf8_char("\xf0\x9f\x98\x80", 4), 4);
	assert_int_equal(mig_log_utf8_char("\xf4\x8f\xbf\xbf", 4), 4);
	/* a stray continuation byte, bytes no UTF-8 has */
	assert_int_equal(mig_log_utf8_char("\x80", 1), -1);
	assert_int_equal(mig_log_utf8_char("\xff", 1), -1);
	/* overlong forms */
	assert_int_equal(mig_log_utf8_char("\xc0\x80", 2), -1);
	assert_int_equal(mig_log_utf8_char("\xe0\x80\x80", 3), -1);
	assert_int_equal(mig_log_utf8_char("\xf0\x80\x80\x80", 4), -1);
	/* an encoded surrogate, past U+10FFFF */
	assert_int_equal(mig_log_utf8_char("\xed\xa0\x80", 3), -1);
	assert_int_equal(mig_log_utf8_char("\xf4\x90\x80\x80", 4), -1);
	/* cut short: the part that is there is one invalid sequence */
	assert_int_equal(mig_log_utf8_char("\xe2\x82", 2), -2);
	assert_int_equal(mig_log_utf8_char("\xf0\x9f\x98", 3), -3);
	assert_int_equal(mig_log_utf8_char("\xe2\x82z", 3), -2);
}

static void assert_refused(const char *text)
{
	struct mig_json *j = mig_json_parse(text, strlen(text));

	if (j)
		fail_msg("parsed: %s", text);
}

static void test_parse_refuses_invalid_utf8(void **state)
{
	(void)state;
	assert_refused("\"\xff\"");
	assert_refused("\"a\xc3\"");
	assert_refused("\"\xc0\x80\"");
	assert_refused("\"\xed\xa0\x80\"");
	assert_refused("\"\xf4\x90\x80\x80\"");
	assert_refused("{\"execute\": \"query-\xfe\"}");
	assert_refused("{\"x\xc3\": 1}");
	assert_refused("{\"execute\": \"a\", \"id\": \"\x80\"}");
	/* escapes of a lone surrogate */
	assert_refused("\"\\ud800\"");
	assert_refused("\"\\udc00\"");
	assert_refused("\"\\ud800x\"");
}

static void test_parse_accepts_utf8(void **state)
{
	static const char text[] = "{\"s\": \"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\", "
				   "\"e\": \"\\ud83d\\ude00\"}";
	struct mig_json *j;

	(void)state;
	j = mig_json_parse(text, sizeof(text) - 1);
	assert_non_null(j);
	assert_string_equal(mig_json_get_str(j, "s"),
			    "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	assert_string_equal(mig_json_get_str(j, "e"), "\xf0\x9f\x98\x80");
	mig_json_free(j);
}

static void assert_repaired(const char *in, const char *want)
{
	struct mig_json *j = mig_json_new_str(in);

	assert_non_null(j);
	assert_string_equal(mig_json_str_value(j), want);
	mig_json_free(j);
}

static void test_new_str_repairs(void **state)
{
	(void)state;
	assert_repaired("plain", "plain");
	assert_repaired("caf\xc3\xa9", "caf\xc3\xa9");
	assert_repaired("a\xff" "b", "a\xef\xbf\xbd" "b");
	/* snprintf cut "...\xe2\x82\xac" short: one U+FFFD for the tail */
	assert_repaired("abc\xe2\x82", "abc\xef\xbf\xbd");
	assert_repaired("abc\xf0\x9f\x98", "abc\xef\xbf\xbd");
	/* an encoded surrogate: three bytes no character starts with */
	assert_repaired("\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	assert_repaired("\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd");
}

/* A reply as the bus builds one, with a client's bytes in it. */
static void test_print_is_valid_utf8(void **state)
{
	struct mig_json *o = mig_json_new_object(), *e = mig_json_new_object();
	struct mig_json *back;
	char *text;

	(void)state;
	mig_json_add_str(e, "class", "CommandNotFound");
	mig_json_add_str(e, "desc", "The command \xff\xc3 has not been found \xe2\x82");
	mig_json_add(o, "error", e);
	mig_json_add_int(o, "x\xc3", 1);
	text = mig_json_print(o, false);
	assert_non_null(text);
	assert_true(valid_utf8(text));
	assert_string_equal(text, "{\"error\":{\"class\":\"CommandNotFound\","
			    "\"desc\":\"The command \xef\xbf\xbd\xef\xbf\xbd has "
			    "not been found \xef\xbf\xbd\"},\"x\xef\xbf\xbd\":1}");
	/* and reads back: what the bus sends, the tools can parse */
	back = mig_json_parse(text, strlen(text));
	assert_non_null(back);
	mig_json_free(back);
	free(text);
	mig_json_free(o);
}

static void assert_sanitized(const char *in, size_t len, const char *want)
{
	char buf[64];

	assert_true(len <= sizeof(buf));
	assert_string_equal(mig_log_sanitize(in, buf, len), want);
}

static void test_sanitize(void **state)
{
	(void)state;
	assert_sanitized("migrate: ok", 64, "migrate: ok");
	assert_sanitized("caf\xc3\xa9 \xe2\x82\xac", 64, "caf\xc3\xa9 \xe2\x82\xac");
	/* ESC [ ... : a terminal would take it as a command */
	assert_sanitized("a\x1b[2J\x1b]0;title\x07z", 64, "a?[2J?]0;title?z");
	assert_sanitized("line\nnext\tcol\r", 64, "line?next?col?");
	assert_sanitized("del\x7f", 64, "del?");
	/* C1: U+009B is CSI, U+0085 NEL; U+00A0 is text */
	assert_sanitized("\xc2\x9b" "31m\xc2\x85\xc2\xa0", 64, "?31m?\xc2\xa0");
	/* invalid UTF-8: one '?' per invalid sequence */
	assert_sanitized("\xff\xe2\x82" "x", 64, "??x");
	assert_sanitized(NULL, 64, "");
	/* cut at a character boundary, never inside one */
	assert_sanitized("\xc3\xa9\xc3\xa9\xc3\xa9", 4, "\xc3\xa9");
	assert_sanitized("\xc3\xa9\xc3\xa9\xc3\xa9", 5, "\xc3\xa9\xc3\xa9");
	assert_sanitized("abc", 1, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_char),
		cmocka_unit_test(test_parse_refuses_invalid_utf8),
		cmocka_unit_test(test_parse_accepts_utf8),
		cmocka_unit_test(test_new_str_repairs),
		cmocka_unit_test(test_print_is_valid_utf8),
		cmocka_unit_test(test_sanitize),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
