/* test-store.c: the database: creation with mode 0600 in WAL with synchronous=FULL (or NORMAL),
 * migrations from every earlier schema version with data preserved, the class list (v14) its
 * triggers keep, and refusals: a newer schema, a file that is not a database, a directory it
 * cannot write. */
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core-test-util.h"
#include "ops.h"
#include "store-schema.h"
#include "store.h"
#include "tap.h"

static char dir[PATH_MAX];

static void path_in(char *buf, size_t size, const char *name) {
        snprintf(buf, size, "%s/%s", dir, name);
}

static int pragma_int(Store *s, const char *sql) {
        sqlite3_stmt *st = NULL;
        int v = -1;
        sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return v;
}

static mode_t mode_of(const char *p) {
        struct stat st;
        return stat(p, &st) < 0 ? (mode_t) -1 : st.st_mode & 07777;
}

static void test_open_creates_private_wal_database(void) {
        char p[PATH_MAX + 32], wal[PATH_MAX + 40];
        _cleanup_(store_closep) Store *s = NULL;
        path_in(p, sizeof(p), "fresh.db");
        umask(0022);
        is_int(store_open(p, NULL, &s), 0, "store_open creates the database");
        is_int(mode_of(p), 0600, "database file is 0600 despite umask 022");
        sqlite3_exec(s->db, "CREATE TABLE t(x); INSERT INTO t VALUES (1)", NULL, NULL, NULL);
        snprintf(wal, sizeof(wal), "%s-wal", p);
        is_int(mode_of(wal), 0600, "its -wal is 0600 too");
        snprintf(wal, sizeof(wal), "%s-shm", p);
        is_int(mode_of(wal), 0600, "and its -shm");
        is_int(pragma_int(s, "PRAGMA synchronous"), 2, "synchronous=FULL by default");
        int v = 0;
        store_user_version(s, &v);
        is_int(v, STORE_SCHEMA_VERSION, "schema at the current version");
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(s->db, "PRAGMA journal_mode", -1, &st, NULL);
        sqlite3_step(st);
        is_str((const char *) sqlite3_column_text(st, 0), "wal", "WAL journal");
        sqlite3_finalize(st);
        uint64_t size = 0;
        ok(store_database_size(s, &size) == 0 && size > 0, "database size reported");
}

static void test_synchronous_normal_is_an_option(void) {
        char p[PATH_MAX + 32];
        _cleanup_(store_closep) Store *s = NULL;
        path_in(p, sizeof(p), "normal.db");
        is_int(store_open(p, "normal", &s), 0, "open with synchronous=normal");
        is_int(pragma_int(s, "PRAGMA synchronous"), 1, "synchronous=NORMAL");
        _cleanup_(store_closep) Store *bad = NULL;
        path_in(p, sizeof(p), "bad.db");
        is_int(store_open(p, "sometimes", &bad), -EINVAL, "unknown synchronous mode refused");
}

/* Builds a database as version `version` of the program left it, with one job, worker and event. */
static void make_old_database(const char *p, int version) {
        sqlite3 *db = NULL;
        if (sqlite3_open(p, &db) != SQLITE_OK || store_schema_migrate(db, version) < 0)
                tap_bail("cannot build a v%d database", version);
        const char *sql =
                "INSERT INTO jobs (job_id, status, command, args, created_at, updated_at, attempt_count, max_attempts,"
                " worker_id, assignment_id, assignment_expires_at) VALUES ('job1', 'RUNNING', '/bin/echo', '[\"hi\"]',"
                " 1000000, 2000000, 1, 3, 'w1', 'a1', 99000000000000000);"
                "INSERT INTO workers (worker_id, nonce, capabilities, last_seen, registered_at) VALUES"
                " ('w1', 'n1', '[\"gpu\"]', 5, 5);"
                "INSERT INTO audit_events (ts, component, level, event) VALUES (7, 'jobs', 6, 'job.submitted');";
        char *msg = NULL;
        if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
                tap_bail("v%d data: %s", version, msg);
        sqlite3_close(db);
}

