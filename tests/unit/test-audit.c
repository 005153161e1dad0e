/* test-audit.c: audit rows and their emission after commit only, the MESSAGE_ID table against the
 * journal catalog, the journal listener's best-effort counting, /events filters and paging, and
 * refusals that never record secrets. */
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "core-test-util.h"
#include "fs-util.h"
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

static void test_journal_listener_is_best_effort(void) {
        Control *c = test_control_new();
        control_add_listener(c, audit_journal_listener, c);
        test_submit(c, 0);
        ok(c->counters.journal_failures <= 1,
           "with or without journald, sending never fails the operation (%llu failures)",
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

static void test_refusal_is_audited_without_secrets(void) {
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

int main(void) {
        test_events_are_emitted_after_commit_only();
        test_message_ids_are_unique_and_in_the_catalog();
        test_journal_listener_is_best_effort();
        test_events_filters_and_since_id_paging();
        test_refusal_is_audited_without_secrets();
        return tap_done();
}
