/* store-schema.c: the control plane's schema, as forward migrations. Each step takes a database
 * at version n - 1 to version n inside one transaction; a fresh database runs them all. Never edit
 * a released step: add one.
 *
 *   v1  jobs, workers, audit_events
 *   v2  completion and artifact record columns on jobs (contract /complete)
 *   v3  indexes for the claim query (partial, PENDING only), the reconciler's deadlines, listing
 *       and retention; worker drain/restart/state columns
 *   v4  job_counts, kept by triggers: jobs per state without counting a million terminal rows
 *       (sd_notify STATUS, /metrics and D-Bus ask often)
 *   v5  workers' wake socket (wake_port, 0 = none; wake_address, numeric IP), and an index of the
 *       PENDING jobs held back by scheduled_at, so the wake-up timer finds the next one at once
 *   v6  drops the indexes no query uses, which every write paid for (EXPLAIN QUERY PLAN with
 *       SQLite's planner, no statistics): jobs_lease (the reconciler's lease queries search
 *       jobs_status_created by status; a partial index on status IN (...) is not implied by
 *       status = '...'), and audit_job, audit_worker and audit_event (GET /events walks the
 *       rowid range, its "? IS NULL OR column = ?" filters use no index). Five audit rows and a
 *       lease renewal per job lifecycle no longer write them.
 *   v7  audit_job again, now that GET /events with a job filter has its own statement that uses
 *       it: a job's history (the dashboard's job detail, entropyctl events --job) without walking
 *       every event the retention keeps.
 *   v8  partial-index predicates without IN lists: SQLite evaluates a partial index's WHERE for
 *       every row an INSERT or a status UPDATE writes, and codes `status IN (...)` as a temporary
 *       table built each time (EXPLAIN: OpenEphemeral), which doubled the cost of a transition.
 *       jobs_held now says `status = 'ASSIGNED' OR ...`, in the order that lets a query's
 *       `(status = 'ASSIGNED' OR status = 'RUNNING')` imply it; jobs_terminal, which no query
 *       uses (retention searches jobs_status_created), is dropped.
 *   v9  workers' version, slots and GPUs, as the worker reports them at registration
 *   v10 jobs_claimable ordered by when a job became claimable, MAX(created_at, scheduled_at),
 *       rather than created_at: the claim's FIFO place and its aging count from then, so a job
 *       scheduled for tomorrow does not jump the queue with a day's credit once it is due. An
 *       index on the expression, not a stored column, so that no writer has to keep one in step
 *       (the claim queries spell it exactly so, daemon/schedule.c).
 *   v11 jobs_claimable_cpu: the same order, only the PENDING jobs without needs_gpu. A worker
 *       without GPUs claims from it, so a poll of such a worker no longer reads every GPU job
 *       queued ahead of its own, row by row (12 to 16 ms per poll behind 20,000 of them).
 *   v12 jobs_claimable_class: the PENDING jobs by class (needs_gpu, requirements), each class in
 *       claim order. A claim seeks the classes and merges the scans of those the worker can take
 *       (daemon/schedule.c), so no poll reads the jobs that need what its worker lacks, GPU or
 *       any other requirement (19 ms per poll behind 20,000 such jobs, before). It replaces
 *       jobs_claimable_cpu, the GPU-only case of it.
 *   v13 jobs_claimable_class keys the retry flag (attempt_count > 0) after the requirements, so
 *       the retry jobs of a class are a class of their own: a worker that holds its
 *       max-retry-jobs-per-worker leaves them out instead of reading every one ahead of the
 *       first fresh job. Retry first (DESC): a queue without retry jobs finds each class in one
 *       seek, as before.
 *   v14 job_classes, kept by triggers: the classes that PENDING jobs have (or had since the
 *       reconciler last forgot the empty ones). A claim reads them from this small table and
 *       seeks only the classes its worker can take, where it sought every class in the index
 *       before; past 64 requirements texts it read the queue row by row (with aging, a sort of
 *       every PENDING job per claim). Triggers, like job_counts', so that no writer of a PENDING
 *       row can leave its class out, and a rolled-back write takes its class row with it. */
