/* gpu.h: NVIDIA GPU detection and the slot-to-GPU map. The GPUs are those `<nvidia-smi> -L` lists
 * (the --nvidia-smi program, run once at start-up, bounded), named by UUID; a GPU split into MIG
 * devices is replaced by them, each its own GPU. When that program is missing or fails, they are
 * the /dev/nvidia<N> device nodes, named by CUDA ordinal (0 to n-1, as CUDA counts the devices it
 * sees), not by N. The `gpus` setting overrides both. Slot i of the worker gets GPU list[i % n] as
 * CUDA_VISIBLE_DEVICES, which takes ordinals and GPU-/MIG- UUIDs alike. Without `gpus`, a
 * CUDA_VISIBLE_DEVICES in the worker's own environment takes the place of detection. Also the start of
 * nvidia-smi itself, shared with host-metrics.c. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

/* The longest GPU id taken: a GPU-<uuid> is 40 characters, an old MIG-GPU-<uuid>/<gi>/<ci> ~50. */
#define GPU_ID_MAX 96

/* Fills *ret with the GPUs for the slots (ids as gpu_id_is_valid() takes them). override: NULL to
 * detect, {"none"} for no GPUs, or explicit ids. dev_dir is "/dev" except in tests. nvidia_smi:
 * the program asked first (a path, or a name looked up in $PATH); NULL or "": none, the device
 * nodes only. */
int gpu_detect(char **override, const char *dev_dir, const char *nvidia_smi, char ***ret);
/* The GPUs of the worker's own CUDA_VISIBLE_DEVICES (`value`), read as CUDA reads it: entries
 * separated by commas, spaces around them ignored, up to the first entry that is not a GPU id
 * ("0,2,-1,1" is 0 and 2; "" and "-1" are none). *stopped_at: that entry, or NULL when every
 * entry was taken (points into value). 0 or -ENOMEM. */
int gpu_parse_visible(const char *value, char ***ret, const char **stopped_at);
/* CUDA_VISIBLE_DEVICES for a slot, or NULL when there are no GPUs. */
const char *gpu_for_slot(char **gpus, size_t slot);
/* An id CUDA_VISIBLE_DEVICES takes as one entry: an ordinal (digits), GPU-<hex and dashes>, or
 * MIG-<letters, digits, dashes, slashes>; nothing else (a comma would make it two). */
bool gpu_id_is_valid(const char *id);

/* 0 when every entry of a --gpus list is a GPU id, or the list is "none" alone; else logs which
 * entry is not and returns -EINVAL. */
int gpu_override_check(char **gpus);

/* Exposed for tests. The GPUs of `nvidia-smi -L` output, in its order: the UUID of each
 * "GPU <i>: <name> (UUID: GPU-...)" line, or, for a GPU followed by "  MIG <profile> Device <j>:
 * (UUID: MIG-...)" lines, the UUIDs of those instead. Other lines are ignored; a GPU or MIG line
 * without a valid UUID (garbage, output cut short) makes it -EBADMSG. */
int gpu_parse_smi_list(const char *text, char ***ret);
/* CUDA ordinals "0" to "n-1" for the n /dev/nvidia<N> nodes in dev_dir. */
int gpu_detect_dev(const char *dev_dir, char ***ret);

/* The program `name` as the worker runs it, resolved as a job's command is (policy.h: an absolute
 * path, or a bare name looked up in $PATH; canonical). -ENOENT when there is no executable by
 * that name (or name is NULL or empty, or a relative path). */
int gpu_find_program(const char *name, char **ret);
/* In a child just forked: runs argv[0] with stdout on out_fd, stdin and (err_fd < 0) stderr on
 * /dev/null, no other file descriptor, and the signal mask and dispositions a program expects
 * (the worker blocks SIGTERM, SIGINT, SIGHUP and SIGCHLD, and ignores SIGPIPE). */
_noreturn_ void gpu_exec_child(char *const *argv, int out_fd, int err_fd);
