/* policy.h: what a worker agrees to run. A job is checked before anything is started:
 *
 *   - its command is resolved to an absolute, symlink-free path: PATH search for a bare name, and
 *     a relative path ("./run.sh", "bin/x") against the job's working directory, where the job
 *     runs it; a relative path in a job without a working directory is refused;
 *   - the command allowlist (empty: anything) holds entries of three kinds: an absolute path
 *     (compared after resolving it the same way), a glob with a '/' (fnmatch against the resolved
 *     path, '*' not crossing '/'), or a bare name, which matches only a job command given as that
 *     same bare name (so "echo" never admits "/tmp/x/echo");
 *   - its working directory is resolved with realpath(), so ".." and symlinks cannot escape, and
 *     must be an allowlisted directory or below one (empty allowlist: anywhere);
 *   - with refuse-root, nothing runs while the worker's effective uid is 0.
 *
 * A refusal is final for this job (another attempt would be refused the same way); a command that
 * cannot be found is not a refusal, since another worker may have it. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

typedef struct Policy {
        char **command_allowlist;
        char **workdir_allowlist;
        bool refuse_root;
        uid_t euid;
        const char *path_env; /* PATH used for bare command names; NULL: getenv("PATH") */
} Policy;

typedef enum PolicyVerdict {
        POLICY_ALLOW,
        POLICY_REFUSE,   /* refused by policy: fail without retry */
        POLICY_NOTFOUND, /* command or working directory missing here: fail, retry elsewhere */
} PolicyVerdict;

/* Checks command and working_dir (NULL: none given). On success returns a verdict (>= 0) and, for
 * POLICY_ALLOW, the resolved executable and working directory (the latter NULL if none was
 * given); otherwise *ret_reason says why. Negative only on allocation failure. */
int policy_check(const Policy *p, const char *command, const char *working_dir, char **ret_exec_path,
                 char **ret_workdir, char **ret_reason);

/* Resolves a command to an absolute canonical path (PATH search for a bare name, a relative path
 * against workdir, the job's resolved working directory or NULL): 0, -ENOENT or -EACCES when
 * there is no executable by that name, -EDESTADDRREQ for a relative path without workdir. */
int policy_resolve_command(const char *command, const char *workdir, const char *path_env, char **ret);
