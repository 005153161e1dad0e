/* bench-proc.h: the daemons entropy-bench starts (entropy-control, beanstalkd, entropy-worker):
 * spawned with their output in a log file, readiness from sd_notify READY=1 on a private
 * NOTIFY_SOCKET (or by polling a port for daemons that do not notify), stopped with SIGTERM, and
 * their peak RSS read from /proc. Only processes spawned here are ever signalled. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "time-util.h"

#include <signal.h>

/* Set by SIGINT/SIGTERM (bench-main.c): every wait and loop of the bench gives up with -EINTR, so
 * that the normal clean-up path stops the daemons it started. */
extern volatile sig_atomic_t bench_interrupted;

typedef struct Child {
        char *name;
        pid_t pid;     /* 0 when not running */
        int notify_fd; /* our end of NOTIFY_SOCKET, or -EBADF */
        char *notify_path;
        char *log_path;
        usec_t spawned_at; /* monotonic, just before fork() */
        int exit_status;   /* after child_stop()/child_reap(): a wait status */
} Child;

/* Spawns argv[0] with stdout and stderr appended to log_path and stdin from /dev/null. With
 * notify_path, binds a datagram socket there and passes it as NOTIFY_SOCKET. extra_env, if not
 * NULL, holds "NAME=value" strings added to the environment. */
int child_spawn(Child *c, const char *name, char *const *argv, const char *log_path, const char *notify_path,
                char *const *extra_env);
/* Waits for READY=1 on the notify socket; *ret_ready_at is the monotonic time it arrived. Fails
 * with -ECHILD if the process exited first, -ETIMEDOUT after timeout. */
int child_wait_ready(Child *c, usec_t timeout, usec_t *ret_ready_at);
/* Waits until 127.0.0.1:port accepts connections (for daemons without sd_notify). */
int child_wait_port(Child *c, uint16_t port, usec_t timeout, usec_t *ret_ready_at);
/* true while the process has not exited (reaps it if it has). */
bool child_running(Child *c);
/* SIGTERM, wait up to timeout, then SIGKILL. Returns 0 when it exited on its own within the time. */
int child_stop(Child *c, usec_t timeout);
/* Frees everything; kills the process first if it still runs. */
void child_done(Child *c);
/* Prints the last lines of the child's log to stderr, for failures. */
void child_log_tail(const Child *c, unsigned lines);

/* CPU time (user + system) a process has used so far, from /proc/PID/stat; with_children adds
 * that of its children it has waited for (and theirs, transitively). */
int proc_cpu_usec(pid_t pid, bool with_children, usec_t *ret);

/* VmHWM (peak resident set) and VmRSS of a process, in KiB. */
int proc_memory_kib(pid_t pid, uint64_t *ret_hwm, uint64_t *ret_rss);

/* A private message bus (dbus-daemon with the session policy, which lets anyone own a name) on a
 * socket in dir, as the integration tests use; *ret_address is its unix:path= address. */
int private_bus_start(Child *c, const char *dbus_daemon, const char *dir, char **ret_address);
