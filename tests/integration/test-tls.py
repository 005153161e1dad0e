#!/usr/bin/env python3
"""HTTPS and client certificates on entropy-control: the configured certificate is served with a
modern protocol set, SIGHUP swaps it without a restart, bad TLS settings stop the start, and with
--tls-client-ca every missing, untrusted, expired or misused client certificate is refused (and
audited), while --tls-bind-worker-id keeps one worker from speaking for another. Certificates are
made at test time (tls_certs.py, certtool)."""

import json
import os
import shutil
import signal
import subprocess

from entropy_test import ADMIN_TOKEN, BUILDDIR, SRCDIR, WORKER_TOKEN, TestFailure, run, test
from tls_certs import CertFactory, TlsHttp, pem_to_der, require_certtool


def tls_control_plane(t, certs, server=None, client_ca=None, bind=False, options=None):
    server = server or certs.server()
    opts = {"tls-certificate": server.cert, "tls-key": server.key}
    if client_ca:
        opts["tls-client-ca"] = client_ca
    if bind:
        opts["tls-bind-worker-id"] = "yes"
    opts.update(options or {})
    cp = t.control_plane(options=opts)
    cp.http = TlsHttp("127.0.0.1", cp.port, certs.ca_file)
    cp.server_cert = server
    return cp


def client(cp, certs, cert=None):
    return TlsHttp("127.0.0.1", cp.port, certs.ca_file, cert=cert)


def gnutls_cli(t, cp, ca, priority=None):
    argv = ["gnutls-cli", "--x509cafile", ca, "-p", str(cp.port), "localhost"]
    if priority:
        argv.insert(1, f"--priority={priority}")
    # Connects, shakes hands, and leaves at once on the closed stdin.
    return t.run_cmd(argv, input="", timeout=20)


@test
def test_https_serves_the_configured_certificate(t):
    certs = CertFactory(t.tmp)
    cp = tls_control_plane(t, certs)
    status, body = cp.http.request("GET", "/healthz", token=False)
    t.eq(status, 200, "GET /healthz over HTTPS")
    t.eq(cp.http.peer_certificate(), pem_to_der(cp.server_cert.cert), "the configured certificate is served")
    job = cp.submit("true")
    t.eq(cp.job(job)["status"], "PENDING", "the API works over HTTPS")
    plain = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                            f"http://127.0.0.1:{cp.port}/healthz"], capture_output=True, text=True)
    t.ok(plain.stdout.strip() in ("000", ""), f"plain HTTP gets no HTTP answer: {plain.stdout!r}")


@test
def test_only_tls12_and_tls13_with_aead_ciphers_are_offered(t):
    t.require_tool("gnutls-cli", "gnutls-bin")
    certs = CertFactory(t.tmp)
    cp = tls_control_plane(t, certs)
    r = gnutls_cli(t, cp, certs.ca_file)
    t.eq(r.returncode, 0, f"a default client connects: {r.stderr[-300:]}")
    t.ok("(TLS1.3-" in r.stdout, f"TLS 1.3 is negotiated by default: {r.stdout[-400:]}")
    r = gnutls_cli(t, cp, certs.ca_file, "NORMAL:-VERS-ALL:+VERS-TLS1.1:+VERS-TLS1.0")
    t.ok(r.returncode != 0, "TLS 1.0 and 1.1 are refused")
    r = gnutls_cli(t, cp, certs.ca_file, "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-CBC:+AES-256-CBC")
    t.ok(r.returncode != 0, "CBC ciphers are refused")
    r = gnutls_cli(t, cp, certs.ca_file, "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA")
    t.ok(r.returncode != 0, "RSA key exchange (no forward secrecy) is refused")
    r = gnutls_cli(t, cp, certs.ca_file, "NORMAL:-VERS-ALL:+VERS-TLS1.2")
    t.eq(r.returncode, 0, "TLS 1.2 with ECDHE and AEAD is accepted")


