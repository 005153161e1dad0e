#!/usr/bin/env python3
"""Integration tests of entropy-worker against the real entropy-control on 127.0.0.1."""

import contextlib
import json
import os
import re
import resource
import signal
import sqlite3
import sys
import time

from entropy_test import (ADMIN_TOKEN, FAST_CONTROL, WORKER_TOKEN, TestFailure, binary, fill_file_system,
                          nofile_limited, nofile_limits, run, small_tmpfs, span, test)
from worker_harness import (WorkerProcess, children_named, free_udp_port, gate_loop, keeper_of, logged_runs,
                            overlapping, paused, require_daemons, run_intervals, send_wake, sha256_file, timed_job,
                            udp_port_bound, wake_datagram)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "faults"))
from proxy import FaultProxy  # noqa: E402

require_daemons()


LEASE = span(FAST_CONTROL["lease-timeout"])
# A small tmpfs (4 MiB) is below the default min-free-space: where one stands for a disk that fills
# up, the worker takes jobs until it is full.
SMALL_DISK = {"min-free-space": "1048576"}


def submit(cp, spec=None, **fields):
    body = dict(spec or {})
    body.update(fields)
    return cp.submit(**body)


def wait_running_on(t, cp, job_id, worker_id, timeout=10.0):
    box = {}

    def cond():
        box["j"] = cp.job(job_id)
        return box["j"]["status"] == "RUNNING" and box["j"]["worker_id"] == worker_id
    t.wait_for(cond, timeout, f"job {job_id} RUNNING on {worker_id}", lambda: str(box.get("j")))
    return box["j"]


def events_of(cp, job_id, event):
    return [e for e in cp.events(job_id=job_id, limit=1000) if e["event"] == event]


def stall_share_copy(shared, job_id, assignment_id):
    """The copy of a job's stdout to the share opens <share>/<job>/<assignment>/stdout.tmp: a FIFO
    there stalls it (open() waits for a reader), as a hung network share would. Returns its path."""
    where = os.path.join(shared, job_id, assignment_id)
    os.makedirs(where)
    fifo = os.path.join(where, "stdout.tmp")
    os.mkfifo(fifo)
    return fifo


def answer_share_copy(t, fifo):
    """A reader lets the stalled copy go on (it then fails: a FIFO cannot be fsynced). Non-blocking:
    a blocking open would wait for ever for a worker that never opens the FIFO. The few bytes of
    stdout fit in the pipe's buffer; the end is kept open until the test is over."""
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    t.cleanups.append(lambda: os.close(reader))


# -- execution ------------------------------------------------------------------------------------

@test
def test_job_output_and_checksums_arrive(t):
    cp = t.control_plane()
    WorkerProcess(t, cp, "w1").start()
    job_id = submit(cp, command="sh", args=["-c", "echo hello; echo oops >&2; exit 0"])
    job = cp.wait_job_state(job_id, "COMPLETED")
    t.eq(job["exit_code"], 0, "exit code reported")
    t.ok(job.get("stdout_path") and os.path.exists(job["stdout_path"]), f"stdout file exists: {job.get('stdout_path')}")
    if job.get("stdout_path") and os.path.exists(job["stdout_path"]):
        with open(job["stdout_path"]) as f:
            t.eq(f.read(), "hello\n", "stdout content")
        t.eq(job.get("stdout_sha256"), sha256_file(job["stdout_path"]), "stdout checksum matches the file")
        t.eq(job.get("stderr_sha256"), sha256_file(job["stderr_path"]), "stderr checksum matches the file")
        t.ok(not os.path.exists(job["stdout_path"] + ".tmp"), "no tmp file left")
    t.eq(len(events_of(cp, job_id, "job.completed")), 1, "completed exactly once")


@test
def test_a_job_that_puts_a_link_in_place_of_its_output_fails(t):
    """The job runs as the worker's user: it can reach its own stdout file through /proc and put a
    symbolic link to another file in its place. The worker neither hashes nor reports that file."""
    cp = t.control_plane()
    secret = os.path.join(t.tmp, "secret")
    with open(secret, "w") as f:
        f.write("not the job's output\n")
    WorkerProcess(t, cp, "w1").start()
    job_id = submit(cp, command="sh", max_attempts=1,
                    args=["-c", f'p=$(readlink /proc/$$/fd/1); echo mine; rm "$p"; ln -s {secret} "$p"'])
    job = cp.wait_job_state(job_id, "FAILED")
    t.ok("replaced while the job ran" in (job.get("last_error") or ""),
         f"the failure says why: {job.get('last_error')}")
    t.ok(job.get("stdout_sha256") in (None, ""), f"no checksum recorded: {job.get('stdout_sha256')}")


@test
def test_shared_backend_publishes_under_the_job_id(t):
    """--artifact-backend=shared: the outputs land in <shared>/<job_id>/<assignment_id>/ (an NFS
    mount, say), complete and checksummed, and those are the paths the control plane records."""
    shared = os.path.join(t.tmp, "shared")
    os.makedirs(shared)
    cp = t.control_plane()
    WorkerProcess(t, cp, "w1", options={"artifact-backend": "shared", "shared-directory": shared}).start()
    job_id = submit(cp, command="sh", args=["-c", "echo to-the-share; echo err >&2"])
    job = cp.wait_job_state(job_id, "COMPLETED")
    where = os.path.join(shared, job_id, job["assignment_id"])
    t.eq(job.get("stdout_path"), os.path.join(where, "stdout"), "the recorded stdout is the shared copy")
    t.ok(os.path.isfile(os.path.join(where, "stderr")), "stderr published beside it")
    t.ok(not any(n.endswith(".tmp") for n in os.listdir(where)), "no tmp file left in the share")
    with open(os.path.join(where, "stdout")) as f:
        t.eq(f.read(), "to-the-share\n", "the shared copy is complete")
    t.eq(job.get("stdout_sha256"), sha256_file(os.path.join(where, "stdout")), "its checksum is the one recorded")
    t.eq(job.get("artifact_backend"), "shared", "artifact_backend reported")


@test
def test_lease_is_renewed_while_a_slow_shared_copy_finishes(t):
    """A job whose process has exited holds its assignment until its result is recorded: while
    its outputs are copied to a stalled share for longer than a lease, the heartbeats keep that
    lease, and the job completes in its first attempt instead of running again."""
    shared = os.path.join(t.tmp, "shared")
    gate, exited = os.path.join(t.tmp, "gate"), os.path.join(t.tmp, "exited")
    cp = t.control_plane()
    WorkerProcess(t, cp, "w1", options={"artifact-backend": "shared", "shared-directory": shared}).start()
    job_id = submit(cp, command="sh", args=["-c", f"{gate_loop(gate)}; echo out; : > {exited}"])
    job = wait_running_on(t, cp, job_id, "w1")
    fifo = stall_share_copy(shared, job_id, job["assignment_id"])
    open(gate, "w").close()
    try:
        t.wait_for(lambda: os.path.exists(exited), 10, "the job's process to finish")
        stalled_until = time.monotonic() + 2 * LEASE
        while time.monotonic() < stalled_until:
            job = cp.job(job_id)
            if job["status"] != "RUNNING":
                break
            time.sleep(0.1)  # sampling the job's state over two lease lengths
        t.eq((job["status"], job["attempt_count"]), ("RUNNING", 1),
             f"still RUNNING in its first attempt {2 * LEASE:.1f}s after its process exited")
    finally:
        answer_share_copy(t, fifo)
    job = cp.wait_job_state(job_id, "COMPLETED")
    t.eq(job["attempt_count"], 1, "completed in its first attempt")
    t.eq(len(events_of(cp, job_id, "job.completed")), 1, "completed exactly once")
    t.eq(events_of(cp, job_id, "job.lost"), [], "never taken back")


@test
def test_job_env_has_its_ids_and_never_the_token(t):
    cp = t.control_plane()
    WorkerProcess(t, cp, "w1", env={"ENTROPY_PRIVATE_SETTING": "x", "SNEAKY": "pre-" + WORKER_TOKEN,
                                    "KEEP_ME": "yes"}).start()
    job_id = submit(cp, command="env")
    job = cp.wait_job_state(job_id, "COMPLETED")
    with open(job["stdout_path"]) as f:
        env = f.read()
    t.ok(WORKER_TOKEN not in env, "the worker token is not in the job's environment")
    t.ok(f"ENTROPY_JOB_ID={job_id}\n" in env, "ENTROPY_JOB_ID set")
    t.ok(f"ENTROPY_ASSIGNMENT_ID={job['assignment_id']}\n" in env, "ENTROPY_ASSIGNMENT_ID set")
    t.ok("ENTROPY_ATTEMPT=" in env, "ENTROPY_ATTEMPT set")
    for bad in ("ENTROPY_PRIVATE_SETTING", "ENTROPY_TOKEN_FILE", "NOTIFY_SOCKET", "SNEAKY"):
        t.ok(bad not in env, f"{bad} scrubbed")
    t.ok("KEEP_ME=yes" in env, "ordinary variables kept")


