/* test-audit.c: audit rows and their emission after commit only (a batch to one listener at a
 * time, in commit order), the MESSAGE_ID table against the journal catalog, the journal
 * listener's best-effort counting, /events filters and paging, and refusals that never record
 * secrets. */
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "core-test-util.h"
#include "fs-util.h"
#include "json-util.h"
#include "store.h"
#include "tap.h"

static int seen;
static void count_listener(void *userdata, const AuditEvent *e) {
        seen++;
}

static void test_events_are_emitted_after_commit_only(void) {
        Control *c = test_control_new();
        control_add_listener(c, count_listener, NULL);
        seen = 0;
        test_submit(c, 0);
        is_int(seen, 1, "a committed submission is emitted once");
        is_int(c->counters.submitted, 1, "and counted");
        {
                _cleanup_tx_ Control *tx = NULL;
                control_begin(c, &tx);
                audit_record(c, &(AuditRecord){.component = "jobs", .level = LOG_INFO, .event = "job.submitted"}, NULL);
                is_int(seen, 1, "nothing emitted before commit");
        }
        is_int(seen, 1, "nothing emitted for a rolled-back transaction");
        is_int(c->counters.submitted, 1, "nor counted");
        test_control_free(c);
}

static char heard_from[32], heard_to[32];
static void state_listener(void *userdata, const AuditEvent *e) {
        snprintf(heard_from, sizeof(heard_from), "%s", strna(e->from_state));
        snprintf(heard_to, sizeof(heard_to), "%s", strna(e->to_state));
}

static void test_listeners_get_the_states_of_a_change_without_parsing(void) {
        Control *c = test_control_new();
        _cleanup_json_ json_object *d = json_object_new_object();
        control_add_listener(c, state_listener, NULL);
        json_add_string(d, "from", "PENDING");
        json_add_string(d, "to", "ASSIGNED");
        {
                _cleanup_tx_ Control *tx = NULL;
                control_begin(c, &tx);
                audit_record(
                        c,
                        &(AuditRecord){.component = "jobs", .level = LOG_INFO, .event = "job.assigned", .details = d},
                        NULL);
                control_commit(&tx);
        }
        ok(streq(heard_from, "PENDING") && streq(heard_to, "ASSIGNED"), "from and to of the details (%s -> %s)",
           heard_from, heard_to);
        test_submit(c, 0);
        ok(streq(heard_from, "n/a") && streq(heard_to, "n/a"), "none for an event without them");
        test_control_free(c);
}

static char heard_message[64];

static void message_listener(void *userdata, const AuditEvent *e) {
        snprintf(heard_message, sizeof(heard_message), "%s", e->message);
}

/* Messages are made in fixed buffers from reasons of any length: one cut in the middle of a
 * character would reach journald as a blob, which journalctl does not print. */
static void test_messages_cut_mid_character_stay_utf8(void) {
        Control *c = test_control_new();
        control_add_listener(c, message_listener, NULL);
        {
                _cleanup_tx_ Control *tx = NULL;
                control_begin(c, &tx);
                audit_record(c,
                             &(AuditRecord){.component = "jobs",
                                            .level = LOG_INFO,
                                            .event = "job.failed",
                                            .message = "Job x failed: caf\xc3"},
                             NULL);
                control_commit(&tx);
        }
        is_str(heard_message, "Job x failed: caf", "the half character is dropped");
        test_control_free(c);
}

static void test_message_ids_are_unique_and_in_the_catalog(void) {
        _cleanup_free_ char *catalog = NULL;
        int bad = 0;
        if (read_full_file(CATALOG_PATH, 1 << 20, &catalog, NULL) < 0)
                tap_bail("cannot read %s", CATALOG_PATH);
        for (size_t i = 0; i < audit_n_events(); i++) {
                const char *id = audit_message_id(audit_event_name(i));
                char line[64];
                snprintf(line, sizeof(line), "-- %s\n", id);
                if (strlen(id) != 32 || strspn(id, "0123456789abcdef") != 32 || !strstr(catalog, line))
                        bad++;
                for (size_t k = 0; k < i; k++)
                        if (streq(id, audit_message_id(audit_event_name(k))))
                                bad++;
        }
        is_int(bad, 0, "%zu event types: 128-bit ids, unique, each with a catalog entry", audit_n_events());
        size_t entries = 0;
        for (const char *p = catalog; (p = strstr(p, "\n-- ")); p++)
                entries++;
        is_int(entries, audit_n_events(), "and the catalog has no entry the table lacks");
        ok(!audit_message_id("no.such.event"), "unknown names have no id");
}

