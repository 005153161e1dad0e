/* ui-static.h: GET /ui and GET /ui/<file>, the dashboard's static files, served from one
 * directory (the ui-directory setting; default PKGDATADIR/ui, where `make install` puts the files of ui/).
 *
 * Only flat names of [A-Za-z0-9._-] (not starting with '.') with a known extension are served, so
 * no request can leave the directory; symlinks are not followed. Every answer carries a
 * Content-Security-Policy that allows scripts, styles and connections from the control plane
 * itself only (the page runs no inline script and loads nothing from elsewhere), and an ETag so
 * that browsers revalidate cheaply (Cache-Control: no-cache). */
#pragma once

#include "control.h"
#include "http-server.h"

#define UI_DEFAULT_DIRECTORY PKGDATADIR "/ui"
#define UI_FILE_MAX ((size_t) 4 * 1024 * 1024)
#define UI_NAME_MAX 64

#define UI_CONTENT_SECURITY_POLICY                                                                   \
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "             \
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/* The file a request path names: "/ui" and "/ui/" give "index.html", "/ui/<name>" gives name when
 * valid; NULL otherwise. Points into path or at a static string. */
const char *ui_file_name(const char *path);
/* Content type for a valid name's extension, NULL for an extension not served. */
const char *ui_content_type(const char *name);

/* Serves req->path from directory: 200 with the file, 304 when If-None-Match matches, 404 for a
 * name not served or absent, 405 for methods other than GET. Returns 0 once resp is filled,
 * negative for failures the route layer turns into 500 (-ENOMEM, an unreadable directory). */
int ui_serve_directory(const char *directory, const HttpRequest *req, HttpResponse *resp);
