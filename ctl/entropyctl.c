/* entropyctl.c: main() of entropyctl, the administration CLI of Entropy: the global options (one
 * conf table: flags, ENTROPY_* variables, [ctl] keys of the config file), --help with the verbs
 * and the exit codes, the choice of transport (D-Bus to the local control plane, HTTP with --url),
 * and the dispatch to a verb of ctl-verbs.c. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "conf.h"
#include "ctl-output.h"
#include "ctl.h"
#include "log.h"

static const ConfOption ctl_options[] = {
        {"config", 0, CONF_STRING, offsetof(CtlSettings, config), NULL, "FILE",
         "Read options from FILE (section [ctl])", 0, 0},
        {"url", 0, CONF_STRING, offsetof(CtlSettings, url), NULL, "URL",
         "Talk HTTP to the control plane at URL instead of D-Bus to the local one", 0, 0},
        {"token-file", 0, CONF_STRING, offsetof(CtlSettings, token_file), NULL, "FILE",
         "Admin token for --url (else $ENTROPY_ADMIN_TOKEN)", 0, 0},
        {"worker-token-file", 0, CONF_STRING, offsetof(CtlSettings, worker_token_file), NULL, "FILE",
         "Worker token for replay over --url (else $ENTROPY_WORKER_TOKEN)", 0, 0},
        {"ca-file", 0, CONF_STRING, offsetof(CtlSettings, ca_file), NULL, "FILE",
         "PEM CA to verify an https:// --url against (default: the system's)", 0, 0},
        {"tls-certificate", 0, CONF_STRING, offsetof(CtlSettings, tls_certificate), NULL, "FILE",
         "PEM client certificate for a control plane that requires one (with --tls-key)", 0, 0},
        {"tls-key", 0, CONF_STRING, offsetof(CtlSettings, tls_key), NULL, "FILE",
         "PEM private key of --tls-certificate", 0, 0},
        {"output", 'o', CONF_STRING, offsetof(CtlSettings, output), "table", "MODE",
         "Output: table, json (compact; events --follow: one event a line) or json-pretty", 0, 0},
        {"no-legend", 0, CONF_BOOL, offsetof(CtlSettings, no_legend), "no", NULL,
         "Print no column headers and no footer", 0, 0},
        {"no-pager", 0, CONF_BOOL, offsetof(CtlSettings, no_pager), "no", NULL, "Do not pipe output into a pager", 0,
         0},
        {"user-bus", 0, CONF_BOOL, offsetof(CtlSettings, user_bus), "no", NULL,
         "Use the session bus instead of the system bus", 0, 0},
        {"timeout", 0, CONF_TIMESPAN, offsetof(CtlSettings, timeout), "30s", "SPAN",
         "How long to wait for an answer to each call", 0, 0},
};

static void help_more(void);

static const ConfProgram ctl_program = {
        .name = "entropyctl",
        .section = "ctl",
        .summary = "Administer an Entropy control plane: over D-Bus on this host, or over HTTP with --url.",
        .usage_args = "[OPTIONS...] COMMAND ...",
        .default_config = "/etc/entropy/entropyctl.conf", /* fixed, as the docs name it */
        .options = ctl_options,
        .n_options = ELEMENTSOF(ctl_options),
        .stop_at_non_option = true,
        .help_more = help_more,
};

int ctl_error_set(CtlError *e, int r, const char *format, ...) {
        va_list ap;

        if (e) {
                va_start(ap, format);
                vsnprintf(e->message, sizeof(e->message), format, ap);
                va_end(ap);
        }
        return r;
}

int ctl_exit_code(int r) {
        switch (r) {
        case -EINVAL:
                return CTL_EXIT_USAGE;
        case -ENOENT:
                return CTL_EXIT_NOT_FOUND;
        case -EACCES:
        case -EPERM:
                return CTL_EXIT_ACCESS;
        case -ECONNREFUSED:
        case -EHOSTUNREACH:
        case -ETIMEDOUT:
                return CTL_EXIT_UNREACHABLE;
        default:
                return CTL_EXIT_FAILURE;
        }
}