/* With or without journald (unit tests run without one), the journal copy never fails or holds
 * up the operation: the job and its audit row are stored, and a copy that could not be sent is
 * only counted (one event: at most one failure). */
static void test_journal_listener_is_best_effort(void) {
        Control *c = test_control_new();
        char id[RANDOM_ID_SIZE];
        control_add_listener(c, audit_journal_listener, c);
        strcpy(id, test_submit(c, 0));
        is_int(test_job_state(c, id), JOB_PENDING, "the submission is stored with a journal listener");
        is_int(test_count_events(c, "job.submitted", id), 1, "with its audit row");
        ok(c->counters.journal_failures <= 1, "a copy journald did not take is counted, not fatal (%llu failures)",
           (unsigned long long) c->counters.journal_failures);
        test_control_free(c);
}

static void test_events_filters_and_since_id_paging(void) {
        Control *c = test_control_new();
        AuditEvent **ev = NULL;
        size_t n = 0;
        test_register(c, "w1", NULL);
        char a[RANDOM_ID_SIZE];
        strcpy(a, test_submit(c, 0));
        for (int i = 0; i < 5; i++) {
                test_advance(c, 1); /* a stays the oldest, so it is the one claimed */
                test_submit(c, 0);
        }
        Job *j = test_claim(c, "w1");

        EventFilter f = {.limit = 100};
        audit_list(c, &f, &ev, &n);
        is_int(n, 8, "all events (register, 6 submissions, 1 assignment)");
        ok(n == 8 && ev[0]->id > ev[1]->id, "newest first");
        int64_t newest = n ? ev[0]->id : 0, third = n > 2 ? ev[2]->id : 0;
        audit_event_array_free(ev, n);

        f = (EventFilter){.limit = 100, .since_id = third};
        audit_list(c, &f, &ev, &n);
        ok(n == 2 && ev[0]->id == newest, "since_id returns only ids above it");
        audit_event_array_free(ev, n);

        f = (EventFilter){.limit = 2};
        audit_list(c, &f, &ev, &n);
        is_int(n, 2, "limit");
        audit_event_array_free(ev, n);

        /* Paging a gap from its start: oldest first after since_id, up to until_id. */
        f = (EventFilter){.limit = 2, .since_id = third - 3, .oldest_first = true};
        audit_list(c, &f, &ev, &n);
        ok(n == 2 && ev[0]->id == third - 2 && ev[1]->id == third - 1, "oldest_first pages from since_id upwards");
        audit_event_array_free(ev, n);
        f = (EventFilter){.limit = 100, .since_id = third - 1, .until_id = third, .oldest_first = true};
        audit_list(c, &f, &ev, &n);
        ok(n == 1 && ev[0]->id == third, "until_id bounds the page");
        audit_event_array_free(ev, n);
        is_int(c->store->committed_event_id, newest, "the newest committed event id is known");

        f = (EventFilter){.limit = 100, .event = "job.submitted"};
        audit_list(c, &f, &ev, &n);
        is_int(n, 6, "event filter");
        audit_event_array_free(ev, n);

        f = (EventFilter){.limit = 100, .job_id = a};
        audit_list(c, &f, &ev, &n);
        is_int(n, 2, "job filter (its submission and its assignment: it was the oldest)");
        audit_event_array_free(ev, n);

        f = (EventFilter){.limit = 100, .worker_id = "w1", .component = "jobs"};
        audit_list(c, &f, &ev, &n);
        ok(n == 1 && streq(ev[0]->event, "job.assigned") && streq(ev[0]->assignment_id, j->assignment_id),
           "worker + component filter, with the assignment id recorded");
        audit_event_array_free(ev, n);
        job_free(j);
        test_control_free(c);
}

static void test_refusal_is_audited_with_request_and_peer(void) {
        Control *c = test_control_new();
        AuditEvent **ev = NULL;
        size_t n = 0;
        is_int(audit_refused(c, "auth", "admin", "127.0.0.1", "req-1", "wrong token"), 0, "refusal recorded");
        EventFilter f = {.limit = 10, .event = "request.refused"};
        audit_list(c, &f, &ev, &n);
        ok(n == 1 && streq(ev[0]->request_id, "req-1") && strstr(ev[0]->details, "127.0.0.1"),
           "with request id and peer address");
        audit_event_array_free(ev, n);
        is_int(c->counters.refused, 1, "counted as refused once committed");
        test_control_free(c);
}