@test
def test_the_worker_raises_its_limit_on_open_files_and_its_jobs_get_the_one_it_was_given(t):
    """Each run holds descriptors until its result is recorded, so a worker with many slots needs
    more than the default soft limit of 1024: it raises its soft limit to the hard one. Its jobs
    start with the soft limit the worker was given (a select() loop breaks past 1024), through
    entropy-keeper, which starts them."""
    hard = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 4096)
    t.require(hard > 256, f"a hard limit on open files above 256 to start the worker with (have {hard})")
    cp = t.control_plane()
    w = WorkerProcess(t, cp, "w1", wrapper=nofile_limited(256, hard)).start()
    t.eq(nofile_limits(w.proc.pid), (hard, hard), "the worker's soft limit is raised to the hard one")
    t.wait_for(lambda: keeper_of(w), 10, "entropy-keeper to start")
    t.eq(nofile_limits(keeper_of(w)), (256, hard), "entropy-keeper has the limits the worker was given")
    job_id = submit(cp, command="sh", args=["-c", "ulimit -Sn; ulimit -Hn"])
    job = cp.wait_job_state(job_id, "COMPLETED")
    with open(job["stdout_path"]) as f:
        t.eq(f.read().split(), ["256", str(hard)], "the job has the limits the worker was given")


@test
def test_heartbeats_report_cpu_memory_and_gpu_figures(t):
    """GET /workers shows what the worker's heartbeats say of its host, GPUs from nvidia-smi."""
    smi = os.path.join(t.tmp, "nvidia-smi")
    with open(smi, "w") as f:
        f.write("#!/bin/sh\necho '0, Test GPU, 37, 2048, 16384'\necho '1, Test GPU, 5, 0, 16384'\n")
    os.chmod(smi, 0o755)
    cp = t.control_plane()
    WorkerProcess(t, cp, "w1", options={"nvidia-smi": smi, "heartbeat-interval": "200ms"}).start()
    box = {}

    def reported():
        status, workers = cp.admin("GET", "/workers")
        box["workers"] = workers
        m = (workers[0].get("heartbeat_metrics") or {}) if status == 200 and workers else {}
        box["m"] = m
        return len(m.get("gpus") or []) == 2
    t.wait_for(reported, 10, "heartbeat metrics with two GPUs in GET /workers", lambda: str(box.get("workers")))
    m = box["m"]
    t.ok(m.get("cpu_count", 0) >= 1 and m.get("cpu_load1", -1) >= 0, f"CPU count and load: {m}")
    t.ok(0 < m.get("mem_used_bytes", 0) <= m.get("mem_total_bytes", 0), "memory used within total")
    g0 = m["gpus"][0]
    t.eq((g0["index"], g0["utilization_pct"], g0["memory_used_bytes"], g0["memory_total_bytes"]),
         (0, 37, 2048 << 20, 16384 << 20), "the first GPU's utilisation and memory")


@test
def test_heartbeat_metrics_of_many_gpus_stay_within_the_limit(t):
    """A host with more GPUs than 4096 bytes of metrics can describe: the heartbeats carry the
    figures of as many as fit, without their names, and how many are left out; the control plane
    stores them. They used to be larger than the limit, and the control plane refused every
    heartbeat (and the leases it renews), now it drops such metrics."""
    smi = os.path.join(t.tmp, "nvidia-smi")
    with open(smi, "w") as f:
        f.write("#!/bin/sh\ni=0\nwhile [ $i -lt 40 ]; do\n"
                "  echo \"$i, NVIDIA GeForce RTX 3060 Lite Hash Rate, 100, 11804, 12288\"\n  i=$((i + 1))\ndone\n")
    os.chmod(smi, 0o755)
    cp = t.control_plane()
    WorkerProcess(t, cp, "w1", options={"nvidia-smi": smi}).start()
    box = {}

    def reported():
        status, workers = cp.admin("GET", "/workers")
        box["m"] = (workers[0].get("heartbeat_metrics") or {}) if status == 200 and workers else {}
        return "gpus" in box["m"] or "dropped" in box["m"]
    t.wait_for(reported, 10, "heartbeat metrics in GET /workers", lambda: str(box.get("m")))
    m = box["m"]
    t.ok("dropped" not in m, f"the control plane stored the metrics: {m}")
    gpus = m.get("gpus") or []
    t.ok(len(gpus) >= 30, f"the figures of {len(gpus)} of the 40 GPUs")
    t.eq(m.get("gpus_omitted", 0) + len(gpus), 40, "gpus_omitted counts the others")
    t.ok(len(json.dumps(m, separators=(",", ":"))) <= 4096, "the metrics are within 4096 bytes")


class HeartbeatRefusingProxy(FaultProxy):
    """The control plane behind a proxy that answers every /heartbeat with a 400, as the control
    plane answers a heartbeat it cannot take."""

    BODY = b'{"error":"field \'metrics\' is not what it should be"}'

    def __init__(self, t, cp):
        super().__init__(cp.port)
        self.refused = 0
        self.start()
        t.cleanups.append(self.stop)

    async def _forward(self, raw):
        if raw.split(b" ", 2)[1].split(b"?", 1)[0] != b"/heartbeat":
            return await super()._forward(raw)
        self.refused += 1
        return (b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(self.BODY)).encode() + b"\r\n\r\n" + self.BODY)


@test
def test_refused_heartbeat_is_a_warning_at_most_once_a_minute(t):
    """A heartbeat refused with a 400 renews no lease, and the control plane refuses the next ones
    the same way: the worker says so at warning level (it was debug), once, not at every beat."""
    cp = t.control_plane()
    proxy = HeartbeatRefusingProxy(t, cp)
    w = WorkerProcess(t, cp, "w1", options={"control-url": proxy.url, "log-level": "warning"}).start()
    t.wait_for(lambda: proxy.refused >= 5, 10, "five heartbeats refused", lambda: str(proxy.refused))
    lines = [line for line in w.log_text().splitlines() if "Heartbeat refused" in line]
    t.eq(len(lines), 1, f"one warning for {proxy.refused} refused heartbeats: {lines}")
    t.ok(lines and "HTTP 400" in lines[0] and "is not what it should be" in lines[0],
         f"it gives the status and the control plane's reason: {lines}")


@test
def test_two_slots_run_two_jobs_at_once(t):
    cp = t.control_plane()
    log = os.path.join(t.tmp, "runs.log")
    w = WorkerProcess(t, cp, "w1", options={"slots": "2", "gpus": "0,1"}).start()
    jobs = [submit(cp, timed_job(log, 1, tag=f"job{i}-$CUDA_VISIBLE_DEVICES")) for i in range(2)]
    for j in jobs:
        cp.wait_job_state(j, "COMPLETED", timeout=15)
    runs = logged_runs(log)
    t.eq(len(runs), 2, f"two runs logged: {runs}")
    iv = [(s, e, tag) for tag, (s, e) in runs.items()]
    t.ok(overlapping(iv) is not None, f"the two runs overlapped in time: {iv}")
    t.eq(sorted(tag.split("-")[1] for tag in runs), ["0", "1"], "each slot had its own GPU")
    t.ok(any("jobs 2/2" in m for m in w.status_messages), "status showed both slots busy")
    status, workers = cp.admin("GET", "/workers")
    listed = [x for x in workers if x["worker_id"] == "w1"][0]
    t.ok("gpu" in listed["capabilities"], f"gpu capability announced: {listed['capabilities']}")
    t.eq((listed.get("slots"), listed.get("gpus")), (2, ["0", "1"]), "its slots and GPUs are listed")
    version = t.run_cmd([binary("entropy-worker"), "--version"]).stdout.split()[-1]
    t.eq(listed.get("version"), version, "its version is listed, as --version prints it")


GPU_UUIDS = ("GPU-5d4c3b2a-1f0e-4d9c-8b7a-6e5f4d3c2b1a", "GPU-0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")


def fake_nvidia_smi(t):
    """An nvidia-smi that lists the two GPUs of GPU_UUIDS."""
    smi = os.path.join(t.tmp, "nvidia-smi")
    with open(smi, "w") as f:
        f.write("#!/bin/sh\n[ \"$1\" = -L ] || exit 1\n"
                f"echo 'GPU 0: NVIDIA A100-SXM4-40GB (UUID: {GPU_UUIDS[0]})'\n"
                f"echo 'GPU 1: NVIDIA A100-SXM4-40GB (UUID: {GPU_UUIDS[1]})'\n")
    os.chmod(smi, 0o755)
    return smi


