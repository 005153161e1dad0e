"""invariants: the checker applied after every fault scenario (tests/faults/).

It reads the control plane's database after the control plane stopped (its audit trail and jobs
table, read-only), the workers' own run records and outboxes (worker.db), the jobs' own log of
when each run started and ended, the harness's record of when hosts were killed, and the
client-side ledger of what the control plane acknowledged (201 on POST /jobs, 200 on POST
/abort). It returns a list of violations (strings); an empty list means:

  1. every acknowledged job exists, and reached exactly one terminal state (or, when the caller
     allows it, is legitimately still in progress);
  2. every transition in the audit trail is legal (design.md's table plus the edges
     daemon/job-state.c documents), and the chain of transitions is unbroken;
  3. at most one completion was accepted per job;
  4. the accepted completion names the job's latest assignment at that time;
  5. no two runs of one job overlap in time;
  6. attempt_count equals the number of assignments, and every run belongs to one of them;
  7. nothing acknowledged was lost: each 201'd job exists, each 200'd abort left it ABORTED, each
     result a worker saw accepted is the job's result (or the job was aborted).
"""

import json
import os
import re
import sqlite3

TERMINAL = {"COMPLETED", "FAILED", "ABORTED"}

# design.md's table, edge for edge.
DESIGN_EDGES = {
    ("PENDING", "ASSIGNED"), ("PENDING", "ABORTED"),
    ("ASSIGNED", "RUNNING"), ("ASSIGNED", "PENDING"), ("ASSIGNED", "ABORTED"),
    ("RUNNING", "COMPLETED"), ("RUNNING", "FAILED"), ("RUNNING", "RETRYING"), ("RUNNING", "LOST"),
    ("RUNNING", "ABORTED"),
    ("LOST", "RETRYING"), ("LOST", "FAILED"),
    ("RETRYING", "PENDING"), ("RETRYING", "ABORTED"),
}
# The extra edges daemon/job-state.c documents (a completion for the latest assignment is accepted
# even after the job was marked LOST or RETRYING: design.md's lease rules).
DOCUMENTED_EXTRA_EDGES = {("LOST", "COMPLETED"), ("RETRYING", "COMPLETED")}
LEGAL_EDGES = DESIGN_EDGES | DOCUMENTED_EXTRA_EDGES


def code_edges(srcdir):
    """The edges daemon/job-state.c really enforces (its EDGE(...) table)."""
    path = os.path.join(srcdir, "daemon", "job-state.c")
    with open(path) as f:
        text = f.read()
    return {(a, b) for a, b in re.findall(r"EDGE\(JOB_([A-Z]+),\s*JOB_([A-Z]+)\)", text)}


def _connect_ro(path):
    # Not mode=ro: a database left by a killed process may need its WAL recovered, which needs
    # write access to -shm. Only SELECTs are run.
    con = sqlite3.connect(path, timeout=10)
    con.row_factory = sqlite3.Row
    return con


def load_control(db_path):
    con = _connect_ro(db_path)
    try:
        jobs = {r["job_id"]: dict(r) for r in con.execute("SELECT * FROM jobs")}
        events = [dict(r) for r in con.execute(
            "SELECT id, ts, event, worker_id, job_id, assignment_id, details FROM audit_events ORDER BY id")]
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()
    for e in events:
        try:
            e["details"] = json.loads(e["details"] or "{}")
        except ValueError:
            e["details"] = {}
    return jobs, events, integrity


def load_worker(state_dir):
    path = os.path.join(state_dir, "worker.db")
    if not os.path.exists(path):
        return [], [], "ok"
    con = _connect_ro(path)
    try:
        runs = [dict(r) for r in con.execute("SELECT * FROM runs ORDER BY id")]
        outbox = [dict(r) for r in con.execute("SELECT * FROM outbox ORDER BY id")]
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()
    return runs, outbox, integrity


