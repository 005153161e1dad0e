/* host-metrics.c: CPU, memory and GPU figures for the worker's heartbeats. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fs-util.h"
#include "gpu.h"
#include "host-metrics.h"
#include "json-util.h"
#include "log.h"

#define NVIDIA_SMI_OUTPUT_MAX 65536
#define NVIDIA_SMI_QUERY "--query-gpu=index,name,utilization.gpu,memory.used,memory.total,uuid"
#define NVIDIA_SMI_FORMAT "--format=csv,noheader,nounits"

struct HostMetrics {
        sd_event *event;
        char *nvidia_smi; /* resolved path, or NULL: no GPU figures */
        usec_t gpu_interval;
        sd_event_source *gpu_timer;
        sd_event_source *gpu_io;
        sd_event_source *gpu_child;
        sd_event_source *gpu_deadline; /* kills a reading that takes too long */
        int gpu_fd;
        char *gpu_buf;
        size_t gpu_len;
        char gpu_error[256]; /* why the reading under way failed; empty: it has not */
        GpuSample gpus[HOST_METRICS_MAX_GPUS];
        size_t n_gpus;
        size_t n_gpus_seen;     /* as many as nvidia-smi listed, also those beyond the array */
        size_t gpus_omitted_logged; /* how many were left out of heartbeats when that was last said */
        bool gpus_known;
        bool gpu_failing; /* the last reading failed (said once, until one succeeds) */
        unsigned gpu_reads;
};

int parse_loadavg(const char *text, double *ret_load1) {
        char *end;
        double v;

        errno = 0;
        v = strtod(text, &end);
        if (errno != 0 || end == text || v < 0)
                return -EBADMSG;
        *ret_load1 = v;
        return 0;
}

static int meminfo_field(const char *text, const char *key, uint64_t *ret) {
        size_t n = strlen(key);
        for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
                if (strncmp(p, key, n) == 0 && p[n] == ':') {
                        unsigned long long kib;
                        if (sscanf(p + n + 1, " %llu kB", &kib) != 1)
                                return -EBADMSG;
                        *ret = (uint64_t) kib * 1024;
                        return 0;
                }
        return -ENOENT;
}

int parse_meminfo(const char *text, uint64_t *ret_total, uint64_t *ret_available) {
        uint64_t total, avail;
        int r = meminfo_field(text, "MemTotal", &total);
        if (r < 0)
                return r;
        r = meminfo_field(text, "MemAvailable", &avail);
        if (r < 0)
                return r;
        *ret_total = total;
        *ret_available = MIN(avail, total);
        return 0;
}

static char *trim(char *s) {
        char *e;
        while (isspace((unsigned char) *s))
                s++;
        e = s + strlen(s);
        while (e > s && isspace((unsigned char) e[-1]))
                *--e = 0;
        return s;
}

/* One CSV line: index, name, utilization.gpu, memory.used, memory.total, uuid. Fields nvidia-smi
 * cannot read come as "[N/A]" or "[Not Supported]": those read as 0. The uuid (the slots' name for
 * the GPU when nvidia-smi listed them, gpu.h) may be missing (a wrapper given as --nvidia-smi that
 * answers the five fields asked before) or unusable: then the figures go without it. */
static int parse_gpu_line(char *line, GpuSample *g) {
        char *f[6];
        size_t n = 0;
        for (char *p = line; n < 6; n++) {
                f[n] = p;
                p = strchr(p, ',');
                if (!p) {
                        n++;
                        break;
                }
                *p++ = 0;
        }
        if (n < 5)
                return -EBADMSG;
        for (size_t i = 0; i < n; i++)
                f[i] = trim(f[i]);
        char *end;
        unsigned long idx = strtoul(f[0], &end, 10);
        if (end == f[0] || *end || idx > 1024)
                return -EBADMSG;
        *g = (GpuSample){ .index = (unsigned) idx };
        snprintf(g->name, sizeof(g->name), "%s", f[1]);
        g->utilization_pct = CLAMP(strtod(f[2], NULL), 0.0, 100.0);
        g->memory_used_bytes = (uint64_t) strtoull(f[3], NULL, 10) * 1024 * 1024;
        g->memory_total_bytes = (uint64_t) strtoull(f[4], NULL, 10) * 1024 * 1024;
        if (n == 6 && gpu_id_is_valid(f[5]))
                snprintf(g->uuid, sizeof(g->uuid), "%s", f[5]);
        return 0;
}

