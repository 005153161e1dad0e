/* test-worker-settings.c: the bounds entropy-worker puts on its time spans, what log-retention=0
 * means (keep for ever, as the control plane's retention 0 does), the GPU ids --gpus takes, the
 * worker ids it refuses at start, and max-output-size. */
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "protocol.h"
#include "tap.h"
#include "worker-settings.h"

/* worker_settings_load() with one option given on the command line: its result, and in *ret the
 * value loaded into the field at `offset` (a usec_t). */
static int load_span(const char *option, size_t offset, usec_t *ret) {
        WorkerSettings s = {};
        char *argv[] = { (char *) "entropy-worker", (char *) "--config=", (char *) "--worker-id=w1",
                         (char *) option, NULL };
        int r = worker_settings_load(&s, (int) ELEMENTSOF(argv) - 1, argv);
        if (r == 0 && ret)
                *ret = *(usec_t *) ((char *) &s + offset);
        worker_settings_free(&s);
        return r;
}

#define accepted(option, field, want)                                                                   \
        do {                                                                                            \
                usec_t v_ = 0;                                                                          \
                int r_ = load_span(option, offsetof(WorkerSettings, field), &v_);                       \
                ok(r_ == 0 && v_ == (want), "%s accepted (r=%d, value %llu)", option, r_,               \
                   (unsigned long long) v_);                                                            \
        } while (0)
#define refused(option) ok(load_span(option, 0, NULL) != 0, "%s refused", option)

static void test_defaults_load(void) {
        accepted("--slots=1", log_retention, 7 * USEC_PER_DAY);
}

static void test_log_retention(void) {
        accepted("--log-retention=0", log_retention, 0);
        accepted("--log-retention=infinity", log_retention, USEC_INFINITY);
        accepted("--log-retention=1h", log_retention, USEC_PER_HOUR);
        refused("--log-retention=30min");
        refused("--log-retention=1s");
}

static void test_wake_window(void) {
        refused("--wake-window=0");
        refused("--wake-window=500ms");
        refused("--wake-window=2h");
        accepted("--wake-window=1s", wake_window, USEC_PER_SEC);
        accepted("--wake-window=1h", wake_window, USEC_PER_HOUR);
}

static void test_gpu_metrics_interval(void) {
        refused("--gpu-metrics-interval=1us");
        refused("--gpu-metrics-interval=0");
        refused("--gpu-metrics-interval=2h");
        refused("--gpu-metrics-interval=infinity");
        accepted("--gpu-metrics-interval=1s", gpu_metrics_interval, USEC_PER_SEC);
}

/* --gpus takes what CUDA_VISIBLE_DEVICES takes as one entry: indices and nvidia-smi's UUIDs. */
static void test_gpus(void) {
        ok(load_span("--gpus=0,1", 0, NULL) == 0, "--gpus=0,1 accepted");
        ok(load_span("--gpus=none", 0, NULL) == 0, "--gpus=none accepted");
        ok(load_span("--gpus=GPU-5d4c3b2a-1f0e-4d9c-8b7a-6e5f4d3c2b1a, MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f", 0,
                     NULL) == 0,
           "--gpus with GPU- and MIG- UUIDs accepted");
        refused("--gpus=cuda:0");
        refused("--gpus=GPU-not-hex");
        refused("--gpus=0,none");
        refused("--gpus=-1");
}

/* The control plane's /register refuses these; the worker says so at start, not at every retry. */
static void test_worker_id(void) {
        ok(load_span("--worker-id=w\xc3\xb6rker-2", 0, NULL) == 0, "a UTF-8 worker id accepted");
        refused("--worker-id=two words");
        refused("--worker-id=tab\there");
        refused("--worker-id=del\x7f");
        char long_id[sizeof("--worker-id=") + LIMIT_ID_LEN + 1] = "--worker-id=";
        memset(long_id + strlen(long_id), 'x', LIMIT_ID_LEN + 1);
        refused(long_id);
}

/* Bytes, as --max-body-size of entropy-control takes them: no suffixes, no negative sizes. */
static void test_max_output_size(void) {
        WorkerSettings s = {};
        char *argv[] = { (char *) "entropy-worker", (char *) "--config=", (char *) "--worker-id=w1", NULL };

        int r = worker_settings_load(&s, (int) ELEMENTSOF(argv) - 1, argv);

        ok(r == 0 && s.max_output_size == 0, "no limit by default (r=%d, %lld)", r, (long long) s.max_output_size);
        worker_settings_free(&s);
        /* load_span() reads the field as a usec_t: as wide as int64_t, and these are not negative. */
        accepted("--max-output-size=0", max_output_size, 0);
        accepted("--max-output-size=65536", max_output_size, 65536);
        accepted("--max-output-size=9223372036854775807", max_output_size, INT64_MAX);
        refused("--max-output-size=-1");
        refused("--max-output-size=1G");
        refused("--max-output-size=");
        refused("--max-output-size=9223372036854775808");
}

static void test_lease_heartbeat_and_grace(void) {
        refused("--heartbeat-interval=2min");
        accepted("--heartbeat-interval=1min", heartbeat_interval, USEC_PER_MINUTE);
        refused("--lease-timeout=infinity");
        refused("--lease-timeout=2h");
        refused("--lease-timeout=0");
        accepted("--lease-timeout=1h", lease_timeout, USEC_PER_HOUR);
        refused("--kill-grace=infinity");
        refused("--kill-grace=2h");
        accepted("--kill-grace=0", kill_grace, 0);
}

int main(void) {
        test_defaults_load();
        test_log_retention();
        test_wake_window();
        test_gpu_metrics_interval();
        test_gpus();
        test_worker_id();
        test_lease_heartbeat_and_grace();
        test_max_output_size();
        return tap_done();
}
