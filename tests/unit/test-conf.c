/* test-conf.c: the config file, environment and flag parsing of common/conf.c, as an operator sees it:
 * which values end up in the settings, and what the messages say when they do not. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "fs-util.h"
#include "macro.h"
#include "strv.h"
#include "tap.h"
#include "time-util.h"

typedef struct TestSettings {
        char *listen;
        usec_t timeout;
        int64_t slots;
        bool flag;
        char **caps;
        char *config;
} TestSettings;

static const ConfOption test_options[] = {
        { "listen", 0, CONF_STRING, offsetof(TestSettings, listen), "127.0.0.1:1", "ADDR", "listen", 0, 0 },
        { "timeout", 0, CONF_TIMESPAN, offsetof(TestSettings, timeout), "10s", "SPAN", "timeout", 0, 0 },
        { "slots", 0, CONF_INT, offsetof(TestSettings, slots), "1", "N", "slots", 1, 64 },
        { "flag", 0, CONF_BOOL, offsetof(TestSettings, flag), "no", NULL, "flag", 0, 0 },
        { "capabilities", 0, CONF_STRV, offsetof(TestSettings, caps), "default", "LIST", "caps", 0, 0 },
        { "config", 0, CONF_STRING, offsetof(TestSettings, config), NULL, "FILE", "config", 0, 0 },
};
static const ConfProgram test_program = {
        .name = "test", .section = "test", .summary = "", .usage_args = "", .default_config = "/nonexistent",
        .options = test_options, .n_options = ELEMENTSOF(test_options),
};

static char conf_path[] = "/tmp/entropy-test-conf-XXXXXX";
static char out_path[] = "/tmp/entropy-test-conf-out-XXXXXX";

static void write_conf(const char *text) {
        int fd = open(conf_path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t) strlen(text))
                tap_bail("cannot write %s", conf_path);
        close(fd);
}

/* Runs f with fd (1 or 2) sent to a file, and returns what was written there. */
static char *capture(int fd, void (*f)(void *), void *userdata) {
        char *text = NULL;
        int saved, out;

        fflush(stdout);
        fflush(stderr);
        saved = dup(fd);
        out = open(out_path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (saved < 0 || out < 0 || dup2(out, fd) < 0)
                tap_bail("cannot redirect fd %d", fd);
        close(out);
        f(userdata);
        fflush(stdout);
        fflush(stderr);
        if (dup2(saved, fd) < 0)
                tap_bail("cannot restore fd %d", fd);
        close(saved);
        if (read_full_file(out_path, 1 << 20, &text, NULL) < 0)
                tap_bail("cannot read %s", out_path);
        return text;
}

typedef struct LoadCall {
        char **argv;
        int argc;
        TestSettings *settings;
        int r;
} LoadCall;

static void load_call(void *userdata) {
        LoadCall *c = userdata;
        c->r = conf_load(&test_program, c->argc, c->argv, c->settings, NULL);
}

/* Loads the test file (and extra flags); returns conf_load's result, *ret_log what it logged. */
static int load(TestSettings *s, char **ret_log, const char *flag) {
        char *argv[] = { "test", "--config", conf_path, (char *) flag, NULL };
        LoadCall c = { .argv = argv, .argc = flag ? 4 : 3, .settings = s };
        char *log = capture(STDERR_FILENO, load_call, &c);

        if (ret_log)
                *ret_log = log;
        else
                free(log);
        return c.r;
}

static void test_conf_precedence_flag_env_file_default(void) {
        char path[] = "/tmp/entropy-test-conf-XXXXXX";
        int fd = mkstemp(path);
        const char *text = "[test]\nlisten = file:1\ntimeout = 3s\nslots = 4\n[worker]\nbogus = 1\n";
        if (fd < 0 || write(fd, text, strlen(text)) < 0)
                tap_bail("cannot write temp config");
        close(fd);

        setenv("ENTROPY_TIMEOUT", "2s", 1);
        setenv("ENTROPY_CAPABILITIES", "gpu,cuda", 1);
        char *argv[] = { "test", "--config", path, "--slots=9", "--flag", NULL };
        TestSettings s = {};
        int r = conf_load(&test_program, 5, argv, &s, NULL);
        is_int(r, 0, "conf_load succeeds");
        is_str(s.listen, "file:1", "file beats default");
        ok(s.timeout == 2 * USEC_PER_SEC, "env beats file");
        is_int(s.slots, 9, "flag beats file");
        ok(s.flag, "bare boolean flag means yes");
        ok(strv_length(s.caps) == 2 && strv_contains(s.caps, "gpu"), "list from env");
        conf_free(&test_program, &s);

        char *bad[] = { "test", "--config", path, "--slots=99", NULL };
        TestSettings t = {};
        ok(conf_load(&test_program, 4, bad, &t, NULL) < 0, "out-of-range flag refused");
        conf_free(&test_program, &t);

        char *missing[] = { "test", "--config", "/nonexistent/x.conf", NULL };
        TestSettings m = {};
        ok(conf_load(&test_program, 3, missing, &m, NULL) < 0, "explicit missing config file refused");
        conf_free(&test_program, &m);
        unsetenv("ENTROPY_TIMEOUT");
        unsetenv("ENTROPY_CAPABILITIES");
        unlink(path);
}

static void help_call(void *userdata) {
        conf_help(&test_program);
}

static void test_help_says_config_is_no_key(void) {
        _cleanup_free_ char *out = capture(STDOUT_FILENO, help_call, NULL);
        ok(strstr(out, "Every option but --config is also a key of the config file"),
           "--help: every option but --config is a key of the config file");
}

/* An integer outside its limits names the limits, from the flag, the environment and the file alike. */
static void test_out_of_range_names_the_range(void) {
        TestSettings s = {};
        char *log = NULL;

        write_conf("[test]\n");
        ok(load(&s, &log, "--slots=300") == -ERANGE, "--slots=300 refused as out of range");
        ok(strstr(log, "Invalid value '300' for --slots: out of range (1..64)"), "flag: the message gives the range");
        ok(!strstr(log, "expected an integer"), "flag: the message does not say 'expected an integer'");
        free(log);
        conf_free(&test_program, &s);

        setenv("ENTROPY_SLOTS", "0", 1);
        ok(load(&s, &log, NULL) == -ERANGE, "ENTROPY_SLOTS=0 refused as out of range");
        ok(strstr(log, "Invalid value '0' in $ENTROPY_SLOTS: out of range (1..64)"), "environment: the range");
        free(log);
        conf_free(&test_program, &s);
        unsetenv("ENTROPY_SLOTS");

        write_conf("[test]\nslots = 65\n");
        ok(load(&s, &log, NULL) == -ERANGE, "slots = 65 in the file refused as out of range");
        ok(strstr(log, "invalid value '65' for 'slots': out of range (1..64)"), "file: the range");
        free(log);
        conf_free(&test_program, &s);

        write_conf("[test]\n");
        ok(load(&s, &log, "--slots=99999999999999999999") == -ERANGE, "a number past int64 is out of range");
        ok(strstr(log, "out of range (1..64)"), "past int64: the range, not 'expected an integer'");
        free(log);
        conf_free(&test_program, &s);

        ok(load(&s, &log, "--slots=lots") == -EINVAL, "a word is no integer");
        ok(strstr(log, "Invalid value 'lots' for --slots: expected an integer"), "a word: 'expected an integer'");
        free(log);
        conf_free(&test_program, &s);
}

/* A span too long for usec_t is refused as such; it used to wrap to a short one and pass. */
static void test_timespan_overflow_refused(void) {
        TestSettings s = {};
        char *log = NULL;

        write_conf("[test]\n");
        ok(load(&s, &log, "--timeout=9000000000000000000us 9000000000000000000us 446744073739551616us") == -ERANGE,
           "a wrapping time span is refused");
        ok(strstr(log, "out of range (a time span must be shorter than 106751991 days)"),
           "the message says it is out of range");
        free(log);
        conf_free(&test_program, &s);
}

static size_t count(const char *haystack, const char *needle) {
        size_t n = 0;
        for (const char *p = strstr(haystack, needle); p; p = strstr(p + 1, needle))
                n++;
        return n;
}

static char *list_line(const char *key, size_t n_items) {
        char *line = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&line, &size);
        if (!f)
                tap_bail("open_memstream");
        fprintf(f, "%s =", key);
        for (size_t i = 0; i < n_items; i++)
                fprintf(f, " /opt/jobs/bin/tool%03zu,", i);
        fclose(f);
        return line;
}