static void test_migration_from_every_earlier_version_preserves_data(void) {
        for (int v = 1; v < STORE_SCHEMA_VERSION; v++) {
                char p[PATH_MAX + 32], name[32];
                Control c = {.clock_override = T0, .settings.heartbeat_timeout = 30 * USEC_PER_SEC};
                snprintf(name, sizeof(name), "v%d.db", v);
                path_in(p, sizeof(p), name);
                make_old_database(p, v);
                is_int(store_open(p, NULL, &c.store), 0, "v%d database opens and migrates", v);
                int now = 0;
                store_user_version(c.store, &now);
                is_int(now, STORE_SCHEMA_VERSION, "v%d migrated to v%d", v, STORE_SCHEMA_VERSION);
                _cleanup_(job_freep) Job *j = NULL;
                ok(jobs_get(&c, "job1", &j) == 0 && j->status == JOB_RUNNING && streq(j->command, "/bin/echo") &&
                           j->args && streq(j->args[0], "hi") && streq(j->assignment_id, "a1"),
                   "v%d job preserved", v);
                ok(j && !j->stdout_sha256 && j->completion_seq == 0, "v%d job has the new artifact columns, empty", v);
                _cleanup_(worker_freep) Worker *w = NULL;
                ok(worker_get(&c, "w1", &w) == 0 && w->has_nonce && w->capabilities &&
                           streq(w->capabilities[0], "gpu") && !w->draining,
                   "v%d worker preserved, with the new columns' defaults", v);
                is_int(pragma_int(c.store, "SELECT count(*) FROM audit_events"), 1, "v%d audit event preserved", v);
                is_int(pragma_int(c.store, "SELECT count(*) FROM sqlite_master WHERE name = 'jobs_claimable'"), 1,
                       "v%d gained the claim index", v);
                ok(w && w->wake_port == 0 && !w->wake_address, "v%d worker has no wake socket (v5 columns)", v);
                is_int(pragma_int(c.store, "SELECT count(*) FROM sqlite_master WHERE name = 'jobs_scheduled'"), 1,
                       "v%d gained the scheduled-jobs index", v);
                is_int(pragma_int(c.store,
                                  "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN "
                                  "('jobs_lease', 'audit_worker', 'audit_event', 'jobs_terminal')"),
                       0, "v%d lost the indexes no query used (v6, v8)", v);
                is_int(pragma_int(
                               c.store,
                               "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN "
                               "('jobs_claimable', 'jobs_claimable_class', 'jobs_retry', 'jobs_held', 'jobs_worker', "
                               "'jobs_created', 'jobs_status_created', 'jobs_scheduled', 'audit_ts', 'audit_job')"),
                       10, "v%d has every index a query uses (v6, v7, v8, v12)", v);
                is_int(pragma_int(c.store, "SELECT count(*) FROM sqlite_master WHERE name = 'jobs_claimable_cpu'"), 0,
                       "v%d lost the GPU-only claim index jobs_claimable_class replaces (v12)", v);
                is_int(pragma_int(c.store, "SELECT count(*) FROM sqlite_master WHERE name = 'jobs_claimable_class' "
                                           "AND sql LIKE '%requirements, attempt_count > 0 DESC, priority DESC%'"),
                       1, "v%d claims retry jobs as classes of their own (v13)", v);
                is_int(pragma_int(c.store,
                                  "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND sql LIKE '% IN (%'"),
                       0, "v%d has no partial index with an IN list (v8)", v);
                uint64_t counts[_JOB_STATE_MAX];
                store_count_jobs_by_state(c.store, counts);
                ok(counts[JOB_RUNNING] == 1 && counts[JOB_PENDING] == 0, "v%d job counts seeded from the existing rows",
                   v);
                store_close(c.store);
        }
}

/* v6 dropped the indexes no query used, v7 brought audit_job back for its own statements; every
 * query that reads many rows has one (the statements as daemon/jobs.c, reconcile.c, retention.c,
 * api-admin.c and audit.c prepare them). */
