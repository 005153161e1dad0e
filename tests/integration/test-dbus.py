#!/usr/bin/env python3
"""The D-Bus admin interface of entropy-control (org.entropy.Control1) on a private dbus-daemon:
every Manager method called with busctl, the job and worker objects and the ObjectManager,
properties and signals observed with `busctl monitor`, the introspection compared with
dbus/org.entropy.Control1.xml, named errors for bad input and unknown objects, authorization of
callers, and a bus that restarts or is not there at all."""

import importlib.util
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

from entropy_test import ADMIN_TOKEN, SRCDIR, TIME_SCALE, Http, TestFailure, require_tool, run, test

_spec = importlib.util.spec_from_file_location(
    "dbus_helpers", os.path.join(os.path.dirname(os.path.abspath(__file__)), "test-dbus-helpers.py"))
h = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(h)

XML = os.path.join(SRCDIR, "dbus", "org.entropy.Control1.xml")
ERR = "org.entropy.Control1.Error."


def setup(t, options=None, env=None):
    bus = h.PrivateBus(t).start()
    cp = h.start_control(t, bus, options=options, env=env)
    return bus, cp


def submit(t, bus, **spec):
    spec.setdefault("command", "true")
    job_id, path = h.call(t, bus, "SubmitJob", *h.asv(spec))
    return job_id, path


# ---- methods ---------------------------------------------------------------------------------

@test
def test_submit_job_takes_every_http_field_and_matches_http_view(t):
    bus, cp = setup(t)
    job_id, path = submit(t, bus, command="echo", args=["a", "b c"], working_dir="/tmp", max_attempts=5,
                          timeout_ms=1500, priority=7, scheduled_at=1.5, needs_gpu=True, requirements=["x", "y"])
    t.eq(path, h.job_path(job_id), "SubmitJob returns the job's object path")
    job = h.variant_dict(h.call(t, bus, "GetJob", "s", job_id)[0])
    for k, v in {"command": "echo", "args": ["a", "b c"], "working_dir": "/tmp", "max_attempts": 5,
                 "timeout_ms": 1500, "priority": 7, "needs_gpu": True, "requirements": ["x", "y"],
                 "status": "PENDING", "job_id": job_id}.items():
        t.eq(job.get(k), v, f"GetJob field {k}")
    t.eq(job.get("scheduled_at"), 1.5, "scheduled_at in Unix seconds")
    status, http_job = cp.admin("GET", f"/jobs/{job_id}")
    t.eq(status, 200, "the job exists over HTTP")
    http_job = {k: v for k, v in http_job.items() if v is not None}
    t.eq(job, http_job, "GetJob answers what GET /jobs/{id} answers (nulls left out)")


@test
def test_list_jobs_filters_by_state_and_worker(t):
    bus, cp = setup(t, options=h.SLOW_CLOCK)
    a, _ = submit(t, bus)
    b, _ = submit(t, bus, command="false")
    w = h.FakeWorker(cp, "w-list")
    claimed = w.claim()
    h.call(t, bus, "AbortJob", "ss", a if claimed["job_id"] != a else b, "test")
    everything = [h.variant_dict(j) for j in h.call(t, bus, "ListJobs", "a{sv}", 0)[0]]
    t.eq(sorted(j["job_id"] for j in everything), sorted([a, b]), "ListJobs without filters lists all jobs")
    t.eq(everything[0]["job_id"], b, "newest first")
    aborted = h.call(t, bus, "ListJobs", *h.asv({"state": "ABORTED"}))[0]
    t.eq(len(aborted), 1, "one ABORTED job")
    held = [h.variant_dict(j) for j in h.call(t, bus, "ListJobs", *h.asv({"worker": "w-list"}))[0]]
    t.eq([j["job_id"] for j in held], [claimed["job_id"]], "worker filter gives the claimed job")
    limited = h.call(t, bus, "ListJobs", *h.asv({"limit": 1}))[0]
    t.eq(len(limited), 1, "limit is applied")


@test
def test_abort_job_then_conflict_and_unknown_job(t):
    bus, cp = setup(t)
    job_id, _ = submit(t, bus)
    t.eq(h.call(t, bus, "AbortJob", "ss", job_id, "operator said so"), [], "AbortJob answers nothing")
    job = cp.job(job_id)
    t.eq(job["status"], "ABORTED", "the job is ABORTED")
    t.eq(job["last_error"], "operator said so", "the reason is kept in last_error")
    h.expect_error(t, bus, ERR + "Conflict", "AbortJob", "ss", job_id, "again")
    h.expect_error(t, bus, ERR + "NoSuchJob", "AbortJob", "ss", "no-such-job", "")


@test
def test_abort_worker_jobs_counts_the_jobs_it_held(t):
    bus, cp = setup(t, options=h.SLOW_CLOCK)
    submit(t, bus)
    submit(t, bus)
    w = h.FakeWorker(cp, "w-abort")
    j1 = w.claim()
    w.ack(j1)
    j2 = w.claim()
    t.eq(h.call(t, bus, "AbortWorkerJobs", "ss", "w-abort", "host retired"), [2], "two jobs aborted")
    for j in (j1, j2):
        t.eq(cp.job(j["job_id"])["status"], "ABORTED", f"job {j['job_id']} ABORTED")
    t.eq(h.call(t, bus, "AbortWorkerJobs", "ss", "w-abort", ""), [0], "nothing left: 0, no error")


@test
def test_workers_listed_drained_and_resumed(t):
    bus, cp = setup(t, options=h.SLOW_CLOCK)
    h.FakeWorker(cp, "w-drain", capabilities=["gpu"])
    workers = [h.variant_dict(w) for w in h.call(t, bus, "ListWorkers")[0]]
    t.eq([w["worker_id"] for w in workers], ["w-drain"], "ListWorkers lists the worker")
    t.eq(workers[0]["capabilities"], ["gpu"], "with its capabilities")
    one = h.variant_dict(h.call(t, bus, "GetWorker", "s", "w-drain")[0])
    t.eq(one["status"], "ONLINE", "GetWorker: ONLINE")
    h.call(t, bus, "DrainWorker", "s", "w-drain")
    path = h.worker_path("w-drain")
    t.eq(h.get_property(t, bus, path, h.WORKER_IFACE, "Draining"), True, "Draining property true")
    t.eq(h.get_property(t, bus, path, h.WORKER_IFACE, "Status"), "DRAINING", "Status DRAINING")
    submit(t, bus)
    s, _ = cp.worker("GET", "/next-job?worker_id=w-drain")
    t.eq(s, 204, "a draining worker gets no new job")
    h.call(t, bus, "ResumeWorker", "s", "w-drain")
    s, _ = cp.worker("GET", "/next-job?worker_id=w-drain")
    t.eq(s, 200, "a resumed worker gets work again")
    h.expect_error(t, bus, ERR + "NoSuchWorker", "DrainWorker", "s", "nobody")
    h.expect_error(t, bus, ERR + "NoSuchWorker", "GetWorker", "s", "nobody")


