/* bus-util.c: conversions between the domain's values and D-Bus messages for the admin interface
 * (JSON objects as a{sv} are common/bus-json.c's): tolerant readers for the values of a{sv}
 * arguments, counters as a{su}, and domain return codes as named D-Bus errors. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "bus-internal.h"
#include "bus-json.h"
#include "log.h"
#include "strv.h"

int bus_error_from_op(sd_bus_error *error, int r, BusSubject what, const char *id, const char *message) {
        const char *name;

        switch (r) {
        case -EINVAL:
                name = BUS_ERROR_INVALID_ARGS;
                break;
        case -ENOENT:
                name = what == BUS_SUBJECT_JOB ? BUS_ERROR_NO_SUCH_JOB : BUS_ERROR_NO_SUCH_WORKER;
                break;
        case -EPERM: /* unregistered worker */
                name = BUS_ERROR_NO_SUCH_WORKER;
                break;
        case -EBUSY:
        case -ESTALE:
        case -EEXIST:
                name = BUS_ERROR_CONFLICT;
                break;
        case -EACCES:
                name = BUS_ERROR_ACCESS_DENIED;
                break;
        default:
                /* Store failures and the like: logged here, sent as the errno's generic error. */
                log_error_errno(r, "D-Bus request failed: %m");
                return sd_bus_error_set_errnof(error, r, "Internal error: %s", strerror(-r));
        }
        if (!isempty(message))
                return sd_bus_error_setf(error, name, "%s", message);
        if (r == -ENOENT || r == -EPERM)
                return sd_bus_error_setf(error, name, "No %s '%s'", what == BUS_SUBJECT_JOB ? "job" : "worker",
                                         strempty(id));
        return sd_bus_error_setf(error, name, "%s", strerror(-r));
}

/* The signature inside the variant at the read position, which the typed readers below check
 * before they read; -EINVAL for anything but a variant. */
static int variant_contents(sd_bus_message *m, const char **ret) {
        char type;
        int r = sd_bus_message_peek_type(m, &type, ret);
        if (r < 0)
                return r;
        return r > 0 && type == 'v' && *ret ? 0 : -EINVAL;
}

int bus_read_variant_int64(sd_bus_message *m, bool allow_double, int64_t *ret) {
        const char *contents;
        int64_t result;
        int r;

        r = variant_contents(m, &contents);
        if (r < 0)
                return r;
        if (strlen(contents) != 1)
                return -EINVAL;
        r = sd_bus_message_enter_container(m, 'v', contents);
        if (r < 0)
                return r;
        if (contents[0] == 'd') {
                double d;
                r = sd_bus_message_read_basic(m, 'd', &d);
                if (r < 0)
                        return r;
                if (!allow_double || !isfinite(d) || fabs(d) > 9.2e18)
                        return -EINVAL;
                result = (int64_t) d;
        } else {
                r = bus_read_integer(m, contents[0], &result, NULL);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        *ret = result;
        return 0;
}

int bus_read_variant_double(sd_bus_message *m, double *ret) {
        const char *contents;
        int r;

        r = variant_contents(m, &contents);
        if (r < 0)
                return r;
        if (streq(contents, "d")) {
                double d;
                r = sd_bus_message_read(m, "v", "d", &d);
                if (r < 0)
                        return r;
                if (!isfinite(d))
                        return -EINVAL;
                *ret = d;
                return 0;
        }
        int64_t x;
        r = bus_read_variant_int64(m, false, &x);
        if (r < 0)
                return r;
        *ret = (double) x;
        return 0;
}

int bus_read_variant_string(sd_bus_message *m, char **ret) {
        const char *contents, *s;
        int r;

        r = variant_contents(m, &contents);
        if (r < 0)
                return r;
        if (!streq(contents, "s"))
                return -EINVAL;
        r = sd_bus_message_read(m, "v", "s", &s);
        if (r < 0)
                return r;
        char *copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        free(*ret);
        *ret = copy;
        return 0;
}

int bus_read_variant_strv(sd_bus_message *m, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        const char *contents;
        int r;

        r = variant_contents(m, &contents);
        if (r < 0)
                return r;
        if (!streq(contents, "as"))
                return -EINVAL;
        r = sd_bus_message_enter_container(m, 'v', "as");
        if (r < 0)
                return r;
        r = sd_bus_message_read_strv(m, &l);
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        strv_free(*ret);
        *ret = TAKE_PTR(l);
        return 0;
}

int bus_read_variant_bool(sd_bus_message *m, bool *ret) {
        const char *contents;
        int b, r;

        r = variant_contents(m, &contents);
        if (r < 0)
                return r;
        if (!streq(contents, "b"))
                return -EINVAL;
        r = sd_bus_message_read(m, "v", "b", &b);
        if (r < 0)
                return r;
        *ret = b;
        return 0;
}

static int append_counts(sd_bus_message *m, const uint64_t *counts, size_t n, bool job) {
        int r;

        r = sd_bus_message_open_container(m, 'a', "{su}");
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                const char *name = job ? job_state_to_string((JobState) i) : worker_state_to_string((WorkerState) i);
                uint32_t v = counts[i] > UINT32_MAX ? UINT32_MAX : (uint32_t) counts[i];
                r = sd_bus_message_append(m, "{su}", name, v);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(m);
}

int bus_append_job_counts(sd_bus_message *m, const uint64_t counts[_JOB_STATE_MAX]) {
        return append_counts(m, counts, _JOB_STATE_MAX, true);
}

int bus_append_worker_counts(sd_bus_message *m, const uint64_t counts[_WORKER_STATE_MAX]) {
        return append_counts(m, counts, _WORKER_STATE_MAX, false);
}
