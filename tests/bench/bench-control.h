/* bench-control.h: the entropy-control under test. Either spawned by the bench from the build tree
 * (fresh tokens, a free loopback port, a database in the work directory, READY=1 awaited on a
 * private NOTIFY_SOCKET) or an already running one named by --url. Job counts per state come from
 * its public API (GET /metrics), never from its database file. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "bench-proc.h"
#include "bench.h"
#include "protocol.h"

typedef struct ControlPlane {
        uint16_t port;
        char *admin_token, *worker_token;
        char *dir;   /* state directory: database, token files, log */
        char **argv; /* how it was started, for restarts */
        Child child;
        bool spawned; /* by the bench (else --url) */
        pid_t pid;    /* for memory figures; 0 when unknown */
} ControlPlane;

/* Prepares (tokens, port, command line) without starting; with --url, connects nothing yet. */
int control_plane_setup(ControlPlane *cp, const BenchSettings *s, const char *workdir);
/* Spawns it and waits for READY=1; *ret_startup is exec-to-READY time. No-op with --url. */
int control_plane_start(ControlPlane *cp, usec_t *ret_startup);
/* SIGTERM and wait (bounded). */
int control_plane_stop(ControlPlane *cp);
void control_plane_done(ControlPlane *cp);
/* Peak and current RSS in KiB; -ENODATA when the pid is unknown. */
int control_plane_memory(ControlPlane *cp, uint64_t *ret_hwm, uint64_t *ret_rss);
/* Its CPU time so far (user + system), or -ENODATA when its pid is unknown. */
int control_plane_cpu(ControlPlane *cp, usec_t *ret);
/* Jobs per state, from GET /metrics. */
int control_plane_count_jobs(ControlPlane *cp, uint64_t counts[_JOB_STATE_MAX]);
/* The value of an unlabelled counter of GET /metrics (-ENODATA when it is not there). */
int control_plane_metric(ControlPlane *cp, const char *name, uint64_t *ret);

/* Submits n jobs running `true` through POST /jobs, with `clients` requests in flight (the
 * preload and the end-to-end run use it). *ret_done is how many were accepted. */
int control_plane_submit(ControlPlane *cp, size_t clients, uint64_t n, uint64_t *ret_done);