@test
def test_events_after_an_id_newest_first_and_filtered(t):
    bus, cp = setup(t)
    a, _ = submit(t, bus)
    b, _ = submit(t, bus)
    events = [h.variant_dict(e) for e in h.call(t, bus, "GetEvents", "tu", 0, 0)[0]]
    ids = [e["id"] for e in events]
    t.eq(ids, sorted(ids, reverse=True), "newest first")
    t.eq(events, [{k: v for k, v in e.items() if v is not None} for e in cp.events()],
         "GetEvents answers what GET /events answers")
    first_b = min(e["id"] for e in events if e.get("job_id") == b)
    after = [h.variant_dict(e) for e in h.call(t, bus, "GetEvents", "tu", first_b - 1, 10)[0]]
    t.require(after, "after_id: the later events are listed")
    t.eq(min(e["id"] for e in after), first_b, "after_id: from the next event on, only later ones")
    t.eq(len(h.call(t, bus, "GetEvents", "tu", 0, 1)[0]), 1, "limit")
    of_a = [h.variant_dict(e) for e in h.call(t, bus, "ListEvents", *h.asv({"job": a}))[0]]
    t.ok(of_a and all(e["job_id"] == a for e in of_a), "ListEvents job filter")
    t.eq(of_a[-1]["event"], "job.submitted", "the oldest event of a job is its submission")
    t.ok(isinstance(of_a[-1]["details"], dict), "details is a nested a{sv}")


@test
def test_reconcile_sweeps_now(t):
    # The reconcile timer is armed at the next deadline the daemon knows of (a lease's end, a
    # worker's timeout): with all of them an hour or more out, and the lease then moved into the
    # past behind the daemon's back (WAL lets another connection write), only a sweep finds it.
    bus, cp = setup(t, options={"reconcile-interval": "1h", "lease-timeout": "1h",
                                "disconnect-timeout": "1h", "heartbeat-timeout": "2h"})
    submit(t, bus)
    w = h.FakeWorker(cp, "w-sweep")
    job = w.claim()
    db = sqlite3.connect(cp.database, timeout=10 * TIME_SCALE)
    with db:
        db.execute("UPDATE jobs SET assignment_expires_at = 1 WHERE job_id = ?", (job["job_id"],))
    db.close()
    t.eq(cp.job(job["job_id"])["status"], "ASSIGNED", "the expired lease is not noticed by itself")
    changes = h.call(t, bus, "Reconcile")[0]
    t.ok(isinstance(changes, int) and changes >= 1, f"Reconcile reports its transitions ({changes})")
    t.eq(cp.job(job["job_id"])["status"], "PENDING", "the expired assignment went back to PENDING")


@test
def test_reload_tokens_takes_the_new_admin_token(t):
    bus, cp = setup(t)
    new = "admin-token-rotated-0123456789"
    with open(cp.admin_token_file, "w") as f:
        f.write(new + "\n")
    t.eq(h.call(t, bus, "ReloadTokens"), [], "ReloadTokens succeeds")
    s, _ = cp.admin("GET", "/jobs", token=new)
    t.eq(s, 200, "the new token is accepted")
    s, _ = cp.admin("GET", "/jobs", token=ADMIN_TOKEN)
    t.eq(s, 401, "the old one is not")
    os.unlink(cp.admin_token_file)
    h.expect_error(t, bus, "org.freedesktop.DBus.Error.Failed", "ReloadTokens")
    s, _ = cp.admin("GET", "/jobs", token=new)
    t.eq(s, 200, "a failed reload keeps the current token")


@test
def test_replay_results_applies_a_workers_completion(t):
    bus, cp = setup(t, options=h.SLOW_CLOCK)
    job_id, _ = submit(t, bus)
    w = h.FakeWorker(cp, "w-gone")
    job = w.claim()
    w.ack(job)
    result = {"job_id": job_id, "assignment_id": job["assignment_id"], "status": "COMPLETED",
              "completion_seq": 1, "exit_code": 0, "result_summary": "done"}
    actions = [h.variant_dict(a) for a in h.call(t, bus, "ReplayResults", "saa{sv}", "w-gone", 1,
                                                 *h.asv(result)[1:])[0]]
    t.eq([(a["job_id"], a["result"]) for a in actions], [(job_id, "ACCEPTED")], "the completion is accepted")
    done = cp.job(job_id)
    t.eq((done["status"], done["updated_by"]), ("COMPLETED", f"dbus:{os.getuid()}"),
         "and applied, in the name of the caller, not of the worker")
    again = [h.variant_dict(a) for a in h.call(t, bus, "ReplayResults", "saa{sv}", "w-gone", 1,
                                               *h.asv(result)[1:])[0]]
    t.eq(again[0]["result"], "ACCEPTED", "a repeat is an accepted no-op")
    h.expect_error(t, bus, ERR + "NoSuchWorker", "ReplayResults", "saa{sv}", "never-registered", 0)
    h.expect_error(t, bus, ERR + "InvalidArgs", "ReplayResults", "saa{sv}", "w-gone", 1,
                   *h.asv({"job_id": job_id, "status": "SLEEPING"})[1:])


# ---- errors ---------------------------------------------------------------------------------

@test
def test_bad_input_gets_named_errors(t):
    bus, cp = setup(t)
    h.expect_error(t, bus, ERR + "InvalidArgs", "SubmitJob", "a{sv}", 0)  # no command
    h.expect_error(t, bus, ERR + "InvalidArgs", "SubmitJob", *h.asv({"command": "true", "bogus": "x"}))
    h.expect_error(t, bus, ERR + "InvalidArgs", "SubmitJob", *h.asv({"command": "true", "priority": "high"}))
    h.expect_error(t, bus, ERR + "InvalidArgs", "SubmitJob", *h.asv({"command": "true", "max_attempts": 0}))
    h.expect_error(t, bus, ERR + "InvalidArgs", "SubmitJob", *h.asv({"command": "x" * 5000}))
    h.expect_error(t, bus, ERR + "InvalidArgs", "ListJobs", *h.asv({"state": "SLEEPING"}))
    h.expect_error(t, bus, ERR + "InvalidArgs", "ListEvents", *h.asv({"colour": "red"}))
    h.expect_error(t, bus, ERR + "NoSuchJob", "GetJob", "s", "does-not-exist")
    h.expect_error(t, bus, "org.freedesktop.DBus.Error.InvalidArgs", "GetJob", "u", 5)  # wrong signature
    try:
        h.get_property(t, bus, h.job_path("does-not-exist"), h.JOB_IFACE, "Status")
        t.ok(False, "an unknown job object must not exist")
    except h.BusError as e:
        t.eq(e.name, "org.freedesktop.DBus.Error.UnknownObject", "unknown job object: UnknownObject")
    s, jobs = cp.admin("GET", "/jobs")
    t.eq(jobs, [], "nothing was created by the refused calls")


# ---- objects, properties, signals -------------------------------------------------------------

@test
def test_job_and_worker_objects_enumerated_by_object_manager(t):
    bus, cp = setup(t, options=h.SLOW_CLOCK)
    job_id, path = submit(t, bus, command="sleep", args=["1"], priority=-3)
    h.FakeWorker(cp, "w-odd.id:1")  # a worker id that needs escaping
    objects = h.call(t, bus, "GetManagedObjects", interface="org.freedesktop.DBus.ObjectManager")[0]
    t.ok(path in objects and h.JOB_IFACE in objects[path], "the job is a managed object")
    props = h.variant_dict(objects[path][h.JOB_IFACE])
    t.eq((props["Id"], props["Status"], props["Command"], props["Args"], props["Priority"]),
         (job_id, "PENDING", "sleep", ["1"], -3), "with its properties")
    wpath = h.worker_path("w-odd.id:1")
    t.ok(wpath in objects and h.WORKER_IFACE in objects[wpath], "the worker is a managed object")
    t.eq(h.get_property(t, bus, wpath, h.WORKER_IFACE, "Id"), "w-odd.id:1", "worker path decodes to its id")
    r = h.busctl_raw(t, bus, ["tree", h.NAME])
    t.ok(path in r.stdout and wpath in r.stdout, "busctl tree shows both (node enumerators)")


