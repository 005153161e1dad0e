/* bench-control.c: starting, stopping and inspecting the entropy-control under test. */
#include <ctype.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "bench-control.h"
#include "bench-http.h"
#include "bench-util.h"
#include "fs-util.h"
#include "log.h"
#include "strv.h"

#define CONTROL_READY_TIMEOUT (120 * USEC_PER_SEC) /* generous: recovery with 1M jobs stored */
#define CONTROL_STOP_TIMEOUT  (60 * USEC_PER_SEC)

static int control_plane_attach(ControlPlane *cp, const BenchSettings *s) {
        int r;

        r = parse_loopback_url(s->url, &cp->port);
        if (r < 0)
                return log_error_errno(r, "--url=%s: only http://127.0.0.1:PORT is accepted (loopback only).", s->url);
        if (isempty(s->admin_token_file) || isempty(s->worker_token_file))
                return log_error_errno(-EINVAL, "--url needs --admin-token-file and --worker-token-file.");
        r = read_secret_file(s->admin_token_file, &cp->admin_token);
        if (r < 0)
                return log_error_errno(r, "Failed to read %s: %m", s->admin_token_file);
        r = read_secret_file(s->worker_token_file, &cp->worker_token);
        if (r < 0)
                return log_error_errno(r, "Failed to read %s: %m", s->worker_token_file);
        cp->pid = (pid_t) s->pid;
        return 0;
}

static int control_plane_tokens(ControlPlane *cp, char **ret_admin_file, char **ret_worker_file) {
        char admin[33], worker[33];
        int r;

        r = random_token(admin);
        if (r >= 0)
                r = random_token(worker);
        if (r < 0)
                return log_error_errno(r, "Failed to generate tokens: %m");
        cp->admin_token = strdup(admin);
        cp->worker_token = strdup(worker);
        if (!cp->admin_token || !cp->worker_token || asprintf(ret_admin_file, "%s/admin-token", cp->dir) < 0 ||
            asprintf(ret_worker_file, "%s/worker-token", cp->dir) < 0)
                return log_oom();
        r = write_token_file(*ret_admin_file, admin);
        if (r >= 0)
                r = write_token_file(*ret_worker_file, worker);
        if (r < 0)
                return log_error_errno(r, "Failed to write token files in %s: %m", cp->dir);
        return 0;
}

static int control_plane_argv(ControlPlane *cp, const BenchSettings *s, const char *admin_file,
                              const char *worker_file) {
        char *arg;
        int r = 0;

        r = strv_extend(&cp->argv, s->control_binary);
        if (r >= 0 && asprintf(&arg, "--listen=127.0.0.1:%u", (unsigned) cp->port) >= 0)
                r = strv_consume(&cp->argv, arg);
        if (r >= 0 && asprintf(&arg, "--database=%s/control.db", cp->dir) >= 0)
                r = strv_consume(&cp->argv, arg);
        if (r >= 0 && asprintf(&arg, "--admin-token-file=%s", admin_file) >= 0)
                r = strv_consume(&cp->argv, arg);
        if (r >= 0 && asprintf(&arg, "--worker-token-file=%s", worker_file) >= 0)
                r = strv_consume(&cp->argv, arg);
        if (r >= 0)
                r = strv_extend(&cp->argv, "--config=");
        STRV_FOREACH (a, s->control_args)
                if (r >= 0)
                        r = strv_extend(&cp->argv, *a);
        return r < 0 ? log_oom() : 0;
}

int control_plane_setup(ControlPlane *cp, const BenchSettings *s, const char *workdir) {
        _cleanup_free_ char *admin_file = NULL, *worker_file = NULL;
        int r;

        *cp = (ControlPlane){.child.notify_fd = -EBADF};
        if (!isempty(s->url))
                return control_plane_attach(cp, s);
        if (!isempty(s->state_directory)) {
                r = mkdir_parents_and_self(s->state_directory, 0700);
                if (r < 0)
                        return log_error_errno(r, "Failed to create %s: %m", s->state_directory);
                cp->dir = strdup(s->state_directory);
        } else if (asprintf(&cp->dir, "%s/control", workdir) >= 0 && mkdir(cp->dir, 0700) < 0)
                return log_error_errno(negative_errno(), "Failed to create %s: %m", cp->dir);
        if (!cp->dir)
                return log_oom();
        r = free_loopback_port(&cp->port);
        if (r < 0)
                return log_error_errno(r, "Failed to find a free port: %m");
        r = control_plane_tokens(cp, &admin_file, &worker_file);
        if (r < 0)
                return r;
        cp->spawned = true;
        return control_plane_argv(cp, s, admin_file, worker_file);
}

int control_plane_start(ControlPlane *cp, usec_t *ret_startup) {
        _cleanup_free_ char *log_path = NULL, *notify_path = NULL;
        usec_t ready_at;
        int r;

        if (!cp->spawned)
                return 0;
        if (asprintf(&log_path, "%s/entropy-control.log", cp->dir) < 0 ||
            asprintf(&notify_path, "%s/notify", cp->dir) < 0)
                return log_oom();
        child_done(&cp->child);
        r = child_spawn(&cp->child, "entropy-control", cp->argv, log_path, notify_path, NULL);
        if (r < 0)
                return r;
        r = child_wait_ready(&cp->child, CONTROL_READY_TIMEOUT, &ready_at);
        if (r < 0) {
                child_log_tail(&cp->child, 20);
                return r;
        }
        cp->pid = cp->child.pid;
        if (ret_startup)
                *ret_startup = ready_at - cp->child.spawned_at;
        return 0;
}

