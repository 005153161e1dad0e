/* bus-json.c: JSON objects as D-Bus a{sv} dictionaries and back (bus-json.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "bus-json.h"
#include "json-util.h"
#include "macro.h"

/* ---- JSON to a{sv} ---- */

static int append_json_value(sd_bus_message *m, json_object *v);

static bool json_array_all_strings(json_object *a) {
        size_t n = json_object_array_length(a);
        for (size_t i = 0; i < n; i++)
                if (!json_object_is_type(json_object_array_get_idx(a, i), json_type_string))
                        return false;
        return true;
}

static int append_json_array(sd_bus_message *m, json_object *a) {
        size_t n = json_object_array_length(a);
        bool strings = json_array_all_strings(a);
        int r;

        r = sd_bus_message_open_container(m, 'a', strings ? "s" : "v");
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(a, i);
                if (strings) {
                        r = sd_bus_message_append_basic(m, 's', json_object_get_string(e));
                        if (r < 0)
                                return r;
                        continue;
                }
                /* A D-Bus variant cannot be empty: JSON nulls inside arrays become "". */
                r = e ? append_json_value(m, e) : sd_bus_message_append(m, "v", "s", "");
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(m);
}

/* Appends one JSON value as a variant. */
static int append_json_value(sd_bus_message *m, json_object *v) {
        int r;

        switch (json_object_get_type(v)) {
        case json_type_boolean:
                return sd_bus_message_append(m, "v", "b", (int) json_object_get_boolean(v));
        case json_type_int:
                return sd_bus_message_append(m, "v", "x", (int64_t) json_object_get_int64(v));
        case json_type_double: {
                /* The value as the HTTP API prints it (times are cut to milliseconds there), so
                 * that both APIs give the same number. */
                double d = strtod(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), NULL);
                return sd_bus_message_append(m, "v", "d", d);
        }
        case json_type_string:
                return sd_bus_message_append(m, "v", "s", json_object_get_string(v));
        case json_type_object:
                r = sd_bus_message_open_container(m, 'v', "a{sv}");
                if (r < 0)
                        return r;
                r = bus_json_append_dict(m, v);
                if (r < 0)
                        return r;
                return sd_bus_message_close_container(m);
        case json_type_array: {
                bool strings = json_array_all_strings(v);
                r = sd_bus_message_open_container(m, 'v', strings ? "as" : "av");
                if (r < 0)
                        return r;
                r = append_json_array(m, v);
                if (r < 0)
                        return r;
                return sd_bus_message_close_container(m);
        }
        case json_type_null:
        default:
                return sd_bus_message_append(m, "v", "s", "");
        }
}

int bus_json_append_dict(sd_bus_message *m, json_object *o) {
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        if (o && json_object_is_type(o, json_type_object)) {
                json_object_object_foreach(o, key, value) {
                        if (!value) /* null: D-Bus has no such value, the key is left out */
                                continue;
                        r = sd_bus_message_open_container(m, 'e', "sv");
                        if (r < 0)
                                return r;
                        r = sd_bus_message_append_basic(m, 's', key);
                        if (r < 0)
                                return r;
                        r = append_json_value(m, value);
                        if (r < 0)
                                return r;
                        r = sd_bus_message_close_container(m);
                        if (r < 0)
                                return r;
                }
        }
        return sd_bus_message_close_container(m);
}

/* ---- a{sv} to JSON ---- */

static int read_value(sd_bus_message *m, BusJsonRead mode, json_object **ret);

int bus_json_read_array(sd_bus_message *m, const char *contents, BusJsonRead mode, json_object **ret) {
        _cleanup_json_ json_object *a = NULL;
        int r;

        if (streq(contents, "{sv}"))
                return bus_json_read_dict(m, mode, ret);
        a = json_object_new_array();
        if (!a)
                return -ENOMEM;
        r = sd_bus_message_enter_container(m, 'a', contents);
        if (r < 0)
                return r;
        for (;;) {
                json_object *v = NULL;
                r = sd_bus_message_at_end(m, false);
                if (r < 0)
                        return r;
                if (r > 0)
                        break;
                r = read_value(m, mode, &v);
                if (r < 0)
                        return r;
                json_object_array_add(a, v);
        }
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(a);
        return 0;
}