int parse_nvidia_smi_csv(const char *text, GpuSample *gpus, size_t max, size_t *ret_n, size_t *ret_total) {
        _cleanup_free_ char *copy = strdup(text);
        size_t n = 0, total = 0;
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                if (isempty(trim(line)))
                        continue;
                total++;
                if (n >= max) /* counted, to say how many are left out */
                        continue;
                int r = parse_gpu_line(line, &gpus[n]);
                if (r < 0)
                        return r;
                n++;
        }
        *ret_n = n;
        if (ret_total)
                *ret_total = total;
        return 0;
}

/* ---- nvidia-smi in the background ----
 *
 * A reading is one nvidia-smi process, over once its output has ended and it has been reaped. Its
 * figures replace the last ones only if it exited 0 and printed what was asked. A reading that
 * fails, or runs past its deadline (then it is killed, with whatever it started), leaves no
 * figures at all: a heartbeat says nothing of the GPUs rather than repeat old figures as current.
 * The next tick starts a new reading once the old process is gone. */

/* How long a reading may take: until the next one is due, but at least 5s (nvidia-smi takes
 * seconds on a large host without persistence mode) and at most a minute. */
static usec_t gpu_timeout(const HostMetrics *m) {
        return CLAMP(m->gpu_interval, 5 * USEC_PER_SEC, USEC_PER_MINUTE);
}

static bool gpu_reading(const HostMetrics *m) {
        return m->gpu_child || m->gpu_io;
}

static void gpu_close_output(HostMetrics *m) {
        m->gpu_io = sd_event_source_disable_unref(m->gpu_io);
        if (m->gpu_fd >= 0)
                close(m->gpu_fd);
        m->gpu_fd = -EBADF;
}

/* Notes why this reading failed; the first reason is the one told. */
static void gpu_fail(HostMetrics *m, const char *format, ...) _printf_(2, 3);
static void gpu_fail(HostMetrics *m, const char *format, ...) {
        va_list ap;

        if (m->gpu_error[0])
                return;
        va_start(ap, format);
        vsnprintf(m->gpu_error, sizeof(m->gpu_error), format, ap);
        va_end(ap);
}

/* No figures rather than old ones; said once per run of failures, not at every tick. */
static void gpu_forget(HostMetrics *m) {
        m->gpus_known = false;
        m->n_gpus = 0;
        if (!m->gpu_failing)
                log_warning("No GPU figures from %s: %s. Heartbeats carry none until it answers again.",
                            m->nvidia_smi, m->gpu_error);
        m->gpu_failing = true;
}

static void gpu_read_finish(HostMetrics *m) {
        size_t n = 0, total = 0;

        if (gpu_reading(m))
                return;
        if (m->gpu_deadline)
                (void) sd_event_source_set_enabled(m->gpu_deadline, SD_EVENT_OFF);
        if (!m->gpu_error[0] &&
            parse_nvidia_smi_csv(strempty(m->gpu_buf), m->gpus, HOST_METRICS_MAX_GPUS, &n, &total) < 0)
                gpu_fail(m, "it printed something unexpected");
        if (m->gpu_error[0])
                gpu_forget(m);
        else {
                if (m->gpu_failing)
                        log_info("%s answers again: heartbeats carry GPU figures.", m->nvidia_smi);
                m->n_gpus = n;
                m->n_gpus_seen = total;
                m->gpus_known = true;
                m->gpu_failing = false;
        }
        free(m->gpu_buf);
        m->gpu_buf = NULL;
        m->gpu_len = 0;
        m->gpu_error[0] = 0;
        m->gpu_reads++;
}

