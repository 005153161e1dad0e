#!/usr/bin/env python3
"""The failure table as scenarios on 127.0.0.1 (no root needed): worker crash, power cut (every
process of a worker "host" killed at once, its unsynced SQLite writes lost through the crash VFS),
control-plane crash and restart, duplicated, delayed, reordered and stale worker messages (a
proxy), and the artifact rule. After each scenario the invariant checker (invariants.py) reads the
audit trail, the workers' run records and the jobs' own log. Recovery times are checked against
daemon/reconcile.h's bound computed from the configured intervals."""

import hashlib
import http.client
import json
import os
import random
import re
import signal
import subprocess
import threading
import time

from faultlib import (ADMIN_TOKEN, TIME_SCALE, Fleet, descendants, ms, recovery_bound, require_binaries, run, test)
from entropy_test import Http, TestFailure  # noqa: E402 (faultlib puts tests/integration on the path)

require_binaries("entropy-control", "entropy-worker")

SEED = int(os.environ.get("ENTROPY_FAULT_SEED", "6"))


def holder(fleet, job_id):
    return fleet.cp.job(job_id)["worker_id"]


def requeued_after(fleet, job_id, t0, timeout):
    """Waits for the job to be claimable again (job.requeued: RETRYING -> PENDING) after t0;
    returns the event's time (Unix seconds)."""
    box = {}

    def cond():
        box["e"] = fleet.first_event_after(job_id, ("job.requeued",), t0)
        return box["e"]
    fleet.t.wait_for(cond, timeout, f"job {job_id} to be claimable again")
    return box["e"]["ts"]


# -- worker crash and power cut -------------------------------------------------------------------

@test
def test_worker_kill_mid_job_requeues_within_bound(t):
    fleet = Fleet(t, workers=2)
    job_id = fleet.submit(fleet.job(2))
    job = fleet.wait_running(job_id)
    victim = job["worker_id"]
    fleet.kill9_worker(victim)
    killed = time.time()
    bound = recovery_bound(fleet.control_options)
    back = requeued_after(fleet, job_id, killed, bound * 3)
    t.ok(back - killed <= bound, f"claimable again {back - killed:.2f}s after the kill (bound {bound:.2f}s)")
    fleet.cp.wait_job_state(job_id, "COMPLETED", timeout=15)
    t.ok(holder(fleet, job_id) != victim, "completed by the surviving worker")
    fleet.workers[victim].start()  # comes back: its orphaned run is recorded as interrupted
    fleet.finish()


@test
def test_power_cycle_during_execution(t):
    fleet = Fleet(t, workers=2, worker_options={"slots": "2"})
    ids = [fleet.submit(fleet.job(2.5)) for _ in range(4)]
    t.wait_for(lambda: sum(1 for j in ids if fleet.cp.job(j)["status"] == "RUNNING") >= 3, 10,
               "jobs to run on both workers")
    victim = fleet.cp.job(ids[0])["worker_id"]
    held = [j for j in ids if fleet.cp.job(j)["worker_id"] == victim and fleet.cp.job(j)["status"] == "RUNNING"]
    fleet.power_cut(victim)
    cut = time.time()
    bound = recovery_bound(fleet.control_options)
    for j in held:
        back = requeued_after(fleet, j, cut, bound * 3)
        t.ok(back - cut <= bound, f"job {j} claimable again {back - cut:.2f}s after the power cut (bound {bound:.2f}s)")
    # Power comes back: the same state directory, a new instance; its replay buffer is what was
    # fsynced before the cut.
    fleet.workers[victim].start()
    fleet.wait_all_terminal(timeout=30)
    for j in ids:
        t.eq(fleet.cp.job(j)["status"], "COMPLETED", f"job {j} completed")
    fleet.finish()


@test
def test_power_cut_with_results_in_the_replay_buffer(t):
    # The control plane is unreachable while jobs finish: their results wait in the worker's
    # replay buffer. A power cut then, and the worker must come back with every result it had
    # committed, and the control plane must accept each exactly once.
    slow = {"lease-timeout": "20s", "heartbeat-timeout": "20s", "disconnect-timeout": "10s"}
    fleet = Fleet(t, workers=1, control=slow, proxy={"seed": SEED})
    ids = [fleet.submit(fleet.job(0.8)) for _ in range(1)]
    fleet.wait_running(ids[0])
    fleet.proxy.set_blackhole(True)
    w = fleet.workers["w1"]
    t.wait_for(lambda: w.outbox(ids[0], "pending"), 10, "the result to wait in the replay buffer")
    fleet.power_cut("w1")
    fleet.proxy.set_blackhole(False)
    w.start()
    fleet.cp.wait_job_state(ids[0], "COMPLETED", timeout=15)
    t.wait_for(lambda: w.outbox(ids[0], "accepted"), 10, "the replayed result to be accepted")
    fleet.finish()


