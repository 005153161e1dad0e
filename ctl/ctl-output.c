/* ctl-output.c: tables, pager, colours, JSON output and time formatting for entropyctl. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl-output.h"
#include "log.h"
#include "strv.h"
#include "time-util.h"

static int stdout_tty = -1;

static bool stdout_is_tty(void) {
        /* Decided once, before a pager replaces stdout with a pipe. */
        if (stdout_tty < 0)
                stdout_tty = isatty(STDOUT_FILENO);
        return stdout_tty;
}

OutputMode output_mode(const CtlSettings *s) {
        if (s->output && streq(s->output, "json"))
                return OUTPUT_JSON;
        if (s->output && streq(s->output, "json-pretty"))
                return OUTPUT_JSON_PRETTY;
        return OUTPUT_TABLE;
}

bool colors_enabled(void) {
        const char *term = getenv("TERM");
        if (!isempty(getenv("NO_COLOR"))) /* no-color.org: set and not empty */
                return false;
        if (!term || streq(term, "dumb"))
                return false;
        return stdout_is_tty();
}

const char *color_off(void) {
        return colors_enabled() ? "\033[0m" : "";
}

const char *color_bold(void) {
        return colors_enabled() ? "\033[1m" : "";
}

const char *color_for_state(const char *state) {
        if (!colors_enabled() || !state)
                return "";
        if (streq(state, "COMPLETED") || streq(state, "ONLINE"))
                return "\033[0;32m"; /* green */
        if (streq(state, "FAILED") || streq(state, "LOST") || streq(state, "OFFLINE"))
                return "\033[0;1;31m"; /* bright red */
        if (streq(state, "ABORTED") || streq(state, "RETRYING") || streq(state, "DISCONNECTED") ||
            streq(state, "DRAINING"))
                return "\033[0;1;33m"; /* yellow */
        if (streq(state, "RUNNING") || streq(state, "ASSIGNED"))
                return "\033[0;1;34m"; /* blue */
        return "";
}

/* --- pager ---------------------------------------------------------------------------------- */

static pid_t pager_pid;
static int saved_stdout = -1;

void pager_open(const CtlSettings *s) {
        int fds[2];
        const char *pager;
        pid_t pid;

        if (s->no_pager || !stdout_is_tty())
                return;
        pager = getenv("ENTROPY_PAGER");
        if (!pager)
                pager = getenv("PAGER");
        if (pager && (streq(pager, "") || streq(pager, "cat")))
                return;
        if (pipe2(fds, O_CLOEXEC) < 0)
                return;
        fflush(stdout);
        pid = fork();
        if (pid < 0) {
                close(fds[0]);
                close(fds[1]);
                return;
        }
        if (pid == 0) {
                dup2(fds[0], STDIN_FILENO);
                /* Like systemctl: quit if one screen, raw colours, no init, chop long lines. */
                setenv("LESS", "FRSXMK", 0);
                if (pager)
                        execl("/bin/sh", "sh", "-c", pager, (char *) NULL);
                execlp("less", "less", (char *) NULL);
                execlp("more", "more", (char *) NULL);
                /* No pager at all: copy through. */
                execlp("cat", "cat", (char *) NULL);
                _exit(EXIT_FAILURE);
        }
        close(fds[0]);
        saved_stdout = dup(STDOUT_FILENO);
        dup2(fds[1], STDOUT_FILENO);
        close(fds[1]);
        signal(SIGPIPE, SIG_IGN);
        pager_pid = pid;
}

void pager_close(void) {
        if (pager_pid <= 0)
                return;
        fflush(stdout);
        /* The pager sees EOF only when our end of the pipe is closed. */
        if (saved_stdout >= 0) {
                dup2(saved_stdout, STDOUT_FILENO);
                close(saved_stdout);
                saved_stdout = -1;
        } else
                close(STDOUT_FILENO);
        (void) waitpid(pager_pid, NULL, 0);
        pager_pid = 0;
}

/* --- tables --------------------------------------------------------------------------------- */

