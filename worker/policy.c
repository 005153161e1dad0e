/* policy.c: command and working-directory allowlists, root refusal (see policy.h). */
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "policy.h"
#include "strv.h"

static bool strv_isempty_(char **l) {
        return !l || !*l;
}

static int executable_realpath(const char *path, char **ret) {
        struct stat st;
        char *rp;

        rp = realpath(path, NULL);
        if (!rp)
                return errno == ENOMEM ? -ENOMEM : -ENOENT;
        if (stat(rp, &st) < 0 || !S_ISREG(st.st_mode) || access(rp, X_OK) < 0) {
                free(rp);
                return -EACCES;
        }
        *ret = rp;
        return 0;
}

/* A command with a '/' not at its start names a file below the directory the job runs in, as
 * execve() after the keeper's chdir() would find it: resolving it from the worker's own cwd
 * would judge, and run, another file. */
static int relative_realpath(const char *command, const char *workdir, char **ret) {
        _cleanup_free_ char *joined = NULL;

        if (isempty(workdir))
                return -EDESTADDRREQ;
        if (asprintf(&joined, "%s/%s", workdir, command) < 0)
                return -ENOMEM;
        return executable_realpath(joined, ret);
}

int policy_resolve_command(const char *command, const char *workdir, const char *path_env, char **ret) {
        _cleanup_strv_free_ char **dirs = NULL;
        int r, last = -ENOENT;

        if (isempty(command))
                return -ENOENT;
        if (command[0] == '/')
                return executable_realpath(command, ret);
        if (strchr(command, '/'))
                return relative_realpath(command, workdir, ret);
        if (!path_env)
                path_env = getenv("PATH");
        r = strv_split(path_env ? path_env : "/usr/local/bin:/usr/bin:/bin", ":", &dirs);
        if (r < 0)
                return r;
        STRV_FOREACH(d, dirs) {
                _cleanup_free_ char *candidate = NULL;
                if (**d != '/') /* a relative PATH entry would depend on the job's directory */
                        continue;
                if (asprintf(&candidate, "%s/%s", *d, command) < 0)
                        return -ENOMEM;
                /* One lookup rules out a directory that does not have it; realpath() would
                 * readlink() every component on the way to finding that out. */
                if (access(candidate, F_OK) < 0 && errno == ENOENT)
                        continue;
                r = executable_realpath(candidate, ret);
                if (r == 0 || r == -ENOMEM)
                        return r;
                if (r == -EACCES)
                        last = r;
        }
        return last;
}

static bool has_glob(const char *s) {
        return strpbrk(s, "*?[") != NULL;
}

static bool command_entry_matches(const char *entry, const char *command, const char *resolved) {
        if (!strchr(entry, '/'))
                return !strchr(command, '/') && streq(entry, command);
        if (has_glob(entry))
                return fnmatch(entry, resolved, FNM_PATHNAME) == 0;
        _cleanup_free_ char *rp = realpath(entry, NULL);
        return rp && streq(rp, resolved);
}

static bool path_is_below(const char *dir, const char *path) {
        size_t n = strlen(dir);
        if (n == 1 && dir[0] == '/')
                return true;
        return strncmp(dir, path, n) == 0 && (path[n] == 0 || path[n] == '/');
}

/* Sets the reason and evaluates to POLICY_REFUSE (or -ENOMEM). */
#define refuse(ret_reason, ...) (asprintf((ret_reason), __VA_ARGS__) < 0 ? -ENOMEM : POLICY_REFUSE)

static int check_workdir(const Policy *p, const char *working_dir, char **ret_workdir, char **ret_reason) {
        _cleanup_free_ char *rp = NULL;
        struct stat st;

        if (isempty(working_dir)) {
                *ret_workdir = NULL;
                return POLICY_ALLOW;
        }
        if (working_dir[0] != '/')
                return refuse(ret_reason, "policy: working directory '%s' is not an absolute path", working_dir);
        rp = realpath(working_dir, NULL);
        if (!rp || stat(rp, &st) < 0 || !S_ISDIR(st.st_mode)) {
                if (errno == ENOMEM)
                        return -ENOMEM;
                if (asprintf(ret_reason, "working directory '%s' does not exist on this worker", working_dir) < 0)
                        return -ENOMEM;
                return POLICY_NOTFOUND;
        }
        if (!strv_isempty_(p->workdir_allowlist)) {
                bool allowed = false;
                STRV_FOREACH(d, p->workdir_allowlist) {
                        _cleanup_free_ char *dp = realpath(*d, NULL);
                        if (dp && path_is_below(dp, rp)) {
                                allowed = true;
                                break;
                        }
                }
                if (!allowed)
                        return refuse(ret_reason, "policy: working directory '%s' is outside the allowlist",
                                      rp);
        }
        *ret_workdir = TAKE_PTR(rp);
        return POLICY_ALLOW;
}

int policy_check(const Policy *p, const char *command, const char *working_dir, char **ret_exec_path,
                 char **ret_workdir, char **ret_reason) {
        _cleanup_free_ char *resolved = NULL, *workdir = NULL;
        int r;

        if (p->refuse_root && p->euid == 0)
                return refuse(ret_reason, "policy: %s", "this worker runs as root and refuse-root is set");
        /* The directory first: a relative command is resolved against it. */
        r = check_workdir(p, working_dir, &workdir, ret_reason);
        if (r != POLICY_ALLOW)
                return r;
        r = policy_resolve_command(command, workdir, p->path_env, &resolved);
        if (r == -ENOMEM)
                return r;
        if (r == -EDESTADDRREQ) /* the same on every worker: retrying elsewhere cannot help */
                return refuse(ret_reason,
                              "command '%s' is a relative path and the job has no working_dir to resolve it against",
                              command);
        if (r < 0) {
                if (asprintf(ret_reason, "command '%s' not found or not executable on this worker",
                             strempty(command)) < 0)
                        return -ENOMEM;
                return POLICY_NOTFOUND;
        }
        if (!strv_isempty_(p->command_allowlist)) {
                bool allowed = false;
                STRV_FOREACH(e, p->command_allowlist)
                        if (command_entry_matches(*e, command, resolved)) {
                                allowed = true;
                                break;
                        }
                if (!allowed)
                        return refuse(ret_reason, "policy: command '%s' is not in the command allowlist", command);
        }
        *ret_exec_path = TAKE_PTR(resolved);
        *ret_workdir = TAKE_PTR(workdir);
        return POLICY_ALLOW;
}