# -- control plane crash and restart -------------------------------------------------------------

@test
def test_control_restart_during_active_job(t):
    # The intervals scale with TIME_SCALE, so that a restart under a slow wrapper still fits in
    # half a lease; one that does not is a failure, not a reason to check nothing.
    lease = 3.0 * TIME_SCALE
    fleet = Fleet(t, workers=1, control={"lease-timeout": ms(lease), "heartbeat-timeout": ms(lease),
                                         "disconnect-timeout": ms(lease / 2)})
    job_id = fleet.submit(fleet.job(2.5))
    fleet.wait_running(job_id)
    fleet.kill9_control()
    down = time.monotonic()
    fleet.restart_control()
    downtime = time.monotonic() - down
    t.require(downtime < lease / 2, f"the control plane was back within half a lease (down {downtime:.2f}s, "
                                    f"lease {lease:.1f}s)")
    job = fleet.cp.wait_job_state(job_id, "COMPLETED", timeout=15)
    t.eq(fleet.events(job_id, "job.lost"), [],
         f"not LOST: the restart extended the lease (down {downtime:.2f}s, lease {lease:.1f}s)")
    t.eq(job["attempt_count"], 1, "one attempt: the running job was never taken from its worker")
    fleet.finish()


@test
def test_control_plane_kill9_under_load_repeated(t):
    # Each thread has a generator of its own, so that a seed replays the same run.
    kill_rng = random.Random(SEED)
    load_rng = random.Random(SEED + 1)
    fleet = Fleet(t, workers=2, worker_options={"slots": "2"})
    stop = threading.Event()
    errors = []       # connection errors while the control plane is down: expected
    statuses = {}     # answers other than 201
    crashed = []      # anything else the load thread raised: a bug, reported
    max_acked, max_tries = 250, 2000  # bounds: acknowledged submissions, and all attempts

    def load():
        client = Http("127.0.0.1", fleet.cp.port, timeout=3)
        acked = tries = 0
        try:
            while not stop.is_set() and acked < max_acked and tries < max_tries:
                tries += 1
                spec = fleet.job(load_rng.choice([0, 0.1, 0.3]))
                try:
                    status, body = client.request("POST", "/jobs", spec, token=ADMIN_TOKEN)
                except (OSError, http.client.HTTPException) as e:  # the control plane is down
                    errors.append(type(e).__name__)
                    client.close()
                    stop.wait(0.05)
                    continue
                if status == 201:
                    fleet.ledger.submitted[body["job_id"]] = time.time()
                    acked += 1
                else:
                    statuses[status] = statuses.get(status, 0) + 1
                stop.wait(0.02)  # a steady stream rather than a burst
        except BaseException as e:  # noqa: B902 (reported by the main thread)
            crashed.append(f"{type(e).__name__}: {e}")
        finally:
            client.close()

    th = threading.Thread(target=load, daemon=True)
    th.start()
    kills = 6
    done_kills = 0
    try:
        for i in range(kills):
            n0 = len(fleet.ledger.submitted)
            t.wait_for(lambda: len(fleet.ledger.submitted) >= n0 + 5 or not th.is_alive(), 15,
                       "more submissions between kills")
            if not th.is_alive():
                break
            time.sleep(kill_rng.uniform(0.0, 0.3))  # a random point in the stream (bounded, seeded)
            fleet.kill9_control()
            done_kills += 1
            fleet.restart_control()
    finally:
        stop.set()
        th.join(20)
    print(f"# {done_kills} kill -9 of the control plane; {len(fleet.ledger.submitted)} jobs acknowledged; "
          f"{len(errors)} client errors while it was down; other answers: {statuses}")
    t.eq(crashed, [], "the load thread raised nothing but connection errors")
    t.require(not th.is_alive(), "the load thread stopped")
    t.eq(done_kills, kills, f"all {kills} kill -9 happened while the load ran")
    fleet.wait_all_terminal(timeout=60)
    fleet.finish()


