/* ctl-verbs.c: the commands of entropyctl. Each parses its own options, makes its calls through
 * the backend (D-Bus or HTTP, the same answers either way) and prints a table, a status block or
 * JSON. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "ctl-backup.h"
#include "ctl-output.h"
#include "ctl-replay.h"
#include "ctl.h"
#include "fs-util.h"
#include "json-util.h"
#include "log.h"
#include "protocol.h"
#include "strv.h"
#include "time-util.h"

#define EVENTS_FOLLOW_POLL_USEC (500 * USEC_PER_MSEC)
#define EVENTS_FOLLOW_RESTORE_CHECK_POLLS 10 /* quiet polls between two looks at the newest id: 5 s */

/* Prints why a call failed and returns the matching exit code. */
static int fail(int r, const CtlError *e) {
        if (e && *e->message)
                log_error("%s", e->message);
        else
                log_error_errno(r, "Failed: %m");
        return ctl_exit_code(r);
}

static int usage_error(const char *verb, const char *format, ...) _printf_(2, 3);
static int usage_error(const char *verb, const char *format, ...) {
        char buf[512];
        va_list ap;

        va_start(ap, format);
        vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);
        log_error("%s: %s (see entropyctl --help)", verb, buf);
        return CTL_EXIT_USAGE;
}

static void print_legend(const CtlSettings *s, size_t n, const char *singular, const char *plural) {
        if (s->no_legend)
                return;
        printf("\n%zu %s listed.\n", n, n == 1 ? singular : plural);
}

/* Parses a verb's options; getopt state is reset for each verb. */
static int verb_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts) {
        return getopt_long(argc, argv, shortopts, longopts, NULL);
}

/* --- submit --------------------------------------------------------------------------------- */

static int parse_int_arg(const char *verb, const char *name, const char *v, int64_t min, int64_t max, int64_t *ret) {
        char *end;
        long long x;

        errno = 0;
        x = strtoll(v, &end, 10);
        if (errno != 0 || end == v || *end || x < min || x > max)
                return usage_error(verb, "invalid %s '%s'", name, v);
        *ret = x;
        return 0;
}

/* --at: Unix seconds, "+SPAN" from now (systemd syntax), or "now". */
static int parse_at(const char *v, double *ret) {
        usec_t span;
        char *end;
        double d;

        if (streq(v, "now")) {
                *ret = 0;
                return 0;
        }
        if (v[0] == '+') {
                if (parse_timespan(v + 1, &span) < 0 || span == USEC_INFINITY)
                        return -EINVAL;
                *ret = (double) (now_realtime_usec() + span) / (double) USEC_PER_SEC;
                return 0;
        }
        errno = 0;
        d = strtod(v, &end);
        if (errno != 0 || end == v || *end || !isfinite(d) || d < 0)
                return -EINVAL;
        *ret = d;
        return 0;
}

static bool state_is_terminal(const char *s) {
        return streq_ptr(s, "COMPLETED") || streq_ptr(s, "FAILED") || streq_ptr(s, "ABORTED");
}

/* Follows a job to a terminal state; the exit code says how it ended. */
static int wait_for_job(Backend *b, const CtlSettings *s, const char *job_id) {
        _cleanup_free_ char *state = NULL;
        _cleanup_json_ json_object *job = NULL;
        CtlError e = {};
        OutputMode mode = output_mode(s);
        int r;

        r = b->ops->wait_state(b, job_id, &state, &e);
        while (r >= 0) {
                if (mode == OUTPUT_TABLE)
                        fprintf(stderr, "Job %s: %s%s%s\n", job_id, color_for_state(state), state, color_off());
                if (state_is_terminal(state))
                        break;
                r = b->ops->wait_state(b, job_id, &state, &e);
        }
        if (r < 0)
                return fail(r, &e);
        r = b->ops->get_job(b, job_id, &job, &e);
        if (r < 0)
                return fail(r, &e);
        if (mode != OUTPUT_TABLE)
                output_json(job, mode);
        else if (!streq(state, "COMPLETED"))
                fprintf(stderr, "Job %s ended %s%s%s\n", job_id, state, json_has(job, "last_error") ? ": " : ".",
                        strempty(json_str(job, "last_error")));
        return streq(state, "COMPLETED") ? CTL_EXIT_OK : CTL_EXIT_JOB_FAILED;
}