@test
def test_object_manager_enumerates_the_newest_jobs_only(t):
    """GetManagedObjects builds every property of every job into one reply: with all of a month's
    jobs that passed the bus's message limit, and the broker dropped the daemon. It lists the
    newest 1000; an older job's object still answers at its path."""
    bus, cp = setup(t, options=h.SLOW_CLOCK)
    oldest, oldest_path = submit(t, bus)
    done, errors = submit_until(cp, lambda: False, 1000)
    t.require(done == 1000 and not errors, f"1000 more jobs submitted ({done}, {errors})")
    objects = h.call(t, bus, "GetManagedObjects", interface="org.freedesktop.DBus.ObjectManager")[0]
    jobs = [p for p, ifaces in objects.items() if h.JOB_IFACE in ifaces]
    t.eq(len(jobs), 1000, "the newest 1000 jobs are enumerated")
    t.ok(oldest_path not in jobs, "the oldest is not")
    t.eq(h.get_property(t, bus, oldest_path, h.JOB_IFACE, "Id"), oldest, "but answers at its path")


@test
def test_a_worker_object_shows_what_the_worker_registered_with(t):
    bus, cp = setup(t, options=h.SLOW_CLOCK)
    s, body = cp.worker("POST", "/register", {"worker_id": "w-gpu", "capabilities": ["gpu"], "version": "0.9.1",
                                              "slots": 2, "gpus": ["GPU-0a1b", "1"]})
    t.require(s == 200, f"register: {s} {body}")
    h.FakeWorker(cp, "w-old")  # says nothing of itself
    objects = h.call(t, bus, "GetManagedObjects", interface="org.freedesktop.DBus.ObjectManager")[0]
    props = {w: h.variant_dict(objects[h.worker_path(w)][h.WORKER_IFACE]) for w in ("w-gpu", "w-old")}
    t.eq([(p["Version"], p["Slots"], p["GPUs"]) for p in props.values()],
         [("0.9.1", 2, ["GPU-0a1b", "1"]), ("", 0, [])], "Version, Slots and GPUs as registered; empty when not said")
    t.eq(h.get_property(t, bus, h.worker_path("w-gpu"), h.WORKER_IFACE, "Slots"), 2, "Get reads the same")


@test
def test_properties_and_signals_follow_state_changes(t):
    bus, cp = setup(t)
    mon = h.Monitor(t, bus)
    t.eq(h.get_property(t, bus, h.PATH, h.MANAGER, "JobsPending"), 0, "no job pending at first")
    job_id, path = submit(t, bus)
    mon.wait_signal("JobStateChanged", lambda m: m["payload"]["data"][:3] == [job_id, "", "PENDING"],
                    what="JobStateChanged for the submission")
    mon.wait_signal("InterfacesAdded", lambda m: m["payload"]["data"][0] == path, what="InterfacesAdded")
    mon.wait_signal("PropertiesChanged", lambda m: m["path"] == h.PATH and
                    m["payload"]["data"][1].get("JobsPending", {}).get("data") == 1,
                    what="PropertiesChanged JobsPending=1")
    t.eq(h.get_property(t, bus, h.PATH, h.MANAGER, "QueueDepth")["PENDING"], 1, "QueueDepth counts it")

    w = h.FakeWorker(cp, "w-sig")
    mon.wait_signal("WorkerStateChanged", lambda m: m["payload"]["data"] == ["w-sig", "", "ONLINE"],
                    what="WorkerStateChanged for the registration")
    job = w.claim()
    w.ack(job)
    mon.wait_signal("JobStateChanged", lambda m: m["payload"]["data"] == [job_id, "ASSIGNED", "RUNNING",
                                                                          job["assignment_id"]],
                    what="JobStateChanged ASSIGNED -> RUNNING with the assignment")
    mon.wait_signal("PropertiesChanged", lambda m: m["path"] == path and
                    m["payload"]["data"][1].get("Status", {}).get("data") == "RUNNING",
                    what="the job object's PropertiesChanged Status=RUNNING")
    w.complete(job)
    mon.wait_signal("JobStateChanged", lambda m: m["payload"]["data"][1:3] == ["RUNNING", "COMPLETED"],
                    what="JobStateChanged RUNNING -> COMPLETED")
    done = mon.wait_signal("PropertiesChanged", lambda m: m["path"] == path and
                           m["payload"]["data"][1].get("Status", {}).get("data") == "COMPLETED",
                           what="the job object's PropertiesChanged Status=COMPLETED")[0]
    t.ok({"ExitCode", "UpdatedTimestamp", "StdoutPath"} <= set(done["payload"]["data"][2]),
         "the properties that moved with it are named as invalidated")
    t.eq(h.get_property(t, bus, path, h.JOB_IFACE, "ExitCode"), 0, "ExitCode property")
    t.eq(h.get_property(t, bus, path, h.JOB_IFACE, "Status"), "COMPLETED", "Get agrees with the signal")
    t.eq(h.get_property(t, bus, h.PATH, h.MANAGER, "WorkersByState")["ONLINE"], 1, "WorkersByState")
    # No more heartbeats: the reconciler finds the worker overdue (disconnect-timeout 700ms).
    mon.wait_signal("WorkerStateChanged", lambda m: m["payload"]["data"] == ["w-sig", "ONLINE", "DISCONNECTED"],
                    what="WorkerStateChanged ONLINE -> DISCONNECTED from a sweep")
    mon.wait_signal("PropertiesChanged", lambda m: m["path"] == h.worker_path("w-sig") and
                    m["payload"]["data"][1].get("Status", {}).get("data") == "DISCONNECTED",
                    what="the worker object's PropertiesChanged Status=DISCONNECTED")
    t.eq(h.get_property(t, bus, h.PATH, h.MANAGER, "Version"), open_version(), "Version")
    t.eq(cp.stop(), 0, "a clean exit after all that (sanitizer builds check for leaks here)")


def register(t, cp, worker_id, **fields):
    s, body = cp.worker("POST", "/register", dict(fields, worker_id=worker_id))
    t.require(s == 200, f"register {worker_id}: {s} {body}")
    return body


def worker_signals(mon, worker_id):
    """The WorkerStateChanged (old, new) pairs of a worker, and how often its object was added."""
    path = h.worker_path(worker_id)
    states = [tuple(m["payload"]["data"][1:]) for m in mon.signals("WorkerStateChanged")
              if m["payload"]["data"][0] == worker_id]
    return states, len([m for m in mon.signals("InterfacesAdded") if m["payload"]["data"][0] == path])


def wait_worker_properties(mon, worker_id, **want):
    """The worker object's PropertiesChanged with these values: it goes after the signals of the
    changes that committed with it, so once it is seen they all are."""
    path = h.worker_path(worker_id)
    return mon.wait_signal("PropertiesChanged", lambda m: m["path"] == path and all(
        m["payload"]["data"][1].get(k, {}).get("data") == v for k, v in want.items()),
        what=f"the PropertiesChanged of worker {worker_id} with {want}")[0]


