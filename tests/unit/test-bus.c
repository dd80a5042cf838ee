// SPDX-License-Identifier: MIT
/*
 * Unit tests for the bus's pure parts: the JSON message framing scanner
 * (fed every way a stream can be cut), the json.h layer over cJSON, and one
 * in-process round trip over a UNIX socket checking the property tools rely
 * on: the history plus live events show each event exactly once; and the
 * bound on that history.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus/bus.h"
#include "core/json.h"
#include "bus/jsonstream.h"

#define MAX_VALUES 16

struct values {
	char v[MAX_VALUES][256];
	size_t n;
	size_t pending; /* bytes of an unfinished value left at the end */
};

/* Feed stream to the scanner chunk bytes at a time, as recv() would, with
 * the caller's buffer handling of bus.c: collect every complete value. */
static void scan_chunked(const char *stream, size_t chunk, struct values *out)
{
	size_t total = strlen(stream), fed = 0, len = 0, start, end;
	char buf[1024];
	struct mig_jsonstream s;

	mig_jsonstream_reset(&s);
	memset(out, 0, sizeof(*out));
	while (fed < total) {
		size_t n = total - fed < chunk ? total - fed : chunk;

		memcpy(buf + len, stream + fed, n);
		len += n;
		fed += n;
		while (mig_jsonstream_next(&s, buf, len, &start, &end)) {
			assert_true(out->n < MAX_VALUES);
			snprintf(out->v[out->n++], sizeof(out->v[0]), "%.*s",
				 (int)(end - start), buf + start);
			memmove(buf, buf + end, len - end);
			len -= end;
			mig_jsonstream_reset(&s);
		}
		memmove(buf, buf + start, len - start);
		len -= start;
		mig_jsonstream_shift(&s, start);
	}
	out->pending = len;
}

/* Every chunk size gives the same values. */
static void expect_values(const char *stream, const char *const *want,
			  size_t nwant, size_t pending)
{
	for (size_t chunk = 1; chunk <= strlen(stream); chunk++) {
		struct values got;

		scan_chunked(stream, chunk, &got);
		assert_int_equal(got.n, nwant);
		for (size_t i = 0; i < nwant; i++)
			assert_string_equal(got.v[i], want[i]);
		assert_int_equal(got.pending, pending);
	}
}

static void test_scan_one(void **state)
{
	const char *want[] = { "{\"execute\":\"qmp_capabilities\"}" };

	expect_values("{\"execute\":\"qmp_capabilities\"}", want, 1, 0);
	expect_values("  \r\n{\"execute\":\"qmp_capabilities\"}\r\n", want, 1, 0);
}

static void test_scan_several(void **state)
{
	const char *want[] = { "{\"a\":1}", "{\"b\":{\"c\":2}}", "{}" };

	expect_values("{\"a\":1}{\"b\":{\"c\":2}}\n{}", want, 3, 0);
}

static void test_scan_strings(void **state)
{
	const char *want[] = {
		"{\"a\":\"}{][\"}",
		"{\"q\":\"say \\\"}\\\" ok\"}",
		"{\"bs\":\"\\\\\"}",
		"{\"u\":\"\\u007d\"}",
	};

	expect_values("{\"a\":\"}{][\"}"
		      "{\"q\":\"say \\\"}\\\" ok\"}"
		      "{\"bs\":\"\\\\\"}"
		      "{\"u\":\"\\u007d\"}", want, 4, 0);
}

static void test_scan_nested(void **state)
{
	const char *want[] = { "[[1,[2,[3]]],{\"x\":[{},[]]}]", "{\"id\":[1,{\"k\":[]}]}" };

	expect_values("[[1,[2,[3]]],{\"x\":[{},[]]}] {\"id\":[1,{\"k\":[]}]}",
		      want, 2, 0);
}

