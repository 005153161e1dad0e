/* json-util.c: validated field access on untrusted JSON, and small builders. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "json-util.h"
#include "strv.h"

static int fail(JsonError *err, const char *fmt, ...) _printf_(2, 3);
static int fail(JsonError *err, const char *fmt, ...) {
        if (err) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(err->message, sizeof(err->message), fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

static void tokener_freep(json_tokener **t) {
        if (*t)
                json_tokener_free(*t);
}

int json_parse(const char *buf, size_t size, json_object **ret, JsonError *err) {
        _cleanup_(tokener_freep) json_tokener *tok = NULL;
        json_object *o;

        if (size > INT32_MAX)
                return fail(err, "request body too large");
        if (memchr(buf, 0, size))
                return fail(err, "malformed JSON: embedded NUL byte");
        tok = json_tokener_new_ex(JSON_MAX_DEPTH);
        if (!tok)
                return -ENOMEM;
        /* STRICT alone lets any byte through in strings: what is stored is echoed back in JSON
         * (GET /events, /jobs), where invalid UTF-8 breaks every strict client's whole answer. */
#ifdef JSON_TOKENER_VALIDATE_UTF8
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
#else
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
#endif
        o = json_tokener_parse_ex(tok, buf, (int) size);
        if (!o) {
                enum json_tokener_error e = json_tokener_get_error(tok);
                if (e == json_tokener_continue)
                        return fail(err, "malformed JSON: unexpected end of input");
                if (e == json_tokener_success) /* a literal null */
                        return fail(err, "malformed JSON: expected a value, got null");
                return fail(err, "malformed JSON: %s", json_tokener_error_desc(e));
        }
        /* Only whitespace may follow the value. */
        for (size_t off = json_tokener_get_parse_end(tok); off < size; off++)
                if (!strchr(" \t\r\n", buf[off])) {
                        json_object_put(o);
                        return fail(err, "malformed JSON: trailing data after the value");
                }
        *ret = o;
        return 0;
}

int json_parse_object(const char *buf, size_t size, json_object **ret, JsonError *err) {
        json_object *o;
        int r = json_parse(buf, size, &o, err);
        if (r < 0)
                return r;
        if (!json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return fail(err, "malformed JSON: expected an object");
        }
        *ret = o;
        return 0;
}

static int lookup(json_object *o, const char *key, bool required, json_object **ret, JsonError *err) {
        json_object *v = NULL;
        if (!o || !json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) {
                if (required)
                        return fail(err, "missing required field '%s'", key);
                return -ENOENT;
        }
        *ret = v;
        return 0;
}

int json_get_string(json_object *o, const char *key, size_t max_len, bool required, const char **ret, JsonError *err) {
        json_object *v;
        int r = lookup(o, key, required, &v, err);
        if (r < 0)
                return r;
        if (!json_object_is_type(v, json_type_string))
                return fail(err, "field '%s' must be a string", key);
        if ((size_t) json_object_get_string_len(v) > max_len)
                return fail(err, "field '%s' is longer than %zu bytes", key, max_len);
        if (strlen(json_object_get_string(v)) != (size_t) json_object_get_string_len(v))
                return fail(err, "field '%s' contains a NUL byte", key);
        *ret = json_object_get_string(v);
        return 0;
}

int json_get_int64(json_object *o, const char *key, int64_t min, int64_t max, bool required, int64_t *ret,
                   JsonError *err) {
        json_object *v;
        int64_t x;
        int r = lookup(o, key, required, &v, err);
        if (r < 0)
                return r;
        if (json_object_is_type(v, json_type_double)) {
                double d = json_object_get_double(v);
                if (!isfinite(d) || d != floor(d) || d < -9.2e18 || d > 9.2e18)
                        return fail(err, "field '%s' must be an integer", key);
                x = (int64_t) d;
        } else if (json_object_is_type(v, json_type_int)) {
                errno = 0;
                x = json_object_get_int64(v);
                if (errno == ERANGE || (x == INT64_MAX && json_object_get_uint64(v) > (uint64_t) INT64_MAX))
                        return fail(err, "field '%s' is out of range", key);
        } else
                return fail(err, "field '%s' must be an integer", key);
        if (x < min || x > max)
                return fail(err, "field '%s' must be between %lld and %lld", key, (long long) min, (long long) max);
        *ret = x;
        return 0;
}

int json_get_double(json_object *o, const char *key, bool required, double *ret, JsonError *err) {
        json_object *v;
        int r = lookup(o, key, required, &v, err);
        if (r < 0)
                return r;
        if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
                return fail(err, "field '%s' must be a number", key);
        double d = json_object_get_double(v);
        if (!isfinite(d))
                return fail(err, "field '%s' must be a finite number", key);
        *ret = d;
        return 0;
}

