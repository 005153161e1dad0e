/* host-metrics.h: what a worker reports of its host with each heartbeat: CPU load and count,
 * memory, and each GPU's utilisation and memory where nvidia-smi answers. The GPU figures come from
 * nvidia-smi run in the background every interval (never blocking the loop) and are sent as last
 * read; a host without nvidia-smi reports no "gpus". A reading that fails, or is killed for taking
 * longer than the interval (at least 5s, at most 1min), leaves no "gpus" until one succeeds. */
#pragma once

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "gpu.h"
#include "macro.h"
#include "protocol.h"
#include "time-util.h"

/* The control plane takes heartbeat metrics of at most LIMIT_METRICS_LEN bytes. A GPU's entry in
 * "gpus" takes at least this many (with its comma), so no more GPUs than that could ever be
 * reported, and no more are read. */
#define HOST_METRICS_GPU_ENTRY_MIN \
        (sizeof("{\"index\":0,\"utilization_pct\":0.0,\"memory_used_bytes\":0,\"memory_total_bytes\":0},") - 1)
#define HOST_METRICS_MAX_GPUS (LIMIT_METRICS_LEN / HOST_METRICS_GPU_ENTRY_MIN)

typedef struct GpuSample {
        unsigned index;
        char name[128];
        char uuid[GPU_ID_MAX + 1]; /* GPU-<uuid>, or empty: not given */
        double utilization_pct;
        uint64_t memory_used_bytes;
        uint64_t memory_total_bytes;
} GpuSample;

typedef struct HostMetrics HostMetrics;

/* nvidia_smi: a path, or a name looked up in $PATH; NULL or "" turns GPU figures off. */
int host_metrics_new(sd_event *e, const char *nvidia_smi, usec_t gpu_interval, HostMetrics **ret);
HostMetrics *host_metrics_free(HostMetrics *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(HostMetrics *, host_metrics_free);

/* Adds cpu_load1, cpu_count, mem_total_bytes, mem_used_bytes and, once read, gpus: [{index, uuid,
 * name, utilization_pct, memory_used_bytes, memory_total_bytes}] to a heartbeat's metrics object;
 * to be called last, since it keeps the whole object within LIMIT_METRICS_LEN bytes (as
 * serialized), or the control plane would not store it. index is nvidia-smi's; uuid is the GPU's
 * UUID, the name the slots' CUDA_VISIBLE_DEVICES use when detection went by nvidia-smi (a slot on
 * a MIG device has its GPU's figures, under the GPU's uuid; with --gpus or the device nodes the
 * slots have ordinals). When not every GPU fits, the entries go without their names, then without their
 * uuids, then the last GPUs go, and gpus_omitted says how many are left out. */
void host_metrics_add(HostMetrics *m, json_object *metrics);
/* Whether pid is the GPU reading's process, not yet reaped (sd-event reaps it). */
bool host_metrics_is_probe(pid_t pid, void *userdata);
/* How many GPU readings have completed (for tests). */
unsigned host_metrics_gpu_reads(const HostMetrics *m);

/* The parsers, exposed for tests. */
int parse_loadavg(const char *text, double *ret_load1);
int parse_meminfo(const char *text, uint64_t *ret_total, uint64_t *ret_available);
/* nvidia-smi --query-gpu=index,name,utilization.gpu,memory.used,memory.total,uuid
 *            --format=csv,noheader,nounits   (memory in MiB; uuid optional)
 * Reads the first `max` GPUs into gpus (*ret_n of them); *ret_total counts every GPU line. */
int parse_nvidia_smi_csv(const char *text, GpuSample *gpus, size_t max, size_t *ret_n, size_t *ret_total);
