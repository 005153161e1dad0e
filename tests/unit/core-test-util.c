/* core-test-util.c: see core-test-util.h. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "control-clock.h"
#include "core-test-util.h"
#include "log.h"
#include "reconcile.h"
#include "requirement-sets.h"
#include "store.h"
#include "strv.h"
#include "tap.h"

typedef struct TestControl {
        Control c;
        char dir[PATH_MAX];
} TestControl;

Control *test_control_new(void) {
        TestControl *t = calloc(1, sizeof(*t));
        char path[PATH_MAX + 16];

        if (!t)
                tap_bail("out of memory");
        /* Refusals are logged as warnings by design; keep the TAP output readable. */
        if (!getenv("ENTROPY_TEST_VERBOSE"))
                log_set_max_level(LOG_ERR);
        snprintf(t->dir, sizeof(t->dir), "%s/entropy-core-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(t->dir))
                tap_bail("mkdtemp failed");
        snprintf(path, sizeof(path), "%s/control.db", t->dir);
        if (store_open(path, NULL, &t->c.store) < 0)
                tap_bail("store_open failed");
        ControlSettings *s = &t->c.settings;
        s->lease_timeout = 10 * USEC_PER_SEC;
        s->disconnect_timeout = 15 * USEC_PER_SEC;
        s->heartbeat_timeout = 30 * USEC_PER_SEC;
        s->reconcile_interval = 1 * USEC_PER_SEC;
        s->retry_backoff = 2 * USEC_PER_SEC;
        s->retry_backoff_max = 60 * USEC_PER_SEC;
        s->retry_jitter = 0;
        s->retention_interval = USEC_PER_HOUR;
        t->c.clock_override = T0;
        t->c.elapsed_override = 1000 * USEC_PER_SEC;
        t->c.started_at = T0;
        control_clock_anchor(&t->c);
        return &t->c;
}

const char *test_control_dir(const Control *c) {
        return ((const TestControl *) c)->dir;
}

void test_control_free(Control *c) {
        TestControl *t = (TestControl *) c;
        char cmd[PATH_MAX + 16];

        if (!c)
                return;
        reconcile_timers_stop(c);
        c->event = sd_event_unref(c->event);
        store_close(c->store);
        requirement_sets_free(c->requirement_sets);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
        if (system(cmd) != 0)
                diag("failed to remove %s", t->dir);
        free(t);
}

void test_register(Control *c, const char *worker_id, const char *caps) {
        _cleanup_strv_free_ char **l = NULL;
        OpError err = {};
        if (caps && strv_split(caps, ",", &l) < 0)
                tap_bail("strv_split");
        WorkerRegistration reg = {.worker_id = worker_id, .capabilities = l};
        if (worker_register(c, NULL, &reg, &err) < 0)
                tap_bail("register %s: %s", worker_id, err.message);
}

const char *test_submit_spec(Control *c, const JobSpec *spec) {
        static char ids[8][RANDOM_ID_SIZE];
        static unsigned k;
        OpError err = {};
        char *id = ids[k++ % 8];
        if (jobs_submit(c, NULL, spec, id, &err) < 0)
                tap_bail("submit: %s", err.message);
        return id;
}

const char *test_submit(Control *c, int64_t priority) {
        JobSpec s;
        job_spec_init(&s);
        s.command = "/bin/true";
        s.priority = priority;
        return test_submit_spec(c, &s);
}

Job *test_claim(Control *c, const char *worker_id) {
        Job *j = NULL;
        int r = jobs_claim(c, NULL, worker_id, &j);
        if (r < 0)
                tap_bail("claim for %s failed: %d", worker_id, r);
        return j;
}

Job *test_claim_and_ack(Control *c, const char *worker_id) {
        OpError err = {};
        Job *j = test_claim(c, worker_id);
        if (!j)
                tap_bail("nothing claimed for %s", worker_id);
        if (jobs_ack(c, NULL, j->job_id, worker_id, j->assignment_id, &err) < 0)
                tap_bail("ack: %s", err.message);
        return j;
}

JobState test_job_state(Control *c, const char *job_id) {
        _cleanup_(job_freep) Job *j = NULL;
        if (jobs_get(c, job_id, &j) < 0)
                return _JOB_STATE_INVALID;
        return j->status;
}

int test_count_events(Control *c, const char *event, const char *job_id) {
        sqlite3_stmt *st = NULL;
        int n = -1;
        if (sqlite3_prepare_v2(c->store->db,
                               "SELECT count(*) FROM audit_events WHERE event = ? AND (? IS NULL OR job_id = ?)", -1,
                               &st, NULL) != SQLITE_OK)
                tap_bail("prepare count");
        sqlite3_bind_text(st, 1, event, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, job_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, job_id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW)
                n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return n;
}

void test_force(Control *c, const char *sql_set, const char *job_id) {
        char sql[1024];
        snprintf(sql, sizeof(sql), "UPDATE jobs SET %s WHERE job_id = '%s'", sql_set, job_id);
        if (sqlite3_exec(c->store->db, sql, NULL, NULL, NULL) != SQLITE_OK)
                tap_bail("force failed: %s", sql);
}

int test_sweep(Control *c) {
        unsigned n = 0;
        int r = reconcile_sweep(c, &n);
        return r < 0 ? r : (int) n;
}

HttpRequest test_request(const char *method, const char *path, const char *body, TestQuery *q) {
        return (HttpRequest){.method = method,
                             .path = path,
                             .body = body,
                             .body_size = body ? strlen(body) : 0,
                             .connection = (struct MHD_Connection *) q};
}

bool test_plan_uses(Control *c, const char *sql, const char *index) {
        sqlite3_stmt *st = NULL;
        char q[1024];
        bool found = false, sorts = false;
        snprintf(q, sizeof(q), "EXPLAIN QUERY PLAN %s", sql);
        if (sqlite3_prepare_v2(c->store->db, q, -1, &st, NULL) != SQLITE_OK)
                return false;
        while (sqlite3_step(st) == SQLITE_ROW) {
                const char *d = (const char *) sqlite3_column_text(st, 3);
                found = found || strstr(d, index);
                sorts = sorts || strstr(d, "TEMP B-TREE");
        }
        sqlite3_finalize(st);
        return found && !sorts;
}