/* Lines past libinih's 200-byte buffer were cut, and the rest read as further lines: a syntax error
 * reported on the wrong line, or, where a cut fell on a space, only the tail of a list, silently. */
static void test_long_line_loads_whole_or_is_refused_by_line(void) {
        _cleanup_free_ char *list = list_line("capabilities", 100), *huge = list_line("capabilities", 4000);
        _cleanup_free_ char *text = NULL, *text2 = NULL, *text3 = NULL;
        TestSettings s = {};
        char *log = NULL;
        int r;

        ok(strlen(list) > 2000, "a list line of %zu bytes", strlen(list));
        if (asprintf(&text, "[test]\n%s\nlisten = after:1\n", list) < 0)
                tap_bail("asprintf");
        write_conf(text);
        r = load(&s, &log, NULL);
        if (r == 0) {
                ok(strv_length(s.caps) == 100 && streq(s.caps[0], "/opt/jobs/bin/tool000") &&
                           streq(s.caps[99], "/opt/jobs/bin/tool099"),
                   "a long list line loads whole (libinih takes its line length at run time)");
                is_str(s.listen, "after:1", "the line after it is read as itself");
        } else {
                ok(r == -EINVAL && strstr(log, ":2: line too long: at most"),
                   "a long line is refused, naming its line (a libinih with a fixed buffer)");
        }
        free(log);
        conf_free(&test_program, &s);

        if (asprintf(&text2, "[test]\nlisten = a:1\n%s\nlisten = b:1\n", huge) < 0)
                tap_bail("asprintf");
        write_conf(text2);
        ok(load(&s, &log, NULL) == -EINVAL, "a line of %zu bytes is refused", strlen(huge));
        ok(strstr(log, conf_path) && strstr(log, ":3: line too long: at most "),
           "the message names the file and line 3");
        ok(!strstr(log, "syntax error"), "no syntax error for the pieces of the long line");
        free(log);
        conf_free(&test_program, &s);

        /* Line numbers after a long line that fits are those of the file. */
        if (asprintf(&text3, "[test]\n%s\n\nslots = many\n", list) < 0)
                tap_bail("asprintf");
        write_conf(text3);
        r = load(&s, &log, NULL);
        ok(r == -EINVAL && (strstr(log, ":4: invalid value 'many' for 'slots'") || strstr(log, ":2: line too long")),
           "an error after a long line names the right line");
        free(log);
        conf_free(&test_program, &s);
}

