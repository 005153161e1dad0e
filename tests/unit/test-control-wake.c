/* test-control-wake.c: wake-ups of idle workers (control-wake.h) over real UDP on 127.0.0.1: who
 * gets a datagram when a job becomes claimable (idle, not draining, capable, with a wake port),
 * the one-per-interval limit (--wake-interval), the datagram's authentication, and jobs held back
 * by scheduled_at. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control-wake.h"
#include "core-test-util.h"
#include "store.h"
#include "strv.h"
#include "tap.h"
#include "wake-proto.h"

#define TOKEN          "worker-token-for-tests"
#define SHORT_INTERVAL (100 * USEC_PER_MSEC)

typedef struct Sock {
        int fd;
        uint16_t port;
} Sock;

static Sock sock_open(void) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        Sock s = {.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)};
        if (s.fd < 0 || bind(s.fd, (struct sockaddr *) &a, sizeof(a)) < 0 ||
            getsockname(s.fd, (struct sockaddr *) &a, &len) < 0)
                tap_bail("cannot bind a UDP socket on 127.0.0.1");
        s.port = ntohs(a.sin_port);
        return s;
}

/* Runs the loop for up to timeout_ms and returns the datagrams that arrived on s (0 or more). */
static int received(Control *c, Sock *s, int timeout_ms, const char *worker_id) {
        int n = 0;
        for (int waited = 0; waited <= timeout_ms; waited += 10) {
                char buf[WAKE_MAX_SIZE + 1];
                ssize_t k;
                (void) sd_event_run(c->event, 0);
                while ((k = recv(s->fd, buf, sizeof(buf) - 1, 0)) > 0) {
                        uint64_t ts;
                        buf[k] = 0;
                        if (wake_verify(buf, (size_t) k, worker_id, TOKEN, now_realtime_usec() / 1000, 60000, &ts) ==
                            0)
                                n++;
                }
                if (n > 0)
                        return n;
                (void) poll(NULL, 0, 10);
        }
        return n;
}

static void register_wakeable(Control *c, const char *id, const char *caps, uint16_t port) {
        _cleanup_strv_free_ char **l = NULL;
        OpError err = {};
        if (caps && strv_split(caps, ",", &l) < 0)
                tap_bail("strv_split failed");
        WorkerRegistration reg = {.worker_id = id, .capabilities = l, .wake_port = port, .wake_address = "127.0.0.1"};
        if (worker_register(c, NULL, &reg, &err) < 0)
                tap_bail("cannot register %s: %s", id, err.message);
}

static Control *wake_control_new(void) {
        Control *c = test_control_new();
        if (sd_event_new(&c->event) < 0)
                tap_bail("sd_event_new failed");
        c->worker_token = strdup(TOKEN);
        c->settings.wake_interval = SHORT_INTERVAL;
        if (!c->worker_token || control_core_start(c) < 0)
                tap_bail("cannot start wake-ups");
        return c;
}

static void wake_control_free(Control *c) {
        control_core_stop(c);
        free(c->worker_token);
        c->worker_token = NULL;
        c->event = sd_event_unref(c->event);
        test_control_free(c);
}

static int on_time(sd_event_source *s, uint64_t usec, void *userdata) {
        *(bool *) userdata = true;
        return 0;
}

/* Runs the loop until the wake interval counted from `since` (CLOCK_MONOTONIC, taken after the
 * last send) has passed: a timer on the loop at the configured interval, not a fixed sleep. */
static void wait_wake_interval(Control *c, usec_t since) {
        _cleanup_(sd_event_source_unrefp) sd_event_source *t = NULL;
        bool fired = false;

        if (sd_event_add_time(c->event, &t, CLOCK_MONOTONIC, since + c->settings.wake_interval, 0, on_time, &fired) < 0)
                tap_bail("cannot add a timer");
        for (int i = 0; !fired && i < 1000; i++)
                (void) sd_event_run(c->event, 10 * USEC_PER_MSEC);
        if (!fired)
                tap_bail("the wake interval did not pass within 10 s");
}

