/* executor.h: starting a job's process and signalling it. The command runs with its args directly
 * (execve of the path policy resolved, argv[0] as the job gave it; no shell unless the job's
 * command is one), in its own process group (its pid is the pgid, so the whole tree can be
 * signalled), with stdin from /dev/null, stdout/stderr on the artifact files, no inherited file
 * descriptors, a default signal mask and dispositions (SIGXFSZ too, which the worker ignores),
 * RLIMIT_FSIZE just past max-output-size, in a cgroup of its own where the worker has them
 * (job-cgroup.h), and PR_SET_PDEATHSIG=SIGKILL so a worker crash does
 * not leave it running under a lease nobody renews; entropy-keeper kills the rest of its group
 * then. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "time-util.h"

typedef struct ExecSpec {
        const char *path;    /* absolute executable */
        char **argv;
        char **envp;
        const char *workdir; /* NULL: stay in the current directory */
        int stdout_fd, stderr_fd;
        /* The most the job may write to its stdout, and to its stderr: its RLIMIT_FSIZE (soft and
         * hard, for any file it writes) is one byte more, so that a file past the limit shows
         * that the job tried to write more (artifacts.h); 0: the worker's own RLIMIT_FSIZE. */
        uint64_t max_output_size;
        /* cgroup.procs of the cgroup the job runs in (job-cgroup.h), entered before anything else;
         * 0: none, the worker's own (a job's cgroup is never the worker's stdin). */
        int cgroup_procs_fd;
        /* How long entropy-keeper may take to answer: until the job's exec, which waits on its
         * working directory and its program (a hung mount). 0: no limit. */
        usec_t start_timeout;
} ExecSpec;

typedef struct JobEnv {
        const char *job_id;
        const char *assignment_id;
        int64_t attempt;
        int64_t slot;
        const char *cuda_visible_devices; /* NULL: unset */
} JobEnv;

/* The child's environment: the worker's own minus everything that belongs to the worker
 * (ENTROPY_* settings, the systemd notify/listen/watchdog/credentials variables, any variable
 * whose value contains the token), plus ENTROPY_JOB_ID, ENTROPY_ASSIGNMENT_ID, ENTROPY_ATTEMPT,
 * ENTROPY_SLOT and CUDA_VISIBLE_DEVICES when given. job NULL: none of those (entropy-keeper's). */
int executor_build_env(char *const *environ_in, const char *token, const JobEnv *job, char ***ret);
/* argv = { argv0, args... }. */
int executor_build_argv(const char *argv0, char *const *args, char ***ret);

/* Starts jobs through the entropy-keeper process (keeper.c), which also kills what is left of
 * their process groups when the worker dies. Its environment is keeper_env (the worker's,
 * scrubbed like a job's). When it dies it is started again (at once with an event loop attached,
 * else at the next spawn) and given the groups of the jobs still running. */
typedef struct Executor Executor;
int executor_new(const char *keeper_path, char *const *keeper_env, Executor **ret);
int executor_attach_event(Executor *e, sd_event *event);
/* Ends entropy-keeper, which kills the groups of jobs not yet forgotten. */
Executor *executor_free(Executor *e);
DEFINE_TRIVIAL_CLEANUP_FUNC(Executor *, executor_free);
pid_t executor_keeper_pid(const Executor *e);
/* The version of keeper-protocol.h spoken to entropy-keeper: below KEEPER_PROTOCOL_VERSION when
 * it turned out to be an older build, and then max_output_size is not applied. */
uint32_t executor_keeper_protocol(const Executor *e);
/* Tells the executor which of the worker's children are not jobs (the GPU probe, watched by an
 * sd-event child source): when entropy-keeper dies, the jobs it started without reporting them
 * are killed and reaped, and a probe mistaken for one would be reaped under sd-event's feet. */
typedef bool (*ExecutorOtherChild)(pid_t pid, void *userdata);
void executor_set_other_child(Executor *e, ExecutorOtherChild is_other, void *userdata);
/* entropy-keeper next to this program's executable if there is one there (a build tree), else
 * the installed one in PKGLIBEXECDIR. */
int executor_find_keeper(char **ret);

/* Starts the job as the caller's child and the leader of its own process group (its pid is the
 * pgid), through entropy-keeper, without waiting for it: done(userdata, r, pid, step) says how it
 * went, from the event loop (or at once, when the request cannot be sent). r = 0 with the pid
 * once the job's exec succeeded; -errno of the failing step otherwise (chdir, execve, ...), step
 * naming it ("keeper": entropy-keeper could not be reached even after a restart, or refused the
 * request). -ETIMEDOUT ("start") when entropy-keeper did not answer within spec->start_timeout:
 * it and the job's process, stuck before its exec, are killed and entropy-keeper is started
 * again. entropy-keeper starts one job at a time: a start waits for the ones before it. The
 * descriptors of spec are duplicated: the caller may close its own. */
typedef struct ExecutorStart ExecutorStart;
typedef void (*ExecutorStarted)(void *userdata, int r, pid_t pid, const char *step);
int executor_start(Executor *e, const ExecSpec *spec, ExecutorStarted done, void *userdata, ExecutorStart **ret);
/* The caller no longer wants it (done() is not called): a start not yet sent is dropped, and the
 * job of one sent is killed as soon as entropy-keeper reports it. */
void executor_start_cancel(Executor *e, ExecutorStart *st);
/* The same, waiting for the answer (with no other start under way): for callers without a loop. */
int executor_spawn(Executor *e, const ExecSpec *spec, pid_t *ret_pid, const char **ret_step);
/* The job led by pgid has ended. Called after its group is killed and before its pid is reaped,
 * so that entropy-keeper never holds a group number the kernel may have given out again. */
void executor_forget(Executor *e, pid_t pgid);

/* kill() of the whole group; a group already gone is success. */
int executor_signal_group(pid_t pgid, int sig);

/* Process start time in clock ticks since boot (/proc/<pid>/stat field 22): with the pid, it
 * identifies a process across worker restarts despite pid reuse. */
int proc_start_time(pid_t pid, uint64_t *ret);
/* After a restart: SIGKILLs what is left of the group of a run an earlier worker started,
 * unless the pid now belongs to another process (start time differs). Returns 1 if something was
 * killed, 0 if nothing was left. */
int executor_kill_orphan_group(pid_t pgid, uint64_t proc_start);
