"""Not a test: helpers that test-dbus.py and test-entropyctl.py load (importlib, for the hyphen).

A private dbus-daemon per test (tests/integration/dbus-test.conf, no root, no systemd), an
entropy-control that owns org.entropy.Control1 on it (DBUS_SYSTEM_BUS_ADDRESS), busctl calls
whose answers are decoded from --json=short and whose errors are known by their D-Bus error
name, a `busctl monitor` to observe signals, and a worker simulated over HTTP so that jobs move
without depending on entropy-worker.
"""

import json
import os
import re
import subprocess

from entropy_test import SRCDIR, TIME_SCALE, TestFailure

DBUS_CONF = os.path.join(SRCDIR, "tests", "integration", "dbus-test.conf")
NAME = "org.entropy.Control1"
PATH = "/org/entropy/Control1"
MANAGER = "org.entropy.Control1.Manager"
JOB_IFACE = "org.entropy.Control1.Job"
WORKER_IFACE = "org.entropy.Control1.Worker"
NOBODY = 65534
# For tests that look at workers and held jobs without heartbeating: nothing expires or goes
# DISCONNECTED under them, however slow the build (sanitizers, valgrind).
SLOW_CLOCK = {"disconnect-timeout": "60s", "heartbeat-timeout": "120s", "lease-timeout": "60s"}


