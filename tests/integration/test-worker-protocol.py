#!/usr/bin/env python3
"""The worker protocol of entropy-control over HTTP, as a worker sees it: register, poll, ack,
heartbeat, complete, fail, reconnect; duplicate and stale completions; an ack that never comes;
a worker that loses power, through LOST and RETRYING to a second worker within the documented
bound; retries exhausted; abort; paging through the audit events."""

import time

from entropy_test import FAST_CONTROL, TestFailure, run, span, test

SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


LEASE = span(FAST_CONTROL["lease-timeout"])
HEARTBEAT_TIMEOUT = span(FAST_CONTROL["heartbeat-timeout"])
TICK = span(FAST_CONTROL["reconcile-interval"])
BACKOFF = span(FAST_CONTROL["retry-backoff"])
JITTER = 0.2  # entropy-control's default retry-jitter
SLACK = 0.5   # scheduling and HTTP round trips on a loaded test machine


def register(cp, worker_id, **extra):
    body = {"worker_id": worker_id, "capabilities": []}
    body.update(extra)
    status, answer = cp.worker("POST", "/register", body)
    if status != 200:
        raise TestFailure(f"register {worker_id}: {status} {answer}")
    return answer


def claim(cp, worker_id):
    status, body = cp.worker("GET", f"/next-job?worker_id={worker_id}")
    if status not in (200, 204):
        raise TestFailure(f"next-job for {worker_id}: {status} {body}")
    return body if status == 200 else None


def ack(cp, job, worker_id):
    return cp.worker("POST", "/ack", {"job_id": job["job_id"], "worker_id": worker_id,
                                      "assignment_id": job["assignment_id"]})


def completion(job, worker_id, **extra):
    c = {"job_id": job["job_id"], "worker_id": worker_id, "assignment_id": job["assignment_id"],
         "completion_seq": 1, "exit_code": 0, "result_summary": "done",
         "stdout_path": "/var/lib/entropy-worker/out/stdout", "stdout_tmp_path": "/var/lib/entropy-worker/out/stdout.tmp",
         "stderr_path": "/var/lib/entropy-worker/out/stderr", "stderr_tmp_path": "/var/lib/entropy-worker/out/stderr.tmp",
         "stdout_sha256": SHA, "stderr_sha256": SHA, "artifact_backend": "local",
         "artifact_upload_state": "none"}
    c.update(extra)
    return c


@test
def test_whole_worker_protocol(t):
    cp = t.control_plane()
    register(cp, "w1", nonce="n1", instance_id="i1")
    job_id = cp.submit("/bin/echo", args=["hi"], priority=3)
    job = claim(cp, "w1")
    t.require(job and job["job_id"] == job_id, "the job is handed out")
    for field in ("command", "args", "working_dir", "timeout_ms", "attempt_count", "max_attempts",
                  "assignment_id", "assignment_expires_at"):
        t.ok(field in job, f"/next-job answers {field}")
    t.eq(cp.job(job_id)["status"], "ASSIGNED", "ASSIGNED after the claim")
    t.eq(ack(cp, job, "w1")[0], 200, "ack: 200")
    t.eq(cp.job(job_id)["status"], "RUNNING", "RUNNING after the ack")
    s, _ = cp.worker("POST", "/heartbeat", {"worker_id": "w1", "current_job_id": job_id, "seq": 1,
                                            "metrics": {"load": 0.5}})
    t.eq(s, 200, "heartbeat: 200")
    t.eq(_.get("cancel_jobs"), [], "nothing to cancel while the job is the worker's")
    held = cp.job(job_id)
    t.ok("heartbeat_age_sec" in held, "a held job shows its worker's heartbeat age")
    s, body = cp.worker("POST", "/complete", completion(job, "w1"))
    t.eq((s, body), (200, {"status": "COMPLETED", "job_id": job_id}), "complete: 200 COMPLETED")
    done = cp.job(job_id)
    t.eq(done["status"], "COMPLETED", "COMPLETED")
    t.eq(done["stdout_sha256"], SHA, "SHA-256 of stdout stored")
    t.eq(done["exit_code"], 0, "exit code stored")
    t.eq(claim(cp, "w1"), None, "nothing left: 204")
    names = [e["event"] for e in reversed(cp.events(job_id=job_id))]
    t.eq(names, ["job.submitted", "job.assigned", "job.running", "job.completed"], "each step audited, in order")
    s, workers = cp.admin("GET", "/workers")
    w = [x for x in workers if x["worker_id"] == "w1"]
    t.ok(w and w[0]["status"] == "ONLINE" and w[0].get("heartbeat_metrics") == {"load": 0.5},
         "the worker is ONLINE with its metrics")