@test
def test_a_known_worker_registering_again_is_a_change_not_a_new_worker(t):
    bus, cp = setup(t, options=h.SLOW_CLOCK)
    mon = h.Monitor(t, bus)
    register(t, cp, "w-re", instance_id="i1", version="1.0")
    mon.wait_signal("InterfacesAdded", lambda m: m["payload"]["data"][0] == h.worker_path("w-re"),
                    what="InterfacesAdded for the new worker")
    t.eq(worker_signals(mon, "w-re"), ([("", "ONLINE")], 1), "a new worker: '' -> ONLINE and its object added")
    # The same instance again, with another version and capabilities.
    register(t, cp, "w-re", instance_id="i1", version="1.1", capabilities=["gpu"])
    changed = wait_worker_properties(mon, "w-re", Version="1.1")
    t.eq(changed["payload"]["data"][1]["Capabilities"]["data"], ["gpu"], "the new capabilities announced")
    t.eq(worker_signals(mon, "w-re"), ([("", "ONLINE")], 1),
         "re-registering: no new object, no state change (it was ONLINE and is)")
    # A draining worker that restarts (a new instance id) stays DRAINING.
    h.call(t, bus, "DrainWorker", "s", "w-re")
    wait_worker_properties(mon, "w-re", Status="DRAINING")
    register(t, cp, "w-re", instance_id="i2", version="1.2")
    wait_worker_properties(mon, "w-re", Version="1.2", Status="DRAINING")
    t.eq(worker_signals(mon, "w-re"), ([("", "ONLINE"), ("ONLINE", "DRAINING")], 1),
         "a restart of a DRAINING worker changes no state and adds no object")
    t.eq(h.get_property(t, bus, h.worker_path("w-re"), h.WORKER_IFACE, "Status"), "DRAINING", "it is DRAINING")


@test
def test_an_offline_worker_registering_again_signals_where_it_came_from(t):
    bus, cp = setup(t)  # FAST_CONTROL: OFFLINE 1.5s after its last contact
    mon = h.Monitor(t, bus)
    register(t, cp, "w-back", instance_id="i1")
    wait_worker_properties(mon, "w-back", Status="OFFLINE")
    register(t, cp, "w-back", instance_id="i2")
    wait_worker_properties(mon, "w-back", Status="ONLINE")
    states, added = worker_signals(mon, "w-back")
    t.eq(states[0], ("", "ONLINE"), f"registered as new once ({states})")
    t.eq(states[-2:], [("DISCONNECTED", "OFFLINE"), ("OFFLINE", "ONLINE")], f"back from OFFLINE ({states})")
    t.eq(states.count(("", "ONLINE")), 1, f"and never new again ({states})")
    t.eq(added, 1, "its object added once")


@test
def test_jobs_deleted_by_retention_announce_interfaces_removed(t):
    # A day of retention and a sweep every second; the job is made two days old in the database
    # while the control plane is stopped.
    bus, cp = setup(t, options={"job-retention-days": "1", "retention-interval": "1s"})
    old_id, old_path = submit(t, bus)
    new_id, new_path = submit(t, bus)
    for job_id in (old_id, new_id):
        h.call(t, bus, "AbortJob", "ss", job_id, "done with it")
    t.eq(cp.stop(), 0, "stopped")
    with sqlite3.connect(cp.database) as db:
        db.execute("UPDATE jobs SET created_at = created_at - ?1, updated_at = updated_at - ?1 WHERE job_id = ?2",
                   (2 * 86400 * 10**6, old_id))
    mon = h.Monitor(t, bus)
    cp.restart()
    t.wait_for(bus.has_owner, 10, f"{h.NAME} to be owned again")
    removed = mon.wait_signal("InterfacesRemoved", lambda m: m["payload"]["data"][0] == old_path,
                              what="InterfacesRemoved for the job retention deleted")[0]
    t.eq((removed["path"], removed["payload"]["data"][1]), (h.PATH, [h.JOB_IFACE]),
         "from the ObjectManager, naming the job interface")
    objects = h.call(t, bus, "GetManagedObjects", interface="org.freedesktop.DBus.ObjectManager")[0]
    t.ok(old_path not in objects and new_path in objects, "the deleted job is no longer managed, the recent one is")
    t.eq([m for m in mon.signals("InterfacesRemoved") if m["payload"]["data"][0] == new_path], [],
         "the recent job was not announced gone")


@test
def test_jobs_deleted_by_retention_announce_the_counters(t):
    # QueueDepth counts terminal jobs: when retention deletes some, the Manager says so, though no
    # job event comes with the deletion. The job is made two days old behind the daemon's back.
    bus, cp = setup(t, options={"job-retention-days": "1", "retention-interval": "1s"})
    old_id, old_path = submit(t, bus)
    new_id, _ = submit(t, bus)
    for job_id in (old_id, new_id):
        h.call(t, bus, "AbortJob", "ss", job_id, "done with it")
    mon = h.Monitor(t, bus)
    t.eq(h.get_property(t, bus, h.PATH, h.MANAGER, "QueueDepth")["ABORTED"], 2, "two ABORTED jobs")
    with sqlite3.connect(cp.database, timeout=10 * TIME_SCALE) as db:
        db.execute("UPDATE jobs SET created_at = created_at - ?1, updated_at = updated_at - ?1 WHERE job_id = ?2",
                   (2 * 86400 * 10**6, old_id))
    mon.wait_signal("InterfacesRemoved", lambda m: m["payload"]["data"][0] == old_path,
                    what="InterfacesRemoved for the job retention deleted")
    changed = mon.wait_signal("PropertiesChanged", lambda m: m["path"] == h.PATH and
                              "QueueDepth" in m["payload"]["data"][1],
                              what="the Manager's PropertiesChanged naming QueueDepth")[0]
    t.eq(changed["payload"]["data"][1]["QueueDepth"]["data"]["ABORTED"], 1, "with the count after the deletion")
    t.eq(h.get_property(t, bus, h.PATH, h.MANAGER, "QueueDepth")["ABORTED"], 1, "Get reads the same")


@test
def test_removed_workers_announce_interfaces_removed(t):
    # Short timeouts so that workers go OFFLINE within a second; a day of worker retention and a
    # sweep every second, with one worker made two days silent in the database.
    bus, cp = setup(t, options={"disconnect-timeout": "300ms", "heartbeat-timeout": "1s", "lease-timeout": "1s",
                                "worker-retention-days": "1", "retention-interval": "1s"})
    mon = h.Monitor(t, bus)
    for w in ("w-rm", "w-old", "w-new"):
        h.FakeWorker(cp, w)
    h.expect_error(t, bus, ERR + "NoSuchWorker", "RemoveWorker", "s", "nobody")
    e = h.expect_error(t, bus, ERR + "Conflict", "RemoveWorker", "s", "w-rm")
    t.ok(e and "only an OFFLINE worker" in e.message, f"a worker not OFFLINE is refused, saying so: {e and e.message}")
    path = h.worker_path("w-rm")
    t.wait_for(lambda: h.get_property(t, bus, path, h.WORKER_IFACE, "Status") == "OFFLINE", 10, "w-rm OFFLINE")
    t.eq(h.call(t, bus, "RemoveWorker", "s", "w-rm"), [], "RemoveWorker of an OFFLINE worker")
    gone = mon.wait_signal("InterfacesRemoved", lambda m: m["payload"]["data"][0] == path,
                           what="InterfacesRemoved for the removed worker")[0]
    t.eq((gone["path"], gone["payload"]["data"][1]), (h.PATH, [h.WORKER_IFACE]),
         "from the ObjectManager, naming the worker interface")
    h.expect_error(t, bus, ERR + "NoSuchWorker", "GetWorker", "s", "w-rm")

    with sqlite3.connect(cp.database) as db:
        db.execute("UPDATE workers SET last_seen = last_seen - ? WHERE worker_id = 'w-old'", (2 * 86400 * 10**6,))
    old_path = h.worker_path("w-old")
    mon.wait_signal("InterfacesRemoved", lambda m: m["payload"]["data"][0] == old_path,
                    what="InterfacesRemoved for the worker retention removed")
    objects = h.call(t, bus, "GetManagedObjects", interface="org.freedesktop.DBus.ObjectManager")[0]
    t.ok(old_path not in objects and h.worker_path("w-new") in objects,
         "the worker silent for two days is gone, the recent one is kept")
    events = cp.events(event="worker.removed")
    t.eq(sorted(e["worker_id"] for e in events), ["w-old", "w-rm"], "both removals audited")