enum { ARG_PRIORITY = 0x100, ARG_REQ, ARG_GPU, ARG_AT, ARG_TIMEOUT, ARG_MAX, ARG_WAIT, ARG_DIR };
/* Also the Verb's stop_options: entropyctl.c's --help scan parses with this table. */
static const struct option submit_options[] = {{"priority", required_argument, NULL, ARG_PRIORITY},
                                               {"requirement", required_argument, NULL, ARG_REQ},
                                               {"gpu", no_argument, NULL, ARG_GPU},
                                               {"at", required_argument, NULL, ARG_AT},
                                               {"timeout", required_argument, NULL, ARG_TIMEOUT},
                                               {"max-attempts", required_argument, NULL, ARG_MAX},
                                               {"working-directory", required_argument, NULL, ARG_DIR},
                                               {"wait", no_argument, NULL, ARG_WAIT},
                                               {}};

static int submit_parse(int argc, char **argv, json_object *spec, bool *wait) {
        _cleanup_strv_free_ char **reqs = NULL;
        int64_t x;
        usec_t span;
        double at;
        int c, r;

        while ((c = verb_getopt(argc, argv, "+", submit_options)) >= 0) {
                switch (c) {
                case ARG_PRIORITY:
                        if (parse_int_arg("submit", "priority", optarg, INT32_MIN, INT32_MAX, &x) != 0)
                                return CTL_EXIT_USAGE;
                        json_add_int64(spec, "priority", x);
                        break;
                case ARG_REQ: {
                        _cleanup_strv_free_ char **l = NULL;
                        if (strv_split(optarg, ",", &l) < 0)
                                return log_oom(), CTL_EXIT_FAILURE;
                        STRV_FOREACH (i, l)
                                if (strv_extend(&reqs, *i) < 0)
                                        return log_oom(), CTL_EXIT_FAILURE;
                        break;
                }
                case ARG_GPU:
                        json_add_bool(spec, "needs_gpu", true);
                        break;
                case ARG_AT:
                        if (parse_at(optarg, &at) < 0)
                                return usage_error("submit", "invalid --at '%s': Unix seconds, +SPAN or now", optarg);
                        if (at > 0)
                                json_add_double(spec, "scheduled_at", at);
                        break;
                case ARG_TIMEOUT:
                        if (parse_timespan(optarg, &span) < 0 || span == USEC_INFINITY)
                                return usage_error("submit", "invalid --timeout '%s'", optarg);
                        json_add_int64(spec, "timeout_ms", (int64_t) (span / USEC_PER_MSEC));
                        break;
                case ARG_MAX:
                        if (parse_int_arg("submit", "max-attempts", optarg, 1, 1000, &x) != 0)
                                return CTL_EXIT_USAGE;
                        json_add_int64(spec, "max_attempts", x);
                        break;
                case ARG_DIR:
                        json_add_string(spec, "working_dir", optarg);
                        break;
                case ARG_WAIT:
                        *wait = true;
                        break;
                default:
                        return CTL_EXIT_USAGE;
                }
        }
        if (reqs)
                json_add_strv(spec, "requirements", reqs);
        if (optind >= argc)
                return usage_error("submit", "no command given: entropyctl submit [OPTIONS] -- CMD [ARGS...]");
        json_add_string(spec, "command", argv[optind]);
        r = optind + 1 < argc ? 1 : 0;
        if (r)
                json_add_strv(spec, "args", argv + optind + 1);
        return 0;
}

static int verb_submit(Backend *b, const CtlSettings *s, int argc, char **argv) {
        _cleanup_json_ json_object *spec = json_object_new_object();
        _cleanup_free_ char *job_id = NULL;
        bool wait = false;
        CtlError e = {};
        int r;

        if (!spec)
                return log_oom(), CTL_EXIT_FAILURE;
        r = submit_parse(argc, argv, spec, &wait);
        if (r != 0)
                return r;
        if (wait && b->ops->watch) {
                /* Subscribe before the job exists: no early transition is missed. */
                r = b->ops->watch(b, &e);
                if (r < 0)
                        return fail(r, &e);
        }
        r = b->ops->submit(b, spec, &job_id, &e);
        if (r < 0)
                return fail(r, &e);
        if (!wait || output_mode(s) == OUTPUT_TABLE) {
                if (output_mode(s) == OUTPUT_TABLE)
                        printf("%s\n", job_id);
                else {
                        _cleanup_json_ json_object *o = json_object_new_object();
                        json_add_string(o, "job_id", job_id);
                        json_add_string(o, "status", "PENDING");
                        output_json(o, output_mode(s));
                }
                fflush(stdout);
        }
        return wait ? wait_for_job(b, s, job_id) : CTL_EXIT_OK;
}

/* --- list-jobs, status ---------------------------------------------------------------------- */

static char *job_command_line(json_object *job) {
        _cleanup_strv_free_ char **l = NULL;
        json_object *args;

        if (strv_extend(&l, strempty(json_str(job, "command"))) < 0)
                return NULL;
        if (json_object_object_get_ex(job, "args", &args) && json_object_is_type(args, json_type_array))
                for (size_t i = 0; i < json_object_array_length(args); i++)
                        if (strv_extend(&l, json_object_get_string(json_object_array_get_idx(args, i))) < 0)
                                return NULL;
        return strv_join(l, " ");
}

