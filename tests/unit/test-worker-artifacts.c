/* test-worker-artifacts.c: the tmp-then-rename rule, checksums, files discarded before a start,
 * shared copies, retention, the output limit (max-output-size) at finalize, and output files a
 * job replaced. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts.h"
#include "crypto.h"
#include "fs-util.h"
#include "json-util.h"
#include "macro.h"
#include "tap.h"
#include "time-util.h"

static char dir[] = "/tmp/entropy-test-artifacts-XXXXXX";

static void test_rename_rule(void) {
        ok(artifact_names_valid("/a/b/stdout", "/a/b/stdout.tmp"), "final + .tmp");
        ok(!artifact_names_valid("/a/b/stdout", "/a/b/stderr.tmp"), "other stream refused");
        ok(!artifact_names_valid("/a/b/stdout", "/a/c/stdout.tmp"), "other directory refused");
        ok(!artifact_names_valid("/a/b/stdout", "/a/b/stdout"), "same name refused");
        ok(!artifact_names_valid("/a/b/stdout", "/a/b/stdout.tmp2"), "other suffix refused");
        ok(!artifact_names_valid(NULL, "x.tmp") && !artifact_names_valid("", ".tmp"), "empty refused");
}

static void test_ids_are_safe_path_components(void) {
        ok(artifact_id_valid("3f2a-b_c.1"), "plain id");
        ok(!artifact_id_valid("..") && !artifact_id_valid("../x") && !artifact_id_valid("a/b") &&
                   !artifact_id_valid(".hidden") && !artifact_id_valid("") && !artifact_id_valid(NULL),
           "traversal and hidden names refused");
}

static bool exists(const char *p) {
        return access(p, F_OK) == 0;
}

static void test_finalize_renames_and_hashes(void) {
        ArtifactSet *a = NULL;
        char want[SHA256_HEX_SIZE], empty[SHA256_HEX_SIZE];

        ok(artifacts_open(dir, "job1", "as1", &a) == 0, "opened");
        if (!a)
                tap_bail("artifacts_open");
        ok(exists(a->out.tmp_path) && exists(a->err.tmp_path) && !exists(a->out.path), "only tmp names while running");
        ok(write(a->out.fd, "hello\n", 6) == 6, "output written");
        ok(artifacts_finalize(a) == 0, "finalized");
        ok(!exists(a->out.tmp_path) && !exists(a->err.tmp_path) && exists(a->out.path) && exists(a->err.path),
           "tmp names gone, final names present");
        sha256_hex("hello\n", 6, want);
        sha256_hex("", 0, empty);
        is_str(a->out.sha256, want, "stdout checksum");
        is_str(a->err.sha256, empty, "stderr checksum of an empty file");
        ok(a->out.size == 6, "size");
        ok(artifacts_finalize(a) == 0, "finalize is idempotent");

        json_object *o = json_object_new_object();
        artifacts_add_json(a, "as1", o);
        const char *p = NULL, *t = NULL;
        JsonError err;
        json_get_string(o, "stdout_path", 4096, true, &p, &err);
        json_get_string(o, "stdout_tmp_path", 4096, true, &t, &err);
        ok(p && t && artifact_names_valid(p, t), "reported names follow the rule: %s %s", strna(p), strna(t));
        json_object_put(o);
        artifacts_free(a);
        ArtifactSet *b = NULL;
        is_int(artifacts_open(dir, "../evil", "as1", &b), -EINVAL, "traversal job id refused");
}

/* The directories made for a run are counted, so that finalize makes their entries durable:
 * every level on a fresh state directory, the job's and the run's for a new job, the run's alone
 * for a job's next assignment. */
