#!/usr/bin/env python3
"""Refusals leave a trail without secrets, and hostile clients stay bounded: refused requests are
audited (who, what, from where) but no token value reaches the database, the WAL, the events API or
the log; the database is readable by its owner alone; a flood of bad requests is audited at a bounded
rate; connections per address are limited; a stalled connection (including libmicrohttpd 0.9.75's
request line starting with a NUL byte, which gets no answer) is closed after
--http-connection-timeout."""

import glob
import os
import signal
import socket
import stat
import time

from entropy_test import ADMIN_TOKEN, WORKER_TOKEN, Http, exchange, mhd_refusal, run, test
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


if __name__ == "__main__":
    run()