static int print_jobs_table(const CtlSettings *s, json_object *jobs) {
        _cleanup_(table_freep) Table *t =
                table_new("JOB", "STATE", "ATTEMPTS", "PRIO", "WORKER", "CREATED", "COMMAND", NULL);
        size_t n = json_object_array_length(jobs);

        if (!t)
                return log_oom(), CTL_EXIT_FAILURE;
        table_set_max_width(t, 6, 40);
        for (size_t i = 0; i < n; i++) {
                json_object *j = json_object_array_get_idx(jobs, i);
                _cleanup_free_ char *cmd = job_command_line(j);
                char attempts[48], prio[24], created[64];
                const char *state = json_str(j, "status");

                snprintf(attempts, sizeof(attempts), "%" PRId64 "/%" PRId64, json_int(j, "attempt_count", 0),
                         json_int(j, "max_attempts", 0));
                snprintf(prio, sizeof(prio), "%" PRId64, json_int(j, "priority", 0));
                format_ago(created, sizeof(created), json_num(j, "created_at", 0));
                const char *cells[] = {json_str(j, "job_id"),    state,   attempts, prio,
                                       json_str(j, "worker_id"), created, cmd};
                if (table_add_row(t, 1, color_for_state(state), cells) < 0)
                        return log_oom(), CTL_EXIT_FAILURE;
        }
        if (n > 0)
                table_print(t, !s->no_legend, stdout);
        print_legend(s, n, "job", "jobs");
        return CTL_EXIT_OK;
}

static int verb_list_jobs(Backend *b, const CtlSettings *s, int argc, char **argv) {
        enum { ARG_STATE = 0x100, ARG_WORKER };
        static const struct option options[] = {
                {"state", required_argument, NULL, ARG_STATE}, {"worker", required_argument, NULL, ARG_WORKER}, {}};
        _cleanup_json_ json_object *jobs = NULL;
        const char *state = NULL, *worker = NULL;
        CtlError e = {};
        int c, r;

        while ((c = verb_getopt(argc, argv, "", options)) >= 0) {
                if (c == ARG_STATE)
                        state = optarg;
                else if (c == ARG_WORKER)
                        worker = optarg;
                else
                        return CTL_EXIT_USAGE;
        }
        if (optind < argc)
                return usage_error("list-jobs", "unexpected argument '%s'", argv[optind]);
        r = b->ops->list_jobs(b, state, worker, &jobs, &e);
        if (r < 0)
                return fail(r, &e);
        if (output_mode(s) != OUTPUT_TABLE) {
                output_json(jobs, output_mode(s));
                return CTL_EXIT_OK;
        }
        pager_open(s);
        return print_jobs_table(s, jobs);
}

static void status_line(const char *label, const char *value) {
        if (!isempty(value))
                printf("%*s: %s\n", 14, label, value);
}

static void status_time(const char *label, json_object *job, const char *key) {
        char when[64], ago[64], line[160];
        double t = json_num(job, key, 0);

        if (t <= 0)
                return;
        snprintf(line, sizeof(line), "%s (%s)", format_when(when, sizeof(when), t), format_ago(ago, sizeof(ago), t));
        status_line(label, line);
}

static void print_job_status(json_object *job) {
        _cleanup_free_ char *cmd = job_command_line(job);
        const char *state = json_str(job, "status");
        char buf[512];
        json_object *reqs;

        printf("%s●%s %s - %s\n", color_for_state(state), color_off(), strna(json_str(job, "job_id")), strempty(cmd));
        snprintf(buf, sizeof(buf), "%s%s%s (attempt %" PRId64 " of %" PRId64 ")", color_for_state(state), strna(state),
                 color_off(), json_int(job, "attempt_count", 0), json_int(job, "max_attempts", 0));
        status_line("State", buf);
        snprintf(buf, sizeof(buf), "%" PRId64, json_int(job, "priority", 0));
        status_line("Priority", buf);
        if (json_object_object_get_ex(job, "requirements", &reqs) && json_object_array_length(reqs) > 0)
                status_line("Requirements", json_object_to_json_string_ext(reqs, JSON_C_TO_STRING_PLAIN));
        if (json_object_get_boolean(json_object_object_get(job, "needs_gpu")))
                status_line("GPU", "required");
        status_line("Directory", json_str(job, "working_dir"));
        if (json_int(job, "timeout_ms", 0) > 0) {
                char span[64];
                status_line("Timeout", format_timespan(span, sizeof(span),
                                                       (usec_t) json_int(job, "timeout_ms", 0) * USEC_PER_MSEC));
        }
        status_line("Worker", json_str(job, "worker_id"));
        status_line("Assignment", json_str(job, "assignment_id"));
        status_time("Lease expires", job, "assignment_expires_at");
        status_time("Scheduled", job, "scheduled_at");
        status_time("Created", job, "created_at");
        status_time("Updated", job, "updated_at");
        status_line("Updated by", json_str(job, "updated_by"));
        if (json_has(job, "exit_code")) {
                snprintf(buf, sizeof(buf), "%" PRId64, json_int(job, "exit_code", 0));
                status_line("Exit code", buf);
        }
        status_line("Error", json_str(job, "last_error"));
        status_line("Result", json_str(job, "result_path"));
        status_line("Stdout", json_str(job, "stdout_path"));
        status_line("Stderr", json_str(job, "stderr_path"));
}

