#!/usr/bin/env python3
"""Signed worker tokens on entropy-control: esig1:<worker_id>:<expires_ms>:<nonce>:<hmac>, HMAC-SHA256
keyed with the worker token. The tokens here are made by an independent Python implementation of
the format, so that the daemon accepting them also cross-checks common/signed-token.c. Every
refusal: expired (beyond the clock-skew tolerance), too long-lived, bad signature, made with the
wrong key, made for another worker, used on an admin endpoint, made with a rotated-out token; and
--require-signed-worker-tokens refusing the plain worker token."""

import os
import signal
import time

from entropy_test import ADMIN_TOKEN, WORKER_TOKEN, run, test
from signed_token import make_token
from worker_harness import WorkerProcess


def register(cp, worker_id, token):
    return cp.http.request("POST", "/register", {"worker_id": worker_id, "capabilities": []}, token=token)


@test
def test_signed_token_opens_the_worker_endpoints_for_its_worker(t):
    cp = t.control_plane()
    tok = make_token(WORKER_TOKEN, "worker-1")
    status, body = register(cp, "worker-1", tok)
    t.eq(status, 200, f"register with a signed token: {body}")
    job = cp.submit("true")
    status, claim = cp.http.request("GET", "/next-job?worker_id=worker-1", token=tok)
    t.eq(status, 200, "poll with a signed token")
    t.eq((claim or {}).get("job_id"), job, "the job is handed out")
    status, _ = cp.http.request("POST", "/ack", {"job_id": job, "worker_id": "worker-1",
                                                 "assignment_id": claim["assignment_id"]}, token=tok)
    t.eq(status, 200, "ack with a signed token")
    status, body = cp.http.request("POST", "/complete", {
        "job_id": job, "worker_id": "worker-1", "assignment_id": claim["assignment_id"], "completion_seq": 1,
        "exit_code": 0}, token=tok)
    t.eq(status, 200, f"complete with a signed token: {body}")
    t.eq(cp.job(job)["status"], "COMPLETED", "the job completed")


@test
def test_a_worker_whose_id_is_utf8_with_colons_runs_jobs_with_signed_tokens(t):
    """Any id /register takes goes in a signed token: UTF-8 travels as it is in the header, and
    the fields are read from the right, so colons in the id are fine. entropy-worker with such an
    id and --signed-tokens registers, and its job completes."""
    cp = t.control_plane()
    wid = "gr\u00fcn:rack-1:\u26a1"
    w = WorkerProcess(t, cp, "w1", worker_id=wid, options={"signed-tokens": "yes"}).start()
    job = cp.submit("true")
    t.eq(cp.wait_job_state(job, ["COMPLETED", "FAILED"])["status"], "COMPLETED", "its job completes")
    t.eq(cp.job(job)["worker_id"], wid, "run by that worker")
    t.ok("esig1:" not in w.log_text(), "the worker logged no token")


@test
def test_signed_token_for_another_worker_is_403(t):
    cp = t.control_plane()
    register(cp, "worker-2", WORKER_TOKEN)
    tok = make_token(WORKER_TOKEN, "worker-1")
    status, body = register(cp, "worker-2", tok)
    t.eq(status, 403, f"register as another worker: {body}")
    status, _ = cp.http.request("GET", "/next-job?worker_id=worker-2", token=tok)
    t.eq(status, 403, "poll as another worker")
    status, _ = cp.http.request("POST", "/heartbeat", {"worker_id": "worker-2", "seq": 5}, token=tok)
    t.eq(status, 403, "heartbeat as another worker")
    status, _ = cp.http.request("POST", "/reconnect", {
        "worker_id": "worker-1",
        "completed_jobs": [{"job_id": "j", "worker_id": "worker-2", "assignment_id": "a", "status": "FAILED",
                            "exit_code": 1, "error": "x"}]}, token=tok)
    t.eq(status, 403, "replay another worker's record")
    ev = cp.events(event="request.refused")
    t.ok(sum("signed token was made for" in e["details"].get("reason", "") for e in ev) >= 4,
         "each refusal is audited")
    t.ok(all(e["details"].get("who") == "worker-1" for e in ev), "audited as the worker the token names")


