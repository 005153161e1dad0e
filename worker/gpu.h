/* gpu.h: NVIDIA GPU detection. GPUs are found as /dev/nvidia<N> device nodes, or failing that
 * from `<nvidia-smi> -L` (the --nvidia-smi program, run once at start-up, bounded); the `gpus`
 * setting overrides both. Slot i of the worker gets GPU list[i % n] as CUDA_VISIBLE_DEVICES.
 * Also the start of nvidia-smi itself, shared with host-metrics.c. */
#pragma once

#include <stddef.h>

#include "macro.h"

/* Fills *ret with the GPU indices (as strings, sorted). override: NULL to detect, {"none"} for no
 * GPUs, or explicit indices. dev_dir is "/dev" except in tests. nvidia_smi: the program asked when
 * dev_dir has no GPU node (a path, or a name looked up in $PATH); NULL or "": none. */
int gpu_detect(char **override, const char *dev_dir, const char *nvidia_smi, char ***ret);
/* CUDA_VISIBLE_DEVICES for a slot, or NULL when there are no GPUs. */
const char *gpu_for_slot(char **gpus, size_t slot);

/* The program `name` as the worker runs it, resolved as a job's command is (policy.h: an absolute
 * path, or a bare name looked up in $PATH; canonical). -ENOENT when there is no executable by
 * that name (or name is NULL or empty, or a relative path). */
int gpu_find_program(const char *name, char **ret);
/* In a child just forked: runs argv[0] with stdout on out_fd, stdin and (err_fd < 0) stderr on
 * /dev/null, no other file descriptor, and the signal mask and dispositions a program expects
 * (the worker blocks SIGTERM, SIGINT, SIGHUP and SIGCHLD, and ignores SIGPIPE). */
_noreturn_ void gpu_exec_child(char *const *argv, int out_fd, int err_fd);