static int verb_status(Backend *b, const CtlSettings *s, int argc, char **argv) {
        CtlError e = {};
        int r, ret = CTL_EXIT_OK;

        if (argc < 2)
                return usage_error("status", "which job? entropyctl status JOB...");
        for (int i = 1; i < argc; i++) {
                _cleanup_json_ json_object *job = NULL;
                r = b->ops->get_job(b, argv[i], &job, &e);
                if (r < 0) {
                        ret = fail(r, &e);
                        continue;
                }
                if (output_mode(s) != OUTPUT_TABLE)
                        output_json(job, output_mode(s));
                else {
                        if (i > 1)
                                putchar('\n');
                        print_job_status(job);
                }
        }
        return ret;
}

/* --- abort ---------------------------------------------------------------------------------- */

static int verb_abort(Backend *b, const CtlSettings *s, int argc, char **argv) {
        enum { ARG_WORKER = 0x100, ARG_REASON };
        static const struct option options[] = {
                {"worker", required_argument, NULL, ARG_WORKER}, {"reason", required_argument, NULL, ARG_REASON}, {}};
        _cleanup_json_ json_object *o = json_object_new_object();
        const char *worker = NULL, *reason = NULL;
        _cleanup_free_ char *kept = NULL;
        CtlError e = {};
        int c, r;

        if (!o)
                return log_oom(), CTL_EXIT_FAILURE;
        while ((c = verb_getopt(argc, argv, "", options)) >= 0) {
                if (c == ARG_WORKER)
                        worker = optarg;
                else if (c == ARG_REASON)
                        reason = optarg;
                else
                        return CTL_EXIT_USAGE;
        }
        if (!worker == (optind >= argc) || optind + 1 < argc)
                return usage_error("abort", "give one JOB or --worker ID");
        if (worker) {
                uint64_t n = 0;
                r = b->ops->abort_worker(b, worker, reason, &n, &kept, &e);
                if (r < 0)
                        return fail(r, &e);
                json_add_string(o, "worker_id", worker);
                json_add_int64(o, "aborted_jobs", (int64_t) n);
                if (output_mode(s) == OUTPUT_TABLE)
                        printf("Aborted %" PRIu64 " job%s of worker %s.\n", n, n == 1 ? "" : "s", worker);
        } else {
                r = b->ops->abort_job(b, argv[optind], reason, &kept, &e);
                if (r < 0)
                        return fail(r, &e);
                json_add_string(o, "job_id", argv[optind]);
                json_add_int64(o, "aborted_jobs", 1);
                if (output_mode(s) == OUTPUT_TABLE)
                        printf("Aborted job %s.\n", argv[optind]);
        }
        if (output_mode(s) != OUTPUT_TABLE) {
                json_add_string(o, "status", "ABORTED");
                /* The reason the jobs keep: the control plane's answer says it (HTTP), or it is
                 * the one given, kept as it is. Without one, over D-Bus, the default is the
                 * control plane's to make and it does not say: left out, not shown as "". */
                if (kept || !isempty(reason))
                        json_add_string(o, "reason", kept ?: reason);
                output_json(o, output_mode(s));
        }
        return CTL_EXIT_OK;
}

/* --- workers -------------------------------------------------------------------------------- */

/* What a live worker's last heartbeat said about itself: why it takes no new job. A worker that
 * stopped sending heartbeats says nothing current. */
static const char *worker_note(json_object *w, const char *state, char *buf, size_t size) {
        json_object *metrics;
        const char *reason;

        if (!streq_ptr(state, "ONLINE") && !streq_ptr(state, "DRAINING"))
                return NULL;
        if (!json_object_object_get_ex(w, "heartbeat_metrics", &metrics) ||
            !json_object_is_type(metrics, json_type_object))
                return NULL;
        reason = json_str(metrics, "no_new_work");
        if (!reason)
                return NULL;
        snprintf(buf, size, "no new work: %s", reason);
        return buf;
}

