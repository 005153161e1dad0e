/* test-worker-host-metrics.c: the heartbeat's host figures: load, memory, and GPU readings taken
 * from nvidia-smi in the background. */
#include <stdlib.h>

#include "fs-util.h"
#include "host-metrics.h"
#include "json-util.h"
#include "protocol.h"
#include "tap.h"

static void test_parsers_read_proc_and_nvidia_smi(void) {
        double load;
        uint64_t total, avail;
        GpuSample g[4];
        size_t n = 0;

        ok(parse_loadavg("0.52 0.40 0.33 1/234 5678\n", &load) == 0 && load > 0.51 && load < 0.53, "load1");
        ok(parse_loadavg("x", &load) < 0, "garbage load refused");
        ok(parse_meminfo("MemTotal:       16000000 kB\nMemFree:  1 kB\nMemAvailable:    4000000 kB\n", &total,
                         &avail) == 0 && total == 16000000ULL * 1024 && avail == 4000000ULL * 1024,
           "meminfo total and available");
        ok(parse_meminfo("MemTotal: 1 kB\n", &total, &avail) == -ENOENT, "missing MemAvailable");
        is_int(parse_nvidia_smi_csv("0, NVIDIA A100-SXM4-40GB, 87, 20480, 40960\n"
                                    "1, NVIDIA A100-SXM4-40GB, [N/A], 0, 40960\n",
                                    g, 4, &n, NULL), 0, "nvidia-smi CSV parsed");
        is_int(n, 2, "two GPUs");
        ok(g[0].index == 0 && g[0].utilization_pct == 87 && g[0].memory_used_bytes == 20480ULL << 20 &&
                   g[0].memory_total_bytes == 40960ULL << 20 && streq(g[0].name, "NVIDIA A100-SXM4-40GB"),
           "first GPU's figures");
        ok(g[1].index == 1 && g[1].utilization_pct == 0, "an unreadable field reads as 0");
        ok(streq(g[0].uuid, ""), "five fields: no uuid");
        ok(parse_nvidia_smi_csv("not, csv\n", g, 4, &n, NULL) < 0, "malformed line refused");
        is_int(parse_nvidia_smi_csv(
                       "0, NVIDIA A100-SXM4-40GB, 87, 20480, 40960, GPU-5d4c3b2a-1f0e-4d9c-8b7a-6e5f4d3c2b1a\n"
                       "1, NVIDIA A100-SXM4-40GB, 87, 20480, 40960, [N/A]\n",
                       g, 4, &n, NULL),
               0, "nvidia-smi CSV with uuids parsed");
        ok(n == 2 && streq(g[0].uuid, "GPU-5d4c3b2a-1f0e-4d9c-8b7a-6e5f4d3c2b1a") &&
                   g[0].memory_total_bytes == 40960ULL << 20,
           "the uuid read, the figures as before");
        ok(streq(g[1].uuid, ""), "an unusable uuid left out, the figures kept");
        size_t listed = 0;
        is_int(parse_nvidia_smi_csv("0, A, 1, 1, 1\n1, A, 1, 1, 1\n\n2, A, 1, 1, 1\n", g, 2, &n, &listed), 0,
               "more GPUs than room");
        ok(n == 2 && listed == 3, "the first two read, all three counted (n=%zu, listed=%zu)", n, listed);
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static int on_poll(sd_event_source *s, uint64_t usec, void *userdata) {
        if (host_metrics_gpu_reads(userdata) > 0)
                return sd_event_exit(sd_event_source_get_event(s), 0);
        return sd_event_source_set_time_relative(s, 10 * USEC_PER_MSEC) < 0 ? -1 :
               sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* A fake nvidia-smi: the shell script given, alone in a fresh directory. */
typedef struct FakeSmi {
        char dir[64], path[128];
} FakeSmi;

static void fake_smi_create(FakeSmi *f, const char *script) {
        snprintf(f->dir, sizeof(f->dir), "/tmp/entropy-test-hostmetrics-XXXXXX");
        if (!mkdtemp(f->dir))
                tap_bail("mkdtemp");
        snprintf(f->path, sizeof(f->path), "%s/nvidia-smi", f->dir);
        if (write_file_durable(f->path, script, strlen(script), 0755) < 0)
                tap_bail("cannot write %s", f->path);
}

static void fake_smi_remove(const FakeSmi *f) {
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        if (system(cmd) != 0)
                diag("cleanup of %s failed", f->dir);
}

/* A loop and host metrics reading nvidia_smi every interval, as the worker has them. */
static void host_metrics_start(const char *nvidia_smi, usec_t interval, sd_event **ret_e, HostMetrics **ret_m) {
        sigset_t mask;

        /* sd-event watches children through SIGCHLD, which must be blocked as in the worker. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        if (sd_event_new(ret_e) < 0 || host_metrics_new(*ret_e, nvidia_smi, interval, ret_m) < 0)
                tap_bail("set-up");
}

/* Runs the loop until m has completed a GPU reading (or 5s have passed). */
static void wait_gpu_reading(sd_event *e, HostMetrics *m) {
        sd_event_source *poll = NULL, *deadline = NULL;

        sd_event_add_time_relative(e, &poll, CLOCK_MONOTONIC, 10 * USEC_PER_MSEC, 0, on_poll, m);
        sd_event_add_time_relative(e, &deadline, CLOCK_MONOTONIC, 5 * USEC_PER_SEC, 0, on_deadline, NULL);
        sd_event_loop(e);
        sd_event_source_unref(poll);
        sd_event_source_unref(deadline);
}

static void test_gpu_figures_come_from_nvidia_smi_in_the_background(void) {
        _cleanup_(host_metrics_freep) HostMetrics *m = NULL;
        _cleanup_json_ json_object *o = json_object_new_object();
        sd_event *e = NULL;
        json_object *gpus, *g0, *v;
        FakeSmi smi;

        /* The uuid only when asked for: the slots' CUDA_VISIBLE_DEVICES name GPUs by it. */
        fake_smi_create(&smi, "#!/bin/sh\n"
                              "case \"$1\" in *,uuid*) u=', GPU-0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d' ;; esac\n"
                              "echo \"3, Test GPU, 42, 1024, 8192$u\"\n");
        host_metrics_start(smi.path, 10 * USEC_PER_SEC, &e, &m);
        wait_gpu_reading(e, m);
        ok(host_metrics_gpu_reads(m) > 0, "a GPU reading completed within 5s");
        host_metrics_add(m, o);
        ok(json_object_object_get_ex(o, "cpu_count", &v) && json_object_get_int64(v) > 0, "cpu_count reported");
        ok(json_object_object_get_ex(o, "mem_total_bytes", &v) && json_object_get_int64(v) > 0, "memory reported");
        ok(json_object_object_get_ex(o, "gpus", &gpus) && json_object_array_length(gpus) == 1, "one GPU reported");
        g0 = json_object_array_get_idx(gpus, 0);
        ok(g0 && json_object_object_get_ex(g0, "utilization_pct", &v) && json_object_get_double(v) == 42,
           "its utilisation");
        ok(g0 && json_object_object_get_ex(g0, "memory_used_bytes", &v) && json_object_get_int64(v) == 1024LL << 20,
           "its memory in bytes");
        ok(g0 && json_object_object_get_ex(g0, "uuid", &v) &&
                   streq(json_object_get_string(v), "GPU-0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"),
           "its uuid, as the slots name it");
        m = host_metrics_free(m);
        sd_event_unref(e);
        fake_smi_remove(&smi);
}

/* A heartbeat's metrics as lease.c makes them, with the GPUs a fake nvidia-smi lists: n_gpus lines
 * with a name of name_len characters and a uuid. Returns the metrics (owned by the caller). */
static json_object *heartbeat_metrics_with_gpus(unsigned n_gpus, size_t name_len) {
        _cleanup_(host_metrics_freep) HostMetrics *m = NULL;
        json_object *o = json_object_new_object();
        char name[200], script[512];
        sd_event *e = NULL;
        FakeSmi smi;

        if (name_len >= sizeof(name))
                tap_bail("name too long");
        memset(name, 'x', name_len);
        name[name_len] = 0;
        snprintf(script, sizeof(script),
                 "#!/bin/sh\ni=0\nwhile [ $i -lt %u ]; do\n"
                 "  printf '%%s, NVIDIA %s, 100, 81000, 81920, GPU-5d4c3b2a-1f0e-4d9c-8b7a-6e5f4d3c%%04d\\n' $i $i\n"
                 "  i=$((i + 1))\ndone\n",
                 n_gpus, name);
        fake_smi_create(&smi, script);
        host_metrics_start(smi.path, 10 * USEC_PER_SEC, &e, &m);
        wait_gpu_reading(e, m);
        if (host_metrics_gpu_reads(m) == 0)
                tap_bail("no GPU reading within 5s");
        json_add_int64(o, "running", 256);
        json_add_int64(o, "finishing", 256);
        json_add_int64(o, "slots", 256);
        json_add_int64(o, "replay_pending", 1000000);
        host_metrics_add(m, o);
        m = host_metrics_free(m);
        sd_event_unref(e);
        fake_smi_remove(&smi);
        return o;
}

static bool has_key(json_object *o, const char *key) {
        json_object *v;
        return json_object_object_get_ex(o, key, &v);
}

/* The control plane refused the whole heartbeat when its metrics were over LIMIT_METRICS_LEN
 * (with about 26 GPUs), so no lease was renewed and every job was lost; it now drops them, so
 * they must fit for the GPU figures to be seen at all. */
static void test_many_gpus_fit_in_the_metrics_limit(void) {
        _cleanup_json_ json_object *few = heartbeat_metrics_with_gpus(8, 40);
        _cleanup_json_ json_object *some = heartbeat_metrics_with_gpus(20, 120);
        _cleanup_json_ json_object *many = heartbeat_metrics_with_gpus(64, 120);
        json_object *gpus, *v;
        size_t len;

        ok(json_object_object_get_ex(few, "gpus", &gpus) && json_object_array_length(gpus) == 8,
           "8 GPUs: all reported");
        ok(gpus && has_key(json_object_array_get_idx(gpus, 7), "name"), "8 GPUs: with their names");
        ok(gpus && json_object_object_get_ex(json_object_array_get_idx(gpus, 7), "uuid", &v) &&
                   streq(json_object_get_string(v), "GPU-5d4c3b2a-1f0e-4d9c-8b7a-6e5f4d3c0007"),
           "8 GPUs: with their uuids");
        ok(!has_key(few, "gpus_omitted"), "8 GPUs: none omitted");

        len = strlen(json_object_to_json_string_ext(some, JSON_C_TO_STRING_PLAIN));
        ok(len <= LIMIT_METRICS_LEN, "20 GPUs with long names: metrics of %zu bytes, within the limit", len);
        ok(json_object_object_get_ex(some, "gpus", &gpus) && json_object_array_length(gpus) == 20 &&
                   !has_key(some, "gpus_omitted"),
           "20 GPUs with long names: all reported");
        ok(gpus && !has_key(json_object_array_get_idx(gpus, 19), "name") &&
                   has_key(json_object_array_get_idx(gpus, 19), "uuid"),
           "20 GPUs: without their names, with their uuids");

        len = strlen(json_object_to_json_string_ext(many, JSON_C_TO_STRING_PLAIN));
        ok(len <= LIMIT_METRICS_LEN, "64 GPUs with long names: metrics of %zu bytes, within the limit of %d", len,
           LIMIT_METRICS_LEN);
        if (!json_object_object_get_ex(many, "gpus", &gpus))
                gpus = NULL;
        ok(gpus && json_object_array_length(gpus) >= 30, "64 GPUs: the first %zu reported",
           gpus ? json_object_array_length(gpus) : 0);
        ok(gpus && !has_key(json_object_array_get_idx(gpus, 0), "name") &&
                   has_key(json_object_array_get_idx(gpus, 0), "utilization_pct"),
           "64 GPUs: their figures without their names");
        ok(gpus && !has_key(json_object_array_get_idx(gpus, 0), "uuid"), "64 GPUs: and without their uuids");
        ok(gpus && json_object_object_get_ex(many, "gpus_omitted", &v) &&
                   (size_t) json_object_get_int64(v) == 64 - json_object_array_length(gpus),
           "gpus_omitted says how many are left out");
        ok(has_key(many, "cpu_count") && has_key(many, "replay_pending"), "the other figures are all there");
}

/* The utilisation of GPU 0 in a heartbeat's metrics, or -1 when they carry no GPU. */
static double reported_utilization(HostMetrics *m) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object *gpus, *v;

        host_metrics_add(m, o);
        if (!json_object_object_get_ex(o, "gpus", &gpus) || json_object_array_length(gpus) < 1 ||
            !json_object_object_get_ex(json_object_array_get_idx(gpus, 0), "utilization_pct", &v))
                return -1;
        return json_object_get_double(v);
}

/* What heartbeats should show, in order, while the fake nvidia-smi answers, hangs, answers,
 * fails, answers; and how far the test got. */
static const double expected_utilizations[] = { 10, -1, 77, -1, 55 };
typedef struct Watch {
        HostMetrics *m;
        size_t reached;
        usec_t hang_cleared_after;
        usec_t start;
} Watch;

static int on_watch(sd_event_source *s, uint64_t usec, void *userdata) {
        Watch *w = userdata;
        double u = reported_utilization(w->m);

        if (u == expected_utilizations[w->reached]) {
                if (w->reached == 1)
                        w->hang_cleared_after = now_monotonic_usec() - w->start;
                if (++w->reached == ELEMENTSOF(expected_utilizations))
                        return sd_event_exit(sd_event_source_get_event(s), 0);
        }
        return sd_event_source_set_time_relative(s, 10 * USEC_PER_MSEC) < 0 ? -1 :
               sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* A hung or failing nvidia-smi used to freeze the figures for good: no timeout, no new reading
 * while the hung one lasted, and heartbeats kept the last figures as current. */
static void test_hung_or_failing_nvidia_smi_drops_the_figures_and_recovers(void) {
        _cleanup_(host_metrics_freep) HostMetrics *m = NULL;
        sd_event_source *watch = NULL, *deadline = NULL;
        sd_event *e = NULL;
        Watch w = {};
        FakeSmi smi;

        /* The hang is a sleep in a child of the script, as a wrapper would have it: killing the
         * script alone would leave the pipe open. */
        fake_smi_create(&smi,
                        "#!/bin/sh\n"
                        "d=$(dirname \"$0\"); n=$(cat \"$d/count\" 2>/dev/null || echo 0); n=$((n + 1)); "
                        "echo $n > \"$d/count\"\n"
                        "case $n in\n"
                        "1) echo '0, Test GPU, 10, 1024, 8192' ;;\n"
                        "2) echo '0, Test GPU, 11, 1024, 8192'; sleep 600 ;;\n"
                        "3) echo '0, Test GPU, 77, 1024, 8192' ;;\n"
                        "4) echo '0, Test GPU, 12, 1024, 8192'; exit 3 ;;\n"
                        "*) echo '0, Test GPU, 55, 1024, 8192' ;;\n"
                        "esac\n");
        host_metrics_start(smi.path, 100 * USEC_PER_MSEC, &e, &m);
        w.m = m;
        w.start = now_monotonic_usec();
        sd_event_add_time_relative(e, &watch, CLOCK_MONOTONIC, 10 * USEC_PER_MSEC, 0, on_watch, &w);
        sd_event_add_time_relative(e, &deadline, CLOCK_MONOTONIC, 20 * USEC_PER_SEC, 0, on_deadline, NULL);
        sd_event_loop(e);
        ok(w.reached >= 1, "the first reading's figures are reported");
        ok(w.reached >= 2, "a hung nvidia-smi is killed and its last figures are no longer reported");
        ok(w.reached < 2 || (w.hang_cleared_after >= 5 * USEC_PER_SEC && w.hang_cleared_after < 10 * USEC_PER_SEC),
           "after the 5s bound (took %.1fs)", (double) w.hang_cleared_after / USEC_PER_SEC);
        ok(w.reached >= 3, "the next reading after the hang is reported");
        ok(w.reached >= 4, "after a reading that exits non-zero, neither its output nor the earlier figures are reported");
        ok(w.reached >= 5, "the next good reading is reported again");
        sd_event_source_unref(watch);
        sd_event_source_unref(deadline);
        m = host_metrics_free(m);
        sd_event_unref(e);
        fake_smi_remove(&smi);
}

static void test_no_nvidia_smi_means_no_gpus(void) {
        _cleanup_(host_metrics_freep) HostMetrics *m = NULL;
        _cleanup_json_ json_object *o = json_object_new_object();
        sd_event *e = NULL;
        json_object *v;
        if (sd_event_new(&e) < 0 || host_metrics_new(e, "/nonexistent/nvidia-smi", 0, &m) < 0)
                tap_bail("set-up");
        host_metrics_add(m, o);
        ok(!json_object_object_get_ex(o, "gpus", &v), "no gpus without nvidia-smi");
        m = host_metrics_free(m);
        sd_event_unref(e);
}

int main(void) {
        test_parsers_read_proc_and_nvidia_smi();
        test_gpu_figures_come_from_nvidia_smi_in_the_background();
        test_hung_or_failing_nvidia_smi_drops_the_figures_and_recovers();
        test_many_gpus_fit_in_the_metrics_limit();
        test_no_nvidia_smi_means_no_gpus();
        return tap_done();
}