static void test_queries_keep_their_indexes(void) {
        Control *c = test_control_new();
        static const struct {
                const char *sql, *index;
        } plans[] = {
                { "SELECT job_id FROM jobs j INDEXED BY jobs_worker WHERE j.worker_id = ?2 AND j.status = ?1 "
                  "ORDER BY j.created_at DESC, j.job_id DESC LIMIT ?3",
                  "jobs_worker" },
                { "SELECT job_id FROM jobs j WHERE j.status = ?1 ORDER BY j.created_at DESC, j.job_id DESC LIMIT ?3",
                  "jobs_status_created" },
                { "SELECT job_id FROM jobs j WHERE j.worker_id = ?2 ORDER BY j.created_at DESC, j.job_id DESC LIMIT ?3",
                  "jobs_worker" },
                { "SELECT job_id FROM jobs j ORDER BY j.created_at DESC, j.job_id DESC LIMIT ?3", "jobs_created" },
                { "SELECT created_at FROM jobs WHERE status = 'PENDING' AND scheduled_at = 0 "
                  "ORDER BY created_at LIMIT 1",
                  "jobs_status_created" },
                { "SELECT min(MAX(created_at, scheduled_at)) FROM jobs INDEXED BY jobs_scheduled "
                  "WHERE status = 'PENDING' AND scheduled_at > 0 AND scheduled_at <= ?1",
                  "jobs_scheduled" },
                { "SELECT job_id FROM jobs WHERE status = 'ASSIGNED' AND assignment_expires_at <= ?",
                  "jobs_status_created" },
                { "SELECT j.job_id FROM jobs j LEFT JOIN workers w ON w.worker_id = j.worker_id "
                  "WHERE j.status = 'RUNNING' AND (j.assignment_expires_at <= ?1 OR w.state IS NULL "
                  "OR w.state = 'OFFLINE')",
                  "jobs_status_created" },
                { "SELECT job_id FROM jobs WHERE status = 'LOST' AND (attempt_count < max_attempts OR updated_at <= ?1)",
                  "jobs_status_created" },
                { "SELECT job_id FROM jobs WHERE status = 'RETRYING' AND retry_at <= ?", "jobs_" },
                { "SELECT min(assignment_expires_at) FROM jobs WHERE status IN ('ASSIGNED', 'RUNNING')",
                  "jobs_status_created" },
                { "SELECT min(retry_at) FROM jobs WHERE status = 'RETRYING'", "jobs_" },
                /* created_at narrows the walk to the old rows, not every terminal one */
                { "SELECT job_id FROM jobs WHERE status IN ('COMPLETED', 'FAILED', 'ABORTED') "
                  "AND created_at < ?1 AND updated_at < ?1 LIMIT ?2",
                  "jobs_status_created (status=? AND created_at<?)" },
                { "SELECT id FROM audit_events WHERE ts < ?1 LIMIT ?2", "audit_ts" },
                { "SELECT count(*) FROM jobs INDEXED BY jobs_held WHERE worker_id = ? "
                  "AND (status = 'ASSIGNED' OR status = 'RUNNING') AND attempt_count > 1",
                  "jobs_held" },
                { "SELECT id, ts, component, level, event, message, request_id, worker_id, job_id, "
                  "assignment_id, details FROM audit_events "
                  "WHERE id > ?1 AND id <= ?7 AND (?2 IS NULL OR component = ?2) AND (?3 IS NULL OR event = ?3) "
                  "AND (?4 IS NULL OR worker_id = ?4) AND (?5 IS NULL OR job_id = ?5) ORDER BY id DESC LIMIT ?6",
                  "INTEGER PRIMARY KEY" },
                { "SELECT id, ts, component, level, event, message, request_id, worker_id, job_id, "
                  "assignment_id, details FROM audit_events "
                  "WHERE id > ?1 AND id <= ?7 AND (?2 IS NULL OR component = ?2) AND (?3 IS NULL OR event = ?3) "
                  "AND (?4 IS NULL OR worker_id = ?4) AND job_id = ?5 ORDER BY id DESC LIMIT ?6",
                  "audit_job" },
                { "SELECT id, ts, component, level, event, message, request_id, worker_id, job_id, "
                  "assignment_id, details FROM audit_events "
                  "WHERE id > ?1 AND id <= ?7 AND (?2 IS NULL OR component = ?2) AND (?3 IS NULL OR event = ?3) "
                  "AND (?4 IS NULL OR worker_id = ?4) AND job_id = ?5 ORDER BY id ASC LIMIT ?6",
                  "audit_job" },
        };
        for (size_t i = 0; i < sizeof(plans) / sizeof(plans[0]); i++)
                ok(test_plan_uses(c, plans[i].sql, plans[i].index), "plan %zu uses %s: %s", i, plans[i].index,
                   plans[i].sql);
        test_control_free(c);
}