def slot_gpus_seen(t, cp, w, n):
    """Runs n jobs at once on w; [(ENTROPY_SLOT, CUDA_VISIBLE_DEVICES or "unset")] they saw, sorted."""
    log = os.path.join(t.tmp, "runs.log")
    jobs = [submit(cp, timed_job(log, 1, tag=f"job{i}:$ENTROPY_SLOT:${{CUDA_VISIBLE_DEVICES-unset}}"))
            for i in range(n)]
    for j in jobs:
        cp.wait_job_state(j, "COMPLETED", timeout=15)
    return sorted(tuple(tag.split(":")[1:]) for tag in logged_runs(log))


def worker_capabilities(cp, worker_id):
    status, workers = cp.admin("GET", "/workers")
    return [x for x in workers if x["worker_id"] == worker_id][0]["capabilities"]


@test
def test_slots_get_the_gpus_nvidia_smi_lists_by_uuid(t):
    """Slot i's job gets the UUID of the i-th GPU `nvidia-smi -L` lists in CUDA_VISIBLE_DEVICES. It
    used to get the N of /dev/nvidia<N>, a device minor that CUDA does not know: in a container
    given /dev/nvidia2 and /dev/nvidia3, CUDA_VISIBLE_DEVICES=2 named no GPU at all."""
    cp = t.control_plane()
    w = WorkerProcess(t, cp, "w1", options={"slots": "2", "nvidia-smi": fake_nvidia_smi(t)}).start()
    t.eq(slot_gpus_seen(t, cp, w, 2), [("0", GPU_UUIDS[0]), ("1", GPU_UUIDS[1])],
         "slot 0 ran on the first GPU, slot 1 on the second")
    t.ok("gpu" in worker_capabilities(cp, "w1"), "gpu capability announced")


@test
def test_the_workers_own_cuda_visible_devices_gives_the_slots_their_gpus(t):
    """An operator who sets CUDA_VISIBLE_DEVICES for the worker (Environment= in a drop-in) keeps
    its jobs on those GPUs: the slots share out what it names, in its order, and not every GPU
    nvidia-smi lists (the jobs used to get those, the worker's own variable being scrubbed)."""
    cp = t.control_plane()
    w = WorkerProcess(t, cp, "w1", options={"slots": "2", "nvidia-smi": fake_nvidia_smi(t)},
                      env={"CUDA_VISIBLE_DEVICES": f"{GPU_UUIDS[1]}, 3,-1,0"}).start()
    t.eq(slot_gpus_seen(t, cp, w, 2), [("0", GPU_UUIDS[1]), ("1", "3")],
         "slot 0 got the first GPU named, slot 1 the second; nothing from the -1 on")
    t.ok("gpu" in worker_capabilities(cp, "w1"), "gpu capability announced")
    t.ok("CUDA sees no GPU from '-1,0' on" in w.log_text(), "the worker said where the list stops")


@test
def test_a_cuda_visible_devices_naming_no_gpu_hides_them_from_jobs(t):
    """CUDA_VISIBLE_DEVICES=-1 on the worker hides the host's GPUs: it announces no gpu capability,
    and its jobs get the variable as it is, so that CUDA hides them from the jobs too."""
    cp = t.control_plane()
    w = WorkerProcess(t, cp, "w1", options={"nvidia-smi": fake_nvidia_smi(t)},
                      env={"CUDA_VISIBLE_DEVICES": "-1"}).start()
    t.eq(slot_gpus_seen(t, cp, w, 1), [("0", "-1")], "the job saw CUDA_VISIBLE_DEVICES=-1")
    t.ok("gpu" not in worker_capabilities(cp, "w1"), "no gpu capability")


@test
def test_gpus_none_hides_the_gpus_from_jobs(t):
    """--gpus=none: the worker gives out no GPU, so its jobs get CUDA_VISIBLE_DEVICES=-1 (they had
    no variable, and CUDA showed them every GPU of the host), and it announces no gpu capability."""
    cp = t.control_plane()
    w = WorkerProcess(t, cp, "w1", options={"gpus": "none", "nvidia-smi": fake_nvidia_smi(t)}).start()
    t.eq(slot_gpus_seen(t, cp, w, 1), [("0", "-1")], "the job saw CUDA_VISIBLE_DEVICES=-1")
    t.ok("gpu" not in worker_capabilities(cp, "w1"), "no gpu capability")


@test
def test_gpus_setting_wins_over_the_workers_cuda_visible_devices(t):
    """--gpus is the worker's own setting: it overrides the variable."""
    cp = t.control_plane()
    w = WorkerProcess(t, cp, "w1", options={"gpus": "5"}, env={"CUDA_VISIBLE_DEVICES": "1"}).start()
    t.eq(slot_gpus_seen(t, cp, w, 1), [("0", "5")], "the job got --gpus's GPU")


@test
def test_timeout_sigterm_then_sigkill_fails_with_reason(t):
    cp = t.control_plane()
    w = WorkerProcess(t, cp, "w1", options={"kill-grace": "300ms"}).start()
    # Ignores SIGTERM (and so does its sleep, which inherits the ignored disposition).
    job_id = submit(cp, command="sh", args=["-c", "trap '' TERM; sleep 30"], timeout_ms=300, max_attempts=1)
    job = cp.wait_job_state(job_id, "FAILED", timeout=10)
    t.ok("timed out" in (job.get("last_error") or ""), f"reason given: {job.get('last_error')}")
    runs = w.runs(job_id)
    t.eq([r["outcome"] for r in runs], ["timeout"], "run recorded as timed out")
    if runs:
        took = (runs[0]["ended_at"] - runs[0]["started_at"]) / 1e6
        t.ok(0.3 <= took < 3.0, f"stopped after timeout + grace ({took:.2f}s)")


# -- policy ---------------------------------------------------------------------------------------

@test
def test_command_allowlist_refuses_and_runs_nothing(t):
    cp = t.control_plane()
    marker = os.path.join(t.tmp, "marker")
    WorkerProcess(t, cp, "w1", options={"command-allowlist": "echo"}).start()
    job_id = submit(cp, command="touch", args=[marker], max_attempts=2)
    job = cp.wait_job_state(job_id, "FAILED", timeout=15)
    t.ok("allowlist" in (job.get("last_error") or ""), f"clear reason: {job.get('last_error')}")
    t.ok(not os.path.exists(marker), "nothing ran")
    ok_id = submit(cp, command="echo", args=["fine"])
    cp.wait_job_state(ok_id, "COMPLETED")


@test
def test_workdir_allowlist_refuses_symlink_escape(t):
    cp = t.control_plane()
    allowed = os.path.join(t.tmp, "allowed")
    outside = os.path.join(t.tmp, "outside")
    os.makedirs(allowed)
    os.makedirs(outside)
    os.symlink(outside, os.path.join(allowed, "link"))
    WorkerProcess(t, cp, "w1", options={"workdir-allowlist": allowed}).start()
    bad = submit(cp, command="pwd", working_dir=os.path.join(allowed, "link"), max_attempts=1)
    good = submit(cp, command="pwd", working_dir=allowed)
    job = cp.wait_job_state(bad, "FAILED")
    t.ok("outside the allowlist" in (job.get("last_error") or ""), f"reason: {job.get('last_error')}")
    job = cp.wait_job_state(good, "COMPLETED")
    with open(job["stdout_path"]) as f:
        t.eq(f.read().strip(), allowed, "allowed job ran in its directory")


@test
def test_refuse_root(t):
    cp = t.control_plane()
    marker = os.path.join(t.tmp, "marker")
    WorkerProcess(t, cp, "w1", options={"refuse-root": "yes"}).start()
    job_id = submit(cp, command="touch", args=[marker], max_attempts=1)
    if os.geteuid() == 0:
        job = cp.wait_job_state(job_id, "FAILED")
        t.ok("root" in (job.get("last_error") or ""), f"reason: {job.get('last_error')}")
        t.ok(not os.path.exists(marker), "nothing ran as root")
    else:
        cp.wait_job_state(job_id, "COMPLETED")
        t.ok(os.path.exists(marker), "a non-root worker runs the job")


@test
def test_dry_run_writes_simulated_artifacts_runs_nothing(t):
    cp = t.control_plane()
    marker = os.path.join(t.tmp, "marker")
    w = WorkerProcess(t, cp, "w1", options={"dry-run": "yes"}).start()
    job_id = submit(cp, command="touch", args=[marker])
    job = cp.wait_job_state(job_id, "COMPLETED")
    t.ok(not os.path.exists(marker), "nothing ran")
    with open(job["stdout_path"]) as f:
        text = f.read()
    t.ok("dry run" in text and "touch" in text, f"simulated output: {text!r}")
    t.eq([r["outcome"] for r in w.runs(job_id)], ["dry-run"], "run recorded as a dry run")


# -- crashes, partitions, leases -------------------------------------------------------------------

