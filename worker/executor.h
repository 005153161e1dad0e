/* executor.h: starting a job's process and signalling it. The command runs with its args directly
 * (execve of the path policy resolved, argv[0] as the job gave it; no shell unless the job's
 * command is one), in its own process group (its pid is the pgid, so the whole tree can be
 * signalled), with stdin from /dev/null, stdout/stderr on the artifact files, no inherited file
 * descriptors, a default signal mask, and PR_SET_PDEATHSIG=SIGKILL so a worker crash does not
 * leave it running under a lease nobody renews. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct ExecSpec {
        const char *path;    /* absolute executable */
        char **argv;
        char **envp;
        const char *workdir; /* NULL: stay in the current directory */
        int stdout_fd, stderr_fd;
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
 * ENTROPY_SLOT and CUDA_VISIBLE_DEVICES when given. */
int executor_build_env(char *const *environ_in, const char *token, const JobEnv *job, char ***ret);
/* argv = { argv0, args... }. */
int executor_build_argv(const char *argv0, char *const *args, char ***ret);

/* Forks and execs. Returns the pid once the exec succeeded (reported through a close-on-exec
 * pipe); -errno of the failing step otherwise (chdir, exec, ...), with *ret_step naming it. */
int executor_spawn(const ExecSpec *spec, pid_t *ret_pid, const char **ret_step);

/* kill() of the whole group; a group already gone is success. */
int executor_signal_group(pid_t pgid, int sig);

/* Process start time in clock ticks since boot (/proc/<pid>/stat field 22): with the pid, it
 * identifies a process across worker restarts despite pid reuse. */
int proc_start_time(pid_t pid, uint64_t *ret);
/* After a restart: SIGKILLs what is left of the group of a run an earlier worker started,
 * unless the pid now belongs to another process (start time differs). Returns 1 if something was
 * killed, 0 if nothing was left. */
int executor_kill_orphan_group(pid_t pgid, uint64_t proc_start);
