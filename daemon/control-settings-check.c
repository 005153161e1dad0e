/* control-settings-check.c: checks that the control plane's timing and scheduling settings make
 * sense together, so a misconfiguration is refused at start instead of breaking a promise later. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "control-settings-check.h"
#include "macro.h"

static int fail(char *err, size_t size, const char *fmt, ...) _printf_(3, 4);
static int fail(char *err, size_t size, const char *fmt, ...) {
        if (err && size > 0) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(err, size, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

int control_settings_validate(const ControlSettings *s, char *err, size_t size) {
        if (s->lease_timeout == 0 || s->heartbeat_timeout == 0 || s->disconnect_timeout == 0 ||
            s->reconcile_interval == 0)
                return fail(err, size,
                            "lease-timeout, disconnect-timeout, heartbeat-timeout and reconcile-interval "
                            "must be positive");
        /* The worker stops a job a lease length after its last successful renewal; the control
         * plane gives the job away once the worker is OFFLINE. A lease longer than the heartbeat
         * timeout would let two workers run the same job. */
        if (s->lease_timeout > s->heartbeat_timeout)
                return fail(err, size, "lease-timeout must not exceed heartbeat-timeout");
        if (s->disconnect_timeout > s->heartbeat_timeout)
                return fail(err, size, "disconnect-timeout must not exceed heartbeat-timeout");
        if (s->retry_backoff_max && s->retry_backoff > s->retry_backoff_max)
                return fail(err, size, "retry-backoff must not exceed retry-backoff-max");
        if (!(s->retry_jitter >= 0.0 && s->retry_jitter <= 1.0))
                return fail(err, size, "retry-jitter must be between 0 and 1");
        if (s->max_retry_jobs_per_worker < 0 || s->preempt_backlog < 0)
                return fail(err, size, "max-retry-jobs-per-worker and preempt-backlog must not be negative");
        if (s->job_retention_days < 0 || s->event_retention_days < 0 || s->worker_retention_days < 0)
                return fail(err, size, "retention days must not be negative (0 keeps forever)");
        if (s->synchronous && strcmp(s->synchronous, "full") != 0 && strcmp(s->synchronous, "normal") != 0)
                return fail(err, size, "synchronous must be 'full' or 'normal'");
        if (s->max_body_size < 0)
                return fail(err, size, "max-body-size must not be negative");
        return 0;
}