@test
def test_worker_kill9_job_reruns_on_second_worker_within_bound(t):
    cp = t.control_plane()
    log = os.path.join(t.tmp, "runs.log")
    a = WorkerProcess(t, cp, "wa").start()
    job_id = submit(cp, timed_job(log, 2))
    wait_running_on(t, cp, job_id, "wa")
    t.wait_for(lambda: logged_runs(log), 5, "the first run to start")
    # The second worker is up and polling before the crash, so the bound measures the control
    # plane's recovery, not how long a worker takes to start on a loaded machine.
    WorkerProcess(t, cp, "wb").start()
    a.kill9()
    killed_at = time.monotonic()
    wait_running_on(t, cp, job_id, "wb", timeout=10)
    took = time.monotonic() - killed_at
    # heartbeat timeout 1.5s + reconcile tick 0.1s + first retry backoff (0.1s, jitter) + a poll
    # 0.1s; 1s of slack for scheduling.
    bound = 1.5 + 0.1 + 0.2 + 0.1 + 1.0
    t.ok(took <= bound, f"rerun on the second worker {took:.2f}s after the crash (bound {bound}s)")
    cp.wait_job_state(job_id, "COMPLETED", timeout=10)
    runs = logged_runs(log)
    ended = [tag for tag, (s, e) in runs.items() if e is not None]
    t.eq(len(ended), 1, f"only the second run finished; the crashed worker's job died with it: {runs}")


# Leases that outlast the control plane's downtime in the replay tests below.
SLOW_LEASES = {"lease-timeout": "20s", "heartbeat-timeout": "20s", "disconnect-timeout": "10s"}


def completion_buffered(t, state_dir=None, options=None):
    """A control plane (stopped) and a worker whose job completed while it was down: returns them
    and the job id once the completion waits in the worker's replay buffer."""
    cp = t.control_plane(options=SLOW_LEASES)
    w = WorkerProcess(t, cp, "w1", state_dir=state_dir, options=options).start()
    job_id = submit(cp, timed_job(os.path.join(t.tmp, "log"), 1))
    wait_running_on(t, cp, job_id, "w1")
    cp.stop()
    t.wait_for(lambda: w.outbox(job_id, "pending"), 10, "the completion to wait in the replay buffer")
    return cp, w, job_id


@test
def test_control_plane_down_completion_replayed_once(t):
    cp, w, job_id = completion_buffered(t)
    cp.restart()
    cp.wait_job_state(job_id, "COMPLETED", timeout=10)
    t.wait_for(lambda: w.outbox(job_id, "accepted"), 10, "the buffered completion to be accepted")
    t.eq(len(events_of(cp, job_id, "job.completed")), 1, "applied exactly once")


@test
def test_both_down_completion_replayed_through_reconnect(t):
    cp, w, job_id = completion_buffered(t)
    w.kill9()
    cp.restart()
    w.start()  # same state directory: a new instance that replays through /reconnect
    cp.wait_job_state(job_id, "COMPLETED", timeout=10)
    t.wait_for(lambda: w.outbox(job_id, "accepted"), 10, "the replayed completion to be accepted")
    t.eq(len(events_of(cp, job_id, "job.completed")), 1, "applied exactly once")
    t.ok("accepted" in w.log_text(), "the worker logged the answer")


@test
def test_a_worker_starts_on_a_full_disk_and_replays_what_it_holds(t):
    """A worker whose disk filled up while it was down still starts: the result waiting in its
    replay buffer is delivered and the job completes once. It used to refuse to start (the replay
    buffer's first write, a block of heartbeat seqs, failed), holding the result until an operator
    made room. The answer to it, which the full disk cannot take either, is kept in memory rather
    than asked for again and again. No new job is taken until there is room: its result would not
    fit either."""
    state = os.path.join(t.tmp, "w1-state")
    small_tmpfs(t, state)
    cp, w, job_id = completion_buffered(t, state_dir=state, options=SMALL_DISK)
    w.kill9()
    t.require(fill_file_system(os.path.join(state, "filler")) > 0, "the state directory's file system filled up")
    cp.restart()
    w.start()
    job = cp.wait_job_state(job_id, ["COMPLETED", "FAILED"], timeout=15)
    t.eq((job["status"], job["attempt_count"]), ("COMPLETED", 1), "the replayed completion was applied")
    t.eq(len(events_of(cp, job_id, "job.completed")), 1, "applied exactly once")
    w.wait_log("cannot record the answer to result")
    # The next job is left to other workers while the disk is full.
    second = submit(cp, command="true")
    w.wait_log("less than min-free-space (1.0 MiB): taking no new job until there is more.")
    w.wait_status(lambda s: "disk nearly full" in s and "no new work" in s)
    wait_polls(t, cp, "w1")
    t.eq(cp.job(second)["status"], "PENDING", "no job taken on the full disk")
    t.eq(w.log_text().lower().count(f"result of job {job_id} (assignment"), 1,
         "the answer the disk cannot take is kept in memory: the result is not sent again and again")
    os.unlink(os.path.join(state, "filler"))
    t.eq(cp.wait_job_state(second, ["COMPLETED", "FAILED"], timeout=15)["status"], "COMPLETED",
         "with room again, the worker takes the job and it completes")
    t.ok("again: taking jobs." in w.log_text(), "the worker says it takes jobs again")
    t.wait_for(lambda: w.outbox(job_id, "accepted"), 10, "the kept answer to be written")


def worker_metrics(cp, worker_id):
    status, workers = cp.admin("GET", "/workers")
    if status != 200:
        raise TestFailure(f"GET /workers: {status} {workers}")
    return next((w.get("heartbeat_metrics") or {} for w in workers if w["worker_id"] == worker_id), {})


def no_new_work_gauge(cp):
    status, text = cp.admin("GET", "/metrics")
    m = re.search(r"^entropy_workers_no_new_work (\d+)$", text if status == 200 else "", re.M)
    return int(m.group(1)) if m else None


def list_workers_table(t, cp):
    r = t.run_cmd([binary("entropyctl"), "--no-pager", f"--url={cp.url}", "list-workers"],
                  env={"ENTROPY_ADMIN_TOKEN": ADMIN_TOKEN})
    t.eq(r.returncode, 0, f"entropyctl list-workers: {r.stderr}")
    return r.stdout


@test
def test_a_worker_short_of_disk_space_takes_no_job_until_there_is_room(t):
    """Below min-free-space in its state directory the worker takes no new job (the job's outputs
    and result might not fit, and it would hold the job until they did) and says why in its
    status, its log, and its heartbeats, so that the control plane's operator sees it too: in
    GET /workers, `entropyctl list-workers` and the entropy_workers_no_new_work metric. With room
    again, here by a lower setting on reload, it takes work at once and the note goes."""
    cp = t.control_plane()
    conf = os.path.join(t.tmp, "worker.conf")
    with open(conf, "w") as f:
        f.write(f"[worker]\nmin-free-space = {2 ** 62}\n")
    w = WorkerProcess(t, cp, "w1", options={"config": conf}).start()
    job_id = submit(cp, command="true")
    w.wait_log("less than min-free-space (4.0 EiB): taking no new job until there is more.")
    w.wait_status(lambda s: "disk nearly full" in s and "no new work" in s)
    wait_polls(t, cp, "w1")
    t.eq(cp.job(job_id)["status"], "PENDING", "no job taken")
    metrics = worker_metrics(cp, "w1")
    t.ok("disk nearly full" in metrics.get("no_new_work", ""), f"the heartbeats say why: {metrics}")
    t.ok(isinstance(metrics.get("state_free_bytes"), int) and metrics["state_free_bytes"] > 0,
         f"and how much room the state directory has: {metrics}")
    t.eq(no_new_work_gauge(cp), 1, "the metric counts the worker")
    table = list_workers_table(t, cp)
    t.ok("no new work: disk nearly full" in table, f"entropyctl list-workers shows it: {table}")
    with open(conf, "w") as f:
        f.write("[worker]\nmin-free-space = 1048576\n")
    w.signal(signal.SIGHUP)
    t.eq(cp.wait_job_state(job_id, ["COMPLETED", "FAILED"])["status"], "COMPLETED", "the job runs once there is room")
    t.ok("again: taking jobs." in w.log_text(), "and the worker says it takes jobs again")
    wait_polls(t, cp, "w1")
    t.ok("no_new_work" not in worker_metrics(cp, "w1"), "its heartbeats no longer say it takes no work")
    t.eq(no_new_work_gauge(cp), 0, "nor does the metric")
    t.ok("no new work" not in list_workers_table(t, cp), "nor entropyctl")


