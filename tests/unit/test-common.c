/* test-common.c: time spans, string vectors, JSON validation, durable writes, secret files,
 * crypto helpers and the limit on open files (option parsing is tested in test-conf.c). */
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crypto.h"
#include "fs-util.h"
#include "json-util.h"
#include "rlimit-util.h"
#include "strv.h"
#include "tap.h"
#include "time-util.h"

static void test_timespan_parses_systemd_syntax(void) {
        usec_t u = 0;
        ok(parse_timespan("500ms", &u) == 0 && u == 500 * USEC_PER_MSEC, "500ms");
        ok(parse_timespan("8s", &u) == 0 && u == 8 * USEC_PER_SEC, "8s");
        ok(parse_timespan("2min", &u) == 0 && u == 2 * USEC_PER_MINUTE, "2min");
        ok(parse_timespan("1min 30s", &u) == 0 && u == 90 * USEC_PER_SEC, "1min 30s");
        ok(parse_timespan("7", &u) == 0 && u == 7 * USEC_PER_SEC, "bare number is seconds");
        ok(parse_timespan("1.5s", &u) == 0 && u == 1500 * USEC_PER_MSEC, "fractions");
        ok(parse_timespan("infinity", &u) == 0 && u == USEC_INFINITY, "infinity");
        ok(parse_timespan("", &u) < 0, "empty refused");
        ok(parse_timespan("-1s", &u) < 0, "negative refused");
        ok(parse_timespan("5 parsecs", &u) < 0, "unknown unit refused");
}

/* A sum past 2^64 used to wrap (to exactly 30s here) and pass every range check after it. */
static void test_timespan_refuses_overflow_and_other_number_forms(void) {
        usec_t u = 42;
        ok(parse_timespan("9000000000000000000us 9000000000000000000us 446744073739551616us", &u) == -ERANGE &&
                   u == 42,
           "a sum that would wrap past 2^64 is refused, not 30s");
        ok(parse_timespan("5000000000000000000us 5000000000000000000us", &u) == -ERANGE, "a sum past 2^63 refused");
        ok(parse_timespan("9223372036854775808us", &u) == -ERANGE, "one component of 2^63 refused");
        ok(parse_timespan("106751991d", &u) == 0 && u == 106751991 * USEC_PER_DAY, "106751991 days accepted");
        ok(parse_timespan("106751992d", &u) == -ERANGE, "106751992 days refused");
        ok(parse_timespan("9223372036854774784us 1023us", &u) == 0 && u == (usec_t) INT64_MAX,
           "a sum of 2^63-1 accepted exactly");
        ok(parse_timespan("9223372036854774784us 1024us", &u) == -ERANGE, "a sum of 2^63 refused");
        ok(parse_timespan("0x10", &u) == -EINVAL, "hex refused");
        ok(parse_timespan("1e3", &u) == -EINVAL, "an exponent refused");
        ok(parse_timespan("1e3s", &u) == -EINVAL, "an exponent with a unit refused");
        ok(parse_timespan("inf", &u) == -EINVAL && parse_timespan("nan", &u) == -EINVAL, "inf and nan refused");
        ok(parse_timespan("1" "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
                           "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
                           "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
                           "000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
                           &u) == -ERANGE,
           "a number past double's range refused as out of range");
        ok(parse_timespan(".5s", &u) == 0 && u == 500 * USEC_PER_MSEC, "a fraction without its integer part");
        ok(parse_timespan("2.s", &u) == 0 && u == 2 * USEC_PER_SEC, "a dot without a fraction");
        ok(parse_timespan(".s", &u) == -EINVAL && parse_timespan("+1s", &u) == -EINVAL, "no digits, a sign: refused");
}

static void test_ratelimit_says_it_once_an_interval(void) {
        RateLimit rl = {};
        unsigned suppressed = 99;

        ok(ratelimit_allow(&rl, USEC_PER_HOUR, &suppressed) && suppressed == 0, "said the first time");
        ok(!ratelimit_allow(&rl, USEC_PER_HOUR, NULL) && !ratelimit_allow(&rl, USEC_PER_HOUR, NULL),
           "not again within the interval");
        ok(ratelimit_allow(&rl, 0, &suppressed) && suppressed == 2, "said again after it, with the count not said");
}

