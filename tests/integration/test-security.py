#!/usr/bin/env python3
"""Refusals leave a trail without secrets, and hostile clients stay bounded: refused requests are
audited (who, what, from where) but no token value reaches the database, the WAL, the events API or
the log; the database is readable by its owner alone; a flood of bad requests is audited at a bounded
rate; connections per address are limited; a stalled connection (including libmicrohttpd 0.9.75's
request line starting with a NUL byte, which gets no answer) is closed after
--http-connection-timeout."""

import glob
import json
import os
import select
import signal
import socket
import stat
import subprocess
import threading
import time

from entropy_test import (ADMIN_TOKEN, TIME_SCALE, WORKER_TOKEN, Http, binary, content_length, exchange, mhd_refusal,
                          run, test)
from signed_token import make_token


def files_bytes(cp):
    data = b""
    for path in glob.glob(cp.database + "*") + [cp.log_path]:
        with open(path, "rb") as f:
            data += f.read()
    return data


@test
def test_refused_requests_are_audited_without_secrets(t):
    cp = t.control_plane()
    wrong = "wrong-token-that-must-not-be-stored-0001"
    signed_other = make_token(WORKER_TOKEN, "worker-a")
    tries = [
        ("GET", "/jobs", wrong),
        ("GET", "/jobs", WORKER_TOKEN),          # other role's token
        ("POST", "/register", ADMIN_TOKEN),      # other role's token
        ("GET", "/next-job?worker_id=worker-b", signed_other),  # signed for another worker
        ("GET", "/workers", None),
    ]
    for method, path, tok in tries:
        body = {"worker_id": "worker-b"} if method == "POST" else None
        status, _ = cp.http.request(method, path, body, token=tok if tok else False,
                                    headers={"X-Request-ID": f"req-{len(path)}"})
        t.ok(status in (401, 403), f"{method} {path} refused ({status})")
    events = cp.events(event="request.refused")
    t.ok(len(events) >= len(tries), f"every refusal is audited ({len(events)})")
    for e in events:
        d = e["details"]
        t.ok(d.get("from", "").startswith("127.0.0.1:"), f"from where: {d}")
        t.ok(d.get("reason"), f"what and why: {d}")
    t.ok(any(e["details"].get("who") == "worker-a" for e in events), "who, when a credential names someone")
    t.ok(any(e.get("request_id") for e in events), "the request id is kept")

    cp.stop()
    data = files_bytes(cp)
    for secret in (wrong, WORKER_TOKEN, ADMIN_TOKEN, signed_other, signed_other.rsplit(":", 1)[1]):
        t.ok(secret.encode() not in data, f"{secret[:12]}... is in neither the database, its WAL nor the log")


@test
def test_database_is_readable_by_its_owner_alone(t):
    cp = t.control_plane()
    cp.submit("true")
    paths = glob.glob(cp.database + "*")
    t.require(cp.database in paths, f"the database is at {cp.database}: {paths}")
    for path in paths:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        t.eq(mode & 0o077, 0, f"{os.path.basename(path)} mode {oct(mode)} gives nothing to group or others")


@test
def test_a_flood_of_bad_requests_is_audited_at_a_bounded_rate(t):
    cp = t.control_plane()
    started = time.monotonic()
    for i in range(400):
        status, _ = cp.http.request("GET", "/jobs", token=f"bad-{i}")
        if status != 401:
            t.ok(False, f"request {i}: {status}")
            break
    elapsed = time.monotonic() - started
    n = len(cp.events(event="request.refused", limit=1000))
    t.ok(n <= 50 * (int(elapsed) + 2), f"{n} of 400 refusals audited in {elapsed:.1f}s (at most 50 a second)")
    t.ok(n >= 50, f"the first ones are audited ({n})")
    status, _ = cp.admin("GET", "/healthz")
    t.eq(status, 200, "still serving")