# -- duplicated, delayed, reordered, stale messages -----------------------------------------------

@test
def test_duplicate_completion_replay_is_noop(t):
    fleet = Fleet(t, workers=1, proxy={"seed": SEED, "duplicate": 1.0, "max_delay": 0.2})
    job_id = fleet.submit(fleet.job(0.2))
    fleet.cp.wait_job_state(job_id, "COMPLETED", timeout=10)
    w = fleet.workers["w1"]
    t.wait_for(lambda: w.outbox(job_id, "accepted"), 10, "the worker to record the acceptance")
    t.wait_for(lambda: fleet.proxy.stats["duplicated"] >= 1, 5, "the proxy to replay the completion")
    body = json.loads(w.outbox(job_id, "accepted")[0]["body"])
    # The same completion again, by hand, several times: each a 200 no-op.
    for i in range(3):
        status, ans = fleet.cp.worker("POST", "/complete", body)
        t.eq(status, 200, f"replay {i + 1} answers 200")
    # A completion naming another assignment (superseded or never issued) is refused and audited.
    forged = dict(body, assignment_id="0" * 32)
    status, _ = fleet.cp.worker("POST", "/complete", forged)
    t.eq(status, 409, "a completion with another assignment is refused")
    t.eq(len(fleet.events(job_id, "job.completed")), 1, "applied exactly once")
    t.ok(fleet.events(job_id, "job.assignment_stale"), "the stale completion is audited")
    fleet.finish()


@test
def test_duplicated_delayed_reordered_messages(t):
    fleet = Fleet(t, workers=2, proxy={"seed": SEED, "delay": 0.5, "max_delay": 0.25, "duplicate": 0.3,
                                       "stale": 0.2},
                  control={"lease-timeout": "3s", "heartbeat-timeout": "3s", "disconnect-timeout": "1500ms"})
    ids = [fleet.submit(fleet.job(random.Random(SEED + i).choice([0, 0.2, 0.5]), exit_code=1 if i % 7 == 3 else 0,
                                  max_attempts=2)) for i in range(30)]
    fleet.wait_all_terminal(timeout=60, job_ids=ids)
    print(f"# proxy: {fleet.proxy.stats}")
    t.ok(fleet.proxy.stats["duplicated"] > 0 and fleet.proxy.stats["delayed"] > 0, "faults were injected")
    fleet.finish()


# -- artifacts ------------------------------------------------------------------------------------

def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@test
def test_partial_artifact_write_never_accepted(t):
    fleet = Fleet(t, workers=2)
    # A job that writes its output slowly: the power cut lands in the middle of it.
    script = 'for i in $(seq 1 40); do head -c 4096 /dev/zero | tr "\\0" y; sleep 0.05; done'
    job_id = fleet.submit({"command": "sh", "args": ["-c", script]})
    job = fleet.cp.wait_job_state(job_id, "RUNNING", timeout=10)
    victim = job["worker_id"]
    first = job["assignment_id"]
    tmp = os.path.join(fleet.workers[victim].state_dir, "artifacts", job_id, first, "stdout.tmp")
    t.wait_for(lambda: os.path.exists(tmp) and os.path.getsize(tmp) > 0, 10, "partial output on disk")
    fleet.power_cut(victim)
    fleet.workers[victim].start()
    final = fleet.cp.wait_job_state(job_id, "COMPLETED", timeout=20)
    t.ok(final["assignment_id"] != first, "the interrupted assignment was not the one accepted")
    t.ok(not final["stdout_path"].endswith(".tmp"), "a final name was reported")
    t.eq(final["stdout_sha256"], sha256(final["stdout_path"]), "the stored checksum is the file's")
    t.eq(os.path.getsize(final["stdout_path"]), 40 * 4096, "the accepted output is complete")
    t.ok(not os.path.exists(final["stdout_path"] + ".tmp"), "no tmp file left beside the accepted output")
    runs = [r for r in fleet.workers[victim].runs(job_id) if r["assignment_id"] == first]
    t.ok(runs and runs[0]["outcome"] == "interrupted", f"the cut run is recorded as interrupted: {runs}")
    t.eq(fleet.workers[victim].outbox(job_id) and [o for o in fleet.workers[victim].outbox(job_id)
                                                   if o["assignment_id"] == first], [],
         "no result was ever queued for the cut run")

    # A completion that breaks the rename rule is refused and changes nothing.
    job2 = fleet.submit(fleet.job(0.1))
    done = fleet.cp.wait_job_state(job2, "COMPLETED", timeout=10)
    for bad in ({"stdout_tmp_path": done["stdout_path"]},                       # tmp == final
                {"stdout_path": done["stdout_path"] + ".tmp",                   # final is a tmp name
                 "stdout_tmp_path": done["stdout_path"] + ".tmp.tmp"},
                {"stdout_sha256": "not-a-checksum"}):
        body = {"job_id": job2, "worker_id": done["worker_id"], "assignment_id": done["assignment_id"],
                "exit_code": 0, "stdout_path": done["stdout_path"], "stdout_tmp_path": done["stdout_path"] + ".tmp",
                "stdout_sha256": done["stdout_sha256"]}
        body.update(bad)
        status, _ = fleet.cp.worker("POST", "/complete", body)
        t.eq(status, 400, f"completion with {list(bad)} refused")
    t.eq(fleet.cp.job(job2)["stdout_sha256"], done["stdout_sha256"], "the stored record is unchanged")
    fleet.finish()


