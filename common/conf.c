/* conf.c: options from flags, environment and INI file (libinih), in that precedence. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "log.h"
#include "macro.h"
#include "strv.h"
#include "time-util.h"

static void *field(const ConfOption *opt, void *settings) {
        return (char *) settings + opt->offset;
}

static int parse_bool(const char *v) {
        static const char *const yes[] = { "1", "yes", "y", "true", "t", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "f", "off" };
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(v, yes[i]) == 0)
                        return 1;
                if (strcasecmp(v, no[i]) == 0)
                        return 0;
        }
        return -EINVAL;
}

/* Between the items of a list value, on its first line and on the lines that continue it. */
#define CONF_LIST_SEPARATORS ", \t"

/* A list's items. One that starts with '#' is what a comment after a value leaves ('#' starts a
 * comment only at the start of a line): refused, rather than taken as capabilities or commands. */
static int list_split(const char *value, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        int r;

        r = strv_split(value, CONF_LIST_SEPARATORS, &l);
        if (r < 0)
                return r;
        STRV_FOREACH (i, l)
                if ((*i)[0] == '#')
                        return -EBADMSG;
        *ret = TAKE_PTR(l);
        return 0;
}

int conf_apply(const ConfOption *opt, void *settings, const char *value) {
        void *f = field(opt, settings);
        int r;

        switch (opt->type) {
        case CONF_STRING: {
                char *s = strdup(value);
                if (!s)
                        return -ENOMEM;
                free_and_replace_str((char **) f, s);
                return 0;
        }
        case CONF_TIMESPAN: {
                usec_t u;
                r = parse_timespan(value, &u);
                if (r < 0)
                        return r;
                *(usec_t *) f = u;
                return 0;
        }
        case CONF_INT: {
                char *end;
                long long x;
                errno = 0;
                x = strtoll(value, &end, 10);
                if (end == value || *end)
                        return -EINVAL;
                if (errno == ERANGE)
                        return -ERANGE;
                if (errno != 0)
                        return -EINVAL;
                if ((opt->min || opt->max) && (x < opt->min || x > opt->max))
                        return -ERANGE;
                *(int64_t *) f = x;
                return 0;
        }
        case CONF_BOOL:
                r = parse_bool(value);
                if (r < 0)
                        return r;
                *(bool *) f = r;
                return 0;
        case CONF_STRV: {
                char **l;
                r = list_split(value, &l);
                if (r < 0)
                        return r;
                strv_free(*(char ***) f);
                *(char ***) f = l;
                return 0;
        }
        case CONF_DOUBLE: {
                char *end;
                double d;
                errno = 0;
                d = strtod(value, &end);
                if (errno != 0 || end == value || *end)
                        return -EINVAL;
                *(double *) f = d;
                return 0;
        }
        }
        return -EINVAL;
}

void conf_env_name(const char *name, char *buf, size_t len) {
        size_t i = 0;
        int k = snprintf(buf, len, "ENTROPY_");
        if (k < 0 || (size_t) k >= len)
                return;
        for (i = (size_t) k; *name && i + 1 < len; name++, i++)
                buf[i] = *name == '-' ? '_' : (char) toupper((unsigned char) *name);
        buf[i] = 0;
}

static const ConfOption *find(const ConfProgram *prog, const char *name) {
        for (size_t i = 0; i < prog->n_options; i++)
                if (streq(prog->options[i].name, name))
                        return &prog->options[i];
        return NULL;
}

static const char *type_hint(const ConfOption *opt) {
        switch (opt->type) {
        case CONF_TIMESPAN:
                return "a time span such as 500ms, 8s or 2min";
        case CONF_INT:
                return "an integer";
        case CONF_BOOL:
                return "a boolean (yes/no)";
        case CONF_DOUBLE:
                return "a number";
        default:
                return "a value";
        }
}