@test
def test_duplicate_and_stale_completions(t):
    cp = t.control_plane()
    register(cp, "w1")
    register(cp, "w2")
    job_id = cp.submit("true")
    first = claim(cp, "w1")
    # w1 never acks: the lease expires, the job goes back to PENDING and w2 gets it.
    t.wait_for(lambda: cp.job(job_id)["status"] == "PENDING", LEASE + 2, "ack expiry")
    second = claim(cp, "w2")
    t.require(second and second["job_id"] == job_id, "w2 gets the job")
    t.ok(second["assignment_id"] != first["assignment_id"], "with a new assignment")
    t.eq(ack(cp, second, "w2")[0], 200, "w2 acks")
    s, body = cp.worker("POST", "/complete", completion(first, "w1"))
    t.eq(s, 409, "completion with the superseded assignment: 409")
    t.ok("error" in (body or {}), "with an error")
    t.ok(any(e["event"] == "job.assignment_stale" for e in cp.events(job_id=job_id)), "the refusal is audited")
    t.eq(cp.job(job_id)["status"], "RUNNING", "and nothing was applied")
    s, body = cp.worker("POST", "/complete", completion(second, "w2"))
    t.eq((s, body["status"]), (200, "COMPLETED"), "the current assignment completes")
    s, body = cp.worker("POST", "/complete", completion(second, "w2", result_summary="again"))
    t.eq((s, body["status"]), (200, "COMPLETED"), "a repeat is a no-op 200")
    t.eq(cp.job(job_id)["result_summary"], "done", "and changed nothing")
    t.eq(len(cp.events(job_id=job_id, event="job.completed")), 1, "completed exactly once")
    s, _ = cp.worker("POST", "/complete", completion(second, "w2", stdout_tmp_path="/elsewhere.tmp"))
    t.eq(s, 400, "a completion breaking the artifact contract: 400")


@test
def test_ack_expiry_returns_job_to_pending(t):
    cp = t.control_plane()
    register(cp, "w1")
    job_id = cp.submit("true")
    job = claim(cp, "w1")
    claimed = time.monotonic()
    t.wait_for(lambda: cp.job(job_id)["status"] == "PENDING", LEASE + 2, "the job to return to PENDING")
    elapsed = time.monotonic() - claimed
    t.ok(elapsed >= LEASE - 0.05, f"not before the lease expired ({elapsed:.2f}s)")
    t.ok(elapsed <= LEASE + TICK + SLACK, f"not later than expiry + one tick ({elapsed:.2f}s)")
    t.eq(cp.job(job_id)["attempt_count"], 0, "the unacknowledged attempt is given back")
    t.eq(ack(cp, job, "w1")[0], 409, "the late ack: 409")


@test
def test_worker_power_loss_requeues_to_second_worker_within_bound(t):
    cp = t.control_plane()
    register(cp, "w1")
    register(cp, "w2")
    job_id = cp.submit("sleep 100")
    job = claim(cp, "w1")
    t.eq(ack(cp, job, "w1")[0], 200, "w1 runs the job")
    cp.worker("POST", "/heartbeat", {"worker_id": "w1", "current_job_id": job_id, "seq": 1})
    last_heartbeat = time.monotonic()
    # w1 loses power now. w2 keeps heartbeating and polls.
    bound = HEARTBEAT_TIMEOUT + TICK + BACKOFF * (1 + JITTER)
    seq, got = 0, None
    while time.monotonic() - last_heartbeat < bound + 3:
        seq += 1
        cp.worker("POST", "/heartbeat", {"worker_id": "w2", "current_job_id": None, "seq": seq})
        got = claim(cp, "w2")
        if got:
            break
        time.sleep(0.02)
    elapsed = time.monotonic() - last_heartbeat
    t.require(got and got["job_id"] == job_id, "the job reached w2")
    t.ok(elapsed <= bound + SLACK, f"within heartbeat timeout + tick + backoff ({elapsed:.2f}s, bound {bound:.2f}s)")
    names = [e["event"] for e in cp.events(job_id=job_id)]
    for ev in ("job.lost", "job.retrying", "job.requeued"):
        t.ok(ev in names, f"{ev} audited")
    t.eq(got["attempt_count"], 2, "the second attempt")
    t.wait_for(lambda: any(w["worker_id"] == "w1" and w["status"] == "OFFLINE"
                           for w in cp.admin("GET", "/workers")[1]), 5, "w1 to be OFFLINE")
    s, body = cp.worker("POST", "/complete", completion(job, "w1"))
    t.eq(s, 409, "w1's late completion of the superseded assignment: 409")