/* An indented line continues the key before it; for a list it adds to it (it used to replace it). */
static void test_continuation_line_adds_to_a_list(void) {
        TestSettings s = {};
        char *log = NULL;

        write_conf("[test]\n"
                   "capabilities = gpu, cuda\n"
                   "    avx512 big-memory\n"
                   "# a comment between\n"
                   "\tnvme\n"
                   "listen = x:1\n");
        is_int(load(&s, &log, NULL), 0, "a list over three lines loads");
        ok(strv_length(s.caps) == 5 && streq(s.caps[0], "gpu") && streq(s.caps[2], "avx512") &&
                   streq(s.caps[4], "nvme"),
           "the continuation lines add to the list (5 items)");
        is_str(s.listen, "x:1", "the key after it is its own");
        free(log);
        conf_free(&test_program, &s);

        write_conf("[test]\ncapabilities = a\ncapabilities = b\n");
        is_int(load(&s, NULL, NULL), 0, "a key given twice loads");
        ok(strv_length(s.caps) == 1 && streq(s.caps[0], "b"), "a key given twice: the last wins, as before");
        conf_free(&test_program, &s);

        write_conf("[test]\ncapabilities = a\n[test]\n  capabilities = b\n");
        is_int(load(&s, NULL, NULL), 0, "an indented key after a [section] line loads");
        ok(strv_length(s.caps) == 1 && streq(s.caps[0], "b"),
           "an indented key after a [section] line is a key of its own, not a continuation");
        conf_free(&test_program, &s);

        write_conf("[test]\nlisten = a:1\n  b:2\n");
        ok(load(&s, &log, NULL) == -EINVAL, "a continuation of a single-valued key is refused");
        ok(strstr(log, ":3: indented line continues 'listen', which takes one value"),
           "the message names the line and the key");
        free(log);
        conf_free(&test_program, &s);

        write_conf("[other]\nlist = a\n  b\n[test]\nbogus = 1\n  2\n");
        ok(load(&s, &log, NULL) == -EINVAL, "an unknown key is refused");
        ok(strstr(log, ":5: unknown key 'bogus' in [test]") && !strstr(log, ":6:"),
           "its continuation adds no second message; another program's continuation none at all");
        free(log);
        conf_free(&test_program, &s);
}

