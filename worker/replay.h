/* replay.h: the worker's durable state in <state-directory>/worker.db (SQLite, WAL,
 * synchronous=FULL, mode 0600):
 *
 *   meta    nonce (created once, kept forever), heartbeat_seq_reserved, completion_seq
 *   outbox  results not yet answered by the control plane: one row per (job_id, assignment_id),
 *           kind 'complete' or 'fail', the JSON body to POST, state 'pending' until the control
 *           plane answers ACCEPTED ('accepted') or a definitive REJECTED ('rejected', with the
 *           reason); resolved rows are pruned after the log retention
 *   runs    one row per process the worker started (or refused): job_id, assignment_id, attempt,
 *           slot, pid, proc_start (start time in clock ticks, to recognise the process after a
 *           restart), instance_id, started_at and ended_at (Unix microseconds; ended_at NULL
 *           when the end is unknown), outcome ('running', 'exited', 'failed', 'timeout',
 *           'lease-expired', 'aborted', 'handback', 'refused', 'dry-run', 'interrupted'),
 *           exit_code, reason. Read by the invariant checker of the fault-injection suite.
 *
 * A result is committed here (and so fsynced) before it is sent; see worker/session.c.
 *
 * Which commits are fsynced (synchronous=FULL) and which are "lazy" (synchronous=NORMAL: written
 * to the WAL, i.e. to the kernel, but not fsynced; in WAL mode the next fsynced commit makes
 * them durable along with it):
 *   durable  results (replay_add_result), the nonce, heartbeat seq reservations, run ends
 *            without a result, delivery attempts, pruning: everything but the three below
 *   lazy     replay_run_begin, replay_run_set_pid, replay_resolve. A run record is only acted
 *            on by a restarted worker (the orphan scan) while the run's processes may still
 *            live, i.e. after a crash of the worker process, which loses no write() already
 *            made; a power cut ends the processes with it (and may cost the history the record
 *            of a run it cut short). A resolve that a power cut loses leaves the result pending:
 *            it is sent again in the next /reconnect and the control plane answers a result it
 *            already applied with ACCEPTED again (a no-op there), which resolves it again.
 * Under the test-only crash VFS every commit is durable: it keeps unsynced writes in this
 * process's memory, where other processes reading worker.db (the test harness) could not see
 * frames the shared WAL index already points at. */
#pragma once

#include <json-c/json.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"
#include "sqlite-util.h"

#define REPLAY_SEQ_BLOCK 1000 /* heartbeat seqs reserved per fsync */
#define REPLAY_STMT_CACHE 32   /* prepared statements kept; every statement is a literal in replay.c */

/* An answer whose resolve could not be written (a full disk). */
typedef struct UnwrittenResolve {
        int64_t id;
        bool accepted;
        char *error;
} UnwrittenResolve;

typedef struct Replay {
        sqlite3 *db;
        char *path;
        uint64_t hb_seq;          /* last heartbeat seq handed out */
        uint64_t hb_seq_reserved; /* every seq up to this one may have been used before */
        bool lazy_allowed;        /* false under the crash VFS: every commit is fsynced */
        bool sync_normal;         /* the connection is at synchronous=NORMAL (since a lazy write) */
        SqliteStmtCache stmts;    /* at most REPLAY_STMT_CACHE */
        /* Answered results whose resolve is not written yet: pending on disk, not here (not sent
         * again); written by the next resolve or listing that can write. A restart forgets them
         * and sends such a result once more, as after a resolve lost to a power cut. */
        UnwrittenResolve *unwritten;
        size_t n_unwritten;
} Replay;

typedef enum ResultKind {
        RESULT_COMPLETE,
        RESULT_FAIL,
        _RESULT_KIND_MAX,
        _RESULT_KIND_INVALID = -EINVAL,
} ResultKind;

const char *result_kind_to_string(ResultKind k);
ResultKind result_kind_from_string(const char *s);

typedef struct ReplayEntry {
        int64_t id;
        char *job_id;
        char *assignment_id;
        ResultKind kind;
        int64_t completion_seq;
        json_object *body; /* owned */
        int64_t attempts;
} ReplayEntry;

typedef struct RunRecord {
        const char *job_id;
        const char *assignment_id;
        int64_t attempt;
        int64_t slot;
        const char *instance_id;
        uint64_t started_at; /* realtime usec */
} RunRecord;

typedef struct OrphanRun {
        int64_t id;
        pid_t pid;
        uint64_t proc_start;
} OrphanRun;

int replay_open(const char *path, Replay **ret);
Replay *replay_close(Replay *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(Replay *, replay_close);

/* The registration nonce: created and committed on first use, the same ever after. */
int replay_get_nonce(Replay *r, char **ret);
/* Strictly increasing across restarts: seqs are reserved in durable blocks. */
int replay_next_heartbeat_seq(Replay *r, uint64_t *ret);
/* When a block cannot be reserved (a full disk): the next seq, past the reservation, in memory.
 * The next block that can be written covers it; a restart starts above it only if seeded (below). */
uint64_t replay_next_heartbeat_seq_unreserved(Replay *r);
/* Raises the heartbeat seq to floor (no lower): the next replay_next_heartbeat_seq() reserves a
 * durable block above it. */
void replay_raise_heartbeat_seq(Replay *r, uint64_t floor);
int replay_completion_seq(Replay *r, int64_t *ret);

/* Records a run before its process starts (committed lazily, see above); returns its id. */
int replay_run_begin(Replay *r, const RunRecord *rec, int64_t *ret_id);
/* Lazy as well. */
int replay_run_set_pid(Replay *r, int64_t run_id, pid_t pid, uint64_t proc_start);
/* Ends a run without a result to send (aborted, refused before a result, interrupted). */
int replay_run_end(Replay *r, int64_t run_id, uint64_t ended_at, const char *outcome, int64_t exit_code,
                   const char *reason);

/* In one transaction: the next completion seq is added to body as "completion_seq", the result is
 * queued in the outbox, and the run (if run_id > 0) gets its end. Committed, i.e. fsynced, when
 * this returns 0. A result for an assignment that already has one is -EEXIST. */
int replay_add_result(Replay *r, int64_t run_id, ResultKind kind, const char *job_id, const char *assignment_id,
                      json_object *body, uint64_t ended_at, const char *outcome, int64_t exit_code,
                      const char *reason, int64_t *ret_seq);

/* Pending results, oldest first. */
int replay_list_pending(Replay *r, ReplayEntry **ret, size_t *ret_n);
void replay_entries_free(ReplayEntry *e, size_t n);
int replay_count_pending(Replay *r, int64_t *ret);
/* Marks a pending result as answered: accepted, or definitively rejected with a reason. Lazy:
 * losing it only means the result is sent (and answered the same way) once more. When it cannot
 * be written it is kept in memory (Replay.unwritten) and the error returned: the result is no
 * longer pending for the functions here either way. */
int replay_resolve(Replay *r, int64_t id, bool accepted, const char *error);
/* Counts a failed delivery attempt (transport error, 5xx); the entry stays pending. */
int replay_note_attempt(Replay *r, int64_t id, const char *error);
/* Whether a pending result exists for this job. */
int replay_has_pending_job(Replay *r, const char *job_id);

/* Runs left 'running' by an earlier process (crash, power cut). */
int replay_list_orphans(Replay *r, const char *instance_id, OrphanRun **ret, size_t *ret_n);
/* Deletes resolved outbox rows and ended runs whose end is older than the cutoff (realtime usec). */
int replay_prune(Replay *r, uint64_t older_than);
