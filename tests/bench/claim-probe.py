#!/usr/bin/env python3
"""claim-probe: how long one claim takes behind a queue of a given shape (docs/performance.md).

    ENTROPY_BUILDDIR=<build dir> tests/bench/claim-probe.py --jobs=1000000 --priorities=40

entropy-bench measures claims in a uniform queue under load; this measures a single worker's
claims, one at a time, in the queues where the claim has to do more than read the head: many
priorities under aging, one very old job among them, a worker at its retry limit, many classes
of jobs the worker cannot take.

It starts entropy-control from the build tree (or --control-binary) with a fresh database in a
temporary directory, stops it, and fills the database directly with --jobs PENDING jobs:
submitted one millisecond apart, the first --age ago, job n at priority n mod --priorities. It
starts the control plane again on them (the time to READY=1 is reported) and times --claims
GET /next-job of one registered worker, each taking a job.
  --old-job      one more job, submitted a week ago, at priority 0
  --retry-limit  every job is a retry job (attempt_count 1), the control plane runs with
                 --max-retry-jobs-per-worker=1 and the worker first takes and holds one more
                 retry job: its polls then find nothing it may take (204), and the figure is
                 what such an empty poll costs
  --classes=N    job n requires "cN" where N = n mod --classes, except when that is 0: the
                 worker, which has no capabilities, can take one job in N, and the claim sees
                 N - 1 classes it cannot
  --created-by=BINARY
                 the database is created by this (older) entropy-control, so that the second
                 start migrates it: the start-up figure is the migration's
"""

import argparse
import json
import os
import sqlite3
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from entropy_test import Context  # noqa: E402

WEEK_US = 7 * 86400 * 1_000_000


def fill(database, args):
    now = int(time.time() * 1e6)
    retry = 1 if args.retry_limit else 0
    db = sqlite3.connect(database)
    with db:
        db.execute("WITH RECURSIVE k(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM k WHERE x < ?) "
                   "INSERT INTO jobs (job_id, status, command, priority, attempt_count, created_at, updated_at, "
                   "requirements) "
                   "SELECT printf('probe%010d', x), 'PENDING', 'true', x % ?, ?, ? + x * 1000, ?, "
                   "CASE WHEN x % ?6 = 0 THEN '[]' ELSE printf('[\"c%d\"]', x % ?6) END FROM k",
                   (args.jobs, args.priorities, retry, now - args.age * 1_000_000, now, args.classes))
        if args.old_job:
            db.execute("INSERT INTO jobs (job_id, status, command, priority, attempt_count, created_at, updated_at) "
                       "VALUES ('probe-old', 'PENDING', 'true', 0, ?, ?, ?)",
                       (retry, now - WEEK_US, now))
        if args.retry_limit:
            db.execute("INSERT INTO jobs (job_id, status, command, priority, attempt_count, created_at, updated_at) "
                       "VALUES ('probe-held', 'PENDING', 'true', 1000000, 1, ?, ?)", (now, now))
    db.close()


def hold_one_retry_job(cp):
    status, job = cp.worker("GET", "/next-job?worker_id=probe")
    if status != 200 or job.get("job_id") != "probe-held":
        raise SystemExit(f"claim-probe: the worker did not get the retry job to hold: {status} {job}")
    status, _ = cp.worker("POST", "/ack", {"job_id": "probe-held", "worker_id": "probe",
                                           "assignment_id": job["assignment_id"]})
    if status != 200:
        raise SystemExit(f"claim-probe: ack of the held job: {status}")


def probe(args):
    options = {"aging-window": args.aging_window}
    if args.retry_limit:
        options["max-retry-jobs-per-worker"] = "1"
    t = Context("claim-probe")
    try:
        cp = t.control_plane(start=False, options=options)
        if args.control_binary:
            cp.argv[0] = os.path.abspath(args.control_binary)
        binary = cp.argv[0]
        if args.created_by:
            cp.argv[0] = os.path.abspath(args.created_by)
        cp.start()
        cp.stop()
        cp.argv[0] = binary
        fill(cp.database, args)
        started = time.monotonic()
        cp.restart()
        startup_ms = (time.monotonic() - started) * 1000
        if cp.worker("POST", "/register", {"worker_id": "probe", "capabilities": []})[0] != 200:
            raise SystemExit("claim-probe: the worker could not register")
        if args.retry_limit:
            hold_one_retry_job(cp)
        want = 204 if args.retry_limit else 200
        times = []
        for _ in range(args.claims):
            t0 = time.perf_counter()
            status, body = cp.worker("GET", "/next-job?worker_id=probe")
            times.append((time.perf_counter() - t0) * 1000)
            if status != want:
                raise SystemExit(f"claim-probe: GET /next-job answered {status}, not {want}: {body}")
        times.sort()
        return {"jobs": args.jobs, "priorities": args.priorities, "age_s": args.age, "old_job": args.old_job,
                "retry_limit": args.retry_limit, "classes": args.classes, "created_by": args.created_by,
                "aging_window": args.aging_window, "claims": len(times),
                "median_ms": statistics.median(times), "p90_ms": times[(len(times) * 9) // 10 - 1],
                "max_ms": times[-1], "startup_ms": startup_ms}
    finally:
        t.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--jobs", type=int, default=200000, help="PENDING jobs in the queue (default 200000)")
    ap.add_argument("--priorities", type=int, default=40, help="distinct priorities among them (default 40)")
    ap.add_argument("--age", type=int, default=7200, help="seconds since the first was submitted (default 7200)")
    ap.add_argument("--old-job", action="store_true", help="one more job, submitted a week ago, at priority 0")
    ap.add_argument("--retry-limit", action="store_true", help="retry jobs, a worker at its limit (see below)")
    ap.add_argument("--classes", type=int, default=1, help="classes of requirements (default 1, see below)")
    ap.add_argument("--created-by", help="an older entropy-control that creates the database (see below)")
    ap.add_argument("--claims", type=int, default=21, help="claims timed (default 21)")
    ap.add_argument("--aging-window", default="5min", help="entropy-control --aging-window (default 5min)")
    ap.add_argument("--control-binary", help="this entropy-control instead of the build tree's")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    if args.jobs < 1 or args.priorities < 1 or args.claims < 1 or args.classes < 1 or args.age < 0:
        ap.error("--jobs, --priorities, --classes and --claims must be at least 1, --age at least 0")
    if not args.retry_limit and args.claims > args.jobs // args.classes:
        ap.error("--claims must not exceed the jobs the worker can take, --jobs / --classes")
    r = probe(args)
    if args.json:
        print(json.dumps(r))
        return
    shape = f"{r['jobs']} jobs of {r['priorities']} priorities, the first {r['age_s']} s old"
    if r["old_job"]:
        shape += ", one a week old at priority 0"
    if r["retry_limit"]:
        shape += ", all retry jobs, the worker at its retry limit (empty polls)"
    if r["classes"] > 1:
        shape += f", {r['classes']} classes, {r['classes'] - 1} of them ones the worker cannot take"
    if r["created_by"]:
        shape += f"; the database created by {r['created_by']}"
    print(f"claim-probe: {shape}; aging window {r['aging_window']}")
    print(f"  start-up   {r['startup_ms']:.0f} ms to READY=1")
    print(f"  claims     median {r['median_ms']:.3f} ms, p90 {r['p90_ms']:.3f} ms, max {r['max_ms']:.3f} ms "
          f"(n={r['claims']})")


if __name__ == "__main__":
    main()
