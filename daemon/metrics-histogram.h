/* metrics-histogram.h: the parts of GET /metrics that the store cannot answer, kept in memory since
 * the control plane started: claim latency, queue wait and job run-time histograms, and completion
 * and failure rates over sliding windows (1, 5 and 15 minutes). Written in the Prometheus text
 * exposition format, to be appended after the store-derived gauges and counters of api-admin.c.
 *
 * Histograms are cumulative since start, as Prometheus expects (a restart resets them, which
 * PromQL's rate() and histogram_quantile() handle). The windowed rates are gauges for operators
 * without a Prometheus server (the dashboard, curl).
 *
 * The module is part of the core library (api-admin.c and api-worker.c call it through
 * c->live_metrics, which may be NULL).
 *
 * Sources of the observations:
 *   - claim latency and queue wait: the GET /next-job handler calls live_metrics_observe_claim();
 *   - run time, completion and failure rates: live_metrics_listener(), a control_add_listener()
 *     listener, from the committed audit events job.running (the ack: the run starts) and
 *     job.completed / job.failed / job.retrying (an attempt ends). A job already running when the
 *     control plane restarted has no start time here and is left out of the run-time histogram. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "macro.h"
#include "time-util.h"

typedef struct Job Job;
typedef struct AuditEvent AuditEvent;
typedef struct LiveMetrics LiveMetrics;

#define HISTOGRAM_MAX_BUCKETS 20

/* A Prometheus histogram: counts per upper bound (not cumulative here; cumulated when written). */
typedef struct Histogram {
        const double *bounds; /* ascending upper bounds in seconds, +Inf implied */
        size_t n_bounds;
        uint64_t counts[HISTOGRAM_MAX_BUCKETS + 1]; /* last one: above every bound */
        double sum;
        uint64_t count;
} Histogram;

void histogram_init(Histogram *h, const double *bounds, size_t n_bounds);
void histogram_observe(Histogram *h, double value);

/* Events per second over sliding windows, in one-second slots of a ring as long as the widest
 * window. Times are monotonic usec. */
#define RATE_WINDOW_SLOTS 900 /* 15 min */

typedef struct RateWindow {
        uint64_t slot_second[RATE_WINDOW_SLOTS]; /* which second each slot counts, +1 (0: unused) */
        uint32_t slot_count[RATE_WINDOW_SLOTS];
} RateWindow;

void rate_window_add(RateWindow *w, usec_t now);
/* Events in the last `seconds` seconds (<= RATE_WINDOW_SLOTS) up to now. */
uint64_t rate_window_sum(const RateWindow *w, usec_t now, unsigned seconds);

/* Bound on the jobs whose run start is remembered; past it the oldest start is forgotten (that
 * job's run time is then not observed). Far above the slots of any cluster this is meant for. */
#define LIVE_METRICS_MAX_RUNNING 65536

int live_metrics_new(LiveMetrics **ret);
LiveMetrics *live_metrics_free(LiveMetrics *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(LiveMetrics *, live_metrics_free);

/* For control_add_listener(c, live_metrics_listener, m). */
void live_metrics_listener(void *userdata, const AuditEvent *event);

/* One GET /next-job: duration is the monotonic time the claim took (jobs_claim() and its
 * transaction); claimed is the job handed out or NULL when none was eligible; now is the realtime
 * clock the claim used (control_now()), for the queue wait. */
void live_metrics_observe_claim(LiveMetrics *m, usec_t duration, const Job *claimed, usec_t now);

/* The lower-level observations, used by the two above (and by tests). now_mono: monotonic usec. */
void live_metrics_observe_run(LiveMetrics *m, usec_t run_time, bool completed);
void live_metrics_count_outcome(LiveMetrics *m, bool completed, usec_t now_mono);
/* Time a claimed job waited to be claimable->claimed: now - max(created_at, scheduled_at, retry_at). */
usec_t live_metrics_queue_wait(const Job *j, usec_t now);

/* More metrics to write after this module's own, from parts the core does not link (the event
 * stream's): api-admin.c only knows LiveMetrics. At most LIVE_METRICS_MAX_WRITERS. */
#define LIVE_METRICS_MAX_WRITERS 4
typedef int (*LiveMetricsWriter)(const void *userdata, FILE *f);
int live_metrics_add_writer(LiveMetrics *m, LiveMetricsWriter write, const void *userdata);

/* Writes every metric of this module (with # HELP and # TYPE) in the text exposition format,
 * then the added writers'. now_mono: monotonic usec. m may be NULL (nothing written). Returns 0,
 * -EIO when the stream failed, or a writer's error. */
int live_metrics_write(const LiveMetrics *m, usec_t now_mono, FILE *f);
/* Same, appended to a malloc'd body (which may be NULL/0): for api_get_metrics(). */
int live_metrics_append(const LiveMetrics *m, usec_t now_mono, char **body, size_t *size);