def submit_until(cp, done, limit, threads=4, timeout=120):
    """Submits `true` jobs over HTTP from a few connections until done() or `limit` jobs, for at
    most `timeout` seconds. Returns (submissions, errors): what went wrong in a thread (an answer
    other than 201, a lost connection) ends that thread and is reported here, not lost."""
    count, errors, lock = [0], [], threading.Lock()
    deadline = time.monotonic() + timeout * TIME_SCALE

    def loop():
        http = Http("127.0.0.1", cp.port, token=ADMIN_TOKEN)
        try:
            while not done() and not errors and time.monotonic() < deadline:
                with lock:
                    if count[0] >= limit:
                        return
                    count[0] += 1
                status, body = http.request("POST", "/jobs", {"command": "true"})
                if status != 201:
                    raise TestFailure(f"submit: {status} {body}")
        except Exception as e:
            with lock:
                errors.append(repr(e))
        finally:
            http.close()
    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout * TIME_SCALE + 30)
        if w.is_alive():
            errors.append("a submitting thread hung")
    return count[0], errors


@test
def test_a_stalled_bus_drops_announcements_counted_and_recovers(t):
    # A dbus-daemon that stops reading: sd-bus would queue every signal in memory. Past 8192
    # queued messages the control plane stops announcing, logs it once and counts what it did
    # not announce; HTTP goes on; once the broker reads again, announcements resume.
    bus, cp = setup(t)
    submit(t, bus)
    warning = "D-Bus is not taking signals"
    polls = [0]

    def lagged():  # the log is read every 100 submissions, not on each
        polls[0] += 1
        return polls[0] % 100 == 0 and warning in cp.log_text()
    bus.daemon.signal(signal.SIGSTOP)
    try:
        n, errors = submit_until(cp, lagged, limit=12000)
    finally:
        bus.daemon.signal(signal.SIGCONT)
    t.eq(errors, [], "every submission answered 201 while the bus was stalled")
    t.ok(warning in cp.log_text(), f"the lag was logged, after {n} submissions over HTTP")
    status, text = cp.admin("GET", "/metrics")
    m = re.search(r"^entropy_dbus_events_dropped_total (\d+)$", text if status == 200 else "", re.M)
    t.ok(m and int(m.group(1)) > 0, f"and counted in /metrics: {m.group(0) if m else text!r}")
    mon = h.Monitor(t, bus)

    def announced():
        job_id = cp.submit("true")
        return any(s["payload"]["data"][0] == job_id for s in mon.signals("JobStateChanged"))
    t.wait_for(announced, 20, "a new job to be announced again once the broker reads", interval=0.2)
    t.ok("D-Bus takes signals again" in cp.log_text(), "the recovery was logged")
    # A client learns on the bus that it missed announcements: the Manager's first
    # PropertiesChanged after the lag names UnannouncedEvents, with every counter.
    status, text = cp.admin("GET", "/metrics")
    dropped = int(re.search(r"^entropy_dbus_events_dropped_total (\d+)$", text, re.M).group(1))
    changed = [m["payload"]["data"][1] for m in mon.signals("PropertiesChanged")
               if m["path"] == h.PATH and "UnannouncedEvents" in m["payload"]["data"][1]]
    t.ok(changed and changed[0]["UnannouncedEvents"]["data"] == dropped,
         f"PropertiesChanged UnannouncedEvents = {dropped}, the metric ({changed[:1]})")
    t.ok(changed and {"JobsPending", "QueueDepth", "WorkersOnline"} <= set(changed[0]),
         f"and the counters, whose own announcements were dropped too ({sorted(changed[0]) if changed else None})")
    t.eq(h.get_property(t, bus, h.PATH, h.MANAGER, "UnannouncedEvents"), dropped, "Get reads the same")
    t.eq(cp.stop(), 0, "a clean exit")


@test
def test_changes_committed_together_announce_the_object_once(t):
    bus, cp = setup(t)
    mon = h.Monitor(t, bus)
    job_id, path = submit(t, bus, max_attempts=3)
    w = h.FakeWorker(cp, "w-lease")
    w.ack(w.claim())
    # No heartbeat: the lease (1.5s) expires and one sweep moves the job RUNNING -> LOST -> RETRYING
    # in one transaction.
    mon.wait_signal("JobStateChanged", lambda m: m["payload"]["data"][:3] == [job_id, "LOST", "RETRYING"],
                    what="JobStateChanged LOST -> RETRYING")
    # The backoff (100ms) ends in a later sweep: once its announcement is seen, every earlier one is.
    mon.wait_signal("PropertiesChanged", lambda m: m["path"] == path and
                    m["payload"]["data"][1].get("Status", {}).get("data") == "PENDING",
                    what="the job object's PropertiesChanged Status=PENDING after the backoff")
    states = [m["payload"]["data"][1:3] for m in mon.signals("JobStateChanged")
              if m["payload"]["data"][0] == job_id]
    t.ok(states.index(["RUNNING", "LOST"]) + 1 == states.index(["LOST", "RETRYING"]),
         f"both transitions signalled, in order ({states})")
    statuses = [m["payload"]["data"][1].get("Status", {}).get("data") for m in mon.signals("PropertiesChanged")
                if m["path"] == path]
    t.eq(statuses.count("RETRYING"), 1, f"one PropertiesChanged for both transitions ({statuses})")
    t.ok("LOST" not in statuses, "with the latest Status")
    # The worker went silent: its lease and its heartbeat timeout (both 1.5s) expire together.
    t.ok(h.get_property(t, bus, path, h.JOB_IFACE, "LastError") in ("lease expired", "worker offline"),
         "LastError, named invalidated, reads the cause")


def open_version():
    with open(os.path.join(SRCDIR, "configure.ac")) as f:
        for line in f:
            if line.startswith("AC_INIT("):
                return line.split(",")[1].strip(" []")
    return None


# ---- introspection --------------------------------------------------------------------------