static void test_idle_capable_workers_are_woken_once_per_interval(void) {
        Control *c = wake_control_new();
        Sock idle = sock_open(), gpu = sock_open(), drained = sock_open();
        uint64_t sent, failed;
        usec_t last;

        register_wakeable(c, "idle", NULL, idle.port);
        register_wakeable(c, "gpu", "gpu", gpu.port);
        register_wakeable(c, "drained", NULL, drained.port);
        worker_drain(c, NULL, "drained", true);
        test_register(c, "no-port", NULL);

        /* An interval no test run can outlast, so that "within the interval" holds however slow the
         * machine; then a short one, read at the next send as after a reload. */
        c->settings.wake_interval = USEC_PER_HOUR;
        test_submit(c, 0);
        is_int(received(c, &idle, 1000, "idle"), 1, "an idle worker is woken by a submission");
        is_int(received(c, &gpu, 1000, "gpu"), 1, "so is another one that can run it");
        is_int(received(c, &drained, 100, "drained"), 0, "a draining worker is not");
        test_submit(c, 0);
        is_int(received(c, &idle, 100, "idle"), 0, "a second job within the interval: no second datagram");
        control_wake_counters(c->wake, &sent, &failed, NULL);
        ok(sent == 2, "two datagrams sent so far (sent %llu)", (unsigned long long) sent);

        c->settings.wake_interval = SHORT_INTERVAL;
        last = now_monotonic_usec();
        wait_wake_interval(c, last);
        test_submit(c, 0);
        is_int(received(c, &idle, 1000, "idle"), 1, "once the interval has passed, a job wakes the worker again");
        is_int(received(c, &gpu, 1000, "gpu"), 1, "and the other one");

        JobSpec s;
        job_spec_init(&s);
        s.command = "train";
        s.needs_gpu = true;
        last = now_monotonic_usec();
        _cleanup_(job_freep) Job *busy = test_claim_and_ack(c, "gpu"); /* the gpu worker is busy now */
        (void) received(c, &gpu, 0, "gpu");
        wait_wake_interval(c, last);
        test_submit_spec(c, &s);
        is_int(received(c, &idle, 100, "idle"), 0, "a worker without a gpu is not woken for a gpu job");
        is_int(received(c, &gpu, 100, "gpu"), 0, "a busy worker is not woken");
        control_wake_counters(c->wake, &sent, &failed, NULL);
        ok(sent == 4 && failed == 0, "four datagrams sent in all (sent %llu, failed %llu)", (unsigned long long) sent,
           (unsigned long long) failed);
        close(idle.fd);
        close(gpu.fd);
        close(drained.fd);
        wake_control_free(c);
}

/* Ids registered by the dozen with one address (here one port too): one submission sends at most
 * WAKE_MAX_PER_ADDRESS datagrams there per wake interval, and counts the others held back. */
static void test_one_address_gets_a_bounded_number_of_datagrams(void) {
        Control *c = wake_control_new();
        Sock s = sock_open();
        uint64_t sent, failed, held;
        int n = 0;
        char id[32];

        c->settings.wake_interval = USEC_PER_HOUR; /* one interval, however slow the machine */
        for (int i = 0; i < WAKE_MAX_PER_ADDRESS + 6; i++) {
                snprintf(id, sizeof(id), "w%d", i);
                register_wakeable(c, id, NULL, s.port);
        }
        test_submit(c, 0);
        for (int quiet = 0; quiet < 20; quiet++) { /* until 200 ms without a datagram */
                char buf[WAKE_MAX_SIZE + 1];
                (void) sd_event_run(c->event, 0);
                while (recv(s.fd, buf, sizeof(buf), 0) > 0) {
                        n++;
                        quiet = 0;
                }
                (void) poll(NULL, 0, 10);
        }
        is_int(n, WAKE_MAX_PER_ADDRESS, "one submission: WAKE_MAX_PER_ADDRESS datagrams to the address");
        control_wake_counters(c->wake, &sent, &failed, &held);
        ok(sent == WAKE_MAX_PER_ADDRESS && held == 6 && failed == 0, "the others are held back (sent %llu, held %llu)",
           (unsigned long long) sent, (unsigned long long) held);
        test_submit(c, 0);
        control_wake_counters(c->wake, &sent, &failed, &held);
        ok(sent == WAKE_MAX_PER_ADDRESS, "a second submission in the interval sends none");
        close(s.fd);
        wake_control_free(c);
}

/* Registration accepts ids with bytes above 0x7f: such a worker with a wake port is woken too (the
 * datagram carries its id percent-encoded, wake-proto.h). */