/* How many times the compiled program of sql uses opcode. */
static int opcode_count(Store *s, const char *sql, const char *opcode) {
        sqlite3_stmt *st = NULL;
        char q[1024];
        int n = 0;
        snprintf(q, sizeof(q), "EXPLAIN %s", sql);
        if (sqlite3_prepare_v2(s->db, q, -1, &st, NULL) != SQLITE_OK)
                return -1;
        while (sqlite3_step(st) == SQLITE_ROW)
                n += streq((const char *) sqlite3_column_text(st, 1), opcode);
        sqlite3_finalize(st);
        return n;
}

/* v8: a partial index's predicate is evaluated for each row written; an IN list there builds a
 * temporary table every time. The writes of every job lifecycle build none. */
static void test_job_writes_build_no_temporary_table(void) {
        Control *c = test_control_new();
        static const char *const writes[] = {
                "UPDATE jobs SET status = ?, updated_at = ?, updated_by = ? WHERE job_id = ?",
                "UPDATE jobs SET worker_id = ?, assignment_id = ?, assignment_expires_at = ?, "
                "attempt_count = MAX(0, attempt_count + ?), retry_at = 0 WHERE job_id = ?",
                "INSERT INTO jobs (job_id, status, command, created_at, updated_at) VALUES (?, 'PENDING', ?, ?, ?)",
        };
        for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++)
                is_int(opcode_count(c->store, writes[i], "OpenEphemeral"), 0, "no temporary table in: %s", writes[i]);
        test_control_free(c);
}

static void test_newer_schema_is_refused(void) {
        char p[PATH_MAX + 32];
        sqlite3 *db = NULL;
        Store *s = NULL;
        path_in(p, sizeof(p), "future.db");
        sqlite3_open(p, &db);
        sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL);
        sqlite3_close(db);
        is_int(store_open(p, NULL, &s), -EPROTO, "a schema newer than this program is refused");
        ok(!s, "and nothing is returned");
}

static void test_not_a_database_is_refused(void) {
        char p[PATH_MAX + 32];
        Store *s = NULL;
        path_in(p, sizeof(p), "junk.db");
        FILE *f = fopen(p, "w");
        for (int i = 0; i < 200; i++)
                fputs("this is not a database, just text\n", f);
        fclose(f);
        is_int(store_open(p, NULL, &s), -EBADMSG, "a file that is not a database is refused");
}

/* store_open() as a user without root's power to write anywhere: in a child that drops to
 * nobody when we are root (as in CI). Returns its result. */
static int store_open_unprivileged(const char *path) {
        Store *s = NULL;
        int status, r;
        pid_t pid;

        if (geteuid() != 0) {
                r = store_open(path, NULL, &s);
                store_close(s);
                return r;
        }
        pid = fork();
        if (pid < 0)
                tap_bail("fork");
        if (pid == 0) {
                if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                        _exit(255);
                r = store_open(path, NULL, &s);
                _exit(r < 0 ? (-r & 0x7f) : 0);
        }
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) == 255)
                tap_bail("the unprivileged child failed");
        return -WEXITSTATUS(status);
}

