/* job-cgroup.c: a cgroup v2 of its own for each job, below the worker's (job-cgroup.h). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "job-cgroup.h"
#include "log.h"
#include "time-util.h"

/* A released cgroup whose processes are still dying is tried again after these delays (doubling),
 * and named in a warning once when it is still there after the last. */
#define REMOVE_RETRY_FIRST (10 * USEC_PER_MSEC)
#define REMOVE_RETRY_MAX   (5 * USEC_PER_SEC)
#define REMOVE_WARN_AFTER  (30 * USEC_PER_SEC)

struct JobCgroups {
        char *path; /* the worker's cgroup directory */
        int dir_fd;
        sd_event *event;
        uint64_t next_id;
        uint64_t *pending; /* released, not yet removed */
        size_t n_pending, allocated;
        sd_event_source *retry_timer;
        usec_t retry_delay, pending_since;
        bool warned;
};

static const char *const mode_table[_JOB_CGROUPS_MODE_MAX] = {
        [JOB_CGROUPS_AUTO] = "auto",
        [JOB_CGROUPS_YES] = "yes",
        [JOB_CGROUPS_NO] = "no",
};

JobCgroupsMode job_cgroups_mode_from_string(const char *s) {
        for (int i = 0; s && i < _JOB_CGROUPS_MODE_MAX; i++)
                if (streq(s, mode_table[i]))
                        return i;
        return _JOB_CGROUPS_MODE_INVALID;
}

/* Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on a unified system, /sys/fs/cgroup/unified
 * on a hybrid one. */
static int cgroup2_mount_point(char **ret) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
        char line[4096];

        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                char mount_point[4096], fstype[64];
                const char *sep = strstr(line, " - ");

                /* id parent major:minor root mount-point options [optional...] - fstype source ... */
                if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mount_point) != 1 ||
                    sscanf(sep + 3, "%63s", fstype) != 1 || !streq(fstype, "cgroup2"))
                        continue;
                if (strchr(mount_point, '\\')) /* an escaped character: not where it is kept */
                        continue;
                *ret = strdup(mount_point);
                return *ret ? 0 : -ENOMEM;
        }
        return -ENOENT;
}

/* This process's cgroup v2 path: the "0::" line of /proc/self/cgroup. */
static int own_cgroup(char **ret) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/cgroup", "re");
        char line[4096];

        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                if (strncmp(line, "0::", 3) != 0)
                        continue;
                line[strcspn(line, "\n")] = 0;
                *ret = strdup(line + 3);
                return *ret ? 0 : -ENOMEM;
        }
        return -ENOENT;
}

/* systemd gives a delegated cgroup to the unit's user, and marks it: trusted.delegate (251,
 * readable by root only) and user.delegate (253). */
static bool cgroup_delegated(int dir_fd) {
        struct stat st;
        char v[8];

        if (geteuid() != 0 && fstat(dir_fd, &st) == 0 && st.st_uid == geteuid())
                return true;
        return fgetxattr(dir_fd, "trusted.delegate", v, sizeof(v)) > 0 ||
               fgetxattr(dir_fd, "user.delegate", v, sizeof(v)) > 0;
}

/* Whether a job cgroup can be made, killed, and entered from here: a probe made and removed.
 * Moving a process needs write access to cgroup.procs of the cgroup it leaves as well. */
static int cgroup_usable(int dir_fd, const char **ret_reason) {
        char probe[64];
        int r = 0;

        snprintf(probe, sizeof(probe), "probe-%d", (int) getpid());
        if (faccessat(dir_fd, "cgroup.procs", W_OK, AT_EACCESS) < 0) {
                *ret_reason = "its cgroup.procs is not writable";
                return -errno;
        }
        if (mkdirat(dir_fd, probe, 0755) < 0 && errno != EEXIST) {
                *ret_reason = "a cgroup cannot be made in it";
                return -errno;
        }
        {
                char kill_path[96];
                snprintf(kill_path, sizeof(kill_path), "%s/cgroup.kill", probe);
                if (faccessat(dir_fd, kill_path, W_OK, AT_EACCESS) < 0) {
                        *ret_reason = "cgroup.kill is missing (Linux before 5.14) or not writable";
                        r = -errno;
                }
        }
        if (unlinkat(dir_fd, probe, AT_REMOVEDIR) < 0 && r == 0) {
                *ret_reason = "a cgroup made in it cannot be removed";
                r = -errno;
        }
        return r;
}