static void test_directories_made_are_counted(void) {
        char state[sizeof(dir) + 16];
        unsigned made[3] = {};
        const char *ids[][2] = { { "jobA", "as1" }, { "jobA", "as2" }, { "jobB", "as1" } };

        snprintf(state, sizeof(state), "%s/fresh", dir);
        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                ArtifactSet *a = NULL;
                if (artifacts_open(state, ids[i][0], ids[i][1], &a) < 0)
                        tap_bail("artifacts_open %s/%s", ids[i][0], ids[i][1]);
                made[i] = a->dirs_made;
                ok(artifacts_finalize(a) == 0, "%s/%s finalized", ids[i][0], ids[i][1]);
                artifacts_free(a);
        }
        is_int(made[0], 4, "a fresh state directory: it, artifacts/, the job's and the run's");
        is_int(made[1], 1, "the job's next assignment: the run's directory");
        is_int(made[2], 2, "another job: the job's and the run's");
        is_int(mkdir_parents_and_self(state, 0700), 0, "nothing made when everything exists");
}

static void test_shared_copy(void) {
        ArtifactSet *a = NULL;
        char shared[300], expect[400];
        _cleanup_free_ char *text = NULL;

        snprintf(shared, sizeof(shared), "%s/shared", dir);
        if (artifacts_open(dir, "job2", "as2", &a) < 0)
                tap_bail("open");
        ok(write(a->out.fd, "out\n", 4) == 4 && artifacts_finalize(a) == 0, "finalized");
        ok(artifacts_publish_shared(a, shared, "job2", "as2") == 0, "copied to the shared directory");
        snprintf(expect, sizeof(expect), "%s/job2/as2/stdout", shared);
        is_str(a->report_stdout, expect, "shared path reported");
        ok(read_full_file(expect, 100, &text, NULL) == 0 && streq(text, "out\n"), "content copied");
        snprintf(expect, sizeof(expect), "%s/job2/as2/stdout.tmp", shared);
        ok(!exists(expect), "no tmp file left in the shared directory");
        is_str(a->upload_state, "uploaded", "upload state");
        artifacts_free(a);

        if (artifacts_open(dir, "job3", "as3", &a) < 0)
                tap_bail("open");
        artifacts_finalize(a);
        ok(artifacts_publish_shared(a, "/proc/entropy-no-such-dir", "job3", "as3") < 0, "unwritable shared dir fails");
        ok(streq(a->upload_state, "failed") && a->upload_error, "failure recorded: %s", strna(a->upload_error));
        ok(a->report_stdout && strstr(a->report_stdout, dir), "local paths still reported");
        artifacts_free(a);
}

static bool keep_job2(const char *job_id, void *userdata) {
        return streq(job_id, "job2");
}

static void test_retention(void) {
        char p[300];
        struct timespec old[2] = { { .tv_sec = 1000 }, { .tv_sec = 1000 } };
        for (int i = 1; i <= 3; i++) {
                snprintf(p, sizeof(p), "%s/artifacts/job%d", dir, i);
                utimensat(AT_FDCWD, p, old, 0);
        }
        int removed = artifacts_cleanup(dir, now_realtime_usec(), keep_job2, NULL);
        is_int(removed, 2, "two old run directories removed");
        snprintf(p, sizeof(p), "%s/artifacts/job2", dir);
        ok(exists(p), "the one still needed is kept");
        is_int(artifacts_cleanup(dir, 0, NULL, NULL), 0, "nothing older than the epoch");
}

/* Files are made while the ack is in flight (worker/run.c); a run that never starts takes them
 * away again, and its job's directory with the last of them. */
static void test_discard_before_start(void) {
        ArtifactSet *a = NULL, *b = NULL;
        char job_dir[300];

        snprintf(job_dir, sizeof(job_dir), "%s/artifacts/job2", dir);
        ok(artifacts_open(dir, "job2", "as1", &a) == 0 && artifacts_open(dir, "job2", "as2", &b) == 0,
           "two assignments of one job opened");
        if (!a || !b)
                tap_bail("artifacts_open");
        ok(write(a->out.fd, "12345", 5) == 5, "output written before the discard");
        artifacts_discard(a);
        ok(!exists(a->out.tmp_path) && !exists(a->err.tmp_path) && !exists(a->dir),
           "discarded: files and directory gone");
        ok(exists(b->out.tmp_path) && exists(job_dir), "the other assignment's files stay, and the job's directory");
        artifacts_discard(b);
        ok(!exists(b->dir) && !exists(job_dir), "the last one takes the job's directory with it");
        artifacts_free(a);
        artifacts_free(b);
}