static void test_non_ascii_worker_is_woken(void) {
        Control *c = wake_control_new();
        const char *id = "gr\xc3\xbcn-\xe2\x9a\xa1";
        Sock s = sock_open();
        uint64_t sent, failed;

        register_wakeable(c, id, NULL, s.port);
        test_submit(c, 0);
        is_int(received(c, &s, 1000, id), 1, "a worker whose id is UTF-8 is woken, and its datagram verifies");
        control_wake_counters(c->wake, &sent, &failed, NULL);
        ok(sent == 1 && failed == 0, "one datagram sent, none failed (sent %llu, failed %llu)",
           (unsigned long long) sent, (unsigned long long) failed);
        close(s.fd);
        wake_control_free(c);
}

static void test_scheduled_job_wakes_when_due(void) {
        Control *c = wake_control_new();
        Sock w = sock_open();
        JobSpec s;

        register_wakeable(c, "w", NULL, w.port);
        job_spec_init(&s);
        s.command = "later";
        s.scheduled_at = T0 + 200 * USEC_PER_MSEC;
        test_submit_spec(c, &s);
        is_int(received(c, &w, 50, "w"), 0, "a job scheduled for later wakes nobody yet");
        test_advance(c, 300 * USEC_PER_MSEC);
        is_int(received(c, &w, 1500, "w"), 1, "its time come, the idle worker is woken");
        close(w.fd);
        wake_control_free(c);
}

/* A job scheduled an hour ahead falls due at once when the clock is stepped forward by an hour:
 * the timer, armed on the monotonic clock for an hour later, is armed again after the step. */
static void test_clock_step_brings_a_scheduled_job_due(void) {
        Control *c = wake_control_new();
        Sock w = sock_open();
        JobSpec s;

        register_wakeable(c, "w", NULL, w.port);
        job_spec_init(&s);
        s.command = "in an hour";
        s.scheduled_at = T0 + USEC_PER_HOUR;
        test_submit_spec(c, &s);
        is_int(received(c, &w, 50, "w"), 0, "a job scheduled an hour ahead wakes nobody yet");
        test_step_clock(c, (int64_t) USEC_PER_HOUR);
        is_int(test_sweep(c), 0, "the sweep follows the step");
        is_int(received(c, &w, 1500, "w"), 1, "the step made it due: the idle worker is woken");
        close(w.fd);
        wake_control_free(c);
}

/* A nightly batch: more jobs fall due in one tick than one batch of rows would hold, and the kind
 * that sorts last (here the only one an idle worker can run) must still be announced. */
static void test_every_kind_of_due_job_is_announced(void) {
        Control *c = wake_control_new();
        char *special[] = {(char *) "special", NULL};
        Sock w = sock_open();
        JobSpec s;

        register_wakeable(c, "plain", NULL, w.port);
        job_spec_init(&s);
        s.command = "nightly";
        s.requirements = special;
        s.scheduled_at = T0 + 100 * USEC_PER_MSEC;
        for (int i = 0; i < 100; i++)
                test_submit_spec(c, &s);
        s.requirements = NULL;
        s.scheduled_at = T0 + 101 * USEC_PER_MSEC;
        test_submit_spec(c, &s);
        (void) received(c, &w, 0, "plain");
        test_advance(c, 300 * USEC_PER_MSEC);
        is_int(received(c, &w, 1500, "plain"), 1, "the worker for the 101st job due in the tick is woken");
        close(w.fd);
        wake_control_free(c);
}

/* With a million jobs stored, a scan in these would cost seconds (start-up) or make each wake-up
 * cost as much as the worker's whole history. */
static void test_wake_queries_use_their_indexes(void) {
        Control *c = test_control_new();
        ok(test_plan_uses(c,
                     "SELECT min(scheduled_at) FROM jobs INDEXED BY jobs_scheduled WHERE status = 'PENDING' "
                     "AND scheduled_at > 0 AND scheduled_at > 5",
                     "jobs_scheduled"),
           "the next scheduled job is a seek in jobs_scheduled");
        ok(test_plan_uses(c,
                     "SELECT 1 FROM jobs j INDEXED BY jobs_held WHERE j.worker_id = 'w' "
                     "AND (j.status = 'ASSIGNED' OR j.status = 'RUNNING')",
                     "jobs_held"),
           "a worker's held jobs come from jobs_held, not its whole history");
        test_control_free(c);
}

int main(void) {
        test_idle_capable_workers_are_woken_once_per_interval();
        test_non_ascii_worker_is_woken();
        test_one_address_gets_a_bounded_number_of_datagrams();
        test_scheduled_job_wakes_when_due();
        test_clock_step_brings_a_scheduled_job_due();
        test_every_kind_of_due_job_is_announced();
        test_wake_queries_use_their_indexes();
        return tap_done();
}
