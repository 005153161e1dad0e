/* bench-beanstalk.c: the reference a user would pick instead of Entropy: beanstalkd (Debian's
 * package) on 127.0.0.1 with its binlog on and an fsync after every write (-f 0), driven by the
 * same closed-loop engine with K clients, each doing put, reserve, delete over the beanstalk text
 * protocol on its own connection. One cycle = the three commands answered as the protocol says. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>

#include "bench-load.h"
#include "bench-proc.h"
#include "bench.h"
#include "log.h"
#include "strv.h"

#define BEANSTALK_DRAIN_USEC    (30 * USEC_PER_SEC)
#define BEANSTALK_READY_TIMEOUT (10 * USEC_PER_SEC)
#define MAX_LOGGED_ERRORS       5
/* The job body: what a client would queue for `true`, the same bytes POST /jobs carries. */
#define JOB_BODY "{\"command\":\"true\",\"args\":[]}"

typedef enum BsStep {
        BS_PUT,
        BS_RESERVE,
        BS_DELETE,
} BsStep;

typedef struct BsRun {
        Load load;
        BeanstalkResult *result;
        uint64_t errors;
} BsRun;

typedef struct BsClient {
        LoadClient base; /* first: the engine hands us &base */
        BsRun *run;
        BsStep step;
        char line[128]; /* the reply's first line, without CRLF */
        uint64_t job_id;
} BsClient;

static BsClient *bs(LoadClient *c) {
        return (BsClient *) c;
}

static int bs_put(BsClient *c) {
        static const char cmd[] = "put 1024 0 60 "
                                  "28"
                                  "\r\n" JOB_BODY "\r\n";
        static_assert(sizeof(JOB_BODY) - 1 == 28, "put announces 28 bytes");
        c->step = BS_PUT;
        return load_send(&c->base, cmd, sizeof(cmd) - 1);
}

static int bs_begin_cycle(BsClient *c) {
        if (!load_may_start_cycle(&c->run->load)) {
                load_client_finish(&c->base);
                return 0;
        }
        return bs_put(c);
}

static int bs_start(LoadClient *c) {
        return bs_begin_cycle(bs(c));
}

/* One reply: a line, plus for RESERVED the job body and its CRLF. */
static ssize_t bs_parse(LoadClient *lc, const char *data, size_t size) {
        BsClient *c = bs(lc);
        const char *eol = memmem(data, size, "\r\n", 2);
        unsigned long long id, bytes;
        size_t len, total;

        if (!eol)
                return size >= sizeof(c->line) ? -EPROTO : 0;
        len = (size_t) (eol - data);
        if (len >= sizeof(c->line))
                return -EPROTO;
        memcpy(c->line, data, len);
        c->line[len] = 0;
        total = len + 2;
        if (sscanf(c->line, "RESERVED %llu %llu", &id, &bytes) == 2) {
                total += bytes + 2;
                if (size < total)
                        return 0;
        }
        return (ssize_t) total;
}

static int bs_unexpected(BsClient *c) {
        static const char *const names[] = {"put", "reserve", "delete"};

        if (c->run->errors++ < MAX_LOGGED_ERRORS)
                log_error("beanstalk client %u: %s answered \"%s\"", c->base.index, names[c->step], c->line);
        load_client_finish(&c->base);
        return 0;
}

static int bs_on_reply(LoadClient *lc, const char *data, size_t size, usec_t latency) {
        BsClient *c = bs(lc);
        unsigned long long id, bytes;
        char cmd[64];
        int n;

        switch (c->step) {
        case BS_PUT:
                if (sscanf(c->line, "INSERTED %llu", &id) != 1)
                        return bs_unexpected(c);
                c->step = BS_RESERVE;
                return load_send(lc, "reserve\r\n", 9);
        case BS_RESERVE:
                if (sscanf(c->line, "RESERVED %llu %llu", &id, &bytes) != 2)
                        return bs_unexpected(c);
                if (latency_add(&c->run->result->reserve, latency) < 0)
                        return -ENOMEM;
                c->job_id = id;
                c->step = BS_DELETE;
                n = snprintf(cmd, sizeof(cmd), "delete %" PRIu64 "\r\n", c->job_id);
                return load_send(lc, cmd, (size_t) n);
        case BS_DELETE:
                if (!streq(c->line, "DELETED"))
                        return bs_unexpected(c);
                load_cycle_done(&c->run->load);
                return bs_begin_cycle(c);
        }
        return -EINVAL;
}