@test
def test_retries_exhausted(t):
    cp = t.control_plane()
    register(cp, "w1")
    job_id = cp.submit("false", max_attempts=2)
    job = claim(cp, "w1")
    ack(cp, job, "w1")
    fail = {"job_id": job_id, "worker_id": "w1", "assignment_id": job["assignment_id"], "exit_code": 1,
            "error": "exit status 1"}
    s, body = cp.worker("POST", "/fail", fail)
    t.eq((s, body["status"]), (200, "RETRYING"), "first failure: RETRYING")
    s, body = cp.worker("POST", "/fail", fail)
    t.eq((s, body["status"]), (200, "RETRYING"), "the same failure again: no-op, still RETRYING")
    t.wait_for(lambda: cp.job(job_id)["status"] == "PENDING", 5, "the backoff to elapse")
    job = claim(cp, "w1")
    t.require(job is not None, "second attempt handed out")
    ack(cp, job, "w1")
    fail["assignment_id"] = job["assignment_id"]
    s, body = cp.worker("POST", "/fail", fail)
    t.eq((s, body["status"]), (200, "FAILED"), "second failure: FAILED, the state it is really in")
    final = cp.job(job_id)
    t.eq((final["status"], final["attempt_count"], final["last_error"]), ("FAILED", 2, "exit status 1"),
         "FAILED after 2 attempts with the error kept")
    s, body = cp.worker("POST", "/fail", fail)
    t.eq((s, body["status"]), (200, "FAILED"), "a failure of a terminal job: no-op 200")


@test
def test_abort(t):
    cp = t.control_plane()
    register(cp, "w1")
    job_id = cp.submit("sleep 100")
    job = claim(cp, "w1")
    ack(cp, job, "w1")
    s, body = cp.admin("POST", "/abort", {"job_id": job_id, "reason": "operator"})
    t.eq(s, 200, "abort: 200")
    t.eq((body["status"], body["aborted_jobs"], body["reason"], body["job_id"]), ("ABORTED", 1, "operator", job_id),
         "answer as in the contract")
    t.eq(cp.job(job_id)["last_error"], "operator", "reason kept in last_error")
    s, body = cp.worker("POST", "/heartbeat", {"worker_id": "w1", "current_job_id": job_id, "seq": 1})
    t.eq((s, body.get("cancel_jobs")), (200, [job_id]), "the next heartbeat tells the worker to stop the job")
    s, body = cp.worker("POST", "/complete", completion(job, "w1"))
    t.eq((s, body["status"]), (200, "ABORTED"), "a completion after the abort: no-op 200 ABORTED")
    t.eq(cp.admin("POST", "/abort", {"job_id": job_id})[0], 409, "aborting it again: 409")
    t.eq(cp.admin("POST", "/abort", {"job_id": job_id, "worker_id": "w1"})[0], 409,
         "aborting it again, naming the worker that held it: 409 too")
    t.eq(cp.admin("POST", "/abort", {"job_id": "f" * 32})[0], 404, "unknown job: 404")
    a, b = cp.submit("sleep 1"), cp.submit("sleep 1")
    ack(cp, claim(cp, "w1"), "w1")
    claim(cp, "w1")
    s, body = cp.admin("POST", "/abort", {"worker_id": "w1", "reason": "host retired"})
    t.eq((s, body.get("aborted_jobs")), (200, 2), "abort by worker: both held jobs")
    t.eq({cp.job(a)["status"], cp.job(b)["status"]}, {"ABORTED"}, "both ABORTED")
    t.eq(cp.admin("POST", "/abort", {"worker_id": "w1"})[0], 404, "nothing left to abort: 404")
    live = cp.submit("sleep 1")
    t.eq(claim(cp, "w1")["job_id"], live, "w1 holds a live job")
    t.eq(cp.admin("POST", "/abort", {"job_id": live, "worker_id": "w2"})[0], 404,
         "a live job another worker holds: nothing to abort for w2, 404")
    c = cp.submit("sleep 1")
    s, body = cp.admin("POST", "/abort", {"job_id": c})
    t.eq((s, body.get("reason")), (200, cp.job(c)["last_error"]), "without a reason: the answer gives the one kept")
    t.ok((body.get("reason") or "").startswith("aborted by "), f"a default reason: {body.get('reason')!r}")