static int verb_list_workers(Backend *b, const CtlSettings *s, int argc, char **argv) {
        _cleanup_json_ json_object *workers = NULL;
        _cleanup_(table_freep) Table *t = NULL;
        CtlError e = {};
        size_t n;
        int r;

        if (argc > 1)
                return usage_error("list-workers", "unexpected argument '%s'", argv[1]);
        r = b->ops->list_workers(b, &workers, &e);
        if (r < 0)
                return fail(r, &e);
        if (output_mode(s) != OUTPUT_TABLE) {
                output_json(workers, output_mode(s));
                return CTL_EXIT_OK;
        }
        t = table_new("WORKER", "STATE", "JOB", "LAST SEEN", "VERSION", "CAPABILITIES", "NOTE", NULL);
        if (!t)
                return log_oom(), CTL_EXIT_FAILURE;
        n = json_object_array_length(workers);
        for (size_t i = 0; i < n; i++) {
                json_object *w = json_object_array_get_idx(workers, i), *caps;
                _cleanup_free_ char *capabilities = NULL;
                char seen[64], note[256];
                const char *state = json_str(w, "status");

                if (json_object_object_get_ex(w, "capabilities", &caps) && json_object_is_type(caps, json_type_array)) {
                        _cleanup_strv_free_ char **l = NULL;
                        for (size_t k = 0; k < json_object_array_length(caps); k++)
                                (void) strv_extend(&l, json_object_get_string(json_object_array_get_idx(caps, k)));
                        capabilities = strv_join(l, ",");
                }
                format_ago(seen, sizeof(seen), json_num(w, "last_seen", 0));
                const char *cells[] = {json_str(w, "worker_id"),
                                       state,
                                       json_str(w, "current_job_id"),
                                       seen,
                                       json_str(w, "version"),
                                       capabilities,
                                       worker_note(w, state, note, sizeof(note))};
                if (table_add_row(t, 1, color_for_state(state), cells) < 0)
                        return log_oom(), CTL_EXIT_FAILURE;
        }
        pager_open(s);
        if (n > 0)
                table_print(t, !s->no_legend, stdout);
        print_legend(s, n, "worker", "workers");
        return CTL_EXIT_OK;
}

static int drain_common(Backend *b, const CtlSettings *s, int argc, char **argv, bool drain) {
        CtlError e = {};
        int r;

        if (argc != 2)
                return usage_error(argv[0], "give one WORKER");
        r = b->ops->drain(b, argv[1], drain, &e);
        if (r < 0)
                return fail(r, &e);
        if (output_mode(s) == OUTPUT_TABLE)
                printf("Worker %s %s.\n", argv[1], drain ? "is draining: it gets no new jobs" : "takes new jobs again");
        else {
                _cleanup_json_ json_object *o = json_object_new_object();
                json_add_string(o, "worker_id", argv[1]);
                json_add_bool(o, "draining", drain);
                output_json(o, output_mode(s));
        }
        return CTL_EXIT_OK;
}

static int verb_drain(Backend *b, const CtlSettings *s, int argc, char **argv) {
        return drain_common(b, s, argc, argv, true);
}

static int verb_resume(Backend *b, const CtlSettings *s, int argc, char **argv) {
        return drain_common(b, s, argc, argv, false);
}

/* The same answer over both transports (the D-Bus reply is empty): the worker and "removed". */
static int verb_remove_worker(Backend *b, const CtlSettings *s, int argc, char **argv) {
        CtlError e = {};
        int r;

        if (argc != 2)
                return usage_error(argv[0], "give one WORKER");
        r = b->ops->remove_worker(b, argv[1], &e);
        if (r < 0)
                return fail(r, &e);
        if (output_mode(s) == OUTPUT_TABLE)
                printf("Worker %s removed.\n", argv[1]);
        else {
                _cleanup_json_ json_object *o = json_object_new_object();
                json_add_string(o, "worker_id", argv[1]);
                json_add_string(o, "status", "removed");
                output_json(o, output_mode(s));
        }
        return CTL_EXIT_OK;
}

/* --- events --------------------------------------------------------------------------------- */