#include <errno.h>
#include <stdio.h>

#include "log.h"
#include "store-schema.h"
#include "store.h"

static const char *const migrations[STORE_SCHEMA_VERSION] = {
        /* v1 */
        "CREATE TABLE jobs ("
        "  job_id TEXT PRIMARY KEY NOT NULL,"
        "  status TEXT NOT NULL,"
        "  command TEXT NOT NULL,"
        "  args TEXT NOT NULL DEFAULT '[]',"
        "  working_dir TEXT,"
        "  timeout_ms INTEGER NOT NULL DEFAULT 0,"
        "  priority INTEGER NOT NULL DEFAULT 0,"
        "  scheduled_at INTEGER NOT NULL DEFAULT 0,"
        "  needs_gpu INTEGER NOT NULL DEFAULT 0,"
        "  requirements TEXT NOT NULL DEFAULT '[]',"
        "  created_at INTEGER NOT NULL,"
        "  updated_at INTEGER NOT NULL,"
        "  attempt_count INTEGER NOT NULL DEFAULT 0,"
        "  max_attempts INTEGER NOT NULL DEFAULT 3,"
        "  worker_id TEXT,"
        "  assignment_id TEXT,"
        "  assignment_expires_at INTEGER NOT NULL DEFAULT 0,"
        "  retry_at INTEGER NOT NULL DEFAULT 0,"
        "  last_error TEXT,"
        "  result_path TEXT,"
        "  exit_code INTEGER,"
        "  updated_by TEXT"
        ") WITHOUT ROWID;"
        "CREATE INDEX jobs_status ON jobs(status);"
        "CREATE TABLE workers ("
        "  worker_id TEXT PRIMARY KEY NOT NULL,"
        "  nonce TEXT,"
        "  instance_id TEXT,"
        "  capabilities TEXT NOT NULL DEFAULT '[]',"
        "  current_job_id TEXT,"
        "  metrics TEXT,"
        "  heartbeat_seq INTEGER NOT NULL DEFAULT -1,"
        "  last_seen INTEGER NOT NULL,"
        "  registered_at INTEGER NOT NULL"
        ") WITHOUT ROWID;"
        "CREATE TABLE audit_events ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  ts INTEGER NOT NULL,"
        "  component TEXT NOT NULL,"
        "  level INTEGER NOT NULL,"
        "  event TEXT NOT NULL,"
        "  message TEXT,"
        "  request_id TEXT,"
        "  worker_id TEXT,"
        "  job_id TEXT,"
        "  assignment_id TEXT,"
        "  details TEXT NOT NULL DEFAULT '{}'"
        ");",

        /* v2 */
        "ALTER TABLE jobs ADD COLUMN completion_seq INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE jobs ADD COLUMN result_summary TEXT;"
        "ALTER TABLE jobs ADD COLUMN artifact_id TEXT;"
        "ALTER TABLE jobs ADD COLUMN stdout_path TEXT;"
        "ALTER TABLE jobs ADD COLUMN stderr_path TEXT;"
        "ALTER TABLE jobs ADD COLUMN stdout_sha256 TEXT;"
        "ALTER TABLE jobs ADD COLUMN stderr_sha256 TEXT;"
        "ALTER TABLE jobs ADD COLUMN artifact_backend TEXT;"
        "ALTER TABLE jobs ADD COLUMN artifact_location TEXT;"
        "ALTER TABLE jobs ADD COLUMN artifact_upload_state TEXT;"
        "ALTER TABLE jobs ADD COLUMN artifact_upload_error TEXT;",

        /* v3 */
        "ALTER TABLE workers ADD COLUMN draining INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE workers ADD COLUMN restart_pending INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE workers ADD COLUMN state TEXT NOT NULL DEFAULT 'ONLINE';"
        /* The claim query walks this in order; only PENDING rows are in it. */
        "CREATE INDEX jobs_claimable ON jobs(priority DESC, created_at, job_id) WHERE status = 'PENDING';"
        /* Leases and backoffs the reconciler watches; terminal rows are not in it. */
        "CREATE INDEX jobs_lease ON jobs(assignment_expires_at) WHERE status IN ('ASSIGNED', 'RUNNING');"
        "CREATE INDEX jobs_retry ON jobs(retry_at) WHERE status = 'RETRYING';"
        "CREATE INDEX jobs_held ON jobs(worker_id, status) WHERE status IN ('ASSIGNED', 'RUNNING', 'LOST', 'RETRYING');"
        "CREATE INDEX jobs_worker ON jobs(worker_id, created_at) WHERE worker_id IS NOT NULL;"
        "CREATE INDEX jobs_created ON jobs(created_at, job_id);"
        "CREATE INDEX jobs_status_created ON jobs(status, created_at, job_id);"
        "CREATE INDEX jobs_terminal ON jobs(updated_at) WHERE status IN ('COMPLETED', 'FAILED', 'ABORTED');"
        "DROP INDEX jobs_status;"
        "CREATE INDEX audit_ts ON audit_events(ts);"
        "CREATE INDEX audit_job ON audit_events(job_id, id) WHERE job_id IS NOT NULL;"
        "CREATE INDEX audit_worker ON audit_events(worker_id, id) WHERE worker_id IS NOT NULL;"
        "CREATE INDEX audit_event ON audit_events(event, id);",

        /* v4 */
        "CREATE TABLE job_counts (status TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL) WITHOUT ROWID;"
        "INSERT INTO job_counts SELECT status, count(*) FROM jobs GROUP BY status;"
        "CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN"
        "  INSERT INTO job_counts VALUES (NEW.status, 1) ON CONFLICT(status) DO UPDATE SET n = n + 1;"
        "END;"
        "CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN"
        "  UPDATE job_counts SET n = n - 1 WHERE status = OLD.status;"
        "END;"
        "CREATE TRIGGER jobs_count_update AFTER UPDATE OF status ON jobs WHEN OLD.status <> NEW.status BEGIN"
        "  UPDATE job_counts SET n = n - 1 WHERE status = OLD.status;"
        "  INSERT INTO job_counts VALUES (NEW.status, 1) ON CONFLICT(status) DO UPDATE SET n = n + 1;"
        "END;",

        /* v5 */
        "ALTER TABLE workers ADD COLUMN wake_port INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE workers ADD COLUMN wake_address TEXT;"
        "CREATE INDEX jobs_scheduled ON jobs(scheduled_at) WHERE status = 'PENDING' AND scheduled_at > 0;",

        /* v6 */
        "DROP INDEX jobs_lease;"
        "DROP INDEX audit_job;"
        "DROP INDEX audit_worker;"
        "DROP INDEX audit_event;",

        /* v7 */
        "CREATE INDEX audit_job ON audit_events(job_id, id) WHERE job_id IS NOT NULL;",

        /* v8 */
        "DROP INDEX jobs_held;"
        "CREATE INDEX jobs_held ON jobs(worker_id, status) "
        "WHERE status = 'ASSIGNED' OR status = 'RUNNING' OR status = 'LOST' OR status = 'RETRYING';"
        "DROP INDEX jobs_terminal;",

        /* v9: what a worker says it is at registration (NULL, 0: an older worker did not say). */
        "ALTER TABLE workers ADD COLUMN version TEXT;"
        "ALTER TABLE workers ADD COLUMN slots INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE workers ADD COLUMN gpus TEXT;",

        /* v10 */
        "DROP INDEX jobs_claimable;"
        "CREATE INDEX jobs_claimable ON jobs(priority DESC, MAX(created_at, scheduled_at), job_id) "
        "WHERE status = 'PENDING';",

        /* v11 (in parentheses: two literals make one element, not two) */
        ("CREATE INDEX jobs_claimable_cpu ON jobs(priority DESC, MAX(created_at, scheduled_at), job_id) "
         "WHERE status = 'PENDING' AND needs_gpu = 0;"),

        /* v12 (in parentheses, as v11) */
        ("CREATE INDEX jobs_claimable_class ON jobs(needs_gpu, requirements, priority DESC, "
         "MAX(created_at, scheduled_at), job_id) WHERE status = 'PENDING';"
         "DROP INDEX jobs_claimable_cpu;"),

        /* v13 (in parentheses, as v11) */
        ("DROP INDEX jobs_claimable_class;"
         "CREATE INDEX jobs_claimable_class ON jobs(needs_gpu, requirements, attempt_count > 0 DESC, priority DESC, "
         "MAX(created_at, scheduled_at), job_id) WHERE status = 'PENDING';"),

        /* v14: a class row may outlive its jobs (a claim skips it; the reconciler deletes it), never
         * the other way round. */
        "CREATE TABLE job_classes (needs_gpu INTEGER NOT NULL, requirements TEXT NOT NULL, retry INTEGER NOT NULL,"
        "  PRIMARY KEY (needs_gpu, requirements, retry)) WITHOUT ROWID;"
        "INSERT INTO job_classes SELECT DISTINCT needs_gpu, requirements, attempt_count > 0 "
        "  FROM jobs INDEXED BY jobs_claimable_class WHERE status = 'PENDING';"
        "CREATE TRIGGER jobs_class_insert AFTER INSERT ON jobs WHEN NEW.status = 'PENDING' BEGIN"
        "  INSERT OR IGNORE INTO job_classes VALUES (NEW.needs_gpu, NEW.requirements, NEW.attempt_count > 0);"
        "END;"
        "CREATE TRIGGER jobs_class_update AFTER UPDATE OF status, needs_gpu, requirements, attempt_count ON jobs "
        "WHEN NEW.status = 'PENDING' BEGIN"
        "  INSERT OR IGNORE INTO job_classes VALUES (NEW.needs_gpu, NEW.requirements, NEW.attempt_count > 0);"
        "END;",
};