int json_get_bool(json_object *o, const char *key, bool required, bool *ret, JsonError *err) {
        json_object *v;
        int r = lookup(o, key, required, &v, err);
        if (r < 0)
                return r;
        if (!json_object_is_type(v, json_type_boolean))
                return fail(err, "field '%s' must be a boolean", key);
        *ret = json_object_get_boolean(v);
        return 0;
}

int json_get_strv(json_object *o, const char *key, size_t max_items, size_t max_len, bool required, char ***ret,
                  JsonError *err) {
        _cleanup_strv_free_ char **l = NULL;
        json_object *v;
        size_t n;
        int r = lookup(o, key, required, &v, err);
        if (r < 0)
                return r;
        if (!json_object_is_type(v, json_type_array))
                return fail(err, "field '%s' must be an array of strings", key);
        n = json_object_array_length(v);
        if (n > max_items)
                return fail(err, "field '%s' has more than %zu items", key, max_items);
        l = calloc(1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(v, i);
                if (!json_object_is_type(e, json_type_string))
                        return fail(err, "field '%s' must be an array of strings", key);
                if ((size_t) json_object_get_string_len(e) > max_len)
                        return fail(err, "an item of field '%s' is longer than %zu bytes", key, max_len);
                if (strlen(json_object_get_string(e)) != (size_t) json_object_get_string_len(e))
                        return fail(err, "an item of field '%s' contains a NUL byte", key);
                if (strv_extend(&l, json_object_get_string(e)) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

static void add(json_object *o, const char *key, json_object *v) {
        if (json_object_object_add(o, key, v) < 0)
                abort();
}

/* Length of the valid UTF-8 sequence at s (1 to 4), or 0 (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF). */
static size_t utf8_sequence(const unsigned char *s) {
        size_t n;
        uint32_t cp;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                n = 2, cp = s[0] & 0x1f;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                n = 3, cp = s[0] & 0x0f;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                n = 4, cp = s[0] & 0x07;
        else
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
                return 0;
        return n;
}

void utf8_cut_partial(char *s) {
        size_t len = strlen(s), i = len;

        /* Back over the continuation bytes a character can have to its first byte. */
        while (i > 0 && len - i < 3 && ((unsigned char) s[i - 1] & 0xc0) == 0x80)
                i--;
        if (i > 0 && (unsigned char) s[i - 1] >= 0xc0 && utf8_sequence((const unsigned char *) s + i - 1) == 0)
                s[i - 1] = 0;
}

/* The string with every byte that is not part of valid UTF-8 replaced by '?': what this program
 * writes as JSON stays readable for strict clients even where a message was cut in the middle
 * of a character or carries bytes from outside (a path, an error text). NULL: s is valid as is. */
static char *utf8_sanitized(const char *s) {
        const unsigned char *p = (const unsigned char *) s;
        char *copy = NULL;
        size_t i = 0, n;

        while (p[i]) {
                n = utf8_sequence(p + i);
                if (n == 0) {
                        if (!copy && !(copy = strdup(s)))
                                return NULL;
                        copy[i] = '?';
                        n = 1;
                }
                i += n;
        }
        return copy;
}

void json_add_string(json_object *o, const char *key, const char *value) {
        _cleanup_free_ char *clean = value ? utf8_sanitized(value) : NULL;
        add(o, key, value ? json_object_new_string(clean ?: value) : NULL);
}

void json_add_int64(json_object *o, const char *key, int64_t value) {
        add(o, key, json_object_new_int64(value));
}

void json_add_bool(json_object *o, const char *key, bool value) {
        add(o, key, json_object_new_boolean(value));
}

void json_add_double(json_object *o, const char *key, double value) {
        add(o, key, json_object_new_double(value));
}

void json_add_strv(json_object *o, const char *key, char *const *l) {
        json_object *a = json_object_new_array();
        for (size_t i = 0; l && l[i]; i++)
                json_object_array_add(a, json_object_new_string(l[i]));
        add(o, key, a);
}

void json_add_time(json_object *o, const char *key, uint64_t usec) {
        if (usec == 0) {
                add(o, key, NULL);
                return;
        }
        /* Milliseconds are enough for leases and keep the numbers readable. */
        char buf[32];
        snprintf(buf, sizeof(buf), "%llu.%03llu", (unsigned long long) (usec / 1000000),
                 (unsigned long long) ((usec / 1000) % 1000));
        add(o, key, json_object_new_double_s((double) usec / 1e6, buf));
}

char *json_error_body(const char *message) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_add_string(o, "error", message);
        return strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
}