@test
def test_refused_signed_tokens_get_401(t):
    cp = t.control_plane()
    now_ms = int(time.time() * 1000)
    cases = {
        "expired": make_token(WORKER_TOKEN, "w", expires_ms=now_ms - 120_000),
        "too long-lived": make_token(WORKER_TOKEN, "w", lifetime=3600),
        "bad signature": make_token(WORKER_TOKEN, "w")[:-4] + "0000",
        "made with the admin token": make_token(ADMIN_TOKEN, "w"),
        "made with an unknown key": make_token("some-other-key-0123456789", "w"),
        "malformed": "esig1:w:notanumber:abcdef0123456789:" + "0" * 64,
        "extra field": make_token(WORKER_TOKEN, "w") + ":00",
        "a worker id /register would refuse": make_token(WORKER_TOKEN, "w x"),
        "short nonce": make_token(WORKER_TOKEN, "w", nonce="ab"),
    }
    for name, tok in cases.items():
        status, body = register(cp, "w", tok)
        t.eq(status, 401, f"{name}: refused")
        t.ok("error" in (body or {}), f"{name}: JSON error")
    status, _ = register(cp, "w", make_token(WORKER_TOKEN, "w"))
    t.eq(status, 200, "a good one still works")


@test
def test_expiry_is_checked_with_the_clock_skew_tolerance(t):
    cp = t.control_plane(options={"token-clock-skew": "30s", "signed-token-max-lifetime": "1min"})
    now_ms = int(time.time() * 1000)
    status, _ = register(cp, "w", make_token(WORKER_TOKEN, "w", expires_ms=now_ms - 10_000))
    t.eq(status, 200, "expired 10s ago, within the 30s tolerance: accepted")
    status, _ = register(cp, "w", make_token(WORKER_TOKEN, "w", expires_ms=now_ms - 60_000))
    t.eq(status, 401, "expired 60s ago: refused")
    status, _ = register(cp, "w", make_token(WORKER_TOKEN, "w", lifetime=80))
    t.eq(status, 200, "lifetime 80s, within 1min + 30s: accepted")
    status, _ = register(cp, "w", make_token(WORKER_TOKEN, "w", lifetime=150))
    t.eq(status, 401, "lifetime 150s: refused")


@test
def test_signed_token_never_opens_admin_endpoints(t):
    cp = t.control_plane()
    tok = make_token(WORKER_TOKEN, "w")
    for method, path in (("GET", "/jobs"), ("POST", "/jobs"), ("GET", "/workers"), ("GET", "/events"),
                         ("GET", "/metrics"), ("POST", "/abort")):
        status, _ = cp.http.request(method, path, {} if method == "POST" else None, token=tok)
        t.eq(status, 401, f"{method} {path} with a signed worker token")
    status, _ = cp.http.request("GET", "/jobs", token=make_token(ADMIN_TOKEN, "w"))
    t.eq(status, 401, "a token signed with the admin token is not an admin token")


@test
def test_signed_tokens_follow_rotation(t):
    cp = t.control_plane()
    old_tok = make_token(WORKER_TOKEN, "w")
    new_key = "worker-token-rotated-0123456789"
    prev = os.path.join(cp.state_dir, "worker-token-previous")
    with open(prev, "w") as f:
        f.write(WORKER_TOKEN + "\n")
    with open(cp.worker_token_file, "w") as f:
        f.write(new_key + "\n")
    cp.stop()
    cp.argv.append(f"--worker-token-previous-file={prev}")
    cp.restart()
    t.eq(register(cp, "w", old_tok)[0], 200, "signed with the previous token: accepted during rotation")
    t.eq(register(cp, "w", make_token(new_key, "w"))[0], 200, "signed with the new token: accepted")
    with open(prev, "w") as f:
        f.write("worker-token-retired-slot-0123456789\n")
    cp.signal(signal.SIGHUP)
    cp.wait_notify("READY=1")
    t.eq(register(cp, "w", old_tok)[0], 401, "signed with the rotated-out token: refused after SIGHUP")
    t.eq(register(cp, "w", WORKER_TOKEN)[0], 401, "the rotated-out plain token: refused")
    t.eq(register(cp, "w", make_token(new_key, "w"))[0], 200, "the new one still works")


@test
def test_require_signed_worker_tokens_refuses_the_plain_token(t):
    cp = t.control_plane(options={"require-signed-worker-tokens": "yes"})
    status, body = register(cp, "w", WORKER_TOKEN)
    t.eq(status, 401, f"plain worker token refused: {body}")
    t.ok("signed" in (body or {}).get("error", ""), "the error says signed tokens are required")
    t.eq(register(cp, "w", make_token(WORKER_TOKEN, "w"))[0], 200, "a signed token is accepted")
    status, _ = cp.admin("GET", "/jobs")
    t.eq(status, 200, "the admin token is unaffected")


if __name__ == "__main__":
    run()