int bus_read_integer(sd_bus_message *m, char type, int64_t *ret, uint64_t *ret_large) {
        union {
                uint8_t y;
                int16_t n;
                uint16_t q;
                int32_t i;
                uint32_t u;
                int64_t x;
                uint64_t t;
        } v;
        int r;

        if (type == 0 || !strchr("ynqiuxt", type))
                return -EINVAL;
        r = sd_bus_message_read_basic(m, type, &v);
        if (r < 0)
                return r;
        if (type == 't' && v.t > INT64_MAX) {
                if (ret_large)
                        *ret_large = v.t;
                return -ERANGE;
        }
        *ret = type == 'y'   ? v.y
               : type == 'n' ? v.n
               : type == 'q' ? v.q
               : type == 'i' ? v.i
               : type == 'u' ? v.u
               : type == 'x' ? v.x
                             : (int64_t) v.t;
        return 0;
}

/* Integers of every width as JSON integers. */
static int read_integer(sd_bus_message *m, char type, BusJsonRead mode, json_object **ret) {
        uint64_t large;
        int64_t v;
        int r = bus_read_integer(m, type, &v, &large);

        if (r == -ERANGE && mode == BUS_JSON_LENIENT) {
                *ret = json_object_new_uint64(large);
                return 0;
        }
        if (r < 0)
                return r;
        *ret = json_object_new_int64(v);
        return 0;
}

/* A type bus_json_append_dict() never writes. */
static int read_other(sd_bus_message *m, char type, BusJsonRead mode, json_object **ret) {
        const char *s;
        int r;

        if (mode == BUS_JSON_STRICT)
                return -EINVAL;
        if (type == 'o' || type == 'g') {
                r = sd_bus_message_read_basic(m, type, &s);
                if (r < 0)
                        return r;
                *ret = json_object_new_string(s);
                return *ret ? 0 : -ENOMEM;
        }
        *ret = NULL;
        return sd_bus_message_skip(m, NULL) < 0 ? -EBADMSG : 0;
}

/* One value at the read position. */
static int read_value(sd_bus_message *m, BusJsonRead mode, json_object **ret) {
        const char *contents;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        if (r == 0)
                return -EINVAL;
        switch (type) {
        case 'a':
                return bus_json_read_array(m, contents, mode, ret);
        case 'v':
                r = sd_bus_message_enter_container(m, 'v', contents);
                if (r < 0)
                        return r;
                r = read_value(m, mode, ret);
                if (r < 0)
                        return r;
                return sd_bus_message_exit_container(m);
        case 's': {
                const char *s;
                r = sd_bus_message_read_basic(m, 's', &s);
                if (r < 0)
                        return r;
                *ret = json_object_new_string(s);
                break;
        }
        case 'b': {
                int b;
                r = sd_bus_message_read_basic(m, 'b', &b);
                if (r < 0)
                        return r;
                *ret = json_object_new_boolean(b);
                break;
        }
        case 'd': {
                double d;
                r = sd_bus_message_read_basic(m, 'd', &d);
                if (r < 0)
                        return r;
                *ret = json_object_new_double(d);
                break;
        }
        case 'y':
        case 'n':
        case 'q':
        case 'i':
        case 'u':
        case 'x':
        case 't':
                r = read_integer(m, type, mode, ret);
                if (r < 0)
                        return r;
                break;
        default:
                return read_other(m, type, mode, ret);
        }
        return *ret ? 0 : -ENOMEM;
}

int bus_json_read_dict(sd_bus_message *m, BusJsonRead mode, json_object **ret) {
        _cleanup_json_ json_object *o = json_object_new_object();
        int r;

        if (!o)
                return -ENOMEM;
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key;
                json_object *v = NULL;

                r = sd_bus_message_read_basic(m, 's', &key);
                if (r < 0)
                        return r;
                r = read_value(m, mode, &v);
                if (r < 0)
                        return r;
                json_object_object_add(o, key, v);
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}
