/* test-worker-policy.c: the worker's command and working-directory allowlists, symlink and ".."
 * escapes, root refusal. */
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "policy.h"
#include "strv.h"
#include "tap.h"

static char root[] = "/tmp/entropy-test-policy-XXXXXX";

static char *path(const char *rel) {
        static char buf[8][PATH_MAX];
        static int i;
        i = (i + 1) % 8;
        snprintf(buf[i], sizeof(buf[i]), "%s/%s", root, rel);
        return buf[i];
}

static int check(Policy *p, const char *cmd, const char *wd, char **reason_out) {
        _cleanup_free_ char *exec = NULL, *dir = NULL, *reason = NULL;
        int r = policy_check(p, cmd, wd, &exec, &dir, &reason);
        if (reason_out)
                *reason_out = reason ? strdup(reason) : NULL;
        return r;
}

static void test_empty_allowlists_allow_everything(void) {
        Policy p = { .euid = 1000 };
        _cleanup_free_ char *exec = NULL, *dir = NULL, *reason = NULL;
        is_int(policy_check(&p, "true", NULL, &exec, &dir, &reason), POLICY_ALLOW, "bare command allowed");
        ok(exec && exec[0] == '/' && strstr(exec, "true"), "resolved to an absolute path: %s", strna(exec));
        ok(dir == NULL, "no working directory given, none returned");
}

static void test_command_allowlist_kinds(void) {
        _cleanup_strv_free_ char **l = NULL;
        Policy p = { .euid = 1000 };
        char *evil = path("allowed/echo");

        if (symlink("/bin/sh", evil) < 0)
                tap_bail("symlink");
        strv_split("echo,/bin/true,/usr/bin/sl*", ",", &l);
        p.command_allowlist = l;
        is_int(check(&p, "echo", NULL, NULL), POLICY_ALLOW, "bare name entry admits the bare command");
        is_int(check(&p, "/bin/echo", NULL, NULL), POLICY_REFUSE, "bare name entry does not admit a path");
        is_int(check(&p, evil, NULL, NULL), POLICY_REFUSE, "bare name entry does not admit another dir's echo");
        is_int(check(&p, "true", NULL, NULL), POLICY_ALLOW, "path entry admits the bare name of that file");
        is_int(check(&p, "/usr/bin/true", NULL, NULL), POLICY_ALLOW, "and the same file by any path");
        is_int(check(&p, "sleep", NULL, NULL), POLICY_ALLOW, "glob entry judges the resolved path");
        is_int(check(&p, "/usr/bin/sleep", NULL, NULL), POLICY_ALLOW, "glob entry admits a matching path");
        is_int(check(&p, "/bin/sh", NULL, NULL), POLICY_REFUSE, "unlisted command refused");
}

static void test_symlinked_command_is_judged_by_its_target(void) {
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ char *reason = NULL;
        Policy p = { .euid = 1000 };
        char *glob = path("allowed/*");

        strv_extend(&l, glob);
        p.command_allowlist = l;
        is_int(check(&p, path("allowed/echo"), NULL, &reason), POLICY_REFUSE,
               "a symlink in an allowed dir to /bin/sh is refused");
        ok(reason && strstr(reason, "allowlist"), "reason names the allowlist: %s", strna(reason));
}

static void test_workdir_allowlist_resolves_paths(void) {
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ char *reason = NULL;
        Policy p = { .euid = 1000 };

        if (mkdir(path("allowed/sub"), 0755) < 0 || mkdir(path("outside"), 0755) < 0 ||
            mkdir(path("allowedX"), 0755) < 0 || symlink(path("outside"), path("allowed/link")) < 0)
                tap_bail("set-up");
        strv_extend(&l, path("allowed"));
        p.workdir_allowlist = l;
        is_int(check(&p, "true", path("allowed"), NULL), POLICY_ALLOW, "the allowed directory itself");
        is_int(check(&p, "true", path("allowed/sub"), NULL), POLICY_ALLOW, "a directory below it");
        is_int(check(&p, "true", path("allowed/../outside"), NULL), POLICY_REFUSE, "'..' escape refused");
        is_int(check(&p, "true", path("allowed/link"), &reason), POLICY_REFUSE, "symlink escape refused");
        ok(reason && strstr(reason, "outside"), "reason names the resolved directory: %s", strna(reason));
        is_int(check(&p, "true", path("allowedX"), NULL), POLICY_REFUSE, "a sibling sharing the prefix is refused");
        is_int(check(&p, "true", "relative/dir", NULL), POLICY_REFUSE, "relative directory refused");
        is_int(check(&p, "true", path("allowed/missing"), NULL), POLICY_NOTFOUND,
               "missing directory is not a refusal (another worker may have it)");
        is_int(check(&p, "true", NULL, NULL), POLICY_ALLOW, "no directory given: allowed");
}

