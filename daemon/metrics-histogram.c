/* metrics-histogram.c: claim latency, queue wait and run-time histograms and the windowed
 * completion/failure rates of GET /metrics (see metrics-histogram.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "audit.h"
#include "jobs.h"
#include "metrics-histogram.h"

/* Bucket bounds in seconds. A claim is one indexed SQLite transaction: sub-millisecond when the
 * disk is fast, up to the fsync of a slow SD card. Queue waits and run times range from an
 * instant to a day of GPU work. */
static const double claim_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5 };
static const double wait_bounds[] = { 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 14400, 86400 };
static const double run_bounds[] = { 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400 };

static const struct {
        const char *label;
        unsigned seconds;
} windows[] = { { "1m", 60 }, { "5m", 300 }, { "15m", 900 } };

typedef struct RunStart {
        char *job_id;
        usec_t started; /* realtime usec of the job.running event */
} RunStart;

struct LiveMetrics {
        Histogram claim_latency;
        Histogram queue_wait;
        Histogram run_completed, run_failed;
        RateWindow completions, failures;
        usec_t started_mono;

        RunStart *running; /* unordered; removal swaps in the last entry */
        size_t n_running;

        struct {
                LiveMetricsWriter write;
                const void *userdata;
        } writers[LIVE_METRICS_MAX_WRITERS];
        size_t n_writers;
};

void histogram_init(Histogram *h, const double *bounds, size_t n_bounds) {
        *h = (Histogram){ .bounds = bounds, .n_bounds = MIN(n_bounds, (size_t) HISTOGRAM_MAX_BUCKETS) };
}

void histogram_observe(Histogram *h, double value) {
        size_t i = 0;

        /* Upper bounds are inclusive (le). */
        while (i < h->n_bounds && value > h->bounds[i])
                i++;
        h->counts[i]++;
        h->sum += value;
        h->count++;
}

void rate_window_add(RateWindow *w, usec_t now) {
        uint64_t sec = now / USEC_PER_SEC + 1; /* +1: 0 marks an unused slot */
        size_t i = sec % RATE_WINDOW_SLOTS;

        if (w->slot_second[i] != sec) {
                w->slot_second[i] = sec;
                w->slot_count[i] = 0;
        }
        if (w->slot_count[i] < UINT32_MAX)
                w->slot_count[i]++;
}

uint64_t rate_window_sum(const RateWindow *w, usec_t now, unsigned seconds) {
        uint64_t sec = now / USEC_PER_SEC + 1, total = 0;

        seconds = MIN(seconds, (unsigned) RATE_WINDOW_SLOTS);
        for (size_t i = 0; i < RATE_WINDOW_SLOTS; i++)
                /* A slot counts when its second lies in (sec - seconds, sec]. */
                if (w->slot_second[i] != 0 && w->slot_second[i] <= sec && w->slot_second[i] + seconds > sec)
                        total += w->slot_count[i];
        return total;
}

int live_metrics_new(LiveMetrics **ret) {
        LiveMetrics *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        histogram_init(&m->claim_latency, claim_bounds, ELEMENTSOF(claim_bounds));
        histogram_init(&m->queue_wait, wait_bounds, ELEMENTSOF(wait_bounds));
        histogram_init(&m->run_completed, run_bounds, ELEMENTSOF(run_bounds));
        histogram_init(&m->run_failed, run_bounds, ELEMENTSOF(run_bounds));
        m->started_mono = now_monotonic_usec();
        *ret = m;
        return 0;
}

LiveMetrics *live_metrics_free(LiveMetrics *m) {
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->n_running; i++)
                free(m->running[i].job_id);
        free(m->running);
        free(m);
        return NULL;
}

static double usec_to_seconds(usec_t u) {
        return (double) u / (double) USEC_PER_SEC;
}

usec_t live_metrics_queue_wait(const Job *j, usec_t now) {
        usec_t since = MAX(MAX(j->created_at, j->scheduled_at), j->retry_at);
        return now > since ? now - since : 0;
}

