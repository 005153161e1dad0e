#!/usr/bin/env python3
"""test-event-stream: GET /events/stream on a live control plane, from a plain HTTP client: a
committed event arrives live; a reconnect with Last-Event-ID replays exactly what was missed; the
admin token is required. (The stream's bounds, heartbeat and suspend/resume are unit-tested in
tests/unit/test-event-stream.c.)
"""

import re
import socket
import time

from entropy_test import ADMIN_TOKEN, TIME_SCALE, TestFailure, run, test


class SseClient:
    """GET /events/stream over a raw socket; reads until a marker arrives, bounded."""

    def __init__(self, cp, headers="", query=""):
        self.sock = socket.create_connection(("127.0.0.1", cp.port), timeout=10)
        self.sock.sendall(f"GET /events/stream{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Token: {ADMIN_TOKEN}\r\n"
                          f"{headers}\r\n".encode())
        self.data = b""

    def wait_for(self, marker, timeout=10.0):
        deadline = time.monotonic() + timeout * TIME_SCALE
        while marker.encode() not in self.data:
            if time.monotonic() > deadline:
                raise TestFailure(f"no {marker!r} on the event stream; got {self.data[-2000:]!r}")
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise TestFailure(f"event stream closed before {marker!r}; got {self.data[-2000:]!r}")
            self.data += chunk
        return self.data

    def close(self):
        self.sock.close()


@test
def test_event_stream_live_and_resume(t):
    cp = t.control_plane()
    c = SseClient(cp)
    t.cleanups.append(c.close)
    c.wait_for("retry:")
    job_id = cp.submit("true")
    data = c.wait_for(f'"job_id":"{job_id}"').decode()
    m = re.search(r"id: (\d+)\nevent: job.submitted\n", data)
    t.require(m, f"job.submitted with an id on the stream: {data[-500:]}")
    first_id = int(m.group(1))
    c.close()

    # Two more events while nobody listens; a reconnect with Last-Event-ID gets exactly those.
    status, _ = cp.admin("POST", "/abort", {"job_id": job_id})
    t.eq(status, 200, "abort")
    second = cp.submit("true")
    c = SseClient(cp, f"Last-Event-ID: {first_id}\r\n")
    t.cleanups.append(c.close)
    data = c.wait_for(f'"job_id":"{second}"').decode()
    t.ok("event: job.aborted" in data, "the abort missed while away is replayed")
    t.ok(f"id: {first_id}\n" not in data, "the event already received is not")
    c.close()

    status, body = cp.admin("GET", "/events/stream", token=False)
    t.eq(status, 401, "the stream needs the admin token")


@test
def test_event_stream_filters_like_get_events(t):
    cp = t.control_plane()
    filtered = SseClient(cp, query="?job_id=")
    t.cleanups.append(filtered.close)
    filtered.wait_for("retry:")
    first = cp.submit("true")
    filtered.wait_for(f'"job_id":"{first}"')
    # An empty filter is no filter (as GET /events takes it); a job_id filter passes that job only.
    status, body = cp.admin("GET", "/events?job_id=")
    t.eq(status, 200, "GET /events?job_id= is no filter")
    one = SseClient(cp, f"Last-Event-ID: {body[0]['id']}\r\n", query=f"?job_id={first}")
    t.cleanups.append(one.close)
    one.wait_for("retry:")
    other = cp.submit("true")
    status, _ = cp.admin("POST", "/abort", {"job_id": first})
    t.eq(status, 200, "abort")
    filtered.wait_for(f'"job_id":"{other}"')
    data = one.wait_for("event: job.aborted").decode()
    t.ok(other not in data, "the job_id filter keeps other jobs' events out")


@test
def test_a_last_event_id_ahead_of_the_store_is_reset_not_silent(t):
    # The database was restored from a backup: a dashboard comes back with a higher id than any.
    cp = t.control_plane()
    c = SseClient(cp, "Last-Event-ID: 999999\r\n")
    t.cleanups.append(c.close)
    data = c.wait_for("event: truncated").decode()
    t.ok(re.search(r"id: (\d+)\nevent: truncated\n", data), f"told, with the id to follow from: {data[-300:]}")
    job_id = cp.submit("true")
    c.wait_for(f'"job_id":"{job_id}"')


if __name__ == "__main__":
    run()