@test
def test_lost_resolve_is_replayed_and_answered_again(t):
    # The worker marks a result accepted with a commit that has no fsync of its own
    # (worker/replay.h): a power cut can lose it. The result is then pending again at the next
    # start; it is sent again, the control plane answers ACCEPTED for what it already applied, and
    # nothing is applied twice.
    cp = t.control_plane()
    w = WorkerProcess(t, cp, "w1").start()
    job_id = submit(cp, command="true")
    cp.wait_job_state(job_id, "COMPLETED")
    t.wait_for(lambda: w.outbox(job_id, "accepted"), 10, "the completion to be marked accepted")
    t.eq(w.stop(), 0, "worker stopped")
    # What a power cut before the next fsync leaves behind: the result committed, its resolve not.
    con = sqlite3.connect(os.path.join(w.state_dir, "worker.db"))
    with con:
        con.execute("UPDATE outbox SET state = 'pending', resolved_at = NULL WHERE job_id = ?", (job_id,))
    con.close()
    w.start()
    t.wait_for(lambda: w.outbox(job_id, "accepted"), 10, "the replayed completion to be answered ACCEPTED again")
    t.eq(cp.job(job_id)["status"], "COMPLETED", "the job is still COMPLETED")
    t.eq(len(events_of(cp, job_id, "job.completed")), 1, "applied exactly once")


@test
def test_unrenewable_lease_stops_job_before_reassignment(t):
    cp = t.control_plane()
    log = os.path.join(t.tmp, "runs.log")
    a = WorkerProcess(t, cp, "wa").start()
    # Three lease lengths: the job must still run when the lease stop comes, however long the
    # second worker takes to start on a loaded machine.
    job_id = submit(cp, timed_job(log, 3 * LEASE), max_attempts=5)
    wait_running_on(t, cp, job_id, "wa")
    b = WorkerProcess(t, cp, "wb").start()
    with paused(cp):
        # No renewal gets through: wa must stop the job on its own, inside the lease.
        t.wait_for(lambda: [r for r in a.runs(job_id) if r["outcome"] == "lease-expired"], 5,
                   "wa to stop the job when its lease could not be renewed")
    cp.wait_job_state(job_id, "COMPLETED", timeout=20)
    runs = run_intervals(a.runs(job_id) + b.runs(job_id))
    t.ok(len(runs) >= 2, f"the job ran again after the stop: {runs}")
    t.eq(overlapping(runs), None, f"no two runs overlap: {runs}")
    # A run stopped by its worker never logs its end: its worker's run record has it.
    recorded_end = {r[2]: r[1] for r in runs}
    logged = [(s, e if e else recorded_end.get(tag, float("inf")), tag) for tag, (s, e) in logged_runs(log).items()]
    t.eq(overlapping(logged), None, f"no overlap in the job's own timestamps: {logged}")
    first = runs[0]
    t.eq(first[3], "lease-expired", "the first run was stopped by its worker")
    taken = [e["ts"] for e in cp.events(job_id=job_id, limit=1000)
             if e["event"] in ("job.lost", "job.retrying", "job.requeued")]
    t.require(taken, "the control plane took the job back (job.lost, job.retrying or job.requeued)")
    t.ok(first[1] < min(taken), f"stopped ({first[1]:.3f}) before the control plane took it back "
                                f"({min(taken):.3f})")


@test
def test_one_slot_runs_one_job_at_a_time_and_reports_once_the_outputs_are_durable(t):
    # A one-slot worker runs one job's process at a time, and sends a job's POST /complete only
    # once its outputs are fsynced (worker/run.c, on_child_exit). The next GET /next-job may go
    # out meanwhile: test_a_finishing_job_leaves_its_slot_to_the_next_one.
    t.require_tool("strace", "strace")
    cp = t.control_plane()
    trace = os.path.join(t.tmp, "strace.out")
    w = WorkerProcess(t, cp, "w1")
    # LeakSanitizer cannot run under ptrace; the sanitizer build's other checks stay on.
    w.env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
    w.argv = ["strace", "-f", "-y", "-qq", "-s", "100", "-o", trace, "-e", "trace=fsync,sendto,send,write"] + w.argv
    w.start(timeout=20)
    ids = [submit(cp, command="sh", args=["-c", "echo out"]) for _ in range(2)]
    for job_id in ids:
        cp.wait_job_state(job_id, "COMPLETED", timeout=20)
    kill_traced_worker(w)
    w.proc.wait(timeout=15)
    with open(trace) as f:
        lines = f.read().splitlines()

    def first(pred, start=0):
        return next((i for i in range(start, len(lines)) if pred(lines[i])), None)
    ack = first(lambda l: "POST /ack" in l)
    out_fsync = first(lambda l: "fsync(" in l and "stdout.tmp" in l, ack or 0)
    complete = first(lambda l: "POST /complete" in l, ack or 0)
    order = [ack, out_fsync, complete]
    t.ok(None not in order and order == sorted(order),
         f"POST /ack < fsync(stdout.tmp) < POST /complete for the first job: {order}")
    runs = sorted((r["started_at"], r["ended_at"] or float("inf")) for r in w.runs())
    t.ok(all(a[1] <= b[0] for a, b in zip(runs, runs[1:])), f"one slot, one job at a time: {runs}")


# -- daemon behaviour -----------------------------------------------------------------------------

@test
def test_status_updates_are_rate_limited_and_end_on_the_current_state(t):
    # STATUS= changes several times per job; the worker sends at most one per 100ms
    # (WORKER_STATUS_INTERVAL), and the last one sent shows the state it ended in.
    cp = t.control_plane()
    w = WorkerProcess(t, cp, "w1").start()
    before = len(w.status_messages)
    started = time.monotonic()
    ids = [submit(cp, command="true") for _ in range(20)]
    for job_id in ids:
        cp.wait_job_state(job_id, "COMPLETED", timeout=20)
    t.wait_for(lambda: not w.outbox(state="pending"), 10, "every result to be delivered")

    def updates():
        with w.notify_cond:
            return [(m, at) for m, at in zip(w.status_messages[before:], w.status_times[before:]) if "STATUS=" in m]

    def current(m):
        return "jobs 0/1" in m and "0 result(s) to deliver" in m
    # The last update held back is due within 100ms: wait for it rather than for a fixed time.
    t.wait_for(lambda: updates() and current(updates()[-1][0]), 2, "a STATUS with the state it ended in",
               lambda: f"last: {updates()[-1:]}")
    sent = updates()
    elapsed = sent[-1][1] - started  # up to the arrival of the last one counted
    t.ok(len(sent) <= elapsed / 0.1 + 2, f"{len(sent)} STATUS updates in {elapsed:.2f}s for 20 jobs")


@test
def test_sigterm_wait_lets_the_job_finish(t):
    cp = t.control_plane()
    w = WorkerProcess(t, cp, "w1", options={"stop-mode": "wait"}).start()
    job_id = submit(cp, timed_job(os.path.join(t.tmp, "log"), 1))
    wait_running_on(t, cp, job_id, "w1")
    t.eq(w.stop(timeout=10), 0, "exit status 0")
    t.eq(cp.job(job_id)["status"], "COMPLETED", "the job finished and was reported before exit")


@test
def test_a_wait_stop_registers_again_when_the_control_plane_forgot_the_worker(t):
    """stop-mode=wait lets the running jobs finish. A control plane that forgets the worker
    meanwhile (its row gone: 403) used to end that: a stopping worker did not register again, its
    heartbeats stopped, and the job's lease ran out under it."""
    gate = os.path.join(t.tmp, "gate")
    os.mkfifo(gate)
    # No reconciler sweep meanwhile: it would find the job's worker gone and make the job LOST.
    cp = t.control_plane(options={"reconcile-interval": "1h"})
    w = WorkerProcess(t, cp, "w1", options={"stop-mode": "wait", "heartbeat-interval": "100ms"}).start()
    job_id = cp.submit("sh", args=["-c", f"read x < {gate}"], max_attempts=1)
    wait_running_on(t, cp, job_id, "w1")
    w.signal(signal.SIGTERM)
    w.wait_log("Stopping (stop-mode=wait)")
    # Behind the control plane's back (remove-worker refuses a worker that holds a job): its
    # next heartbeat gets a 403, while the job is still RUNNING under its lease.
    db = sqlite3.connect(cp.database, timeout=10)
    with db:
        db.execute("DELETE FROM workers WHERE worker_id = 'w1'")
    db.close()
    w.wait_log("does not know this worker any more")
    t.wait_for(lambda: w.log_text().count("Registered with") >= 2, 10, "the stopping worker to register again")
    fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"go\n")
    os.close(fd)
    t.eq(w.proc.wait(timeout=15), 0, "the worker exits 0 once its job is done and reported")
    job = cp.job(job_id)
    t.eq((job["status"], job.get("exit_code"), job.get("attempt_count")), ("COMPLETED", 0, 1),
         "the job finished in its one attempt")