static int on_gpu_output(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        HostMetrics *m = userdata;
        char buf[4096];
        ssize_t k = read(fd, buf, sizeof(buf));

        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (k < 0)
                gpu_fail(m, "reading its output failed: %s", strerror(errno));
        else if (k > 0 && m->gpu_len + (size_t) k > NVIDIA_SMI_OUTPUT_MAX)
                gpu_fail(m, "it printed more than %d bytes", NVIDIA_SMI_OUTPUT_MAX);
        if (k > 0 && !m->gpu_error[0]) {
                char *nb = realloc(m->gpu_buf, m->gpu_len + (size_t) k + 1);
                if (nb) {
                        memcpy(nb + m->gpu_len, buf, (size_t) k);
                        m->gpu_len += (size_t) k;
                        nb[m->gpu_len] = 0;
                        m->gpu_buf = nb;
                        return 0;
                }
                gpu_fail(m, "out of memory");
        }
        gpu_close_output(m); /* end of output, or no use reading on */
        gpu_read_finish(m);
        return 0;
}

static int on_gpu_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        HostMetrics *m = userdata;

        m->gpu_child = sd_event_source_disable_unref(m->gpu_child);
        if (si->si_code == CLD_EXITED && si->si_status != 0)
                gpu_fail(m, "it exited with status %d", si->si_status);
        else if (si->si_code != CLD_EXITED)
                gpu_fail(m, "it was killed by signal %s", strsignal(si->si_status));
        gpu_read_finish(m);
        return 0;
}

bool host_metrics_is_probe(pid_t pid, void *userdata) {
        HostMetrics *m = userdata;
        pid_t probe = 0;

        return m && m->gpu_child && sd_event_source_get_child_pid(m->gpu_child, &probe) >= 0 && probe == pid;
}

/* Kills the reading's process group: nvidia-smi, or a wrapper script and what it started. Only
 * while the child is not reaped, so that the group id is still ours. */
static void gpu_kill(HostMetrics *m) {
        pid_t pid = 0;

        if (!m->gpu_child || sd_event_source_get_child_pid(m->gpu_child, &pid) < 0 || pid <= 0)
                return;
        (void) kill(-pid, SIGKILL);
        (void) kill(pid, SIGKILL); /* in case it is not (yet) a group leader */
}

/* Gives up the reading under way (gpu_fail() said why): its output is no longer read and its
 * figures go now, even if its killed process is stuck in the kernel and is reaped only later. */
static void gpu_abandon(HostMetrics *m) {
        gpu_close_output(m);
        gpu_forget(m);
        gpu_read_finish(m);
}

static int on_gpu_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        HostMetrics *m = userdata;
        char span[64];

        if (!gpu_reading(m))
                return 0;
        gpu_fail(m, "it did not answer within %s, and was killed",
                 format_timespan(span, sizeof(span), gpu_timeout(m)));
        gpu_kill(m);
        /* Not waiting for the end of the output, which a process it started may hold open. */
        gpu_abandon(m);
        return 0;
}

static int gpu_arm_deadline(HostMetrics *m) {
        int r;

        if (!m->gpu_deadline) {
                r = sd_event_add_time_relative(m->event, &m->gpu_deadline, CLOCK_MONOTONIC, gpu_timeout(m),
                                               100 * USEC_PER_MSEC, on_gpu_deadline, m);
                if (r >= 0)
                        (void) sd_event_source_set_description(m->gpu_deadline, "nvidia-smi-deadline");
                return r;
        }
        r = sd_event_source_set_time_relative(m->gpu_deadline, gpu_timeout(m));
        if (r >= 0)
                r = sd_event_source_set_enabled(m->gpu_deadline, SD_EVENT_ONESHOT);
        return r;
}