@test
def test_reconnect_after_restart(t):
    cp = t.control_plane(options={"heartbeat-timeout": "10s", "lease-timeout": "10s", "disconnect-timeout": "5s"})
    register(cp, "w1", instance_id="i1")
    ids = [cp.submit("true") for _ in range(3)]
    held = []
    for _ in ids:
        j = claim(cp, "w1")
        ack(cp, j, "w1")
        held.append(j)
    kept, dropped, done = held
    answer = register(cp, "w1", instance_id="i2")
    t.eq(answer.get("restarted"), True, "a new instance id is a restart")
    body = {"worker_id": "w1", "current_job_id": kept["job_id"],
            "completed_jobs": [dict(completion(done, "w1"), status="COMPLETED"),
                               dict(completion(kept, "w1", assignment_id="forged"), status="COMPLETED")]}
    s, answer = cp.worker("POST", "/reconnect", body)
    t.eq(s, 200, "reconnect: 200")
    results = [(a["job_id"], a["action"], a["result"]) for a in answer["actions"]]
    t.ok((done["job_id"], "complete", "ACCEPTED") in results, "the replayed completion is ACCEPTED")
    t.ok((kept["job_id"], "complete", "REJECTED") in results, "the forged one is REJECTED")
    t.ok(all("error" in a for a in answer["actions"] if a["result"] == "REJECTED"), "rejections say why")
    t.ok((dropped["job_id"], "lost", "ACCEPTED") in results, "the unclaimed job is given up")
    t.eq(cp.job(done["job_id"])["status"], "COMPLETED", "replayed job COMPLETED")
    t.eq(cp.job(kept["job_id"])["status"], "RUNNING", "the claimed job keeps running")
    t.ok(cp.job(dropped["job_id"])["status"] in ("RETRYING", "PENDING"), "the unclaimed job was lost at once")
    s, answer = cp.worker("POST", "/reconnect", {"worker_id": "w1", "completed_jobs": [
        dict(completion(done, "w1"), status="COMPLETED")]})
    t.eq([a["result"] for a in answer["actions"]], ["ACCEPTED"], "replaying it again: ACCEPTED, a no-op")
    t.eq(len(cp.events(job_id=done["job_id"], event="job.completed")), 1, "completed exactly once")


LONG_LEASE = 10.0  # seconds: nothing expires while the test looks at leases
LONG_LEASE_OPTIONS = {"lease-timeout": "10s", "heartbeat-timeout": "10s"}


def action_for(answer, job_id, action):
    found = [a for a in answer.get("actions", []) if a.get("job_id") == job_id and a["action"] == action]
    return found[0] if len(found) == 1 else None


