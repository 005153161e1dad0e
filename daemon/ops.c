/* ops.c: refusal messages and the mapping of domain return codes to HTTP statuses. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "ops.h"

int op_error_set(OpError *e, int r, const char *format, ...) {
        if (e) {
                va_list ap;
                va_start(ap, format);
                vsnprintf(e->message, sizeof(e->message), format, ap);
                va_end(ap);
        }
        return r;
}

unsigned op_error_to_http_status(int r) {
        switch (r) {
        case -EINVAL:
                return 400;
        case -EPERM:
                return 403;
        case -ENOENT:
                return 404;
        case -ESTALE:
        case -EBUSY:
        case -EEXIST:
                return 409;
        default:
                return 500;
        }
}