def read_job_log(path):
    """{assignment_id: {"job": job_id, "start": t, "end": t or None}} from the jobs' own log."""
    out = {}
    if not path or not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 4 or parts[0] not in ("start", "end"):
                continue
            kind, job_id, assignment, ts = parts
            r = out.setdefault(assignment, {"job": job_id, "start": None, "end": None})
            try:
                r[kind] = float(ts)
            except ValueError:
                pass
    return out


class Ledger:
    """What the control plane acknowledged to clients."""

    def __init__(self):
        self.submitted = {}  # job_id -> submit time (realtime)
        self.aborted = set()  # job ids whose POST /abort answered 200

    def submit(self, cp, spec):
        import time
        status, body = cp.admin("POST", "/jobs", spec)
        if status == 201:
            self.submitted[body["job_id"]] = time.time()
            return body["job_id"]
        return None


def check(srcdir, control_db, worker_dirs, ledger, job_log=None, kills=None, allow_in_progress=False,
          stats=None):
    """Returns the list of violations. worker_dirs: {worker_id: state_dir}; kills: {worker_id:
    [realtime seconds]} when its host lost power or its worker was killed."""
    v = []
    kills = kills or {}
    jobs, events, integrity = load_control(control_db)
    if integrity != "ok":
        v.append(f"control database integrity_check: {integrity}")
    extra = code_edges(srcdir) - LEGAL_EDGES
    if extra:
        v.append(f"daemon/job-state.c allows undocumented edges: {sorted(extra)}")

    by_job = {}
    for e in events:
        if e["job_id"]:
            by_job.setdefault(e["job_id"], []).append(e)

    worker_runs, accepted_results = [], []
    for wid, d in worker_dirs.items():
        runs, outbox, wint = load_worker(d)
        if wint != "ok":
            v.append(f"worker {wid} database integrity_check: {wint}")
        for r in runs:
            r["worker"] = wid
        worker_runs += runs
        accepted_results += [dict(o, worker=wid) for o in outbox if o["state"] == "accepted"]
    log = read_job_log(job_log)

    n_transitions = 0
    for job_id in ledger.submitted:
        if job_id not in jobs:
            v.append(f"job {job_id}: acknowledged with 201 but not in the control plane's database")
    for job_id, job in jobs.items():
        evs = by_job.get(job_id, [])
        trans = [e for e in evs if "from" in e["details"] and "to" in e["details"]
                 and e["event"] not in ("job.transition_refused", "job.assignment_stale")]
        n_transitions += len(trans)
        state = "PENDING"
        terminal_seen = 0
        latest_assignment = None
        assignments = []
        completions = []
        for e in trans:
            f, t = e["details"]["from"], e["details"]["to"]
            if f != state:
                v.append(f"job {job_id}: event {e['id']} {e['event']} {f}->{t} but the job was {state}")
            if (f, t) not in LEGAL_EDGES:
                v.append(f"job {job_id}: illegal transition {f}->{t} (event {e['id']})")
            if state in TERMINAL:
                v.append(f"job {job_id}: transition {f}->{t} after terminal {state} (event {e['id']})")
            if t == "ASSIGNED":
                latest_assignment = e["assignment_id"]
                assignments.append((e["assignment_id"], e["worker_id"], e["ts"] / 1e6))
            if t == "COMPLETED":
                completions.append(e)
                if e["assignment_id"] != latest_assignment:
                    v.append(f"job {job_id}: completion from assignment {e['assignment_id']} applied, but the "
                             f"latest assignment was {latest_assignment}")
            if t in TERMINAL:
                terminal_seen += 1
            state = t
        if len(completions) > 1:
            v.append(f"job {job_id}: {len(completions)} completions accepted")
        if terminal_seen > 1:
            v.append(f"job {job_id}: {terminal_seen} terminal states")
        if state != job["status"]:
            v.append(f"job {job_id}: audit trail ends in {state}, the jobs table says {job['status']}")
        if job_id in ledger.submitted and job["status"] not in TERMINAL and not allow_in_progress:
            v.append(f"job {job_id}: still {job['status']} at the end of the scenario")
        # An assignment whose ack never came goes back to PENDING and gives its attempt back
        # (daemon/reconcile.h); no run may have happened under it.
        given_back = {e["assignment_id"] for e in trans
                      if e["details"]["from"] == "ASSIGNED" and e["details"]["to"] == "PENDING"}
        if job["attempt_count"] != len(assignments) - len(given_back):
            v.append(f"job {job_id}: attempt_count {job['attempt_count']} but {len(assignments)} assignments "
                     f"in the audit trail, {len(given_back)} of them given back")
        if job_id in ledger.aborted and job["status"] != "ABORTED":
            v.append(f"job {job_id}: abort acknowledged with 200 but the job is {job['status']}")

        # Runs: the job's own log first, the workers' run records for what the log cannot say.
        assigned_ids = {a for a, _, _ in assignments}
        holder = {a: w for a, w, _ in assignments}
        intervals = []
        recs = {r["assignment_id"]: r for r in worker_runs if r["job_id"] == job_id}
        for a in set(recs) | {a for a, r in log.items() if r["job"] == job_id}:
            if a not in assigned_ids:
                v.append(f"job {job_id}: a run with assignment {a} that the control plane never issued")
            if a in given_back and log.get(a, {}).get("start"):
                v.append(f"job {job_id}: assignment {a} ran although its ack was never accepted")
            lr, rr = log.get(a), recs.get(a)
            start = lr["start"] if lr and lr["start"] else (rr["started_at"] / 1e6 if rr else None)
            if start is None:
                continue
            end = lr["end"] if lr and lr["end"] else None
            if end is None and rr and rr["ended_at"]:
                end = rr["ended_at"] / 1e6
            if end is None:
                w = holder.get(a) or (rr and rr["worker"])
                later = [k for k in kills.get(w, []) if k >= start]
                end = min(later) if later else float("inf")
            intervals.append((start, end, a))
        intervals.sort()
        for x, y in zip(intervals, intervals[1:]):
            if y[0] < x[1]:
                v.append(f"job {job_id}: runs overlap: {x[2]} [{x[0]:.3f}, {x[1]:.3f}] and {y[2]} starting "
                         f"{y[0]:.3f}")
        if stats is not None:
            stats["runs"] = stats.get("runs", 0) + len(intervals)

    for o in accepted_results:
        if o["kind"] != "complete":
            continue
        job = jobs.get(o["job_id"])
        if not job:
            v.append(f"worker {o['worker']}: completion of unknown job {o['job_id']} accepted")
        elif job["status"] == "COMPLETED" and job["assignment_id"] != o["assignment_id"]:
            v.append(f"job {o['job_id']}: worker {o['worker']} was told its completion (assignment "
                     f"{o['assignment_id']}) was accepted, but the job completed with {job['assignment_id']}")
        elif job["status"] not in ("COMPLETED", "ABORTED"):
            path = "->".join([e["details"]["from"] for e in by_job.get(o["job_id"], [])
                              if "from" in e["details"]][-2:] + [job["status"]])
            latest = "the latest" if job["assignment_id"] == o["assignment_id"] else "a superseded"
            tag = "[F1] " if latest == "the latest" and path.endswith("LOST->FAILED") else ""
            v.append(f"{tag}job {o['job_id']}: worker {o['worker']} was answered 200 for its completion of "
                     f"{latest} assignment, but the job ended {job['status']} (...{path}): the finished work "
                     f"was discarded")

    if stats is not None:
        stats["jobs"] = stats.get("jobs", 0) + len(ledger.submitted)
        stats["transitions"] = stats.get("transitions", 0) + n_transitions
        stats["events"] = stats.get("events", 0) + len(events)
        stats["stale_refused"] = stats.get("stale_refused", 0) + sum(
            1 for e in events if e["event"] == "job.assignment_stale")
        for j in jobs.values():
            key = "final_" + j["status"].lower()
            stats[key] = stats.get(key, 0) + 1
    return v