static uint64_t file_size(const char *p) {
        struct stat st;
        return stat(p, &st) < 0 ? UINT64_MAX : (uint64_t) st.st_size;
}

/* A file's size is what hashing and copying it cost, however sparse: a terabyte of holes made by
 * one ftruncate() (what RLIMIT_FSIZE did not stop) is cut to the limit, not hashed for hours. */
static void test_output_past_the_limit_is_cut_not_hashed(void) {
        ArtifactSet *a = NULL;
        char want[SHA256_HEX_SIZE], buf[2000], why[1024] = "";
        usec_t start;

        if (artifacts_open(dir, "job4", "as4", &a) < 0)
                tap_bail("artifacts_open");
        a->max_size = 1024;
        memset(buf, 'e', sizeof(buf));
        ok(ftruncate(a->out.fd, (off_t) 1 << 40) == 0, "a sparse stdout of 1 TiB");
        ok(write(a->err.fd, buf, sizeof(buf)) == (ssize_t) sizeof(buf), "2000 bytes of stderr");
        /* Hashing 1 TiB would take hours: the test dies instead of hanging. */
        alarm(60);
        start = now_monotonic_usec();
        is_int(artifacts_finalize(a), 0, "finalized");
        ok(now_monotonic_usec() - start < 10 * USEC_PER_SEC, "promptly (%.3fs)",
           (double) (now_monotonic_usec() - start) / USEC_PER_SEC);
        alarm(0);
        ok(file_size(a->out.path) == 1024 && file_size(a->err.path) == 1024, "both files cut to the limit");
        ok(a->out.size == 1024 && a->err.size == 1024, "sizes reported: the kept ones");
        ok(a->out.cut_from == (uint64_t) 1 << 40 && a->err.cut_from == 2000, "the sizes they had are known");
        sha256_hex(buf, 1024, want);
        is_str(a->err.sha256, want, "stderr checksum: its first 1024 bytes");
        memset(buf, 0, 1024);
        sha256_hex(buf, 1024, want);
        is_str(a->out.sha256, want, "stdout checksum: its first 1024 bytes of holes");
        is_int(artifacts_output_limit_error(a, false, "exited with status 0 after 0.010s", why, sizeof(why)), 1,
               "the run fails for its output, though the job exited 0");
        is_str(why,
               "stdout exceeded max-output-size (1024 bytes): cut to its first 1024 bytes; stderr exceeded "
               "max-output-size (1024 bytes): cut to its first 1024 bytes: exited with status 0 after 0.010s",
               "and says so");
        artifacts_free(a);
}

/* Under its RLIMIT_FSIZE (one byte past the limit) a job may write exactly max-output-size bytes;
 * one that tried to write more leaves a byte more, and fails however it took the failed write. */
static void test_output_at_and_past_the_limit(void) {
        ArtifactSet *a = NULL, *b = NULL;
        char buf[1025] = "", why[1024] = "";

        if (artifacts_open(dir, "job5", "as5", &a) < 0 || artifacts_open(dir, "job5", "as6", &b) < 0)
                tap_bail("artifacts_open");
        a->max_size = b->max_size = 1024;
        ok(write(a->out.fd, buf, 1024) == 1024 && write(b->err.fd, buf, 1025) == 1025, "written: 1024, 1025 bytes");
        is_int(artifacts_finalize(a), 0, "finalized");
        is_int(artifacts_finalize(b), 0, "finalized");
        ok(a->out.cut_from == 0 && a->out.size == 1024, "exactly at the limit: nothing cut");
        is_int(artifacts_output_limit_error(a, false, "exited with status 0 after 0.010s", why, sizeof(why)), 0,
               "and the job completes");
        ok(b->err.cut_from == 1025 && b->err.size == 1024, "a byte past it: cut");
        is_int(artifacts_output_limit_error(b, false, NULL, why, sizeof(why)), 1, "and the job fails");
        is_str(why, "stderr exceeded max-output-size (1024 bytes): cut to its first 1024 bytes", "which says so");
        is_int(artifacts_output_limit_error(a, true, "killed by signal File size limit exceeded after 0.010s", why,
                                            sizeof(why)),
               1, "SIGXFSZ with nothing past the limit: a truncate(), a seek or another file went past it");
        is_str(why,
               "the job tried to make a file larger than max-output-size (1024 bytes): killed by signal File size "
               "limit exceeded after 0.010s",
               "said so");
        a->max_size = 0;
        is_int(artifacts_output_limit_error(a, true, "killed by signal File size limit exceeded", why, sizeof(why)), 0,
               "no limit of ours: SIGXFSZ is any signal");
        artifacts_free(a);
        artifacts_free(b);
}