@test
def test_sigterm_handback_returns_the_job(t):
    cp = t.control_plane()
    log = os.path.join(t.tmp, "log")
    w = WorkerProcess(t, cp, "w1", options={"stop-mode": "handback"}).start()
    job_id = submit(cp, timed_job(log, 30), max_attempts=3)
    wait_running_on(t, cp, job_id, "w1")
    started = time.monotonic()
    t.eq(w.stop(timeout=10), 0, "exit status 0")
    t.ok(time.monotonic() - started < 3, "stopped promptly")
    job = cp.job(job_id)
    t.ok(job["status"] in ("RETRYING", "PENDING"), f"job handed back: {job['status']}")
    t.ok("handed back" in (job.get("last_error") or ""), f"reason: {job.get('last_error')}")
    t.eq([r["outcome"] for r in w.runs(job_id)], ["handback"], "run recorded as handed back")


@test
def test_sighup_reloads_configuration(t):
    cp = t.control_plane()
    conf = os.path.join(t.tmp, "worker.conf")
    with open(conf, "w") as f:
        f.write("[worker]\ndry-run = yes\n")
    w = WorkerProcess(t, cp, "w1", options={"config": conf}).start()
    first = submit(cp, command="true")
    cp.wait_job_state(first, "COMPLETED")
    t.eq([r["outcome"] for r in w.runs(first)], ["dry-run"], "dry run from the file")
    with open(conf, "w") as f:
        f.write("[worker]\ndry-run = no\n")
    w.signal(signal.SIGHUP)
    w.wait_log("Configuration reloaded.")
    second = submit(cp, command="true")
    cp.wait_job_state(second, "COMPLETED")
    t.eq([r["outcome"] for r in w.runs(second)], ["exited"], "real run after the reload")


# -- wake-ups -------------------------------------------------------------------------------------

@test
def test_wake_datagram_starts_work_at_once(t):
    cp = t.control_plane()
    port = free_udp_port()
    w = WorkerProcess(t, cp, "w1", options={"poll-interval": "30s", "wake-listen": f"127.0.0.1:{port}"}).start()
    w.wait_log("No work offered")
    job_id = submit(cp, command="true")
    send_wake(port, wake_datagram("w1", token="wrong-token"))
    send_wake(port, wake_datagram("other-worker"))
    sent = time.monotonic()
    good = wake_datagram("w1")
    send_wake(port, good)
    cp.wait_job_state(job_id, "COMPLETED", timeout=5)
    t.ok(time.monotonic() - sent < 2, "started within a second or so of the wake-up, not the 30s poll")
    send_wake(port, good)  # a replay
    w.wait_log("Dropped a wake datagram: Operation already in progress")
    log = w.log_text()
    for reason in ("Operation not permitted", "Invalid cross-device link"):
        t.ok(f"Dropped a wake datagram: {reason}" in log, f"forged and misaddressed datagrams dropped ({reason})")
    # The control plane wakes the worker on the submission too (the worker registered its wake
    # port): its datagram and the good one, nothing else.
    t.ok(1 <= log.count("Woken up") <= 2, "forged, misaddressed and replayed datagrams ignored")


@test
def test_socket_activation_polls_runs_and_exits_when_idle(t):
    cp = t.control_plane()
    port = free_udp_port()
    activator = ["systemd-socket-activate", "--datagram", "-l", f"127.0.0.1:{port}", "-E", "NOTIFY_SOCKET"]
    w = WorkerProcess(t, cp, "w1", wrapper=activator, options={"poll-interval": "30s", "idle-exit": "1s"})
    w.expect_exit = True
    w.start(wait_ready=False)
    t.wait_for(lambda: udp_port_bound(port), 5, "the socket to be listening")
    job_id = submit(cp, command="echo", args=["woken"])
    send_wake(port, wake_datagram("w1"))
    w.wait_notify("READY=1")
    cp.wait_job_state(job_id, "COMPLETED", timeout=5)
    w.wait_log("Woken up")
    t.wait_for(lambda: w.proc.poll() is not None, 10, "the idle worker to exit")
    t.eq(w.proc.returncode, 0, "exit status 0 after idling")
    t.ok("socket-activated" in w.log_text(), "it knew it was socket-activated")



def kill_traced_worker(w):
    """SIGTERM to the worker itself: strace (the child we started) would only detach."""
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            if int(stat[stat.rindex(")") + 2:].split()[1]) == w.proc.pid:
                os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass


def traced_worker_pid(w):
    """The pid of the entropy-worker that strace (w.proc) runs."""
    workers = children_named(w.proc.pid, "entropy-worker")
    return workers[0] if workers else None


def keepers_of(worker_pid):
    """The children of the worker still in entropy-keeper's image: the keeper, and any job process
    it started that has not reached its exec."""
    return children_named(worker_pid, "entropy-keeper")


@contextlib.contextmanager
def worker_whose_chdir_stalls(t, path_check_timeout, lease_timeout):
    """A control plane and worker w1 under strace, which holds every chdir() into a directory for
    3 s: a job's working directory on a file system that stalls, between the path checks (which
    make no chdir()) and the job's exec. Yields (cp, w, the worker's pid, its entropy-keeper's pid,
    the directory). Leases long enough for a worker under strace, whose every system call stops for
    the tracer."""
    t.require_tool("strace", "strace")
    hung = os.path.realpath(os.path.join(t.tmp, "hung"))
    os.makedirs(hung)
    cp = t.control_plane(options={"lease-timeout": lease_timeout, "heartbeat-timeout": lease_timeout,
                                  "disconnect-timeout": f"{span(lease_timeout) / 2}s"})
    w = WorkerProcess(t, cp, "w1", options={"path-check-timeout": path_check_timeout})
    w.env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
    w.argv = ["strace", "-f", "-qq", "-o", os.devnull, "-P", hung, "-e", "inject=chdir:delay_enter=3000000"] + w.argv
    w.start(timeout=20)
    try:
        worker = t.wait_for(lambda: traced_worker_pid(w), 5, "the traced worker")
        keeper = t.wait_for(lambda: keepers_of(worker), 5, "its entropy-keeper")[0]
        yield cp, w, worker, keeper, hung
    finally:
        kill_traced_worker(w)
        w.proc.wait(timeout=30)


@test
def test_a_job_whose_start_hangs_fails_and_the_worker_goes_on(t):
    """The path checks passed, then the working directory stops answering before the job's exec
    (here strace holds entropy-keeper's chdir() into it for 3 s). The worker waited for
    entropy-keeper's answer without end: its loop froze until the watchdog killed it, and every
    job it ran with it. Now it waits path-check-timeout at most, then kills entropy-keeper and the
    stuck process, starts entropy-keeper again, and fails the job with the reason."""
    with worker_whose_chdir_stalls(t, "500ms", "10s") as (cp, w, worker, keeper, hung):
        job_id = submit(cp, command="true", working_dir=hung, max_attempts=1)
        seq = heartbeat_seq(cp, "w1")
        job = cp.wait_job_state(job_id, ["COMPLETED", "FAILED"], timeout=10)
        t.eq(job["status"], "FAILED", "the job whose start hangs fails")
        t.ok("its start did not return within 500ms" in (job["last_error"] or ""), f"saying why: {job['last_error']}")
        t.ok("did not start a job within 500ms" in w.log_text(), "the worker's log says what it did")
        # The killed process goes once the file system lets it (here: once strace does), and the
        # loop does not wait for that: heartbeats and the next job go on meanwhile.
        t.wait_for(lambda: heartbeat_seq(cp, "w1") >= seq + 3, 5, "heartbeats go on")
        other = submit(cp, command="true")
        t.eq(cp.wait_job_state(other, ["COMPLETED", "FAILED"], timeout=10)["status"], "COMPLETED",
             "the next job runs, started by the new entropy-keeper")
        t.wait_for(lambda: len(keepers_of(worker)) == 1 and keepers_of(worker) != [keeper], 10,
                   "only a new entropy-keeper left, the stuck process reaped",
                   detail=lambda: f"entropy-keeper images: {keepers_of(worker)}, the first one was {keeper}")


@test
def test_heartbeats_go_on_while_a_start_waits_for_its_file_system(t):
    """entropy-keeper answers a start once the job's exec has returned, and a working directory
    on a file system that stalls (here strace holds the chdir() into it for 3 s) holds that answer
    back. The worker used to wait for it in its loop: no heartbeat went out meanwhile (up to
    path-check-timeout, 20 s under the packaged units), so a worker with other jobs could miss
    their lease renewals and stop them itself. The loop reads the answer when it comes now:
    heartbeats go on during the stall, and the job runs once the file system answers."""
    with worker_whose_chdir_stalls(t, "30s", "20s") as (cp, w, worker, _, hung):
        job_id = submit(cp, command="true", working_dir=hung, max_attempts=1)
        t.wait_for(lambda: len(keepers_of(worker)) == 2, 10, "the job's process, stuck in chdir() before its exec")
        seq = heartbeat_seq(cp, "w1")
        t.wait_for(lambda: heartbeat_seq(cp, "w1") >= seq + 3, 2.5, "heartbeats go on while its start waits")
        t.eq(len(keepers_of(worker)), 2, "all within the stall: the job's process has not reached its exec yet")
        job = cp.wait_job_state(job_id, ["COMPLETED", "FAILED"], timeout=20)
        t.eq(job["status"], "COMPLETED", "the job runs once the file system answers")