static void test_timespan_formats(void) {
        char buf[64];
        is_str(format_timespan(buf, sizeof(buf), 90 * USEC_PER_SEC), "1min 30s", "format 90s");
        is_str(format_timespan(buf, sizeof(buf), 500 * USEC_PER_MSEC), "500ms", "format 500ms");
        usec_t now = 1000 * USEC_PER_DAY;
        is_str(format_relative(buf, sizeof(buf), now - 3 * USEC_PER_MINUTE - 2 * USEC_PER_SEC, now), "3min 2s ago",
               "relative past");
        is_str(format_relative(buf, sizeof(buf), now + 2 * USEC_PER_SEC, now), "in 2s", "relative future");
}

static void test_strv(void) {
        _cleanup_strv_free_ char **l = NULL;
        ok(strv_split("gpu, cuda  linux", ", ", &l) == 0, "split");
        is_int(strv_length(l), 3, "three items");
        ok(strv_contains(l, "cuda") && !strv_contains(l, "x"), "contains");
        _cleanup_free_ char *j = strv_join(l, ",");
        is_str(j, "gpu,cuda,linux", "join");

        _cleanup_strv_free_ char **set = NULL;
        ok(strv_split("linux cuda gpu cuda linux", " ", &set) == 0, "split a list with repeats");
        strv_sort_unique(set);
        _cleanup_free_ char *sorted = strv_join(set, ",");
        is_str(sorted, "cuda,gpu,linux", "sorted, each item once");
        strv_sort_unique(NULL); /* no list: nothing to do */
}

static void test_json_validation_names_the_field(void) {
        _cleanup_json_ json_object *o = NULL;
        JsonError err = {};
        const char *s;
        int64_t i;

        ok(json_parse_object("{\"a\": 1", 7, &o, &err) < 0, "truncated JSON refused");
        ok(json_parse_object("[1]", 3, &o, &err) < 0, "non-object refused");
        ok(json_parse_object("{} x", 4, &o, &err) < 0, "trailing garbage refused");
        ok(json_parse_object("{\"command\": 5, \"n\": 3, \"big\": 1e300}", 36, &o, &err) == 0, "object parsed");
        ok(json_get_string(o, "command", 10, true, &s, &err) == -EINVAL && strstr(err.message, "command"),
           "wrong type names the field: %s", err.message);
        ok(json_get_string(o, "missing", 10, false, &s, &err) == -ENOENT, "absent optional is ENOENT");
        ok(json_get_string(o, "missing", 10, true, &s, &err) == -EINVAL, "absent required is EINVAL");
        ok(json_get_int64(o, "n", 0, 2, true, &i, &err) == -EINVAL, "range checked");
        ok(json_get_int64(o, "n", 0, 5, true, &i, &err) == 0 && i == 3, "int read");
        ok(json_get_int64(o, "big", 0, INT64_MAX, true, &i, &err) == -EINVAL, "huge double refused as int");
}