/* Why a value was refused, for the message: "expected an integer" or "out of range (1..256)". */
static const char *refusal(const ConfOption *opt, int r, char *buf, size_t len) {
        if (r == -EBADMSG && opt->type == CONF_STRV)
                snprintf(buf, len, "an item starts with '#', which starts a comment only at the start of a line");
        else if (r == -ERANGE && opt->type == CONF_INT) {
                bool any = opt->min == 0 && opt->max == 0;
                snprintf(buf, len, "out of range (%" PRId64 "..%" PRId64 ")", any ? INT64_MIN : opt->min,
                         any ? INT64_MAX : opt->max);
        } else if (r == -ERANGE && opt->type == CONF_TIMESPAN)
                snprintf(buf, len, "out of range (a time span must be shorter than 106751991 days)");
        else
                snprintf(buf, len, "expected %s", type_hint(opt));
        return buf;
}

/* libinih parses each line in a buffer of a size fixed when it was built (200 bytes by default), and
 * parses what did not fit as further lines: a long line was cut, or read in part as a continuation of
 * the key before it. Debian's libinih (55-1) makes those build options variables, and there a heap
 * buffer of CONF_LINE_MAX bytes is used. Other builds do not have them: the weak references are NULL
 * and their own size stays. Whatever the size, conf_ini_read() refuses a line that does not fit. */
#define CONF_LINE_MAX 65536
extern bool ini_use_stack __attribute__((weak));
extern bool ini_allow_realloc __attribute__((weak));
extern int ini_max_line __attribute__((weak));
extern int ini_initial_alloc __attribute__((weak));

static void ini_configure(void) {
        if (!&ini_use_stack || !&ini_allow_realloc || !&ini_max_line || !&ini_initial_alloc)
                return;
        ini_use_stack = false;
        ini_allow_realloc = false;
        ini_max_line = CONF_LINE_MAX;
        ini_initial_alloc = CONF_LINE_MAX;
}

typedef struct IniContext {
        const ConfProgram *prog;
        void *settings;
        const char *path;
        FILE *f;
        unsigned line;      /* the line libinih is parsing: libinih tells the handler no line numbers */
        unsigned section_line; /* the line of the last [section] */
        bool section_reported; /* it was refused, once for all its keys */
        bool after_key;     /* a key line came since the last [section] (libinih's prev_name is set) */
        bool continuation;  /* this line continues that key's value */
        bool skip_continuation; /* that key was another program's or was refused: ignore its continuations */
        int line_max;       /* the longest line libinih's buffer holds, without its newline */
        unsigned bad_line;  /* a line libinih would misread, which ended the parse */
        bool bad_nul;       /* it has a NUL byte (else it is too long) */
        int error;
} IniContext;

/* libinih's fgets-style reader: one whole line per call, or NULL at the end of the file and for a line
 * libinih would misread (too long for its buffer of num bytes, or with a NUL byte). */
static char *conf_ini_read(char *str, int num, void *stream) {
        IniContext *c = stream;
        const char *start, *s;
        int ch, n = 0;

        if (c->bad_line > 0)
                return NULL;
        ch = getc(c->f);
        if (ch == EOF)
                return NULL;
        c->line++;
        c->line_max = num - 2;
        for (; ch != EOF && ch != '\n'; ch = getc(c->f)) {
                /* Room for this byte, the newline and the NUL. */
                if (n + 3 > num || ch == 0) {
                        c->bad_line = c->line;
                        c->bad_nul = ch == 0;
                        return NULL;
                }
                str[n++] = (char) ch;
        }
        str[n++] = '\n';
        str[n] = 0;

        /* What libinih will make of the line, in its order: a comment or blank line, a continuation
         * (an indented line after a key), a [section] (which forgets the key), or a key. */
        start = str;
        if (c->line == 1 && strncmp(start, "\xEF\xBB\xBF", 3) == 0)
                start += 3; /* the UTF-8 BOM, which libinih skips */
        for (s = start; isspace((unsigned char) *s); s++)
                ;
        c->continuation = false;
        if (*s != 0 && !strchr(";#", *s)) {
                if (s > start && c->after_key)
                        c->continuation = true;
                else if (*s == '[') {
                        c->after_key = false;
                        c->section_line = c->line;
                        c->section_reported = false;
                } else
                        c->after_key = true;
        }
        return str;
}

