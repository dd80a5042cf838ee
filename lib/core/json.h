/* SPDX-License-Identifier: MIT */
/*
 * A thin JSON layer over cJSON, so that cJSON's types stay inside json.c and
 * the bus (STYLE: one module per third-party library). Objects are built and
 * read through these calls only.
 */
#ifndef MIG_JSON_H
#define MIG_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mig_json;

struct mig_json *mig_json_new_object(void);
struct mig_json *mig_json_new_array(void);
/* A string value (NULL is taken as ""). Strings are valid UTF-8 always:
 * here and in add_str() and a key of add(), each invalid sequence of v (a
 * stray byte, a character cut short, an encoded surrogate) becomes U+FFFD,
 * so mig_json_print() never emits invalid UTF-8. */
struct mig_json *mig_json_new_str(const char *v);
/* An integer, printed exactly whatever its size. */
struct mig_json *mig_json_new_int(int64_t v);
/* NULL if text is not exactly one valid JSON value (trailing spaces ok)
 * in valid UTF-8 (RFC 3629), as QEMU's parser refuses it; \u escapes of
 * a lone surrogate are refused too. */
struct mig_json *mig_json_parse(const char *text, size_t len);
void mig_json_free(struct mig_json *j);
struct mig_json *mig_json_dup(const struct mig_json *j);
/* malloc'd text, compact unless pretty. */
char *mig_json_print(const struct mig_json *j, bool pretty);

/* Setters replace an existing key. add() takes ownership of child. */
void mig_json_add(struct mig_json *obj, const char *key, struct mig_json *child);
void mig_json_add_str(struct mig_json *obj, const char *key, const char *v);
void mig_json_add_int(struct mig_json *obj, const char *key, int64_t v);
void mig_json_add_double(struct mig_json *obj, const char *key, double v);
void mig_json_add_bool(struct mig_json *obj, const char *key, bool v);
void mig_json_append(struct mig_json *arr, struct mig_json *child);
/* Remove key from obj and hand its value to the caller (NULL if absent). */
struct mig_json *mig_json_detach(struct mig_json *obj, const char *key);

/* Getters: NULL / false when the key is missing or of another type. */
struct mig_json *mig_json_get(const struct mig_json *obj, const char *key);
const char *mig_json_get_str(const struct mig_json *obj, const char *key);
bool mig_json_get_int(const struct mig_json *obj, const char *key, int64_t *v);
bool mig_json_get_double(const struct mig_json *obj, const char *key, double *v);
bool mig_json_get_bool(const struct mig_json *obj, const char *key, bool *v);
bool mig_json_is_object(const struct mig_json *j);
bool mig_json_is_array(const struct mig_json *j);
size_t mig_json_array_len(const struct mig_json *arr);
struct mig_json *mig_json_array_at(const struct mig_json *arr, size_t i);
const char *mig_json_str_value(const struct mig_json *j); /* NULL if not a string */

/* Any value, for code that checks values against a schema: its JSON type
 * as QAPI's introspection names it ("string", "number", "boolean", "null",
 * "object", "array"; NULL for NULL), and whether a number is an integer
 * exactly (integral and within int64). Object members are walked with
 * mig_json_members_len/at and mig_json_key. */
const char *mig_json_kind(const struct mig_json *j);
bool mig_json_is_integer(const struct mig_json *j, int64_t *v);
size_t mig_json_members_len(const struct mig_json *obj);
struct mig_json *mig_json_member_at(const struct mig_json *obj, size_t i);
const char *mig_json_key(const struct mig_json *member);

#endif