@test
def test_sighup_reloads_the_certificate_without_restart(t):
    certs = CertFactory(t.tmp)
    first = certs.server(stem="first")
    live_cert, live_key = os.path.join(t.tmp, "live.pem"), os.path.join(t.tmp, "live.key")
    shutil.copy(first.cert, live_cert)
    shutil.copy(first.key, live_key)
    cp = tls_control_plane(t, certs, server=type(first)(live_cert, live_key, "live"))
    kept = client(cp, certs)
    t.eq(kept.peer_certificate(), pem_to_der(first.cert), "the first certificate is served")
    pid = cp.proc.pid

    second = certs.server(stem="second")
    shutil.copy(second.cert, live_cert)
    shutil.copy(second.key, live_key)
    cp.signal(signal.SIGHUP)
    # The reload is observed where it matters: new connections get the new certificate.
    t.wait_for(lambda: client(cp, certs).peer_certificate() == pem_to_der(second.cert), 10,
               "a new connection to present the new certificate")
    fresh = client(cp, certs)
    t.eq(fresh.peer_certificate(), pem_to_der(second.cert), "a new connection gets the new certificate")
    t.eq(cp.proc.pid, pid, "no restart")
    status, _ = kept.request("GET", "/jobs", token=ADMIN_TOKEN)
    t.eq(status, 200, "a connection made before the reload keeps working")


@test
def test_a_bad_certificate_on_reload_keeps_the_current_one(t):
    certs = CertFactory(t.tmp)
    first = certs.server(stem="first")
    live_cert, live_key = os.path.join(t.tmp, "live.pem"), os.path.join(t.tmp, "live.key")
    shutil.copy(first.cert, live_cert)
    shutil.copy(first.key, live_key)
    cp = tls_control_plane(t, certs, server=type(first)(live_cert, live_key, "live"))
    other = certs.server(stem="other")
    shutil.copy(other.cert, live_cert)  # the key no longer matches the certificate
    cp.signal(signal.SIGHUP)
    t.wait_for(lambda: "does not belong" in cp.log_text(), 10, "the mismatch to be logged")
    t.eq(client(cp, certs).peer_certificate(), pem_to_der(first.cert), "the old pair is still served")


def start_fails(t, cp):
    cp.expect_exit = True
    cp.start(wait_ready=False)
    try:
        cp.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        raise TestFailure("the daemon did not exit\n" + cp.log_tail())
    return cp.proc.returncode, cp.log_text()


@test
def test_bad_tls_settings_stop_the_start(t):
    certs = CertFactory(t.tmp)
    server, other = certs.server(stem="a"), certs.server(stem="b")
    garbage = os.path.join(t.tmp, "garbage.pem")
    with open(garbage, "w") as f:
        f.write("not a certificate\n")
    cases = [
        ({"tls-certificate": server.cert, "tls-key": other.key}, "does not belong"),
        ({"tls-certificate": garbage, "tls-key": server.key}, "tls"),
        ({"tls-certificate": server.cert}, "--tls-key"),
        ({"tls-certificate": server.cert, "tls-key": server.key, "tls-priorities": "NORMAL:+BOGUS"},
         "--tls-priorities"),
        ({"tls-certificate": server.cert, "tls-key": server.key, "tls-client-ca": garbage}, "--tls-client-ca"),
        ({"tls-bind-worker-id": "yes"}, "--tls-bind-worker-id needs"),
    ]
    for i, (opts, needle) in enumerate(cases):
        cp = t.control_plane(start=False, options=opts, name=f"bad{i}")
        rc, log = start_fails(t, cp)
        t.ok(rc != 0, f"case {i}: refuses to start")
        t.ok(needle.lower() in log.lower(), f"case {i}: the message names the problem ({needle}): {log[-300:]}")


# ---- client certificates ------------------------------------------------------------------------

