/* test-metrics-histogram.c: the in-memory histograms and windowed rates of GET /metrics
 * (daemon/metrics-histogram.c): bucket placement, sliding windows, the run-time tracking from
 * audit events, and an exposition that promtool accepts (when promtool is installed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "audit.h"
#include "jobs.h"
#include "metrics-histogram.h"
#include "tap.h"

static const double bounds[] = { 0.1, 1, 10 };

static void test_histogram_buckets_are_inclusive_upper_bounds(void) {
        Histogram h;
        histogram_init(&h, bounds, ELEMENTSOF(bounds));
        histogram_observe(&h, 0.1);
        histogram_observe(&h, 0.5);
        histogram_observe(&h, 10);
        histogram_observe(&h, 11);
        is_int(h.counts[0], 1, "0.1 falls in le=0.1");
        is_int(h.counts[1], 1, "0.5 falls in le=1");
        is_int(h.counts[2], 1, "10 falls in le=10");
        is_int(h.counts[3], 1, "11 falls in +Inf only");
        is_int(h.count, 4, "count");
        ok(h.sum > 21.59 && h.sum < 21.61, "sum");
}

static void test_rate_window_forgets_old_seconds(void) {
        static RateWindow w; /* large: not on the stack */
        usec_t t0 = 1000 * USEC_PER_SEC;

        rate_window_add(&w, t0);
        rate_window_add(&w, t0 + 500 * USEC_PER_MSEC);
        rate_window_add(&w, t0 + 30 * USEC_PER_SEC);
        is_int(rate_window_sum(&w, t0 + 30 * USEC_PER_SEC, 60), 3, "three events in the last minute");
        is_int(rate_window_sum(&w, t0 + 30 * USEC_PER_SEC, 10), 1, "one in the last 10s");
        is_int(rate_window_sum(&w, t0 + 75 * USEC_PER_SEC, 60), 1, "the first two slid out of the minute");
        is_int(rate_window_sum(&w, t0 + 75 * USEC_PER_SEC, 900), 3, "all three within 15 minutes");
        /* A slot reused a full ring later must not count its old events. */
        rate_window_add(&w, t0 + RATE_WINDOW_SLOTS * USEC_PER_SEC);
        is_int(rate_window_sum(&w, t0 + RATE_WINDOW_SLOTS * USEC_PER_SEC, 900), 2,
               "a reused slot starts from zero (t0's slot replaced, t0+30 still in)");
}

static void emit(LiveMetrics *m, const char *event, const char *job_id, usec_t ts) {
        AuditEvent e = { .ts = ts, .event = (char *) event, .job_id = (char *) job_id };
        live_metrics_listener(m, &e);
}

static char *render(LiveMetrics *m) {
        char *body = strdup("# existing body\n");
        size_t size = strlen(body);
        int r = live_metrics_append(m, now_monotonic_usec(), &body, &size);
        ok(r == 0, "live_metrics_append succeeds");
        ok(strlen(body) == size, "size matches the appended text");
        ok(strncmp(body, "# existing body\n", 16) == 0, "existing body kept in front");
        return body;
}

/* The value of the series whose line starts with prefix, or -1. */
static double sample(const char *body, const char *prefix) {
        const char *p = strstr(body, prefix);
        return p ? strtod(p + strlen(prefix), NULL) : -1;
}