@test
def test_reconnect_rejects_a_bad_record_alone(t):
    """A replayed record the control plane cannot take (a field out of range or of the wrong type,
    no job_id) is REJECTED on its own, with an error naming the field: the worker drops it from its
    buffer. A 400 for the whole exchange would have it replay that record for ever, never polling
    or heartbeating again, and the good records with it would never be applied."""
    cp = t.control_plane(options=LONG_LEASE_OPTIONS)
    register(cp, "w1")
    for _ in range(3):
        cp.submit("true")
    good, bad, bad_failure = [claim(cp, "w1") for _ in range(3)]
    for j in (good, bad, bad_failure):
        ack(cp, j, "w1")
    failure = {"job_id": bad_failure["job_id"], "worker_id": "w1", "assignment_id": bad_failure["assignment_id"],
               "status": "FAILED", "error": "boom", "retryable": "no"}
    nameless = dict(completion(good, "w1"), status="COMPLETED")
    del nameless["job_id"]
    body = {"worker_id": "w1", "current_job_ids": [bad["job_id"], bad_failure["job_id"]], "completed_jobs": [
        dict(completion(bad, "w1", exit_code=10**9), status="COMPLETED"), failure, nameless, 7,
        dict(completion(good, "w1"), status="COMPLETED")]}
    s, answer = cp.worker("POST", "/reconnect", body)
    t.require(s == 200, f"reconnect with bad records: 200 ({s} {answer})")
    a = action_for(answer, bad["job_id"], "complete")
    t.ok(a and a["result"] == "REJECTED" and a["assignment_id"] == bad["assignment_id"],
         f"the completion with an exit code out of range REJECTED, named by its job and assignment: {a}")
    t.ok(a and "exit_code" in a.get("error", ""), f"its error names the field: {a}")
    a = action_for(answer, bad_failure["job_id"], "fail")
    t.ok(a and a["result"] == "REJECTED" and "retryable" in a.get("error", ""),
         f"the failure with a retryable that is not a bool REJECTED: {a}")
    a = action_for(answer, None, "complete")
    t.ok(a and a["result"] == "REJECTED" and "job_id" in a.get("error", ""),
         f"the record without a job_id REJECTED: {a}")
    a = action_for(answer, None, "unknown")
    t.ok(a and a["result"] == "REJECTED", f"the record that is not an object REJECTED: {a}")
    a = action_for(answer, good["job_id"], "complete")
    t.ok(a and a["result"] == "ACCEPTED", f"the good record ACCEPTED: {a}")
    t.eq(len(answer["actions"]), 5 + 2, "one action per record, one per claimed job")
    t.eq(cp.job(good["job_id"])["status"], "COMPLETED", "the good record applied")
    t.eq(cp.job(bad["job_id"])["status"], "RUNNING", "the bad completion changed nothing")
    t.eq(cp.job(bad_failure["job_id"])["status"], "RUNNING", "the bad failure changed nothing")
    t.eq([a["result"] for a in answer["actions"] if a["action"] == "keep"], ["ACCEPTED"] * 2,
         "the claimed jobs are kept")
    s, answer = cp.worker("POST", "/reconnect", {"worker_id": "w1", "completed_jobs": {"a": 1}})
    t.eq(s, 400, "completed_jobs that is not a list is still a malformed request: 400")


@test
def test_reconnect_keep_under_another_assignment_is_not_kept(t):
    """/reconnect decides which claimed jobs are the worker's as /heartbeat does: one reported
    under an assignment that is not the job's is not kept (REJECTED, naming the job's assignment,
    so that the worker kills its run) and its lease is not renewed, while /heartbeat lists it in
    abort_jobs. An ASSIGNED job is kept but, as in /heartbeat, its lease waits for the ack."""
    cp = t.control_plane(options=LONG_LEASE_OPTIONS)
    register(cp, "w1")
    for _ in range(2):
        cp.submit("true")
    job = claim(cp, "w1")
    ack(cp, job, "w1")
    unacked = claim(cp, "w1")
    before = cp.job(job["job_id"])["assignment_expires_at"]
    unacked_before = cp.job(unacked["job_id"])["assignment_expires_at"]
    # A renewal from now on would move the expiry: the clock is past the last one (claim or ack).
    t.wait_for(lambda: time.time() > before - LONG_LEASE + 0.05, 5, "the clock to pass the last renewal")
    held = [{"job_id": job["job_id"], "assignment_id": "forged"},
            {"job_id": unacked["job_id"], "assignment_id": unacked["assignment_id"]}]
    s, answer = cp.worker("POST", "/reconnect", {"worker_id": "w1", "current_jobs": held})
    t.require(s == 200, f"reconnect: 200 ({s} {answer})")
    a = action_for(answer, job["job_id"], "keep")
    t.ok(a and a["result"] == "REJECTED" and a.get("error"), f"the keep under a forged assignment REJECTED: {a}")
    t.ok(a and a["assignment_id"] == job["assignment_id"], f"naming the job's own assignment: {a}")
    t.eq(cp.job(job["job_id"])["assignment_expires_at"], before, "its lease not renewed")
    s, hb = cp.worker("POST", "/heartbeat", {"worker_id": "w1", "seq": 1, "current_jobs": held[:1]})
    t.eq(hb.get("abort_jobs"), [job["job_id"]], "/heartbeat says the same: abort it")
    a = action_for(answer, unacked["job_id"], "keep")
    t.ok(a and a["result"] == "ACCEPTED" and a.get("status") == "ASSIGNED", f"the unacked job kept, ASSIGNED: {a}")
    t.eq(cp.job(unacked["job_id"])["assignment_expires_at"], unacked_before, "its lease waits for the ack")
    s, answer = cp.worker("POST", "/reconnect", {"worker_id": "w1", "current_jobs": [
        {"job_id": job["job_id"], "assignment_id": job["assignment_id"]}]})
    a = action_for(answer, job["job_id"], "keep")
    t.ok(a and a["result"] == "ACCEPTED", f"under its own assignment: kept ({a})")
    t.ok(cp.job(job["job_id"])["assignment_expires_at"] > before, "and its lease renewed")


