/* job-cgroup.h: a cgroup of its own for each job, below the worker's, so that everything a job
 * started ends with it. Signalling the job's process group misses what left the group: a
 * setsid(), a daemon's double fork. Such a process would run on after its job was recorded as
 * over, holding its GPU or writing to its files beside the job's rerun; in a cgroup it cannot
 * leave (as the worker's user, without meaning to), cgroup.kill ends it with the rest.
 *
 * Needs cgroup v2 and a cgroup the worker may create cgroups in: delegated to it by systemd
 * (Delegate=yes, as entropy-worker.service has), or any writable one with job-cgroups=yes.
 * Without one, the process group is all the worker has (job-cgroups=auto says so at start-up).
 *
 * Each job's cgroup is "job-N" in the worker's own cgroup, N counted by this process: an earlier
 * process's are swept (killed and removed) at start-up, before any job starts. */
#pragma once

#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "macro.h"

typedef enum JobCgroupsMode {
        JOB_CGROUPS_AUTO, /* where the worker's cgroup is delegated to it */
        JOB_CGROUPS_YES,  /* required: the worker does not start without them */
        JOB_CGROUPS_NO,
        _JOB_CGROUPS_MODE_MAX,
        _JOB_CGROUPS_MODE_INVALID = -EINVAL,
} JobCgroupsMode;

JobCgroupsMode job_cgroups_mode_from_string(const char *s);

typedef struct JobCgroups JobCgroups;

/* Finds the worker's cgroup and checks that job cgroups can be made there. *ret is NULL (and 0
 * returned) when mode is no, or auto and the cgroup is not the worker's to use (a log line says
 * why); with mode yes that is an error (-errno, logged). */
int job_cgroups_open(JobCgroupsMode mode, sd_event *event, JobCgroups **ret);
JobCgroups *job_cgroups_free(JobCgroups *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(JobCgroups *, job_cgroups_free);
/* The worker's cgroup directory, for messages. */
const char *job_cgroups_path(const JobCgroups *c);

/* Kills and removes the job cgroups an earlier process of this worker left (a crash, a power cut
 * does not leave them, a SIGKILL of the worker outside systemd does). Returns how many it found. */
int job_cgroups_sweep(JobCgroups *c);

/* Makes a cgroup for a job; *ret_id names it to the calls below, *ret_procs_fd is its cgroup.procs
 * open for writing: the job's process writes "0" there before its exec (entropy-keeper), so that
 * nothing it starts is ever outside. */
int job_cgroup_create(JobCgroups *c, uint64_t *ret_id, int *ret_procs_fd);
/* Signals the processes in the job's cgroup that left its process group pgid (the group has its
 * own signal, and a process must not get one twice); SIGKILL goes to all of them at once, through
 * cgroup.kill, which also catches what forks meanwhile. c NULL or id 0 (no cgroup), a cgroup
 * empty or gone: success. */
int job_cgroup_signal(JobCgroups *c, uint64_t id, pid_t pgid, int sig);
/* The job is over: kills what is left in its cgroup and removes it, at once or, while its
 * processes are still dying, from a timer. */
void job_cgroup_release(JobCgroups *c, uint64_t id);
/* How many released cgroups still wait to be removed (for tests). */
size_t job_cgroups_pending(const JobCgroups *c);