/* What comes in must be UTF-8; what goes out is, even where a message was cut mid-character. */
static void test_json_is_utf8_both_ways(void) {
        _cleanup_json_ json_object *o = NULL, *out = json_object_new_object();
        JsonError err = {};

        ok(json_parse_object("{\"a\": \"x\xff\"}", 11, &o, &err) < 0, "a string with a stray byte refused");
        ok(json_parse_object("{\"a\": \"caf\xc3\xa9 \xf0\x9f\x99\x82\"}", 19, &o, &err) == 0,
           "two- and four-byte characters accepted");
        json_add_string(out, "cut", "caf\xc3");
        json_add_string(out, "bad", "a\xff" "b\xc0\xaf" "c");
        json_add_string(out, "good", "caf\xc3\xa9");
        is_str(json_object_get_string(json_object_object_get(out, "cut")), "caf?", "a character cut in half: '?'");
        is_str(json_object_get_string(json_object_object_get(out, "bad")), "a?b??c", "stray and overlong bytes: '?'");
        is_str(json_object_get_string(json_object_object_get(out, "good")), "caf\xc3\xa9", "valid UTF-8 kept");

        char two[] = "caf\xc3", three[] = "x\xe2\x82", four[] = "x\xf0\x9f\x99", whole[] = "x\xf0\x9f\x99\x82",
             ascii[] = "abc", stray[] = "a\x82";
        utf8_cut_partial(two);
        utf8_cut_partial(three);
        utf8_cut_partial(four);
        utf8_cut_partial(whole);
        utf8_cut_partial(ascii);
        utf8_cut_partial(stray);
        is_str(two, "caf", "a two-byte character cut after its first byte: dropped");
        is_str(three, "x", "a three-byte character cut after two: dropped");
        is_str(four, "x", "a four-byte character cut after three: dropped");
        is_str(whole, "x\xf0\x9f\x99\x82", "a whole four-byte character kept");
        is_str(ascii, "abc", "ASCII kept");
        is_str(stray, "a\x82", "a stray byte that starts no character: not this function's business");
}

static void test_crypto(void) {
        char hex[SHA256_HEX_SIZE], id1[RANDOM_ID_SIZE], id2[RANDOM_ID_SIZE];
        ok(sha256_hex("abc", 3, hex) == 0, "sha256");
        is_str(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha256 of abc");
        ok(random_id(id1) == 0 && random_id(id2) == 0 && !streq(id1, id2) && strlen(id1) == 32, "random ids");
        /* 2026-11-22 12:00:00.123 UTC is 0x01a20320a27b ms since the epoch. */
        ok(time_ordered_id(UINT64_C(1795348800123456), id1) == 0 && strlen(id1) == 32 &&
                   strncmp(id1, "01a20320a27b", 12) == 0,
           "a time-ordered id starts with the time in milliseconds");
        ok(time_ordered_id(UINT64_C(1795348800124000), id2) == 0 && strcmp(id1, id2) < 0,
           "a later time-ordered id sorts after an earlier one");
        ok(time_ordered_id(UINT64_C(1795348800123456), id2) == 0 && !streq(id1, id2) &&
                   strncmp(id1, id2, 12) == 0,
           "time-ordered ids of the same millisecond differ in their random part");
        ok(streq_consttime("token", "token") && !streq_consttime("token", "tokem") &&
                   !streq_consttime("token", "token2") && !streq_consttime(NULL, "x"),
           "constant-time compare");
}

static void test_durable_write(void) {
        char dir[] = "/tmp/entropy-test-fs-XXXXXX";
        _cleanup_free_ char *path = NULL, *back = NULL;
        struct stat st;
        if (!mkdtemp(dir) || asprintf(&path, "%s/f", dir) < 0)
                tap_bail("mkdtemp");
        ok(write_file_durable(path, "hello", 5, 0600) == 0, "durable write");
        ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "mode 0600");
        ok(read_full_file(path, 100, &back, NULL) == 0 && streq(back, "hello"), "read back");
        free(back);
        back = NULL;
        ok(read_full_file(path, 3, &back, NULL) == -EFBIG, "size limit enforced");
        unlink(path);
        rmdir(dir);
}

/* HTTP strips the whitespace around a header value; a token file's must go too, or the plain token
 * it holds is refused for good while a signed one (HMAC over the same bytes) still works. */
static void test_secret_file_strips_both_ends(void) {
        char dir[] = "/tmp/entropy-test-secret-XXXXXX";
        _cleanup_free_ char *path = NULL;
        static const struct {
                const char *text, *want;
                int r;
        } cases[] = {
                { " \tsecret-token\n", "secret-token", 0 },
                { "\r\n\nsecret-token \r\n", "secret-token", 0 },
                { "  two words\t\n", "two words", 0 },
                { "secret-token", "secret-token", 0 },
                { " \t\r\n", NULL, -ENODATA },
                { " one\ntwo\n", NULL, -EBADMSG },
        };
        if (!mkdtemp(dir) || asprintf(&path, "%s/token", dir) < 0)
                tap_bail("mkdtemp");
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *got = NULL;
                int r;
                if (write_file_durable(path, cases[i].text, strlen(cases[i].text), 0600) < 0)
                        tap_bail("cannot write %s", path);
                r = read_secret_file(path, &got);
                is_int(r, cases[i].r, "token file case %zu: result", i);
                is_str(got, cases[i].want, "token file case %zu: token", i);
                free(got);
        }
        unlink(path);
        rmdir(dir);
}