def interfaces_of(xml_text, prefix="org.entropy."):
    """{interface: {("method", name): (in args, out args), ("signal", name): args,
                    ("property", name): (type, access, EmitsChangedSignal)}}"""
    root = ET.fromstring(xml_text)
    out = {}
    for iface in root.findall("interface"):
        name = iface.get("name")
        if not name.startswith(prefix):
            continue
        members = {}
        for m in iface.findall("method"):
            args = m.findall("arg")
            members[("method", m.get("name"))] = (
                tuple((a.get("name"), a.get("type")) for a in args if a.get("direction", "in") == "in"),
                tuple((a.get("name"), a.get("type")) for a in args if a.get("direction") == "out"))
        for s in iface.findall("signal"):
            members[("signal", s.get("name"))] = tuple((a.get("name"), a.get("type")) for a in s.findall("arg"))
        for p in iface.findall("property"):
            emits = [a.get("value") for a in p.findall("annotation")
                     if a.get("name") == "org.freedesktop.DBus.Property.EmitsChangedSignal"]
            members[("property", p.get("name"))] = (p.get("type"), p.get("access"), emits[0] if emits else "true")
        out[name] = members
    return out


@test
def test_introspection_matches_the_xml_file(t):
    bus, cp = setup(t, options=h.SLOW_CLOCK)
    job_id, jpath = submit(t, bus)
    h.FakeWorker(cp, "w-intro")
    exported = {}
    for path in (h.PATH, jpath, h.worker_path("w-intro")):
        xml_text = h.call(t, bus, "Introspect", path=path, interface="org.freedesktop.DBus.Introspectable")[0]
        exported.update(interfaces_of(xml_text))
    with open(XML) as f:
        documented = interfaces_of(f.read())
    t.eq(sorted(exported), sorted(documented), "the same interfaces")
    for iface in documented:
        want, got = documented[iface], exported.get(iface, {})
        for key in sorted(set(want) | set(got)):
            t.eq(got.get(key), want.get(key), f"{iface} {key[0]} {key[1]}")


# ---- authorization --------------------------------------------------------------------------

def refused_events(cp):
    return [e for e in cp.events() if e["event"] == "request.refused"]


@test
def test_unauthorized_caller_refused_and_audited(t):
    h.open_to_other_uids(t)
    bus, cp = setup(t)
    job_id, path = submit(t, bus)
    h.expect_error(t, bus, ERR + "AccessDenied", "SubmitJob", *h.asv({"command": "true"}), uid=h.NOBODY)
    h.expect_error(t, bus, ERR + "AccessDenied", "AbortJob", "ss", job_id, "", uid=h.NOBODY)
    h.expect_error(t, bus, ERR + "AccessDenied", "ListJobs", "a{sv}", 0, uid=h.NOBODY)
    h.expect_error(t, bus, ERR + "AccessDenied", "Reconcile", uid=h.NOBODY)
    try:
        h.get_property(t, bus, path, h.JOB_IFACE, "Status", uid=h.NOBODY)
        t.ok(False, "a job's properties are not readable by nobody")
    except h.BusError as e:
        t.eq(e.name, ERR + "AccessDenied", "job properties: AccessDenied")
    t.eq(cp.job(job_id)["status"], "PENDING", "the refused abort changed nothing")
    s, jobs = cp.admin("GET", "/jobs")
    t.eq(len(jobs), 1, "the refused submission created nothing")
    refused = refused_events(cp)
    t.ok(len(refused) >= 5, f"each refusal is audited ({len(refused)})")
    t.ok(any("uid:65534" in json.dumps(e) for e in refused), "the audit event names the uid")


FLOOD_CALLER = """
import sys, dbus
bus = dbus.bus.BusConnection(sys.argv[1])
refused = 0
for _ in range(int(sys.argv[2])):
    try:
        bus.call_blocking("org.entropy.Control1", "/org/entropy/Control1", "org.entropy.Control1.Manager",
                          "ListWorkers", "", ())
    except dbus.exceptions.DBusException as e:
        refused += e.get_dbus_name() == "org.entropy.Control1.Error.AccessDenied"
print(refused)
"""


@test
def test_a_flood_of_refused_calls_is_audited_at_a_bounded_rate(t):
    """Anyone on the system bus may call: each refusal is audited (a database row, an fsync, a
    journal entry), so a local user's loop of refused calls is bounded as HTTP's bad tokens are."""
    h.open_to_other_uids(t)
    py = python_with_dbus(t)
    bus, cp = setup(t)
    started = time.monotonic()
    r = t.run_cmd(["setpriv", f"--reuid={h.NOBODY}", f"--regid={h.NOBODY}", "--clear-groups",
                   py, "-c", FLOOD_CALLER, bus.address, "400"], timeout=120)
    elapsed = time.monotonic() - started
    t.eq(r.stdout.strip(), "400", f"every call refused with AccessDenied ({r.stderr.strip()[-300:]})")
    n = len(cp.events(event="request.refused", limit=1000))
    t.ok(n <= 50 * (int(elapsed) + 2), f"{n} of 400 refusals audited in {elapsed:.1f}s (at most 50 a second)")
    t.ok(n >= 50, f"the first ones are audited ({n})")
    status, text = cp.admin("GET", "/metrics")
    m = re.search(r"^entropy_requests_refused_total (\d+)$", text if status == 200 else "", re.M)
    t.eq(int(m.group(1)) if m else None, 400, "every refusal is counted, audited or not")


@test
def test_group_members_read_and_admins_change_without_polkit(t):
    import grp
    nogroup = grp.getgrgid(h.NOBODY).gr_name
    h.open_to_other_uids(t)
    # nobody's group plays "entropy" here; no polkit on the private bus.
    conf = os.path.join(t.tmp, "control.conf")
    with open(conf, "w") as f:
        f.write(f"[control]\ndbus-read-group = {nogroup}\n")
    bus, cp = setup(t, options={"config": conf}, env={"ENTROPY_DBUS_ADMIN_GROUP": "entropy-no-such-group"})
    job_id, _ = submit(t, bus)
    t.eq(len(h.call(t, bus, "ListJobs", "a{sv}", 0, uid=h.NOBODY)[0]), 1, "a read-group member may list jobs")
    h.expect_error(t, bus, ERR + "AccessDenied", "AbortJob", "ss", job_id, "", uid=h.NOBODY)
    # The groups are read at start: a reload keeps them, and says so.
    with open(conf, "w") as f:
        f.write("[control]\ndbus-read-group = entropy-no-such-group\n")
    cp.signal(signal.SIGHUP)
    cp.wait_notify("RELOADING=1")
    cp.wait_notify("READY=1")
    t.eq(len(h.call(t, bus, "ListJobs", "a{sv}", 0, uid=h.NOBODY)[0]), 1, "the read group is kept on reload")
    t.ok("A changed --dbus-read-group takes effect at the next restart." in cp.log_text(),
         "the kept read group is logged")
    cp.stop()
    t.wait_for(lambda: not bus.has_owner(), 10, "the name to be released")
    bus2 = bus  # same bus, a control plane that counts nogroup as the admin group
    cp2 = h.start_control(t, bus2, env={"ENTROPY_DBUS_ADMIN_GROUP": nogroup}, name="control2",
                          options={"database": cp.database})
    t.eq(h.call(t, bus, "AbortJob", "ss", job_id, "by an admin", uid=h.NOBODY), [], "an admin-group member may abort")
    t.eq(cp2.job(job_id)["updated_by"], "dbus:65534", "the audit trail names the caller's uid")


def python_with_dbus(t):
    """A Python that can serve on D-Bus (python3-dbus and python3-gi, which
    scripts/install-deps.sh installs); without one the test is skipped, or fails as root."""
    for py in ("/usr/bin/python3", shutil.which("python3")):
        if py and os.path.exists(py) and subprocess.run(
                [py, "-c", "import dbus.service, dbus.mainloop.glib; from gi.repository import GLib"],
                capture_output=True).returncode == 0:
            return py
    t.missing_dependency("no Python with python3-dbus and python3-gi to play polkit")


