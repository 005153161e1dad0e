#!/usr/bin/env python3
"""The real entropy-worker against an HTTPS control plane: it verifies the server against
--ca-file and runs a job to COMPLETED; under mutual TLS with --tls-bind-worker-id and
--require-signed-worker-tokens it presents its own client certificate (CN = its worker id) and
signed tokens, renewed as they age; a worker holding another worker's certificate is refused (403)
and never gets a job; a worker that cannot verify the server (no --ca-file, or another CA) does
not talk to it at all. Certificates are made at test time (tls_certs.py, certtool)."""

from entropy_test import run, test
from tls_certs import CertFactory, TlsHttp, require_certtool
from worker_harness import WorkerProcess


def tls_control_plane(t, certs, mtls=False, options=None):
    """entropy-control over HTTPS (mTLS with worker id binding and required signed tokens when
    mtls); its admin client verifies it and, under mTLS, presents an admin certificate."""
    server = certs.server()
    opts = {"tls-certificate": server.cert, "tls-key": server.key}
    if mtls:
        opts.update({"tls-client-ca": certs.ca_file, "tls-bind-worker-id": "yes",
                     "require-signed-worker-tokens": "yes"})
    opts.update(options or {})
    cp = t.control_plane(options=opts)
    cp.http = TlsHttp("127.0.0.1", cp.port, certs.ca_file, cert=certs.client("admin") if mtls else None)
    return cp


def tls_worker(t, cp, name, ca_file=None, cert=None, signed=False, options=None):
    # "localhost": the name the test server certificate holds, so host name checks are real.
    opts = {"control-url": f"https://localhost:{cp.port}", "ca-file": ca_file}
    if cert is not None:
        opts.update({"tls-certificate": cert.cert, "tls-key": cert.key})
    if signed:
        opts["signed-tokens"] = "yes"
    opts.update(options or {})
    return WorkerProcess(t, cp, name, options=opts).start()


def refusals(cp, text):
    return [e for e in cp.events(event="request.refused", limit=200) if text in e["details"].get("reason", "")]


def events_of(cp, job_id):
    return [e["event"] for e in cp.events(job_id=job_id)]


@test
def test_worker_runs_a_job_over_https_verifying_the_server(t):
    certs = CertFactory(t.tmp)
    cp = tls_control_plane(t, certs)
    tls_worker(t, cp, "w-https", ca_file=certs.ca_file)
    job = cp.submit("sh", args=["-c", "echo over-https"])
    done = cp.wait_job_state(job, "COMPLETED", timeout=20)
    t.eq(done["worker_id"], "w-https", "run by the HTTPS worker")
    t.eq(done["exit_code"], 0, "exit code reported")


@test
def test_worker_runs_a_job_over_mtls_with_its_certificate_and_signed_tokens(t):
    certs = CertFactory(t.tmp)
    cp = tls_control_plane(t, certs, mtls=True)
    # 2s tokens are renewed every second: the 3s job outlives several of them.
    w = tls_worker(t, cp, "w-mtls", ca_file=certs.ca_file, cert=certs.client("w-mtls"), signed=True,
                   options={"signed-token-lifetime": "2s"})
    job = cp.submit("sleep", args=["3"])
    done = cp.wait_job_state(job, "COMPLETED", timeout=30)
    t.eq(done["worker_id"], "w-mtls", "run by the mTLS worker")
    t.eq(refusals(cp, ""), [], "no request of the worker was refused")
    status, workers = cp.admin("GET", "/workers")
    t.eq([x["worker_id"] for x in workers or []], ["w-mtls"], "registered under its certificate's name")
    t.ok(w.running(), "the worker is still running")
    made = w.log_text().count("Signed a new worker token")
    t.ok(2 <= made <= 20, f"signed tokens are reused for half their lifetime, then renewed ({made} made)")


@test
def test_worker_with_another_workers_certificate_is_refused_and_gets_no_job(t):
    certs = CertFactory(t.tmp)
    cp = tls_control_plane(t, certs, mtls=True)
    job = cp.submit("true")
    w = tls_worker(t, cp, "w-thief", ca_file=certs.ca_file, cert=certs.client("w-owner"), signed=True)
    t.wait_for(lambda: refusals(cp, "not named by the client certificate"), 20,
               "the thief's registration to be refused")
    # A few more attempts (its backoff is short): none of them may get through.
    t.wait_for(lambda: len(refusals(cp, "not named by the client certificate")) >= 3, 20, "repeated refusals")
    refused = refusals(cp, "not named by the client certificate")
    t.ok(all(e["details"].get("who") == "w-owner" for e in refused), "audited under the certificate's name")
    w.wait_log("HTTP 403")
    t.eq(cp.job(job)["status"], "PENDING", "the job was never handed out")
    t.eq(events_of(cp, job), ["job.submitted"], "nothing happened to the job but its submission")
    status, workers = cp.admin("GET", "/workers")
    t.eq(workers, [], "the thief never registered")


def assert_never_talks(t, cp, w, job):
    """The worker's TLS handshake fails: it logs it, and the control plane never sees a request."""
    w.wait_log("certificate", timeout=20)
    t.wait_for(lambda: w.log_text().count("certificate") >= 2, 20, "a second failed attempt")
    t.eq(cp.job(job)["status"], "PENDING", "no job claimed")
    status, workers = cp.admin("GET", "/workers")
    t.eq(workers, [], "never registered")
    t.eq(refusals(cp, ""), [], "not even a refused request: nothing reached the API")
    t.ok(w.running(), "the worker keeps trying (with backoff) rather than exiting")


@test
def test_worker_without_the_ca_does_not_talk_to_the_server(t):
    certs = CertFactory(t.tmp)
    cp = tls_control_plane(t, certs)
    job = cp.submit("true")
    w = tls_worker(t, cp, "w-noca")
    assert_never_talks(t, cp, w, job)


@test
def test_worker_with_another_ca_does_not_talk_to_the_server(t):
    certs = CertFactory(t.tmp)
    rogue = CertFactory(t.tmp, "rogue")
    cp = tls_control_plane(t, certs)
    job = cp.submit("true")
    w = tls_worker(t, cp, "w-rogueca", ca_file=rogue.ca_file)
    assert_never_talks(t, cp, w, job)


@test
def test_worker_refuses_a_certificate_without_its_key(t):
    certs = CertFactory(t.tmp)
    cp = tls_control_plane(t, certs)
    cert = certs.client("w-half")
    w = WorkerProcess(t, cp, "w-half", options={"control-url": f"https://localhost:{cp.port}",
                                                 "ca-file": certs.ca_file, "tls-certificate": cert.cert})
    w.expect_exit = True
    w.start(wait_ready=False)
    t.wait_for(lambda: w.proc.poll() is not None, 10, "the worker to exit")
    t.ok(w.proc.returncode != 0, "it refuses to start")
    t.ok("--tls-key" in w.log_text(), "and says why")


if __name__ == "__main__":
    require_certtool()
    run()
