// SPDX-License-Identifier: MIT
/*
 * json.h over cJSON. A struct mig_json is a cJSON item in disguise: the cast
 * lives here only, so cJSON's types never leak into our headers. cJSON keeps
 * numbers as doubles: integers are exact up to 2^53, which covers every
 * counter the bus reports.
 *
 * Every string here is valid UTF-8, as QMP's are: text that is not is
 * refused by the parser and repaired by the constructors, so what
 * mig_json_print() emits is valid UTF-8 whatever a caller passed in (a
 * message cut inside a character, a client's bytes echoed back).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/log.h"
#include "core/json.h"

static cJSON *cj(const struct mig_json *j)
{
	return (cJSON *)j;
}

static struct mig_json *mj(cJSON *c)
{
	return (struct mig_json *)c;
}

struct mig_json *mig_json_new_object(void)
{
	return mj(cJSON_CreateObject());
}

struct mig_json *mig_json_new_array(void)
{
	return mj(cJSON_CreateArray());
}

static bool utf8_valid(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		int c = mig_log_utf8_char(s + i, n - i);

		if (c < 0)
			return false;
		i += (size_t)c;
	}
	return true;
}

/* A malloc'd copy of s, which is not valid UTF-8, with each invalid
 * sequence (a stray byte, a tail cut short, an encoded surrogate) replaced
 * by U+FFFD. NULL on ENOMEM. */
static char *utf8_repair(const char *s, size_t n)
{
	static const char fffd[] = "\xef\xbf\xbd";
	char *fixed = malloc(3 * n + 1); /* at most one U+FFFD per byte */
	size_t out = 0;

	if (!fixed)
		return NULL;
	for (size_t i = 0; i < n;) {
		int c = mig_log_utf8_char(s + i, n - i);

		if (c > 0) {
			memcpy(fixed + out, s + i, (size_t)c);
			out += (size_t)c;
			i += (size_t)c;
		} else {
			memcpy(fixed + out, fffd, 3);
			out += 3;
			i += (size_t)-c;
		}
	}
	fixed[out] = '\0';
	return fixed;
}

struct mig_json *mig_json_new_str(const char *v)
{
	const char *s = v ? v : "";
	size_t n = strlen(s);
	char *fixed;
	cJSON *c;

	if (utf8_valid(s, n))
		return mj(cJSON_CreateString(s));
	fixed = utf8_repair(s, n);
	c = fixed ? cJSON_CreateString(fixed) : NULL;
	free(fixed);
	return mj(c);
}

static bool only_space(const char *p, const char *end)
{
	for (; p < end; p++)
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			return false;
	return true;
}

struct mig_json *mig_json_parse(const char *text, size_t len)
{
	const char *end = NULL;
	cJSON *c;

	/* QEMU's parser refuses invalid UTF-8 too; cJSON would copy it */
	if (!text || !len || !utf8_valid(text, len)) {
		errno = EINVAL;
		return NULL;
	}
	c = cJSON_ParseWithLengthOpts(text, len, &end, false);
	if (c && end && !only_space(end, text + len)) {
		cJSON_Delete(c);
		c = NULL;
	}
	if (!c)
		errno = EINVAL;
	return mj(c);
}

void mig_json_free(struct mig_json *j)
{
	cJSON_Delete(cj(j));
}

struct mig_json *mig_json_dup(const struct mig_json *j)
{
	return j ? mj(cJSON_Duplicate(cj(j), true)) : NULL;
}

char *mig_json_print(const struct mig_json *j, bool pretty)
{
	if (!j) {
		errno = EINVAL;
		return NULL;
	}
	return pretty ? cJSON_Print(cj(j)) : cJSON_PrintUnformatted(cj(j));
}

void mig_json_add(struct mig_json *obj, const char *key, struct mig_json *child)
{
	char *fixed = NULL;

	if (!child)
		return;
	if (key && !utf8_valid(key, strlen(key)))
		key = fixed = utf8_repair(key, strlen(key));
	if (!cJSON_IsObject(cj(obj)) || !key) {
		cJSON_Delete(cj(child));
		return;
	}
	/* "Setters replace an existing key": one key, one value, as QMP expects */
	if (cJSON_GetObjectItemCaseSensitive(cj(obj), key)) {
		if (!cJSON_ReplaceItemInObjectCaseSensitive(cj(obj), key, cj(child)))
			cJSON_Delete(cj(child));
	} else if (!cJSON_AddItemToObject(cj(obj), key, cj(child))) {
		cJSON_Delete(cj(child));
	}
	free(fixed);
}

void mig_json_add_str(struct mig_json *obj, const char *key, const char *v)
{
	mig_json_add(obj, key, mig_json_new_str(v));
}

/* Beyond this cJSON prints numbers with "%1.15g" and a relative round-trip
 * check that lets the last digits go: print bigger integers ourselves. */
#define EXACT_PRINT_LIMIT 1e15

struct mig_json *mig_json_new_int(int64_t v)
{
	char text[24];

	if (v > -EXACT_PRINT_LIMIT && v < EXACT_PRINT_LIMIT)
		return mj(cJSON_CreateNumber((double)v));
	snprintf(text, sizeof(text), "%lld", (long long)v);
	return mj(cJSON_CreateRaw(text));
}

void mig_json_add_int(struct mig_json *obj, const char *key, int64_t v)
{
	mig_json_add(obj, key, mig_json_new_int(v));
}