void live_metrics_observe_claim(LiveMetrics *m, usec_t duration, const Job *claimed, usec_t now) {
        if (!m)
                return;
        histogram_observe(&m->claim_latency, usec_to_seconds(duration));
        if (claimed)
                histogram_observe(&m->queue_wait, usec_to_seconds(live_metrics_queue_wait(claimed, now)));
}

void live_metrics_observe_run(LiveMetrics *m, usec_t run_time, bool completed) {
        histogram_observe(completed ? &m->run_completed : &m->run_failed, usec_to_seconds(run_time));
}

void live_metrics_count_outcome(LiveMetrics *m, bool completed, usec_t now_mono) {
        rate_window_add(completed ? &m->completions : &m->failures, now_mono);
}

static ssize_t running_find(const LiveMetrics *m, const char *job_id) {
        for (size_t i = 0; i < m->n_running; i++)
                if (streq(m->running[i].job_id, job_id))
                        return (ssize_t) i;
        return -1;
}

static void running_remove(LiveMetrics *m, size_t i) {
        free(m->running[i].job_id);
        m->running[i] = m->running[--m->n_running];
}

/* Remembers when a job started running; a repeated job.running (a new attempt) restarts it. */
static void running_start(LiveMetrics *m, const char *job_id, usec_t ts) {
        ssize_t i = running_find(m, job_id);
        if (i >= 0) {
                m->running[i].started = ts;
                return;
        }
        if (m->n_running >= LIVE_METRICS_MAX_RUNNING) {
                size_t oldest = 0;
                for (size_t k = 1; k < m->n_running; k++)
                        if (m->running[k].started < m->running[oldest].started)
                                oldest = k;
                running_remove(m, oldest);
        }
        char *id = strdup(job_id);
        if (!id)
                return; /* best effort: this run's time is just not observed */
        RunStart *p = realloc(m->running, (m->n_running + 1) * sizeof(*p));
        if (!p) {
                free(id);
                return;
        }
        m->running = p;
        m->running[m->n_running++] = (RunStart){ .job_id = id, .started = ts };
}

/* An attempt ended: returns its run time, or USEC_INFINITY when its start is unknown. */
static usec_t running_end(LiveMetrics *m, const char *job_id, usec_t ts) {
        ssize_t i = running_find(m, job_id);
        if (i < 0)
                return USEC_INFINITY;
        usec_t started = m->running[i].started;
        running_remove(m, (size_t) i);
        return ts > started ? ts - started : 0;
}

void live_metrics_listener(void *userdata, const AuditEvent *e) {
        LiveMetrics *m = userdata;
        usec_t run;

        if (!m || !e->event || !e->job_id)
                return;
        if (streq(e->event, "job.running")) {
                running_start(m, e->job_id, e->ts);
                return;
        }

        bool completed = streq(e->event, "job.completed");
        /* A failed attempt is job.retrying (attempts left) or job.failed (none left), whether the
         * worker reported it or it was lost first: each failed attempt counts once. */
        bool failed = streq(e->event, "job.failed") || streq(e->event, "job.retrying");
        if (completed || failed) {
                live_metrics_count_outcome(m, completed, now_monotonic_usec());
                run = running_end(m, e->job_id, e->ts);
                if (run != USEC_INFINITY)
                        live_metrics_observe_run(m, run, completed);
        } else if (streq(e->event, "job.lost") || streq(e->event, "job.aborted") || streq(e->event, "job.requeued"))
                /* Lost and aborted runs did not finish: they are not run times. */
                (void) running_end(m, e->job_id, e->ts);
}