def whole_calls(lines):
    """strace -f splits a call another thread's call interrupts: "PID name(args <unfinished ...>",
    later "PID <... name resumed>rest". Joins each pair into one line where the call ended: the
    order of interest is that of the calls' ends (an fsync done before the result is sent)."""
    started, out = {}, []
    for line in lines:
        m = re.match(r"(\d+)\s+(.*)", line)
        pid, rest = m.groups() if m else ("", line)
        if rest.endswith(" <unfinished ...>"):
            started[pid] = rest[:-len(" <unfinished ...>")]
            continue
        m = re.match(r"<\.\.\. \w+ resumed>(.*)", rest)
        if m and pid in started:
            out.append(f"{pid} {started.pop(pid)}{m.group(1)}")
            continue
        out.append(line)
    return out


@test
def test_artifact_durability_order_before_report(t):
    """The artifact rule's durability, from the worker's system calls: for each result, stdout and
    stderr are fsynced, renamed, their directory fsynced, and only then is the result committed
    (an fsync of the replay buffer's WAL) and then sent. A power cut at any point therefore never
    leaves an accepted result whose final file is not complete on disk (given fsync means what
    POSIX says; this is the ordering the crash VFS cannot model for plain files)."""
    if subprocess.run(["sh", "-c", "command -v strace"], capture_output=True).returncode != 0:
        raise TestFailure("strace is not installed (scripts/install-deps.sh test installs it)")
    fleet = Fleet(t, workers=0)
    trace = os.path.join(t.tmp, "strace.out")
    w = fleet.add_worker("w1", start=False)
    # LeakSanitizer cannot run under ptrace and aborts the process; the sanitizer build's other
    # checks stay on.
    w.env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
    w.argv = ["strace", "-f", "-y", "-qq", "-s", "200", "-o", trace,
              "-e", "trace=fsync,fdatasync,rename,renameat,renameat2,sendto,send,write"] + w.argv
    w.start(timeout=20)
    job_id = fleet.submit({"command": "sh", "args": ["-c", "echo out; echo err >&2"]})
    fleet.cp.wait_job_state(job_id, "COMPLETED", timeout=20)
    # SIGTERM to the worker itself, not to strace (which would only detach).
    for pid in descendants(w.proc.pid)[1:]:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "entropy-worker":
                    os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    w.proc.wait(timeout=15)
    fleet.finish()
    with open(trace) as f:
        lines = whole_calls(f.read().splitlines())

    def first(pred, start=0):
        for i in range(start, len(lines)):
            if pred(lines[i]):
                return i
        return None
    out_fsync = first(lambda l: "fsync(" in l and job_id in l and "stdout.tmp" in l)
    ren = first(lambda l: "rename" in l and "stdout.tmp" in l and job_id in l)
    err_ren = first(lambda l: "rename" in l and "stderr.tmp" in l and job_id in l)
    dir_fsync = first(lambda l: re.search(r"fsync\(\d+<[^>]*" + job_id + r"/[0-9a-f]+>\)", l) is not None,
                      max(ren or 0, err_ren or 0))
    # The directories made for the run are new entries in the ones above them: the job's
    # directory in artifacts/, artifacts/ itself (the worker's first run) in the state directory.
    job_dir_fsync = first(lambda l: re.search(r"fsync\(\d+<[^>]*/artifacts/" + job_id + r">\)", l) is not None,
                          dir_fsync or 0)
    root_fsync = first(lambda l: re.search(r"fsync\(\d+<[^>]*/artifacts>\)", l) is not None, dir_fsync or 0)
    wal_fsync = first(lambda l: re.search(r"f(data)?sync\(", l) and "worker.db-wal" in l,
                      max(job_dir_fsync or 0, root_fsync or 0, dir_fsync or 0))
    send = first(lambda l: "POST /complete" in l, 0)
    order = [out_fsync, ren, err_ren, dir_fsync, job_dir_fsync, root_fsync, wal_fsync, send]
    t.ok(None not in order and order == sorted(order),
         "fsync(stdout.tmp) < rename < rename(stderr) < fsync(dir) < fsync(job's dir) < fsync(artifacts/) < "
         f"fsync(worker.db-wal) < POST /complete: {order}")


