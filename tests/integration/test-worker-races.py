#!/usr/bin/env python3
"""Races between entropy-worker and the answers of entropy-control, on 127.0.0.1.

Regression tests of five worker bugs (fixed together): each puts one answer of the control plane
in the worker's way at the moment that once went wrong, through a proxy that holds chosen requests
or answers until the test lets them go, and checks what a user relies on:

  - a result recorded while a /reconnect is in flight is delivered, once (the 'keep' in that
    /reconnect's answer used to settle it unsent);
  - the answer to an earlier assignment's result, replayed in a /reconnect, leaves the job's newer
    assignment running (it was taken for a reassignment and killed it);
  - a heartbeat answered late, after the job was handed out again, leaves that newer assignment
    running (its bare abort list killed it);
  - a run stopping for its timeout keeps its lease while renewals get through, and once its lease
    is lost as well it is gone before its rerun starts elsewhere (it kept its full kill grace, and
    ran on beside the rerun);
  - a control plane restarted with a shorter lease-timeout gets its workers to count that one
    (they went on with the claim's, and stopped a job after it was reassigned);
  - a worker stopped while the answer to its /ack is on its way hands the job back (it left the
    job to run out its lease, an attempt lost);
  - entropy-keeper holds no socket of the worker other than its own (it inherited the worker's
    connections to the control plane, and kept them half open).

Every wait is on an event (a request the proxy saw, a log line, a record in the worker's state);
the proxy is tests/faults/proxy.py's, without its random faults.
"""

import asyncio
import json
import os
import signal
import sys

from entropy_test import TIME_SCALE, TestFailure, run, socket_fds, span, test
from worker_harness import (FAST_WORKER, WorkerProcess, gate_loop, keeper_of, overlapping, require_daemons,
                            run_intervals)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "faults"))
from proxy import FaultProxy  # noqa: E402

require_daemons()

# lease.c sends no heartbeat while this many are unanswered: with that many held, the next
# heartbeat the worker sends shows that it has read one of their answers.
HEARTBEATS_IN_FLIGHT_MAX = 4

# Requests a test holds must not time out in the worker meanwhile.
LONG_REQUEST_TIMEOUT = f"{int(30 * TIME_SCALE)}s"

HEARTBEAT_INTERVAL = span(FAST_WORKER["heartbeat-interval"])


class Request:
    """A worker request as the proxy forwarded it, and the control plane's answer."""

    def __init__(self, raw):
        head, _, body = raw.partition(b"\r\n\r\n")
        self.route = head.split(b" ", 2)[1].decode("latin-1").split("?", 1)[0]
        self.body = _json(body)
        self.status = None
        self.answer = None

    def reports(self, assignment_id):
        """A heartbeat or /reconnect naming assignment_id among the jobs the worker runs."""
        return any(j.get("assignment_id") == assignment_id for j in (self.body or {}).get("current_jobs") or [])


def _json(data):
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


class Hold:
    """Requests to one route held (before they are forwarded, or their answers after) until release()."""

    def __init__(self, proxy, route, after, match):
        self.proxy, self.route, self.after, self.match = proxy, route, after, match
        self.held = []  # the Requests held so far, released or not
        self._active = True
        self._waiting = []

    def applies(self, req, after):
        return self._active and after == self.after and req.route == self.route and (not self.match or self.match(req))

    def release(self):
        def now():
            self._active = False
            for f in self._waiting:
                if not f.done():
                    f.set_result(None)
        self.proxy.loop.call_soon_threadsafe(now)


