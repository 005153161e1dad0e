/* gpu.h: NVIDIA GPU detection. GPUs are found as /dev/nvidia<N> device nodes, or failing that
 * from `nvidia-smi -L` (run once at start-up, bounded); the `gpus` setting overrides both. Slot i
 * of the worker gets GPU list[i % n] as CUDA_VISIBLE_DEVICES. */
#pragma once

#include <stddef.h>

/* Fills *ret with the GPU indices (as strings, sorted). override: NULL to detect, {"none"} for no
 * GPUs, or explicit indices. dev_dir is "/dev" except in tests. */
int gpu_detect(char **override, const char *dev_dir, char ***ret);
/* CUDA_VISIBLE_DEVICES for a slot, or NULL when there are no GPUs. */
const char *gpu_for_slot(char **gpus, size_t slot);