@test
def test_mtls_refuses_missing_untrusted_expired_and_wrong_purpose_certificates(t):
    certs = CertFactory(t.tmp)
    rogue = CertFactory(t.tmp, "rogue")
    cp = tls_control_plane(t, certs, client_ca=certs.ca_file, options={"ui-directory": os.path.join(SRCDIR, "ui")})
    cases = {
        "no client certificate": None,
        "untrusted client certificate": rogue.client("worker-1"),
        "expired client certificate": certs.client("worker-1", expired=True),
        "client certificate not yet valid": certs.client("worker-1", not_yet_valid=True),
        "certificate not meant for client authentication": certs.client("worker-1", server_only=True),
    }
    for reason, cert in cases.items():
        c = client(cp, certs, cert)
        status, body = c.request("GET", "/jobs", token=ADMIN_TOKEN)
        t.eq(status, 401, f"{reason}: admin endpoint refused")
        t.eq((body or {}).get("error"), reason, f"{reason}: the error says why")
        status, _ = c.request("POST", "/register", {"worker_id": "worker-1"}, token=WORKER_TOKEN)
        t.eq(status, 401, f"{reason}: worker endpoint refused")
        status, _ = c.request("GET", "/healthz", token=False)
        t.eq(status, 200, f"{reason}: /healthz stays open")
        status, _ = c.request("GET", "/ui/app.js", token=False)
        t.eq(status, 401, f"{reason}: the dashboard's files refused too")

    good = client(cp, certs, certs.client("admin"))
    status, _ = good.request("GET", "/ui/app.js", token=False)
    t.eq(status, 200, "a valid certificate gets the dashboard's files, without a token")
    status, events = good.request("GET", "/events?event=request.refused&limit=100", token=ADMIN_TOKEN)
    t.eq(status, 200, "a valid certificate with the admin token opens the API")
    t.ok(any("/ui/app.js" in e["details"].get("reason", "") for e in events), "a refused dashboard file is audited")
    reasons = " ".join(e["details"].get("reason", "") for e in events)
    for reason in cases:
        t.ok(reason in reasons, f"the refusal '{reason}' is audited")
    t.ok(all(e["details"].get("from", "").startswith("127.0.0.1:") for e in events), "audited with the address")
    t.ok(WORKER_TOKEN not in json.dumps(events) and ADMIN_TOKEN not in json.dumps(events), "no token audited")


@test
def test_mtls_valid_certificate_still_needs_the_token(t):
    certs = CertFactory(t.tmp)
    cp = tls_control_plane(t, certs, client_ca=certs.ca_file)
    c = client(cp, certs, certs.client("worker-1"))
    status, _ = c.request("POST", "/register", {"worker_id": "worker-1"}, token=WORKER_TOKEN)
    t.eq(status, 200, "certificate + worker token: registered")
    status, _ = c.request("POST", "/register", {"worker_id": "worker-1"}, token=False)
    t.eq(status, 401, "certificate without a token: refused")
    status, _ = c.request("GET", "/jobs", token=WORKER_TOKEN)
    t.eq(status, 401, "certificate + the other role's token: refused")


@test
def test_bound_worker_certificate_cannot_speak_for_another_worker(t):
    certs = CertFactory(t.tmp)
    cp = tls_control_plane(t, certs, client_ca=certs.ca_file, bind=True)
    w1 = client(cp, certs, certs.client("worker-1"))
    w2 = client(cp, certs, certs.client("worker-2"))
    admin = client(cp, certs, certs.client("admin"))
    for c, wid in ((w1, "worker-1"), (w2, "worker-2")):
        status, body = c.request("POST", "/register", {"worker_id": wid, "capabilities": []}, token=WORKER_TOKEN)
        t.eq(status, 200, f"{wid} registers with its own certificate: {body}")

    status, body = w1.request("POST", "/register", {"worker_id": "worker-2"}, token=WORKER_TOKEN)
    t.eq(status, 403, f"register as another worker: {body}")
    status, _ = w1.request("GET", "/next-job?worker_id=worker-2", token=WORKER_TOKEN)
    t.eq(status, 403, "poll for another worker")
    status, _ = w1.request("POST", "/heartbeat", {"worker_id": "worker-2", "seq": 1}, token=WORKER_TOKEN)
    t.eq(status, 403, "heartbeat for another worker")
    status, _ = w1.request("POST", "/reconnect", {
        "worker_id": "worker-1",
        "completed_jobs": [{"job_id": "x", "worker_id": "worker-2", "assignment_id": "y", "status": "FAILED",
                            "exit_code": 1, "error": "e"}]}, token=WORKER_TOKEN)
    t.eq(status, 403, "a replayed record of another worker inside a reconnect")
    status, _ = w1.request("POST", "/ack", b"{not json", token=WORKER_TOKEN)
    t.eq(status, 400, "a body the binding cannot read is refused")

    # The right worker still works end to end.
    job = cp.http.request("POST", "/jobs", {"command": "true"}, token=ADMIN_TOKEN)
    t.eq(job[0], 401, "no certificate, no admin API either")
    status, body = admin.request("POST", "/jobs", {"command": "true"}, token=ADMIN_TOKEN)
    t.eq(status, 201, "submitted with the admin certificate")
    status, claim = w1.request("GET", "/next-job?worker_id=worker-1", token=WORKER_TOKEN)
    t.eq(status, 200, "worker-1 polls for itself")
    if status == 200:
        status, _ = w2.request("POST", "/ack", {"job_id": claim["job_id"], "worker_id": "worker-1",
                                                "assignment_id": claim["assignment_id"]}, token=WORKER_TOKEN)
        t.eq(status, 403, "worker-2 cannot ack worker-1's assignment")
        status, _ = w1.request("POST", "/ack", {"job_id": claim["job_id"], "worker_id": "worker-1",
                                                "assignment_id": claim["assignment_id"]}, token=WORKER_TOKEN)
        t.eq(status, 200, "worker-1 acks its own assignment")

    status, events = admin.request("GET", "/events?event=request.refused&limit=50", token=ADMIN_TOKEN)
    mism = [e for e in events if "not named by the client certificate" in e["details"].get("reason", "")]
    t.ok(len(mism) >= 5, f"each mismatch is audited ({len(mism)})")
    who = [e["details"].get("who") for e in mism]
    t.eq(who.count("worker-2"), 1, f"the ack refusal names worker-2's certificate: {who}")
    t.eq(who.count("worker-1"), len(who) - 1, f"the others name worker-1's certificate: {who}")


