/* test-worker-wake.c: wake-up datagrams: format, verification (worker, HMAC, freshness,
 * malformed input), ids beyond ASCII, and the control plane's sender reaching a worker's socket. */
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "macro.h"
#include "protocol.h"
#include "time-util.h"
#include "tap.h"
#include "wake-proto.h"
#include "wake-send.h"
#include "wake.h"

static const char *TOKEN = "worker-token-0123456789abcdef";

static void test_roundtrip(void) {
        char buf[WAKE_MAX_SIZE];
        uint64_t ts = 0;
        int n = wake_format("w1", TOKEN, 1700000000123ULL, buf, sizeof(buf));
        ok(n > 0 && (size_t) n == strlen(buf), "formatted: %s", buf);
        ok(strncmp(buf, "entropy-wake1 w1 1700000000123 ", 31) == 0, "documented layout");
        is_int(wake_verify(buf, (size_t) n, "w1", TOKEN, 1700000000123ULL, 1000, &ts), 0, "verifies");
        ok(ts == 1700000000123ULL, "timestamp returned");
        is_int(wake_verify(buf, (size_t) n, "w1", TOKEN, 1700000000123ULL + 999, 1000, &ts), 0, "inside window");
}

static void test_refusals(void) {
        char buf[WAKE_MAX_SIZE], bad[WAKE_MAX_SIZE + 64];
        uint64_t now = 1700000000000ULL;
        int n = wake_format("w1", TOKEN, now, buf, sizeof(buf));

        is_int(wake_verify(buf, (size_t) n, "w2", TOKEN, now, 1000, NULL), -EXDEV, "another worker's wake-up");
        is_int(wake_verify(buf, (size_t) n, "w1", "other-token", now, 1000, NULL), -EPERM, "wrong token");
        is_int(wake_verify(buf, (size_t) n, "w1", TOKEN, now + 1001, 1000, NULL), -ETIME, "stale");
        is_int(wake_verify(buf, (size_t) n, "w1", TOKEN, now - 1001, 1000, NULL), -ETIME, "from the future");
        snprintf(bad, sizeof(bad), "%s", buf);
        bad[strlen("entropy-wake1 w1 170000000000")] = '1'; /* tamper with the timestamp */
        is_int(wake_verify(bad, strlen(bad), "w1", TOKEN, now, 100000, NULL), -EPERM, "tampered timestamp");
        is_int(wake_verify(buf, (size_t) n - 1, "w1", TOKEN, now, 1000, NULL), -EBADMSG, "short mac");
        snprintf(bad, sizeof(bad), "%s x", buf);
        is_int(wake_verify(bad, strlen(bad), "w1", TOKEN, now, 1000, NULL), -EBADMSG, "extra field");
        snprintf(bad, sizeof(bad), "entropy-wake2%s", buf + 13);
        is_int(wake_verify(bad, strlen(bad), "w1", TOKEN, now, 1000, NULL), -EBADMSG, "other magic");
        snprintf(bad, sizeof(bad), "entropy-wake1 w1 12x4 %064d", 0);
        is_int(wake_verify(bad, strlen(bad), "w1", TOKEN, now, 1000, NULL), -EBADMSG, "non-numeric time");
        memcpy(bad, buf, (size_t) n);
        bad[5] = 0;
        is_int(wake_verify(bad, (size_t) n, "w1", TOKEN, now, 1000, NULL), -EBADMSG, "embedded NUL");
        is_int(wake_verify("", 0, "w1", TOKEN, now, 1000, NULL), -EBADMSG, "empty");
        is_int(wake_format("bad id", TOKEN, now, bad, sizeof(bad)), -EINVAL, "worker id with a space refused");
        is_int(wake_format("w1", TOKEN, now, bad, 20), -ENOBUFS, "small buffer refused");
}

/* Ids with bytes above 0x7f (UTF-8) register, so they must be wakeable: they go percent-encoded
 * under their own magic, and ids of printable ASCII keep the first format, '%' and all. */
