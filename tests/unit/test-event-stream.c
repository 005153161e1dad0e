/* test-event-stream.c: GET /events/stream through the real HTTP server (libmicrohttpd in epoll
 * mode on sd-event, daemon/http-server.c) with a real store: backlog on connect, live events after
 * commit, filters, Last-Event-ID, the subscriber bound, a slow subscriber's stream ending, the
 * heartbeat, clients that go away, and a clean server stop with idle (suspended) streams.
 *
 * The client is a plain non-blocking socket read while the test spins the event loop; every wait
 * is bounded. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "audit.h"
#include "event-stream.h"
#include "fs-util.h"
#include "http-server.h"
#include "log.h"
#include "store.h"
#include "tap.h"

#define WAIT_USEC (5 * USEC_PER_SEC)

static Control control;
static EventStream *stream;
static HttpServer *server;
static int port;

/* The wake http_server_wake() gives the daemon: run MHD at the next loop iteration. The test
 * reaches MHD through the connection, as it cannot see inside HttpServer. */
static struct MHD_Daemon *mhd;
static sd_event_source *wake_source;

static int on_wake(sd_event_source *src, void *userdata) {
        MHD_UNSIGNED_LONG_LONG ms = 1;

        if (!mhd)
                return 0;
        (void) MHD_run(mhd);
        /* As the server re-arms its timer from MHD_get_timeout() after each run: 0 means more
         * work is waiting (a resumed connection is taken back in one run, served in the next). */
        if (MHD_get_timeout(mhd, &ms) == MHD_YES && ms == 0)
                (void) sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
        return 0;
}

static void wake(void *userdata) {
        (void) sd_event_source_set_enabled(wake_source, SD_EVENT_ONESHOT);
}

static int dispatch(void *userdata, const HttpRequest *req, HttpResponse *resp) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(req->connection, MHD_CONNECTION_INFO_DAEMON);

        mhd = ci ? ci->daemon : NULL;
        if (streq(req->path, "/events/stream"))
                return event_stream_serve(stream, req, resp);
        return http_response_error(resp, 404, "no such endpoint");
}

static int pick_port(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM, 0), p = -1;

        if (fd >= 0 && bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0 &&
            getsockname(fd, (struct sockaddr *) &sa, &len) == 0)
                p = ntohs(sa.sin_port);
        if (fd >= 0)
                close(fd);
        return p;
}

static void setup(const EventStreamLimits *limits, const char *dir) {
        char db[512], listen[64];
        HttpServerConfig cfg = { .listen = listen, .listen_fd = -1, .max_body_size = 65536,
                                 .connection_timeout_sec = 30, .connection_memory_limit = 64 * 1024 };

        snprintf(db, sizeof(db), "%s/control.db", dir);
        if (sd_event_new(&control.event) < 0 || store_open(db, "normal", &control.store) < 0)
                tap_bail("cannot set up the event loop and store");
        if (event_stream_new(&control, limits, &stream) < 0)
                tap_bail("event_stream_new");
        if (sd_event_add_defer(control.event, &wake_source, on_wake, NULL) < 0 ||
            sd_event_source_set_enabled(wake_source, SD_EVENT_OFF) < 0)
                tap_bail("wake source");
        event_stream_set_wake(stream, wake, NULL);
        port = pick_port();
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        if (http_server_new(control.event, &cfg, dispatch, &control, &server) < 0)
                tap_bail("http_server_new on %s", listen);
}

static void teardown(void) {
        event_stream_close_all(stream);
        server = http_server_free(server);
        stream = event_stream_free(stream);
        wake_source = sd_event_source_disable_unref(wake_source);
        mhd = NULL;
        control.store = store_close(control.store);
        control.event = sd_event_unref(control.event);
        control.n_listeners = 0;
}

static int64_t emit(const char *event, const char *job_id) {
        _cleanup_tx_ Control *tx = NULL;
        AuditRecord rec = { .component = "jobs", .level = LOG_INFO, .event = event, .message = "test event",
                            .job_id = job_id };
        int64_t id = 0;

        if (control_begin(&control, &tx) < 0 || audit_record(tx, &rec, &id) < 0 || control_commit(&tx) < 0)
                tap_bail("cannot record %s", event);
        return id;
}

typedef struct Client {
        int fd;
        char buf[256 * 1024];
        size_t n;
        bool eof;
} Client;