static int gpu_spawn(HostMetrics *m) {
        int p[2], r;
        pid_t pid;

        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                r = -errno;
                close(p[0]);
                close(p[1]);
                return r;
        }
        if (pid == 0) {
                char *argv[] = { m->nvidia_smi, (char *) NVIDIA_SMI_QUERY, (char *) NVIDIA_SMI_FORMAT, NULL };
                (void) setpgid(0, 0); /* its own group, for gpu_kill() */
                gpu_exec_child(argv, p[1], -EBADF);
        }
        (void) setpgid(pid, pid); /* also here, so that the group exists whichever runs first */
        close(p[1]);
        m->gpu_fd = p[0];
        r = sd_event_add_io(m->event, &m->gpu_io, p[0], EPOLLIN, on_gpu_output, m);
        if (r >= 0)
                r = sd_event_add_child(m->event, &m->gpu_child, pid, WEXITED, on_gpu_exit, m);
        if (r >= 0)
                r = gpu_arm_deadline(m);
        if (r < 0) {
                /* Without a deadline it could hang unnoticed: end it, the next tick tries again. */
                (void) kill(-pid, SIGKILL);
                (void) kill(pid, SIGKILL);
                if (!m->gpu_child)
                        (void) waitpid(pid, NULL, 0);
                gpu_fail(m, "it could not be watched: %s", strerror(-r));
                gpu_abandon(m);
        }
        return r;
}

static int on_gpu_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        HostMetrics *m = userdata;
        int r;

        if (gpu_reading(m)) /* the last one is not over (or its killed process not reaped yet) */
                log_debug("%s is still running; no new GPU reading.", m->nvidia_smi);
        else {
                r = gpu_spawn(m);
                if (r < 0)
                        log_debug_errno(r, "Cannot run %s: %m", m->nvidia_smi);
        }
        r = sd_event_source_set_time_relative(s, m->gpu_interval);
        if (r >= 0)
                r = sd_event_source_set_enabled(s, SD_EVENT_ON);
        if (r < 0) {
                /* A timer left in the past would fire in a loop. */
                log_error_errno(r, "Cannot schedule the next GPU reading; GPU figures stop: %m");
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
                gpu_fail(m, "the next reading could not be scheduled");
                gpu_forget(m);
        }
        return 0;
}

int host_metrics_new(sd_event *e, const char *nvidia_smi, usec_t gpu_interval, HostMetrics **ret) {
        _cleanup_(host_metrics_freep) HostMetrics *m = calloc(1, sizeof(HostMetrics));
        int r;

        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(e);
        m->gpu_fd = -EBADF;
        m->gpu_interval = gpu_interval > 0 ? gpu_interval : 10 * USEC_PER_SEC;
        r = gpu_find_program(nvidia_smi, &m->nvidia_smi);
        if (r < 0 && r != -ENOENT)
                return r;
        if (m->nvidia_smi) {
                /* First reading at once, so the first heartbeats already carry it. */
                r = sd_event_add_time_relative(e, &m->gpu_timer, CLOCK_MONOTONIC, 0, USEC_PER_MSEC, on_gpu_timer, m);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_enabled(m->gpu_timer, SD_EVENT_ON);
                (void) sd_event_source_set_description(m->gpu_timer, "nvidia-smi");
                log_debug("GPU figures from %s every %llus.", m->nvidia_smi,
                          (unsigned long long) (m->gpu_interval / USEC_PER_SEC));
        }
        *ret = TAKE_PTR(m);
        return 0;
}