struct Table {
        size_t n_columns;
        char **headers;
        char ***rows; /* each n_columns cells */
        char **row_colors;
        int *row_color_column;
        size_t n_rows;
        size_t *max_width;
};

Table *table_new(const char *header, ...) {
        _cleanup_strv_free_ char **h = NULL;
        va_list ap;
        Table *t;

        va_start(ap, header);
        for (const char *s = header; s; s = va_arg(ap, const char *))
                if (strv_extend(&h, s) < 0) {
                        va_end(ap);
                        return NULL;
                }
        va_end(ap);
        t = calloc(1, sizeof(Table));
        if (!t)
                return NULL;
        t->n_columns = strv_length(h);
        t->max_width = calloc(t->n_columns, sizeof(size_t));
        if (!t->max_width) {
                free(t);
                return NULL;
        }
        t->headers = TAKE_PTR(h);
        return t;
}

Table *table_free(Table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_rows; i++) {
                strv_free(t->rows[i]);
                free(t->row_colors[i]);
        }
        free(t->rows);
        free(t->row_colors);
        free(t->row_color_column);
        free(t->max_width);
        strv_free(t->headers);
        free(t);
        return NULL;
}

size_t table_rows(const Table *t) {
        return t->n_rows;
}

void table_set_max_width(Table *t, size_t column, size_t width) {
        if (column < t->n_columns)
                t->max_width[column] = width;
}

int table_add_row(Table *t, int color_column, const char *color, const char *const *cells) {
        _cleanup_strv_free_ char **row = NULL;
        char ***rows;
        char **colors;
        int *cc;

        for (size_t i = 0; i < t->n_columns; i++)
                if (strv_extend(&row, isempty(cells[i]) ? "-" : cells[i]) < 0)
                        return -ENOMEM;
        rows = realloc(t->rows, sizeof(char **) * (t->n_rows + 1));
        if (!rows)
                return -ENOMEM;
        t->rows = rows;
        colors = realloc(t->row_colors, sizeof(char *) * (t->n_rows + 1));
        if (!colors)
                return -ENOMEM;
        t->row_colors = colors;
        cc = realloc(t->row_color_column, sizeof(int) * (t->n_rows + 1));
        if (!cc)
                return -ENOMEM;
        t->row_color_column = cc;
        t->row_colors[t->n_rows] = color && *color ? strdup(color) : NULL;
        t->row_color_column[t->n_rows] = color && *color ? color_column : -1;
        t->rows[t->n_rows++] = TAKE_PTR(row);
        return 0;
}

/* Display width in characters: UTF-8 continuation bytes take no column. */
static size_t utf8_width(const char *s) {
        size_t w = 0;
        for (; *s; s++)
                if (((unsigned char) *s & 0xC0) != 0x80)
                        w++;
        return w;
}

static void print_cell(FILE *f, const char *s, size_t width, size_t max, bool last) {
        size_t w = utf8_width(s);

        if (max > 0 && w > max) {
                /* Cut at a character boundary and mark it, as systemctl does. */
                size_t cols = 0, i = 0;
                while (s[i] && cols < max - 1) {
                        i++;
                        while (((unsigned char) s[i] & 0xC0) == 0x80)
                                i++;
                        cols++;
                }
                fprintf(f, "%.*s…", (int) i, s);
                w = max;
        } else
                fputs(s, f);
        if (!last)
                fprintf(f, "%*s", (int) (width - w + 1), "");
}