static void write_header(FILE *f, const char *name, const char *type, const char *help) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* labels: "" or `outcome="completed",` (with the trailing comma, so le follows). */
static void write_histogram_series(FILE *f, const char *name, const char *labels, const Histogram *h) {
        uint64_t cumulative = 0;

        for (size_t i = 0; i < h->n_bounds; i++) {
                cumulative += h->counts[i];
                fprintf(f, "%s_bucket{%sle=\"%g\"} %" PRIu64 "\n", name, labels, h->bounds[i], cumulative);
        }
        cumulative += h->counts[h->n_bounds];
        fprintf(f, "%s_bucket{%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, cumulative);

        /* _sum and _count take the labels without le: strip the trailing comma. */
        size_t n = strlen(labels);
        if (n > 0) {
                fprintf(f, "%s_sum{%.*s} %.9g\n", name, (int) (n - 1), labels, h->sum);
                fprintf(f, "%s_count{%.*s} %" PRIu64 "\n", name, (int) (n - 1), labels, h->count);
        } else {
                fprintf(f, "%s_sum %.9g\n", name, h->sum);
                fprintf(f, "%s_count %" PRIu64 "\n", name, h->count);
        }
}

static void write_rates(FILE *f, const char *name, const char *help, const RateWindow *w, usec_t now_mono,
                        usec_t uptime) {
        write_header(f, name, "gauge", help);
        for (size_t i = 0; i < ELEMENTSOF(windows); i++) {
                /* Early on, divide by the time actually observed rather than the whole window. */
                double span = MIN((double) windows[i].seconds, MAX(1.0, usec_to_seconds(uptime)));
                double rate = (double) rate_window_sum(w, now_mono, windows[i].seconds) / span;
                fprintf(f, "%s{window=\"%s\"} %.6g\n", name, windows[i].label, rate);
        }
}

int live_metrics_add_writer(LiveMetrics *m, LiveMetricsWriter write, const void *userdata) {
        if (!m || !write)
                return -EINVAL;
        if (m->n_writers >= LIVE_METRICS_MAX_WRITERS)
                return -ENOSPC;
        m->writers[m->n_writers].write = write;
        m->writers[m->n_writers].userdata = userdata;
        m->n_writers++;
        return 0;
}

int live_metrics_write(const LiveMetrics *m, usec_t now_mono, FILE *f) {
        if (!m)
                return 0;
        usec_t uptime = now_mono > m->started_mono ? now_mono - m->started_mono : 0;

        write_header(f, "entropy_claim_latency_seconds", "histogram",
                     "Time GET /next-job took to claim a job or find none eligible.");
        write_histogram_series(f, "entropy_claim_latency_seconds", "", &m->claim_latency);

        write_header(f, "entropy_job_queue_wait_seconds", "histogram",
                     "Time a claimed job waited since it became claimable (submission, schedule or end of backoff).");
        write_histogram_series(f, "entropy_job_queue_wait_seconds", "", &m->queue_wait);

        write_header(f, "entropy_job_run_seconds", "histogram",
                     "Run time of job attempts, from the worker's ack to its completion or failure.");
        write_histogram_series(f, "entropy_job_run_seconds", "outcome=\"completed\",", &m->run_completed);
        write_histogram_series(f, "entropy_job_run_seconds", "outcome=\"failed\",", &m->run_failed);

        write_rates(f, "entropy_job_completions_per_second",
                    "Jobs completed per second over a sliding window (1m, 5m, 15m).", &m->completions, now_mono,
                    uptime);
        write_rates(f, "entropy_job_failures_per_second",
                    "Job attempts failed or lost per second over a sliding window (1m, 5m, 15m).", &m->failures,
                    now_mono, uptime);

        for (size_t i = 0; i < m->n_writers; i++) {
                int r = m->writers[i].write(m->writers[i].userdata, f);
                if (r < 0)
                        return r;
        }
        return ferror(f) ? -EIO : 0;
}

int live_metrics_append(const LiveMetrics *m, usec_t now_mono, char **body, size_t *size) {
        _cleanup_free_ char *text = NULL;
        size_t n = 0;
        int r;

        FILE *f = open_memstream(&text, &n);
        if (!f)
                return -ENOMEM;
        r = live_metrics_write(m, now_mono, f);
        if (fclose(f) != 0 && r >= 0)
                r = -ENOMEM;
        if (r < 0)
                return r;

        char *p = realloc(*body, *size + n + 1);
        if (!p)
                return -ENOMEM;
        memcpy(p + *size, text, n + 1);
        *body = p;
        *size += n;
        return 0;
}