static void test_scan_scalars_and_garbage(void **state)
{
	const char *want[] = { "abc", "}", "12", "\"s{\"", "]", "{\"ok\":true}" };

	expect_values("abc } 12 \"s{\" ] {\"ok\":true}", want, 6, 0);
}

static void test_scan_incomplete(void **state)
{
	const char *want[] = { "{\"a\":1}" };

	/* the rest waits for more bytes; leading whitespace is dropped */
	expect_values("{\"a\":1}   {\"b\":\"}", want, 1, strlen("{\"b\":\"}"));
	expect_values("{\"a\":1}   ", want, 1, 0);
}

static void test_scan_resume_position(void **state)
{
	struct mig_jsonstream s;
	const char *buf = "{\"a\":[1,2]}";
	size_t start, end;

	mig_jsonstream_reset(&s);
	assert_false(mig_jsonstream_next(&s, buf, 5, &start, &end));
	assert_int_equal(start, 0);
	assert_true(mig_jsonstream_next(&s, buf, strlen(buf), &start, &end));
	assert_int_equal(start, 0);
	assert_int_equal(end, strlen(buf));
}

static void test_json_round_trip(void **state)
{
	struct mig_json *o = mig_json_new_object(), *arr = mig_json_new_array();
	struct mig_json *back, *inner = mig_json_new_object();
	int64_t i = 0;
	double d = 0;
	bool b = false;
	char *text;

	mig_json_add_str(o, "s", "h\"i}");
	mig_json_add_int(o, "big", 9007199254740992ll); /* 2^53 */
	mig_json_add_int(o, "neg", -42);
	mig_json_add_int(o, "us", 1795316164522808ll); /* beyond cJSON's exact print */
	assert_true(mig_json_get_int(o, "us", &i));
	assert_int_equal(i, 1795316164522808ll);
	mig_json_add_double(o, "d", 943.5);
	mig_json_add_bool(o, "t", true);
	mig_json_add_str(inner, "status", "postcopy-paused");
	mig_json_add(o, "data", inner);
	mig_json_append(arr, mig_json_new_str("x"));
	mig_json_append(arr, mig_json_new_object());
	mig_json_add(o, "arr", arr);
	text = mig_json_print(o, false);
	assert_non_null(text);
	back = mig_json_parse(text, strlen(text));
	assert_non_null(back);
	assert_string_equal(mig_json_get_str(back, "s"), "h\"i}");
	assert_true(mig_json_get_int(back, "big", &i));
	assert_int_equal(i, 9007199254740992ll);
	assert_true(mig_json_get_int(back, "us", &i));
	assert_int_equal(i, 1795316164522808ll);
	assert_true(mig_json_get_int(back, "neg", &i));
	assert_int_equal(i, -42);
	assert_true(mig_json_get_double(back, "d", &d));
	assert_true(d == 943.5);
	assert_true(mig_json_get_bool(back, "t", &b) && b);
	assert_string_equal(mig_json_get_str(mig_json_get(back, "data"), "status"),
			    "postcopy-paused");
	assert_true(mig_json_is_array(mig_json_get(back, "arr")));
	assert_int_equal(mig_json_array_len(mig_json_get(back, "arr")), 2);
	assert_string_equal(mig_json_str_value(mig_json_array_at(mig_json_get(back, "arr"), 0)), "x");
	assert_true(mig_json_is_object(mig_json_array_at(mig_json_get(back, "arr"), 1)));
	assert_null(mig_json_array_at(mig_json_get(back, "arr"), 2));
	free(text);
	mig_json_free(back);
	mig_json_free(o);
}

