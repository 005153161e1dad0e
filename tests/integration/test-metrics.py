#!/usr/bin/env python3
"""test-metrics: GET /metrics on a live control plane, judged by `promtool check metrics`
(Debian's prometheus package), and the series the operators' dashboards rely on: jobs and
workers by state, the counters, claim latency and run-time histograms that move when jobs are
claimed and completed, and the windowed completion and failure rates. Only the promtool check
needs promtool: without it that test is skipped (not root) or fails (root, as in CI).
"""

import re
import subprocess

from entropy_test import TIME_SCALE, TestFailure, run, test


def scrape(cp):
    status, body = cp.admin("GET", "/metrics")
    if status != 200 or not isinstance(body, str):
        raise TestFailure(f"GET /metrics: {status} {body!r}")
    return body


def sample(text, series):
    """The value of one series (name with its labels, exactly as exposed), or None."""
    m = re.search(r"^" + re.escape(series) + r" ([0-9.eE+-]+|NaN|[+-]Inf)$", text, re.M)
    return float(m.group(1)) if m else None


def promtool_check(t, promtool, text, what):
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=30 * TIME_SCALE)
    t.ok(p.returncode == 0, f"promtool check metrics on {what}: {p.stdout}{p.stderr}")


def run_job(cp, worker_id, fail=False):
    job_id = cp.submit("true", max_attempts=1)
    status, claim = cp.worker("GET", f"/next-job?worker_id={worker_id}")
    if status != 200:
        raise TestFailure(f"claim: {status} {claim}")
    triple = {"job_id": claim["job_id"], "worker_id": worker_id, "assignment_id": claim["assignment_id"]}
    status, body = cp.worker("POST", "/ack", triple)
    if status != 200:
        raise TestFailure(f"ack: {status} {body}")
    if fail:
        status, body = cp.worker("POST", "/fail", dict(triple, exit_code=1, error="simulated failure"))
    else:
        status, body = cp.worker("POST", "/complete", dict(triple, completion_seq=1, exit_code=0))
    if status != 200:
        raise TestFailure(f"finish: {status} {body}")
    return job_id


def busy(t, cp):
    """One job completed and one failed by w1, and a claim that found nothing; the scrape after."""
    status, _ = cp.worker("POST", "/register", {"worker_id": "w1"})
    t.require(status == 200, "register w1")
    run_job(cp, "w1")
    run_job(cp, "w1", fail=True)
    cp.worker("GET", "/next-job?worker_id=w1")  # nothing eligible: still a claim attempt
    return scrape(cp)


@test
def test_live_scrape_passes_promtool(t):
    promtool = t.require_tool("promtool", "prometheus")
    cp = t.control_plane()
    promtool_check(t, promtool, scrape(cp), "an empty control plane")
    promtool_check(t, promtool, busy(t, cp), "a control plane that ran jobs")


@test
def test_series_move_with_claims_and_runs(t):
    cp = t.control_plane()
    text = busy(t, cp)
    t.eq(sample(text, 'entropy_jobs{state="COMPLETED"}'), 1.0, "one job COMPLETED")
    t.eq(sample(text, 'entropy_jobs{state="FAILED"}'), 1.0, "one job FAILED")
    t.ok((sample(text, 'entropy_workers{state="ONLINE"}') or 0) + (sample(text, 'entropy_workers{state="DISCONNECTED"}') or 0) >= 1,
         "the worker is counted")
    t.eq(sample(text, "entropy_claim_latency_seconds_count"), 3.0, "three claim attempts observed")
    t.eq(sample(text, 'entropy_claim_latency_seconds_bucket{le="+Inf"}'), 3.0, "+Inf bucket holds them all")
    t.eq(sample(text, "entropy_job_queue_wait_seconds_count"), 2.0, "two jobs claimed: two queue waits")
    t.eq(sample(text, 'entropy_job_run_seconds_count{outcome="completed"}'), 1.0, "one completed run time")
    t.eq(sample(text, 'entropy_job_run_seconds_count{outcome="failed"}'), 1.0, "one failed run time")
    t.ok((sample(text, 'entropy_job_completions_per_second{window="1m"}') or 0) > 0, "completion rate over 1m")
    t.ok((sample(text, 'entropy_job_failures_per_second{window="5m"}') or 0) > 0, "failure rate over 5m")
    t.ok(sample(text, "entropy_database_size_bytes") is not None, "database size")
    t.ok(sample(text, "entropy_event_stream_subscribers") is not None, "event stream subscribers")
    for name in ("entropy_claim_latency_seconds", "entropy_job_run_seconds", "entropy_job_queue_wait_seconds"):
        t.ok(f"# TYPE {name} histogram" in text, f"{name} is typed histogram")


@test
def test_a_refused_request_is_counted_once(t):
    cp = t.control_plane()
    before = sample(scrape(cp), "entropy_requests_refused_total")
    status, _ = cp.admin("GET", "/jobs", token="not-the-admin-token-0123456789")
    t.eq(status, 401, "a wrong token is refused")
    t.wait_for(lambda: cp.events(event="request.refused"), what="the refusal's audit event")
    t.eq(sample(scrape(cp), "entropy_requests_refused_total"), before + 1, "counted once, not once more for its event")


if __name__ == "__main__":
    run()
