/* json-util.h: validated field access on untrusted JSON (json-c), with messages that name the field. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "macro.h"

#define JSON_MAX_DEPTH 16

typedef struct JsonError {
        char message[256];
} JsonError;

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);
#define _cleanup_json_ _cleanup_(json_object_putp)

/* Parses exactly one JSON value from buf (no trailing garbage), depth-limited. */
int json_parse(const char *buf, size_t size, json_object **ret, JsonError *err);
/* Same, and the value must be an object. */
int json_parse_object(const char *buf, size_t size, json_object **ret, JsonError *err);

/* Each getter: 0 and *ret set when present and valid; -ENOENT (and *ret untouched) when absent or
 * null and !required; -EINVAL with err filled when of the wrong type, out of range or required. */
int json_get_string(json_object *o, const char *key, size_t max_len, bool required, const char **ret, JsonError *err);
int json_get_int64(json_object *o, const char *key, int64_t min, int64_t max, bool required, int64_t *ret,
                   JsonError *err);
int json_get_bool(json_object *o, const char *key, bool required, bool *ret, JsonError *err);
int json_get_double(json_object *o, const char *key, bool required, double *ret, JsonError *err);
/* An array of strings, at most max_items of at most max_len each. */
int json_get_strv(json_object *o, const char *key, size_t max_items, size_t max_len, bool required, char ***ret,
                  JsonError *err);

/* Builders that never return NULL silently: they abort on allocation failure, like json-c itself
 * does for most internal allocations. */
void json_add_string(json_object *o, const char *key, const char *value); /* NULL value becomes null */

/* Cuts s before a last character that is incomplete, as snprintf() into a fixed buffer leaves one:
 * journald stores a MESSAGE that is not UTF-8 as a blob, which journalctl does not print. */
void utf8_cut_partial(char *s);
void json_add_int64(json_object *o, const char *key, int64_t value);
void json_add_bool(json_object *o, const char *key, bool value);
void json_add_double(json_object *o, const char *key, double value);
void json_add_strv(json_object *o, const char *key, char *const *l);
/* Unix seconds with millisecond precision from realtime usec; 0 becomes null. */
void json_add_time(json_object *o, const char *key, uint64_t usec);

/* {"error": message} serialized. */
char *json_error_body(const char *message);