/* --help (or -h) anywhere among the global options: after conf_help()'s list of them. */
static void help_more(void) {
        printf("\nCommands:\n");
        for (size_t i = 0; i < ctl_n_verbs; i++)
                printf("  %s%s%s\n      %s\n", ctl_verbs[i].name, isempty(ctl_verbs[i].usage) ? "" : " ",
                       ctl_verbs[i].usage, ctl_verbs[i].help);
        printf("\nEnvironment: $ENTROPY_ADMIN_TOKEN and $ENTROPY_WORKER_TOKEN hold tokens for --url when no token\n"
               "file is given (one line; whitespace around it is ignored, as in a token file);\n"
               "$DBUS_SYSTEM_BUS_ADDRESS selects the bus; $ENTROPY_PAGER or $PAGER the pager.\n"
               "\nExit status:\n"
               "  0  success\n"
               "  1  failure (e.g. the job's or the worker's state does not allow it, or --url\n"
               "     answered with a redirect or not as a control plane does)\n"
               "  2  usage error (an unreadable token file, a --url not http(s)), or arguments\n"
               "     the control plane refused\n"
               "  3  submit --wait: the job ended FAILED or ABORTED\n"
               "  4  no such job or worker\n"
               "  5  access denied\n"
               "  6  the control plane is unreachable\n");
}

/* "entropyctl VERB --help" (or -h) among the verb's options: the options end at "--" and, for
 * submit, at its command, whose own --help is its business. Where that command starts is what
 * the verb's own parser says: the scan runs getopt_long() with the verb's table, so that an
 * option's value ("--priority 5") is not taken for the command. */
static bool verb_wants_help(const Verb *verb, int argc, char **argv) {
        bool help = false;
        int c;

        if (!verb->stop_options) {
                for (int i = 1; i < argc; i++) {
                        if (streq(argv[i], "--"))
                                return false;
                        if (streq(argv[i], "--help") || streq(argv[i], "-h"))
                                return true;
                }
                return false;
        }

        /* --help and -h are not in the table: getopt_long() returns '?' for them, silently
         * (opterr). A missing value is reported later, by the verb itself. */
        optind = 0;
        opterr = 0;
        while (!help && (c = getopt_long(argc, argv, "+", verb->stop_options, NULL)) >= 0)
                if (c == '?')
                        help = optopt == 'h' || (optopt == 0 && streq(argv[optind - 1], "--help"));
        opterr = 1;
        optind = 0;
        return help;
}

static void verb_help(const Verb *verb) {
        printf("entropyctl [OPTIONS...] %s%s%s\n\n%s.\n\n"
               "entropyctl --help lists the global options; entropyctl(1) has the details.\n",
               verb->name, isempty(verb->usage) ? "" : " ", verb->usage, verb->help);
}

static const Verb *find_verb(const char *name) {
        for (size_t i = 0; i < ctl_n_verbs; i++)
                if (streq(ctl_verbs[i].name, name))
                        return &ctl_verbs[i];
        return NULL;
}

static int run(int argc, char **argv) {
        _cleanup_(backend_freep) Backend *backend = NULL;
        CtlSettings settings = {};
        const Verb *verb;
        CtlError e = {};
        int optind_verb = 0, r;

        log_set_ident("entropyctl");
        r = conf_load(&ctl_program, argc, argv, &settings, &optind_verb);
        if (r != 0) {
                conf_free(&ctl_program, &settings);
                return r > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
        }
        if (!isempty(settings.output) && !streq(settings.output, "table") && !streq(settings.output, "json") &&
            !streq(settings.output, "json-pretty")) {
                log_error("Unknown --output=%s: table, json or json-pretty.", settings.output);
                r = CTL_EXIT_USAGE;
                goto finish;
        }
        if (optind_verb >= argc) {
                log_error("No command given; see entropyctl --help.");
                r = CTL_EXIT_USAGE;
                goto finish;
        }
        verb = find_verb(argv[optind_verb]);
        if (!verb) {
                log_error("Unknown command '%s'; see entropyctl --help.", argv[optind_verb]);
                r = CTL_EXIT_USAGE;
                goto finish;
        }
        if (verb_wants_help(verb, argc - optind_verb, argv + optind_verb)) {
                verb_help(verb);
                r = CTL_EXIT_OK;
                goto finish;
        }
        if (verb->local && !isempty(settings.url))
                log_notice("%s works on files of this host: --url (or ENTROPY_URL) is not used.", verb->name);
        r = verb->local             ? 0
            : isempty(settings.url) ? backend_bus_new(&settings, &backend, &e)
                                    : backend_http_new(&settings, &backend, &e);
        if (r < 0) {
                if (*e.message)
                        log_error("%s", e.message);
                else
                        log_error_errno(r, "Failed to set up the connection: %m");
                r = ctl_exit_code(r);
                goto finish;
        }
        /* Each verb parses its own options from a fresh getopt state. */
        optind = 0;
        r = verb->run(backend, &settings, argc - optind_verb, argv + optind_verb);
finish:
        fflush(stdout);
        pager_close();
        backend_freep(&backend);
        backend = NULL;
        conf_free(&ctl_program, &settings);
        return r;
}

int main(int argc, char **argv) {
        return run(argc, argv);
}