/* A continuation line adds its items to a list. Any other option takes one line: -EMEDIUMTYPE. */
static int conf_append(const ConfOption *opt, void *settings, const char *value) {
        _cleanup_strv_free_ char **l = NULL;
        char ***f = field(opt, settings);
        int r;

        if (opt->type != CONF_STRV)
                return -EMEDIUMTYPE;
        r = list_split(value, &l);
        if (r < 0)
                return r;
        for (char **i = l; i && *i; i++) {
                r = strv_extend(f, *i);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void conf_ini_continue(IniContext *c, const char *key, const char *value) {
        const ConfOption *opt;
        char why[96];
        int r;

        if (c->skip_continuation)
                return;
        opt = find(c->prog, key);
        if (!opt)
                return;
        r = conf_append(opt, c->settings, value);
        if (r == -EMEDIUMTYPE) {
                log_error("%s:%u: indented line continues '%s', which takes one value; only a list continues "
                          "on the next line",
                          c->path, c->line, key);
                r = -EINVAL;
        } else if (r < 0)
                log_error("%s:%u: invalid value '%s' for '%s': %s", c->path, c->line, value, key,
                          refusal(opt, r, why, sizeof(why)));
        if (r < 0) {
                c->error = r;
                c->skip_continuation = true;
        }
}

/* The sections of the programs that may share a file. Any other is a typo, whose keys would be lost. */
static const char *const suite_sections[] = { "control", "worker", "ctl" };

static bool section_of_suite(const char *section) {
        for (size_t i = 0; i < ELEMENTSOF(suite_sections); i++)
                if (strcasecmp(section, suite_sections[i]) == 0)
                        return true;
        return false;
}

/* "[worker] and [ctl]": the sections this program skips, for the message. */
static const char *skipped_sections(const ConfProgram *prog, char *buf, size_t len) {
        size_t n = 0, k = 0;
        for (size_t i = 0; i < ELEMENTSOF(suite_sections); i++)
                if (strcasecmp(suite_sections[i], prog->section) != 0)
                        n++;
        buf[0] = 0;
        for (size_t i = 0; i < ELEMENTSOF(suite_sections); i++) {
                size_t used = strlen(buf);
                if (strcasecmp(suite_sections[i], prog->section) == 0)
                        continue;
                k++;
                snprintf(buf + used, len - used, "%s[%s]", k == 1 ? "" : k == n ? " and " : ", ",
                         suite_sections[i]);
        }
        return buf;
}

static int conf_ini_entry(void *user, const char *section, const char *key, const char *value) {
        IniContext *c = user;
        const ConfOption *opt;
        char why[96];
        int r;

        if (c->continuation) {
                conf_ini_continue(c, key, value);
                return 1;
        }
        c->skip_continuation = true;
        if (!isempty(section) && strcasecmp(section, c->prog->section) != 0) {
                if (section_of_suite(section))
                        return 1; /* another program's section of a shared file */
                /* Refused as an unknown key is: a typo in a heading must not drop what follows it. */
                if (!c->section_reported)
                        log_error("%s:%u: unknown section [%s]; %s reads [%s] and skips %s", c->path,
                                  c->section_line, section, c->prog->name, c->prog->section,
                                  skipped_sections(c->prog, why, sizeof(why)));
                c->section_reported = true;
                c->error = -EINVAL;
                return 1;
        }
        opt = find(c->prog, key);
        if (!opt || streq(key, "config")) {
                log_error("%s:%u: unknown key '%s' in [%s]", c->path, c->line, key, strempty(section));
                c->error = -EINVAL;
                return 1;
        }
        r = conf_apply(opt, c->settings, value);
        if (r < 0) {
                log_error("%s:%u: invalid value '%s' for '%s': %s", c->path, c->line, value, key,
                          refusal(opt, r, why, sizeof(why)));
                c->error = r;
                return 1;
        }
        c->skip_continuation = false;
        return 1;
}

static int load_file(const ConfProgram *prog, void *settings, const char *path, bool explicit) {
        IniContext c = { .prog = prog, .settings = settings, .path = path };
        int r;

        c.f = fopen(path, "re");
        if (!c.f) {
                if (errno == ENOENT && !explicit)
                        return 0;
                return log_error_errno(-errno, "Failed to open config file %s: %m", path);
        }
        ini_configure();
        r = ini_parse_stream(conf_ini_read, &c, conf_ini_entry, &c);
        if (ferror(c.f))
                r = -1;
        fclose(c.f);
        if (r < 0)
                return log_error_errno(-EIO, "Failed to read config file %s", path);
        if (c.bad_line > 0 && c.bad_nul)
                return log_error_errno(-EINVAL, "%s:%u: NUL byte in line", path, c.bad_line);
        if (c.bad_line > 0)
                return log_error_errno(-EINVAL,
                                       "%s:%u: line too long: at most %d bytes (a list can continue on indented "
                                       "lines)",
                                       path, c.bad_line, c.line_max);
        if (r > 0)
                return log_error_errno(c.error < 0 ? c.error : -EINVAL, "%s:%d: syntax error", path, r);
        return c.error;
}

static int load_env(const ConfProgram *prog, void *settings) {
        for (size_t i = 0; i < prog->n_options; i++) {
                const ConfOption *opt = &prog->options[i];
                char env[128], why[96];
                const char *v;
                int r;

                if (streq(opt->name, "config"))
                        continue;
                conf_env_name(opt->name, env, sizeof(env));
                v = getenv(env);
                if (!v)
                        continue;
                r = conf_apply(opt, settings, v);
                if (r < 0)
                        return log_error_errno(r, "Invalid value '%s' in $%s: %s", v, env,
                                               refusal(opt, r, why, sizeof(why)));
        }
        return 0;
}

void conf_help(const ConfProgram *prog) {
        printf("%s %s\n\n%s\n\nOptions:\n", prog->name, prog->usage_args, prog->summary);
        printf("  -h --help                     Show this help\n");
        printf("     --version                  Show the version\n");
        for (size_t i = 0; i < prog->n_options; i++) {
                const ConfOption *opt = &prog->options[i];
                char lhs[64], env[96];
                if (opt->type == CONF_BOOL)
                        snprintf(lhs, sizeof(lhs), "--%s[=BOOL]", opt->name);
                else
                        snprintf(lhs, sizeof(lhs), "--%s=%s", opt->name, opt->arg_name ? opt->arg_name : "VALUE");
                if (opt->short_name)
                        printf("  -%c %-27s", opt->short_name, lhs);
                else
                        printf("     %-27s", lhs);
                printf(" %s", opt->help);
                if (opt->default_value)
                        printf(" (default: %s)", opt->default_value);
                conf_env_name(opt->name, env, sizeof(env));
                printf("\n%34s[$%s]\n", "", env);
        }
        if (isempty(prog->default_config))
                printf("\nEvery option but --config is also a key of the config file, in section [%s]; no file is\n"
                       "read without --config or $ENTROPY_CONFIG.\n",
                       prog->section);
        else
                printf("\nEvery option but --config is also a key of the config file (default %s), in section [%s].\n",
                       prog->default_config, prog->section);
        printf("Precedence: flag, then environment, then config file, then default.\n");
        if (prog->help_more)
                prog->help_more();
}

static int set_defaults(const ConfProgram *prog, void *settings) {
        for (size_t i = 0; i < prog->n_options; i++) {
                const ConfOption *opt = &prog->options[i];
                if (!opt->default_value)
                        continue;
                int r = conf_apply(opt, settings, opt->default_value);
                if (r < 0)
                        return log_error_errno(r, "Bad built-in default for --%s: %m", opt->name);
        }
        return 0;
}

enum { ARG_VERSION = 0x100, ARG_OPTION_BASE = 0x200 };

int conf_load(const ConfProgram *prog, int argc, char **argv, void *settings, int *ret_optind) {
        _cleanup_free_ struct option *longopts = NULL;
        _cleanup_free_ char *config_path = NULL;
        bool config_explicit = false;
        char shortopts[128] = "";
        size_t n = 0, sn = 0;
        char why[96];
        int c, r;

        longopts = calloc(prog->n_options + 3, sizeof(struct option));
        if (!longopts)
                return log_oom();
        longopts[n++] = (struct option){ "help", no_argument, NULL, 'h' };
        longopts[n++] = (struct option){ "version", no_argument, NULL, ARG_VERSION };
        if (prog->stop_at_non_option)
                shortopts[sn++] = '+';
        shortopts[sn++] = 'h';
        for (size_t i = 0; i < prog->n_options; i++) {
                const ConfOption *opt = &prog->options[i];
                longopts[n++] = (struct option){ opt->name,
                                                 opt->type == CONF_BOOL ? optional_argument : required_argument,
                                                 NULL, opt->short_name ? opt->short_name : ARG_OPTION_BASE + (int) i };
                if (opt->short_name && sn + 3 < sizeof(shortopts)) {
                        shortopts[sn++] = (char) opt->short_name;
                        if (opt->type != CONF_BOOL)
                                shortopts[sn++] = ':';
                }
        }
        shortopts[sn] = 0;

        r = set_defaults(prog, settings);
        if (r < 0)
                return r;

        /* First pass: only --help, --version and --config, which decide what else is read. */
        opterr = 0;
        optind = 0;
        while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) >= 0) {
                const ConfOption *opt = NULL;
                if (c == 'h') {
                        conf_help(prog);
                        return 1;
                }
                if (c == ARG_VERSION) {
                        printf("%s %s\n", prog->name, PACKAGE_VERSION);
                        return 1;
                }
                if (c >= ARG_OPTION_BASE)
                        opt = &prog->options[c - ARG_OPTION_BASE];
                if (opt && streq(opt->name, "config")) {
                        free(config_path);
                        config_path = strdup(optarg);
                        if (!config_path)
                                return log_oom();
                        config_explicit = true;
                }
        }
        if (!config_path) {
                const char *e = getenv("ENTROPY_CONFIG");
                config_explicit = e != NULL;
                config_path = strdup(e ? e : prog->default_config);
                if (!config_path)
                        return log_oom();
        }
        if (!isempty(config_path)) {
                r = load_file(prog, settings, config_path, config_explicit);
                if (r < 0)
                        return r;
        }
        r = load_env(prog, settings);
        if (r < 0)
                return r;

        /* Second pass: the flags themselves, which win over everything. */
        opterr = 1;
        optind = 0;
        while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) >= 0) {
                const ConfOption *opt = NULL;
                if (c == '?')
                        return log_error_errno(-EINVAL, "Invalid command line; see %s --help.", prog->name);
                if (c >= ARG_OPTION_BASE)
                        opt = &prog->options[c - ARG_OPTION_BASE];
                else
                        for (size_t i = 0; i < prog->n_options; i++)
                                if (prog->options[i].short_name == c)
                                        opt = &prog->options[i];
                if (!opt)
                        continue;
                r = conf_apply(opt, settings, optarg ? optarg : "yes");
                if (r < 0)
                        return log_error_errno(r, "Invalid value '%s' for --%s: %s", strempty(optarg), opt->name,
                                               refusal(opt, r, why, sizeof(why)));
        }
        if (!ret_optind && optind < argc)
                return log_error_errno(-EINVAL, "Unexpected argument '%s'; see %s --help.", argv[optind], prog->name);
        if (ret_optind)
                *ret_optind = optind;
        return 0;
}

void conf_free(const ConfProgram *prog, void *settings) {
        for (size_t i = 0; i < prog->n_options; i++) {
                const ConfOption *opt = &prog->options[i];
                if (opt->type == CONF_STRING) {
                        char **p = field(opt, settings);
                        free(*p);
                        *p = NULL;
                } else if (opt->type == CONF_STRV) {
                        char ***p = field(opt, settings);
                        *p = strv_free(*p);
                }
        }
}