static void client_connect(Client *cl, const char *path, const char *extra_headers) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        char req[1024];
        int k;

        *cl = (Client){ .fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) };
        if (cl->fd < 0 || connect(cl->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                tap_bail("connect: %m");
        k = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", path, extra_headers ?: "");
        if (write(cl->fd, req, (size_t) k) != k)
                tap_bail("write request: %m");
        (void) fcntl(cl->fd, F_SETFL, O_NONBLOCK);
}

static void client_close(Client *cl) {
        if (cl->fd >= 0)
                close(cl->fd);
        cl->fd = -1;
}

static void client_pump(Client *cl) {
        for (;;) {
                ssize_t k = read(cl->fd, cl->buf + cl->n, sizeof(cl->buf) - 1 - cl->n);
                if (k > 0) {
                        cl->n += (size_t) k;
                        cl->buf[cl->n] = 0;
                        continue;
                }
                if (k == 0)
                        cl->eof = true;
                return;
        }
}

/* Spins the loop until the client has received `want` (or EOF, with want NULL), bounded. */
static bool client_wait(Client *cl, const char *want) {
        usec_t deadline = now_monotonic_usec() + WAIT_USEC;

        while (now_monotonic_usec() < deadline) {
                client_pump(cl);
                if (want ? strstr(cl->buf, want) != NULL : cl->eof)
                        return true;
                (void) sd_event_run(control.event, 20 * USEC_PER_MSEC);
        }
        diag("waited in vain for %s; got:\n%s", want ?: "EOF", cl->buf);
        return false;
}

static bool loop_until_subscribers(size_t n) {
        usec_t deadline = now_monotonic_usec() + WAIT_USEC;
        while (now_monotonic_usec() < deadline) {
                if (event_stream_n_subscribers(stream) == n)
                        return true;
                (void) sd_event_run(control.event, 20 * USEC_PER_MSEC);
        }
        return false;
}

static void test_backlog_then_live_events_in_order(void) {
        Client cl;
        char want[128];
        int64_t a = emit("job.submitted", "job-a"), b = emit("job.assigned", "job-a");

        client_connect(&cl, "/events/stream?since_id=0", NULL);
        ok(client_wait(&cl, "text/event-stream"), "answers with text/event-stream");
        ok(client_wait(&cl, "retry: 2000"), "tells the client when to reconnect");
        snprintf(want, sizeof(want), "id: %lld\nevent: job.assigned\ndata: {", (long long) b);
        ok(client_wait(&cl, want), "the stored events come first");
        snprintf(want, sizeof(want), "id: %lld\nevent: job.submitted\n", (long long) a);
        const char *pa = strstr(cl.buf, want);
        ok(pa && pa < strstr(cl.buf, "event: job.assigned"), "oldest first");
        ok(strstr(cl.buf, "\"job_id\":\"job-a\"") != NULL, "data is the event's JSON");

        int64_t c = emit("job.running", "job-a");
        snprintf(want, sizeof(want), "id: %lld\nevent: job.running\n", (long long) c);
        ok(client_wait(&cl, want), "a committed event is pushed live to an idle (suspended) stream");
        is_int(event_stream_n_subscribers(stream), 1, "one subscriber");
        client_close(&cl);
}

static void test_filters_and_last_event_id(void) {
        Client cl;
        char hdr[64], want[64];
        int64_t first = emit("job.submitted", "job-x");
        emit("job.submitted", "job-y");
        int64_t third = emit("job.completed", "job-x");

        snprintf(hdr, sizeof(hdr), "Last-Event-ID: %lld\r\n", (long long) first);
        client_connect(&cl, "/events/stream?job_id=job-x&since_id=0", hdr);
        snprintf(want, sizeof(want), "id: %lld\n", (long long) third);
        ok(client_wait(&cl, want), "backlog after Last-Event-ID (which wins over since_id)");
        snprintf(want, sizeof(want), "id: %lld\n", (long long) first);
        ok(!strstr(cl.buf, want), "the event named by Last-Event-ID is not sent again");
        ok(!strstr(cl.buf, "job-y"), "the filter keeps other jobs' events out of the backlog");
        emit("job.running", "job-y");
        int64_t mine = emit("job.running", "job-x");
        snprintf(want, sizeof(want), "id: %lld\n", (long long) mine);
        ok(client_wait(&cl, want), "live event of the filtered job arrives");
        ok(!strstr(cl.buf, "job-y"), "live events of other jobs do not");
        client_close(&cl);

        client_connect(&cl, "/events/stream", "Last-Event-ID: -3\r\n");
        ok(client_wait(&cl, "HTTP/1.1 400"), "a malformed Last-Event-ID is a 400");
        client_close(&cl);
}

static void test_subscriber_bound_and_departures(void) {
        Client cl[3];

        ok(loop_until_subscribers(0), "earlier clients that went away are gone (noticed by the heartbeat)");
        client_connect(&cl[0], "/events/stream", NULL);
        client_connect(&cl[1], "/events/stream", NULL);
        ok(client_wait(&cl[0], "retry:") && client_wait(&cl[1], "retry:"), "two streams open");
        client_connect(&cl[2], "/events/stream", NULL);
        ok(client_wait(&cl[2], "HTTP/1.1 503"), "a third is refused with 503 (max_subscribers 2)");
        ok(client_wait(&cl[0], ": keepalive"), "idle streams get heartbeat comments");
        client_close(&cl[2]);
        client_close(&cl[1]);
        ok(loop_until_subscribers(1), "a client that disconnected is unregistered");
        client_close(&cl[0]);
        ok(loop_until_subscribers(0), "and the other one too");
}

static void test_slow_subscriber_stream_ends(void) {
        _cleanup_tx_ Control *tx = NULL;
        Client cl;
        uint64_t dropped = event_stream_n_dropped(stream);

        client_connect(&cl, "/events/stream", NULL);
        ok(client_wait(&cl, "retry:"), "stream open");
        /* One transaction of many events: the listener runs for each before the loop can send
         * anything, so the 2 KiB queue overflows. */
        if (control_begin(&control, &tx) < 0)
                tap_bail("begin");
        for (int i = 0; i < 20; i++) {
                AuditRecord rec = { .component = "jobs", .level = LOG_INFO, .event = "job.submitted",
                                    .message = "burst", .job_id = "burst" };
                if (audit_record(tx, &rec, NULL) < 0)
                        tap_bail("audit_record");
        }
        if (control_commit(&tx) < 0)
                tap_bail("commit");
        ok(client_wait(&cl, "0\r\n\r\n"), "the overflowing stream ends (chunked end) after what was queued");
        ok(strstr(cl.buf, "event: job.submitted") != NULL, "the events that fitted were delivered");
        is_int(event_stream_n_dropped(stream), dropped + 1, "counted as dropped");
        client_close(&cl);
}

static void test_close_all_ends_idle_streams(void) {
        Client cl;

        client_connect(&cl, "/events/stream", NULL);
        ok(client_wait(&cl, "retry:"), "stream open");
        (void) sd_event_run(control.event, 50 * USEC_PER_MSEC); /* let it go idle and suspend */
        event_stream_close_all(stream);
        ok(client_wait(&cl, "0\r\n\r\n"), "close_all ends an idle stream");
        client_connect(&cl, "/events/stream", NULL);
        ok(client_wait(&cl, "HTTP/1.1 503"), "no new stream while closing");
        client_close(&cl);
}

static void test_server_stops_with_suspended_streams(void) {
        Client cl;

        client_connect(&cl, "/events/stream", NULL);
        ok(client_wait(&cl, "retry:"), "stream open");
        (void) sd_event_run(control.event, 50 * USEC_PER_MSEC);
        event_stream_close_all(stream);
        server = http_server_free(server); /* libmicrohttpd aborts if a connection is still suspended */
        ok(server == NULL, "server stopped with a stream open");
        is_int(event_stream_n_subscribers(stream), 0, "the stream's subscriber was freed");
        client_close(&cl);
}

/* A gap longer than one page of backlog (EVENT_STREAM_BACKLOG_MAX_DEFAULT) is sent whole, oldest
 * first, then live events follow. */
static void test_long_gap_is_paged_whole(void) {
        enum { N = 2 * EVENT_STREAM_BACKLOG_MAX_DEFAULT + 50 };
        Client cl;
        char want[64], q[128];
        int64_t first = 0, last = 0;

        for (int i = 0; i < N; i++) {
                int64_t id = emit("job.running", "job-gap");
                first = first ? first : id;
                last = id;
        }
        snprintf(q, sizeof(q), "/events/stream?job_id=job-gap&since_id=%lld", (long long) first - 1);
        client_connect(&cl, q, NULL);
        snprintf(want, sizeof(want), "id: %lld\n", (long long) last);
        ok(client_wait(&cl, want), "the last event of a %d-event gap arrives", N);
        int64_t prev = first - 1, n = 0;
        bool ordered = true;
        for (const char *p = strstr(cl.buf, "\nid: "); p; p = strstr(p + 1, "\nid: ")) {
                long long id = strtoll(p + 5, NULL, 10);
                ordered = ordered && id == prev + 1;
                prev = id;
                n++;
        }
        ok(ordered && n == N, "every event of the gap, once, in order (%lld of %d)", (long long) n, N);
        ok(!strstr(cl.buf, "truncated"), "nothing truncated");
        int64_t live = emit("job.completed", "job-gap");
        snprintf(want, sizeof(want), "id: %lld\n", (long long) live);
        ok(client_wait(&cl, want), "then live events");
        client_close(&cl);
}

int main(void) {
        char dir[] = "/tmp/test-event-stream-XXXXXX";
        EventStreamLimits limits = { .max_subscribers = 2, .queue_max = 2048, .heartbeat = 100 * USEC_PER_MSEC };

        log_set_max_level(LOG_WARNING);
        if (!mkdtemp(dir))
                tap_bail("mkdtemp");
        setup(&limits, dir);
        test_backlog_then_live_events_in_order();
        test_long_gap_is_paged_whole();
        test_filters_and_last_event_id();
        test_subscriber_bound_and_departures();
        test_slow_subscriber_stream_ends();
        test_close_all_ends_idle_streams();
        teardown();

        setup(&limits, dir);
        test_server_stops_with_suspended_streams();
        teardown();

        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        (void) system(cmd);
        return tap_done();
}
