/* bus-json.h: JSON objects as D-Bus a{sv} dictionaries and back: the control plane's D-Bus API
 * answers with the wire contract's JSON forms, entropyctl turns those answers back into JSON and
 * sends its arguments the same way. */
#pragma once

#include <json-c/json.h>
#include <systemd/sd-bus.h>

typedef enum BusJsonRead {
        /* Arguments from a client: only the types bus_json_append_dict() writes are taken (an
         * unsigned 64-bit integer past INT64_MAX gives -ERANGE), anything else is -EINVAL. */
        BUS_JSON_STRICT,
        /* Answers from the control plane, read by a client: object paths and signatures become
         * strings, 64-bit unsigned integers keep their value, other types become null. */
        BUS_JSON_LENIENT,
} BusJsonRead;

/* Appends a JSON object as a{sv}: strings s, integers x, doubles d, booleans b, arrays of strings
 * as, other arrays av, objects a{sv}; null members are left out. */
int bus_json_append_dict(sd_bus_message *m, json_object *o);
/* Reads an a{sv} at the read position into a JSON object: the inverse of bus_json_append_dict()
 * (integers of any D-Bus type become JSON integers). */
int bus_json_read_dict(sd_bus_message *m, BusJsonRead mode, json_object **ret);
/* Reads an integer of any D-Bus width (y n q i u x t) at the read position, widened to int64;
 * -EINVAL for another type, -ERANGE for a 't' above INT64_MAX (its value in *ret_large when that
 * is not NULL). */
int bus_read_integer(sd_bus_message *m, char type, int64_t *ret, uint64_t *ret_large);
/* Reads an array whose element signature is contents (e.g. "a{sv}") into a JSON array. */
int bus_json_read_array(sd_bus_message *m, const char *contents, BusJsonRead mode, json_object **ret);
