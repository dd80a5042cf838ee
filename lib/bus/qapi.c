// SPDX-License-Identifier: MIT
/*
 * The bus's schema (see bus.h): the QAPI introspection a bus serves through
 * query-qmp-schema, and the same data used to refuse, before any handler
 * runs, what QEMU's input visitor refuses: an unknown command or argument,
 * a missing one, a value of the wrong type or outside an enum. One table,
 * so what the bus says it takes and what it takes cannot drift apart.
 * The messages are QEMU's, so that scripts matching them keep working.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus-int.h"

struct mig_qapi {
	struct mig_json *doc;
	const struct mig_json *schema;      /* the SchemaInfo array */
	const struct mig_json *unsupported; /* name -> why mig refuses it */
};

/* Paths like QEMU's: "capabilities[0].capability". */
#define PATH_BYTES 128

struct check {
	const struct mig_qapi *q;
	char *desc;
	size_t desclen;
};

struct mig_qapi *bus_qapi_new(const char *text)
{
	struct mig_qapi *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->doc = mig_json_parse(text, strlen(text));
	q->schema = mig_json_get(q->doc, "schema");
	q->unsupported = mig_json_get(q->doc, "unsupported");
	if (!mig_json_is_array(q->schema)) {
		bus_qapi_free(q);
		errno = EINVAL;
		return NULL;
	}
	return q;
}

void bus_qapi_free(struct mig_qapi *q)
{
	if (!q)
		return;
	mig_json_free(q->doc);
	free(q);
}

const struct mig_json *bus_qapi_schema(const struct mig_qapi *q)
{
	return q->schema;
}

static const struct mig_json *lookup(const struct mig_qapi *q, const char *name)
{
	size_t n = mig_json_array_len(q->schema);

	for (size_t i = 0; i < n; i++) {
		const struct mig_json *t = mig_json_array_at(q->schema, i);
		const char *tn = mig_json_get_str(t, "name");

		if (tn && !strcmp(tn, name))
			return t;
	}
	return NULL;
}

static bool is_meta(const struct mig_json *t, const char *meta)
{
	const char *m = mig_json_get_str(t, "meta-type");

	return m && !strcmp(m, meta);
}

struct mig_json *bus_qapi_commands(const struct mig_qapi *q)
{
	struct mig_json *list = mig_json_new_array();
	size_t n = mig_json_array_len(q->schema);

	for (size_t i = 0; i < n; i++) {
		const struct mig_json *t = mig_json_array_at(q->schema, i);
		struct mig_json *c;

		if (!is_meta(t, "command"))
			continue;
		c = mig_json_new_object();
		mig_json_add_str(c, "name", mig_json_get_str(t, "name"));
		mig_json_append(list, c);
	}
	return list;
}

/* ---- checking a value against a type ---- */

