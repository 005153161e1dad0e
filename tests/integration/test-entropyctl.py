#!/usr/bin/env python3
"""entropyctl against a real entropy-control, over D-Bus (a private dbus-daemon) and over HTTP
(--url): the same answers either way, JSON output that parses, tables with a legend, submit
--wait following a job to its end, the replay of a worker's results, a backup of the database
and its restore, and the documented exit codes."""

import importlib.util
import json
import os
import queue
import shutil
import signal
import sqlite3
import subprocess
import threading
import time

from entropy_test import (ADMIN_TOKEN, WORKER_TOKEN, TIME_SCALE, TestFailure, binary, free_port, require_tool, run,
                          socket_fds, test)
from tls_certs import CertFactory, TlsHttp, require_certtool

_spec = importlib.util.spec_from_file_location(
    "dbus_helpers", os.path.join(os.path.dirname(os.path.abspath(__file__)), "test-dbus-helpers.py"))
h = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(h)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_JOB_FAILED, EXIT_NOT_FOUND, EXIT_ACCESS, EXIT_UNREACHABLE = range(7)


class Ctl:
    """Runs entropyctl over one transport: D-Bus on the private bus, or HTTP with --url."""

    def __init__(self, t, bus, cp, http=False):
        self.t, self.bus, self.cp, self.http = t, bus, cp, http

    def argv(self, args):
        base = [binary("entropyctl"), "--no-pager"]
        if self.http:
            base += [f"--url={self.cp.url}", f"--token-file={self.cp.admin_token_file}"]
        return base + list(args)

    def env(self):
        return {"DBUS_SYSTEM_BUS_ADDRESS": self.bus.address if self.bus else "unix:path=/nonexistent",
                "ENTROPY_CONFIG": "", "ENTROPY_ADMIN_TOKEN": "", "ENTROPY_URL": "", "ENTROPY_OUTPUT": ""}

    def run(self, *args, env=None):
        e = self.env()
        e.update(env or {})
        return self.t.run_cmd(self.argv(args), env=e)

    def popen(self, *args):
        e = dict(os.environ)
        e.update(self.env())
        return subprocess.Popen(self.argv(args), env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def json(self, *args):
        r = self.run("--output=json", *args)
        if r.returncode != 0:
            raise AssertionError(f"entropyctl {' '.join(args)}: {r.returncode} {r.stderr}")
        return json.loads(r.stdout)


class Lines:
    """The lines a child prints on a pipe, read by a thread of their own so that waiting for them
    is bounded: a child that stays alive without printing, or exits, fails the test instead of
    hanging it."""

    def __init__(self, stream):
        self.queue = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        try:
            for line in iter(stream.readline, ""):
                self.queue.put(line)
        except (OSError, ValueError):
            pass
        self.queue.put(None)  # the end of the output

    def each(self, timeout, what, limit=10000):
        """Yields the lines as they come, until the caller stops; fails once `timeout` seconds have
        passed in all, the output ends or `limit` lines went by without the caller stopping."""
        deadline = time.monotonic() + timeout * TIME_SCALE
        for _ in range(limit):
            try:
                line = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TestFailure(f"timed out after {timeout}s waiting for {what}") from None
            if line is None:
                self.queue.put(None)
                raise TestFailure(f"the output ended before {what}")
            yield line
        raise TestFailure(f"{limit} lines without {what}")


# Workers that stay ONLINE for the whole test, however slow the build (sanitizers, valgrind):
# answers compared across transports must not straddle a state change.
SLOW_CLOCK = h.SLOW_CLOCK


def setup(t, options=None):
    bus = h.PrivateBus(t).start()
    cp = h.start_control(t, bus, options=options)
    return bus, cp, Ctl(t, bus, cp), Ctl(t, bus, cp, http=True)


def without_moving_fields(o):
    """What changes from one call to the next by itself: ages and last-seen times."""
    if isinstance(o, list):
        return [without_moving_fields(x) for x in o]
    if isinstance(o, dict):
        return {k: without_moving_fields(v) for k, v in o.items() if k not in ("heartbeat_age_sec",)}
    return o


@test
def test_dbus_and_http_give_the_same_answers(t):
    bus, cp, dbus, http = setup(t, options=SLOW_CLOCK)
    a = dbus.json("submit", "--priority=4", "--requirement=x,y", "--timeout=2s", "--", "echo", "hi there")["job_id"]
    b = http.json("submit", "--gpu", "--max-attempts=2", "--", "false")["job_id"]
    w = h.FakeWorker(cp, "w-same", capabilities=["gpu"])
    job = w.claim()
    w.ack(job)
    for args in (["list-jobs"], ["list-jobs", "--state=PENDING"], ["list-jobs", f"--worker=w-same"],
                 ["status", a], ["status", b], ["list-workers"], ["events"], ["events", f"--job={a}"],
                 ["events", "--since=2"]):
        t.eq(without_moving_fields(dbus.json(*args)), without_moving_fields(http.json(*args)),
             f"entropyctl {' '.join(args)}: D-Bus and HTTP agree")
    t.eq(dbus.json("status", a)["args"], ["hi there"], "arguments are kept whole")
    t.eq(dbus.json("status", a)["timeout_ms"], 2000, "--timeout in milliseconds")
    t.eq(http.json("status", b)["needs_gpu"], True, "--gpu")
    t.eq(sorted(dbus.json("status", a)["requirements"]), ["x", "y"], "--requirement list")


@test
def test_tables_have_a_legend_unless_told_not_to(t):
    bus, cp, dbus, http = setup(t)
    for ctl in (dbus, http):
        job_id = ctl.run("submit", "--", "sleep", "5").stdout.strip()
        t.eq(len(job_id), 32, "submit prints the job id alone")
    r = dbus.run("list-jobs")
    lines = r.stdout.splitlines()
    t.ok(lines[0].split()[:2] == ["JOB", "STATE"], f"a header line: {lines[:1]}")
    t.eq(lines[-1], "2 jobs listed.", "a legend")
    t.ok("ms ago" in r.stdout or "s ago" in r.stdout or "now" in r.stdout, "relative creation times")
    t.ok("\033[" not in r.stdout, "no colour when not on a terminal")
    r = dbus.run("--no-legend", "list-jobs")
    t.eq(len(r.stdout.splitlines()), 2, "--no-legend: only the rows")
    t.eq(dbus.run("list-workers").stdout.splitlines()[-1], "0 workers listed.", "workers legend")
    status = dbus.run("status", job_id).stdout
    t.ok("State: PENDING" in status and "sleep 5" in status, "status shows state and command")


@test
def test_submit_wait_follows_the_job_to_its_outcome(t):
    bus, cp, dbus, http = setup(t, options=SLOW_CLOCK)
    w = h.FakeWorker(cp, "w-wait")
    for ctl, outcome in ((dbus, "complete"), (http, "complete"), (dbus, "fail"), (http, "fail")):
        p = ctl.popen("submit", "--wait", "--max-attempts=1", "--", "true")
        job = t.wait_for(w.claim, 10, "the submitted job to be claimable")
        w.ack(job)
        if outcome == "complete":
            w.complete(job)
        else:
            w.fail(job)
        out, err = p.communicate(timeout=20 * TIME_SCALE)
        want = EXIT_OK if outcome == "complete" else EXIT_JOB_FAILED
        t.eq(p.returncode, want, f"{'HTTP' if ctl.http else 'D-Bus'} submit --wait exit code after {outcome}")
        t.eq(out.strip(), job["job_id"], "the job id on stdout")
        end = "COMPLETED" if outcome == "complete" else "FAILED"
        t.ok(f"Job {job['job_id']}: RUNNING" in err and f"Job {job['job_id']}: {end}" in err,
             f"progress through the states on stderr: {err!r}")
    p = dbus.popen("--output=json", "submit", "--wait", "--", "sleep", "100")
    job_id = t.wait_for(lambda: [j["job_id"] for j in dbus.json("list-jobs", "--state=PENDING")], 10,
                        "the job to be listed")[0]
    t.eq(dbus.run("abort", "--reason=enough", job_id).returncode, EXIT_OK, "abort")
    out, err = p.communicate(timeout=20 * TIME_SCALE)
    t.eq(p.returncode, EXIT_JOB_FAILED, "an aborted job makes submit --wait exit 3")
    t.eq(json.loads(out)["status"], "ABORTED", "--output=json: the final job")


@test
def test_abort_drain_reconcile_reload_over_dbus(t):
    bus, cp, dbus, http = setup(t, options=SLOW_CLOCK)
    a = dbus.json("submit", "--", "true")["job_id"]
    t.eq(dbus.json("abort", "--reason=no", a), {"job_id": a, "aborted_jobs": 1, "status": "ABORTED", "reason": "no"},
         "abort answers in JSON")
    r = http.run("abort", a)
    t.eq(r.returncode, EXIT_FAILURE, "aborting a terminal job is a conflict: exit 1")
    w = h.FakeWorker(cp, "w-ops")
    dbus.json("submit", "--", "true")
    w.claim()
    t.eq(http.json("abort", "--worker=w-ops")["aborted_jobs"], 1, "abort --worker over HTTP")
    t.eq(dbus.json("abort", "--worker=w-ops")["aborted_jobs"], 0, "nothing left to abort: 0")
    t.eq(dbus.json("drain", "w-ops"), {"worker_id": "w-ops", "draining": True}, "drain")
    t.eq(dbus.json("list-workers")[0]["status"], "DRAINING", "the worker is DRAINING")
    dbus.json("resume", "w-ops")
    t.eq(dbus.json("list-workers")[0]["status"], "ONLINE", "resume")
    t.ok(isinstance(dbus.json("reconcile")["changes"], int), "reconcile")
    t.eq(dbus.run("reload").returncode, EXIT_OK, "reload")
    r = http.run("reconcile")
    t.eq(r.returncode, EXIT_FAILURE, "reconcile over HTTP: no such endpoint, exit 1")
    t.ok("D-Bus" in r.stderr, "and says to use D-Bus")


@test
def test_abort_prints_the_reason_the_jobs_keep(t):
    bus, cp, dbus, http = setup(t, options=SLOW_CLOCK)
    jobs = [dbus.json("submit", "--", "true")["job_id"] for _ in range(3)]
    # Over HTTP the answer says the reason kept, the control plane's default one included.
    out = http.json("abort", "--reason=", jobs[0])
    kept = cp.job(jobs[0])["last_error"]
    t.ok(kept.startswith("aborted by "), f"without a reason the job keeps the default one ({kept!r})")
    t.eq(out.get("reason"), kept, "HTTP: abort prints the reason the job keeps")
    w = h.FakeWorker(cp, "w-reason")
    w.claim()
    out = http.json("abort", "--worker=w-reason")
    t.eq((out["aborted_jobs"], out.get("reason")), (1, cp.job(jobs[1])["last_error"]),
         "HTTP: abort --worker too")
    # AbortJob over D-Bus does not answer the default it made: it is left out, not printed as "".
    out = dbus.json("abort", "--reason=", jobs[2])
    t.ok(cp.job(jobs[2])["last_error"].startswith("aborted by "), "the job keeps the default reason")
    t.eq(out, {"job_id": jobs[2], "aborted_jobs": 1, "status": "ABORTED"}, "D-Bus: no reason printed")


@test
def test_drain_and_resume_over_http(t):
    bus, cp, dbus, http = setup(t, options=SLOW_CLOCK)
    w = h.FakeWorker(cp, "w-http-drain")
    t.eq(http.json("drain", "w-http-drain"), {"worker_id": "w-http-drain", "draining": True},
         "drain over HTTP answers like over D-Bus")
    t.eq(http.json("list-workers")[0]["status"], "DRAINING", "the worker is DRAINING")
    job = http.json("submit", "--", "true")["job_id"]
    t.eq(w.claim(), None, "a draining worker gets no job")
    t.eq(http.json("resume", "w-http-drain"), {"worker_id": "w-http-drain", "draining": False}, "resume over HTTP")
    t.eq(dbus.json("list-workers")[0]["status"], "ONLINE", "D-Bus sees it ONLINE again")
    t.eq((w.claim() or {}).get("job_id"), job, "and it gets the job")
    t.eq(http.run("drain", "no-such-worker").returncode, EXIT_NOT_FOUND, "an unknown worker: 4")


@test
def test_events_follow_shows_new_events(t):
    bus, cp, dbus, http = setup(t)
    for ctl in (dbus, http):
        p = ctl.popen("--output=json", "events", "--follow")
        t.cleanups.append(lambda p=p: p.poll() is None and p.kill())
        out = Lines(p.stdout)
        job_id = ctl.json("submit", "--", "true")["job_id"]
        for line in out.each(10, "events --follow to print the new job's job.submitted"):
            ev = json.loads(line)
            if ev.get("job_id") == job_id and ev["event"] == "job.submitted":
                break
        p.terminate()
        t.eq(p.wait(timeout=10 * TIME_SCALE), EXIT_OK, "--follow ends cleanly on SIGTERM")


@test
def test_events_follow_prints_a_burst_larger_than_a_page_whole(t):
    bus, cp, dbus, http = setup(t)
    first = cp.submit("true")
    p = dbus.popen("--output=json", "events", "--follow")
    t.cleanups.append(lambda: p.poll() is None and p.kill())
    out = Lines(p.stdout)
    for line in out.each(10, "events --follow to print the first job"):
        if json.loads(line).get("job_id") == first:
            break
    # Stopped between two polls while more than a page (1,000) of events is committed.
    p.send_signal(signal.SIGSTOP)
    burst = [cp.submit("true") for _ in range(1050)]
    p.send_signal(signal.SIGCONT)
    seen = []
    for line in out.each(60, "events --follow to print the whole burst"):
        ev = json.loads(line)
        if ev["event"] == "job.submitted":
            seen.append(ev["job_id"])
            if ev["job_id"] == burst[-1]:
                break
    p.terminate()
    t.eq(seen, burst, "every event of the burst, in order")
    for ctl in (dbus, http):
        p = ctl.popen("--output=json", "events", "--follow", "--since=0", "--event=job.submitted")
        t.cleanups.append(lambda p=p: p.poll() is None and p.kill())
        seen = []
        for line in Lines(p.stdout).each(60, "events --follow --since=0 to print the whole burst"):
            ev = json.loads(line)
            t.eq(ev["event"], "job.submitted", "--event keeps one kind")
            seen.append(ev["job_id"])
            if ev["job_id"] == burst[-1]:
                break
        p.terminate()
        t.eq(seen, [first] + burst, f"--follow --since=0 over {ctl.http and 'HTTP' or 'D-Bus'}: from the first event on")
        t.eq([e["job_id"] for e in ctl.json("events", "--event=job.submitted", "--limit=3")], burst[:-4:-1],
             "--event with --limit: the latest three, newest first")
        t.eq(ctl.run("events", "--limit=1001").returncode, EXIT_USAGE, "--limit above a page: 2")


def make_replay_db(path, worker_id, job, exit_code=0):
    """A worker's replay buffer (worker/replay.c's outbox) holding one undelivered completion."""
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE outbox(id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL,"
        " assignment_id TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('complete','fail')),"
        " completion_seq INTEGER NOT NULL, body TEXT NOT NULL,"
        " state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending','accepted','rejected')),"
        " created_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, resolved_at INTEGER,"
        " UNIQUE (job_id, assignment_id));")
    body = {"job_id": job["job_id"], "worker_id": worker_id, "assignment_id": job["assignment_id"],
            "completion_seq": 1, "exit_code": exit_code, "result_summary": "done offline"}
    db.execute("INSERT INTO outbox(job_id, assignment_id, kind, completion_seq, body, created_at) "
               "VALUES (?, ?, 'complete', 1, ?, 0)", (job["job_id"], job["assignment_id"], json.dumps(body)))
    db.commit()
    db.close()


@test
def test_replay_hands_a_workers_results_to_the_control_plane(t):
    bus, cp, dbus, http = setup(t, options=SLOW_CLOCK)
    job_id = http.json("submit", "--", "true")["job_id"]
    w = h.FakeWorker(cp, "w-replay")
    job = w.claim()
    w.ack(job)
    db = os.path.join(t.tmp, "worker.db")
    make_replay_db(db, "w-replay", job)
    token_file = cp.worker_token_file
    r = http.run("--output=json", f"--worker-token-file={token_file}", "replay", db)
    t.eq(r.returncode, EXIT_OK, f"replay succeeds: {r.stderr}")
    actions = json.loads(r.stdout)["actions"]
    t.ok(any(a["job_id"] == job_id and a["result"] == "ACCEPTED" for a in actions), f"accepted: {actions}")
    t.eq(cp.job(job_id)["status"], "COMPLETED", "the replayed completion is applied")
    r = http.run(f"--worker-token-file={token_file}", "replay", db)
    t.eq(r.returncode, EXIT_OK, "a second replay is a harmless repeat")
    t.ok("ACCEPTED" in r.stdout, "shown as a table")
    r = http.run("replay", db, env={"ENTROPY_WORKER_TOKEN": ""})
    t.eq(r.returncode, EXIT_ACCESS, "without a worker token: access denied")
    r = http.run(f"--worker-token-file={token_file}", "replay", os.path.join(t.tmp, "missing.db"))
    t.eq(r.returncode, EXIT_NOT_FOUND, "a missing file: not found")
    # Over D-Bus: ReplayResults, no worker token needed; a second repeat is still an ACCEPTED no-op.
    r = dbus.run("--output=json", "replay", db)
    t.eq(r.returncode, EXIT_OK, f"replay over D-Bus: {r.stderr}")
    t.eq(without_moving_fields(json.loads(r.stdout)), without_moving_fields(json.loads(
        http.run("--output=json", f"--worker-token-file={token_file}", "replay", db).stdout)),
        "the same answer over D-Bus and HTTP")
    t.eq(dbus.run("replay", "--worker=someone-else", db).returncode, EXIT_USAGE,
         "results of another worker than --worker names: refused")


@test
def test_exit_codes_are_the_documented_ones(t):
    bus, cp, dbus, http = setup(t)
    for ctl in (dbus, http):
        t.eq(ctl.run("status", "no-such-job").returncode, EXIT_NOT_FOUND, "unknown job: 4")
        t.eq(ctl.run("list-jobs", "--state=BOGUS").returncode, EXIT_USAGE, "refused arguments: 2")
        t.eq(ctl.run("list-jobs", "--bogus").returncode, EXIT_USAGE, "unknown option: 2")
        t.eq(ctl.run("frobnicate").returncode, EXIT_USAGE, "unknown command: 2")
        t.eq(ctl.run("submit").returncode, EXIT_USAGE, "submit without a command: 2")
        t.eq(ctl.run("submit", "--priority=2000000000", "--", "true").returncode, EXIT_USAGE,
             "a priority out of range is refused the same way over both: 2")
    wrong = os.path.join(t.tmp, "wrong-token")
    with open(wrong, "w") as f:
        f.write("not-the-token-0123456789abcdef\n")
    r = t.run_cmd([binary("entropyctl"), f"--url={cp.url}", f"--token-file={wrong}", "list-jobs"])
    t.eq(r.returncode, EXIT_ACCESS, "wrong token: 5")
    r = t.run_cmd([binary("entropyctl"), f"--url={cp.url}", "list-jobs"], env={"ENTROPY_ADMIN_TOKEN": ADMIN_TOKEN})
    t.eq(r.returncode, EXIT_OK, "the token from $ENTROPY_ADMIN_TOKEN")
    r = t.run_cmd([binary("entropyctl"), f"--url=http://127.0.0.1:{free_port()}", "list-jobs"],
                  env={"ENTROPY_ADMIN_TOKEN": ADMIN_TOKEN})
    t.eq(r.returncode, EXIT_UNREACHABLE, "nothing listening: 6")
    r = t.run_cmd([binary("entropyctl"), "list-jobs"], env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"})
    t.eq(r.returncode, EXIT_UNREACHABLE, "no bus: 6")
    for args in (["list-jobs", "--bogus"], ["submit"], ["events", "--limit=0"], ["submit", "--at=nan", "--", "true"]):
        r = t.run_cmd([binary("entropyctl")] + args, env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"})
        t.eq(r.returncode, EXIT_USAGE, f"a bad command line is a usage error with no bus too: {args}")
    other = h.PrivateBus(t, name="empty-bus").start()
    r = t.run_cmd([binary("entropyctl"), "list-jobs"], env={"DBUS_SYSTEM_BUS_ADDRESS": other.address})
    t.eq(r.returncode, EXIT_UNREACHABLE, "a bus without the control plane: 6")
    r = t.run_cmd([binary("entropyctl"), "--help"])
    t.eq(r.returncode, EXIT_OK, "--help")
    for word in ("submit", "list-jobs", "replay", "remove-worker", "Exit status",
                 "6  the control plane is unreachable"):
        t.ok(word in r.stdout, f"--help mentions {word!r}")
    # The same help wherever it stands among the global options.
    for args in (["--no-pager", "--help"], ["-o", "json", "-h"], ["--url=http://127.0.0.1:1", "--help", "list-jobs"]):
        r2 = t.run_cmd([binary("entropyctl")] + args)
        t.eq(r2.returncode, EXIT_OK, f"{args}: help")
        t.eq(r2.stdout, r.stdout, f"{args}: the whole help, commands and exit status included")
    if os.geteuid() == 0:  # only root can call as another uid
        h.open_to_other_uids(t)
        r = t.run_cmd(["setpriv", f"--reuid={h.NOBODY}", f"--regid={h.NOBODY}", "--clear-groups",
                       binary("entropyctl"), "list-jobs"], env={"DBUS_SYSTEM_BUS_ADDRESS": bus.address})
        t.eq(r.returncode, EXIT_ACCESS, "a caller the daemon refuses: 5")


@test
def test_every_command_has_its_own_help(t):
    no_bus = {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"}
    for verb, shows in (("status", "status JOB..."), ("drain", "drain WORKER"), ("list-workers", "List workers"),
                        ("remove-worker", "remove-worker WORKER"), ("submit", "--max-attempts=N"),
                        ("events", "--since=EVENT-ID")):
        for flag in ("--help", "-h"):
            r = t.run_cmd([binary("entropyctl"), verb, flag], env=no_bus)
            t.eq(r.returncode, EXIT_OK, f"{verb} {flag} is help, not an id, and needs no bus")
            t.ok(shows in r.stdout, f"{verb} {flag} shows that command's usage")
    r = t.run_cmd([binary("entropyctl"), "submit", "--priority=3", "--help"], env=no_bus)
    t.eq(r.returncode, EXIT_OK, "--help after other options")
    r = t.run_cmd([binary("entropyctl"), "submit", "--", "grep", "--help"], env=no_bus)
    t.eq(r.returncode, EXIT_UNREACHABLE, "a job's own --help after -- is the job's: submitted (no bus here)")


@test
def test_submit_help_after_an_option_and_its_separate_value(t):
    # The value of "--priority 5" is not the job's command: --help after it is entropyctl's.
    no_bus = {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"}
    for args in (["--priority", "5", "--help"], ["--requirement", "gpu", "--wait", "-h"],
                 ["--at", "+1h", "--timeout", "1m", "--max-attempts", "2", "--working-directory", "/tmp", "--help"],
                 ["--prio", "5", "--help"]):
        r = t.run_cmd([binary("entropyctl"), "submit"] + args, env=no_bus)
        t.eq(r.returncode, EXIT_OK, f"submit {' '.join(args)}: help, not a usage error")
        t.ok("--max-attempts=N" in r.stdout, f"submit {' '.join(args)}: shows submit's usage")
    # After the job's command, --help is the job's, with or without options and values before it.
    for args in (["--priority", "5", "grep", "--help"], ["grep", "--help"]):
        r = t.run_cmd([binary("entropyctl"), "submit"] + args, env=no_bus)
        t.eq(r.returncode, EXIT_UNREACHABLE, f"submit {' '.join(args)}: the job's own --help, submitted (no bus here)")


def https_ctl(t, cp, *args, ca=None, cert=None):
    argv = [binary("entropyctl"), "--no-pager", f"--url=https://localhost:{cp.port}",
            f"--token-file={cp.admin_token_file}"]
    if ca:
        argv.append(f"--ca-file={ca}")
    if cert:
        argv += [f"--tls-certificate={cert.cert}", f"--tls-key={cert.key}"]
    return t.run_cmd(argv + list(args), env={"ENTROPY_CONFIG": "", "ENTROPY_CA_FILE": ""})


@test
def test_https_url_needs_the_ca_and_under_mtls_a_certificate(t):
    require_certtool(t)
    certs, rogue = CertFactory(t.tmp), CertFactory(t.tmp, "rogue")
    server = certs.server()
    cp = t.control_plane(options={"tls-certificate": server.cert, "tls-key": server.key})
    cp.http = TlsHttp("127.0.0.1", cp.port, certs.ca_file)
    job = cp.submit("true")
    r = https_ctl(t, cp, "--output=json", "list-jobs", ca=certs.ca_file)
    t.eq(r.returncode, EXIT_OK, f"--ca-file: list-jobs works over HTTPS: {r.stderr}")
    t.eq([j["job_id"] for j in json.loads(r.stdout or "[]")], [job], "and lists the job")
    for name, ca in (("no --ca-file", None), ("another CA", rogue.ca_file)):
        r = https_ctl(t, cp, "list-jobs", ca=ca)
        t.eq(r.returncode, EXIT_UNREACHABLE, f"{name}: the server is not trusted, exit 6")
        t.ok("certificate" in r.stderr, f"{name}: the message says why: {r.stderr.strip()}")
    cp.stop()

    client_ca = certs.ca_file
    cp = t.control_plane(options={"tls-certificate": server.cert, "tls-key": server.key, "tls-client-ca": client_ca},
                         name="mtls")
    r = https_ctl(t, cp, "list-jobs", ca=certs.ca_file, cert=certs.client("admin"))
    t.eq(r.returncode, EXIT_OK, f"mTLS with --tls-certificate and --tls-key: {r.stderr}")
    r = https_ctl(t, cp, "list-jobs", ca=certs.ca_file)
    t.eq(r.returncode, EXIT_ACCESS, "mTLS without a client certificate: access denied, exit 5")
    t.ok("no client certificate" in r.stderr, f"and says so: {r.stderr.strip()}")
    r = https_ctl(t, cp, "list-jobs", ca=certs.ca_file, cert=rogue.client("admin"))
    t.eq(r.returncode, EXIT_ACCESS, "a certificate from another CA: exit 5")
    half = certs.client("half")
    r = t.run_cmd([binary("entropyctl"), f"--url=https://localhost:{cp.port}", f"--ca-file={certs.ca_file}",
                   f"--tls-certificate={half.cert}", "list-jobs"], env={"ENTROPY_ADMIN_TOKEN": ADMIN_TOKEN})
    t.eq(r.returncode, EXIT_USAGE, "--tls-certificate without --tls-key: usage error, exit 2")


@test
def test_colour_and_pager_only_on_a_terminal(t):
    t.require_tool("script", "bsdutils")  # script(1) gives entropyctl a terminal
    bus, cp, dbus, http = setup(t)
    dbus.json("submit", "--", "true")
    paged = os.path.join(t.tmp, "paged")
    env = {"DBUS_SYSTEM_BUS_ADDRESS": bus.address, "TERM": "xterm", "NO_COLOR": "",
           "ENTROPY_PAGER": f"cat > {paged}"}
    os.environ.pop("NO_COLOR", None)

    def on_tty(*args, extra=None):
        e = dict(env)
        e.update(extra or {})
        cmd = " ".join([binary("entropyctl")] + list(args))
        # script(1) gives the command a terminal; its output comes back through our pipe.
        return t.run_cmd(["script", "-qec", cmd, "/dev/null"], env=e)

    r = on_tty("list-jobs")
    t.eq(r.returncode, EXIT_OK, "list-jobs on a terminal")
    with open(paged) as f:
        text = f.read()
    t.ok("PENDING" in text and "1 job listed." in text, "the table went through the pager")
    t.ok("\033[" in text, "with colour, as stdout was a terminal")
    os.unlink(paged)
    r = on_tty("--no-pager", "list-jobs")
    t.ok("PENDING" in r.stdout and not os.path.exists(paged), "--no-pager: straight to the terminal")
    t.ok("\033[" in r.stdout, "still in colour")
    r = on_tty("--no-pager", "list-jobs", extra={"NO_COLOR": "1"})
    t.ok("PENDING" in r.stdout and "\033[" not in r.stdout, "$NO_COLOR turns colour off")
    r = dbus.run("list-jobs", env={"ENTROPY_PAGER": f"cat > {paged}", "TERM": "xterm"})
    t.ok("PENDING" in r.stdout and not os.path.exists(paged), "no pager and no colour into a pipe")
    t.ok("\033[" not in r.stdout, "no escape codes into a pipe")


def complete(t, bus, words):
    """What ctl/bash-completion/entropyctl offers for the last of words (entropyctl from the build tree)."""
    script = ("source \"$1\"; shift; COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); _entropyctl; "
              "printf '%s\\n' \"${COMPREPLY[@]}\"")
    r = t.run_cmd(["bash", "-c", script, "complete", os.path.join(h.SRCDIR, "ctl", "bash-completion", "entropyctl")] + words,
                  env={"DBUS_SYSTEM_BUS_ADDRESS": bus.address,
                       "PATH": os.path.dirname(binary("entropyctl")) + os.pathsep + os.environ["PATH"]})
    return r.stdout.split()


@test
def test_bash_completion_offers_commands_options_and_ids(t):
    bus, cp, dbus, http = setup(t, options=SLOW_CLOCK)
    job_id = dbus.json("submit", "--", "true")["job_id"]
    h.FakeWorker(cp, "w-complete")
    t.eq(complete(t, bus, ["entropyctl", "list-"]), ["list-jobs", "list-workers"], "commands")
    t.ok("--wait" in complete(t, bus, ["entropyctl", "submit", "--w"]), "a command's options")
    t.eq(complete(t, bus, ["entropyctl", "--output=j"]), ["json", "json-pretty"], "option values")
    t.eq(complete(t, bus, ["entropyctl", "status", ""]), [job_id], "job ids from the control plane")
    t.eq(complete(t, bus, ["entropyctl", "drain", "w-"]), ["w-complete"], "worker ids")
    t.eq(complete(t, bus, ["entropyctl", "remove-worker", "w-"]), ["w-complete"], "worker ids for remove-worker")


@test
def test_options_come_from_environment_and_config_file(t):
    bus, cp, dbus, http = setup(t)
    http.json("submit", "--", "true")
    conf = os.path.join(t.tmp, "entropyctl.conf")
    with open(conf, "w") as f:
        f.write(f"[ctl]\nurl = {cp.url}\ntoken-file = {cp.admin_token_file}\noutput = json\n")
    r = t.run_cmd([binary("entropyctl"), f"--config={conf}", "list-jobs"], env={"DBUS_SYSTEM_BUS_ADDRESS": ""})
    t.eq(r.returncode, EXIT_OK, f"config file: {r.stderr}")
    t.eq(len(json.loads(r.stdout)), 1, "url, token file and output from the file")
    r = t.run_cmd([binary("entropyctl"), "list-jobs"],
                  env={"ENTROPY_URL": cp.url, "ENTROPY_TOKEN_FILE": cp.admin_token_file, "ENTROPY_OUTPUT": "json",
                       "ENTROPY_CONFIG": ""})
    t.eq(len(json.loads(r.stdout)), 1, "the same from ENTROPY_* variables")


def wait_for_event(t, lines, job_id, event, what):
    """Reads --output=json events --follow output until job_id's event comes, bounded."""
    for line in lines.each(20, what):
        ev = json.loads(line)
        if ev.get("job_id") == job_id and ev["event"] == event:
            return


@test
def test_events_follow_goes_on_after_the_database_went_back(t):
    # The control plane's database is restored from an older copy while entropyctl follows: the
    # newest stored id is then below the last one it printed, and asking for ids above that one
    # would stay silent for ever.
    bus, cp, dbus, http = setup(t)
    cp.submit("true")
    cp.stop()
    backup = os.path.join(t.tmp, "backup.db")
    src, dst = sqlite3.connect(cp.database), sqlite3.connect(backup)
    src.backup(dst)
    src.close()
    dst.close()
    cp.restart()
    t.wait_for(bus.has_owner, 10, "the control plane back on the bus")
    followers = []
    for ctl in (dbus, http):
        p = ctl.popen("--output=json", "events", "--follow")
        t.cleanups.append(lambda p=p: p.poll() is None and p.kill())
        followers.append((ctl, p, Lines(p.stdout), Lines(p.stderr)))
    later = [cp.submit("true") for _ in range(30)]
    for ctl, p, out, err in followers:
        wait_for_event(t, out, later[-1], "job.submitted", "events --follow to print the jobs before the restore")
    cp.stop()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(cp.database + suffix):
            os.unlink(cp.database + suffix)
    shutil.copyfile(backup, cp.database)
    cp.restart()
    t.wait_for(bus.has_owner, 10, "the restored control plane on the bus")
    # Submitted before the followers can have noticed: they must print it all the same.
    job_id = cp.submit("true")
    for ctl, p, out, err in followers:
        transport = "HTTP" if ctl.http else "D-Bus"
        for line in err.each(20, f"{transport}: the note that the event log went back"):
            if "event log went back" in line:
                break
        wait_for_event(t, out, job_id, "job.submitted", f"{transport}: the job submitted after the restore")
        p.terminate()
        t.eq(p.wait(timeout=10 * TIME_SCALE), EXIT_OK, f"{transport}: --follow ends cleanly on SIGTERM")


def cpu_ticks(pid):
    """User and system CPU time of a process so far, in clock ticks (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@test
def test_events_follow_with_a_filter_waits_between_polls(t):
    # Followed with --job, the newest stored id runs ahead of the last id printed as soon as
    # another job has an event: that is no restore, and must not make the follower poll without
    # pausing (a core of the client's and as many requests as the control plane can answer).
    bus, cp, dbus, http = setup(t)
    mine = cp.submit("true")
    followers = []
    for ctl in (dbus, http):
        p = ctl.popen("--output=json", "events", "--follow", f"--job={mine}")
        t.cleanups.append(lambda p=p: p.poll() is None and p.kill())
        followers.append((ctl, p, Lines(p.stdout)))
    for ctl, p, out in followers:
        wait_for_event(t, out, mine, "job.submitted", "events --follow --job to print the job's event")
    for _ in range(3):
        cp.submit("true")
    hz = os.sysconf("SC_CLK_TCK")
    before = [cpu_ticks(p.pid) for _, p, _ in followers]
    time.sleep(2)  # an observation window: how much CPU a quiet follow takes in it
    for (ctl, p, out), ticks in zip(followers, before):
        transport = "HTTP" if ctl.http else "D-Bus"
        used = (cpu_ticks(p.pid) - ticks) / hz
        t.ok(p.poll() is None, f"{transport}: still following")
        t.ok(used < 0.4, f"{transport}: a quiet follow used {used:.2f} s of CPU in 2 s (a poll every 0.5 s)")
        p.terminate()
        t.eq(p.wait(timeout=10 * TIME_SCALE), EXIT_OK, f"{transport}: --follow ends cleanly on SIGTERM: {p.stderr.read()}")


@test
def test_tokens_from_the_environment_are_stripped_like_files(t):
    bus, cp, dbus, http = setup(t, options=SLOW_CLOCK)
    base = [binary("entropyctl"), "--no-pager", f"--url={cp.url}"]
    env = {"DBUS_SYSTEM_BUS_ADDRESS": "", "ENTROPY_CONFIG": "", "ENTROPY_URL": "", "ENTROPY_OUTPUT": "",
           "ENTROPY_WORKER_TOKEN": ""}
    # What `export ENTROPY_ADMIN_TOKEN="$(cat file)"` of a file with spaces around its line gives.
    r = t.run_cmd(base + ["--output=json", "submit", "--", "true"],
                  env=dict(env, ENTROPY_ADMIN_TOKEN=f" \t{ADMIN_TOKEN} \r\n"))
    t.eq(r.returncode, EXIT_OK, f"an admin token with whitespace around it is accepted: {r.stderr}")
    job_id = json.loads(r.stdout)["job_id"]
    w = h.FakeWorker(cp, "w-env")
    job = w.claim()
    w.ack(job)
    db = os.path.join(t.tmp, "worker.db")
    make_replay_db(db, "w-env", job)
    r = t.run_cmd(base + ["replay", db], env=dict(env, ENTROPY_ADMIN_TOKEN=ADMIN_TOKEN,
                                                  ENTROPY_WORKER_TOKEN=f"{WORKER_TOKEN}\n"))
    t.eq(r.returncode, EXIT_OK, f"a worker token with a line end is accepted: {r.stderr}")
    t.eq(cp.job(job_id)["status"], "COMPLETED", "and the replayed result applied")
    r = t.run_cmd(base + ["list-jobs"], env=dict(env, ENTROPY_ADMIN_TOKEN=f"{ADMIN_TOKEN}\nsecond line"))
    t.eq(r.returncode, EXIT_USAGE, "a token of two lines: usage error")
    t.ok("ENTROPY_ADMIN_TOKEN" in r.stderr, f"naming the variable: {r.stderr!r}")
    r = t.run_cmd(base + ["list-jobs"], env=dict(env, ENTROPY_ADMIN_TOKEN=" \n"))
    t.eq(r.returncode, EXIT_ACCESS, "only whitespace is no token: access denied")
    r = t.run_cmd(base + ["list-jobs"], env=dict(env, ENTROPY_ADMIN_TOKEN=ADMIN_TOKEN, ENTROPY_TOKEN_FILE=""))
    t.eq(r.returncode, EXIT_OK, f"an empty ENTROPY_TOKEN_FILE is no file: the variable is used: {r.stderr}")


def unread_by_the_other_end(pid):
    """Bytes a process wrote to its unix sockets that the other end has not read yet (ss -x)."""
    mine = set(socket_fds(pid).values())
    out = subprocess.run(["ss", "-xn"], capture_output=True, text=True, check=True).stdout
    # Netid State Recv-Q Send-Q Local-Address Local-Inode Peer-Address Peer-Inode
    return sum(int(f[2]) for f in (line.split() for line in out.splitlines()[1:]) if len(f) >= 8 and f[7] in mine)


@test
def test_submit_wait_never_prints_an_older_state_after_asking(t):
    # Over D-Bus, submit --wait follows JobStateChanged signals and asks for the job's state after
    # two quiet seconds. When the signals are late, they come in just before that answer, and
    # tell of the states on the way to it: shown after it, they would step back.
    t.require_tool("ss", "iproute2")
    bus, cp, dbus, http = setup(t, options=SLOW_CLOCK)
    w = h.FakeWorker(cp, "w-late")
    p = dbus.popen("submit", "--wait", "--", "true")
    t.cleanups.append(lambda: p.poll() is None and p.kill())
    err = Lines(p.stderr)
    states = []

    def next_state(what):
        for line in err.each(20, what):
            if line.startswith("Job ") and ": " in line:
                states.append(line.split(": ", 1)[1].strip())
                return states[-1]
    t.eq(next_state("the first state"), "PENDING", "the job starts PENDING")
    # The bus holds the signals of the claim and the ack until entropyctl has asked.
    bus.daemon.signal(signal.SIGSTOP)
    t.cleanups.insert(0, lambda: bus.daemon.signal(signal.SIGCONT))
    job = w.claim()
    w.ack(job)
    t.wait_for(lambda: unread_by_the_other_end(p.pid) > 0, 10, "entropyctl to ask for the job's state")
    bus.daemon.signal(signal.SIGCONT)
    while next_state("RUNNING") != "RUNNING":
        pass
    w.complete(job)
    while next_state("COMPLETED") != "COMPLETED":
        pass
    t.eq(p.wait(timeout=20 * TIME_SCALE), EXIT_OK, "submit --wait exits 0")
    order = ["PENDING", "ASSIGNED", "RUNNING", "COMPLETED"]
    t.ok(all(order.index(a) < order.index(b) for a, b in zip(states, states[1:])),
         f"every state printed is later than the one before: {states}")
    t.eq(states[-1], "COMPLETED", "the last one printed is the final state")


@test
def test_remove_worker_refuses_unknown_and_not_offline_workers(t):
    bus, cp, dbus, http = setup(t, options=SLOW_CLOCK)
    h.FakeWorker(cp, "w-online")
    w = h.FakeWorker(cp, "w-busy")
    dbus.json("submit", "--", "true")
    job = w.claim()
    w.ack(job)
    dbus.json("drain", "w-busy")
    for ctl, transport in ((dbus, "D-Bus"), (http, "HTTP")):
        r = ctl.run("remove-worker", "no-such-worker")
        t.eq(r.returncode, EXIT_NOT_FOUND, f"{transport}: an unknown worker: 4")
        t.ok("no-such-worker" in r.stderr, f"{transport}: the message names the worker: {r.stderr!r}")
        r = ctl.run("remove-worker", "w-online")
        t.eq(r.returncode, EXIT_FAILURE, f"{transport}: an ONLINE worker is a conflict: 1")
        t.ok("OFFLINE" in r.stderr, f"{transport}: the message says the worker is not OFFLINE: {r.stderr!r}")
        r = ctl.run("remove-worker", "w-busy")
        t.eq(r.returncode, EXIT_FAILURE, f"{transport}: a DRAINING worker is a conflict: 1")
        t.ok("is DRAINING" in r.stderr, f"{transport}: the message says its state: {r.stderr!r}")
        t.eq(ctl.run("remove-worker").returncode, EXIT_USAGE, f"{transport}: no WORKER: 2")
        t.eq(ctl.run("remove-worker", "a", "b").returncode, EXIT_USAGE, f"{transport}: two WORKERs: 2")
    t.eq(sorted(w["worker_id"] for w in http.json("list-workers")), ["w-busy", "w-online"],
         "the refused workers are still listed")


# Workers that stop heartbeating are OFFLINE within a second (in a slow build, TIME_SCALE times that).
QUICK_OFFLINE = {"lease-timeout": "1s", "disconnect-timeout": "300ms", "heartbeat-timeout": "1s",
                 "reconcile-interval": "100ms"}


@test
def test_remove_worker_forgets_an_offline_worker(t):
    bus, cp, dbus, http = setup(t, options=QUICK_OFFLINE)
    gone = ["w-gone-dbus", "w-gone-http", "w-gone-table"]
    for worker_id in gone:
        h.FakeWorker(cp, worker_id)

    def states():
        return {w["worker_id"]: w["status"] for w in dbus.json("list-workers")}

    t.wait_for(lambda: states() == dict.fromkeys(gone, "OFFLINE"), 20, "the silent workers to be OFFLINE",
               detail=states, interval=0.1)
    t.eq(dbus.json("remove-worker", "w-gone-dbus"), {"worker_id": "w-gone-dbus", "status": "removed"},
         "remove-worker over D-Bus")
    t.eq(http.json("remove-worker", "w-gone-http"), {"worker_id": "w-gone-http", "status": "removed"},
         "remove-worker over HTTP answers like over D-Bus")
    r = http.run("remove-worker", "w-gone-table")
    t.eq((r.returncode, r.stdout), (EXIT_OK, "Worker w-gone-table removed.\n"), f"a table says so: {r.stderr}")
    t.eq(dbus.json("list-workers"), [], "list-workers over D-Bus no longer shows them")
    t.eq(http.json("list-workers"), [], "nor over HTTP")
    for ctl, transport in ((dbus, "D-Bus"), (http, "HTTP")):
        t.eq(ctl.run("remove-worker", "w-gone-dbus").returncode, EXIT_NOT_FOUND,
             f"{transport}: a removed worker is unknown: 4")
    h.FakeWorker(cp, "w-gone-dbus")
    t.eq(states(), {"w-gone-dbus": "ONLINE"}, "a removed worker that comes back registers again")


class _NotAControlPlane:
    """A loopback HTTP server that answers every request with one status and body: a front proxy's
    redirect, or some other service that --url leads to by mistake."""

    def __init__(self, t, status, body=b"", headers=()):
        import http.server

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.requests += 1
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.requests = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        t.cleanups.append(lambda: (self.server.shutdown(), self.server.server_close()))


@test
def test_answers_that_did_not_do_the_work_are_not_success(t):
    env = {"ENTROPY_ADMIN_TOKEN": ADMIN_TOKEN}

    def ctl(url, *args):
        return t.run_cmd([binary("entropyctl"), "--no-pager", f"--url={url}"] + list(args), env=env)

    moved = _NotAControlPlane(t, 301, headers=[("Location", "https://elsewhere.example/")])
    for args in (["abort", "somejob"], ["abort", "--worker=w9"], ["drain", "w9"], ["remove-worker", "w9"]):
        r = ctl(moved.url, *args)
        t.eq(r.returncode, EXIT_FAILURE, f"{args} answered by a redirect: failure, exit 1")
        t.ok("301" in r.stderr and "https://elsewhere.example/" in r.stderr,
             f"{args}: the message names the status and where it leads: {r.stderr.strip()!r}")
    t.ok(moved.requests >= 4, "the redirect was not followed (the token would go along)")
    other = _NotAControlPlane(t, 200, b"<html>hello</html>")
    for args in (["abort", "somejob"], ["abort", "--worker=w9"], ["drain", "w9"], ["remove-worker", "w9"]):
        r = ctl(other.url, *args)
        t.eq(r.returncode, EXIT_FAILURE, f"{args} answered 200 by something else: failure, exit 1")
    bus, cp, dbus, http = setup(t)
    r = ctl(cp.url + "/typo", "abort", "--worker=w1")
    t.eq(r.returncode, EXIT_NOT_FOUND, "abort --worker on a --url with a wrong path: 404 is no '0 jobs aborted'")
    r = ctl(cp.url, "abort", "--worker=nobody")
    t.eq((r.returncode, r.stdout.strip() != ""), (EXIT_OK, True), "a worker holding nothing: 0 jobs aborted, exit 0")
    r = t.run_cmd([binary("entropyctl"), f"--url={cp.url}", f"--token-file={t.tmp}/no-such-file", "list-jobs"])
    t.eq(r.returncode, EXIT_USAGE, "a token file that does not exist is a usage error: 2, not 'no such job' (4)")
    r = ctl("ftp://127.0.0.1:1", "list-jobs")
    t.eq(r.returncode, EXIT_USAGE, "a --url scheme other than http(s): usage error 2, not unreachable (6)")


@test
def test_backup_copies_the_running_database_and_the_copy_restores(t):
    """entropyctl backup FILE: a copy of the database taken while the control plane runs and
    writes, as one commit left it (every job in it has its submission event), synced, checked,
    never over an existing file, and no file left behind when it fails. The copy restored as
    entropy-control(8) says (stop, remove -wal and -shm, put it in place, start) serves its jobs."""
    bus, cp, dbus, http = setup(t)
    before = [http.json("submit", "--", "true")["job_id"] for _ in range(20)]
    copy = os.path.join(t.tmp, "backups", "copy.db")
    os.makedirs(os.path.dirname(copy))

    def ctl(*args):
        return t.run_cmd([binary("entropyctl"), "--no-pager"] + list(args), env={"ENTROPY_CONFIG": ""})

    done, during = threading.Event(), []

    def submit_meanwhile():  # bounded: at most 300 jobs
        while not done.is_set() and len(during) < 300:
            during.append(cp.submit("true"))
    writer = threading.Thread(target=submit_meanwhile, daemon=True)
    writer.start()
    r = ctl("--output=json", "backup", f"--database={cp.database}", copy)
    done.set()
    writer.join(30)
    t.eq(r.returncode, EXIT_OK, f"backup succeeds while jobs are submitted: {r.stderr}")
    info = json.loads(r.stdout)
    con = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    ids = {row[0] for row in con.execute("SELECT job_id FROM jobs")}
    t.eq(con.execute("PRAGMA integrity_check").fetchone()[0], "ok", "the copy is a whole database")
    t.ok(set(before) <= ids, "every job submitted before the backup is in the copy")
    t.eq((info["path"], info["jobs"], info["schema_version"]),
         (copy, len(ids), con.execute("PRAGMA user_version").fetchone()[0]), f"and the report says what it holds: {info}")
    orphans = con.execute("SELECT count(*) FROM jobs j WHERE NOT EXISTS (SELECT 1 FROM audit_events e "
                          "WHERE e.job_id = j.job_id AND e.event = 'job.submitted')").fetchone()[0]
    t.eq(orphans, 0, "one commit's state: every job in the copy has its submission event")
    con.close()

    st = os.stat(copy)
    r = ctl("backup", f"--database={cp.database}", copy)
    t.eq(r.returncode, EXIT_FAILURE, "an existing file is never replaced")
    t.ok("exists" in r.stderr and os.stat(copy).st_mtime_ns == st.st_mtime_ns, f"it says so: {r.stderr.strip()}")
    r = ctl("backup", f"--database={os.path.join(t.tmp, 'none.db')}", os.path.join(t.tmp, "backups", "x.db"))
    t.eq(r.returncode, EXIT_NOT_FOUND, f"no such database: exit 4 ({r.stderr.strip()})")
    r = ctl("backup", f"--database={cp.admin_token_file}", os.path.join(t.tmp, "backups", "y.db"))
    t.eq(r.returncode, EXIT_FAILURE, f"a file that is not a database: exit 1 ({r.stderr.strip()})")
    t.eq(sorted(os.listdir(os.path.dirname(copy))), ["copy.db"], "the failures left no file behind")
    t.eq(ctl("backup").returncode, EXIT_USAGE, "no FILE: usage error")

    t.eq(cp.stop(), 0, "control plane stopped")
    for suffix in ("-wal", "-shm"):
        if os.path.exists(cp.database + suffix):
            os.unlink(cp.database + suffix)
    shutil.copyfile(copy, cp.database)
    cp.restart()
    restored = {j["job_id"] for j in http.json("list-jobs")}
    t.eq(restored, ids, "the restored control plane has the copy's jobs, no more, no fewer")
    t.eq(http.json("status", before[0])["status"], "PENDING", "in the state the copy has them")

if __name__ == "__main__":
    require_tool("dbus-daemon", "dbus-daemon")
    require_tool("busctl", "systemd")
    run()
