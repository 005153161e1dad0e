/* bench-load.c: the epoll loop behind entropy-bench's closed-loop load (see bench-load.h). */
#include <assert.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "bench-load.h"
#include "bench-proc.h"
#include "log.h"

#define LOAD_MAX_EVENTS     256
#define LOAD_READ_CHUNK     65536
#define LOAD_MAX_RECONNECTS 8

int load_init(Load *l, uint16_t port, usec_t duration, uint64_t max_cycles, usec_t drain) {
        *l = (Load){.port = port, .max_cycles = max_cycles};
        l->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (l->epoll_fd < 0)
                return negative_errno();
        /* Set again by load_run(); a client may ask for tickets only from there on. */
        l->stop_at = duration;
        l->deadline = duration + drain;
        return 0;
}

void load_done(Load *l) {
        if (l->epoll_fd >= 0)
                close(l->epoll_fd);
        l->epoll_fd = -EBADF;
}

static int client_connect(LoadClient *c) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        int fd, r;

        r = connect_loopback(c->load->port, false, &fd);
        if (r < 0)
                return r;
        if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || epoll_ctl(c->load->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                r = negative_errno();
                close(fd);
                return r;
        }
        c->fd = fd;
        c->want_out = false;
        return 0;
}

int load_add_client(Load *l, LoadClient *c, const LoadOps *ops, unsigned index) {
        c->load = l;
        c->ops = ops;
        c->index = index;
        c->fd = -EBADF;
        l->n_clients++;
        return client_connect(c);
}

void load_client_free(LoadClient *c) {
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -EBADF;
        buf_free(&c->in);
        buf_free(&c->out);
}

bool load_may_start_cycle(Load *l) {
        if (l->max_cycles > 0 && l->tickets >= l->max_cycles)
                return false;
        if (now_monotonic_usec() >= l->stop_at)
                return false;
        l->tickets++;
        return true;
}

void load_cycle_done(Load *l) {
        l->cycles++;
}

void load_client_finish(LoadClient *c) {
        if (c->done)
                return;
        c->done = true;
        c->load->n_done++;
        /* Nothing more to send or receive: leave the loop alone (a done client's socket would
         * otherwise report the server's eventual close forever, epoll being level-triggered). */
        if (c->fd >= 0) {
                epoll_ctl(c->load->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -EBADF;
        }
}

static int set_want_out(LoadClient *c, bool want) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};

        if (c->want_out == want)
                return 0;
        if (epoll_ctl(c->load->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
                return negative_errno();
        c->want_out = want;
        return 0;
}

static int client_flush(LoadClient *c) {
        while (c->out_sent < c->out.size) {
                ssize_t k = send(c->fd, c->out.data + c->out_sent, c->out.size - c->out_sent, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EAGAIN)
                                return set_want_out(c, true);
                        return negative_errno();
                }
                c->out_sent += (size_t) k;
        }
        return set_want_out(c, false);
}

int load_send(LoadClient *c, const void *data, size_t size) {
        int r;

        assert(!c->in_flight);
        c->out.size = 0;
        r = buf_append(&c->out, data, size);
        if (r < 0)
                return r;
        c->out_sent = 0;
        c->in_flight = true;
        c->sent_at = now_monotonic_usec();
        c->load->requests++;
        return client_flush(c);
}

int load_send_buf(LoadClient *c, Buf *b) {
        int r = load_send(c, b->data, b->size);
        b->size = 0;
        return r;
}

/* The server closed the connection: reconnect and, if a request was in flight, send it again.
 * unexpected: the close was not announced by the protocol (counted against the client). */
