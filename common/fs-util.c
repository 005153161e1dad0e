/* fs-util.c: reading, durable writing and directory helpers. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs-util.h"
#include "macro.h"

int read_full_file(const char *path, size_t max_size, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t n = 0, cap = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        for (;;) {
                if (n + 1 >= cap) {
                        size_t ncap = cap ? cap * 2 : 4096;
                        char *nb;
                        if (ncap > max_size + 2)
                                ncap = max_size + 2;
                        if (ncap <= n + 1)
                                return -EFBIG;
                        nb = realloc(buf, ncap);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                        cap = ncap;
                }
                ssize_t k = read(fd, buf + n, cap - n - 1);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n > max_size)
                        return -EFBIG;
        }
        if (!buf) {
                buf = strdup("");
                if (!buf)
                        return -ENOMEM;
        }
        buf[n] = 0;
        *ret = TAKE_PTR(buf);
        if (ret_size)
                *ret_size = n;
        return 0;
}

static bool secret_space(char c) {
        return c == '\n' || c == '\r' || c == ' ' || c == '\t';
}

int secret_strip(char *s) {
        size_t n = strlen(s), skip = 0;

        /* Both ends: HTTP drops the whitespace around a header value, so a plain token that kept it
         * would never match what clients send, while a signed one (HMAC over the same bytes on both
         * sides) would still work. */
        while (n > 0 && secret_space(s[n - 1]))
                s[--n] = 0;
        while (skip < n && secret_space(s[skip]))
                skip++;
        if (skip > 0) {
                memmove(s, s + skip, n - skip + 1);
                n -= skip;
        }
        if (n == 0)
                return -ENODATA;
        if (strchr(s, '\n'))
                return -EBADMSG;
        return 0;
}

int read_secret_file(const char *path, char **ret) {
        _cleanup_free_ char *s = NULL;
        int r;

        r = read_full_file(path, 4096, &s, NULL);
        if (r < 0)
                return r;
        r = secret_strip(s);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

int fsync_path(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                return -errno;
        return 0;
}

int fsync_directory_of(const char *path) {
        _cleanup_free_ char *copy = strdup(path);
        if (!copy)
                return -ENOMEM;
        return fsync_path(dirname(copy));
}

int write_file_durable(const char *path, const void *data, size_t size, mode_t mode) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        const char *p = data;

        if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fchmod(fd, mode) < 0)
                goto fail;
        while (size > 0) {
                ssize_t k = write(fd, p, size);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        goto fail;
                }
                p += k;
                size -= (size_t) k;
        }
        if (fsync(fd) < 0 || rename(tmp, path) < 0)
                goto fail;
        return fsync_directory_of(path);
fail:;
        int r = -errno;
        unlink(tmp);
        return r;
}

int mkdir_parents_and_self(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);
        int made = 0;

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/' || s[-1] == '/')
                        continue;
                *s = 0;
                if (mkdir(p, 0755) == 0)
                        made++;
                else if (errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) == 0)
                made++;
        else if (errno != EEXIST)
                return -errno;
        return made;
}

int fsync_parents(const char *path, unsigned n) {
        _cleanup_free_ char *p = strdup(path);
        int r;

        if (!p)
                return -ENOMEM;
        for (unsigned i = 0; i < n; i++) {
                char *slash = strrchr(p, '/');
                if (!slash)
                        return fsync_path(".");
                /* "/a" has "/" above it; "a/b/" is not a path this is given. */
                slash[slash == p ? 1 : 0] = 0;
                r = fsync_path(p);
                if (r < 0 || slash == p)
                        return r;
        }
        return 0;
}

int directory_writable(const char *dir) {
        struct stat st;
        if (stat(dir, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        if (access(dir, W_OK | X_OK) < 0)
                return -errno;
        return 0;
}

char *format_bytes(char *buf, size_t size, uint64_t bytes) {
        static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
        double v = (double) bytes;
        size_t u = 0;

        for (; v >= 1024.0 && u + 1 < ELEMENTSOF(units); u++)
                v /= 1024.0;
        if (u == 0)
                snprintf(buf, size, "%" PRIu64 " B", bytes);
        else
                snprintf(buf, size, "%.1f %s", v, units[u]);
        return buf;
}
