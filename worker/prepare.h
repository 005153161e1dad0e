/* prepare.h: the policy's checks of a claimed job (policy_check(): realpath(), stat() and access()
 * of its command and working directory), each on a thread of its own.
 *
 * On the event loop, a job whose working directory or command was on a file system that does not
 * answer (a hung NFS or FUSE mount: a network partition of its server) held up the whole worker:
 * no heartbeat, no other job, until the watchdog killed it, and then again with the next attempt.
 * Now only that job waits. Its caller gives up at a deadline (path-check-timeout) and fails the
 * job on this worker, to be retried elsewhere; the thread is left to return whenever the file
 * system does. Checks given up on that still hang are counted (preparer_n_hung()): each new job
 * sent to the same mount would hang one more thread, so the worker takes no new job past
 * PREPARER_MAX_HUNG of them. */
#pragma once

#include <systemd/sd-event.h>

#include "macro.h"
#include "policy.h"

#define PREPARER_MAX_HUNG 4

typedef struct Preparer Preparer;
typedef struct Preparation Preparation;

/* What policy_check() gave: its verdict (or -errno), and the strings, which the callback may take
 * (setting them to NULL) or leave to be freed. */
typedef struct PrepareResult {
        int verdict;
        char *exec_path, *workdir, *reason;
} PrepareResult;

/* Called on the event loop, once, unless the preparation was abandoned first. */
typedef void (*prepare_done_t)(void *userdata, PrepareResult *result);

int preparer_new(sd_event *event, Preparer **ret);
/* Checks still running are abandoned: their threads end on their own, on a state of their own. */
Preparer *preparer_free(Preparer *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Preparer *, preparer_free);

/* Starts policy_check() on a copy of the policy and of the strings. */
int preparer_start(Preparer *p, const Policy *policy, const char *command, const char *working_dir, prepare_done_t done,
                   void *userdata, Preparation **ret);
/* Its callback will not be called. hung: given up at its deadline, counted by preparer_n_hung()
 * until its thread returns. */
void preparation_abandon(Preparer *p, Preparation *c, bool hung);
size_t preparer_n_hung(const Preparer *p);