static void test_unwritable_directory_is_refused(void) {
        char p[PATH_MAX + 32], sub[PATH_MAX + 32];
        Store *s = NULL;
        path_in(p, sizeof(p), "missing/x.db");
        is_int(store_open(p, NULL, &s), -ENOENT, "a missing directory is refused as what it is");
        path_in(p, sizeof(p), "fresh.db/x.db");
        is_int(store_open(p, NULL, &s), -ENOTDIR, "a path under a file is refused");
        /* Searchable by anyone, writable by no one: only the directory's own mode refuses. */
        path_in(sub, sizeof(sub), "ro");
        mkdir(sub, 0555);
        chmod(dir, 0711);
        path_in(p, sizeof(p), "ro/x.db");
        is_int(store_open_unprivileged(p), -EACCES, "a read-only directory is refused");
        chmod(dir, 0700);
}

/* A store failure inside a transition must roll it back: were it mapped to a code that means
 * "refused" (committed with its audit record, ops.h), the half-done transition would commit. */
static void test_no_store_failure_reads_as_a_refusal(void) {
        int refusals = 0;
        for (int rc = SQLITE_ERROR; rc <= SQLITE_WARNING; rc++)
                if (rc != SQLITE_ROW && rc != SQLITE_DONE && op_is_refusal(store_errno(rc))) {
                        diag("SQLite result %d (%s) maps to %d, a refusal", rc, sqlite3_errstr(rc), store_errno(rc));
                        refusals++;
                }
        is_int(refusals, 0, "no SQLite failure maps to a refusal");
}

/* The classes of the list, one text per row ("gpu|requirements|retry"), in key order. */
static char *classes_listed(Store *s) {
        sqlite3_stmt *st = NULL;
        char *all = strdup("");
        sqlite3_prepare_v2(s->db,
                           "SELECT group_concat(needs_gpu || '|' || requirements || '|' || retry, ' ') FROM "
                           "(SELECT * FROM job_classes ORDER BY needs_gpu, requirements, retry)",
                           -1, &st, NULL);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) {
                free(all);
                all = strdup((const char *) sqlite3_column_text(st, 0));
        }
        sqlite3_finalize(st);
        return all;
}

static void exec_or_bail(Store *s, const char *sql) {
        char *msg = NULL;
        if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK)
                tap_bail("%s: %s", sql, msg);
}

/* v14: a v13 database lists the classes its PENDING jobs have, and no other; from then on every
 * write that makes a job PENDING lists its class, whoever writes it, and a rolled-back write
 * leaves nothing behind. */
static void test_v14_lists_the_classes_of_pending_jobs(void) {
        char p[PATH_MAX + 32];
        sqlite3 *db = NULL;
        Store *s = NULL;

        path_in(p, sizeof(p), "v13-classes.db");
        if (sqlite3_open(p, &db) != SQLITE_OK || store_schema_migrate(db, 13) < 0)
                tap_bail("cannot build a v13 database");
        if (sqlite3_exec(
                    db,
                    "INSERT INTO jobs (job_id, status, command, needs_gpu, requirements, attempt_count, created_at, "
                    "updated_at) VALUES "
                    "('p1', 'PENDING', 'x', 0, '[]', 0, 1, 1), ('p2', 'PENDING', 'x', 0, '[]', 0, 2, 2), "
                    "('p3', 'PENDING', 'x', 0, '[\"a\",\"b\"]', 2, 3, 3), "
                    "('p4', 'PENDING', 'x', 1, '[\"a\"]', 0, 4, 4), "
                    "('r1', 'RUNNING', 'x', 0, '[\"z\"]', 1, 5, 5), "
                    "('c1', 'COMPLETED', 'x', 1, '[\"y\"]', 1, 6, 6)",
                    NULL, NULL, NULL) != SQLITE_OK)
                tap_bail("v13 jobs: %s", sqlite3_errmsg(db));
        sqlite3_close(db);

        is_int(store_open(p, NULL, &s), 0, "a v13 database with PENDING jobs migrates");
        _cleanup_free_ char *migrated = classes_listed(s);
        is_str(migrated, "0|[\"a\",\"b\"]|1 0|[]|0 1|[\"a\"]|0",
               "v14 lists the classes of its PENDING jobs, retry classes apart, and no other");

        exec_or_bail(s, "INSERT INTO jobs (job_id, status, command, requirements, created_at, updated_at) "
                        "VALUES ('p5', 'PENDING', 'x', '[\"n\"]', 7, 7)");
        exec_or_bail(s, "UPDATE jobs SET status = 'PENDING' WHERE job_id = 'r1'");
        exec_or_bail(s, "UPDATE jobs SET attempt_count = 1 WHERE job_id = 'p4'");
        exec_or_bail(s, "BEGIN; INSERT INTO jobs (job_id, status, command, requirements, created_at, updated_at) "
                        "VALUES ('p6', 'PENDING', 'x', '[\"gone\"]', 8, 8); "
                        "UPDATE jobs SET status = 'PENDING' WHERE job_id = 'c1'; ROLLBACK");
        _cleanup_free_ char *written = classes_listed(s);
        is_str(written, "0|[\"a\",\"b\"]|1 0|[\"n\"]|0 0|[\"z\"]|1 0|[]|0 1|[\"a\"]|0 1|[\"a\"]|1",
               "a job submitted, requeued or given an attempt lists its class; a rolled-back one does not");
        store_close(s);
}