@test
def test_a_job_aborted_while_its_start_waits_never_runs_on(t):
    """The control plane aborts a job whose start is held up by its file system (strace holds
    the chdir() into its working directory for 3 s). The worker gives it up at once; when the
    file system answers and the process reaches its exec, it is killed there, and the worker goes
    on with the next job."""
    with worker_whose_chdir_stalls(t, "30s", "20s") as (cp, w, worker, _, hung):
        job_id = submit(cp, command="sleep", args=["30.25"], working_dir=hung)
        t.wait_for(lambda: len(keepers_of(worker)) == 2, 10, "the job's process, stuck in chdir() before its exec")
        status, _ = cp.admin("POST", "/abort", {"job_id": job_id})
        t.eq(status, 200, "the job is aborted")
        t.wait_for(lambda: "given up before it started" in w.log_text(), 5, "the worker gives it up during the stall")
        t.wait_for(lambda: len(keepers_of(worker)) == 1, 10, "the stall ends")
        t.wait_for(lambda: not children_named(worker, "sleep"), 5, "its process, started after all, is killed at once")
        other = submit(cp, command="true")
        t.eq(cp.wait_job_state(other, ["COMPLETED", "FAILED"], timeout=10)["status"], "COMPLETED", "the next job runs")
        t.eq(cp.wait_job_state(job_id, ["ABORTED"], timeout=5)["status"], "ABORTED", "the aborted one stays so")


@test
def test_a_job_whose_paths_hang_fails_there_and_the_worker_goes_on(t):
    """A job whose working directory does not answer (a hung NFS or FUSE mount; here strace holds
    every system call on it for seconds) used to freeze the worker's loop in realpath(): no
    heartbeat and no other job until the watchdog killed it, and the same with the next attempt.
    The checks run on a thread now: heartbeats go on, the job fails on this worker after
    path-check-timeout (retryable: a worker whose file systems answer may run it), and other jobs
    run. With PREPARER_MAX_HUNG (4) checks still hanging, the worker takes no new job and says
    why, until they return."""
    t.require_tool("strace", "strace")
    hung = os.path.join(t.tmp, "hung")
    os.makedirs(hung)
    cp = t.control_plane()
    w = WorkerProcess(t, cp, "w1", options={"path-check-timeout": "300ms"})
    # LeakSanitizer cannot run under ptrace; the sanitizer build's other checks stay on.
    w.env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
    w.argv = ["strace", "-f", "-qq", "-o", os.devnull, "-P", hung, "-e", "inject=all:delay_enter=3000000"] + w.argv
    w.start(timeout=20)
    try:
        first = submit(cp, command="true", working_dir=hung, max_attempts=1)
        seq = heartbeat_seq(cp, "w1")
        job = cp.wait_job_state(first, ["COMPLETED", "FAILED"], timeout=10)
        t.eq(job["status"], "FAILED", "the job whose working directory hangs fails")
        t.ok("did not return within 300ms" in (job["last_error"] or ""), f"saying why: {job['last_error']}")
        t.wait_for(lambda: heartbeat_seq(cp, "w1") >= seq + 3, 2, "heartbeats while its check hangs")
        other = submit(cp, command="true")
        t.eq(cp.wait_job_state(other, ["COMPLETED", "FAILED"], timeout=2)["status"], "COMPLETED",
             "another job runs while the check hangs")
        more = [submit(cp, command="true", working_dir=hung, max_attempts=1) for _ in range(3)]
        for job_id in more:
            t.eq(cp.wait_job_state(job_id, ["COMPLETED", "FAILED"], timeout=10)["status"], "FAILED",
                 "each job whose working directory hangs fails")
        w.wait_log("taking no new job until they return.", timeout=5)
        w.wait_status(lambda m: "4 jobs' path checks hang" in m and "no new work" in m)
        t.wait_for(lambda: "4 jobs' path checks hang" in worker_metrics(cp, "w1").get("no_new_work", ""), 2,
                   "the heartbeats to say why no job is taken")
        held = submit(cp, command="true")
        wait_polls(t, cp, "w1")
        t.eq(cp.job(held)["status"], "PENDING", "no job taken while four checks hang")
        t.eq(cp.wait_job_state(held, ["COMPLETED", "FAILED"], timeout=20)["status"], "COMPLETED",
             "once they return the worker takes jobs again")
        t.ok("Hung path checks returned: taking jobs." in w.log_text(), "and says so")
    finally:
        kill_traced_worker(w)
        w.proc.wait(timeout=30)


@test
def test_result_the_replay_buffer_refuses_is_held_until_it_fits(t):
    """The worker's disk fills up while a job runs: the replay buffer cannot take the result. The
    worker keeps it, holds the job (its lease renewed past its first expiry, no new job taken) and
    records and delivers it once there is room again: the job completes in its first attempt."""
    state = os.path.join(t.tmp, "w1-state")
    small_tmpfs(t, state)
    cp = t.control_plane()
    w = WorkerProcess(t, cp, "w1", state_dir=state, options=SMALL_DISK).start()
    gate = os.path.join(t.tmp, "gate")
    job_id = submit(cp, command="sh", args=["-c", gate_loop(gate)])
    wait_running_on(t, cp, job_id, "w1")
    filler = os.path.join(state, "filler")
    t.require(fill_file_system(filler) > 0, "the state directory's file system filled up")
    open(gate, "w").close()
    w.wait_log(f"Job {job_id}: cannot record its result (exited) in the replay buffer")
    t.require("holding the job and trying again" in w.log_text(), "the worker holds the job")
    held = cp.job(job_id)
    second = submit(cp, command="true")
    t.wait_for(lambda: time.time() > held["assignment_expires_at"] + LEASE / 2, LEASE * 3,
               "the job's lease at the failure to run out")
    job = cp.job(job_id)
    t.eq((job["status"], job["assignment_id"]), ("RUNNING", held["assignment_id"]),
         "the job is still RUNNING in its first assignment after that lease")
    t.ok(job["assignment_expires_at"] > held["assignment_expires_at"], "its lease was renewed")
    t.eq(cp.job(second)["status"], "PENDING", "no new job taken meanwhile")
    t.eq(worker_metrics(cp, "w1").get("no_new_work"), "1 result(s) the replay buffer refused",
         "and the heartbeats say why")
    t.eq(w.outbox(job_id), [], "nothing in the outbox yet")

    os.unlink(filler)
    job = cp.wait_job_state(job_id, ["COMPLETED", "FAILED"], timeout=15)
    t.eq((job["status"], job["attempt_count"], job["exit_code"]), ("COMPLETED", 1, 0),
         "the job COMPLETED in its first attempt")
    # The control plane applies the result before the worker reads its answer and marks it.
    t.wait_for(lambda: [o["state"] for o in w.outbox(job_id)] == ["accepted"], 10, "its result recorded, then accepted",
               lambda: str(w.outbox(job_id)))
    t.eq(cp.wait_job_state(second, "COMPLETED", timeout=15)["status"], "COMPLETED", "then the worker took new work")


def heartbeat_seq(cp, worker_id):
    status, workers = cp.admin("GET", "/workers")
    return next((w.get("heartbeat_seq") or 0 for w in workers if w["worker_id"] == worker_id), 0) if status == 200 else 0


def wait_polls(t, cp, worker_id):
    """The worker polls every 100ms when it may: three of its heartbeats (200ms apart) leave it
    time for several polls."""
    seq = heartbeat_seq(cp, worker_id)
    t.wait_for(lambda: heartbeat_seq(cp, worker_id) >= seq + 3, 10, f"three more heartbeats from {worker_id}")