static const LoadOps bs_ops = {
        .parse = bs_parse,
        .on_reply = bs_on_reply,
        .start = bs_start,
};

static int bs_run(pid_t pid, uint16_t port, const BenchSettings *s, BeanstalkResult *res) {
        _cleanup_free_ LoadClient **clients = NULL;
        size_t n = (size_t) s->workers;
        BsRun run = {.result = res};
        usec_t cpu0 = 0, cpu1 = 0;
        BsClient *c;
        int r;

        c = calloc(n, sizeof(BsClient));
        clients = calloc(n, sizeof(LoadClient *));
        if (!c || !clients) {
                free(c);
                return log_oom();
        }
        r = load_init(&run.load, port, s->duration, (uint64_t) s->jobs, BEANSTALK_DRAIN_USEC);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                c[i].run = &run;
                clients[i] = &c[i].base;
                r = load_add_client(&run.load, &c[i].base, &bs_ops, (unsigned) i);
        }
        if (r >= 0) {
                bool have_cpu = proc_cpu_usec(pid, false, &cpu0) >= 0;
                r = load_run(&run.load, clients, n);
                if (have_cpu && proc_cpu_usec(pid, false, &cpu1) >= 0)
                        res->server_cpu = cpu1 - cpu0;
        }
        res->cycles = run.load.cycles;
        res->elapsed = run.load.finished_at - run.load.started_at;
        res->requests = run.load.requests;
        res->reconnects = run.load.reconnects;
        res->client_cpu = run.load.cpu;
        res->errors = run.errors;
        load_done(&run.load);
        for (size_t i = 0; i < n; i++)
                load_client_free(&c[i].base);
        free(c);
        return r;
}

static int bs_argv(const char *binary, uint16_t port, const char *binlog, char ***ret) {
        char portstr[8];
        char *argv[] = {(char *) binary, (char *) "-l",   (char *) "127.0.0.1", (char *) "-p", portstr,
                        (char *) "-b",   (char *) binlog, (char *) "-f",        (char *) "0",  NULL};

        snprintf(portstr, sizeof(portstr), "%u", (unsigned) port);
        *ret = strv_copy(argv);
        return *ret ? 0 : -ENOMEM;
}

static int bs_phase(Child *child, const BenchSettings *s, const char *dir, BeanstalkResult *res) {
        _cleanup_free_ char *binlog = NULL, *log_path = NULL;
        _cleanup_strv_free_ char **argv = NULL;
        uint16_t port;
        int r;

        if (asprintf(&binlog, "%s/binlog", dir) < 0 || asprintf(&log_path, "%s/beanstalkd.log", dir) < 0)
                return log_oom();
        if (mkdir(binlog, 0700) < 0)
                return log_error_errno(negative_errno(), "Failed to create %s: %m", binlog);
        r = free_loopback_port(&port);
        if (r >= 0)
                r = bs_argv(s->beanstalkd_binary, port, binlog, &argv);
        if (r < 0)
                return log_error_errno(r, "Failed to prepare beanstalkd: %m");
        r = child_spawn(child, "beanstalkd", argv, log_path, NULL, NULL);
        if (r >= 0)
                r = child_wait_port(child, port, BEANSTALK_READY_TIMEOUT, NULL);
        if (r < 0)
                return r;
        r = bs_run(child->pid, port, s, res);
        res->ran = true;
        (void) proc_memory_kib(child->pid, &res->peak_rss_kib, NULL);
        if (r < 0)
                child_log_tail(child, 20);
        return r;
}

int bench_beanstalk(const BenchSettings *s, const char *workdir, BeanstalkResult *res) {
        _cleanup_free_ char *dir = NULL;
        Child child = {.notify_fd = -EBADF};
        int r;

        if (asprintf(&dir, "%s/beanstalkd", workdir) < 0)
                return log_oom();
        if (mkdir(dir, 0700) < 0)
                return log_error_errno(negative_errno(), "Failed to create %s: %m", dir);
        r = bs_phase(&child, s, dir, res);
        if (child.pid > 0)
                (void) child_stop(&child, 10 * USEC_PER_SEC);
        child_done(&child);
        return r;
}