/* The trigger-kept counts against a real count, after inserts, transitions and deletes. */
static void test_job_counts_stay_exact(void) {
        Control *c = test_control_new();
        uint64_t counts[_JOB_STATE_MAX];
        OpError err = {};
        size_t n;
        test_register(c, "w1", NULL);
        for (int i = 0; i < 20; i++)
                test_submit(c, i % 3);
        for (int i = 0; i < 8; i++) {
                Job *j = test_claim_and_ack(c, "w1");
                if (i % 2)
                        jobs_abort(c, NULL, j->job_id, NULL, NULL, &n, &err);
                job_free(j);
        }
        sqlite3_exec(c->store->db, "DELETE FROM jobs WHERE status = 'ABORTED'", NULL, NULL, NULL);
        store_count_jobs_by_state(c->store, counts);
        int bad = 0;
        for (int s = 0; s < _JOB_STATE_MAX; s++) {
                char sql[128];
                snprintf(sql, sizeof(sql), "SELECT count(*) FROM jobs WHERE status = '%s'", job_state_to_string(s));
                if ((int) counts[s] != pragma_int(c->store, sql))
                        bad++;
        }
        is_int(bad, 0, "job_counts matches count(*) for every state");
        ok(counts[JOB_PENDING] == 12 && counts[JOB_RUNNING] == 4 && counts[JOB_ABORTED] == 0,
           "and the numbers are right");
        test_control_free(c);
}

static void test_count_jobs_by_state(void) {
        Control *c = test_control_new();
        uint64_t counts[_JOB_STATE_MAX];
        test_register(c, "w1", NULL);
        test_submit(c, 0);
        test_submit(c, 0);
        Job *j = test_claim(c, "w1");
        job_free(j);
        is_int(store_count_jobs_by_state(c->store, counts), 0, "count");
        ok(counts[JOB_PENDING] == 1 && counts[JOB_ASSIGNED] == 1 && counts[JOB_RUNNING] == 0, "by state");
        test_control_free(c);
}

int main(void) {
        test_job_writes_build_no_temporary_table();
        snprintf(dir, sizeof(dir), "/tmp/entropy-store-XXXXXX");
        if (!mkdtemp(dir))
                tap_bail("mkdtemp");
        test_open_creates_private_wal_database();
        test_synchronous_normal_is_an_option();
        test_migration_from_every_earlier_version_preserves_data();
        test_v14_lists_the_classes_of_pending_jobs();
        test_queries_keep_their_indexes();
        test_newer_schema_is_refused();
        test_not_a_database_is_refused();
        test_unwritable_directory_is_refused();
        test_count_jobs_by_state();
        test_job_counts_stay_exact();
        test_no_store_failure_reads_as_a_refusal();
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
                diag("cleanup failed");
        return tap_done();
}