/* As the conf(5) pages say: comment lines start with '#' or ';', and a ';' after a space ends a
 * value; a '#' after a value is part of it. */
static void test_comments(void) {
        TestSettings s = {};
        char *log = NULL;

        write_conf("# heading\n"
                   "[test]\n"
                   "  ; indented comment\n"
                   "timeout = 5s ; five seconds\n"
                   "listen = host:1;not-a-comment\n"
                   "capabilities = a b\t; the rest is a comment\n");
        is_int(load(&s, NULL, NULL), 0, "comments load");
        ok(s.timeout == 5 * USEC_PER_SEC, "a ';' after a space ends the value");
        is_str(s.listen, "host:1;not-a-comment", "a ';' with no space before it is part of the value");
        ok(strv_length(s.caps) == 2 && streq(s.caps[1], "b"), "and ends a list too");
        conf_free(&test_program, &s);

        write_conf("[test]\ntimeout = 5s # five seconds\n");
        ok(load(&s, &log, NULL) == -EINVAL, "a '#' after a value is part of it");
        ok(strstr(log, "invalid value '5s # five seconds' for 'timeout'"), "and the message shows it: %s", log);
        free(log);
        conf_free(&test_program, &s);

        write_conf("[test]\ncapabilities = gpu # the big box\n");
        ok(load(&s, &log, NULL) < 0, "a list is not given the words of a comment after it");
        ok(strstr(log, "an item starts with '#'"), "the message says why: %s", log);
        free(log);
        conf_free(&test_program, &s);
        write_conf("[test]\ncapabilities = gpu\n  # a comment line inside the list\n  cuda\n");
        ok(load(&s, NULL, NULL) == 0 && strv_length(s.caps) == 2, "a comment line inside a list is still one");
        conf_free(&test_program, &s);
}

/* A typo in a heading dropped every key under it without a word; it is refused as an unknown key is. */
static void test_unknown_section_is_refused(void) {
        TestSettings s = {};
        char *log = NULL;

        write_conf("[test]\nslots = 2\n\n[tset]\nlisten = typo:1\nslots = 3\n");
        ok(load(&s, &log, NULL) == -EINVAL, "a file with an unknown section is refused");
        ok(strstr(log, ":4: unknown section [tset]; test reads [test] and skips [control], [worker] and [ctl]"),
           "the message names the section, its line and the sections skipped");
        ok(count(log, "unknown section") == 1, "it is reported once, not once per key");
        free(log);
        conf_free(&test_program, &s);

        write_conf("[control]\nlisten = c:1\n[Worker]\nslots = 9\n  more\n[ctl]\nurl = u\n[test]\nslots = 2\n");
        is_int(load(&s, &log, NULL), 0, "the sections of the other programs of the suite are skipped");
        is_int(s.slots, 2, "and their keys are not read");
        is_str(s.listen, "127.0.0.1:1", "not even a key this program has");
        is_str(log, "", "without a message");
        free(log);
        conf_free(&test_program, &s);
}

int main(void) {
        int fd = mkstemp(conf_path);
        int fd2 = mkstemp(out_path);
        if (fd < 0 || fd2 < 0)
                tap_bail("mkstemp");
        close(fd);
        close(fd2);
        unsetenv("ENTROPY_CONFIG");

        test_conf_precedence_flag_env_file_default();
        test_help_says_config_is_no_key();
        test_out_of_range_names_the_range();
        test_timespan_overflow_refused();
        test_long_line_loads_whole_or_is_refused_by_line();
        test_continuation_line_adds_to_a_list();
        test_unknown_section_is_refused();
        test_comments();

        unlink(conf_path);
        unlink(out_path);
        return tap_done();
}