static rlim_t nofile_soft(pid_t pid) {
        struct rlimit rl = {};
        return prlimit(pid, RLIMIT_NOFILE, NULL, &rl) == 0 ? rl.rlim_cur : 0;
}

/* A child that says it is ready on a pipe, then waits to be killed, for its limits to be looked
 * at. */
static pid_t idle_child(bool restore) {
        int ready[2];
        char c = 0;
        pid_t pid;

        if (pipe(ready) < 0)
                return -1;
        pid = fork();
        if (pid == 0) {
                if (restore && rlimit_nofile_give_back(0) < 0)
                        _exit(1);
                (void) write(ready[1], "x", 1);
                pause();
                _exit(0);
        }
        close(ready[1]);
        if (pid > 0 && read(ready[0], &c, 1) != 1)
                pid = -1; /* it exited: the restore failed */
        close(ready[0]);
        return pid;
}

static void test_nofile_limit_raised_and_given_back(void) {
        struct rlimit rl;
        pid_t restored, inherited;

        if (!ok(getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max > 64, "a hard limit on open files above 64"))
                return;
        rl.rlim_cur = 64;
        ok(setrlimit(RLIMIT_NOFILE, &rl) == 0, "soft limit lowered to 64 (as a service manager would start us)");
        ok(rlimit_nofile_bump() == (rl.rlim_max > 0x7fffffff ? 0x7fffffff : (int) rl.rlim_max) &&
                   nofile_soft(0) == rl.rlim_max,
           "raised to the hard limit");
        restored = idle_child(true);
        inherited = idle_child(false);
        ok(restored > 0 && inherited > 0, "children started");
        ok(inherited > 0 && rlimit_nofile_give_back(inherited) == 0 && nofile_soft(inherited) == 64,
           "given back to a process of ours started without it");
        ok(restored > 0 && nofile_soft(restored) == 64, "restored in a forked child");
        for (int i = 0; i < 2; i++) {
                pid_t p = i == 0 ? restored : inherited;
                if (p > 0 && kill(p, SIGKILL) == 0)
                        (void) waitpid(p, NULL, 0);
        }
}

static void test_fd_wait_readable(void) {
        int p[2];
        usec_t start;

        if (pipe(p) < 0)
                tap_bail("pipe");
        start = now_monotonic_usec();
        is_int(fd_wait_readable(p[0], start + 20 * USEC_PER_MSEC), 0, "nothing to read: 0 at the deadline");
        ok(now_monotonic_usec() >= start + 20 * USEC_PER_MSEC, "and not before it");
        is_int(fd_wait_readable(p[0], start), 0, "a deadline already past: 0 at once");
        ok(write(p[1], "x", 1) == 1, "written");
        is_int(fd_wait_readable(p[0], now_monotonic_usec() + USEC_PER_SEC), 1, "something to read: 1");
        close(p[1]);
        is_int(fd_wait_readable(p[0], now_monotonic_usec() + USEC_PER_SEC), 1, "the other end gone: 1 too");
        close(p[0]);
}

int main(void) {
        test_timespan_parses_systemd_syntax();
        test_timespan_refuses_overflow_and_other_number_forms();
        test_timespan_formats();
        test_ratelimit_says_it_once_an_interval();
        test_strv();
        test_json_validation_names_the_field();
        test_json_is_utf8_both_ways();
        test_crypto();
        test_durable_write();
        test_secret_file_strips_both_ends();
        test_nofile_limit_raised_and_given_back();
        test_fd_wait_readable();
        return tap_done();
}
