/* ui-static.c: the dashboard's static files (see ui-static.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "ui-static.h"

static const struct {
        const char *extension;
        const char *content_type;
} content_types[] = {
        { ".html", "text/html; charset=utf-8" },
        { ".js", "text/javascript; charset=utf-8" },
        { ".css", "text/css; charset=utf-8" },
        { ".svg", "image/svg+xml" },
        { ".png", "image/png" },
        { ".ico", "image/x-icon" },
        { ".json", "application/json" },
        { ".txt", "text/plain; charset=utf-8" },
};

static bool name_char_ok(char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
               ch == '_' || ch == '-';
}

/* One flat name: no '/', no leading '.' (so neither "..", nor hidden files). */
static bool name_ok(const char *name) {
        size_t n = strlen(name);

        if (n == 0 || n > UI_NAME_MAX || name[0] == '.')
                return false;
        for (const char *p = name; *p; p++)
                if (!name_char_ok(*p))
                        return false;
        return true;
}

const char *ui_content_type(const char *name) {
        const char *dot = strrchr(name, '.');

        if (!dot)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(content_types); i++)
                if (streq(dot, content_types[i].extension))
                        return content_types[i].content_type;
        return NULL;
}

const char *ui_file_name(const char *path) {
        const char *name;

        if (!path)
                return NULL;
        if (streq(path, "/ui") || streq(path, "/ui/"))
                return "index.html";
        if (strncmp(path, "/ui/", 4) != 0)
                return NULL;
        name = path + 4;
        return name_ok(name) && ui_content_type(name) ? name : NULL;
}

/* Reads a regular file below dirfd without following a symlink, up to UI_FILE_MAX. -ENOENT for
 * anything that is not a regular file. */
static int read_ui_file(int dirfd, const char *name, char **ret, size_t *ret_size, struct stat *ret_st) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t done = 0;

        /* O_NONBLOCK: a FIFO planted here must not hold the event loop in open() until a writer comes. */
        fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return errno == ELOOP ? -ENOENT : negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode))
                return -ENOENT;
        if ((size_t) st.st_size > UI_FILE_MAX)
                return -EFBIG;
        buf = malloc((size_t) st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        while (done < (size_t) st.st_size) {
                ssize_t k = read(fd, buf + done, (size_t) st.st_size - done);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return negative_errno();
                if (k == 0)
                        break; /* shrank while reading: serve what is there */
                done += (size_t) k;
        }
        buf[done] = 0;
        *ret = TAKE_PTR(buf);
        *ret_size = done;
        *ret_st = st;
        return 0;
}

/* Weak: the same bytes are promised only as long as size and modification time match. */
static void etag_format(const struct stat *st, char *buf, size_t size) {
        snprintf(buf, size, "W/\"%" PRIx64 "-%" PRIx64 ".%lx\"", (uint64_t) st->st_size, (uint64_t) st->st_mtim.tv_sec,
                 (unsigned long) st->st_mtim.tv_nsec);
}

static bool etag_matches(const char *if_none_match, const char *etag) {
        /* Clients send back what we gave; a list or "*" is rare enough to treat as a substring. */
        return if_none_match && (streq(if_none_match, "*") || strstr(if_none_match, etag));
}

static int add_headers(HttpResponse *resp, const char *etag) {
        int r;

        r = http_response_add_header(resp, "Content-Security-Policy", UI_CONTENT_SECURITY_POLICY);
        if (r >= 0)
                r = http_response_add_header(resp, "X-Content-Type-Options", "nosniff");
        if (r >= 0)
                /* Stored, but revalidated on every load: an upgrade shows at once. */
                r = http_response_add_header(resp, "Cache-Control", "no-cache");
        if (r >= 0 && etag)
                r = http_response_add_header(resp, "ETag", etag);
        return r;
}

static int serve_file(int dirfd, const char *name, const HttpRequest *req, HttpResponse *resp) {
        _cleanup_free_ char *body = NULL;
        struct stat st = {};
        size_t size = 0;
        char etag[80];
        int r;

        r = read_ui_file(dirfd, name, &body, &size, &st);
        if (r == -ENOENT || r == -EACCES)
                return http_response_error(resp, 404, "no such file: %s", name);
        if (r == -EFBIG)
                return http_response_error(resp, 404, "file too large to serve: %s", name);
        if (r < 0)
                return log_error_errno(r, "Failed to read dashboard file %s: %m", name);

        etag_format(&st, etag, sizeof(etag));
        if (etag_matches(http_request_header(req, "If-None-Match"), etag))
                r = http_response_text(resp, 304, ui_content_type(name), NULL, 0);
        else
                r = http_response_text(resp, 200, ui_content_type(name), TAKE_PTR(body), size);
        if (r < 0)
                return r;
        return add_headers(resp, etag);
}

int ui_serve_directory(const char *directory, const HttpRequest *req, HttpResponse *resp) {
        _cleanup_close_ int dirfd = -EBADF;
        const char *name;
        int r;

        if (!streq_ptr(req->method, "GET")) {
                r = http_response_error(resp, 405, "method %.16s not allowed on %.128s", strna(req->method),
                                        strna(req->path));
                return r < 0 ? r : http_response_add_header(resp, "Allow", "GET");
        }
        name = ui_file_name(req->path);
        if (!name)
                return http_response_error(resp, 404, "no such file");

        dirfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0) {
                /* Installed without the dashboard (or ui-directory is wrong): say so, not 500. */
                log_warning_errno(negative_errno(), "Cannot open the dashboard directory %s: %m", directory);
                return http_response_error(resp, 404, "the dashboard is not installed");
        }
        return serve_file(dirfd, name, req, resp);
}
