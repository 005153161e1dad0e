#!/usr/bin/env python3
"""The failure table across hosts: the control plane and each worker in a network namespace of
its own, joined by veth links (10.231.0.0/24, private to the namespaces). A partition takes a
worker's link down for a chosen time; a power cut kills every process in a worker's namespace at
once (with the crash VFS, its unsynced SQLite writes are gone). Needs root: otherwise every test
here is skipped with "needs root". As root, anything else that stops the namespaces (no ip, no
CAP_SYS_ADMIN) is a failure ("Bail out!"), not a skip. The namespaces are removed after each test,
whatever happens."""

import time

from faultlib import NetFleet, recovery_bound, require_binaries, require_netns, run, span, test

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


@test
def test_partition_shorter_than_lease(t):
    opts = {"lease-timeout": "3s", "heartbeat-timeout": "3s", "disconnect-timeout": "1s"}
    fleet = NetFleet(t, workers=2, control=opts)
    job_id = fleet.submit(fleet.job(3))
    job = fleet.wait_running(job_id)
    victim = job["worker_id"]
    fleet.partition(victim)
    deadline = time.monotonic() + 1.0  # a partition of 1s, a third of the lease
    t.wait_for(lambda: time.monotonic() >= deadline, 2, "the partition to last 1s")
    fleet.partition(victim, down=False)
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