@test
def test_late_completion_of_last_attempt_is_kept(t):
    # A grace long enough for the worker's delivery backoff to bring the buffered completion in.
    fleet = Fleet(t, workers=1, proxy={"seed": SEED}, control={"lost-grace": "20s"})
    job_id = fleet.submit(fleet.job(0.3, max_attempts=1))
    fleet.wait_running(job_id)
    fleet.proxy.set_blackhole(True)  # the job finishes inside its lease, but nobody hears of it
    w = fleet.workers["w1"]
    t.wait_for(lambda: w.outbox(job_id, "pending"), 10, "the completion to be buffered")
    fleet.cp.wait_job_state(job_id, "LOST", timeout=recovery_bound(fleet.control_options) * 2)
    fleet.proxy.set_blackhole(False)
    t.wait_for(lambda: not w.outbox(job_id, "pending"), 15, "the completion to be delivered")
    t.eq(fleet.cp.job(job_id)["status"], "COMPLETED", "the finished work of the latest assignment is kept")
    fleet.finish()


# -- the checker itself ---------------------------------------------------------------------------

@test
def test_invariant_checker_catches_violations(t):
    """The checker is not vacuous: a clean run's records, tampered with, are caught."""
    import shutil
    import sqlite3
    import invariants
    from entropy_test import SRCDIR
    fleet = Fleet(t, workers=1)
    job_id = fleet.submit(fleet.job(0.1))
    fleet.cp.wait_job_state(job_id, "COMPLETED", timeout=10)
    t.eq(fleet.finish(), [], "the untampered run is clean")
    db = os.path.join(t.tmp, "tampered.db")
    shutil.copy(fleet.cp.database, db)
    con = sqlite3.connect(db)
    a = con.execute("SELECT assignment_id FROM jobs WHERE job_id = ?", (job_id,)).fetchone()[0]
    con.execute("INSERT INTO audit_events(ts, component, level, event, job_id, assignment_id, details) "
                "VALUES (?, 'jobs', 6, 'job.completed', ?, 'f00d', '{\"from\":\"RUNNING\",\"to\":\"COMPLETED\"}')",
                (int(time.time() * 1e6), job_id))
    con.execute("UPDATE jobs SET attempt_count = 7 WHERE job_id = ?", (job_id,))
    con.commit()
    con.close()
    with open(fleet.job_log, "a") as f:
        f.write(f"start {job_id} beef {time.time() - 1000}\n")  # a run nobody assigned
    fleet.ledger.submitted["0" * 32] = time.time()  # an acknowledged job that vanished
    fleet.ledger.aborted.add(job_id)                 # an acknowledged abort that did not hold
    v = invariants.check(SRCDIR, db, {"w1": fleet.workers["w1"].state_dir}, fleet.ledger, fleet.job_log)
    text = "\n".join(v)
    for what in ("completions accepted", "after terminal", "latest assignment", "attempt_count",
                 "never issued", "not in the control plane's database", "abort acknowledged"):
        t.ok(what in text, f"caught: {what}")


if __name__ == "__main__":
    run()