@test
def test_polkit_decides_when_it_is_on_the_bus(t):
    import grp
    nogroup = grp.getgrgid(h.NOBODY).gr_name
    h.open_to_other_uids(t)
    bus = h.PrivateBus(t).start()
    log = os.path.join(t.tmp, "polkit.jsonl")
    polkit = t.daemon("polkit", [python_with_dbus(t), os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                  "test-dbus-fake-polkit.py"),
                                 bus.address, "org.entropy.Control1.submit", log], notify=False)
    polkit.start(wait_ready=False)
    t.wait_for(lambda: bus.has_owner("org.freedesktop.PolicyKit1"), 10, "the fake polkit on the bus")
    # nobody is not in the admin group here: polkit decides.
    cp = h.start_control(t, bus, env={"ENTROPY_DBUS_ADMIN_GROUP": "entropy-no-such-group"})
    job_id, _ = h.call(t, bus, "SubmitJob", *h.asv({"command": "true"}), uid=h.NOBODY)
    t.eq(cp.job(job_id)["updated_by"], "dbus:65534", "polkit allowed the submission")
    h.expect_error(t, bus, ERR + "AccessDenied", "AbortJob", "ss", job_id, "", uid=h.NOBODY)
    t.eq(cp.job(job_id)["status"], "PENDING", "polkit's refusal stands")
    with open(log) as f:
        asked = [json.loads(line) for line in f]
    t.eq([a["action"] for a in asked], ["org.entropy.Control1.submit", "org.entropy.Control1.abort"],
         "one question per call, for the method's action")
    t.ok(all(a["subject"] == "system-bus-name" and a["name"].startswith(":") for a in asked),
         "the subject is the caller's unique bus name")
    t.eq(cp.stop(), 0, "a clean exit")
    t.wait_for(lambda: not bus.has_owner(), 10, "the name to be released")
    # nobody's group as the admin group: its members need no polkit, whatever polkit would say.
    cp = h.start_control(t, bus, env={"ENTROPY_DBUS_ADMIN_GROUP": nogroup}, name="control2",
                         options={"database": cp.database})
    t.eq(h.call(t, bus, "AbortJob", "ss", job_id, "by an admin", uid=h.NOBODY), [], "an admin-group member may abort")
    h.call(t, bus, "SubmitJob", *h.asv({"command": "true"}))
    with open(log) as f:
        t.eq(len(f.readlines()), 2, "neither the admin-group member nor root is asked about")
    t.eq(cp.stop(), 0, "a clean exit")


# A caller that sends SubmitJob with the write end of a pipe (fd argv[2]) in it and does not wait
# for the answer: the message, and so that fd, lives in the daemon for as long as the daemon holds
# the call. It prints its unique name once the call is sent, then waits to be killed.
HOLDING_CALLER = """
import sys, dbus, dbus.lowlevel
bus = dbus.bus.BusConnection(sys.argv[1])
m = dbus.lowlevel.MethodCallMessage("org.entropy.Control1", "/org/entropy/Control1",
                                    "org.entropy.Control1.Manager", "SubmitJob")
m.append({"command": "true", "pipe": dbus.types.UnixFd(int(sys.argv[2]))}, signature="a{sv}")
bus.send_message(m)
bus.flush()
print(bus.get_unique_name(), flush=True)
sys.stdin.read()
"""


@test
def test_calls_whose_callers_left_before_polkit_answered_are_released(t):
    # Callers that go (Ctrl-C on a polkit prompt) while polkit has not answered: when the answer
    # comes, the daemon must let their calls go. Each call holds a pipe's write end; the pipe
    # reads end-of-file once the daemon has freed the message, and not before.
    import select
    h.open_to_other_uids(t)
    py = python_with_dbus(t)
    bus = h.PrivateBus(t).start()
    log = os.path.join(t.tmp, "polkit.jsonl")
    polkit = t.daemon("polkit", [py, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "test-dbus-fake-polkit.py"),
                                 bus.address, "org.entropy.Control1.submit", log, "hold"], notify=False)
    polkit.start(wait_ready=False)
    t.wait_for(lambda: bus.has_owner("org.freedesktop.PolicyKit1"), 10, "the fake polkit on the bus")
    cp = h.start_control(t, bus, env={"ENTROPY_DBUS_ADMIN_GROUP": "entropy-no-such-group"})
    callers, pipes = [], []
    for _ in range(3):
        r, w = os.pipe()
        p = subprocess.Popen(["setpriv", f"--reuid={h.NOBODY}", f"--regid={h.NOBODY}", "--clear-groups",
                              py, "-c", HOLDING_CALLER, bus.address, str(w)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, pass_fds=(w,))
        os.close(w)
        t.cleanups.append(lambda p=p: p.poll() is None and p.kill())
        t.cleanups.append(lambda r=r: os.close(r))
        callers.append((p, p.stdout.readline().strip()))
        pipes.append(r)
    names = [name for _, name in callers]
    t.require(all(n.startswith(":") for n in names), f"each caller is on the bus ({names})")

    def asked():
        with open(log) as f:
            return sorted(json.loads(line)["name"] for line in f) == sorted(names)
    t.wait_for(asked, 10, "polkit to be asked about each call")
    for p, name in callers:
        p.kill()
        p.wait()
        t.wait_for(lambda: not bus.has_owner(name), 10, f"caller {name} to have left the bus")
    t.eq(select.select(pipes, [], [], 0)[0], [], "the daemon holds each call while polkit has not answered")
    polkit.signal(signal.SIGUSR1)
    released = set()

    def all_released():
        for r in select.select([r for r in pipes if r not in released], [], [], 0.1)[0]:
            if os.read(r, 1) == b"":
                released.add(r)
        return len(released) == len(pipes)
    t.wait_for(all_released, 10, "every call to be released once polkit answered",
               lambda: f"{len(released)} of {len(pipes)} released")
    s, jobs = cp.admin("GET", "/jobs")
    t.eq(jobs, [], "the calls of callers gone did nothing")
    t.eq(cp.stop(), 0, "a clean exit")


# A process that asks the bus for every broadcast signal (a match rule, as any local user may add
# one) and prints each it gets as a JSON line, after a line {"ready": its unique name}.
SIGNAL_LISTENER = """
import json, sys, dbus, dbus.mainloop.glib
from gi.repository import GLib
dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
bus = dbus.bus.BusConnection(sys.argv[1])
def heard(*args, **kw):
    print(json.dumps({"sender": kw["sender"], "member": kw["member"], "args": repr(args)}), flush=True)
bus.add_signal_receiver(heard, sender_keyword="sender", member_keyword="member")
# Answered after the bus has handled the AddMatch sent before it.
bus.call_blocking("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId", "", ())
print(json.dumps({"ready": bus.get_unique_name()}), flush=True)
GLib.MainLoop().run()
"""


class SignalListener:
    def __init__(self, t, bus, py, user, name):
        self.t, self.path = t, os.path.join(t.tmp, f"{name}.jsonl")
        with open(self.path, "w") as out:
            argv = [py, "-c", SIGNAL_LISTENER, bus.address]
            if user.pw_uid != 0:
                argv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"] + argv
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        t.cleanups.append(lambda: self.proc.poll() is None and self.proc.kill())
        t.wait_for(lambda: self.lines() and "ready" in self.lines()[0], 10, f"the {name} listener to listen",
                   lambda: open(self.path).read()[-300:])

    def lines(self):
        with open(self.path) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]

    def signals(self, sender):
        return [m for m in self.lines()[1:] if m["sender"] == sender]