def listed_worker(cp, worker_id):
    return [x for x in cp.admin("GET", "/workers")[1] if x["worker_id"] == worker_id][0]


@test
def test_a_worker_says_its_version_slots_and_gpus(t):
    """What a worker registers with besides its capabilities is kept for operators (GET /workers,
    the audit trail) and replaced by each registration: after an upgrade the new version shows."""
    cp = t.control_plane()
    gpus = ["GPU-5d4c3b2a-1f0e-4d9c-8b7a-6e5f4d3c2b1a", "1"]
    register(cp, "w1", version="0.9.1", slots=4, gpus=gpus)
    w = listed_worker(cp, "w1")
    t.eq((w.get("version"), w.get("slots"), w.get("gpus")), ("0.9.1", 4, gpus), "listed as registered")
    ev = cp.events(event="worker.registered", worker_id="w1")[0]
    t.eq((ev["details"].get("version"), ev["details"].get("slots"), ev["details"].get("gpus")), ("0.9.1", 4, gpus),
         "in the audit event")
    register(cp, "w1", version="1.0.0", slots=1, gpus=[])
    w = listed_worker(cp, "w1")
    t.eq((w.get("version"), w.get("slots"), w.get("gpus")), ("1.0.0", 1, []), "the next registration replaces them")
    register(cp, "w1")
    w = listed_worker(cp, "w1")
    t.eq((w.get("version"), "slots" in w, "gpus" in w), (None, False, False), "a worker that does not say: unknown")
    bad = [({"version": "1.0 beta"}, "a version with a space"), ({"version": "v" * 65}, "an overlong version"),
           ({"version": 1}, "a version that is not a string"), ({"version": "1.0\u00e9"}, "a version not ASCII"),
           ({"slots": 0}, "no slots"), ({"slots": 4097}, "too many slots"), ({"slots": "2"}, "slots as a string"),
           ({"gpus": "0,1"}, "gpus not a list"), ({"gpus": ["0"] * 257}, "too many GPUs"),
           ({"gpus": ["0,1"]}, "a GPU with a comma"), ({"gpus": [""]}, "an empty GPU")]
    for extra, desc in bad:
        body = {"worker_id": "w1", "capabilities": ["refused"]}
        body.update(extra)
        status, answer = cp.worker("POST", "/register", body)
        t.eq(status, 400, f"{desc}: 400 ({answer})")
    t.eq(listed_worker(cp, "w1")["capabilities"], [], "a refused registration changed nothing")


@test
def test_heartbeat_seq_older_is_ignored(t):
    cp = t.control_plane()
    register(cp, "w1")
    s, body = cp.worker("POST", "/heartbeat", {"worker_id": "w1", "seq": 5, "metrics": {"v": 5}})
    t.eq((s, body["status"]), (200, "ok"), "seq 5 accepted")
    s, body = cp.worker("POST", "/heartbeat", {"worker_id": "w1", "seq": 4, "metrics": {"v": 4}})
    t.eq((s, body["status"]), (200, "ignored"), "seq 4 ignored")
    w = [x for x in cp.admin("GET", "/workers")[1] if x["worker_id"] == "w1"][0]
    t.eq(w.get("heartbeat_metrics"), {"v": 5}, "the older heartbeat changed nothing")
    t.eq(cp.worker("POST", "/heartbeat", {"worker_id": "ghost", "seq": 1})[0], 403, "unregistered worker: 403")