static void test_root_refusal(void) {
        _cleanup_free_ char *reason = NULL;
        Policy p = { .refuse_root = true, .euid = 0 };
        is_int(check(&p, "true", NULL, &reason), POLICY_REFUSE, "root refused with refuse-root");
        ok(reason && strstr(reason, "root"), "reason says root: %s", strna(reason));
        p.euid = 1000;
        is_int(check(&p, "true", NULL, NULL), POLICY_ALLOW, "non-root allowed with refuse-root");
        p.refuse_root = false;
        p.euid = 0;
        is_int(check(&p, "true", NULL, NULL), POLICY_ALLOW, "root allowed without refuse-root");
}

static void test_missing_command_is_not_a_refusal(void) {
        Policy p = { .euid = 1000, .path_env = "/nonexistent:/also-not" };
        is_int(check(&p, "true", NULL, NULL), POLICY_NOTFOUND, "command not on PATH");
        is_int(check(&p, "/nonexistent/cmd", NULL, NULL), POLICY_NOTFOUND, "absent path");
        is_int(check(&p, "", NULL, NULL), POLICY_NOTFOUND, "empty command");
}

static void make_script(const char *p) {
        FILE *f = fopen(p, "we");
        if (!f || fputs("#!/bin/sh\n", f) < 0 || fclose(f) != 0 || chmod(p, 0755) < 0)
                tap_bail("cannot write %s", p);
}

/* "./run.sh" is the file in the job's working directory, where the job runs it; not one in the
 * worker's cwd, which under systemd is "/" and from a shell is anywhere. */
static void test_relative_command_is_resolved_in_the_working_dir(void) {
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ char *want = NULL, *reason = NULL;
        char *proj = path("proj"), *other = path("other");
        int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        Policy p = { .euid = 1000 };

        if (cwd < 0 || mkdir(proj, 0755) < 0 || mkdir(other, 0755) < 0)
                tap_bail("set-up");
        make_script(path("proj/run.sh"));
        make_script(path("other/run.sh"));
        want = realpath(path("proj/run.sh"), NULL);
        if (!want)
                tap_bail("realpath");

        for (int i = 0; i < 2; i++) {
                _cleanup_free_ char *exec = NULL, *dir = NULL, *why = NULL;
                const char *from = i == 0 ? "/" : other;
                if (chdir(from) < 0)
                        tap_bail("chdir %s", from);
                is_int(policy_check(&p, "./run.sh", proj, &exec, &dir, &why), POLICY_ALLOW,
                       "./run.sh with working_dir allowed (worker cwd %s): %s", from, strna(why));
                is_str(exec, want, "it is the working directory's run.sh (worker cwd %s)", from);
        }
        strv_extend(&l, path("proj/*"));
        p.command_allowlist = l;
        is_int(check(&p, "./run.sh", proj, NULL), POLICY_ALLOW, "the allowlist judges the working directory's file");
        p.command_allowlist = NULL;
        is_int(check(&p, "./run.sh", NULL, &reason), POLICY_REFUSE, "a relative command without working_dir is refused");
        ok(reason && strstr(reason, "working_dir"), "the reason says why: %s", strna(reason));
        is_int(check(&p, "./missing.sh", proj, NULL), POLICY_NOTFOUND, "a relative command missing there: not found");
        if (fchdir(cwd) < 0)
                tap_bail("fchdir");
        close(cwd);
}

int main(void) {
        if (!mkdtemp(root) || mkdir(path("allowed"), 0755) < 0)
                tap_bail("mkdtemp");
        test_empty_allowlists_allow_everything();
        test_command_allowlist_kinds();
        test_symlinked_command_is_judged_by_its_target();
        test_workdir_allowlist_resolves_paths();
        test_root_refusal();
        test_missing_command_is_not_a_refusal();
        test_relative_command_is_resolved_in_the_working_dir();
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
        if (system(cmd) != 0)
                diag("cleanup of %s failed", root);
        return tap_done();
}
