#!/usr/bin/env python3
"""test-dashboard: the dashboard at /ui in headless Chromium against a live control plane.

The control plane serves the dashboard from the source tree's ui/ (--ui-directory). Simulated
workers (plain HTTP with the worker token, as entropy-worker would) register and heartbeat with
CPU, memory and GPU metrics (one GPU with a uuid, one without); fixture jobs are created in
several states. Then tests/browser/dashboard-test.mjs (playwright-core driving Debian's
/usr/bin/chromium, never a downloaded browser) checks that the page loads without console errors,
lists those jobs and workers, shows each GPU by its index and, when it has one, its uuid, follows
a new job from PENDING to COMPLETED live, aborts a job with its button, drains a worker, and saves
a screenshot to $ENTROPY_BUILDDIR/test-artifacts/dashboard.png.

playwright-core is installed into the build tree from tests/browser/package-lock.json with
`npm ci`; npm's cache makes later runs work offline. When node, npm or chromium is absent, or the
driver cannot be installed (offline with an empty cache), the test is skipped without root; as
root (CI, where scripts/install-deps.sh installed them) that is a failure.
"""

import filecmp
import json
import os
import shutil
import subprocess

from entropy_test import (ADMIN_TOKEN, BUILDDIR, SRCDIR, TIME_SCALE, WORKER_TOKEN, TestFailure,
                          missing_dependency, require_tool, run, test)

NO_NEW_WORK = "disk nearly full (12.0 MiB free for the state directory)"
CHROMIUM = os.environ.get("ENTROPY_CHROMIUM", "/usr/bin/chromium")
BROWSER_SRC = os.path.join(SRCDIR, "tests", "browser")
BROWSER_DIR = os.path.join(BUILDDIR, "tests", "browser")
ARTIFACTS = os.path.join(BUILDDIR, "test-artifacts")
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
GPU_UUID = "GPU-5d2b6a77-0b9a-4c1e-9f3a-2b7c8d9e0f12"

# Workers must stay ONLINE for the whole run (drain needs it), so no fast timeouts here.
OPTIONS = {
    "lease-timeout": "60s",
    "disconnect-timeout": "60s",
    "heartbeat-timeout": "120s",
    "ui-directory": os.path.join(SRCDIR, "ui"),
}


def check_tools():
    require_tool("node", "nodejs")
    require_tool("npm", "npm")
    require_tool(CHROMIUM, "chromium")


def install_driver():
    """npm ci from the committed lock file, only when the installed one differs from it."""
    os.makedirs(BROWSER_DIR, exist_ok=True)
    for name in ("package.json", "package-lock.json", "dashboard-test.mjs"):
        shutil.copyfile(os.path.join(BROWSER_SRC, name), os.path.join(BROWSER_DIR, name))
    installed_lock = os.path.join(BROWSER_DIR, "node_modules", ".entropy-lock.json")
    module = os.path.join(BROWSER_DIR, "node_modules", "playwright-core", "package.json")
    lock = os.path.join(BROWSER_DIR, "package-lock.json")
    if os.path.exists(module) and os.path.exists(installed_lock) and filecmp.cmp(lock, installed_lock, shallow=False):
        return
    env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1", npm_config_update_notifier="false")
    try:
        p = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"],
                           cwd=BROWSER_DIR, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        missing_dependency("npm ci for playwright-core timed out")
    if p.returncode != 0:
        missing_dependency("cannot install playwright-core with npm ci (offline with an empty npm cache?): "
                           + (p.stderr.strip().splitlines() or ["no output"])[-1])
    shutil.copyfile(lock, installed_lock)


def register(cp, worker_id, caps, metrics, **about):
    status, body = cp.worker("POST", "/register", {"worker_id": worker_id, "capabilities": caps, **about})
    if status != 200:
        raise TestFailure(f"register {worker_id}: {status} {body}")
    status, body = cp.worker("POST", "/heartbeat", {"worker_id": worker_id, "seq": 1, "metrics": metrics})
    if status != 200:
        raise TestFailure(f"heartbeat {worker_id}: {status} {body}")


def run_to_completion(t, cp, worker_id):
    """Submits a job and runs it through the simulated worker; returns its id."""
    job_id = cp.submit("sha256sum", args=["input.txt"], priority=10)
    status, claim = cp.worker("GET", f"/next-job?worker_id={worker_id}")
    t.require(status == 200 and claim["job_id"] == job_id, f"claim the fixture job: {status} {claim}")
    triple = {"job_id": job_id, "worker_id": worker_id, "assignment_id": claim["assignment_id"]}
    status, body = cp.worker("POST", "/ack", triple)
    t.require(status == 200, f"ack: {status} {body}")
    done = dict(triple, completion_seq=1, exit_code=0, result_summary="ok",
                stdout_path="/var/lib/entropy/out/stdout", stdout_tmp_path="/var/lib/entropy/out/stdout.tmp",
                stdout_sha256=SHA)
    status, body = cp.worker("POST", "/complete", done)
    t.require(status == 200, f"complete: {status} {body}")
    return job_id