@test
def test_events_paging(t):
    cp = t.control_plane()
    for i in range(7):
        cp.submit("true", priority=i)
    everything = cp.events(limit=1000)
    ids = [e["id"] for e in everything]
    t.eq(ids, sorted(ids, reverse=True), "newest first")
    t.ok(len(ids) >= 7, "all events listed")
    page = cp.events(limit=3)
    t.eq([e["id"] for e in page], ids[:3], "limit gives the newest")
    pivot = ids[4]
    above = cp.events(since_id=pivot, limit=1000)
    t.eq([e["id"] for e in above], [i for i in ids if i > pivot], "since_id returns exactly the ids above it")
    # Following the trail: remember the newest id, then ask only for what is new.
    newest = ids[0]
    cp.submit("true")
    fresh = cp.events(since_id=newest)
    t.eq([e["event"] for e in fresh], ["job.submitted"], "only the new event")
    for e in fresh:
        for k in ("id", "ts", "component", "level", "event", "details"):
            t.ok(k in e, f"event has {k}")
    t.eq(len(cp.events(event="job.submitted", limit=1000)), 8, "event filter")
    for q in ("oldest_first", "oldest_first=", "oldest_first=true", "oldest_first=1"):
        t.eq([e["id"] for e in cp.admin("GET", f"/events?{q}&limit=2")[1]], sorted(ids)[:2], f"?{q}: oldest first")
    t.eq([e["id"] for e in cp.admin("GET", "/events?oldest_first=0&limit=2")[1]],
         [e["id"] for e in cp.events(limit=2)], "oldest_first=0: newest first")
    t.eq(cp.admin("GET", "/events?oldest_first=maybe")[0], 400, "oldest_first=maybe: 400")
    t.eq(cp.admin("GET", "/events?limit=0")[0], 400, "limit 0: 400")
    t.eq(cp.admin("GET", "/events?since_id=abc")[0], 400, "malformed since_id: 400")


@test
def test_abort_reassignment_and_failure_kinds(t):
    cp = t.control_plane()
    register(cp, "w1")
    register(cp, "w2")
    a = cp.submit("sleep 100")
    job = claim(cp, "w1")
    t.eq(job.get("lease_timeout_ms"), int(LEASE * 1000), "/next-job answers the lease length")
    ack(cp, job, "w1")
    hb = {"worker_id": "w1", "seq": 1, "current_job_id": a, "current_job_ids": [a],
          "current_jobs": [{"job_id": a, "assignment_id": job["assignment_id"]}]}
    s, body = cp.worker("POST", "/heartbeat", hb)
    t.eq((s, body.get("abort_jobs"), body.get("cancel_jobs")), (200, [], []), "held: nothing to abort")
    hb.update(seq=2, current_jobs=[{"job_id": a, "assignment_id": "superseded"}])
    s, body = cp.worker("POST", "/heartbeat", hb)
    t.eq(body.get("abort_jobs"), [a], "another assignment than the job's: abort it")

    # retryable: false fails for good; handback returns the job without counting an attempt.
    s, body = cp.worker("POST", "/fail", {"job_id": a, "worker_id": "w1", "assignment_id": job["assignment_id"],
                                          "exit_code": 1, "error": "not allowed", "retryable": False,
                                          "failure_kind": "policy"})
    t.eq((s, body.get("status")), (200, "FAILED"), "retryable false: FAILED with attempts left")
    b = cp.submit("sleep 100", max_attempts=1)
    job = claim(cp, "w1")
    ack(cp, job, "w1")
    s, body = cp.worker("POST", "/fail", {"job_id": b, "worker_id": "w1", "assignment_id": job["assignment_id"],
                                          "exit_code": 143, "error": "worker stopping", "handback": True,
                                          "failure_kind": "handback"})
    t.eq((s, body.get("status")), (200, "RETRYING"), "handback: RETRYING, not FAILED (one attempt only)")
    again = cp.wait_job_state(b, "PENDING", timeout=2)
    t.eq(again["attempt_count"], 0, "the attempt was given back")
    job2 = claim(cp, "w2")
    t.eq((job2 or {}).get("job_id"), b, "another worker gets it at once")
    t.eq(cp.admin("GET", "/events?oldest_first=1&limit=1")[1][0]["id"], 1, "events oldest first")
    s, body = cp.worker("POST", "/register", {"worker_id": "w3", "wake_port": 9})
    w3 = [w for w in cp.admin("GET", "/workers")[1] if w["worker_id"] == "w3"][0]
    t.eq((w3.get("wake_port"), w3.get("wake_address")), (9, "127.0.0.1"), "wake address from the peer")