HostMetrics *host_metrics_free(HostMetrics *m) {
        if (!m)
                return NULL;
        if (m->gpu_child) {
                pid_t pid = 0;
                if (sd_event_source_get_child_pid(m->gpu_child, &pid) >= 0 && pid > 0) {
                        gpu_kill(m);
                        (void) waitpid(pid, NULL, 0);
                }
                m->gpu_child = sd_event_source_disable_unref(m->gpu_child);
        }
        m->gpu_io = sd_event_source_disable_unref(m->gpu_io);
        m->gpu_timer = sd_event_source_disable_unref(m->gpu_timer);
        m->gpu_deadline = sd_event_source_disable_unref(m->gpu_deadline);
        if (m->gpu_fd >= 0)
                close(m->gpu_fd);
        free(m->gpu_buf);
        free(m->nvidia_smi);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

unsigned host_metrics_gpu_reads(const HostMetrics *m) {
        return m ? m->gpu_reads : 0;
}

static size_t json_plain_len(json_object *o) {
        const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        return t ? strlen(t) : SIZE_MAX;
}

/* How much of a GPU's entry goes beyond its figures, when not all of it fits. */
typedef enum GpuDetail {
        GPU_DETAIL_FIGURES, /* index and figures */
        GPU_DETAIL_UUID,    /* and the uuid */
        GPU_DETAIL_FULL,    /* and the model name */
} GpuDetail;

static json_object *gpu_entry(const GpuSample *g, GpuDetail detail) {
        json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        json_add_int64(o, "index", g->index);
        if (detail >= GPU_DETAIL_UUID && g->uuid[0])
                json_add_string(o, "uuid", g->uuid);
        if (detail >= GPU_DETAIL_FULL)
                json_add_string(o, "name", g->name);
        json_add_double(o, "utilization_pct", g->utilization_pct);
        json_add_int64(o, "memory_used_bytes", (int64_t) g->memory_used_bytes);
        json_add_int64(o, "memory_total_bytes", (int64_t) g->memory_total_bytes);
        return o;
}

/* The entries of the first GPUs, in nvidia-smi's order, that fit in `room` bytes (commas
 * counted); *ret_n says how many. NULL on allocation failure. */
static json_object *gpu_entries(const HostMetrics *m, GpuDetail detail, size_t room, size_t *ret_n) {
        json_object *a = json_object_new_array();
        size_t used = 0, n = 0;

        if (!a)
                return NULL;
        for (; n < m->n_gpus; n++) {
                json_object *g = gpu_entry(&m->gpus[n], detail);
                size_t len = g ? json_plain_len(g) : SIZE_MAX;
                if (len == SIZE_MAX || len + 1 > room - used || json_object_array_add(a, g) < 0) {
                        json_object_put(g);
                        break;
                }
                used += len + 1;
        }
        *ret_n = n;
        return a;
}

/* What "gpus" adds besides its entries, and "gpus_omitted" with any count. */
#define GPUS_OVERHEAD (sizeof(",\"gpus\":[]") - 1 + sizeof(",\"gpus_omitted\":") - 1 + 20)

static void add_gpus(HostMetrics *m, json_object *metrics) {
        size_t base = json_plain_len(metrics), room = 0, n = 0, omitted;
        json_object *a;

        if (base < LIMIT_METRICS_LEN && LIMIT_METRICS_LEN - base > GPUS_OVERHEAD)
                room = LIMIT_METRICS_LEN - base - GPUS_OVERHEAD;
        /* The figures of every GPU are worth more than their model names, then their UUIDs. */
        for (GpuDetail d = GPU_DETAIL_FULL;; d--) {
                a = gpu_entries(m, d, room, &n);
                if (!a || n == m->n_gpus || d == GPU_DETAIL_FIGURES)
                        break;
                json_object_put(a);
        }
        if (!a)
                return;
        json_object_object_add(metrics, "gpus", a);
        omitted = m->n_gpus_seen > n ? m->n_gpus_seen - n : 0;
        if (omitted > 0)
                json_add_int64(metrics, "gpus_omitted", (int64_t) omitted);
        if (omitted != m->gpus_omitted_logged) {
                if (omitted > 0)
                        log_notice("Heartbeats report %zu of %zu GPUs, the most that fit in %d bytes of metrics.", n,
                                   m->n_gpus_seen, LIMIT_METRICS_LEN);
                m->gpus_omitted_logged = omitted;
        }
}

void host_metrics_add(HostMetrics *m, json_object *metrics) {
        _cleanup_free_ char *loadavg = NULL, *meminfo = NULL;
        uint64_t total, avail;
        double load1;
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);

        if (read_full_file("/proc/loadavg", 4096, &loadavg, NULL) >= 0 && parse_loadavg(loadavg, &load1) >= 0)
                json_add_double(metrics, "cpu_load1", load1);
        if (cpus > 0)
                json_add_int64(metrics, "cpu_count", cpus);
        if (read_full_file("/proc/meminfo", 65536, &meminfo, NULL) >= 0 &&
            parse_meminfo(meminfo, &total, &avail) >= 0) {
                json_add_int64(metrics, "mem_total_bytes", (int64_t) total);
                json_add_int64(metrics, "mem_used_bytes", (int64_t) (total - avail));
        }
        if (m && m->gpus_known)
                add_gpus(m, metrics);
}