/* ---- durable group commit ---- */

typedef struct BatchLog {
        unsigned durable_ok, durable_failed, events;
} BatchLog;

static void on_durable(void *userdata, bool ok) {
        BatchLog *l = userdata;
        if (ok)
                l->durable_ok++;
        else
                l->durable_failed++;
}

static void count_events(void *userdata, const AuditEvent *e) {
        ((BatchLog *) userdata)->events++;
}

static Control *batch_control_new(BatchLog *log, sqlite3 **ret_reader) {
        Control *c = test_control_new();
        char path[4096];
        if (sd_event_new(&c->event) < 0 || control_add_listener(c, count_events, log) < 0)
                tap_bail("cannot set up the loop");
        c->batch.enabled = true;
        c->batch.on_durable = on_durable;
        c->batch.userdata = log;
        /* Another connection sees only what is committed: durability, as a reader after a crash would. */
        snprintf(path, sizeof(path), "%s/control.db", test_control_dir(c));
        if (sqlite3_open_v2(path, ret_reader, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
                tap_bail("cannot open a reader");
        return c;
}

static void batch_control_free(Control *c, sqlite3 *reader) {
        sqlite3_close(reader);
        c->batch.flush = sd_event_source_disable_unref(c->batch.flush);
        c->event = sd_event_unref(c->event);
        test_control_free(c);
}

static int committed_jobs(sqlite3 *reader) {
        sqlite3_stmt *st = NULL;
        int n = -1;
        if (sqlite3_prepare_v2(reader, "SELECT count(*) FROM jobs", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
                n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return n;
}

static void test_group_commit_makes_many_durable_with_one_commit(void) {
        BatchLog log = {};
        sqlite3 *reader = NULL;
        Control *c = batch_control_new(&log, &reader);
        uint64_t before = c->store->n_commits;

        c->batch.deferring = true; /* as around an HTTP handler */
        for (int i = 0; i < 10; i++)
                test_submit(c, i);
        c->batch.deferring = false;
        ok(c->store->batch_open, "ten submissions wait in one open batch");
        is_int((int) (c->store->n_commits - before), 0, "no COMMIT yet");
        is_int(committed_jobs(reader), 0, "nothing durable yet");
        ok(log.durable_ok == 0 && log.events == 0, "nothing acknowledged and no listener told yet");

        is_int(sd_event_run(c->event, 0), 1, "the loop runs the group commit");
        is_int((int) (c->store->n_commits - before), 1, "one COMMIT (one fsync) for all ten");
        is_int(committed_jobs(reader), 10, "all ten durable");
        is_int(log.durable_ok, 1, "the held responses are released once");
        is_int(log.events, 10, "the listeners hear of the ten events after the commit");
        ok(!c->store->batch_open, "no batch open");

        /* A caller that answers at once (D-Bus, the reconciler) gets durability on return. */
        c->batch.deferring = true;
        test_submit(c, 0);
        c->batch.deferring = false;
        test_submit(c, 0);
        is_int((int) (c->store->n_commits - before), 2, "a commit outside a handler flushes the batch with it");
        ok(committed_jobs(reader) == 12 && log.durable_ok == 2, "both durable, the held one released");
        batch_control_free(c, reader);
}

/* Who heard which event: 'a' or 'b' and the event id, in the order they were called. */
typedef struct HeardLog {
        char who[64];
        int64_t id[64];
        size_t n;
} HeardLog;

static void heard(HeardLog *h, char who, const AuditEvent *e) {
        if (h->n < ELEMENTSOF(h->id)) {
                h->who[h->n] = who;
                h->id[h->n++] = e->id;
        }
}
static void listener_a(void *userdata, const AuditEvent *e) {
        heard(userdata, 'a', e);
}
static void listener_b(void *userdata, const AuditEvent *e) {
        heard(userdata, 'b', e);
}

/* A batch goes to one listener at a time (so each one's sends leave as a burst), in commit order. */
static void test_each_listener_hears_the_whole_batch_in_order(void) {
        BatchLog log = {};
        HeardLog h = {};
        sqlite3 *reader = NULL;
        Control *c = batch_control_new(&log, &reader);

        if (control_add_listener(c, listener_a, &h) < 0 || control_add_listener(c, listener_b, &h) < 0)
                tap_bail("cannot add listeners");
        c->batch.deferring = true;
        for (int i = 0; i < 5; i++)
                test_submit(c, i);
        c->batch.deferring = false;
        is_int(sd_event_run(c->event, 0), 1, "the loop commits the batch of five");
        is_int((int) h.n, 10, "two listeners, five events each");
        bool grouped = h.n == 10, ordered = grouped;
        for (size_t i = 0; grouped && i < 10; i++) {
                grouped = h.who[i] == (i < 5 ? 'a' : 'b');
                ordered = ordered && (i % 5 == 0 || h.id[i] > h.id[i - 1]) && h.id[i] == h.id[i % 5];
        }
        ok(grouped, "the first listener hears all five before the second hears any (%.10s)", h.who);
        ok(ordered, "each in commit order, the same events");
        batch_control_free(c, reader);
}

static void test_group_commit_rolls_back_one_transaction_alone(void) {
        BatchLog log = {};
        sqlite3 *reader = NULL;
        Control *c = batch_control_new(&log, &reader);
        _cleanup_tx_ Control *tx = NULL;

        c->batch.deferring = true;
        char a[RANDOM_ID_SIZE], b[RANDOM_ID_SIZE];
        strcpy(a, test_submit(c, 0));
        is_int(control_begin(c, &tx), 0, "a second transaction in the batch");
        sqlite3_exec(c->store->db, "INSERT INTO jobs (job_id, status, command, created_at, updated_at) "
                                   "VALUES ('doomed', 'PENDING', 'x', 1, 1)", NULL, NULL, NULL);
        control_txp(&tx); /* it fails: rolled back */
        strcpy(b, test_submit(c, 0));
        c->batch.deferring = false;
        is_int(control_flush(c), 0, "the batch commits");
        _cleanup_(job_freep) Job *ja = NULL, *jb = NULL, *jd = NULL;
        ok(jobs_get(c, a, &ja) == 0 && jobs_get(c, b, &jb) == 0, "the transactions around it are kept");
        is_int(jobs_get(c, "doomed", &jd), -ENOENT, "the failed one's statements are gone");
        is_int(committed_jobs(reader), 2, "two jobs durable");
        batch_control_free(c, reader);
}

static void test_failed_group_commit_acknowledges_nothing(void) {
        BatchLog log = {};
        sqlite3 *reader = NULL;
        Control *c = batch_control_new(&log, &reader);
        _cleanup_tx_ Control *tx = NULL;
        uint64_t before;

        /* A deferred constraint is checked at COMMIT only: it makes the batch's COMMIT fail. */
        if (sqlite3_exec(c->store->db,
                         "PRAGMA foreign_keys = ON; CREATE TABLE parent (id INTEGER PRIMARY KEY); "
                         "CREATE TABLE child (p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)",
                         NULL, NULL, NULL) != SQLITE_OK)
                tap_bail("cannot set up the failing commit");
        before = c->store->n_commits;
        c->batch.deferring = true;
        char a[RANDOM_ID_SIZE];
        strcpy(a, test_submit(c, 0));
        test_submit(c, 0);
        is_int(control_begin(c, &tx), 0, "a transaction that breaks the commit");
        sqlite3_exec(c->store->db, "INSERT INTO child VALUES (42)", NULL, NULL, NULL);
        is_int(control_commit(&tx), 0, "its release succeeds (the check is deferred)");
        c->batch.deferring = false;

        ok(control_flush(c) < 0, "the batch's COMMIT fails");
        is_int(log.durable_failed, 1, "the held responses are told to fail (500)");
        is_int(log.durable_ok, 0, "none is released as a success");
        is_int(log.events, 0, "no listener hears of the lost changes");
        is_int((int) (c->store->n_commits - before), 0, "no commit counted");
        is_int(committed_jobs(reader), 0, "nothing durable");
        _cleanup_(job_freep) Job *j = NULL;
        is_int(jobs_get(c, a, &j), -ENOENT, "nor visible to the control plane itself");
        ok(!c->store->batch_open && !c->store->in_transaction, "the store is ready for the next batch");

        sqlite3_exec(c->store->db, "PRAGMA foreign_keys = OFF", NULL, NULL, NULL);
        c->batch.deferring = true;
        test_submit(c, 0);
        c->batch.deferring = false;
        is_int(control_flush(c), 0, "the next batch commits");
        ok(log.durable_ok == 1 && committed_jobs(reader) == 1, "and is acknowledged");
        batch_control_free(c, reader);
}

/* An HTTP handler that fails after its transaction joined the batch (say, out of memory while it
 * builds its answer) is answered 500: its change must not commit with the others, or a client
 * would submit again what was submitted. SQLite cannot take one released savepoint back, so the
 * batch goes whole, its held responses becoming 500s as well. */
static void test_failed_handler_takes_its_batch_down(void) {
        BatchLog log = {};
        sqlite3 *reader = NULL;
        Control *c = batch_control_new(&log, &reader);
        uint64_t before = c->store->n_commits;

        control_request_begin(c);
        test_submit(c, 0);
        is_int(control_request_end(c, true), 1, "a handler that succeeded: its response waits for the batch");
        control_request_begin(c);
        test_submit(c, 0);
        ok(control_request_end(c, false) < 0, "a handler that failed after its change joined: its batch is lost");
        is_int(log.durable_failed, 1, "the response held for the batch is told to fail (500)");
        ok(log.durable_ok == 0 && log.events == 0, "nothing acknowledged, no listener told");
        ok(!c->store->batch_open && !c->store->in_transaction, "the batch is rolled back, the store ready");
        is_int(committed_jobs(reader), 0, "neither change is durable");
        is_int(sd_event_run(c->event, 0), 0, "no commit is left to run");
        is_int((int) (c->store->n_commits - before), 0, "no commit counted");

        control_request_begin(c);
        test_submit(c, 0);
        is_int(control_request_end(c, true), 1, "the next request opens a new batch");
        is_int(sd_event_run(c->event, 0), 1, "which the loop commits");
        ok(committed_jobs(reader) == 1 && log.durable_ok == 1, "and acknowledges");
        batch_control_free(c, reader);
}

/* A handler that fails with nothing of its own in the batch (its transaction rolled back) leaves
 * the others' changes alone. */
static void test_failed_handler_without_changes_keeps_the_batch(void) {
        BatchLog log = {};
        sqlite3 *reader = NULL;
        Control *c = batch_control_new(&log, &reader);

        control_request_begin(c);
        test_submit(c, 0);
        is_int(control_request_end(c, true), 1, "a submission waits for the batch");
        control_request_begin(c);
        {
                _cleanup_tx_ Control *tx = NULL;
                is_int(control_begin(c, &tx), 0, "a transaction that will fail");
        }
        is_int(control_request_end(c, false), 0, "its handler failed with nothing released: answered at once");
        ok(c->store->batch_open && log.durable_failed == 0, "the batch stays open, nothing failed");
        is_int(sd_event_run(c->event, 0), 1, "the loop commits it");
        ok(committed_jobs(reader) == 1 && log.durable_ok == 1, "the submission is durable and acknowledged");
        batch_control_free(c, reader);
}

/* The batch's bound is kept between handlers, never inside one: a handler's changes are not
 * durable before it has returned (and so can still be given up). */
static void test_batch_bound_is_kept_after_the_handler(void) {
        BatchLog log = {};
        sqlite3 *reader = NULL;
        Control *c = batch_control_new(&log, &reader);
        uint64_t before = c->store->n_commits;

        control_request_begin(c);
        for (int i = 0; i < CONTROL_BATCH_MAX + 8; i++)
                test_submit(c, 0);
        ok(c->store->batch_open && c->store->n_commits == before,
           "past the bound, nothing committed within the handler");
        is_int(control_request_end(c, true), 0, "after it the batch is committed: the response goes at once");
        is_int((int) (c->store->n_commits - before), 1, "in one commit");
        ok(committed_jobs(reader) == CONTROL_BATCH_MAX + 8 && log.durable_ok == 1, "all durable, acknowledged");

        control_request_begin(c);
        test_submit(c, 0);
        is_int(control_request_end(c, true), 1, "under the bound the response waits for the loop's commit");
        is_int(sd_event_run(c->event, 0), 1, "the loop commits it");
        batch_control_free(c, reader);
}

int main(void) {
        test_events_are_emitted_after_commit_only();
        test_listeners_get_the_states_of_a_change_without_parsing();
        test_messages_cut_mid_character_stay_utf8();
        test_message_ids_are_unique_and_in_the_catalog();
        test_journal_listener_is_best_effort();
        test_events_filters_and_since_id_paging();
        test_refusal_is_audited_with_request_and_peer();
        test_group_commit_makes_many_durable_with_one_commit();
        test_group_commit_rolls_back_one_transaction_alone();
        test_each_listener_hears_the_whole_batch_in_order();
        test_failed_group_commit_acknowledges_nothing();
        test_failed_handler_takes_its_batch_down();
        test_failed_handler_without_changes_keeps_the_batch();
        test_batch_bound_is_kept_after_the_handler();
        return tap_done();
}
