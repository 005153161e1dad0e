#!/usr/bin/env python3
"""The failure table across hosts: the control plane and each worker in a network namespace of
its own, joined by veth links (10.231.0.0/24, private to the namespaces). A partition takes a
worker's link down for a chosen time; a power cut kills every process in a worker's namespace at
once (with the crash VFS, its unsynced SQLite writes are gone). Needs root: otherwise every test
here is skipped with "needs root". As root, anything else that stops the namespaces (no ip, no
CAP_SYS_ADMIN) is a failure ("Bail out!"), not a skip. The namespaces are removed after each test,
whatever happens."""

import time

from faultlib import (TIME_SCALE, NetFleet, ms, recovery_bound, require_binaries, require_netns, run, span,
                      test)

require_binaries("entropy-control", "entropy-worker")
require_netns()


def wait_gone_from(fleet, job_id, worker, timeout):
    fleet.t.wait_for(lambda: fleet.cp.job(job_id)["worker_id"] != worker, timeout,
                     f"job {job_id} to leave {worker}")


@test
def test_network_drop_mid_job_replays_completion(t):
    # Leases long enough that the job finishes during the partition: its completion waits in the
    # worker's replay buffer and is replayed, once, when the link comes back.
    slow = {"lease-timeout": "20s", "heartbeat-timeout": "20s", "disconnect-timeout": "1s"}
    fleet = NetFleet(t, workers=1, control=slow)
    w = fleet.workers["w1"]
    job_id = fleet.submit(fleet.job(1))
    fleet.wait_running(job_id)
    fleet.partition("w1")
    t.wait_for(lambda: w.outbox(job_id, "pending"), 10, "the completion to be buffered")
    t.eq(fleet.cp.job(job_id)["status"], "RUNNING", "the control plane has not heard of it yet")
    fleet.partition("w1", down=False)
    healed = time.monotonic()
    fleet.cp.wait_job_state(job_id, "COMPLETED", timeout=15)
    took = time.monotonic() - healed
    # The worker retries with backoff capped at backoff-max, each try bounded by request-timeout.
    bound = span(w.options["backoff-max"]) + 2 * span(w.options["request-timeout"]) + 1.0
    t.ok(took <= bound, f"replayed {took:.2f}s after the link came back (bound {bound:.2f}s)")
    t.wait_for(lambda: w.outbox(job_id, "accepted"), 10, "the worker to see it accepted")
    t.eq(len(fleet.events(job_id, "job.completed")), 1, "applied exactly once")
    fleet.finish()


def worker_event_after(fleet, worker, event, after):
    """The first `event` of `worker` at or after `after` (Unix seconds, as GET /events), or None."""
    evs = sorted(fleet.cp.events(event=event, worker_id=worker, limit=1000), key=lambda e: e["id"])
    return next((e for e in evs if e["ts"] >= after), None)


@test
def test_partition_shorter_than_lease(t):
    # The link stays down until the control plane has felt the partition (no heartbeat for
    # disconnect-timeout: worker.disconnected), which must happen well inside the lease, and only
    # then comes back. The lease and the heartbeat timeout scale with TIME_SCALE.
    lease = 4.0 * TIME_SCALE
    opts = {"lease-timeout": ms(lease), "heartbeat-timeout": ms(lease), "disconnect-timeout": "1s"}
    fleet = NetFleet(t, workers=2, control=opts)
    job_id = fleet.submit(fleet.job(3))
    job = fleet.wait_running(job_id)
    victim = job["worker_id"]
    cut = time.time()
    fleet.partition(victim)
    # At most half a lease (wait_for scales its timeout by TIME_SCALE, as the lease is).
    t.wait_for(lambda: worker_event_after(fleet, victim, "worker.disconnected", cut), 2.0,
               f"the control plane to see {victim} disconnected, within half a lease")
    felt = worker_event_after(fleet, victim, "worker.disconnected", cut)["ts"]
    t.eq(fleet.cp.job(job_id)["status"], "RUNNING", "the job is still RUNNING while the worker is cut off")
    fleet.partition(victim, down=False)
    healed = time.time()
    t.ok(healed - cut < lease / 2, f"the partition was felt after {felt - cut:.2f}s and healed after "
                                   f"{healed - cut:.2f}s, inside half the lease ({lease:.1f}s)")
    t.wait_for(lambda: worker_event_after(fleet, victim, "worker.online", felt), 10,
               f"{victim} to be back online after the partition")
    done = fleet.cp.wait_job_state(job_id, "COMPLETED", timeout=15)
    t.eq(done["attempt_count"], 1, "one attempt: the job kept running through the short partition")
    t.eq(done["worker_id"], victim, "completed by the worker that was cut off")
    t.eq(fleet.events(job_id, "job.lost"), [], "never LOST")
    fleet.finish()


@test
def test_partition_longer_than_lease(t):
    fleet = NetFleet(t, workers=2)
    job_id = fleet.submit(fleet.job(2.5, max_attempts=5))
    job = fleet.wait_running(job_id)
    victim = job["worker_id"]
    cut = time.time()
    fleet.partition(victim)
    bound = recovery_bound(fleet.control_options)
    t.wait_for(lambda: fleet.first_event_after(job_id, ("job.requeued",), cut), bound * 3,
               "the job to be claimable again")
    back = fleet.first_event_after(job_id, ("job.requeued",), cut)["ts"]
    t.ok(back - cut <= bound, f"claimable again {back - cut:.2f}s after the partition (bound {bound:.2f}s)")
    w = fleet.workers[victim]
    t.wait_for(lambda: [r for r in w.runs(job_id) if r["outcome"] == "lease-expired"], 10,
               "the cut-off worker to stop the job itself")
    stopped = [r for r in w.runs(job_id) if r["outcome"] == "lease-expired"][0]["ended_at"] / 1e6
    lost = fleet.first_event_after(job_id, ("job.lost", "job.requeued"), cut)["ts"]
    t.ok(stopped < lost, f"the worker stopped the job ({stopped:.3f}) before the control plane took it back "
                         f"({lost:.3f})")
    fleet.cp.wait_job_state(job_id, "COMPLETED", timeout=20)
    fleet.partition(victim, down=False)  # heals: its buffered failure of the old assignment is refused
    t.wait_for(lambda: not w.outbox(job_id, "pending"), 15, "the cut-off worker's buffer to drain")
    fleet.finish()


@test
def test_power_cut_of_a_host(t):
    fleet = NetFleet(t, workers=2)
    ids = [fleet.submit(fleet.job(2)) for _ in range(2)]
    t.wait_for(lambda: all(fleet.cp.job(j)["status"] == "RUNNING" for j in ids), 10, "both jobs running")
    victim = fleet.cp.job(ids[0])["worker_id"]
    held = [j for j in ids if fleet.cp.job(j)["worker_id"] == victim]
    fleet.power_cut(victim)
    cut = time.time()
    bound = recovery_bound(fleet.control_options)
    for j in held:
        t.wait_for(lambda: fleet.first_event_after(j, ("job.requeued",), cut), bound * 3, "requeue")
        back = fleet.first_event_after(j, ("job.requeued",), cut)["ts"]
        t.ok(back - cut <= bound, f"job {j} claimable again {back - cut:.2f}s after the cut (bound {bound:.2f}s)")
    fleet.workers[victim].start()
    fleet.wait_all_terminal(timeout=30)
    fleet.finish()


if __name__ == "__main__":
    run()
