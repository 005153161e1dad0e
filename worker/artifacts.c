/* artifacts.c: stdout/stderr files of runs, their durable rename, checksums, shared copies and
 * retention (see artifacts.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts.h"
#include "fs-util.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"

bool artifact_id_valid(const char *id) {
        size_t n = id ? strlen(id) : 0;
        if (n == 0 || n > 128 || id[0] == '.')
                return false;
        return strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

bool artifact_names_valid(const char *path, const char *tmp_path) {
        size_t n;
        if (isempty(path) || isempty(tmp_path))
                return false;
        n = strlen(path);
        return strlen(tmp_path) == n + 4 && strncmp(tmp_path, path, n) == 0 && streq(tmp_path + n, ".tmp");
}

static int stream_identify(ArtifactStream *s) {
        struct stat st;
        if (fstat(s->fd, &st) < 0)
                return -errno;
        s->dev = st.st_dev;
        s->ino = st.st_ino;
        return 0;
}

static int stream_open(ArtifactStream *s, const char *dir, const char *name) {
        if (asprintf(&s->path, "%s/%s", dir, name) < 0 || asprintf(&s->tmp_path, "%s/%s.tmp", dir, name) < 0)
                return -ENOMEM;
        /* Close-on-exec: the job gets them as its stdout/stderr through dup2 (which clears the
         * flag); no other child may inherit them. */
        s->fd = open(s->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (s->fd < 0)
                return -errno;
        return stream_identify(s);
}

/* <state>/artifacts/<job_id>/<assignment_id>: the job's directory is new for nearly every run
 * and the artifacts root nearly always exists, so the last two levels are made first and the
 * whole path walked (mkdir of each component) only when something above them is missing.
 * Returns how many directories it made (mkdir_parents_and_self()). */
static int make_run_directory(const char *dir) {
        _cleanup_free_ char *job_dir = strdup(dir);
        char *slash;
        int made = 0;

        if (!job_dir)
                return -ENOMEM;
        slash = strrchr(job_dir, '/');
        if (!slash || slash == job_dir)
                return mkdir_parents_and_self(dir, 0750);
        *slash = 0;
        if (mkdir(job_dir, 0755) == 0)
                made++;
        else if (errno != EEXIST)
                return errno == ENOENT ? mkdir_parents_and_self(dir, 0750) : -errno;
        if (mkdir(dir, 0750) == 0)
                made++;
        else if (errno != EEXIST)
                return -errno;
        return made;
}

int artifacts_open(const char *state_dir, const char *job_id, const char *assignment_id, ArtifactSet **ret) {
        ArtifactSet *a;
        int r;

        if (!artifact_id_valid(job_id) || !artifact_id_valid(assignment_id))
                return -EINVAL;
        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->out.fd = a->err.fd = -EBADF;
        a->backend = "local";
        a->upload_state = "local";
        if (asprintf(&a->dir, "%s/artifacts/%s/%s", state_dir, job_id, assignment_id) < 0) {
                artifacts_free(a);
                return -ENOMEM;
        }
        r = make_run_directory(a->dir);
        if (r >= 0) {
                a->dirs_made = (unsigned) r;
                r = stream_open(&a->out, a->dir, "stdout");
        }
        if (r >= 0)
                r = stream_open(&a->err, a->dir, "stderr");
        if (r < 0) {
                artifacts_free(a);
                return r;
        }
        *ret = a;
        return 0;
}

ArtifactSet *artifacts_free(ArtifactSet *a) {
        if (!a)
                return NULL;
        ArtifactStream *ss[] = { &a->out, &a->err };
        for (size_t i = 0; i < ELEMENTSOF(ss); i++) {
                if (ss[i]->fd >= 0)
                        close(ss[i]->fd);
                free(ss[i]->path);
                free(ss[i]->tmp_path);
        }
        free(a->dir);
        free(a->location);
        free(a->report_stdout);
        free(a->report_stderr);
        free(a->upload_error);
        free(a);
        return NULL;
}

void artifacts_discard(ArtifactSet *a) {
        char *slash;

        if (!a || a->finalized)
                return;
        ArtifactStream *ss[] = { &a->out, &a->err };
        for (size_t i = 0; i < ELEMENTSOF(ss); i++) {
                if (ss[i]->fd >= 0)
                        close(ss[i]->fd);
                ss[i]->fd = -EBADF;
                if (ss[i]->tmp_path)
                        (void) unlink(ss[i]->tmp_path);
        }
        (void) rmdir(a->dir);
        /* The job's directory too, unless another assignment of the job has files there. */
        slash = strrchr(a->dir, '/');
        if (slash && slash != a->dir) {
                *slash = 0;
                (void) rmdir(a->dir);
                *slash = '/';
        }
}

/* Past max (see artifacts.h): cut to it, before the fsync, which then writes out none of what
 * is cut. Through the descriptor the job was given: its file, whatever the job did to the name. */