static int __attribute__((format(printf, 2, 3)))
fail(struct check *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->desc, c->desclen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* A QEMU name mig knows and refuses: say why after QEMU's wording. */
static void add_reason(struct check *c, const char *name)
{
	const char *why = mig_json_get_str(c->q->unsupported, name);
	size_t len = strlen(c->desc);

	if (why && len < c->desclen)
		snprintf(c->desc + len, c->desclen - len, ": %s", why);
}

static int check_value(struct check *c, const char *type,
		       const struct mig_json *v, const char *path);

static int check_builtin(struct check *c, const struct mig_json *t,
			 const struct mig_json *v, const char *path)
{
	const char *want = mig_json_get_str(t, "json-type");
	const char *kind = mig_json_kind(v);
	int64_t i;

	if (!strcmp(want, "value"))
		return 0;
	if (!strcmp(want, "int"))
		return mig_json_is_integer(v, &i) ? 0 :
		       fail(c, "Invalid parameter type for '%s', expected: %s",
			    path, "integer");
	if (!strcmp(want, kind))
		return 0;
	return fail(c, "Invalid parameter type for '%s', expected: %s", path,
		    want);
}

static int check_enum(struct check *c, const struct mig_json *t,
		      const struct mig_json *v, const char *path)
{
	const struct mig_json *members = mig_json_get(t, "members");
	const char *s = mig_json_str_value(v);

	if (!s)
		return fail(c, "Invalid parameter type for '%s', expected: %s",
			    path, "string");
	for (size_t i = 0; i < mig_json_array_len(members); i++)
		if (!strcmp(s, mig_json_get_str(mig_json_array_at(members, i),
						"name")))
			return 0;
	fail(c, "Parameter '%s' does not accept value '%s'", path, s);
	add_reason(c, s);
	return -EINVAL;
}

static int check_array(struct check *c, const struct mig_json *t,
		       const struct mig_json *v, const char *path)
{
	const char *elem = mig_json_get_str(t, "element-type");
	char sub[PATH_BYTES];
	int r;

	if (!mig_json_is_array(v))
		return fail(c, "Invalid parameter type for '%s', expected: %s",
			    path, "array");
	for (size_t i = 0; i < mig_json_array_len(v); i++) {
		snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
		r = check_value(c, elem, mig_json_array_at(v, i), sub);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The members an object of type t may have, given its value: its own,
 * and for a union those of the variant its tag selects, recursively. */
static int collect(struct check *c, const struct mig_json *t,
		   const struct mig_json *v, const char *path,
		   const struct mig_json **out, size_t *n, size_t cap)
{
	const struct mig_json *members = mig_json_get(t, "members");
	const struct mig_json *variants = mig_json_get(t, "variants");
	const char *tag = mig_json_get_str(t, "tag");
	const char *which;

	for (size_t i = 0; i < mig_json_array_len(members) && *n < cap; i++)
		out[(*n)++] = mig_json_array_at(members, i);
	if (!tag)
		return 0;
	which = mig_json_get_str(v, tag);
	if (!which)
		return 0; /* the tag's own check reports it */
	for (size_t i = 0; i < mig_json_array_len(variants); i++) {
		const struct mig_json *var = mig_json_array_at(variants, i);

		if (!strcmp(mig_json_get_str(var, "case"), which))
			return collect(c, lookup(c->q, mig_json_get_str(var, "type")),
				       v, path, out, n, cap);
	}
	return 0;
}

static void join(char *out, size_t len, const char *path, const char *name)
{
	snprintf(out, len, "%s%s%s", path, *path ? "." : "", name);
}

/* A union's tag first, as QEMU does, since the members depend on it; and
 * the tag of the variant it selects, when that is a union too. */
static int check_tag(struct check *c, const struct mig_json *t,
		     const struct mig_json *v, const char *path)
{
	const char *tag = mig_json_get_str(t, "tag");
	const struct mig_json *members = mig_json_get(t, "members");
	const struct mig_json *variants = mig_json_get(t, "variants");
	const char *which = tag ? mig_json_get_str(v, tag) : NULL;
	char sub[PATH_BYTES];
	size_t i;
	int r;

	if (!tag || !mig_json_get(v, tag))
		return 0;
	join(sub, sizeof(sub), path, tag);
	for (i = 0; i < mig_json_array_len(members); i++) {
		const struct mig_json *m = mig_json_array_at(members, i);

		if (!strcmp(mig_json_get_str(m, "name"), tag) &&
		    (r = check_value(c, mig_json_get_str(m, "type"),
				     mig_json_get(v, tag), sub)) < 0)
			return r;
	}
	for (i = 0; i < mig_json_array_len(variants); i++) {
		const struct mig_json *var = mig_json_array_at(variants, i);

		if (!strcmp(mig_json_get_str(var, "case"), which))
			return check_tag(c, lookup(c->q, mig_json_get_str(var, "type")),
					 v, path);
	}
	return 0;
}

static int check_object(struct check *c, const struct mig_json *t,
			const struct mig_json *v, const char *path)
{
	const struct mig_json *m[64];
	char sub[PATH_BYTES];
	size_t n = 0, k, i;
	int r;

	if (!mig_json_is_object(v))
		return fail(c, "Invalid parameter type for '%s', expected: %s",
			    *path ? path : "arguments", "object");
	r = check_tag(c, t, v, path);
	if (r < 0)
		return r;
	collect(c, t, v, path, m, &n, sizeof(m) / sizeof(m[0]));
	for (i = 0; i < mig_json_members_len(v); i++) {
		const char *key = mig_json_key(mig_json_member_at(v, i));

		for (k = 0; k < n && strcmp(mig_json_get_str(m[k], "name"), key); k++)
			;
		join(sub, sizeof(sub), path, key);
		if (k == n) {
			fail(c, "Parameter '%s' is unexpected", sub);
			add_reason(c, key);
			return -EINVAL;
		}
	}
	for (k = 0; k < n; k++) {
		const char *name = mig_json_get_str(m[k], "name");
		const struct mig_json *mv = mig_json_get(v, name);

		join(sub, sizeof(sub), path, name);
		if (!mv && !mig_json_get(m[k], "default"))
			return fail(c, "Parameter '%s' is missing", sub);
		if (mv && (r = check_value(c, mig_json_get_str(m[k], "type"),
					   mv, sub)) < 0)
			return r;
	}
	return 0;
}

/* An alternate takes a value of any of its members' builtin types (mig's
 * have no others). */
static int check_alternate(struct check *c, const char *name,
			   const struct mig_json *t, const struct mig_json *v,
			   const char *path)
{
	const struct mig_json *members = mig_json_get(t, "members");
	size_t n = mig_json_array_len(members);
	int64_t i;

	for (size_t k = 0; k < n; k++) {
		const struct mig_json *b = lookup(c->q, mig_json_get_str(
			mig_json_array_at(members, k), "type"));
		const char *want = b ? mig_json_get_str(b, "json-type") : NULL;

		if (want && (!strcmp(want, mig_json_kind(v)) ||
			     (!strcmp(want, "int") && mig_json_is_integer(v, &i))))
			return 0;
	}
	return fail(c, "Invalid parameter type for '%s', expected: %s", path, name);
}

static int check_value(struct check *c, const char *type,
		       const struct mig_json *v, const char *path)
{
	const struct mig_json *t = lookup(c->q, type);

	if (!t)
		return fail(c, "schema error: '%s' has unknown type %s", path, type);
	if (is_meta(t, "builtin"))
		return check_builtin(c, t, v, path);
	if (is_meta(t, "enum"))
		return check_enum(c, t, v, path);
	if (is_meta(t, "array"))
		return check_array(c, t, v, path);
	if (is_meta(t, "alternate"))
		return check_alternate(c, type, t, v, path);
	return check_object(c, t, v, path);
}

int bus_qapi_check_args(const struct mig_qapi *q, const char *cmd,
			const struct mig_json *args, char *desc, size_t desclen)
{
	const struct mig_json *t = lookup(q, cmd);
	struct check c = { .q = q, .desc = desc, .desclen = desclen };
	struct mig_json *empty = NULL;
	int r;

	if (!t || !is_meta(t, "command"))
		return -ENOENT;
	if (!args)
		args = empty = mig_json_new_object();
	r = check_value(&c, mig_json_get_str(t, "arg-type"), args, "");
	mig_json_free(empty);
	return r;
}