@test
def test_an_offline_worker_that_claims_is_online_again(t):
    """A worker whose heartbeats stop reaching the control plane but whose calls do (or that
    claims after a long sleep) is alive: its claim brings it back ONLINE with worker.online, as a
    heartbeat would, before the job.assigned of the claim; and a worker that only polls is not
    shown OFFLINE, nor audited worker.offline, while it does."""
    cp = t.control_plane()
    register(cp, "w1")
    t.wait_for(lambda: listed_worker(cp, "w1")["status"] == "OFFLINE", 10, "w1 to go OFFLINE without heartbeats")
    t.eq(len(cp.events(event="worker.offline", worker_id="w1")), 1, "audited worker.offline")
    job_id = cp.submit("true")
    job = claim(cp, "w1")
    t.require(job and job["job_id"] == job_id, "the OFFLINE worker claims the job")
    t.eq(listed_worker(cp, "w1")["status"], "ONLINE", "its claim brought it back ONLINE")
    names = [e["event"] for e in reversed(cp.events(worker_id="w1"))
             if e["event"] in ("worker.online", "worker.offline", "job.assigned")]
    t.eq(names, ["worker.offline", "worker.online", "job.assigned"], "worker.online, then the claim")
    t.eq(ack(cp, job, "w1")[0], 200, "ack: 200")
    deadline = time.monotonic() + 2 * HEARTBEAT_TIMEOUT
    while time.monotonic() < deadline:
        claim(cp, "w1")
        time.sleep(0.1)
    t.eq(listed_worker(cp, "w1")["status"], "ONLINE", "polling for twice heartbeat-timeout, no heartbeat: ONLINE")
    t.eq(len(cp.events(event="worker.offline", worker_id="w1")), 1, "and no other worker.offline")


@test
def test_reconnect_rejections_are_audited(t):
    """Each replayed record the control plane refuses leaves an audit event (request.refused, with
    what "replay"), naming the worker, the job and why: the worker drops a REJECTED record, so
    the operator would otherwise never learn that a result was refused. Accepted ones leave none."""
    cp = t.control_plane(options=LONG_LEASE_OPTIONS)
    register(cp, "w1")
    for _ in range(2):
        cp.submit("true")
    first, second = [claim(cp, "w1") for _ in range(2)]
    for j in (first, second):
        ack(cp, j, "w1")
    body = {"worker_id": "w1", "current_job_ids": [first["job_id"]], "completed_jobs": [
        dict(completion(first, "w1", exit_code=10**9), status="COMPLETED"),
        dict(completion(second, "w1", assignment_id="forged"), status="COMPLETED"),
        dict(completion(first, "w1", job_id="no-such-job"), status="COMPLETED"),
        dict(completion(second, "w1"), status="COMPLETED")]}
    s, answer = cp.worker("POST", "/reconnect", body)
    t.require(s == 200, f"reconnect: 200 ({s} {answer})")
    t.eq([a["result"] for a in answer["actions"] if a["action"] == "complete"],
         ["REJECTED", "REJECTED", "REJECTED", "ACCEPTED"], "three records REJECTED, one ACCEPTED")
    refused = [e for e in cp.events(event="request.refused", worker_id="w1")
               if e["details"].get("what") == "replay"]
    t.eq(sorted(e.get("job_id") for e in refused), sorted([first["job_id"], second["job_id"], "no-such-job"]),
         "one audit event per rejected record, naming its job")
    t.ok(all(e["details"].get("reason") and e["details"].get("who") == "w1" for e in refused),
         f"each says who and why: {[e['details'] for e in refused]}")
    by_job = {e.get("job_id"): e for e in refused}
    t.ok("exit_code" in by_job.get(first["job_id"], {}).get("details", {}).get("reason", ""),
         "the invalid record's reason names the field")
    t.ok(by_job.get(second["job_id"], {}).get("assignment_id") == "forged", "the stale one its assignment")


if __name__ == "__main__":
    run()