static void test_non_ascii_ids(void) {
        const char *id = "w\xc3\xb6rker-1", *look_alike = "w%C3%B6rker-1";
        char buf[WAKE_MAX_SIZE], other[WAKE_MAX_SIZE], longest[LIMIT_ID_LEN + 2];
        uint64_t now = 1700000000000ULL;
        int n, k;

        n = wake_format(id, TOKEN, now, buf, sizeof(buf));
        ok(n > 0 && strncmp(buf, "entropy-wake1e w%C3%B6rker-1 1700000000000 ", 43) == 0, "a UTF-8 id is encoded: %s",
           buf);
        is_int(wake_verify(buf, (size_t) n, id, TOKEN, now, 1000, NULL), 0, "and its worker accepts it");
        is_int(wake_verify(buf, (size_t) n, look_alike, TOKEN, now, 1000, NULL), -EXDEV,
               "the ASCII id spelled like its encoding does not");
        k = wake_format(look_alike, TOKEN, now, other, sizeof(other));
        ok(k > 0 && strncmp(other, "entropy-wake1 w%C3%B6rker-1 ", 28) == 0, "an ASCII id with '%%' is sent as it is");
        is_int(wake_verify(other, (size_t) k, id, TOKEN, now, 1000, NULL), -EXDEV, "and does not wake the UTF-8 one");
        memcpy(other, buf, (size_t) n);
        memmove(other + 13, other + 14, (size_t) n - 14); /* "entropy-wake1e" -> "entropy-wake1" */
        is_int(wake_verify(other, (size_t) n - 1, look_alike, TOKEN, now, 1000, NULL), -EPERM,
               "the magic is under the HMAC");

        /* The longest id, every byte encoded, still fits a datagram. */
        for (int i = 0; i < LIMIT_ID_LEN; i += 2)
                memcpy(longest + i, "\xc3\xa9", 2);
        longest[LIMIT_ID_LEN] = 0;
        n = wake_format(longest, TOKEN, UINT64_MAX / 2, buf, sizeof(buf));
        ok(n > 0 && n < WAKE_MAX_SIZE, "a %d-byte id of 'é' makes a datagram of %d bytes", LIMIT_ID_LEN, n);
        is_int(wake_verify(buf, (size_t) n, longest, TOKEN, UINT64_MAX / 2, 1000, NULL), 0, "which verifies");
        longest[LIMIT_ID_LEN] = 'x';
        longest[LIMIT_ID_LEN + 1] = 0;
        is_int(wake_format(longest, TOKEN, now, buf, sizeof(buf)), -EINVAL,
               "one byte more is refused, as by /register");
}

/* Every id POST /register accepts can be woken, and no other: one id per byte value, at the start,
 * in the middle and at the end. */
static void test_every_registrable_id_is_wakeable(void) {
        int registrable = 0, wakeable = 0, disagree = 0;
        uint64_t now = 1700000000000ULL;

        for (int b = 1; b < 256; b++)
                for (int pos = 0; pos < 3; pos++) {
                        char id[4] = "ab", buf[WAKE_MAX_SIZE];
                        if (pos == 2)
                                id[2] = (char) b;
                        else
                                id[pos] = (char) b;
                        bool reg = worker_id_is_registrable(id);
                        int n = wake_format(id, TOKEN, now, buf, sizeof(buf));
                        bool wake = n > 0 && wake_verify(buf, (size_t) n, id, TOKEN, now, 1000, NULL) == 0;
                        registrable += reg;
                        wakeable += wake;
                        if (reg != wake) {
                                disagree++;
                                diag("byte 0x%02x at %d: registrable %d, wakeable %d", b, pos, reg, wake);
                        }
                }
        is_int(disagree, 0, "%d of 765 ids register and %d can be woken: the same ones", registrable, wakeable);
}

static void test_send_reaches_the_worker_socket(void) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_in sa;
        socklen_t len = sizeof(sa);
        char buf[WAKE_MAX_SIZE + 1];
        struct pollfd p;
        ssize_t n;

        ok(wake_bind("127.0.0.1:0", &fd) == 0, "worker socket bound");
        if (fd < 0 || getsockname(fd, (struct sockaddr *) &sa, &len) < 0)
                tap_bail("bind");
        is_int(wake_send("127.0.0.1", ntohs(sa.sin_port), "w1", TOKEN), 0, "wake_send");
        p = (struct pollfd){ .fd = fd, .events = POLLIN };
        ok(poll(&p, 1, 5000) == 1, "datagram arrived");
        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        ok(n > 0 && wake_verify(buf, (size_t) n, "w1", TOKEN, now_realtime_usec() / USEC_PER_MSEC, 60000, NULL) == 0, "and verifies");
        is_int(wake_send("localhost", ntohs(sa.sin_port), "w1", TOKEN), -EINVAL, "host names refused (no DNS)");
        is_int(wake_send("127.0.0.1", 0, "w1", TOKEN), -EINVAL, "port 0 refused");
        ok(wake_bind("nonsense", &fd) < 0 && wake_bind("127.0.0.1:99999", &fd) < 0, "bad listen addresses refused");
}

int main(void) {
        test_roundtrip();
        test_refusals();
        test_non_ascii_ids();
        test_every_registrable_id_is_wakeable();
        test_send_reaches_the_worker_socket();
        return tap_done();
}
