/* wake.c: wake-up datagrams: inherited or bound sockets, verification, poll on success. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "log.h"
#include "wake-proto.h"
#include "wake.h"

#define WAKE_READS_PER_EVENT 16

static int on_wake(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Worker *w = userdata;

        for (int i = 0; i < WAKE_READS_PER_EVENT; i++) {
                char buf[WAKE_MAX_SIZE + 1];
                uint64_t ts = 0;
                ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                int k;

                if (n < 0)
                        break; /* EAGAIN, or an ICMP error queued on the socket: nothing to read */
                k = wake_verify(buf, (size_t) n, w->settings.worker_id, w->token,
                                now_realtime_usec() / USEC_PER_MSEC, w->settings.wake_window / USEC_PER_MSEC, &ts);
                if (k == 0 && ts <= w->wake_last_ms)
                        k = -EALREADY;
                if (k < 0) {
                        log_debug_errno(k, "Dropped a wake datagram: %m");
                        continue;
                }
                w->wake_last_ms = ts;
                log_info("Woken up by the control plane; polling now.");
                worker_mark_busy(w);
                session_poll_now(w);
        }
        return 0;
}

int wake_bind(const char *listen, int *ret_fd) {
        _cleanup_free_ char *host = NULL;
        const char *colon, *port_s;
        struct sockaddr_storage ss = {};
        socklen_t len;
        _cleanup_close_ int fd = -EBADF;
        long port;
        char *end;

        if (listen[0] == '[') {
                const char *close_br = strchr(listen, ']');
                if (!close_br || close_br[1] != ':')
                        return -EINVAL;
                host = strndup(listen + 1, (size_t) (close_br - listen - 1));
                port_s = close_br + 2;
        } else {
                colon = strrchr(listen, ':');
                if (!colon)
                        return -EINVAL;
                host = strndup(listen, (size_t) (colon - listen));
                port_s = colon + 1;
        }
        if (!host)
                return -ENOMEM;
        port = strtol(port_s, &end, 10);
        if (*end || port < 0 || port > 65535)
                return -EINVAL;
        struct sockaddr_in *in4 = (struct sockaddr_in *) &ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
        if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
                in4->sin_family = AF_INET;
                in4->sin_port = htons((uint16_t) port);
                len = sizeof(*in4);
        } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t) port);
                len = sizeof(*in6);
        } else
                return -EINVAL;
        fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *) &ss, len) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static uint16_t socket_port(int fd) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *) &ss, &len) < 0)
                return 0;
        if (ss.ss_family == AF_INET)
                return ntohs(((struct sockaddr_in *) &ss)->sin_port);
        if (ss.ss_family == AF_INET6)
                return ntohs(((struct sockaddr_in6 *) &ss)->sin6_port);
        return 0;
}

static int wake_add(Worker *w, int fd) {
        int k;
        if (w->n_wake >= WORKER_MAX_WAKE_FDS) {
                close(fd);
                return -E2BIG;
        }
        /* Inherited sockets may be blocking and inheritable; ours must be neither. */
        (void) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
        k = sd_event_add_io(w->event, &w->wake_sources[w->n_wake], fd, EPOLLIN, on_wake, w);
        if (k < 0) {
                close(fd);
                return k;
        }
        w->wake_fds[w->n_wake++] = fd;
        if (w->wake_port == 0)
                w->wake_port = socket_port(fd);
        return 0;
}

int wake_setup(Worker *w) {
        int n = sd_listen_fds(true), k;

        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                if (sd_is_socket(fd, AF_UNSPEC, SOCK_DGRAM, -1) <= 0) {
                        log_warning("Ignoring inherited fd %d: not a datagram socket.", fd);
                        close(fd);
                        continue;
                }
                k = wake_add(w, fd);
                if (k < 0)
                        return log_error_errno(k, "Cannot watch the wake socket: %m");
                w->socket_activated = true;
        }
        if (w->n_wake == 0 && !isempty(w->settings.wake_listen)) {
                int fd;
                k = wake_bind(w->settings.wake_listen, &fd);
                if (k < 0)
                        return log_error_errno(k, "Cannot bind the wake socket %s: %m", w->settings.wake_listen);
                k = wake_add(w, fd);
                if (k < 0)
                        return log_error_errno(k, "Cannot watch the wake socket: %m");
        }
        if (w->n_wake > 0)
                log_info("Wake socket ready on port %u%s.", (unsigned) w->wake_port,
                         w->socket_activated ? " (socket-activated)" : "");
        return 0;
}

void wake_close(Worker *w) {
        for (size_t i = 0; i < w->n_wake; i++) {
                sd_event_source_disable_unref(w->wake_sources[i]);
                close(w->wake_fds[i]);
        }
        w->n_wake = 0;
}
