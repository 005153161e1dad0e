/* host-metrics.c: CPU, memory and GPU figures for the worker's heartbeats. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
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
#define NVIDIA_SMI_QUERY "--query-gpu=index,name,utilization.gpu,memory.used,memory.total"
#define NVIDIA_SMI_FORMAT "--format=csv,noheader,nounits"

struct HostMetrics {
        sd_event *event;
        char *nvidia_smi; /* resolved path, or NULL: no GPU figures */
        usec_t gpu_interval;
        sd_event_source *gpu_timer;
        sd_event_source *gpu_io;
        sd_event_source *gpu_child;
        int gpu_fd;
        char *gpu_buf;
        size_t gpu_len;
        GpuSample gpus[HOST_METRICS_MAX_GPUS];
        size_t n_gpus;
        bool gpus_known;
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

/* One CSV line: index, name, utilization.gpu, memory.used, memory.total. Fields nvidia-smi cannot
 * read come as "[N/A]" or "[Not Supported]": those read as 0. */
static int parse_gpu_line(char *line, GpuSample *g) {
        char *f[5];
        size_t n = 0;
        for (char *p = line; n < 5; n++) {
                f[n] = p;
                p = strchr(p, ',');
                if (!p) {
                        n++;
                        break;
                }
                *p++ = 0;
        }
        if (n != 5)
                return -EBADMSG;
        for (size_t i = 0; i < 5; i++)
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
        return 0;
}

int parse_nvidia_smi_csv(const char *text, GpuSample *gpus, size_t max, size_t *ret_n) {
        _cleanup_free_ char *copy = strdup(text);
        size_t n = 0;
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                if (isempty(trim(line)))
                        continue;
                if (n >= max)
                        break;
                int r = parse_gpu_line(line, &gpus[n]);
                if (r < 0)
                        return r;
                n++;
        }
        *ret_n = n;
        return 0;
}

/* ---- nvidia-smi in the background ---- */

static void gpu_read_done(HostMetrics *m) {
        size_t n = 0;
        m->gpu_io = sd_event_source_disable_unref(m->gpu_io);
        if (m->gpu_fd >= 0) {
                close(m->gpu_fd);
                m->gpu_fd = -EBADF;
        }
        if (m->gpu_buf && parse_nvidia_smi_csv(m->gpu_buf, m->gpus, HOST_METRICS_MAX_GPUS, &n) >= 0) {
                m->n_gpus = n;
                m->gpus_known = true;
        } else if (m->gpu_buf)
                log_debug("nvidia-smi printed something unexpected; keeping the last GPU figures.");
        free(m->gpu_buf);
        m->gpu_buf = NULL;
        m->gpu_len = 0;
        m->gpu_reads++;
}

static int on_gpu_output(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        HostMetrics *m = userdata;
        char buf[4096];
        ssize_t k = read(fd, buf, sizeof(buf));

        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (k <= 0 || m->gpu_len + (size_t) k > NVIDIA_SMI_OUTPUT_MAX) {
                gpu_read_done(m);
                return 0;
        }
        char *nb = realloc(m->gpu_buf, m->gpu_len + (size_t) k + 1);
        if (!nb) {
                gpu_read_done(m);
                return 0;
        }
        memcpy(nb + m->gpu_len, buf, (size_t) k);
        m->gpu_len += (size_t) k;
        nb[m->gpu_len] = 0;
        m->gpu_buf = nb;
        return 0;
}

static int on_gpu_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        HostMetrics *m = userdata;
        m->gpu_child = sd_event_source_disable_unref(m->gpu_child);
        if (si->si_code != CLD_EXITED || si->si_status != 0)
                log_debug("nvidia-smi exited abnormally (code %d, status %d).", si->si_code, si->si_status);
        return 0;
}

static int gpu_spawn(HostMetrics *m) {
        int p[2], r;
        pid_t pid;

        if (m->gpu_child || m->gpu_io) /* the previous reading has not finished: skip this one */
                return 0;
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
                gpu_exec_child(argv, p[1], -EBADF);
        }
        close(p[1]);
        m->gpu_fd = p[0];
        r = sd_event_add_io(m->event, &m->gpu_io, p[0], EPOLLIN, on_gpu_output, m);
        if (r >= 0)
                r = sd_event_add_child(m->event, &m->gpu_child, pid, WEXITED, on_gpu_exit, m);
        if (r < 0) {
                (void) kill(pid, SIGKILL);
                gpu_read_done(m);
        }
        return r;
}

static int on_gpu_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        HostMetrics *m = userdata;
        int r = gpu_spawn(m);
        if (r < 0)
                log_debug_errno(r, "Cannot run %s: %m", m->nvidia_smi);
        (void) sd_event_source_set_time_relative(s, m->gpu_interval);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
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
                        (void) kill(pid, SIGKILL);
                        (void) waitpid(pid, NULL, 0);
                }
                m->gpu_child = sd_event_source_disable_unref(m->gpu_child);
        }
        m->gpu_io = sd_event_source_disable_unref(m->gpu_io);
        m->gpu_timer = sd_event_source_disable_unref(m->gpu_timer);
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
        if (!m || !m->gpus_known)
                return;
        json_object *a = json_object_new_array();
        for (size_t i = 0; i < m->n_gpus; i++) {
                json_object *g = json_object_new_object();
                json_add_int64(g, "index", m->gpus[i].index);
                json_add_string(g, "name", m->gpus[i].name);
                json_add_double(g, "utilization_pct", m->gpus[i].utilization_pct);
                json_add_int64(g, "memory_used_bytes", (int64_t) m->gpus[i].memory_used_bytes);
                json_add_int64(g, "memory_total_bytes", (int64_t) m->gpus[i].memory_total_bytes);
                json_object_array_add(a, g);
        }
        json_object_object_add(metrics, "gpus", a);
}
