/* bench-load.h: the load engine of entropy-bench. One epoll loop drives K non-blocking keep-alive
 * TCP connections to one loopback port, each with exactly one request in flight: a closed-loop
 * load, where each simulated client sends its next request as soon as the previous reply arrived.
 * The protocol (HTTP for entropy-control, the beanstalk text protocol for beanstalkd) lives in
 * LoadOps callbacks; the engine owns the sockets, the buffers, the timing and the bounds.
 *
 * Bounds: a run stops starting new cycles once its duration or its cycle budget is reached
 * (load_may_start_cycle() says so), lets each client finish the cycle it is in, and gives up at a
 * hard deadline (duration + drain time) whatever happens. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bench-util.h"
#include "time-util.h"

typedef struct Load Load;
typedef struct LoadClient LoadClient;

typedef struct LoadOps {
        /* Length of the complete reply at the start of data, 0 when incomplete, negative for a
         * protocol error (the run fails). */
        ssize_t (*parse)(LoadClient *c, const char *data, size_t size);
        /* A complete reply arrived after latency usec: send the next request with load_send(), or
         * call load_client_finish(). Negative stops the whole run. */
        int (*on_reply)(LoadClient *c, const char *data, size_t size, usec_t latency);
        /* Sends the client's first request (or finishes it at once). */
        int (*start)(LoadClient *c);
} LoadOps;

struct LoadClient {
        Load *load;
        const LoadOps *ops;
        unsigned index;
        int fd;
        Buf in;          /* received, not yet parsed */
        Buf out;         /* the request in flight, kept until its reply for a resend */
        size_t out_sent; /* bytes of out written so far */
        bool want_out;   /* EPOLLOUT registered */
        bool in_flight;
        bool done;
        bool close_after; /* the protocol saw "Connection: close": reconnect after this reply */
        unsigned reconnects;
        usec_t sent_at;
};

struct Load {
        int epoll_fd;
        uint16_t port;
        usec_t started_at;
        usec_t finished_at;
        usec_t stop_at;      /* no new cycle after this */
        usec_t deadline;     /* hard end, drain included */
        uint64_t max_cycles; /* 0 = unbounded by count (the duration still bounds it) */
        uint64_t tickets;    /* cycles started */
        uint64_t cycles;     /* cycles finished */
        uint64_t requests;
        uint64_t reconnects;
        size_t n_clients, n_done;
        usec_t cpu;                /* CPU time (user + system) this process spent in the run */
        void (*progress)(Load *l); /* optional, called every LOAD_PROGRESS_INTERVAL */
        usec_t next_progress;
};

#define LOAD_PROGRESS_INTERVAL (10 * USEC_PER_SEC)

/* duration: when to stop starting cycles; drain: extra time for the cycles in flight. */
int load_init(Load *l, uint16_t port, usec_t duration, uint64_t max_cycles, usec_t drain);
void load_done(Load *l);
/* Connects c to the load's port and registers it (c is zeroed by the caller beforehand). */
int load_add_client(Load *l, LoadClient *c, const LoadOps *ops, unsigned index);
void load_client_free(LoadClient *c);
/* Starts every client and runs until all are done (0), the hard deadline (-ETIMEDOUT) or a fatal
 * error. The clock starts here. */
int load_run(Load *l, LoadClient **clients, size_t n);

/* Takes a ticket for a new cycle: true when the count and time bounds allow one more. */
bool load_may_start_cycle(Load *l);
void load_cycle_done(Load *l);
/* Queues and writes one request (the client must have none in flight). */
int load_send(LoadClient *c, const void *data, size_t size);
/* Same, taking the bytes from a Buf the caller filled (reset afterwards). */
int load_send_buf(LoadClient *c, Buf *b);
void load_client_finish(LoadClient *c);
