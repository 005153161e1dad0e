/* conf.h: one table per program describes every option; from it come the command-line flags, the
 * ENTROPY_* environment variables, the config-file keys and --help. Precedence is
 * flag > environment > file > default.
 *
 * The rule is fixed so that operators never have to look anything up: option --heartbeat-timeout
 * is ENTROPY_HEARTBEAT_TIMEOUT in the environment and `heartbeat-timeout = ...` in the config file
 * (in the program's section, e.g. [control], or before any section). --config is the one option that
 * is not a key.
 *
 * In the file, the other programs' sections ([control], [worker], [ctl]) are skipped; an unknown
 * section or key is an error. An indented line continues the key before it: it adds to a list
 * (CONF_STRV) and is an error for any other type. A line too long for libinih is an error naming it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum ConfType {
        CONF_STRING,   /* char * */
        CONF_TIMESPAN, /* usec_t, systemd syntax */
        CONF_INT,      /* int64_t, within [min, max] */
        CONF_BOOL,     /* bool; as a flag, --name means yes, --name=no */
        CONF_STRV,     /* char **, comma or space separated */
        CONF_DOUBLE,   /* double */
} ConfType;

typedef struct ConfOption {
        const char *name; /* long option name; also gives the env var and file key */
        int short_name;   /* 0 for none */
        ConfType type;
        size_t offset; /* of the field in the program's settings struct */
        const char *default_value; /* parsed like any other value; NULL leaves the field zero */
        const char *arg_name;      /* shown in --help */
        const char *help;
        int64_t min, max; /* CONF_INT range; both 0 means any int64 */
} ConfOption;

typedef struct ConfProgram {
        const char *name;            /* "entropy-control" */
        const char *section;         /* "control" */
        const char *summary;         /* one line for --help */
        const char *usage_args;      /* e.g. "[OPTIONS...]" or "[OPTIONS...] COMMAND ..." */
        const char *default_config;  /* "/etc/entropy/control.conf" */
        const ConfOption *options;
        size_t n_options;
        bool stop_at_non_option;     /* entropyctl: options end at the command verb */
        void (*help_more)(void);     /* optional: prints what --help says after the options */
} ConfProgram;

/* Fills settings (which must be zeroed) from defaults, the config file, the environment and argv.
 * Returns 0 when the program should run (*ret_optind, if given, is the first non-option argument),
 * 1 when --help or --version was printed (exit 0), negative on error (already logged). */
int conf_load(const ConfProgram *prog, int argc, char **argv, void *settings, int *ret_optind);
/* Frees what conf_load allocated in settings (strings and string vectors). */
void conf_free(const ConfProgram *prog, void *settings);
void conf_help(const ConfProgram *prog);
/* The env var for an option name: "heartbeat-timeout" -> "ENTROPY_HEARTBEAT_TIMEOUT". */
void conf_env_name(const char *name, char *buf, size_t len);
/* Applies one textual value to one option, as the file, env and flag paths do. */
int conf_apply(const ConfOption *opt, void *settings, const char *value);