static void test_json_types_and_missing(void **state)
{
	const char *text = "{\"s\":\"1\",\"n\":1,\"b\":false}";
	struct mig_json *o = mig_json_parse(text, strlen(text));
	int64_t i;
	double d;
	bool b;

	assert_non_null(o);
	assert_false(mig_json_get_int(o, "s", &i));
	assert_false(mig_json_get_double(o, "b", &d));
	assert_false(mig_json_get_bool(o, "n", &b));
	assert_null(mig_json_get_str(o, "n"));
	assert_null(mig_json_get(o, "missing"));
	assert_null(mig_json_get_str(NULL, "s"));
	assert_false(mig_json_is_object(NULL));
	assert_int_equal(mig_json_array_len(o), 0);
	assert_null(mig_json_str_value(o));
	mig_json_free(o);
	mig_json_free(NULL);
}

static void test_json_replace_detach_dup(void **state)
{
	struct mig_json *o = mig_json_new_object(), *copy, *v;
	char *text;

	mig_json_add_int(o, "k", 1);
	mig_json_add_str(o, "k", "two"); /* replaces */
	text = mig_json_print(o, false);
	assert_string_equal(text, "{\"k\":\"two\"}");
	free(text);
	copy = mig_json_dup(o);
	v = mig_json_detach(o, "k");
	assert_string_equal(mig_json_str_value(v), "two");
	assert_null(mig_json_get(o, "k"));
	assert_null(mig_json_detach(o, "k"));
	assert_string_equal(mig_json_get_str(copy, "k"), "two");
	mig_json_free(v);
	mig_json_free(copy);
	mig_json_free(o);
}

static void test_json_parse_strict(void **state)
{
	struct mig_json *j;

	assert_null(mig_json_parse("{\"a\":1} x", 9));
	assert_null(mig_json_parse("{\"a\":", 5));
	assert_null(mig_json_parse("", 0));
	assert_null(mig_json_parse("}", 1));
	j = mig_json_parse("{\"a\":1} \r\n", 10);
	assert_non_null(j);
	mig_json_free(j);
	/* len bounds the text: no NUL needed */
	j = mig_json_parse("[1,2]garbage", 5);
	assert_non_null(j);
	assert_int_equal(mig_json_array_len(j), 2);
	mig_json_free(j);
}

/* ---- one round trip over a real socket ---- */

static int echo_handler(void *ctx, const char *cmd, const struct mig_json *args,
			struct mig_json **ret, char *desc, size_t desclen)
{
	if (!strcmp(cmd, "echo")) {
		*ret = mig_json_dup(args);
		return 0;
	}
	if (!strcmp(cmd, "fail")) {
		snprintf(desc, desclen, "not now");
		return -EBUSY;
	}
	return -ENOENT;
}

static void emit_status(struct mig_bus *bus, const char *st)
{
	struct mig_json *d = mig_json_new_object();

	mig_json_add_str(d, "status", st);
	mig_bus_emit(bus, "MIGRATION", d);
}

static const char *ev_status(const struct mig_json *ev)
{
	return mig_json_get_str(mig_json_get(ev, "data"), "status");
}