static void print_event(json_object *ev) {
        char when[64];
        json_object *details;
        const char *d = "";

        if (json_object_object_get_ex(ev, "details", &details) && details)
                d = json_object_to_json_string_ext(details, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        printf("%-6" PRId64 " %s %-22s job=%s worker=%s %s\n", json_int(ev, "id", 0),
               format_when(when, sizeof(when), json_num(ev, "ts", 0)), strna(json_str(ev, "event")),
               json_str(ev, "job_id") ? json_str(ev, "job_id") : "-",
               json_str(ev, "worker_id") ? json_str(ev, "worker_id") : "-", d);
}

/* Where --follow is in the event log. */
typedef struct FollowPosition {
        int64_t after_id; /* the highest event id seen */
        double last_ts;   /* the time of that event; 0: none seen */
} FollowPosition;

/* Prints a page of events oldest first (the API answers newest first unless asked otherwise);
 * moves *pos to the highest id seen. */
static void show_events(const CtlSettings *s, json_object *events, bool oldest_first, FollowPosition *pos) {
        size_t n = json_object_array_length(events);

        for (size_t k = 0; k < n; k++) {
                json_object *ev = json_object_array_get_idx(events, oldest_first ? k : n - 1 - k);
                if (output_mode(s) == OUTPUT_TABLE)
                        print_event(ev);
                else
                        output_json(ev, output_mode(s));
                if (pos && json_int(ev, "id", 0) > pos->after_id) {
                        pos->after_id = json_int(ev, "id", 0);
                        pos->last_ts = json_num(ev, "ts", 0);
                }
        }
        fflush(stdout);
}

static volatile sig_atomic_t interrupted;
static void on_interrupt(int sig) {
        interrupted = 1;
}

/* The newest stored event id, whatever the filters: ids are the store's, not the filter's. */
static int newest_event_id(Backend *b, int64_t *ret, CtlError *e) {
        _cleanup_json_ json_object *page = NULL;
        EventQuery q = {.limit = 1};
        int r;

        r = b->ops->events(b, &q, &page, e);
        if (r < 0)
                return r;
        *ret = json_object_array_length(page) > 0 ? json_int(json_object_array_get_idx(page, 0), "id", 0) : 0;
        return 0;
}

/* The store's newest id is below the last id seen: the control plane's database was restored from
 * an older copy or replaced, and asking for ids above the last one seen would stay silent for
 * ever. Says so, and goes on from the last event stored before the one seen last (by time), so
 * that what was committed since the restore, before this noticed it, is printed too. */
static int follow_went_back(Backend *b, FollowPosition *pos, int64_t newest, CtlError *e) {
        _cleanup_json_ json_object *page = NULL;
        EventQuery q = {.limit = LIMIT_EVENTS_PAGE};
        int64_t from = newest;
        int r;

        if (pos->last_ts > 0) {
                r = b->ops->events(b, &q, &page, e);
                if (r < 0)
                        return r;
                /* Newest first: the first event not after the last one seen ends the new ones. */
                from = 0;
                for (size_t i = 0; i < json_object_array_length(page); i++) {
                        json_object *ev = json_object_array_get_idx(page, i);
                        if (json_num(ev, "ts", 0) <= pos->last_ts) {
                                from = json_int(ev, "id", 0);
                                break;
                        }
                        from = json_int(ev, "id", 0) - 1;
                }
        }
        log_warning("The event log went back from id %" PRId64 " to %" PRId64
                    " (the control plane's database was restored or replaced); going on after id %" PRId64 ".",
                    pos->after_id, newest, from);
        pos->after_id = from;
        return 0;
}

/* --follow: every event after pos.after_id, page by page from the oldest, so that a burst larger
 * than a page between two polls is printed whole; then waits and asks again. A control plane that
 * was reached and then cannot be (restarting) is waited for. */
static int follow_events(Backend *b, const CtlSettings *s, EventQuery q, FollowPosition pos, bool reached) {
        bool unreachable = false, came_back = false;
        unsigned idle_polls = 0;
        CtlError e = {};
        int r;

        signal(SIGINT, on_interrupt);
        signal(SIGTERM, on_interrupt);
        q.oldest_first = true;
        q.limit = LIMIT_EVENTS_PAGE;
        while (!interrupted) {
                _cleanup_json_ json_object *page = NULL;
                bool went_back = false;
                int64_t newest = 0;

                q.after_id = pos.after_id;
                r = b->ops->events(b, &q, &page, &e);
                if (r >= 0 && unreachable) {
                        log_notice("The control plane is back.");
                        unreachable = false;
                        came_back = true;
                }
                /* A restore comes with a restart: look right after one, else now and then, not on
                 * every quiet poll (that would double the requests of a quiet follow). */
                if (r >= 0 && json_object_array_length(page) == 0 && pos.after_id > 0 &&
                    (came_back || idle_polls++ % EVENTS_FOLLOW_RESTORE_CHECK_POLLS == 0)) {
                        came_back = false;
                        r = newest_event_id(b, &newest, &e);
                        if (r >= 0 && newest < pos.after_id) {
                                r = follow_went_back(b, &pos, newest, &e);
                                went_back = true;
                        }
                }
                if (interrupted)
                        break; /* SIGINT/SIGTERM in the middle of a request: ends the follow, not an error */
                if (r == -ECONNREFUSED && reached) {
                        if (!unreachable)
                                log_warning("%s; waiting for the control plane to come back.", e.message);
                        unreachable = true;
                } else if (r < 0)
                        return fail(r, &e);
                else {
                        reached = true;
                        show_events(s, page, true, &pos);
                        if ((int64_t) json_object_array_length(page) >= q.limit)
                                continue; /* a full page: there may be more right away */
                        if (went_back)
                                continue; /* print what came since the restore at once */
                }
                struct timespec ts = {.tv_nsec = (long) (EVENTS_FOLLOW_POLL_USEC * 1000)};
                nanosleep(&ts, NULL);
        }
        return CTL_EXIT_OK;
}

static int verb_events(Backend *b, const CtlSettings *s, int argc, char **argv) {
        enum { ARG_FOLLOW = 0x100, ARG_JOB, ARG_WORKER, ARG_EVENT, ARG_SINCE, ARG_LIMIT };
        static const struct option options[] = {
                {"follow", no_argument, NULL, ARG_FOLLOW},       {"job", required_argument, NULL, ARG_JOB},
                {"worker", required_argument, NULL, ARG_WORKER}, {"event", required_argument, NULL, ARG_EVENT},
                {"since", required_argument, NULL, ARG_SINCE},   {"limit", required_argument, NULL, ARG_LIMIT},
                {}};
        EventQuery q = {.limit = 0};
        _cleanup_json_ json_object *events = NULL;
        bool follow = false, since = false;
        CtlError e = {};
        int c, r;

        while ((c = verb_getopt(argc, argv, "f", options)) >= 0) {
                switch (c) {
                case 'f':
                case ARG_FOLLOW:
                        follow = true;
                        break;
                case ARG_JOB:
                        q.job_id = optarg;
                        break;
                case ARG_WORKER:
                        q.worker_id = optarg;
                        break;
                case ARG_EVENT:
                        q.event = optarg;
                        break;
                case ARG_SINCE:
                        if (parse_int_arg("events", "--since event id", optarg, 0, INT64_MAX, &q.after_id) != 0)
                                return CTL_EXIT_USAGE;
                        since = true;
                        break;
                case ARG_LIMIT:
                        if (parse_int_arg("events", "--limit", optarg, 1, LIMIT_EVENTS_PAGE, &q.limit) != 0)
                                return CTL_EXIT_USAGE;
                        break;
                default:
                        return CTL_EXIT_USAGE;
                }
        }
        if (optind < argc)
                return usage_error("events", "unexpected argument '%s'", argv[optind]);
        /* --follow --since=ID prints everything after ID; plain --follow starts with the latest
         * page, as tail -f does. */
        if (follow && since)
                return follow_events(b, s, q, (FollowPosition){.after_id = q.after_id}, false);
        r = b->ops->events(b, &q, &events, &e);
        if (r < 0)
                return fail(r, &e);
        if (follow) {
                FollowPosition pos = {.after_id = q.after_id};
                show_events(s, events, false, &pos);
                return follow_events(b, s, q, pos, true);
        }
        if (output_mode(s) != OUTPUT_TABLE) {
                /* One JSON array, in the API's order, for scripts. */
                output_json(events, output_mode(s));
                return CTL_EXIT_OK;
        }
        pager_open(s);
        show_events(s, events, false, NULL);
        return CTL_EXIT_OK;
}

/* --- reconcile, reload, replay -------------------------------------------------------------- */

static int verb_reconcile(Backend *b, const CtlSettings *s, int argc, char **argv) {
        uint64_t n = 0;
        CtlError e = {};
        int r;

        if (argc > 1)
                return usage_error("reconcile", "unexpected argument '%s'", argv[1]);
        r = b->ops->reconcile(b, &n, &e);
        if (r < 0)
                return fail(r, &e);
        if (output_mode(s) == OUTPUT_TABLE)
                printf("Reconcile sweep done: %" PRIu64 " change%s.\n", n, n == 1 ? "" : "s");
        else {
                _cleanup_json_ json_object *o = json_object_new_object();
                json_add_int64(o, "changes", (int64_t) n);
                output_json(o, output_mode(s));
        }
        return CTL_EXIT_OK;
}

static int verb_reload(Backend *b, const CtlSettings *s, int argc, char **argv) {
        CtlError e = {};
        int r;

        if (argc > 1)
                return usage_error("reload", "unexpected argument '%s'", argv[1]);
        r = b->ops->reload(b, &e);
        if (r < 0)
                return fail(r, &e);
        if (output_mode(s) == OUTPUT_TABLE)
                printf("Tokens reloaded.\n");
        return CTL_EXIT_OK;
}

static int verb_replay(Backend *b, const CtlSettings *s, int argc, char **argv) {
        enum { ARG_WORKER = 0x100 };
        static const struct option options[] = {{"worker", required_argument, NULL, ARG_WORKER}, {}};
        _cleanup_json_ json_object *body = NULL, *resp = NULL;
        const char *worker = NULL;
        CtlError e = {};
        int c, r;

        while ((c = verb_getopt(argc, argv, "", options)) >= 0) {
                if (c == ARG_WORKER)
                        worker = optarg;
                else
                        return CTL_EXIT_USAGE;
        }
        if (optind + 1 != argc)
                return usage_error("replay", "give one FILE (a worker's worker.db)");
        r = replay_file_to_reconnect(argv[optind], worker, &body, &e);
        if (r < 0)
                return fail(r, &e);
        r = b->ops->replay(b, body, &resp, &e);
        if (r < 0)
                return fail(r, &e);
        if (output_mode(s) != OUTPUT_TABLE) {
                output_json(resp, output_mode(s));
                return CTL_EXIT_OK;
        }
        return replay_print_actions(s, resp);
}

static int verb_backup(Backend *b, const CtlSettings *s, int argc, char **argv) {
        enum { ARG_DATABASE = 0x100 };
        static const struct option options[] = {{"database", required_argument, NULL, ARG_DATABASE}, {}};
        _cleanup_json_ json_object *copy = NULL;
        const char *database = BACKUP_DEFAULT_DATABASE;
        char size[32];
        CtlError e = {};
        int c, r;

        while ((c = verb_getopt(argc, argv, "", options)) >= 0) {
                if (c == ARG_DATABASE)
                        database = optarg;
                else
                        return CTL_EXIT_USAGE;
        }
        if (optind + 1 != argc)
                return usage_error("backup", "give one FILE, a new file for the copy");
        r = backup_database(database, argv[optind], &copy, &e);
        if (r < 0)
                return fail(r, &e);
        if (output_mode(s) != OUTPUT_TABLE) {
                output_json(copy, output_mode(s));
                return CTL_EXIT_OK;
        }
        printf("Copied %s to %s: %" PRIi64 " jobs, %" PRIi64 " audit events, schema version %" PRIi64 ", %s.\n",
               database, argv[optind], (int64_t) json_num(copy, "jobs", 0), (int64_t) json_num(copy, "audit_events", 0),
               (int64_t) json_num(copy, "schema_version", 0),
               format_bytes(size, sizeof(size), (uint64_t) json_num(copy, "bytes", 0)));
        return CTL_EXIT_OK;
}

const Verb ctl_verbs[] = {
        {"submit", verb_submit,
         "[--priority=N] [--requirement=CAP...] [--gpu] [--at=TIME] [--timeout=SPAN] [--max-attempts=N] "
         "[--working-directory=DIR] [--wait] -- CMD [ARGS...]",
         "Submit a job; print its id. TIME is Unix seconds, +SPAN from now or now; N counts attempts in all, "
         "1 to 1000 (default 3). --wait follows the job and exits with its outcome",
         submit_options},
        {"list-jobs", verb_list_jobs, "[--state=STATE] [--worker=ID]", "List jobs, newest first"},
        {"status", verb_status, "JOB...", "Show a job's state and details"},
        {"abort", verb_abort, "JOB | --worker=ID [--reason=TEXT]", "Abort a job, or every job a worker holds"},
        {"list-workers", verb_list_workers, "", "List workers and their state"},
        {"drain", verb_drain, "WORKER", "Give a worker no new jobs (its running jobs go on)"},
        {"resume", verb_resume, "WORKER", "Undo drain"},
        {"remove-worker", verb_remove_worker, "WORKER", "Forget an OFFLINE worker that no job is bound to"},
        {"events", verb_events, "[-f|--follow] [--job=ID] [--worker=ID] [--event=NAME] [--since=EVENT-ID] [--limit=N]",
         "Show the audit trail"},
        {"reconcile", verb_reconcile, "", "Run a reconciler sweep now"},
        {"replay", verb_replay, "[--worker=ID] FILE",
         "Hand a worker's undelivered results (its worker.db) to the control plane"},
        {"reload", verb_reload, "", "Make the control plane re-read its token files"},
        {"backup", verb_backup, "[--database=PATH] FILE",
         "Copy the control plane's database (default " BACKUP_DEFAULT_DATABASE ") to a new FILE, while it runs",
         .local = true},
};
const size_t ctl_n_verbs = ELEMENTSOF(ctl_verbs);