static int stream_cut(ArtifactStream *s, uint64_t max) {
        struct stat st;

        if (max == 0)
                return 0;
        if (fstat(s->fd, &st) < 0)
                return -errno;
        if ((uint64_t) st.st_size <= max)
                return 0;
        if (ftruncate(s->fd, (off_t) max) < 0)
                return -errno;
        s->cut_from = (uint64_t) st.st_size;
        return 0;
}

/* The content on disk, then the descriptor closed: the job is over, nothing writes any more. */
static int stream_sync(ArtifactStream *s, uint64_t max) {
        int r;

        if (s->fd < 0)
                return 0; /* done by an earlier, interrupted finalize */
        r = stream_cut(s, max);
        if (r >= 0 && fsync(s->fd) < 0)
                r = -errno;
        close(s->fd);
        s->fd = -EBADF;
        return r;
}

static int stream_rename(ArtifactStream *s) {
        /* ENOENT: renamed by an earlier, interrupted finalize. */
        if (rename(s->tmp_path, s->path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

const char *artifacts_strerror(int r) {
        if (r == -ESTALE)
                return "replaced while the job ran: not the file the worker gave it";
        return strerror(-r);
}

/* The job runs as the worker's user and can write in its run's directory: it may have put
 * another file, or a symbolic link to one, in the place of its output. What is hashed (and
 * copied, and reported) must be the file the worker made and the job wrote to: -ESTALE if the
 * name no longer leads there. */
static int stream_open_final(const ArtifactStream *s, struct stat *ret) {
        _cleanup_close_ int fd = open(s->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return errno == ELOOP ? -ESTALE : -errno; /* a symbolic link */
        if (fstat(fd, ret) < 0)
                return -errno;
        if (!S_ISREG(ret->st_mode) || ret->st_dev != s->dev || ret->st_ino != s->ino)
                return -ESTALE;
        return TAKE_FD(fd);
}

static int stream_checksum(ArtifactStream *s, uint64_t max) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        fd = stream_open_final(s, &st);
        if (fd < 0)
                return fd;
        /* Grown again since it was cut (something of the job's still writing), or never cut (an
         * earlier finalize failed): never hashed whole. */
        if (max > 0 && (uint64_t) st.st_size > max)
                return -EFBIG;
        s->size = (uint64_t) st.st_size;
        if (s->size == 0) /* most jobs write nothing to one of them: nothing to read */
                return sha256_hex("", 0, s->sha256);
        return sha256_fd_hex(fd, s->sha256);
}

/* Both files are fsynced before either is renamed: a rename changes the renamed inode (its
 * ctime), so an fsync between the renames would write that inode out once more. One fsync of
 * the directory then makes both renames durable, and one of each directory above a directory
 * made for the run its entry (the job's, usually the artifacts root's too). */
int artifacts_finalize(ArtifactSet *a) {
        ArtifactStream *ss[] = { &a->out, &a->err };
        int r;

        if (a->finalized)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(ss); i++) {
                r = stream_sync(ss[i], a->max_size);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < ELEMENTSOF(ss); i++) {
                r = stream_rename(ss[i]);
                if (r < 0)
                        return r;
        }
        r = fsync_path(a->dir);
        if (r >= 0)
                r = fsync_parents(a->dir, a->dirs_made);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(ss); i++) {
                r = stream_checksum(ss[i], a->max_size);
                if (r < 0)
                        return r;
        }
        free(a->location);
        a->location = strdup(a->dir);
        free(a->report_stdout);
        a->report_stdout = strdup(a->out.path);
        free(a->report_stderr);
        a->report_stderr = strdup(a->err.path);
        if (!a->location || !a->report_stdout || !a->report_stderr)
                return -ENOMEM;
        a->finalized = true;
        return 0;
}

/* Appends "<name> <text>" to buf (size bytes), after "; " when buf already says something. */
static void limit_note(char *buf, size_t size, const char *name, const char *text) {
        size_t n = strnlen(buf, size);
        if (n + 1 < size)
                snprintf(buf + n, size - n, "%s%s %s", n > 0 ? "; " : "", name, text);
}

int artifacts_output_limit_error(const ArtifactSet *a, bool sigxfsz, const char *how, char *buf, size_t size) {
        const ArtifactStream *ss[] = { &a->out, &a->err };
        const char *names[] = { "stdout", "stderr" };
        char what[512] = "", text[160];

        if (a->max_size == 0 || size == 0)
                return 0;
        snprintf(text, sizeof(text), "exceeded max-output-size (%llu bytes): cut to its first %llu bytes",
                 (unsigned long long) a->max_size, (unsigned long long) a->max_size);
        for (size_t i = 0; i < ELEMENTSOF(ss); i++)
                if (ss[i]->cut_from > 0)
                        limit_note(what, sizeof(what), names[i], text);
        if (!*what && sigxfsz) {
                snprintf(text, sizeof(text), "tried to make a file larger than max-output-size (%llu bytes)",
                         (unsigned long long) a->max_size);
                limit_note(what, sizeof(what), "the job", text);
        }
        if (!*what)
                return 0;
        snprintf(buf, size, "%s%s%s", what, how ? ": " : "", strempty(how));
        return 1;
}

/* Copies the stream's file to dst via dst.tmp, fsyncing before the rename: a reader never sees a
 * partial file under the final name. */
static int copy_durable(const ArtifactStream *src, const char *dst) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int in = -EBADF, out = -EBADF;
        struct stat st;
        char buf[65536];
        int r = 0;

        if (asprintf(&tmp, "%s.tmp", dst) < 0)
                return -ENOMEM;
        in = stream_open_final(src, &st);
        if (in < 0)
                return in;
        out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out < 0)
                return -errno;
        for (;;) {
                ssize_t k = read(in, buf, sizeof(buf));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        r = k < 0 ? -errno : 0;
                        break;
                }
                for (ssize_t off = 0; r == 0 && off < k;) {
                        ssize_t w = write(out, buf + off, (size_t) (k - off));
                        if (w < 0 && errno != EINTR)
                                r = -errno;
                        off += w > 0 ? w : 0;
                }
                if (r < 0)
                        break; /* and the partial copy goes */
        }
        if (r == 0 && fsync(out) < 0)
                r = -errno;
        if (r == 0 && rename(tmp, dst) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        return r;
}