void table_print(const Table *t, bool header, FILE *f) {
        _cleanup_free_ size_t *width = calloc(t->n_columns, sizeof(size_t));
        bool cut = stdout_is_tty();

        if (!width)
                return;
        for (size_t c = 0; c < t->n_columns; c++) {
                width[c] = header ? utf8_width(t->headers[c]) : 0;
                for (size_t r = 0; r < t->n_rows; r++)
                        width[c] = MAX(width[c], utf8_width(t->rows[r][c]));
                if (cut && t->max_width[c] > 0)
                        width[c] = MIN(width[c], MAX(t->max_width[c], utf8_width(t->headers[c])));
        }
        if (header) {
                fputs(color_bold(), f);
                for (size_t c = 0; c < t->n_columns; c++)
                        print_cell(f, t->headers[c], width[c], 0, c + 1 == t->n_columns);
                fprintf(f, "%s\n", color_off());
        }
        for (size_t r = 0; r < t->n_rows; r++) {
                for (size_t c = 0; c < t->n_columns; c++) {
                        bool colored = t->row_colors[r] && t->row_color_column[r] == (int) c;
                        if (colored)
                                fputs(t->row_colors[r], f);
                        print_cell(f, t->rows[r][c], width[c], cut ? t->max_width[c] : 0, c + 1 == t->n_columns);
                        if (colored)
                                fputs(color_off(), f);
                }
                fputc('\n', f);
        }
}

void output_json(json_object *o, OutputMode mode) {
        int flags = JSON_C_TO_STRING_NOSLASHESCAPE |
                    (mode == OUTPUT_JSON_PRETTY ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED
                                                : JSON_C_TO_STRING_PLAIN);
        printf("%s\n", json_object_to_json_string_ext(o, flags));
}

/* --- fields and times ----------------------------------------------------------------------- */

const char *json_str(json_object *o, const char *key) {
        json_object *v;
        if (!o || !json_object_object_get_ex(o, key, &v) || !v)
                return NULL;
        return json_object_get_string(v);
}

bool json_has(json_object *o, const char *key) {
        json_object *v;
        return o && json_object_object_get_ex(o, key, &v) && v;
}

int64_t json_int(json_object *o, const char *key, int64_t fallback) {
        json_object *v;
        if (!o || !json_object_object_get_ex(o, key, &v) || !v)
                return fallback;
        return json_object_get_int64(v);
}

double json_num(json_object *o, const char *key, double fallback) {
        json_object *v;
        if (!o || !json_object_object_get_ex(o, key, &v) || !v)
                return fallback;
        return json_object_get_double(v);
}

char *format_ago(char *buf, size_t size, double unix_seconds) {
        if (unix_seconds <= 0) {
                snprintf(buf, size, "-");
                return buf;
        }
        return format_relative(buf, size, (usec_t) (unix_seconds * (double) USEC_PER_SEC), now_realtime_usec());
}

char *format_when(char *buf, size_t size, double unix_seconds) {
        struct tm tm;
        time_t t = (time_t) unix_seconds;

        if (unix_seconds <= 0 || !localtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm) == 0)
                snprintf(buf, size, "-");
        return buf;
}

/* The shortest text that reads back as the same double, like Python's repr(): json-c would
 * print 17 digits for a value the server sent as 1712345678.123. */
static json_object *double_normalized(double d) {
        char buf[64];

        for (int prec = 1; prec <= 17; prec++) {
                snprintf(buf, sizeof(buf), "%.*g", prec, d);
                if (strtod(buf, NULL) == d)
                        break;
        }
        return json_object_new_double_s(d, buf);
}

void json_normalize(json_object *o) {
        if (json_object_is_type(o, json_type_array)) {
                for (size_t i = 0; i < json_object_array_length(o); i++) {
                        json_object *v = json_object_array_get_idx(o, i);
                        if (json_object_is_type(v, json_type_double))
                                json_object_array_put_idx(o, i, double_normalized(json_object_get_double(v)));
                        else
                                json_normalize(v);
                }
                return;
        }
        if (!json_object_is_type(o, json_type_object))
                return;
        for (;;) {
                const char *null_key = NULL;
                json_object_object_foreach(o, key, value) {
                        if (!value) {
                                null_key = key;
                                break;
                        }
                        if (json_object_is_type(value, json_type_double))
                                json_object_object_add(o, key, double_normalized(json_object_get_double(value)));
                        else
                                json_normalize(value);
                }
                if (!null_key)
                        return;
                json_object_object_del(o, null_key);
        }
}
