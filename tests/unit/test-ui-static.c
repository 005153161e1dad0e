/* test-ui-static.c: the dashboard's static files (daemon/ui-static.c): names that may be served,
 * content types, no way out of the directory (.., hidden files, sub-paths, symlinks), and the
 * security headers on every file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs-util.h"
#include "http-server.h"
#include "tap.h"
#include "ui-static.h"

static const char *header(const HttpResponse *resp, const char *name) {
        for (size_t i = 0; i < resp->n_headers; i++)
                if (strcasecmp(resp->headers[i].name, name) == 0)
                        return resp->headers[i].value;
        return NULL;
}

static void test_names(void) {
        is_str(ui_file_name("/ui"), "index.html", "/ui is the page");
        is_str(ui_file_name("/ui/"), "index.html", "/ui/ is the page");
        is_str(ui_file_name("/ui/app.js"), "app.js", "a plain name");
        is_str(ui_file_name("/ui/style-2.min.css"), "style-2.min.css", "dots, dashes");
        ok(!ui_file_name("/ui/../control.db"), "no ..");
        ok(!ui_file_name("/ui/..%2fcontrol.db"), "no encoded separators");
        ok(!ui_file_name("/ui/.htaccess"), "no hidden files");
        ok(!ui_file_name("/ui/sub/app.js"), "no sub-paths");
        ok(!ui_file_name("/ui/app.exe"), "no unknown extension");
        ok(!ui_file_name("/ui/Makefile"), "no extensionless names");
        ok(!ui_file_name("/uix/app.js"), "not below /ui");
        ok(!ui_file_name("/ui/a b.js"), "no spaces");
        is_str(ui_content_type("app.js"), "text/javascript; charset=utf-8", "javascript type");
        is_str(ui_content_type("index.html"), "text/html; charset=utf-8", "html type");
}

static void serve(const char *dir, const char *method, const char *path, HttpResponse *resp) {
        HttpRequest req = { .method = method, .path = path };
        int r;

        http_response_done(resp);
        r = ui_serve_directory(dir, &req, resp);
        ok(r == 0, "%s %s is answered", method, path);
}

static void test_serving(void) {
        char dir[] = "/tmp/test-ui-static-XXXXXX", path[512], outside[512];
        HttpResponse resp = {};

        if (!mkdtemp(dir))
                tap_bail("mkdtemp");
        snprintf(path, sizeof(path), "%s/index.html", dir);
        write_file_durable(path, "<!doctype html>", 15, 0644);
        snprintf(path, sizeof(path), "%s/app.js", dir);
        write_file_durable(path, "'use strict';", 13, 0644);
        snprintf(outside, sizeof(outside), "%s.secret.txt", dir);
        write_file_durable(outside, "secret", 6, 0600);
        snprintf(path, sizeof(path), "%s/link.txt", dir);
        if (symlink(outside, path) < 0)
                tap_bail("symlink");
        snprintf(path, sizeof(path), "%s/dir.js", dir);
        mkdir(path, 0755);
        snprintf(path, sizeof(path), "%s/fifo.js", dir);
        if (mkfifo(path, 0644) < 0)
                tap_bail("mkfifo");

        serve(dir, "GET", "/ui", &resp);
        is_int(resp.status, 200, "the page");
        ok(resp.body_size == 15 && memcmp(resp.body, "<!doctype html>", 15) == 0, "its bytes");
        is_str(resp.content_type, "text/html; charset=utf-8", "as HTML");
        ok(header(&resp, "Content-Security-Policy") && strstr(header(&resp, "Content-Security-Policy"), "script-src 'self'"),
           "Content-Security-Policy allows own scripts only");
        is_str(header(&resp, "X-Content-Type-Options"), "nosniff", "nosniff");
        is_str(header(&resp, "Cache-Control"), "no-cache", "revalidated");
        ok(header(&resp, "ETag") != NULL, "ETag");

        serve(dir, "GET", "/ui/app.js", &resp);
        is_int(resp.status, 200, "the script");
        serve(dir, "GET", "/ui/link.txt", &resp);
        is_int(resp.status, 404, "a symlink out of the directory is not followed");
        serve(dir, "GET", "/ui/dir.js", &resp);
        is_int(resp.status, 404, "a directory is not a file");
        /* Opening a FIFO for reading would wait for a writer, with the whole event loop. */
        alarm(10);
        serve(dir, "GET", "/ui/fifo.js", &resp);
        alarm(0);
        is_int(resp.status, 404, "a FIFO is not a file, and does not block the answer");
        serve(dir, "GET", "/ui/missing.js", &resp);
        is_int(resp.status, 404, "missing file");
        serve(dir, "GET", "/ui/../x.txt", &resp);
        is_int(resp.status, 404, "traversal");
        serve(dir, "POST", "/ui/app.js", &resp);
        is_int(resp.status, 405, "only GET");
        serve("/nonexistent/ui", "GET", "/ui", &resp);
        is_int(resp.status, 404, "no dashboard installed is a 404, not a 500");
        http_response_done(&resp);

        char cmd[1200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", dir, outside);
        (void) system(cmd);
}

int main(void) {
        test_names();
        test_serving();
        return tap_done();
}