int artifacts_publish_shared(ArtifactSet *a, const char *shared_dir, const char *job_id,
                             const char *assignment_id) {
        _cleanup_free_ char *dir = NULL, *out = NULL, *err = NULL;
        int r, made;

        a->backend = "shared";
        if (!a->finalized || !artifact_id_valid(job_id) || !artifact_id_valid(assignment_id))
                return -EINVAL;
        if (asprintf(&dir, "%s/%s/%s", shared_dir, job_id, assignment_id) < 0 ||
            asprintf(&out, "%s/stdout", dir) < 0 || asprintf(&err, "%s/stderr", dir) < 0)
                return -ENOMEM;
        r = mkdir_parents_and_self(dir, 0755);
        made = r;
        if (r >= 0)
                r = copy_durable(&a->out, out);
        if (r >= 0)
                r = copy_durable(&a->err, err);
        if (r >= 0)
                r = fsync_path(dir);
        if (r >= 0)
                r = fsync_parents(dir, (unsigned) made);
        if (r < 0) {
                char msg[512];
                snprintf(msg, sizeof(msg), "copy to %s failed: %s", dir, artifacts_strerror(r));
                a->upload_state = "failed";
                free(a->upload_error);
                a->upload_error = strdup(msg);
                return r;
        }
        a->upload_state = "uploaded";
        free_and_replace_str(&a->location, TAKE_PTR(dir));
        free_and_replace_str(&a->report_stdout, TAKE_PTR(out));
        free_and_replace_str(&a->report_stderr, TAKE_PTR(err));
        return 0;
}

void artifacts_add_json(const ArtifactSet *a, const char *artifact_id, json_object *o) {
        char out_tmp[4200], err_tmp[4200];
        snprintf(out_tmp, sizeof(out_tmp), "%s.tmp", strempty(a->report_stdout));
        snprintf(err_tmp, sizeof(err_tmp), "%s.tmp", strempty(a->report_stderr));
        json_add_string(o, "artifact_id", artifact_id);
        json_add_string(o, "stdout_path", a->report_stdout);
        json_add_string(o, "stderr_path", a->report_stderr);
        json_add_string(o, "stdout_tmp_path", out_tmp);
        json_add_string(o, "stderr_tmp_path", err_tmp);
        json_add_string(o, "stdout_sha256", a->out.sha256);
        json_add_string(o, "stderr_sha256", a->err.sha256);
        json_add_int64(o, "stdout_size", (int64_t) a->out.size);
        json_add_int64(o, "stderr_size", (int64_t) a->err.size);
        json_add_string(o, "artifact_backend", a->backend);
        json_add_string(o, "artifact_location", a->location);
        json_add_string(o, "artifact_upload_state", a->upload_state);
        json_add_string(o, "artifact_upload_error", a->upload_error);
}

static int remove_tree_at(int parent, const char *name) {
        _cleanup_close_ int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *d;
        struct dirent *de;

        if (fd < 0)
                return unlinkat(parent, name, 0) < 0 ? -errno : 0;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -EBADF; /* owned by d now */
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                (void) remove_tree_at(dirfd(d), de->d_name);
        }
        closedir(d);
        return unlinkat(parent, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

int artifacts_cleanup(const char *state_dir, uint64_t cutoff, bool (*keep)(const char *job_id, void *userdata),
                      void *userdata) {
        _cleanup_free_ char *root = NULL;
        DIR *d;
        struct dirent *de;
        int removed = 0;

        if (asprintf(&root, "%s/artifacts", state_dir) < 0)
                return -ENOMEM;
        d = opendir(root);
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(d))) {
                struct stat st;
                if (de->d_name[0] == '.')
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                if ((uint64_t) st.st_mtim.tv_sec * 1000000ULL >= cutoff)
                        continue;
                if (keep && keep(de->d_name, userdata))
                        continue;
                if (remove_tree_at(dirfd(d), de->d_name) >= 0)
                        removed++;
        }
        closedir(d);
        return removed;
}