class GateProxy(FaultProxy):
    """tests/faults/proxy.py's proxy with no random fault; a test holds or refuses chosen requests,
    and sees every request forwarded (requests) with its answer."""

    def __init__(self, t, cp):
        super().__init__(cp.port)
        self.requests = []
        self.holds = []
        self.canned = {}  # route: the raw answer given instead of forwarding
        self.start()
        t.cleanups.append(self.stop)

    def hold(self, route, after=False, match=None):
        h = Hold(self, route, after, match)
        self.holds.append(h)
        return h

    def answer(self, route, status, body, content_type):
        """Answers every request to route with status and body, without forwarding it; status
        None: forward again."""
        if status is None:
            self.canned.pop(route, None)
        else:
            self.canned[route] = (b"HTTP/1.1 %d Canned\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                                  % (status, content_type, len(body)) + body)

    def refuse(self, route):
        """Answers 503 to every request to route, as the control plane would when failing."""
        self.answer(route, 503, b"{}", b"application/json")

    def impostor(self, route, status, body=b"<html><body>Sign in to the network</body></html>"):
        """Answers every request to route as something between the worker and the control plane
        would (a captive portal, a proxy without a route): an HTML page. status None: forward again."""
        self.answer(route, status, body, b"text/html")

    def seen(self, route):
        return [r for r in list(self.requests) if r.route == route]

    async def _wait_holds(self, req, after):
        for h in list(self.holds):
            if h.applies(req, after):
                f = self.loop.create_future()
                h._waiting.append(f)
                h.held.append(req)
                await f

    async def _forward(self, raw):
        req = Request(raw)
        self.requests.append(req)
        try:
            await self._wait_holds(req, after=False)
            resp = self.canned.get(req.route) or await super()._forward(raw)
            head, _, body = resp.partition(b"\r\n\r\n")
            req.status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else None
            req.answer = _json(body)
            await self._wait_holds(req, after=True)
            return resp
        except asyncio.CancelledError:
            # stop() cancels what is still held or in flight: ended as a dropped connection, not
            # as a cancelled connection task, which asyncio would report on stderr.
            raise OSError("proxy stopped") from None


def via(proxy, **options):
    """Worker options for a worker that talks to the control plane through proxy."""
    return dict(options, **{"control-url": proxy.url})


def capabilities_file(t, caps):
    path = os.path.join(t.tmp, "worker.conf")
    with open(path, "w") as f:
        f.write(f"[worker]\ncapabilities = {caps}\n")
    return path


def reload_with_capabilities(w, conf, caps):
    """SIGHUP with other capabilities: the worker registers again and sends a /reconnect."""
    with open(conf, "w") as f:
        f.write(f"[worker]\ncapabilities = {caps}\n")
    w.signal(signal.SIGHUP)


def started_run(t, w, job_id, attempt, timeout=10.0):
    """Waits until w has started the job's attempt (its process exists); returns its run record."""
    box = {}

    def started():
        box["runs"] = w.runs(job_id)
        return next((r for r in box["runs"] if r["attempt"] == attempt and r["pid"]), None)
    return t.wait_for(started, timeout, f"{w.name} to start attempt {attempt} of job {job_id}",
                      lambda: str(box.get("runs")))


def run_ended(w, assignment_id):
    """w's run record of assignment_id if that run has ended, else None."""
    return next((r for r in w.runs() if r["assignment_id"] == assignment_id and r["ended_at"]), None)


def ended_run(t, w, assignment_id, timeout=10.0):
    """Waits until w's run of assignment_id has ended; returns its run record."""
    return t.wait_for(lambda: run_ended(w, assignment_id), timeout,
                      f"{w.name}'s run of assignment {assignment_id} to end", lambda: str(w.runs()))


def second_attempt_completes(t, cp, w, job_id, second, gate):
    """Opens the gate the second attempt (assignment `second`) waits at; it must run to its end and
    the job complete in it."""
    open(gate, "w").close()
    rerun = ended_run(t, w, second)
    t.eq((rerun["outcome"], rerun["exit_code"]), ("exited", 0), "the second attempt ran to its end")
    job = cp.wait_job_state(job_id, ["COMPLETED", "FAILED"], timeout=15)
    t.eq((job["status"], job["attempt_count"], job["assignment_id"]), ("COMPLETED", 2, second),
         "the job COMPLETED in its second attempt")


# -- results and /reconnect ------------------------------------------------------------------------

@test
def test_result_recorded_during_a_reconnect_is_delivered_once(t):
    """A job ends while the worker's /reconnect is in flight: its result, recorded after the
    request left, is not in it, and the answer's 'keep' for the job's assignment must not settle
    it. It is sent once, accepted, and the job completes in its first attempt."""
    cp = t.control_plane(options={"lease-timeout": "10s", "heartbeat-timeout": "10s"})
    proxy = GateProxy(t, cp)
    conf = capabilities_file(t, "a")
    w = WorkerProcess(t, cp, "w1", options=via(proxy, config=conf, **{"request-timeout": LONG_REQUEST_TIMEOUT}))
    w.start()
    gate = os.path.join(t.tmp, "gate")
    job_id = cp.submit("sh", args=["-c", gate_loop(gate)])
    assignment = started_run(t, w, job_id, 1)["assignment_id"]

    answer = proxy.hold("/reconnect", after=True)
    reload_with_capabilities(w, conf, "b")
    t.wait_for(lambda: answer.held, 10, "the control plane to answer the /reconnect (held)")
    t.require(answer.held[0].reports(assignment), "the /reconnect names the running job")
    keep = [a for a in (answer.held[0].answer or {}).get("actions", []) if a.get("job_id") == job_id]
    t.require([a.get("action") for a in keep] == ["keep"], f"the answer says 'keep' for the job: {keep}")
    open(gate, "w").close()
    t.wait_for(lambda: w.outbox(job_id, "pending"), 10, "the job's result to be recorded while the answer is held")
    answer.release()

    t.wait_for(lambda: w.outbox(job_id) and not w.outbox(job_id, "pending"), 10, "the result to be settled")
    sent = [(r.body.get("assignment_id"), r.status) for r in proxy.seen("/complete") if r.body.get("job_id") == job_id]
    t.eq(sent, [(assignment, 200)], "the result was sent once, for its assignment, and accepted")
    t.eq([(o["state"], o["last_error"]) for o in w.outbox(job_id)], [("accepted", None)], "the worker's outbox")
    job = cp.job(job_id)
    t.eq((job["status"], job["attempt_count"], job["assignment_id"]), ("COMPLETED", 1, assignment),
         "the job COMPLETED in its first attempt")
    t.eq(len(cp.events(job_id=job_id, event="job.completed", limit=1000)), 1, "completed exactly once")


@test
def test_answer_to_an_old_assignments_result_leaves_the_rerun_alone(t):
    """The failure of a job's first attempt could not be delivered; the job runs again on the same
    worker. A /reconnect replays that failure, and its answer ('fail', REJECTED, with the first
    assignment) is about that result: the second attempt runs on and completes."""
    cp = t.control_plane()
    proxy = GateProxy(t, cp)
    proxy.refuse("/fail")
    conf = capabilities_file(t, "a")
    w = WorkerProcess(t, cp, "w1", options=via(proxy, config=conf)).start()
    gate = os.path.join(t.tmp, "gate")
    job_id = cp.submit("sh", args=["-c", f'[ "$ENTROPY_ATTEMPT" = 1 ] && exit 1; {gate_loop(gate)}'], max_attempts=3)
    t.wait_for(lambda: w.outbox(job_id, "pending"), 10, "the first attempt's failure to wait in the outbox")
    first = w.outbox(job_id)[0]["assignment_id"]
    # The control plane never hears of it: the job's lease runs out, and the worker gets it again.
    second = started_run(t, w, job_id, 2)["assignment_id"]

    reconnects = len(proxy.seen("/reconnect"))
    reload_with_capabilities(w, conf, "b")
    t.wait_for(lambda: w.log_text().count("Reconnected; polling for work.") >= 2, 10,
               "the worker to act on the /reconnect's answer")
    req = proxy.seen("/reconnect")[reconnects]
    replayed = [(c.get("assignment_id"), c.get("status")) for c in req.body.get("completed_jobs", [])]
    t.require(replayed == [(first, "FAILED")] and req.reports(second),
              f"the /reconnect replays the first failure and names the second run: {req.body}")
    answers = [(a.get("action"), a.get("assignment_id"), a.get("result")) for a in req.answer.get("actions", [])]
    t.require(("fail", first, "REJECTED") in answers, f"the answer refuses the old failure: {answers}")

    second_attempt_completes(t, cp, w, job_id, second, gate)
    t.wait_for(lambda: not w.outbox(job_id, "pending"), 10, "every result of the job to be settled")
    t.eq([(o["assignment_id"], o["state"]) for o in w.outbox(job_id)], [(first, "rejected"), (second, "accepted")],
         "the old failure refused, the second attempt's completion accepted")


# -- heartbeats and leases -------------------------------------------------------------------------

@test
def test_late_heartbeat_answer_leaves_the_rerun_alone(t):
    """Heartbeats naming a job's first assignment are answered only after the job has failed and
    the worker runs it again: the control plane lists the job to abort (it is not that
    assignment's any more), and the worker must leave the second attempt alone."""
    cp = t.control_plane(options={"lease-timeout": "6s", "heartbeat-timeout": "6s"})
    proxy = GateProxy(t, cp)
    w = WorkerProcess(t, cp, "w1", options=via(proxy, **{"request-timeout": LONG_REQUEST_TIMEOUT})).start()
    gate1, gate2 = os.path.join(t.tmp, "gate1"), os.path.join(t.tmp, "gate2")
    script = f'if [ "$ENTROPY_ATTEMPT" = 1 ]; then {gate_loop(gate1)}; exit 1; fi; {gate_loop(gate2)}'
    job_id = cp.submit("sh", args=["-c", script], max_attempts=3)
    first = started_run(t, w, job_id, 1)["assignment_id"]

    late = proxy.hold("/heartbeat", match=lambda r: r.reports(first))
    t.wait_for(lambda: len(late.held) >= HEARTBEATS_IN_FLIGHT_MAX, 10,
               f"{HEARTBEATS_IN_FLIGHT_MAX} heartbeats naming the first assignment to be held")
    open(gate1, "w").close()
    second = started_run(t, w, job_id, 2)["assignment_id"]
    t.require(cp.job(job_id)["assignment_id"] == second, "the control plane has the job in its second assignment")

    seen = len(proxy.requests)
    late.release()
    t.wait_for(lambda: any(r.route == "/heartbeat" for r in proxy.requests[seen:]), 10,
               "the worker to read a late answer (it sends its next heartbeat only then)")
    aborts = [r.answer.get("abort_jobs") for r in late.held if r.answer]
    t.require(aborts and all(a == [job_id] for a in aborts), f"the late answers list the job to abort: {aborts}")

    second_attempt_completes(t, cp, w, job_id, second, gate2)


@test
def test_lease_lost_while_stopping_ends_the_run_before_its_rerun(t):
    """A job that ignores SIGTERM times out, a long kill grace ahead of it. While its worker renews
    its lease, it runs on; once the worker is cut off from the control plane, the lease it cannot
    renew must end the run in time, before the job runs again on another worker."""
    lease = 3
    cp = t.control_plane(options={"lease-timeout": f"{lease}s", "heartbeat-timeout": f"{lease}s"})
    proxy = GateProxy(t, cp)
    w1 = WorkerProcess(t, cp, "w1", options=via(proxy, **{"kill-grace": "60s"})).start()
    script = '[ "$ENTROPY_ATTEMPT" = 1 ] || exit 0; trap "" TERM; sleep 60'
    job_id = cp.submit("sh", args=["-c", script], timeout_ms=200, max_attempts=3)
    first = started_run(t, w1, job_id, 1)["assignment_id"]
    w1.wait_log(f"Stopping job {job_id}: timed out")
    # While its renewals get through, the stopping run keeps its lease (and the rest of its kill
    # grace): it is still there more than a lease's worth of heartbeats later.
    since = len(proxy.requests)
    needed = int(1.2 * lease / HEARTBEAT_INTERVAL) + 1

    def renewals():
        return [r for r in proxy.requests[since:] if r.route == "/heartbeat" and r.reports(first) and r.status == 200]
    t.wait_for(lambda: len(renewals()) >= needed or run_ended(w1, first), 10 + lease,
               f"{needed} heartbeats renewing the stopping run", lambda: f"{len(renewals())} so far")
    t.require(not run_ended(w1, first), f"the stopping run goes on while its lease is renewed (it ended after "
                                        f"{len(renewals())} renewals: {w1.runs(job_id)})")
    w2 = WorkerProcess(t, cp, "w2").start()
    proxy.set_blackhole(True)

    rerun = started_run(t, w2, job_id, 2, timeout=lease + 10)
    try:
        ended_run(t, w1, first, timeout=5)
    except TestFailure:
        pass  # still running: the overlap is reported below
    runs = run_intervals(w1.runs(job_id) + w2.runs(job_id))
    t.eq(overlapping(runs), None, f"no two runs of the job overlap: {runs}")
    t.eq([r[2] for r in runs], [first, rerun["assignment_id"]], "the first run, then its rerun")


@test
def test_stop_while_the_ack_is_answered_hands_the_job_back(t):
    """SIGTERM reaches the worker while its /ack is in flight, after the control plane took it (the
    job RUNNING there). The worker waits for that answer and hands the job back: it is claimable
    at once and completes on another worker in one counted attempt, instead of waiting out its
    lease as LOST (an attempt lost)."""
    cp = t.control_plane(options={"lease-timeout": "60s", "heartbeat-timeout": "60s"})
    proxy = GateProxy(t, cp)
    w1 = WorkerProcess(t, cp, "w1", options=via(proxy, **{"request-timeout": LONG_REQUEST_TIMEOUT})).start()
    answer = proxy.hold("/ack", after=True)
    job_id = cp.submit("true")
    t.wait_for(lambda: answer.held, 10, "the control plane to answer the /ack (held)")
    t.eq(cp.job(job_id)["status"], "RUNNING", "the control plane took the ack")
    w1.signal(signal.SIGTERM)
    w1.wait_log(f"Job {job_id} will not start")
    answer.release()
    t.wait_for(lambda: w1.proc.poll() is not None, 10, "the worker to exit")
    t.eq(w1.proc.returncode, 0, "the worker stopped cleanly")
    t.eq([(r.body.get("handback"), r.status) for r in proxy.seen("/fail")], [(True, 200)],
         "it handed the job back, and the control plane took it")
    t.eq(w1.runs(job_id)[0]["outcome"], "handback", "its run record says so")

    WorkerProcess(t, cp, "w2").start()
    job = cp.wait_job_state(job_id, ["COMPLETED", "FAILED"], timeout=15)
    t.eq((job["status"], job["worker_id"], job["attempt_count"]), ("COMPLETED", "w2", 1),
         "the job COMPLETED on the other worker, one attempt counted")
    t.eq(cp.events(job_id=job_id, event="job.lost", limit=100), [], "it was never LOST")


@test
def test_a_restart_with_a_shorter_lease_shortens_the_workers_count(t):
    """The control plane restarts with a shorter lease-timeout while a job runs. Its heartbeat
    answers say so, and when renewals fail from then on the worker stops the job within the new
    length, before the control plane reassigns it (it counted on with the claim's longer lease,
    and the job ran on after it was LOST)."""
    cp = t.control_plane(options={"lease-timeout": "30s", "heartbeat-timeout": "30s"})
    proxy = GateProxy(t, cp)
    w = WorkerProcess(t, cp, "w1", options=via(proxy)).start()
    gate = os.path.join(t.tmp, "gate")
    job_id = cp.submit("sh", args=["-c", gate_loop(gate)], max_attempts=1)
    assignment = started_run(t, w, job_id, 1)["assignment_id"]

    cp.stop()
    cp.argv = [a.replace("--lease-timeout=30s", "--lease-timeout=2s") for a in cp.argv]
    cp.restart()
    seen = len(proxy.seen("/heartbeat"))
    t.wait_for(lambda: any(r.status == 200 and (r.answer or {}).get("lease_timeout_ms") == 2000
                           for r in proxy.seen("/heartbeat")[seen:]), 10,
               "a heartbeat answered with the new lease length")
    proxy.refuse("/heartbeat")
    run = ended_run(t, w, assignment, timeout=10)
    t.eq(run["outcome"], "lease-expired", "the worker stopped the job for its lease")
    job = cp.wait_job_state(job_id, "FAILED", timeout=10)
    t.ok("stopped by the worker" in (job["last_error"] or ""), f"its failure came from the worker: {job['last_error']}")
    t.eq(cp.events(job_id=job_id, event="job.lost", limit=10), [], "before the control plane's lease ran out")


# -- answers that are not the control plane's -----------------------------------------------------

@test
def test_a_page_from_the_way_does_not_settle_a_result(t):
    """Something between the worker and the control plane (a captive portal, a proxy with no route
    for the path) that answers 200 or 404 with a page of its own neither settles a result (it used
    to be dropped from the replay buffer as accepted, or as refused for good) nor renews a lease nor
    starts a job: only the control plane's JSON does."""
    cp = t.control_plane()
    proxy = GateProxy(t, cp)
    w = WorkerProcess(t, cp, "w1", options=via(proxy)).start()
    proxy.impostor("/complete", 200)
    job_id = cp.submit("true")
    t.wait_for(lambda: len(proxy.seen("/complete")) >= 2, 10, "two deliveries answered by the portal")
    t.ok(w.outbox(job_id, "pending"), "the result is still buffered after a 200 page")
    proxy.impostor("/complete", 404, b"<html>Not Found</html>")
    n = len(proxy.seen("/complete"))
    t.wait_for(lambda: len(proxy.seen("/complete")) > n, 10, "a delivery answered 404 by the proxy")
    t.ok(w.outbox(job_id, "pending"), "still buffered after a 404 page")
    t.eq(cp.job(job_id)["status"], "RUNNING", "the control plane has not heard of it")
    proxy.impostor("/complete", None)
    cp.wait_job_state(job_id, "COMPLETED")
    t.ok("HTTP 200, not the control plane's answer" in w.log_text(), "the worker said why it kept the result")

    proxy.impostor("/ack", 200)
    acked = cp.submit("true")
    t.wait_for(lambda: len(proxy.seen("/ack")) >= 3, 10, "acks answered by the portal")
    t.eq(w.runs(acked), [], "the job did not start on a page's word")
    proxy.impostor("/ack", None)
    cp.wait_job_state(acked, "COMPLETED")
    t.eq(len(w.runs(acked)), 1, "it ran once the control plane accepted the ack")


@test
def test_a_page_from_the_way_renews_no_lease(t):
    """Heartbeats answered 200 by a page renew nothing: the worker stops its job before the
    control plane's lease runs out, as it does when the control plane cannot be reached."""
    gate = os.path.join(t.tmp, "gate")
    os.mkfifo(gate)
    cp = t.control_plane()
    proxy = GateProxy(t, cp)
    w = WorkerProcess(t, cp, "w1", options=via(proxy)).start()
    job_id = cp.submit("sh", args=["-c", f"read x < {gate}"], max_attempts=1)
    cp.wait_job_state(job_id, "RUNNING")
    proxy.impostor("/heartbeat", 200)
    w.wait_log(f"Job {job_id}: lease expired: no successful renewal")


# -- entropy-keeper --------------------------------------------------------------------------------

@test
def test_keeper_holds_only_its_own_socket(t):
    """entropy-keeper, at the worker's start and when the worker starts it again while a request
    to the control plane is open, holds no socket but its end of the worker's socket pair (fd 3)."""
    cp = t.control_plane()
    proxy = GateProxy(t, cp)
    w = WorkerProcess(t, cp, "w1", options=via(proxy, **{"request-timeout": LONG_REQUEST_TIMEOUT})).start()
    cp.wait_job_state(cp.submit("true"), "COMPLETED")
    keeper = keeper_of(w)
    t.require(keeper, "the worker has an entropy-keeper")
    t.eq(socket_fds(keeper).keys() - {3}, set(), f"the first entropy-keeper's sockets: {socket_fds(keeper)}")

    poll = proxy.hold("/next-job")
    t.wait_for(lambda: poll.held, 10, "a poll of the worker to be held open")
    os.kill(keeper, signal.SIGKILL)
    w.wait_log(f"entropy-keeper (pid {keeper}) is gone; starting it again.")
    job_id = cp.submit("true")
    poll.release()
    cp.wait_job_state(job_id, "COMPLETED")  # started through the new entropy-keeper
    again = keeper_of(w)
    t.require(again and again != keeper, "the worker started another entropy-keeper")
    t.eq(socket_fds(again).keys() - {3}, set(), f"the new entropy-keeper's sockets: {socket_fds(again)}")



@test
def test_keeper_restart_spares_the_gpu_reading(t):
    """When entropy-keeper dies, the jobs it started without reporting them are killed. The GPU
    reading's nvidia-smi, also a child of the worker that leads a group of its own, is not one of
    them: it used to be killed and reaped behind sd-event's back, whose child source then failed
    the event loop, and the worker exited and took its running jobs with it."""
    smi, started, gate, job_gate = (os.path.join(t.tmp, n) for n in ("nvidia-smi", "smi.pid", "gate", "job-gate"))
    os.mkfifo(gate)
    os.mkfifo(job_gate)
    with open(smi, "w") as f:
        f.write(f"#!/bin/sh\n[ \"$1\" = -L ] && exit 1\necho $$ > {started}.tmp && mv {started}.tmp {started}\n"
                f"read x < {gate}\necho '0, Test GPU, 37, 2048, 16384'\n")
    os.chmod(smi, 0o755)
    cp = t.control_plane()
    w = WorkerProcess(t, cp, "w1", options={"nvidia-smi": smi, "gpu-metrics-interval": "1s",
                                            "heartbeat-interval": "200ms"}).start()
    job_id = cp.submit("sh", args=["-c", f"read x < {job_gate}"])
    cp.wait_job_state(job_id, "RUNNING")
    t.wait_for(lambda: os.path.exists(started), 10, "a GPU reading under way")
    keeper = keeper_of(w)
    t.require(keeper, "the worker has an entropy-keeper")
    os.kill(keeper, signal.SIGKILL)
    w.wait_log(f"entropy-keeper (pid {keeper}) is gone; starting it again.")
    try:
        fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        raise TestFailure(f"the GPU reading was killed with entropy-keeper ({e}); worker exit {w.proc.poll()}")
    os.write(fd, b"go\n")
    os.close(fd)

    def gpu_reported():
        status, workers = cp.admin("GET", "/workers")
        return status == 200 and any((x.get("heartbeat_metrics") or {}).get("gpus") for x in workers)
    t.wait_for(gpu_reported, 10, "the reading's figures in a heartbeat")
    t.eq(w.proc.poll(), None, "the worker runs on")
    with open(started) as f:
        t.ok(f"Killing process {f.read().strip()}," not in w.log_text(), "nvidia-smi was not taken for a job")
    fd = os.open(job_gate, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"go\n")
    os.close(fd)
    cp.wait_job_state(job_id, "COMPLETED")


if __name__ == "__main__":
    run()