void mig_json_add_double(struct mig_json *obj, const char *key, double v)
{
	mig_json_add(obj, key, mj(cJSON_CreateNumber(v)));
}

void mig_json_add_bool(struct mig_json *obj, const char *key, bool v)
{
	mig_json_add(obj, key, mj(cJSON_CreateBool(v)));
}

void mig_json_append(struct mig_json *arr, struct mig_json *child)
{
	if (!child)
		return;
	if (!cJSON_IsArray(cj(arr)) || !cJSON_AddItemToArray(cj(arr), cj(child)))
		cJSON_Delete(cj(child));
}

struct mig_json *mig_json_detach(struct mig_json *obj, const char *key)
{
	if (!cJSON_IsObject(cj(obj)))
		return NULL;
	return mj(cJSON_DetachItemFromObjectCaseSensitive(cj(obj), key));
}

struct mig_json *mig_json_get(const struct mig_json *obj, const char *key)
{
	if (!cJSON_IsObject(cj(obj)))
		return NULL;
	return mj(cJSON_GetObjectItemCaseSensitive(cj(obj), key));
}

const char *mig_json_get_str(const struct mig_json *obj, const char *key)
{
	return mig_json_str_value(mig_json_get(obj, key));
}

/* A big integer added by mig_json_add_int() and not yet printed. */
static bool raw_int(const cJSON *c, int64_t *v)
{
	char *end;
	long long n;

	if (!cJSON_IsRaw(c) || !c->valuestring)
		return false;
	errno = 0;
	n = strtoll(c->valuestring, &end, 10);
	if (errno || end == c->valuestring || *end)
		return false;
	*v = n;
	return true;
}

bool mig_json_get_int(const struct mig_json *obj, const char *key, int64_t *v)
{
	double d;

	if (raw_int(cj(mig_json_get(obj, key)), v))
		return true;

	if (!mig_json_get_double(obj, key, &d))
		return false;
	/* saturate: a double outside int64's range has no exact integer */
	if (d >= 9223372036854775807.0)
		*v = INT64_MAX;
	else if (d <= -9223372036854775808.0)
		*v = INT64_MIN;
	else
		*v = (int64_t)d;
	return true;
}

bool mig_json_get_double(const struct mig_json *obj, const char *key, double *v)
{
	cJSON *c = cj(mig_json_get(obj, key));
	int64_t i;

	if (raw_int(c, &i)) {
		*v = (double)i;
		return true;
	}
	if (!cJSON_IsNumber(c) || isnan(c->valuedouble))
		return false;
	*v = c->valuedouble;
	return true;
}

bool mig_json_get_bool(const struct mig_json *obj, const char *key, bool *v)
{
	cJSON *c = cj(mig_json_get(obj, key));

	if (!cJSON_IsBool(c))
		return false;
	*v = cJSON_IsTrue(c);
	return true;
}

bool mig_json_is_object(const struct mig_json *j)
{
	return cJSON_IsObject(cj(j));
}

bool mig_json_is_array(const struct mig_json *j)
{
	return cJSON_IsArray(cj(j));
}

size_t mig_json_array_len(const struct mig_json *arr)
{
	int n;

	if (!cJSON_IsArray(cj(arr)))
		return 0;
	n = cJSON_GetArraySize(cj(arr));
	return n > 0 ? (size_t)n : 0;
}

struct mig_json *mig_json_array_at(const struct mig_json *arr, size_t i)
{
	if (!cJSON_IsArray(cj(arr)) || i > (size_t)INT32_MAX)
		return NULL;
	return mj(cJSON_GetArrayItem(cj(arr), (int)i));
}

const char *mig_json_str_value(const struct mig_json *j)
{
	return cJSON_IsString(cj(j)) ? cj(j)->valuestring : NULL;
}

const char *mig_json_kind(const struct mig_json *j)
{
	const cJSON *c = cj(j);

	if (!c)
		return NULL;
	if (cJSON_IsString(c))
		return "string";
	if (cJSON_IsNumber(c) || cJSON_IsRaw(c))
		return "number";
	if (cJSON_IsBool(c))
		return "boolean";
	if (cJSON_IsNull(c))
		return "null";
	return cJSON_IsObject(c) ? "object" : "array";
}

bool mig_json_is_integer(const struct mig_json *j, int64_t *v)
{
	const cJSON *c = cj(j);
	double d;

	if (raw_int(c, v))
		return true;
	if (!cJSON_IsNumber(c))
		return false;
	d = c->valuedouble;
	/* 0.5 is not an integer, and 1e300 is none that int64 holds: QMP
	 * refuses both rather than round or saturate them */
	if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) ||
	    d != floor(d))
		return false;
	*v = (int64_t)d;
	return true;
}

size_t mig_json_members_len(const struct mig_json *obj)
{
	int n;

	if (!cJSON_IsObject(cj(obj)))
		return 0;
	n = cJSON_GetArraySize(cj(obj));
	return n > 0 ? (size_t)n : 0;
}

struct mig_json *mig_json_member_at(const struct mig_json *obj, size_t i)
{
	if (!cJSON_IsObject(cj(obj)) || i > (size_t)INT32_MAX)
		return NULL;
	return mj(cJSON_GetArrayItem(cj(obj), (int)i));
}

const char *mig_json_key(const struct mig_json *member)
{
	return member ? cj(member)->string : NULL;
}