static int client_reconnect(LoadClient *c, bool unexpected) {
        int r;

        if (unexpected && ++c->reconnects > LOAD_MAX_RECONNECTS)
                return log_error_errno(-ECONNRESET, "Client %u: connection closed %u times, giving up.", c->index,
                                       c->reconnects - 1);
        c->load->reconnects++;
        epoll_ctl(c->load->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -EBADF;
        c->in.size = 0;
        r = client_connect(c);
        if (r < 0)
                return log_error_errno(r, "Client %u: failed to reconnect: %m", c->index);
        c->out_sent = 0;
        return c->in_flight ? client_flush(c) : 0;
}

/* Hands each complete reply in the input buffer to the protocol. */
static int client_dispatch(LoadClient *c) {
        for (;;) {
                ssize_t k = c->ops->parse(c, c->in.data, c->in.size);
                usec_t latency;
                int r;

                if (k < 0)
                        return log_error_errno((int) k, "Client %u: malformed reply: %m", c->index);
                if (k == 0)
                        return 0;
                if (!c->in_flight)
                        return log_error_errno(-EPROTO, "Client %u: reply without a request.", c->index);
                latency = now_monotonic_usec() - c->sent_at;
                c->in_flight = false;
                r = c->ops->on_reply(c, c->in.data, (size_t) k, latency);
                buf_consume(&c->in, (size_t) k);
                if (r < 0)
                        return r;
                if (c->done)
                        return 0;
                if (c->close_after) {
                        c->close_after = false;
                        return client_reconnect(c, false);
                }
        }
}

static int client_readable(LoadClient *c) {
        ssize_t k;
        int r;

        r = buf_reserve(&c->in, LOAD_READ_CHUNK);
        if (r < 0)
                return r;
        k = recv(c->fd, c->in.data + c->in.size, c->in.alloc - c->in.size - 1, 0);
        if (k < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                if (errno == ECONNRESET)
                        return client_reconnect(c, true);
                return negative_errno();
        }
        if (k == 0)
                return client_reconnect(c, true);
        c->in.size += (size_t) k;
        c->in.data[c->in.size] = 0;
        return client_dispatch(c);
}

static int client_event(LoadClient *c, uint32_t events) {
        int r = 0;

        if (c->done)
                return 0;
        if (events & EPOLLOUT)
                r = client_flush(c);
        if (r >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                r = client_readable(c);
        return r;
}

static int load_start_clients(Load *l, LoadClient **clients, size_t n) {
        usec_t duration = l->stop_at, drain = l->deadline - l->stop_at;

        l->started_at = now_monotonic_usec();
        l->stop_at = l->started_at + duration;
        l->deadline = l->stop_at + drain;
        l->next_progress = l->started_at + LOAD_PROGRESS_INTERVAL;
        for (size_t i = 0; i < n; i++) {
                int r = clients[i]->ops->start(clients[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int load_loop(Load *l) {
        struct epoll_event events[LOAD_MAX_EVENTS];
        int r;

        while (l->n_done < l->n_clients) {
                usec_t now = now_monotonic_usec();
                int k;

                if (bench_interrupted)
                        return -EINTR;
                if (now >= l->deadline)
                        return log_error_errno(-ETIMEDOUT, "Load did not drain in time: %zu of %zu clients done.",
                                               l->n_done, l->n_clients);
                if (l->progress && now >= l->next_progress) {
                        l->progress(l);
                        l->next_progress = now + LOAD_PROGRESS_INTERVAL;
                }
                k = epoll_wait(l->epoll_fd, events, LOAD_MAX_EVENTS,
                               (int) MIN((l->deadline - now) / USEC_PER_MSEC + 1, (usec_t) 100));
                if (k < 0 && errno != EINTR)
                        return negative_errno();
                for (int i = 0; i < k; i++) {
                        r = client_event(events[i].data.ptr, events[i].events);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static usec_t cpu_time(void) {
        struct rusage ru;

        if (getrusage(RUSAGE_SELF, &ru) < 0)
                return 0;
        return (usec_t) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * USEC_PER_SEC +
               (usec_t) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

int load_run(Load *l, LoadClient **clients, size_t n) {
        usec_t cpu0 = cpu_time();
        int r;

        r = load_start_clients(l, clients, n);
        if (r >= 0)
                r = load_loop(l);
        l->finished_at = now_monotonic_usec();
        l->cpu = cpu_time() - cpu0;
        return r;
}