class PrivateBus:
    """dbus-daemon on a socket in the test's directory, with dbus-test.conf or another config."""

    def __init__(self, ctx, name="dbus", socket=None, config=DBUS_CONF):
        self.ctx, self.name, self.config = ctx, name, config
        self.socket = socket or os.path.join(ctx.tmp, f"{name}.socket")
        self.address = f"unix:path={self.socket}"
        self.daemon = None

    def start(self):
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        argv = ["dbus-daemon", f"--config-file={self.config}", "--nofork", "--nopidfile",
                f"--address={self.address}", "--print-address"]
        self.daemon = self.ctx.daemon(self.name, argv, notify=False)
        self.daemon.start(wait_ready=False)
        self.ctx.wait_for(self.reachable, 10, "the private dbus-daemon to listen")
        return self

    def reachable(self):
        if not os.path.exists(self.socket):
            return False
        r = busctl_raw(self.ctx, self, ["call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                        "org.freedesktop.DBus", "GetId"])
        return r.returncode == 0

    def stop(self):
        return self.daemon.stop()

    def has_owner(self, name=NAME):
        r = busctl_raw(self.ctx, self, ["call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                        "org.freedesktop.DBus", "NameHasOwner", "s", name])
        return r.returncode == 0 and json.loads(r.stdout)["data"] == [True]


def open_to_other_uids(ctx):
    """Lets another uid reach the bus socket in the test's (0700) directory. Calls as another uid
    go through setpriv (util-linux), which such a test needs."""
    ctx.require_tool("setpriv", "util-linux")
    os.chmod(ctx.tmp, 0o711)


def start_control(ctx, bus, options=None, env=None, name="control"):
    """entropy-control on the private bus; returns once it owns the name."""
    e = {"DBUS_SYSTEM_BUS_ADDRESS": bus.address}
    e.update(env or {})
    cp = ctx.control_plane(options=options, env=e, name=name)
    ctx.wait_for(bus.has_owner, 10, f"{NAME} to be owned on the private bus")
    return cp


def busctl_raw(ctx, bus, args, uid=None, debug=False, timeout=30):
    # "--": arguments such as -3 are values, not options.
    argv = ["busctl", f"--address={bus.address}", "--json=short", "--timeout=20", "--"] + list(args)
    if uid is not None:
        # Another uid with only its own group: the caller the daemon must not trust.
        argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] + argv
    env = {"SYSTEMD_LOG_LEVEL": "debug"} if debug else {"SYSTEMD_LOG_LEVEL": "info"}
    return ctx.run_cmd(argv, env=env, timeout=timeout)


class BusError(Exception):
    def __init__(self, name, message):
        super().__init__(f"{name}: {message}")
        self.name, self.message = name, message


def _error_of(r):
    m = re.findall(r"type=error .*?error-name=(\S+)", r.stderr)
    msg = ""
    for line in r.stderr.splitlines():
        if line.startswith("Call failed:") or line.startswith("Failed to"):
            msg = line.split(":", 1)[1].strip()
    return BusError(m[-1] if m else "unknown", msg or r.stderr.strip()[-300:])


def call(ctx, bus, method, signature="", *args, path=PATH, interface=MANAGER, uid=None):
    """Calls a method with busctl; returns the decoded answer's data list. Raises BusError."""
    argv = ["call", NAME, path, interface, method]
    if signature:
        argv += [signature] + [str(a) for a in args]
    r = busctl_raw(ctx, bus, argv, uid=uid, debug=True)
    if r.returncode != 0:
        raise _error_of(r)
    out = r.stdout.strip()
    return json.loads(out)["data"] if out else []


def expect_error(ctx, bus, name, method, signature="", *args, **kw):
    """Calls and returns the BusError, failing the test when the call succeeds or fails otherwise."""
    try:
        got = call(ctx, bus, method, signature, *args, **kw)
    except BusError as e:
        ctx.eq(e.name, name, f"{method} fails with {name}")
        return e
    ctx.ok(False, f"{method} {args} should fail with {name}, answered {got}")
    return None


def get_property(ctx, bus, path, interface, prop, uid=None):
    r = busctl_raw(ctx, bus, ["get-property", NAME, path, interface, prop], uid=uid, debug=True)
    if r.returncode != 0:
        raise _error_of(r)
    return json.loads(r.stdout)["data"]


def asv(d):
    """busctl arguments for an a{sv} built from a Python dict (str, bool, int, float, [str])."""
    out = ["a{sv}", len(d)]
    for k, v in d.items():
        out.append(k)
        if isinstance(v, bool):
            out += ["b", "true" if v else "false"]
        elif isinstance(v, int):
            out += ["x", v]
        elif isinstance(v, float):
            out += ["d", repr(v)]
        elif isinstance(v, list):
            out += ["as", len(v)] + v
        else:
            out += ["s", v]
    return out


def variant_dict(d):
    """busctl's JSON of an a{sv} ({"k": {"type": .., "data": ..}}) as a plain dict."""
    return {k: plain(v) for k, v in d.items()}


def plain(v):
    if isinstance(v, dict) and set(v) == {"type", "data"}:
        if v["type"] == "a{sv}":
            return variant_dict(v["data"])
        if v["type"] == "av":
            return [plain(x) for x in v["data"]]
        return v["data"]
    return v


def job_path(job_id):
    """sd_bus_path_encode(): [A-Za-z0-9] as they are, every other byte _XX; a leading digit too."""
    out = []
    for i, ch in enumerate(job_id.encode()):
        c = chr(ch)
        if (c.isascii() and c.isalpha()) or (c.isdigit() and i > 0):
            out.append(c)
        else:
            out.append(f"_{ch:02x}")
    return f"{PATH}/job/" + "".join(out)


def worker_path(worker_id):
    return job_path(worker_id).replace(f"{PATH}/job/", f"{PATH}/worker/")


class Monitor:
    """`busctl monitor` of the service: every message to or from it, one JSON object a line."""

    def __init__(self, ctx, bus):
        self.ctx = ctx
        self.path = os.path.join(ctx.tmp, "monitor.jsonl")
        self.err_path = os.path.join(ctx.tmp, "monitor.err")
        self.out = open(self.path, "w")
        # stderr to a file too: a pipe nobody reads after start-up could fill and stall busctl.
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(["busctl", f"--address={bus.address}", "--json=short", "--", "monitor", NAME],
                                         stdout=self.out, stderr=err, text=True)
        ctx.cleanups.append(self.close)

        # busctl says so on stderr once the monitor is installed.
        def started():
            if "Monitoring" in self.stderr():
                return True
            if self.proc.poll() is not None:
                raise TestFailure(f"busctl monitor exited with {self.proc.returncode}: {self.stderr()}")
            return False
        ctx.wait_for(started, 10, "busctl monitor to start", lambda: self.stderr()[-300:])

    def stderr(self):
        with open(self.err_path) as f:
            return f.read()

    def messages(self):
        with open(self.path) as f:
            out = []
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line being written
            return out

    def signals(self, member, interface=None):
        return [m for m in self.messages() if m.get("type") == "signal" and m.get("member") == member
                and (interface is None or m.get("interface") == interface)]

    def wait_signal(self, member, predicate=lambda m: True, timeout=10, what=None):
        return self.ctx.wait_for(lambda: [m for m in self.signals(member) if predicate(m)], timeout,
                                 what or f"signal {member}",
                                 lambda: f"seen: {[s.get('member') for s in self.messages()][-20:]}")

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5 * TIME_SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


class FakeWorker:
    """A worker driven over HTTP by the test: register, claim, ack, complete or fail."""

    def __init__(self, cp, worker_id="w1", capabilities=()):
        self.cp, self.worker_id = cp, worker_id
        s, body = cp.worker("POST", "/register", {"worker_id": worker_id, "capabilities": list(capabilities)})
        if s != 200:
            raise TestFailure(f"register {worker_id}: {s} {body}")
        self.seq = 0

    def claim(self):
        s, body = self.cp.worker("GET", f"/next-job?worker_id={self.worker_id}")
        if s == 204:
            return None
        if s != 200:
            raise TestFailure(f"next-job: {s} {body}")
        return body

    def ack(self, job):
        s, body = self.cp.worker("POST", "/ack", {"job_id": job["job_id"], "worker_id": self.worker_id,
                                                  "assignment_id": job["assignment_id"]})
        if s != 200:
            raise TestFailure(f"ack: {s} {body}")

    def complete(self, job, exit_code=0):
        self.seq += 1
        s, body = self.cp.worker("POST", "/complete", {
            "job_id": job["job_id"], "worker_id": self.worker_id, "assignment_id": job["assignment_id"],
            "completion_seq": self.seq, "exit_code": exit_code, "result_summary": "ok"})
        if s != 200:
            raise TestFailure(f"complete: {s} {body}")

    def fail(self, job, exit_code=1, error="it broke"):
        s, body = self.cp.worker("POST", "/fail", {
            "job_id": job["job_id"], "worker_id": self.worker_id, "assignment_id": job["assignment_id"],
            "exit_code": exit_code, "error": error})
        if s != 200:
            raise TestFailure(f"fail: {s} {body}")
        return body


def run_with_skips(skips):
    """entropy_test.run(), but the tests named in skips ({name: reason}) are reported as TAP
    skips ("ok N - name # SKIP reason") instead of being run."""
    import entropy_test as et
    et.run(skips)