/* Never hashed whole, even when it could not be cut (an earlier finalize failed after closing it). */
static void test_output_past_the_limit_uncut_is_refused(void) {
        ArtifactSet *a = NULL;

        if (artifacts_open(dir, "job6", "as6", &a) < 0)
                tap_bail("artifacts_open");
        a->max_size = 1024;
        if (ftruncate(a->out.fd, (off_t) 1 << 40) < 0)
                tap_bail("ftruncate");
        close(a->out.fd);
        a->out.fd = -EBADF;
        alarm(60);
        is_int(artifacts_finalize(a), -EFBIG, "a file past the limit at hashing time is refused");
        alarm(0);
        artifacts_free(a);
}

/* The job runs as the worker's user and can write in its run's directory. Whatever it puts in
 * the place of its output (a symbolic link to another file, another file) is refused: what the
 * worker hashes, copies and reports is the file it made and gave the job. */
static void test_replaced_output_is_refused(void) {
        char secret[300], shared[300];
        ArtifactSet *a = NULL;
        int fd;

        snprintf(secret, sizeof(secret), "%s/secret", dir);
        snprintf(shared, sizeof(shared), "%s/shared-replaced", dir);
        if (write_file_durable(secret, "not the job's output\n", 21, 0600) < 0)
                tap_bail("write %s", secret);

        if (artifacts_open(dir, "job6", "as1", &a) < 0)
                tap_bail("artifacts_open");
        ok(write(a->out.fd, "mine\n", 5) == 5 && unlink(a->out.tmp_path) == 0 && symlink(secret, a->out.tmp_path) == 0,
           "the job puts a symbolic link in the place of its stdout");
        is_int(artifacts_finalize(a), -ESTALE, "finalize refuses it");
        ok(!a->finalized, "nothing is reported");
        artifacts_free(a);

        if (artifacts_open(dir, "job6", "as2", &a) < 0)
                tap_bail("artifacts_open");
        fd = unlink(a->err.tmp_path) == 0 ? open(a->err.tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640) : -1;
        ok(fd >= 0 && write(fd, "other\n", 6) == 6, "the job puts another file in the place of its stderr");
        if (fd >= 0)
                close(fd);
        is_int(artifacts_finalize(a), -ESTALE, "finalize refuses it too");
        artifacts_free(a);

        if (artifacts_open(dir, "job6", "as3", &a) < 0)
                tap_bail("artifacts_open");
        ok(write(a->out.fd, "mine\n", 5) == 5 && artifacts_finalize(a) == 0, "output untouched: finalized");
        ok(unlink(a->out.path) == 0 && symlink(secret, a->out.path) == 0, "then replaced by a symbolic link");
        int r = artifacts_publish_shared(a, shared, "job6", "as3");
        is_int(r, -ESTALE, "the shared copy refuses it");
        ok(streq(a->upload_state, "failed") && a->upload_error && strstr(a->upload_error, "replaced while the job ran"),
           "and says why: %s", strna(a->upload_error));
        artifacts_free(a);
}

int main(void) {
        if (!mkdtemp(dir))
                tap_bail("mkdtemp");
        test_rename_rule();
        test_ids_are_safe_path_components();
        test_finalize_renames_and_hashes();
        test_discard_before_start();
        test_directories_made_are_counted();
        test_shared_copy();
        test_retention();
        test_output_past_the_limit_is_cut_not_hashed();
        test_output_at_and_past_the_limit();
        test_output_past_the_limit_uncut_is_refused();
        test_replaced_output_is_refused();
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
                diag("cleanup failed");
        return tap_done();
}