/* The worker's cgroup directory, opened; *ret_reason says why not. */
static int open_own_cgroup(JobCgroupsMode mode, char **ret_path, int *ret_fd, const char **ret_reason) {
        _cleanup_free_ char *mount_point = NULL, *cgroup = NULL;
        _cleanup_close_ int fd = -EBADF;
        int r;

        r = cgroup2_mount_point(&mount_point);
        if (r < 0) {
                *ret_reason = "no cgroup v2 hierarchy is mounted";
                return r;
        }
        r = own_cgroup(&cgroup);
        if (r < 0) {
                *ret_reason = "/proc/self/cgroup has no cgroup v2 line";
                return r;
        }
        if (streq(cgroup, "/")) {
                *ret_reason = "the worker runs in the root cgroup";
                return -EPERM;
        }
        if (asprintf(ret_path, "%s%s", mount_point, cgroup) < 0)
                return -ENOMEM;
        fd = open(*ret_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                *ret_reason = "its cgroup directory cannot be opened";
                return -errno;
        }
        if (mode == JOB_CGROUPS_AUTO && !cgroup_delegated(fd)) {
                *ret_reason = "its cgroup is not delegated to it (Delegate=yes)";
                return -EPERM;
        }
        r = cgroup_usable(fd, ret_reason);
        if (r < 0)
                return r;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int job_cgroups_open(JobCgroupsMode mode, sd_event *event, JobCgroups **ret) {
        _cleanup_(job_cgroups_freep) JobCgroups *c = NULL;
        _cleanup_free_ char *path = NULL;
        const char *reason = "out of memory";
        int fd = -EBADF, r;

        *ret = NULL;
        if (mode == JOB_CGROUPS_NO)
                return 0;
        r = open_own_cgroup(mode, &path, &fd, &reason);
        if (r < 0) {
                if (mode == JOB_CGROUPS_YES)
                        return log_error_errno(r, "job-cgroups=yes, but %s%s%s: %m",
                                               path ? path : "the worker's cgroup", path ? ": " : " ", reason);
                log_info("Job cgroups not used (%s%s%s): a job's processes are stopped through its process group, "
                         "which a process that calls setsid() leaves.",
                         path ? path : "", path ? ": " : "", reason);
                return 0;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                close(fd);
                return -ENOMEM;
        }
        c->dir_fd = fd;
        c->path = TAKE_PTR(path);
        c->event = sd_event_ref(event);
        log_info("Each job runs in a cgroup of its own below %s.", c->path);
        *ret = TAKE_PTR(c);
        return 0;
}

JobCgroups *job_cgroups_free(JobCgroups *c) {
        if (!c)
                return NULL;
        /* Cgroups still pending removal are left to the next start's sweep. */
        sd_event_source_disable_unref(c->retry_timer);
        sd_event_unref(c->event);
        if (c->dir_fd >= 0)
                close(c->dir_fd);
        free(c->pending);
        free(c->path);
        free(c);
        return NULL;
}

const char *job_cgroups_path(const JobCgroups *c) {
        return c->path;
}

size_t job_cgroups_pending(const JobCgroups *c) {
        return c ? c->n_pending : 0;
}

static void cgroup_name(uint64_t id, char *buf, size_t size) {
        snprintf(buf, size, "job-%" PRIu64, id);
}

static int cgroup_write(JobCgroups *c, uint64_t id, const char *attribute, const char *value) {
        char path[96];
        _cleanup_close_ int fd = -EBADF;
        size_t n = strlen(value);

        snprintf(path, sizeof(path), "job-%" PRIu64 "/%s", id, attribute);
        fd = openat(c->dir_fd, path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        if (write(fd, value, n) != (ssize_t) n)
                return -errno;
        return 0;
}

int job_cgroup_create(JobCgroups *c, uint64_t *ret_id, int *ret_procs_fd) {
        char name[32], procs[64];

        for (unsigned tries = 0; tries < 64; tries++) {
                uint64_t id = ++c->next_id;
                int fd;

                cgroup_name(id, name, sizeof(name));
                if (mkdirat(c->dir_fd, name, 0755) < 0) {
                        if (errno == EEXIST) /* an earlier process's, still being removed */
                                continue;
                        return -errno;
                }
                snprintf(procs, sizeof(procs), "%s/cgroup.procs", name);
                fd = openat(c->dir_fd, procs, O_WRONLY | O_CLOEXEC);
                if (fd < 0) {
                        int r = -errno;
                        (void) unlinkat(c->dir_fd, name, AT_REMOVEDIR);
                        return r;
                }
                *ret_id = id;
                *ret_procs_fd = fd;
                return 0;
        }
        return -EEXIST;
}

/* Signals each process of the cgroup outside process group pgid, one by one: what cgroup.kill
 * does for SIGKILL, no interface does for other signals. */
static int cgroup_signal_each(JobCgroups *c, uint64_t id, pid_t pgid, int sig) {
        char path[64];
        _cleanup_fclose_ FILE *f = NULL;
        int fd, pid;

        snprintf(path, sizeof(path), "job-%" PRIu64 "/cgroup.procs", id);
        fd = openat(c->dir_fd, path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        f = fdopen(fd, "re");
        if (!f) {
                close(fd);
                return -errno;
        }
        while (fscanf(f, "%d", &pid) == 1)
                if (pid > 1 && getpgid(pid) != pgid)
                        (void) kill(pid, sig);
        return 0;
}

int job_cgroup_signal(JobCgroups *c, uint64_t id, pid_t pgid, int sig) {
        if (!c || id == 0)
                return 0;
        if (sig == SIGKILL)
                return cgroup_write(c, id, "cgroup.kill", "1");
        return cgroup_signal_each(c, id, pgid, sig);
}

/* -EBUSY while processes are still in it. */
static int cgroup_remove(JobCgroups *c, uint64_t id) {
        char name[32];

        cgroup_name(id, name, sizeof(name));
        if (unlinkat(c->dir_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata);

static void retry_arm(JobCgroups *c) {
        int r;

        if (!c->event)
                return;
        if (!c->retry_timer)
                r = sd_event_add_time_relative(c->event, &c->retry_timer, CLOCK_MONOTONIC, c->retry_delay, 0, on_retry,
                                               c);
        else {
                r = sd_event_source_set_time_relative(c->retry_timer, c->retry_delay);
                if (r >= 0)
                        r = sd_event_source_set_enabled(c->retry_timer, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                log_warning_errno(r, "Cannot arm the timer that removes job cgroups: %m");
}

static void pending_add(JobCgroups *c, uint64_t id) {
        if (GROW_FOR_ONE(c->pending, c->allocated, c->n_pending, 8) < 0) {
                log_warning("Out of memory: job cgroup %s/job-%" PRIu64 " is left for the next start.", c->path, id);
                return;
        }
        if (c->n_pending == 0) {
                c->retry_delay = REMOVE_RETRY_FIRST;
                c->pending_since = now_monotonic_usec();
                c->warned = false;
                retry_arm(c);
        }
        c->pending[c->n_pending++] = id;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        JobCgroups *c = userdata;
        size_t kept = 0;

        for (size_t i = 0; i < c->n_pending; i++) {
                int r = cgroup_remove(c, c->pending[i]);
                if (r == -EBUSY) {
                        (void) cgroup_write(c, c->pending[i], "cgroup.kill", "1");
                        c->pending[kept++] = c->pending[i];
                } else if (r < 0)
                        log_warning_errno(r, "Cannot remove job cgroup %s/job-%" PRIu64 ": %m", c->path, c->pending[i]);
        }
        c->n_pending = kept;
        if (kept == 0)
                return 0;
        if (!c->warned && now_monotonic_usec() - c->pending_since >= REMOVE_WARN_AFTER) {
                log_warning("%zu job cgroup%s below %s still %s processes that do not die (uninterruptible I/O?); "
                            "trying again.",
                            kept, kept == 1 ? "" : "s", c->path, kept == 1 ? "has" : "have");
                c->warned = true;
        }
        c->retry_delay = MIN(c->retry_delay * 2, REMOVE_RETRY_MAX);
        retry_arm(c);
        return 0;
}

void job_cgroup_release(JobCgroups *c, uint64_t id) {
        int r;

        if (!c || id == 0)
                return;
        r = cgroup_write(c, id, "cgroup.kill", "1");
        if (r < 0)
                log_warning_errno(r, "Cannot kill what is left in job cgroup %s/job-%" PRIu64 ": %m", c->path, id);
        r = cgroup_remove(c, id);
        if (r == -EBUSY) /* SIGKILLed, not yet gone */
                pending_add(c, id);
        else if (r < 0)
                log_warning_errno(r, "Cannot remove job cgroup %s/job-%" PRIu64 ": %m", c->path, id);
}

int job_cgroups_sweep(JobCgroups *c) {
        _cleanup_close_ int fd = -EBADF;
        DIR *d;
        struct dirent *de;
        int n = 0;

        if (!c)
                return 0;
        fd = openat(c->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        TAKE_FD(fd);
        while ((de = readdir(d))) {
                char *end;
                uint64_t id;

                if (strncmp(de->d_name, "job-", 4) != 0 || !isdigit((unsigned char) de->d_name[4]))
                        continue;
                errno = 0;
                id = strtoull(de->d_name + 4, &end, 10);
                if (errno != 0 || *end != 0 || id == 0)
                        continue;
                log_notice("Killing what is left in job cgroup %s/%s of an earlier worker process.", c->path,
                           de->d_name);
                job_cgroup_release(c, id);
                n++;
        }
        closedir(d);
        return n;
}
