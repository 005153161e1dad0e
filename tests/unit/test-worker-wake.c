/* test-worker-wake.c: wake-up datagrams: format, verification (worker, HMAC, freshness,
 * malformed input) and the control plane's sender reaching a worker's socket. */
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "macro.h"
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
        test_send_reaches_the_worker_socket();
        return tap_done();
}