@test
def test_dashboard_in_chromium(t):
    cp = t.control_plane(options=OPTIONS)
    gpu_metrics = {"cpu_load1": 1.25, "cpu_count": 16, "mem_used_bytes": 6 * 2**30, "mem_total_bytes": 32 * 2**30,
                   # As entropy-worker sends them (worker/host-metrics.c), but the first has no uuid:
                   # nvidia-smi gave none, or the heartbeat had no room for it.
                   "gpus": [{"index": 0, "name": "test GPU", "utilization_pct": 37,
                             "memory_used_bytes": 3 * 2**30, "memory_total_bytes": 24 * 2**30},
                            {"index": 1, "uuid": GPU_UUID, "name": "test GPU", "utilization_pct": 80,
                             "memory_used_bytes": 20 * 2**30, "memory_total_bytes": 80 * 2**30}]}
    # As entropy-worker says it while its state directory is nearly full (worker/worker.c).
    gpu_metrics["no_new_work"] = NO_NEW_WORK
    register(cp, "w-gpu", ["gpu"], gpu_metrics, version="0.9.1", slots=2)
    register(cp, "w-cpu", ["cpu"], {"cpu_load1": 0.5, "cpu_count": 4, "mem_used_bytes": 2**30,
                                    "mem_total_bytes": 8 * 2**30})

    completed = run_to_completion(t, cp, "w-cpu")
    # Pending jobs nobody can claim (no worker has "tpu"), so that claims in the browser test
    # get exactly the job it submits.
    abortable = cp.submit("sleep", args=["600"], requirements=["tpu"])
    searchable = cp.submit("render-frames", args=["--scene", "unique-scene-name"], requirements=["tpu"])

    os.makedirs(ARTIFACTS, exist_ok=True)
    screenshot = os.path.join(ARTIFACTS, "dashboard.png")
    if os.path.exists(screenshot):
        os.unlink(screenshot)
    profile = os.path.join(t.tmp, "chromium-profile")
    os.makedirs(profile)
    fixture = {
        "jobs": [completed, abortable, searchable],
        "workers": ["w-gpu", "w-cpu"],
        "completed": completed,
        "stdout_sha256": SHA,
        "abortable": abortable,
        "searchable": searchable,
        "search_term": "unique-scene-name",
        "gpu_worker": "w-gpu",
        "gpu_text": "GPU0: 37%",
        # Each GPU of gpu_worker as shown: its text, its tooltip and its data-gpu-uuid.
        "gpus_shown": [{"text": "GPU0: 37% 3.0 GiB/24 GiB", "title": None, "uuid": None},
                       {"text": "GPU1 (GPU-5d2b6a77\u2026): 80% 20 GiB/80 GiB", "title": GPU_UUID, "uuid": GPU_UUID}],
        "gpu_cell": "GPU0: 37% 3.0 GiB/24 GiB, GPU1 (GPU-5d2b6a77\u2026): 80% 20 GiB/80 GiB",
        "gpu_worker_about": "version 0.9.1, 2 slots",
        "worker_for_claims": "w-cpu",
        "drainable": "w-gpu",
        "no_new_work_worker": "w-gpu",
        "no_new_work": NO_NEW_WORK,
    }
    env = dict(os.environ, ENTROPY_URL=cp.url, ENTROPY_ADMIN_TOKEN=ADMIN_TOKEN, ENTROPY_WORKER_TOKEN=WORKER_TOKEN,
               ENTROPY_FIXTURE=json.dumps(fixture), ENTROPY_CHROMIUM=CHROMIUM, ENTROPY_SCREENSHOT=screenshot,
               ENTROPY_PROFILE=profile, ENTROPY_TIMEOUT_MS=str(int(15000 * TIME_SCALE)),
               ENTROPY_TOTAL_TIMEOUT_MS=str(int(180000 * TIME_SCALE)))
    try:
        p = subprocess.run(["node", os.path.join(BROWSER_DIR, "dashboard-test.mjs")], cwd=BROWSER_DIR, env=env,
                           capture_output=True, text=True, timeout=240 * TIME_SCALE)
    except subprocess.TimeoutExpired as e:
        raise TestFailure(f"the browser test did not finish: {e.stdout}")
    # The browser test's own TAP, as diagnostics of this one.
    for line in p.stdout.splitlines():
        print(f"# browser: {line}")
        if line.startswith("not ok") or line.startswith("Bail out!"):
            t.failures.append(f"browser: {line}")
    if p.returncode != 0 and not t.failures:
        t.failures.append(f"the browser test exited with {p.returncode}: {p.stderr.strip()[-2000:]}")
    t.ok(os.path.exists(screenshot), f"screenshot saved as {screenshot}")


if __name__ == "__main__":
    check_tools()
    install_driver()
    run()