static void test_run_time_from_events(void) {
        _cleanup_(live_metrics_freep) LiveMetrics *m = NULL;
        usec_t t = 1700000000 * USEC_PER_SEC;

        ok(live_metrics_new(&m) == 0, "live_metrics_new");
        emit(m, "job.running", "a", t);
        emit(m, "job.completed", "a", t + 2 * USEC_PER_SEC);
        emit(m, "job.running", "b", t);
        emit(m, "job.retrying", "b", t + 20 * USEC_PER_SEC);
        emit(m, "job.running", "c", t);
        emit(m, "job.lost", "c", t + 100 * USEC_PER_SEC);
        emit(m, "job.failed", "c", t + 101 * USEC_PER_SEC); /* lost then failed: counted, no run time */
        emit(m, "job.completed", "unknown", t);             /* started before a restart */

        _cleanup_free_ char *body = render(m);
        ok(strstr(body, "entropy_job_run_seconds_bucket{outcome=\"completed\",le=\"5\"} 1\n") != NULL,
           "completed run of 2s in le=5");
        ok(strstr(body, "entropy_job_run_seconds_count{outcome=\"completed\"} 1\n") != NULL,
           "one completed run observed (the unknown start is left out)");
        ok(strstr(body, "entropy_job_run_seconds_bucket{outcome=\"failed\",le=\"30\"} 1\n") != NULL,
           "failed attempt of 20s in le=30");
        ok(strstr(body, "entropy_job_run_seconds_count{outcome=\"failed\"} 1\n") != NULL,
           "the lost run is not a run time");
        /* Two events each, divided by the time observed so far (>= 1s, under a slow wrapper more). */
        double rate = sample(body, "entropy_job_completions_per_second{window=\"1m\"} ");
        ok(rate > 0 && rate <= 2, "two completions counted in the 1m rate (%g/s)", rate);
        rate = sample(body, "entropy_job_failures_per_second{window=\"15m\"} ");
        ok(rate > 0 && rate <= 2, "two failed attempts (retrying b, failed c) in the 15m rate (%g/s)", rate);
        ok(strstr(body, "# TYPE entropy_job_run_seconds histogram\n") != NULL, "TYPE line");
        ok(strstr(body, "# HELP entropy_claim_latency_seconds ") != NULL, "HELP line");
}

static void test_claim_observation(void) {
        _cleanup_(live_metrics_freep) LiveMetrics *m = NULL;
        usec_t now = 1700000000 * USEC_PER_SEC;
        Job j = { .created_at = now - 40 * USEC_PER_SEC, .scheduled_at = now - 3 * USEC_PER_SEC };

        ok(live_metrics_new(&m) == 0, "live_metrics_new");
        is_int(live_metrics_queue_wait(&j, now), 3 * USEC_PER_SEC, "queue wait counts from the schedule");
        live_metrics_observe_claim(m, 700, &j, now);
        live_metrics_observe_claim(m, 3 * USEC_PER_MSEC, NULL, now);
        live_metrics_observe_claim(NULL, 1, NULL, now); /* not set up: ignored */

        _cleanup_free_ char *body = render(m);
        ok(strstr(body, "entropy_claim_latency_seconds_bucket{le=\"0.001\"} 1\n") != NULL, "0.7ms in le=0.001");
        ok(strstr(body, "entropy_claim_latency_seconds_bucket{le=\"0.005\"} 2\n") != NULL, "3ms in le=0.005");
        ok(strstr(body, "entropy_claim_latency_seconds_count 2\n") != NULL, "both claims observed");
        ok(strstr(body, "entropy_job_queue_wait_seconds_bucket{le=\"5\"} 1\n") != NULL, "3s wait in le=5");
        ok(strstr(body, "entropy_job_queue_wait_seconds_count 1\n") != NULL, "an empty claim has no wait");
}

/* promtool is the judge of the format. Without root it may be missing (skipped); as root (CI,
 * where scripts/install-deps.sh installs Debian's prometheus package) that is a failure. */
static void test_exposition_passes_promtool(void) {
        _cleanup_(live_metrics_freep) LiveMetrics *m = NULL;
        char path[] = "/tmp/test-metrics-histogram-XXXXXX";
        int fd, status;

        if (system("command -v promtool >/dev/null 2>&1") != 0) {
                if (geteuid() == 0)
                        ok(0, "promtool is installed (scripts/install-deps.sh test installs prometheus)");
                else
                        ok(1, "# SKIP promtool not installed");
                return;
        }
        ok(live_metrics_new(&m) == 0, "live_metrics_new");
        emit(m, "job.running", "a", 1);
        emit(m, "job.completed", "a", 2 * USEC_PER_SEC);
        fd = mkstemp(path);
        if (!ok(fd >= 0, "temporary file"))
                return;
        FILE *f = fdopen(fd, "w");
        ok(f && live_metrics_write(m, now_monotonic_usec(), f) == 0, "write the exposition");
        if (f)
                fclose(f);
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "promtool check metrics < %s >&2", path);
        status = system(cmd);
        ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "promtool check metrics is clean");
        unlink(path);
}

int main(void) {
        test_histogram_buckets_are_inclusive_upper_bounds();
        test_rate_window_forgets_old_seconds();
        test_run_time_from_events();
        test_claim_observation();
        test_exposition_passes_promtool();
        return tap_done();
}
