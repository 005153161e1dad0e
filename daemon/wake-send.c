/* wake-send.c: sends one wake-up datagram to a worker (see wake-send.h, common/wake-proto.h). */
#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "macro.h"
#include "time-util.h"
#include "wake-proto.h"
#include "wake-send.h"

static void freeaddrinfop(struct addrinfo **ai) {
        if (*ai)
                freeaddrinfo(*ai);
}

int wake_send(const char *host, uint16_t port, const char *worker_id, const char *worker_token) {
        _cleanup_(freeaddrinfop) struct addrinfo *ai = NULL;
        const struct addrinfo hints = {
                .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
                .ai_family = AF_UNSPEC,
                .ai_socktype = SOCK_DGRAM,
        };
        _cleanup_close_ int fd = -EBADF;
        char msg[WAKE_MAX_SIZE], service[8];
        int n;

        if (isempty(host) || port == 0)
                return -EINVAL;
        n = wake_format(worker_id, worker_token, now_realtime_usec() / USEC_PER_MSEC, msg, sizeof(msg));
        if (n < 0)
                return n;
        snprintf(service, sizeof(service), "%u", (unsigned) port);
        if (getaddrinfo(host, service, &hints, &ai) != 0 || !ai)
                return -EINVAL;
        fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (sendto(fd, msg, (size_t) n, MSG_NOSIGNAL, ai->ai_addr, ai->ai_addrlen) < 0)
                return -errno;
        return 0;
}