@test
def test_a_finishing_job_leaves_its_slot_to_the_next_one(t):
    """A job whose process has exited but whose outputs are still being finalized (here: copied to
    a share that does not answer) leaves its slot to the next job, so that a short job's claim
    and ack travel while the last result is recorded. Finishing runs are bounded all the same:
    with one run more than its slots a worker claims nothing and says why in its STATUS=, until
    a result is recorded. (Unbounded, a worker took job after job while the earlier ones
    waited for their outputs.)"""
    shared = os.path.join(t.tmp, "shared")
    gate, exited = os.path.join(t.tmp, "gate"), os.path.join(t.tmp, "exited")
    cp = t.control_plane()
    w = WorkerProcess(t, cp, "w1", options={"artifact-backend": "shared", "shared-directory": shared}).start()
    first = submit(cp, command="sh", args=["-c", f"{gate_loop(gate)}; echo out; : > {exited}"])
    job = wait_running_on(t, cp, first, "w1")
    # The second job's copy waits behind the stalled one (it is within its deadline), so two runs
    # are finishing then.
    fifo = stall_share_copy(shared, first, job["assignment_id"])
    exited2 = os.path.join(t.tmp, "exited2")
    second = submit(cp, command="sh", args=["-c", f": > {exited2}"])
    open(gate, "w").close()
    t.wait_for(lambda: os.path.exists(exited), 10, "the first job's process to finish")
    t.wait_for(lambda: os.path.exists(exited2), 10, "the second job claimed and run while the first one finishes")
    third = submit(cp, command="true")
    wait_polls(t, cp, "w1")
    t.eq([cp.job(j)["status"] for j in (first, second, third)], ["RUNNING", "RUNNING", "PENDING"],
         "both finishing jobs still held, the third not claimed")
    w.wait_status(lambda s: "2 job(s) finishing" in s and "no new work" in s, 5)
    answer_share_copy(t, fifo)
    for job_id in (first, second, third):
        cp.wait_job_state(job_id, "COMPLETED", timeout=15)
    exited_at, second_started = w.runs(first)[0]["ended_at"], w.runs(second)[0]["started_at"]
    t.ok(second_started >= exited_at, f"the second job started ({second_started}) after the first one's process "
                                      f"ended ({exited_at}): one process per slot")
    recorded = min(w.outbox(j)[0]["created_at"] for j in (first, second))
    started = w.runs(third)[0]["started_at"]
    t.ok(started >= recorded, f"the third job started ({started}) after a finishing job's result was recorded "
                              f"({recorded})")


@test
def test_finishing_runs_take_one_run_beyond_the_slots_at_most(t):
    """With two slots: one job finishing (its copy stalled), one running, and a third job claimed
    into the free slot makes three runs, one more than the slots. When the third exits a slot is
    free, but no fourth job is claimed until a finishing one is recorded."""
    shared = os.path.join(t.tmp, "shared")
    gate, gate_b = os.path.join(t.tmp, "gate"), os.path.join(t.tmp, "gate-b")
    exited_a, exited_c = os.path.join(t.tmp, "exited-a"), os.path.join(t.tmp, "exited-c")
    cp = t.control_plane()
    w = WorkerProcess(t, cp, "w1", options={"slots": "2", "artifact-backend": "shared",
                                            "shared-directory": shared}).start()
    a = submit(cp, command="sh", args=["-c", f"{gate_loop(gate)}; echo out; : > {exited_a}"])
    b = submit(cp, command="sh", args=["-c", gate_loop(gate_b)])
    job_a = wait_running_on(t, cp, a, "w1")
    wait_running_on(t, cp, b, "w1")
    fifo = stall_share_copy(shared, a, job_a["assignment_id"])
    c = submit(cp, command="sh", args=["-c", f": > {exited_c}"])
    open(gate, "w").close()
    t.wait_for(lambda: os.path.exists(exited_a) and os.path.exists(exited_c), 10,
               "the first job to exit and the third to be claimed and run into its slot")
    d = submit(cp, command="true")
    wait_polls(t, cp, "w1")
    t.eq([cp.job(j)["status"] for j in (a, b, c, d)], ["RUNNING", "RUNNING", "RUNNING", "PENDING"],
         "two finishing and one running: the free slot takes no fourth job")
    w.wait_status(lambda s: "2 job(s) finishing" in s and "no new work" in s, 5)
    answer_share_copy(t, fifo)
    open(gate_b, "w").close()
    for job_id in (a, b, c, d):
        cp.wait_job_state(job_id, "COMPLETED", timeout=15)


@test
def test_a_copy_to_a_hung_share_is_given_up_and_the_local_files_reported(t):
    """A shared directory that does not answer holds a finished job only so long: past the copy's
    deadline (four leases for a small output) the job completes in its first attempt with its
    local files, durable and hashed before the copy began, and the reason. While that copy hangs
    the next job's is not tried; once it has returned, copies are made again."""
    shared = os.path.join(t.tmp, "shared")
    gate = os.path.join(t.tmp, "gate")
    cp = t.control_plane()
    w = WorkerProcess(t, cp, "w1", options={"artifact-backend": "shared", "shared-directory": shared}).start()
    first = submit(cp, command="sh", args=["-c", f"{gate_loop(gate)}; echo out"])
    job = wait_running_on(t, cp, first, "w1")
    fifo = stall_share_copy(shared, first, job["assignment_id"])
    open(gate, "w").close()
    job = cp.wait_job_state(first, ["COMPLETED", "FAILED"], timeout=4 * LEASE + 10)
    t.eq((job["status"], job["attempt_count"], job.get("artifact_upload_state")), ("COMPLETED", 1, "failed"),
         "COMPLETED in its first attempt, the copy failed")
    t.ok("did not finish within" in (job.get("artifact_upload_error") or ""),
         f"the reason is given: {job.get('artifact_upload_error')}")
    t.ok((job.get("stdout_path") or "").startswith(w.state_dir + "/"), f"the local stdout reported: {job.get('stdout_path')}")
    if job.get("stdout_path") and os.path.exists(job["stdout_path"]):
        t.eq(job.get("stdout_sha256"), sha256_file(job["stdout_path"]), "its checksum matches the local file")
    t.eq(events_of(cp, first, "job.lost"), [], "never taken back")

    second = submit(cp, command="echo", args=["two"])
    job = cp.wait_job_state(second, ["COMPLETED", "FAILED"], timeout=2 * LEASE)
    t.eq((job["status"], job.get("artifact_upload_state")), ("COMPLETED", "failed"),
         "the next job COMPLETED at once, its copy not tried")
    t.ok("has not returned" in (job.get("artifact_upload_error") or ""), f"and why: {job.get('artifact_upload_error')}")

    # The share answers again: the hung copy goes on, fails and removes its tmp file, the FIFO.
    answer_share_copy(t, fifo)
    t.wait_for(lambda: not os.path.exists(fifo), 10, "the hung copy to return")
    third = submit(cp, command="echo", args=["three"])
    job = cp.wait_job_state(third, "COMPLETED")
    t.eq(job.get("artifact_upload_state"), "uploaded", "copies are made again")
    t.eq(job.get("stdout_path"), os.path.join(shared, third, job["assignment_id"], "stdout"), "to the share")


def replay_meta(w, key):
    rows = w._query("SELECT value FROM meta WHERE key = ?", (key,))
    return int(rows[0]["value"]) if rows else None


@test
def test_heartbeats_go_on_when_their_sequence_cannot_be_reserved(t):
    """Heartbeat seqs are reserved on disk a block of 1000 at a time. With the state directory
    full that write fails, and the heartbeats used to stop at the end of the block: every lease of
    the worker lapsed. They go on with seqs counted in memory, a running job keeps its lease across
    the end of the block, and the reservation is written once there is room again."""
    state = os.path.join(t.tmp, "w1-state")
    small_tmpfs(t, state)
    cp = t.control_plane()
    # 10ms apart (the shortest heartbeat-interval), the heartbeats reach the end of a block in 10s or so.
    w = WorkerProcess(t, cp, "w1", state_dir=state, options={"heartbeat-interval": "10ms", **SMALL_DISK}).start()
    gate = os.path.join(t.tmp, "gate")
    job_id = submit(cp, command="sh", args=["-c", gate_loop(gate)])
    held = wait_running_on(t, cp, job_id, "w1")
    filler = os.path.join(state, "filler")
    t.require(fill_file_system(filler) > 0, "the state directory's file system filled up")
    reserved = replay_meta(w, "heartbeat_seq_reserved")
    t.wait_for(lambda: heartbeat_seq(cp, "w1") > reserved, 60, f"a heartbeat past the reservation ({reserved})",
               lambda: f"heartbeat_seq {heartbeat_seq(cp, 'w1')}; {w.log_tail(3)}")
    crossed = time.time()
    t.ok("Cannot persist the heartbeat sequence numbers" in w.log_text(), "the reservation failed")
    t.eq(replay_meta(w, "heartbeat_seq_reserved"), reserved, "and was not written")
    t.wait_for(lambda: cp.job(job_id)["assignment_expires_at"] > crossed + LEASE, 3 * LEASE,
               "a renewal of the job's lease a lease length after the end of the reservation")
    job = cp.job(job_id)
    t.eq((job["status"], job["assignment_id"]), ("RUNNING", held["assignment_id"]),
         "the job is still RUNNING in its first assignment")

    os.unlink(filler)
    w.wait_log("Heartbeat sequence numbers are persisted again.")
    t.ok(replay_meta(w, "heartbeat_seq_reserved") > heartbeat_seq(cp, "w1"),
         "the reservation written covers the seqs sent meanwhile")
    open(gate, "w").close()
    job = cp.wait_job_state(job_id, ["COMPLETED", "FAILED"], timeout=15)
    t.eq((job["status"], job["attempt_count"]), ("COMPLETED", 1), "the job COMPLETED in its first attempt")


if __name__ == "__main__":
    run()