static int exec(sqlite3 *db, const char *sql) {
        char *msg = NULL;
        int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
        if (rc != SQLITE_OK) {
                log_error("SQL failed: %s", msg ? msg : sqlite3_errstr(rc));
                sqlite3_free(msg);
                return store_errno(rc);
        }
        return 0;
}

static int user_version(sqlite3 *db, int *ret) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_errno(rc);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                *ret = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return rc == SQLITE_ROW ? 0 : store_errno(rc);
}

static int migrate_one(sqlite3 *db, int to) {
        char pragma[64];
        int r;

        r = exec(db, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", to);
        r = exec(db, migrations[to - 1]);
        if (r >= 0)
                r = exec(db, pragma);
        if (r >= 0)
                r = exec(db, "COMMIT");
        if (r < 0) {
                (void) exec(db, "ROLLBACK");
                return log_error_errno(r, "Failed to migrate the database schema to version %d: %m", to);
        }
        return 0;
}

int store_schema_migrate(sqlite3 *db, int target) {
        int version = 0, r;

        if (target < 0 || target > STORE_SCHEMA_VERSION)
                return -EINVAL;
        r = user_version(db, &version);
        if (r < 0)
                return r;
        if (version > STORE_SCHEMA_VERSION) {
                log_error("Database schema version %d is newer than this program's (%d); refusing to use it. "
                          "Run the newer entropy-control, or restore a backup.",
                          version, STORE_SCHEMA_VERSION);
                return -EPROTO;
        }
        for (int v = version + 1; v <= target; v++) {
                r = migrate_one(db, v);
                if (r < 0)
                        return r;
                if (version > 0)
                        log_info("Database schema migrated to version %d.", v);
        }
        return 0;
}
