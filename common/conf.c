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
                r = strv_split(value, ", \t", &l);
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
        if (r == -ERANGE && opt->type == CONF_INT) {
                bool any = opt->min == 0 && opt->max == 0;
                snprintf(buf, len, "out of range (%" PRId64 "..%" PRId64 ")", any ? INT64_MIN : opt->min,
                         any ? INT64_MAX : opt->max);
        } else if (r == -ERANGE && opt->type == CONF_TIMESPAN)
                snprintf(buf, len, "out of range (a time span must be shorter than 106751991 days)");
        else
                snprintf(buf, len, "expected %s", type_hint(opt));
        return buf;
}

typedef struct IniContext {
        const ConfProgram *prog;
        void *settings;
        const char *path;
        int error;
} IniContext;

static int conf_ini_entry(void *user, const char *section, const char *key, const char *value) {
        IniContext *c = user;
        const ConfOption *opt;
        char why[96];
        int r;

        if (!isempty(section) && strcasecmp(section, c->prog->section) != 0)
                return 1; /* another program's section of a shared file */
        opt = find(c->prog, key);
        if (!opt || streq(key, "config")) {
                log_error("%s: unknown key '%s' in [%s]", c->path, key, strempty(section));
                c->error = -EINVAL;
                return 1;
        }
        r = conf_apply(opt, c->settings, value);
        if (r < 0) {
                log_error("%s: invalid value '%s' for '%s': %s", c->path, value, key,
                          refusal(opt, r, why, sizeof(why)));
                c->error = r;
        }
        return 1;
}

static int load_file(const ConfProgram *prog, void *settings, const char *path, bool explicit) {
        IniContext c = { .prog = prog, .settings = settings, .path = path };
        FILE *f = fopen(path, "re");
        int r;

        if (!f) {
                if (errno == ENOENT && !explicit)
                        return 0;
                return log_error_errno(-errno, "Failed to open config file %s: %m", path);
        }
        r = ini_parse_file(f, conf_ini_entry, &c);
        fclose(f);
        if (r > 0 && c.error == 0) {
                log_error("%s:%d: syntax error", path, r);
                return -EINVAL;
        }
        if (r < 0)
                return log_error_errno(-EIO, "Failed to read config file %s", path);
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
        printf("\nEvery option but --config is also a key of the config file (default %s), in section [%s].\n"
               "Precedence: flag, then environment, then config file, then default.\n",
               prog->default_config, prog->section);
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