static void test_bus_round_trip(void **state)
{
	char dir[] = "/tmp/mig-test-bus.XXXXXX", path[64], err[64];
	struct mig_json *args, *ret = NULL, *events = NULL, *ev = NULL;
	struct mig_bus *bus;
	struct mig_qmp *q;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/b.sock", dir);
	bus = mig_bus_open(path, NULL, echo_handler, NULL);
	assert_non_null(bus);
	assert_null(mig_bus_open(path, NULL, echo_handler, NULL));
	assert_int_equal(errno, EADDRINUSE);
	emit_status(bus, "setup");
	q = mig_qmp_connect(path, 2000);
	assert_non_null(q);
	emit_status(bus, "active");
	args = mig_json_new_object();
	mig_json_add_int(args, "n", 7);
	assert_int_equal(mig_qmp_execute(q, "echo", args, &ret, NULL, 0, 2000), 0);
	assert_true(mig_json_get_int(ret, "n", &(int64_t){ 0 }));
	mig_json_free(ret);
	assert_int_equal(mig_qmp_execute(q, "fail", NULL, NULL, err, sizeof(err), 2000),
			 -EREMOTEIO);
	assert_string_equal(err, "not now");
	assert_int_equal(mig_qmp_execute(q, "nope", NULL, NULL, err, sizeof(err), 2000),
			 -EREMOTEIO);
	assert_string_equal(err, "The command nope has not been found");
	/* history, then live: "setup", "active" once each, then "completed" */
	assert_int_equal(mig_qmp_query_events(q, &events, 2000), 0);
	assert_int_equal(mig_json_array_len(events), 2);
	assert_string_equal(ev_status(mig_json_array_at(events, 0)), "setup");
	assert_string_equal(ev_status(mig_json_array_at(events, 1)), "active");
	mig_json_free(events);
	emit_status(bus, "completed");
	assert_int_equal(mig_qmp_next_event(q, &ev, 2000), 0);
	assert_string_equal(ev_status(ev), "completed");
	assert_non_null(mig_json_get(mig_json_get(ev, "timestamp"), "seconds"));
	mig_json_free(ev);
	assert_int_equal(mig_qmp_next_event(q, &ev, 50), -ETIMEDOUT);
	mig_bus_close(bus);
	assert_int_equal(mig_qmp_next_event(q, &ev, 2000), -ECONNRESET);
	assert_int_equal(access(path, F_OK), -1);
	mig_qmp_close(q);
	assert_null(mig_qmp_connect(path, 500));
	assert_int_equal(errno, ENOENT);
	rmdir(dir);
}

/* An engine paused and recovered thousands of times emits thousands of
 * events: the history keeps the first ones and the latest, in order. */
static void test_bus_history_bounded(void **state)
{
	char dir[] = "/tmp/mig-test-bus.XXXXXX", path[64];
	const unsigned first = MIG_BUS_HISTORY_FIRST, last = MIG_BUS_HISTORY_LAST;
	const unsigned total = first + last + 1000;
	struct mig_json *events = NULL;
	struct mig_bus *bus;
	struct mig_qmp *q;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/b.sock", dir);
	bus = mig_bus_open(path, NULL, echo_handler, NULL);
	assert_non_null(bus);
	for (unsigned i = 0; i < total; i++) {
		struct mig_json *d = mig_json_new_object();

		mig_json_add_int(d, "n", i);
		mig_bus_emit(bus, "TICK", d);
	}
	/* emitted before connecting: all in the history by the first command */
	q = mig_qmp_connect(path, 2000);
	assert_non_null(q);
	assert_int_equal(mig_qmp_query_events(q, &events, 2000), 0);
	assert_int_equal(mig_json_array_len(events), first + last);
	for (unsigned k = 0; k < first + last; k++) {
		const struct mig_json *ev = mig_json_array_at(events, k);
		int64_t n = -1, s = -1;

		assert_string_equal(mig_json_get_str(ev, "event"), "TICK");
		assert_true(mig_json_get_int(mig_json_get(ev, "data"), "n", &n));
		assert_int_equal(n, k < first ? k : total - last + (k - first));
		assert_true(mig_json_get_int(mig_json_get(ev, "timestamp"),
					     "seconds", &s));
		assert_true(s > 0);
	}
	mig_json_free(events);
	mig_qmp_close(q);
	mig_bus_close(bus);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scan_one),
		cmocka_unit_test(test_scan_several),
		cmocka_unit_test(test_scan_strings),
		cmocka_unit_test(test_scan_nested),
		cmocka_unit_test(test_scan_scalars_and_garbage),
		cmocka_unit_test(test_scan_incomplete),
		cmocka_unit_test(test_scan_resume_position),
		cmocka_unit_test(test_json_round_trip),
		cmocka_unit_test(test_json_types_and_missing),
		cmocka_unit_test(test_json_replace_detach_dup),
		cmocka_unit_test(test_json_parse_strict),
		cmocka_unit_test(test_bus_round_trip),
		cmocka_unit_test(test_bus_history_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