@test
def test_the_shipped_policy_keeps_the_signals_from_who_may_not_read(t):
    # The real dbus/org.entropy.Control1.conf on a private bus; the daemon runs as root here, not
    # as entropy, so root may own the name too. The primary group of a system user stands in for
    # entropy-admin (the groups are the policy's defaults, and this host has none such); nobody,
    # in none of them, may not read and must not hear what a job runs with.
    import grp
    import pwd
    h.open_to_other_uids(t)
    py = python_with_dbus(t)
    nobody_gids = set(os.getgrouplist(pwd.getpwuid(h.NOBODY).pw_name, h.NOBODY))
    groups = {g.gr_gid: g.gr_name for g in grp.getgrall()}
    member = next((u for u in pwd.getpwall()
                   if u.pw_uid not in (0, h.NOBODY) and u.pw_gid in groups and u.pw_gid not in nobody_gids), None)
    t.require(member, "a system user to play a member of the admin group")
    with open(os.path.join(SRCDIR, "dbus", "org.entropy.Control1.conf")) as f:
        policy = f.read()
    t.require(policy.count('group="entropy-admin"') == 1, "the policy has a rule for group entropy-admin")
    policy_copy = os.path.join(t.tmp, "org.entropy.Control1.conf")
    with open(policy_copy, "w") as f:
        f.write(policy.replace('group="entropy-admin"', f'group="{groups[member.pw_gid]}"'))
    conf = os.path.join(t.tmp, "bus.conf")
    with open(conf, "w") as f:
        f.write(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:tmpdir=/tmp</listen>
  <policy context="default">
    <allow user="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
  <include>{policy_copy}</include>
  <policy user="root"><allow own="org.entropy.Control1"/></policy>
</busconfig>
""")
    bus = h.PrivateBus(t, config=conf).start()
    cp = h.start_control(t, bus)
    owner = h.busctl_raw(t, bus, ["call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                  "GetNameOwner", "s", h.NAME])
    daemon = json.loads(owner.stdout)["data"][0]
    listeners = {"root": SignalListener(t, bus, py, pwd.getpwuid(0), "root"),
                 "member": SignalListener(t, bus, py, member, "member"),
                 "nobody": SignalListener(t, bus, py, pwd.getpwuid(h.NOBODY), "nobody")}
    job_id, _ = submit(t, bus, command="deploy", args=["--password=s3cret"])
    for who in ("root", "member"):
        t.wait_for(lambda: [m for m in listeners[who].signals(daemon)
                            if m["member"] == "InterfacesAdded" and "s3cret" in m["args"]], 10,
                   f"{who} to hear of the new job with InterfacesAdded")
        t.wait_for(lambda: [m for m in listeners[who].signals(daemon) if m["member"] == "JobStateChanged"], 10,
                   f"{who} to hear JobStateChanged")
    # Signals reach each listener in the order the bus routes them: once nobody hears a signal
    # sent after the daemon's, it has been spared every one of them.
    r = h.busctl_raw(t, bus, ["emit", "/org/entropy/Test", "org.entropy.Test", "Marker"])
    t.require(r.returncode == 0, f"busctl emit: {r.stderr}")
    t.wait_for(lambda: [m for m in listeners["nobody"].lines()[1:] if m["member"] == "Marker"], 10,
               "nobody to hear the marker signal")
    t.eq([m["member"] for m in listeners["nobody"].signals(daemon)], [], "nobody heard none of the daemon's signals")
    t.eq(cp.stop(), 0, "a clean exit")


@test
def test_a_daemon_that_does_not_own_the_name_sends_no_signal(t):
    # The bus policy keeps the signals of the name's owner from who may not read; a second daemon
    # on the bus is not its owner, and must stay silent.
    import pwd
    py = python_with_dbus(t)
    bus, first = setup(t)
    second = t.control_plane(env={"DBUS_SYSTEM_BUS_ADDRESS": bus.address}, name="control2")
    t.wait_for(lambda: "owned by another process; not serving on the bus" in second.log_text(), 10,
               "the second daemon to say it does not serve on the bus", lambda: second.log_tail(5))
    listener = SignalListener(t, bus, py, pwd.getpwuid(os.geteuid()), "listener")
    first_job, second_job = first.submit("true"), second.submit("true")
    t.wait_for(lambda: [m for m in listener.lines()[1:] if m["member"] == "JobStateChanged"
                        and first_job in m["args"]], 10, "the owner's JobStateChanged")
    r = h.busctl_raw(t, bus, ["emit", "/org/entropy/Test", "org.entropy.Test", "Marker"])
    t.require(r.returncode == 0, f"busctl emit: {r.stderr}")
    t.wait_for(lambda: [m for m in listener.lines()[1:] if m["member"] == "Marker"], 10, "a marker signal after it")
    t.eq([m["member"] for m in listener.lines()[1:] if second_job in m["args"]], [],
         "nothing of the second daemon's job was signalled")


# ---- the bus itself -------------------------------------------------------------------------

@test
def test_survives_a_bus_restart(t):
    bus, cp = setup(t)
    job_id, _ = submit(t, bus)
    bus.stop()
    s, _ = cp.admin("GET", f"/jobs/{job_id}")
    t.eq(s, 200, "HTTP keeps serving while the bus is down")
    bus.start()
    t.wait_for(bus.has_owner, 20, "the name to be owned again after the bus restarted")
    t.eq(h.variant_dict(h.call(t, bus, "GetJob", "s", job_id)[0])["status"], "PENDING", "calls work again")
    t.ok(cp.running(), "the daemon kept running")
    t.eq(cp.stop(), 0, "and exits cleanly")


@test
def test_no_bus_at_start_is_a_warning_and_http_serves(t):
    missing = os.path.join(t.tmp, "no-such-dir", "bus")
    cp = t.control_plane(env={"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={missing}"})
    s, _ = cp.admin("GET", "/jobs")
    t.eq(s, 200, "HTTP serves without a bus")
    t.ok("D-Bus socket" in cp.log_text(), "the missing bus is logged")
    os.makedirs(os.path.dirname(missing))
    bus = h.PrivateBus(t, socket=missing).start()
    t.wait_for(bus.has_owner, 20, "the name to be owned once the bus appears")
    t.ok(h.call(t, bus, "ListJobs", "a{sv}", 0) == [[]], "and the API answers")
    t.eq(cp.stop(), 0, "a clean exit")


if __name__ == "__main__":
    require_tool("dbus-daemon", "dbus-daemon")
    require_tool("busctl", "systemd")
    skips = {}
    if os.geteuid() != 0:
        why = ("not root: the daemon trusts its own uid, and only root can call as another uid "
               "(setpriv --reuid)")
        skips = {"test_unauthorized_caller_refused_and_audited": why,
                 "test_group_members_read_and_admins_change_without_polkit": why,
                 "test_polkit_decides_when_it_is_on_the_bus": why,
                 "test_calls_whose_callers_left_before_polkit_answered_are_released": why,
                 "test_the_shipped_policy_keeps_the_signals_from_who_may_not_read": why}
    run(skips)