int control_plane_stop(ControlPlane *cp) {
        int r;

        if (!cp->spawned || cp->child.pid <= 0)
                return 0;
        r = child_stop(&cp->child, CONTROL_STOP_TIMEOUT);
        cp->pid = 0;
        if (r < 0)
                return log_error_errno(r, "entropy-control did not stop cleanly: %m");
        if (!WIFEXITED(cp->child.exit_status) || WEXITSTATUS(cp->child.exit_status) != 0) {
                log_warning("entropy-control exited with wait status 0x%x.", (unsigned) cp->child.exit_status);
                child_log_tail(&cp->child, 20);
        }
        return 0;
}

void control_plane_done(ControlPlane *cp) {
        child_done(&cp->child);
        free(cp->admin_token);
        free(cp->worker_token);
        free(cp->dir);
        strv_free(cp->argv);
        *cp = (ControlPlane){.child.notify_fd = -EBADF};
}

int control_plane_memory(ControlPlane *cp, uint64_t *ret_hwm, uint64_t *ret_rss) {
        if (cp->pid <= 0)
                return -ENODATA;
        return proc_memory_kib(cp->pid, ret_hwm, ret_rss);
}

int control_plane_cpu(ControlPlane *cp, usec_t *ret) {
        if (cp->pid <= 0)
                return -ENODATA;
        return proc_cpu_usec(cp->pid, false, ret);
}

/* One sample line of the exposition: `name{...,state="PENDING",...} value`. Returns the state the
 * line counts, or _JOB_STATE_INVALID when it is not a per-state job gauge. */
static JobState metrics_job_line(const char *line, const char *metric, uint64_t *ret_value) {
        size_t n = strlen(metric);
        const char *st, *end, *close;
        char state[32];

        if (strncmp(line, metric, n) != 0 || line[n] != '{')
                return _JOB_STATE_INVALID;
        close = strchr(line + n, '}');
        st = strstr(line + n, "state=\"");
        if (!close || !st || st > close)
                return _JOB_STATE_INVALID;
        st += 7;
        end = strchr(st, '"');
        if (!end || (size_t) (end - st) >= sizeof(state))
                return _JOB_STATE_INVALID;
        for (size_t i = 0; i < (size_t) (end - st); i++)
                state[i] = (char) toupper((unsigned char) st[i]);
        state[end - st] = 0;
        *ret_value = strtoull(close + 1, NULL, 10);
        return job_state_from_string(state);
}

/* GET /metrics; errors are logged. */
static int metrics_fetch(ControlPlane *cp, char **ret_body) {
        _cleanup_free_ char *body = NULL;
        unsigned status;
        int r;

        r = http_call(cp->port, "GET", "/metrics", cp->admin_token, NULL, &status, &body);
        if (r < 0)
                return log_error_errno(r, "GET /metrics failed: %m");
        if (status != 200)
                return log_error_errno(-EIO, "GET /metrics answered %u: %.200s", status, body);
        *ret_body = TAKE_PTR(body);
        return 0;
}

static char *next_line(char *line) {
        line = strchr(line, '\n');
        return line ? line + 1 : NULL;
}

int control_plane_metric(ControlPlane *cp, const char *name, uint64_t *ret) {
        _cleanup_free_ char *body = NULL;
        size_t n = strlen(name);
        int r = metrics_fetch(cp, &body);

        if (r < 0)
                return r;
        for (char *line = body; line && *line; line = next_line(line))
                if (strncmp(line, name, n) == 0 && line[n] == ' ') {
                        *ret = strtoull(line + n + 1, NULL, 10);
                        return 0;
                }
        return -ENODATA;
}

/* The gauge name differs between drafts of the control plane; the first that is present wins. */
static const char *const job_gauges[] = {"entropy_jobs", "entropy_queue_depth", "entropy_jobs_by_state"};

int control_plane_count_jobs(ControlPlane *cp, uint64_t counts[_JOB_STATE_MAX]) {
        _cleanup_free_ char *body = NULL;
        int r = metrics_fetch(cp, &body);

        if (r < 0)
                return r;
        for (size_t g = 0; g < ELEMENTSOF(job_gauges); g++) {
                bool found = false;
                memset(counts, 0, sizeof(uint64_t) * _JOB_STATE_MAX);
                for (char *line = body; line && *line; line = next_line(line)) {
                        uint64_t v;
                        JobState st = metrics_job_line(line, job_gauges[g], &v);
                        if (st >= 0) {
                                counts[st] = v;
                                found = true;
                        }
                }
                if (found)
                        return 0;
        }
        return log_error_errno(-ENODATA, "GET /metrics has no per-state job gauge (tried entropy_jobs{state=...}).");
}
