#!/usr/bin/env python3
"""soak: every fault at random over thousands of jobs (not part of make check).

    ENTROPY_BUILDDIR=<build dir> tests/faults/soak.py --seed 1 --jobs 5000 --duration 10min

Three workers (two slots each) talk to the control plane through the fault proxy (delayed,
duplicated, reordered and stale messages all the time); every 1-3 s one more fault, chosen by the
seed: a worker kill -9, a power cut of a worker "host" (crash VFS: its unsynced SQLite writes are
lost), a partition shorter or longer than the lease (the proxy drops everything), a control-plane
kill -9 and restart, an abort. The seed is printed first: the same seed replays the same choices
(timing on a loaded machine still varies). Jobs require nothing, "a", "b" or both, in either
order; the first worker offers "a", the second "b", the others both, so that the claim's classes
(and their list, which a job re-enters on every requeue) are under the faults too. At the end everything is stopped and the invariant
checker runs over the whole history; the exit status is 1 if it found anything.
"""

import argparse
import json
import os
import random
import sys
import time

from faultlib import ADMIN_TOKEN, Fleet, span, TIME_SCALE  # noqa: F401
from entropy_test import Context, Http, TestFailure


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--duration", default="10min", help="time budget for submitting and running (span)")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    print(f"# soak seed {args.seed} (replay: {sys.argv[0]} --seed {args.seed} --jobs {args.jobs} "
          f"--duration {args.duration})", flush=True)
    rng = random.Random(args.seed)          # the faults: which, when, whom
    job_rng = random.Random(args.seed + 1)  # the jobs: kept apart so that faults replay alike
    req_rng = random.Random(args.seed + 2)  # their requirements
    budget = span(args.duration)
    if args.keep:
        os.environ["ENTROPY_KEEP_TMP"] = "1"
    t = Context("soak")
    faults = {}
    violations = ["did not finish"]
    stats = {}
    started = time.monotonic()
    try:
        fleet = Fleet(t, workers=0, worker_options={"slots": "2"},
                      control={"lease-timeout": "2s", "heartbeat-timeout": "2s", "disconnect-timeout": "1s"},
                      proxy={"seed": args.seed, "delay": 0.2, "max_delay": 0.2, "duplicate": 0.1, "stale": 0.05})
        for i in range(args.workers):
            caps = ["a", "b"][i] if i < 2 and args.workers > 2 else "a,b"
            fleet.add_worker(f"w{i + 1}", options={"capabilities": caps})
        lease = span(fleet.control_options["lease-timeout"])
        http = Http("127.0.0.1", fleet.cp.port, timeout=3)
        submitted = 0
        next_fault = time.monotonic() + rng.uniform(1, 3)
        heal_at = None
        down = []  # (time to restart, worker name)
        deadline = started + budget
        while time.monotonic() < deadline and (submitted < args.jobs or not all_done(fleet, http)):
            # Keep about 20 jobs queued.
            if submitted < args.jobs:
                depth = queue_depth(http)
                for _ in range(max(0, 20 - depth) if depth >= 0 else 0):
                    spec = fleet.job(job_rng.choice([0, 0, 0.05, 0.2, 0.5]),
                                     exit_code=1 if job_rng.random() < 0.05 else 0,
                                     max_attempts=job_rng.choice([1, 3, 5]),
                                     requirements=req_rng.choice([[], [], ["a"], ["b"], ["a", "b"], ["b", "a"]]))
                    try:
                        status, body = http.request("POST", "/jobs", spec, token=ADMIN_TOKEN)
                    except Exception:
                        http.close()
                        break
                    if status == 201:
                        fleet.ledger.submitted[body["job_id"]] = time.time()
                        submitted += 1
                    if submitted >= args.jobs:
                        break
            now = time.monotonic()
            for item in [d for d in down if d[0] <= now]:
                down.remove(item)
                fleet.workers[item[1]].start(timeout=20)
            if heal_at and now >= heal_at:
                fleet.proxy.set_blackhole(False)
                heal_at = None
            if now >= next_fault:
                next_fault = now + rng.uniform(1, 3)
                kind = rng.choice(["worker_kill9", "power_cut", "partition_short", "partition_long",
                                   "control_kill9", "abort"])
                up = [n for n, w in fleet.workers.items() if w.running()]
                if kind in ("worker_kill9", "power_cut") and up:
                    name = rng.choice(up)
                    (fleet.kill9_worker if kind == "worker_kill9" else fleet.power_cut)(name)
                    down.append((now + rng.uniform(0.2, 2 * lease), name))
                elif kind.startswith("partition") and heal_at is None:
                    fleet.proxy.set_blackhole(True)
                    heal_at = now + (rng.uniform(0.2, lease / 2) if kind == "partition_short"
                                     else rng.uniform(lease * 1.2, lease * 2))
                elif kind == "control_kill9":
                    fleet.kill9_control()
                    http.close()
                    fleet.restart_control()
                elif kind == "abort" and fleet.ledger.submitted:
                    job_id = rng.choice(list(fleet.ledger.submitted))
                    try:
                        if fleet.abort(job_id) not in (200, 409, 404):
                            kind = "abort_failed"
                    except Exception:
                        http.close()
                else:
                    kind = None
                if kind:
                    faults[kind] = faults.get(kind, 0) + 1
                    print(f"# {time.monotonic() - started:7.1f}s fault {kind}; {submitted} submitted", flush=True)
            time.sleep(0.05)  # pacing of the driver loop (bounded by the deadline above)
        fleet.proxy.set_blackhole(False)
        for _, name in down:
            fleet.workers[name].start(timeout=20)
        in_progress = False
        try:
            fleet.wait_all_terminal(timeout=120)
        except TestFailure as e:
            print(f"# {e}")
            in_progress = True
        http.close()
        stats = {}
        violations = fleet.finish(allow_in_progress=in_progress, stats=stats)
        stats["proxy"] = fleet.proxy.stats
    finally:
        t.close()
    elapsed = time.monotonic() - started
    print(f"# soak seed {args.seed}: {stats.get('jobs', 0)} jobs in {elapsed:.0f}s, faults {json.dumps(faults)}")
    print(f"# final states: " + json.dumps({k: v for k, v in stats.items() if k.startswith('final_')}))
    print(f"# audit events {stats.get('events')}, transitions {stats.get('transitions')}, runs {stats.get('runs')}, "
          f"stale calls refused {stats.get('stale_refused')}, proxy {json.dumps(stats.get('proxy'))}")
    f1 = sum(1 for x in violations if x.startswith("[F1]"))
    print(f"# violations: {len(violations)} ({f1} of them F1, see docs/reliability.md)")
    for x in violations[:50]:
        print(f"#   {x}")
    for x in [f for f in t.failures if not f.startswith("invariant: ")][:50]:
        print(f"#   {x}")
    return 1 if violations or t.failures else 0


def queue_depth(http):
    try:
        status, body = http.request("GET", "/jobs?status=PENDING&limit=1000", token=ADMIN_TOKEN)
    except Exception:
        http.close()
        return -1
    return len(body) if status == 200 else -1


def all_done(fleet, http):
    try:
        status, body = http.request("GET", f"/jobs?limit={max(1000, 2 * len(fleet.ledger.submitted))}",
                                    token=ADMIN_TOKEN)
    except Exception:
        http.close()
        return False
    if status != 200:
        return False
    st = {j["job_id"]: j["status"] for j in body}
    return all(st.get(j) in ("COMPLETED", "FAILED", "ABORTED") for j in fleet.ledger.submitted)


if __name__ == "__main__":
    sys.exit(main())