@test
def test_connections_per_address_are_limited(t):
    cp = t.control_plane(options={"max-connections-per-ip": "4"})
    held = [socket.create_connection(("127.0.0.1", cp.port), timeout=5) for _ in range(4)]
    extra = socket.create_connection(("127.0.0.1", cp.port), timeout=5)
    extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        data = extra.recv(100)  # b"": closed (EOF)
    except ConnectionResetError:
        data = b""  # closed (RST)
    except socket.timeout:
        data = None  # neither answered nor closed: held open, which is not a refusal
    t.eq(data, b"", "the connection past the limit is closed unanswered")
    for s in held:
        s.close()
    extra.close()
    fresh = Http("127.0.0.1", cp.port)

    def served():
        try:
            return fresh.request("GET", "/healthz", token=False)[0] == 200
        except OSError:
            fresh.close()
            return False
    t.wait_for(served, 10, "the limit to free up", interval=0.1)


@test
def test_a_stalled_or_nul_request_line_is_closed_after_the_connection_timeout(t):
    cp = t.control_plane(options={"http-connection-timeout": "2s"})
    nul = socket.create_connection(("127.0.0.1", cp.port), timeout=15)
    nul.sendall(b"\x00GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    stalled = socket.create_connection(("127.0.0.1", cp.port), timeout=15)
    stalled.sendall(b"GET /healthz HT")
    started = time.monotonic()
    status, _ = cp.http.request("GET", "/healthz", token=False)
    t.eq(status, 200, "other clients are served meanwhile")
    for name, s in (("NUL-led request", nul), ("half a request line", stalled)):
        try:
            while s.recv(4096):
                pass
        except (ConnectionResetError, socket.timeout):
            pass
        waited = time.monotonic() - started
        t.ok(waited < 10, f"{name}: closed after {waited:.1f}s (timeout 2s)")
        s.close()


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM:")).split()[1])


@test
def test_bodies_without_a_valid_token_are_not_kept(t):
    cp = t.control_plane()
    pid = cp.proc.pid
    body = b'{"command": "' + b"a" * (1024 * 1024 - 64) + b'"}'
    head = (f"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n").encode()
    tokens = [b"", b"X-API-Token: wrong-token-0123456789abcdef\r\n"]
    conns = [socket.create_connection(("127.0.0.1", cp.port), timeout=30) for _ in range(32)]
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    before = peak_rss_kib(pid)
    # All but the last byte on every connection: a server that kept the bodies would hold 32 MiB.
    for i, s in enumerate(conns):
        s.sendall(head + tokens[i % 2] + b"\r\n" + body[:-1])
    for s in conns:
        s.sendall(body[-1:])
        t.eq(s.recv(64).split(b" ")[1], b"401", "refused with 401 once the body is in")
        s.close()
    grown = peak_rss_kib(pid) - before
    t.ok(grown < 12 * 1024, f"peak RSS grew by {grown} KiB for 32 MiB of unauthenticated bodies")
    t.eq(cp.admin("GET", "/jobs"), (200, []), "still serving, and nothing was submitted")


@test
def test_oversized_headers_are_refused(t):
    """A 128 KiB header does not fit in a connection's 16 KiB: libmicrohttpd answers 431 itself,
    with its own HTML body and Connection: close, and closes the connection (docs/http-api.md)."""
    cp = t.control_plane()
    data, closed = exchange(cp, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (128 * 1024) + b"\r\n\r\n")
    mhd_refusal(t, "a 128 KiB header", data, closed, "HTTP/1.1 431 Request Header Fields Too Large")
    status, _ = cp.http.request("GET", "/healthz", token=False)
    t.eq(status, 200, "still serving")


@test
def test_rotated_out_and_previous_tokens(t):
    cp = t.control_plane()
    prev = os.path.join(cp.state_dir, "admin-previous")
    with open(prev, "w") as f:
        f.write(ADMIN_TOKEN + "\n")
    with open(cp.admin_token_file, "w") as f:
        f.write("admin-token-new-0123456789abcdef\n")
    cp.stop()
    cp.argv.append(f"--admin-token-previous-file={prev}")
    cp.restart()
    t.eq(cp.admin("GET", "/jobs")[0], 200, "the previous admin token works during rotation")
    t.eq(cp.admin("GET", "/jobs", token="admin-token-new-0123456789abcdef")[0], 200, "the new one too")
    os.unlink(prev)
    with open(prev, "w") as f:
        f.write("admin-token-unrelated-0123456789\n")
    cp.signal(signal.SIGHUP)
    cp.wait_notify("READY=1")
    t.eq(cp.admin("GET", "/jobs")[0], 401, "the rotated-out admin token is refused after SIGHUP")


# --- the request deadline (--http-request-timeout) ------------------------------------------------

# Its default, which these tests run with (so that they hold whatever passes the option on).
REQUEST_DEADLINE = 15.0
# How late past a deadline its connection may be closed (and the server answer others again).
CUT_SLACK = 3.0 * TIME_SCALE
# Never completes: the headers of a request that would be served at once if they ever ended.
TRICKLE = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4096


class Tricklers(threading.Thread):
    """n connections, each sending one more byte of TRICKLE every `interval` seconds (less than the
    idle timeout: never idle), until the server closes them or `limit` seconds pass."""

    def __init__(self, cp, n, interval, limit):
        super().__init__(daemon=True)
        self.socks = [socket.create_connection(("127.0.0.1", cp.port), timeout=5) for _ in range(n)]
        for s in self.socks:
            s.sendall(TRICKLE[:1])
        self.started = time.monotonic()
        self.interval, self.limit = interval, limit
        self.closed_at = {}  # socket -> seconds after started
        self.answers = []    # anything the server sent them: nothing should come, no request is whole

    def run(self):
        sent, next_tick, end = 1, self.started + self.interval, self.started + self.limit
        while len(self.closed_at) < len(self.socks) and time.monotonic() < end:
            live = [s for s in self.socks if s not in self.closed_at]
            readable, _, _ = select.select(live, [], [], max(0.0, min(next_tick, end) - time.monotonic()))
            for s in readable:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if data:
                    self.answers.append(data)
                self.closed_at[s] = time.monotonic() - self.started
            if time.monotonic() >= next_tick:
                for s in [s for s in live if s not in self.closed_at]:
                    try:
                        s.send(TRICKLE[sent:sent + 1])
                    except OSError:
                        self.closed_at[s] = time.monotonic() - self.started
                sent, next_tick = sent + 1, next_tick + self.interval

    def close(self):
        for s in self.socks:
            s.close()


def healthz_answered_after(cp, limit):
    """Seconds until GET /healthz on a new connection is answered 200, or None within limit. The
    connection waits in the listen backlog while the server is full; one closed unanswered (accepted
    at the limit) is tried again."""
    started = time.monotonic()
    for _ in range(50):
        remaining = started + limit - time.monotonic()
        if remaining <= 0:
            return None
        data = b""
        try:
            with socket.create_connection(("127.0.0.1", cp.port), timeout=remaining) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while chunk := s.recv(4096):
                    data += chunk
        except socket.timeout:
            return None
        except OSError:
            pass
        if data.startswith(b"HTTP/1.1 200"):
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def check_tricklers_cut(t, cp, n, deadline):
    """n tricklers fill a server of n connections: nobody is served until their deadline, then
    they are cut and the server answers again."""
    limit = deadline + 10 * TIME_SCALE
    tricklers = Tricklers(cp, n, interval=1.0, limit=limit)
    t.cleanups.append(tricklers.close)
    tricklers.start()
    waited = healthz_answered_after(cp, limit)
    tricklers.join(limit + 5)
    t.require(waited is not None, f"GET /healthz is answered once the tricklers are cut (waited {limit}s)")
    t.ok(waited > deadline - 1.5, f"nobody is served while they hold every connection (answered after {waited:.1f}s)")
    t.ok(waited < deadline + CUT_SLACK, f"GET /healthz answered {waited:.1f}s in (deadline {deadline}s)")
    closed = sorted(tricklers.closed_at.values())
    t.eq(len(closed), n, "every trickling connection is closed")
    t.ok(closed and closed[0] > deadline - 1.0 and closed[-1] < deadline + CUT_SLACK,
         f"closed at the deadline ({deadline}s), not before and not much after: {[round(c, 1) for c in closed]}")
    t.eq(tricklers.answers, [], "none of them was answered (none sent a whole request)")


@test
def test_trickling_clients_are_cut_at_the_request_deadline(t):
    """A client that sends one byte of its headers before each idle timeout is never idle: only the
    deadline on the whole request closes it. While such clients hold every connection nobody is
    served; right after their deadline everybody is again."""
    n = 8
    cp = t.control_plane(options={"max-connections": str(n), "http-connection-timeout": "2s"})
    check_tricklers_cut(t, cp, n, REQUEST_DEADLINE)
    t.ok(cp.running(), "still running")


@test
def test_a_full_server_takes_the_next_client_once_a_connection_closes(t):
    """At --max-connections new clients wait in the listen backlog. When connections close (here
    every one, which leaves libmicrohttpd no timer that would run it again), the next client is
    taken in at once, not at whatever event comes next."""
    cp = t.control_plane(options={"max-connections": "2"})
    held = [socket.create_connection(("127.0.0.1", cp.port), timeout=5) for _ in range(2)]
    t.cleanups.extend(s.close for s in held)
    for s in held:  # answered: accepted, and kept alive
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        t.require(read_response(s).startswith(b"HTTP/1.1 200"), "a held connection is served")
    probe = socket.create_connection(("127.0.0.1", cp.port), timeout=10 * TIME_SCALE)
    t.cleanups.append(probe.close)
    probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    t.eq(select.select([probe], [], [], 1.0)[0], [], "a third client waits while the server is full")
    for s in held:
        s.close()
    closed = time.monotonic()
    try:
        answer = read_response(probe)
    except socket.timeout:
        answer = b""
    waited = time.monotonic() - closed
    t.ok(answer.startswith(b"HTTP/1.1 200"), f"it is served once they close, got {answer[:40]!r}")
    t.ok(waited < 1.0 * TIME_SCALE, f"at once ({waited:.2f}s after they closed)")


@test
def test_http_request_timeout_sets_the_deadline(t):
    """--http-request-timeout replaces the 15 s default: tricklers are cut at 4 s."""
    n = 4
    cp = t.control_plane(options={"max-connections": str(n), "http-connection-timeout": "2s",
                                  "http-request-timeout": "4s"})
    check_tricklers_cut(t, cp, n, 4.0)


@test
def test_http_request_timeout_out_of_range_is_refused(t):
    for value in ("0", "500ms", "2h"):
        r = t.run_cmd([binary("entropy-control"), "--config=", f"--http-request-timeout={value}"])
        t.ok(r.returncode != 0 and "--http-request-timeout must be between 1s and 1h" in r.stderr,
             f"--http-request-timeout={value} refused, saying what it takes: {r.stderr!r}")


def send_slowly(s, data, pieces, interval):
    """data in `pieces` parts, one every `interval` seconds (the first at once)."""
    size = -(-len(data) // pieces)
    for i in range(0, len(data), size):
        if i:
            time.sleep(interval)
        s.sendall(data[i:i + size])


def read_response(s):
    """One response (headers and a Content-Length body) from s: its bytes, b"" if closed first."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < content_length(data):
        chunk = s.recv(4096)
        if not chunk:
            return b""
        data += chunk
    return data


def submission(command_arg):
    body = json.dumps({"command": "true", "args": [command_arg]}).encode()
    return (f"POST /jobs HTTP/1.1\r\nHost: x\r\nX-API-Token: {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@test
def test_slow_requests_within_the_deadline_are_served_one_after_another(t):
    """A request whose bytes come slowly (each before the idle timeout) but whole within the deadline
    is served. On a kept-alive connection the next request has a deadline of its own: two such
    requests take longer together than one deadline, and both are served."""
    cp = t.control_plane(options={"http-connection-timeout": "2s"})
    s = socket.create_connection(("127.0.0.1", cp.port), timeout=10 * TIME_SCALE)
    t.cleanups.append(s.close)
    started = time.monotonic()
    for i in range(2):
        send_slowly(s, submission(f"slow-{i}"), pieces=9, interval=1.0)
        answer = read_response(s)
        t.ok(answer.startswith(b"HTTP/1.1 201"), f"slow request {i} is served, got {answer[:40]!r}")
    took = time.monotonic() - started
    t.ok(took > REQUEST_DEADLINE, f"the connection served requests for {took:.1f}s, past one deadline")
    t.eq(len(cp.admin("GET", "/jobs")[1]), 2, "both jobs were submitted")


SLOW_SYNC_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

/* The first fsync() or fdatasync() after the file $ENTROPY_TEST_SLOW_SYNC appears takes
 * $ENTROPY_TEST_SLOW_SYNC_SECONDS longer: a disk that stalls under one commit. */
static void stall(void) {
        const char *flag = getenv("ENTROPY_TEST_SLOW_SYNC"), *secs = getenv("ENTROPY_TEST_SLOW_SYNC_SECONDS");

        if (flag && secs && unlink(flag) == 0)
                sleep((unsigned) atoi(secs));
}

int fsync(int fd) {
        stall();
        return ((int (*)(int)) dlsym(RTLD_NEXT, "fsync"))(fd);
}

int fdatasync(int fd) {
        stall();
        return ((int (*)(int)) dlsym(RTLD_NEXT, "fdatasync"))(fd);
}
"""


def slow_sync_library(t):
    cc = t.require_tool("cc", "gcc")
    src, lib = os.path.join(t.tmp, "slow-sync.c"), os.path.join(t.tmp, "slow-sync.so")
    with open(src, "w") as f:
        f.write(SLOW_SYNC_C)
    r = subprocess.run([cc, "-shared", "-fPIC", "-o", lib, src, "-ldl"], capture_output=True, text=True)
    t.require(r.returncode == 0, f"building the slow-sync library: {r.stderr}")
    return lib


def read_until(s, data, marker, limit):
    """Reads from s until marker is in data (returned), or limit seconds pass (None); bounded."""
    end = time.monotonic() + limit
    while marker not in data:
        if time.monotonic() > end:
            return None
        s.settimeout(max(0.05, end - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            return None
        data += chunk
    return data


@test
def test_answers_that_outlast_the_request_deadline_are_not_cut(t):
    """Once a request is in whole, its connection waits for the server, not the client: an event
    stream open for longer than the deadline goes on, and so does an answer held back for its group
    commit (a disk stalling under it) until past its connection's deadline."""
    lib = slow_sync_library(t)
    flag = os.path.join(t.tmp, "slow-sync")
    # Under AddressSanitizer the preloaded library comes before its runtime: allowed, since the
    # library only wraps fsync, which the runtime does not intercept.
    asan = (os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
    cp = t.control_plane(options={"http-connection-timeout": "2s"},
                         env={"LD_PRELOAD": lib, "ENTROPY_TEST_SLOW_SYNC": flag,
                              "ENTROPY_TEST_SLOW_SYNC_SECONDS": "10", "ASAN_OPTIONS": asan})
    stream = socket.create_connection(("127.0.0.1", cp.port), timeout=10)
    t.cleanups.append(stream.close)
    stream.sendall(f"GET /events/stream HTTP/1.1\r\nHost: x\r\nX-API-Token: {ADMIN_TOKEN}\r\n\r\n".encode())
    events = read_until(stream, b"", b"retry:", 10 * TIME_SCALE)
    t.require(events is not None, "the event stream opens")

    post = socket.create_connection(("127.0.0.1", cp.port), timeout=30 * TIME_SCALE)
    t.cleanups.append(post.close)
    accepted = time.monotonic()
    request = submission("held")
    send_slowly(post, request[:-1], pieces=8, interval=1.0)
    with open(flag, "w"):
        pass  # the commit of this request stalls for 10 s: it is answered past its deadline
    post.sendall(request[-1:])
    answer = read_response(post)
    took = time.monotonic() - accepted
    t.ok(answer.startswith(b"HTTP/1.1 201"), f"the held answer is sent, got {answer[:40]!r}")
    t.require(took > REQUEST_DEADLINE, f"it came {took:.1f}s after the connection opened, past its deadline")
    job_id = json.loads(answer.split(b"\r\n\r\n", 1)[1])["job_id"]

    events = read_until(stream, events, job_id.encode(), 10 * TIME_SCALE)
    t.ok(events is not None, "the event stream, open past its deadline, carries the held job's submission")
    later = cp.submit("true")
    t.ok(read_until(stream, events or b"", later.encode(), 10 * TIME_SCALE) is not None,
         "and goes on carrying events")


if __name__ == "__main__":
    run()