@test
def test_bound_worker_id_may_come_from_a_san(t):
    certs = CertFactory(t.tmp)
    cp = tls_control_plane(t, certs, client_ca=certs.ca_file, bind=True)
    c = client(cp, certs, certs.client("gpu-host-7.lan", sans=["worker-7", "worker-8"]))
    for wid in ("gpu-host-7.lan", "worker-7", "worker-8"):
        status, _ = c.request("POST", "/register", {"worker_id": wid}, token=WORKER_TOKEN)
        t.eq(status, 200, f"the certificate's name {wid} is accepted")
    status, _ = c.request("POST", "/register", {"worker_id": "worker-9"}, token=WORKER_TOKEN)
    t.eq(status, 403, "a name the certificate does not hold is refused")


def probe(t, cp, ca, cert=None, token=None, worker_id=None, signed=False, post=None, path="/register"):
    """One request through common/http-tls-client.h (libcurl with GnuTLS, as the worker and
    entropyctl use it); returns (status or None, output)."""
    argv = [os.path.join(BUILDDIR, "tests", "integration", "https-probe"), f"https://localhost:{cp.port}{path}", ca]
    if cert:
        argv += [cert.cert, cert.key]
    if token:
        argv += ["--token", token]
    if worker_id:
        argv += ["--worker-id", worker_id]
    if signed:
        argv.append("--signed")
    if post is not None:
        argv += ["--post", json.dumps(post)]
    r = t.run_cmd(argv)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        return None, r.stdout + r.stderr
    return int(lines[-1]), "\n".join(lines[:-1])


@test
def test_the_worker_client_helpers_speak_mtls_with_signed_tokens(t):
    certs = CertFactory(t.tmp)
    cp = tls_control_plane(t, certs, client_ca=certs.ca_file, bind=True,
                           options={"require-signed-worker-tokens": "yes"})
    w1 = certs.client("worker-1")
    status, out = probe(t, cp, certs.ca_file, w1, WORKER_TOKEN, "worker-1", True, {"worker_id": "worker-1"})
    t.eq(status, 200, f"certificate + signed token for worker-1: {out}")
    status, out = probe(t, cp, certs.ca_file, w1, WORKER_TOKEN, "worker-1", False, {"worker_id": "worker-1"})
    t.eq(status, 401, f"the plain token is refused when signed ones are required: {out}")
    status, out = probe(t, cp, certs.ca_file, w1, WORKER_TOKEN, "worker-2", True, {"worker_id": "worker-2"})
    t.eq(status, 403, f"worker-1's certificate with a token for worker-2: {out}")
    status, out = probe(t, cp, certs.ca_file, None, WORKER_TOKEN, "worker-1", True, {"worker_id": "worker-1"})
    t.eq(status, 401, f"no certificate: {out}")
    rogue = CertFactory(t.tmp, "rogue")
    status, out = probe(t, cp, rogue.ca_file, w1, WORKER_TOKEN, "worker-1", True, {"worker_id": "worker-1"})
    t.eq(status, None, f"a server the CA does not vouch for is not talked to: {out}")
    status, out = probe(t, cp, certs.ca_file, rogue.client("worker-1"), WORKER_TOKEN, "worker-1", True,
                        {"worker_id": "worker-1"})
    t.eq(status, 401, f"a certificate from another CA: {out}")


if __name__ == "__main__":
    require_certtool()
    run()
