/* wake.h: the worker's wake socket. Either inherited from systemd (socket activation: a
 * ListenDatagram= socket, or `systemd-socket-activate --datagram`), or bound from --wake-listen.
 * Each datagram is checked as common/wake-proto.h describes (format "entropy-wake1 <worker_id>
 * <unix_ms> <hmac>", HMAC-SHA256 keyed with the worker token, freshness window --wake-window,
 * newer than the last one accepted); a valid one makes the worker poll at once. Anything else is
 * dropped with a debug message. A wake-up never claims work: only GET /next-job does.
 *
 * The port of the first wake socket is sent as `wake_port` in POST /register, so the control
 * plane knows where to send wake-ups (see daemon/wake-send.h). The functions are declared in
 * worker.h: wake_setup(), wake_close(). */
#pragma once

#include "worker.h"

/* Parses "ADDR:PORT" or "[V6ADDR]:PORT" and binds a non-blocking datagram socket. */
int wake_bind(const char *listen, int *ret_fd);
