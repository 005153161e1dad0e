"""faultlib: the fault-injection harness (issue 6), on top of tests/integration/entropy_test.py.

    fleet = Fleet(t, workers=2)            # control plane + workers on 127.0.0.1, crash VFS on
    job_id = fleet.submit(fleet.job(2))    # a job that logs its own start and end
    fleet.power_cut("w1")                  # every process of that "host" dies at once
    fleet.finish()                         # stop everything, run the invariant checker

Every daemon runs with ENTROPY_CRASH_VFS=1 (common/crash-vfs.h), so a kill -9 of a process is a
power cut for its SQLite files. Hosts in network namespaces (NetFleet) need root.
"""

import ctypes
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
os.environ.setdefault("ENTROPY_SRCDIR", os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.path.insert(0, HERE)

from entropy_test import (ADMIN_TOKEN, FAST_CONTROL, SRCDIR, TIME_SCALE, WORKER_TOKEN, ControlPlane,  # noqa: E402
                          Http, TestFailure, binary, free_port, run, skip_all, test)
from worker_harness import FAST_WORKER, WorkerProcess  # noqa: E402

import invariants  # noqa: E402
from proxy import FaultProxy  # noqa: E402

CRASH_ENV = {"ENTROPY_CRASH_VFS": "1"}
TERMINAL = invariants.TERMINAL

__all__ = ["Fleet", "NetFleet", "FaultProxy", "run", "test", "skip_all", "TestFailure", "span", "recovery_bound",
           "TIME_SCALE", "binary", "FAST_CONTROL", "FAST_WORKER", "WORKER_TOKEN", "ADMIN_TOKEN", "invariants",
           "netns_available", "descendants", "cannot_run", "require_binaries", "require_netns", "ms"]


# -- what a suite needs from the host ------------------------------------------------------------

def cannot_run(reason):
    """Nothing in this file can run here, for `reason`. Without root that is a skip of the whole
    file (TAP "1..0 # SKIP"): the network namespaces need root, and so does scripts/install-deps.sh,
    which installs the tools. As root (CI) it is an error, "Bail out!" and exit 1: never a skip
    that passes."""
    if os.geteuid() != 0:
        skip_all(reason)
    print(f"Bail out! {reason} (as root this is an error, not a skip)")
    sys.stdout.flush()
    sys.exit(1)


def require_binaries(*names):
    """The programs built in this tree that the suite starts (cannot_run() without them)."""
    for name in names:
        try:
            binary(name)
        except FileNotFoundError as e:
            cannot_run(str(e))


def require_netns():
    """Hosts in network namespaces (NetFleet): cannot_run() where they cannot be made."""
    why = netns_available()
    if why:
        cannot_run(why)


def ms(seconds):
    """A time span in milliseconds as the daemons' options take it (e.g. a scaled lease)."""
    return f"{int(round(seconds * 1000))}ms"


def span(text):
    """Seconds in a systemd time span as the tests write them ("1500ms", "1s", "2min", "20")."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|min|us)?\s*", str(text))
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * {"ms": 1e-3, "us": 1e-6, "min": 60, "s": 1, None: 1}[m.group(2)]


def recovery_bound(opts, attempt=1, slack=None):
    """daemon/reconcile.h's bound for a job whose worker lost power: lease timeout + one reconcile
    tick + the retry backoff after `attempt` (with its maximum jitter), plus a slack for
    scheduling on a loaded machine derived from the same intervals."""
    lease = span(opts["lease-timeout"])
    tick = span(opts["reconcile-interval"])
    base, cap = span(opts["retry-backoff"]), span(opts.get("retry-backoff-max", "1min"))
    jitter = float(opts.get("retry-jitter", 0.2))
    backoff = min(base * 2 ** (attempt - 1), cap) * (1 + jitter)
    if slack is None:
        slack = (2 * tick + 0.5) * TIME_SCALE
    return lease + tick + backoff + slack


def descendants(pid):
    """pid and every process below it (by parent pid), from /proc."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo and len(out) < 10000:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def kill_all_at_once(pids):
    """A power cut: freeze every process first so that none reacts to another's death, then kill."""
    for p in pids:
        try:
            os.kill(p, signal.SIGSTOP)
        except ProcessLookupError:
            pass
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Fleet:
    """A control plane and workers for one scenario, with the ledger and the kill record the
    invariant checker needs. Workers may talk to the control plane through a FaultProxy."""

    def __init__(self, t, workers=2, control=None, worker_options=None, proxy=None, start=True,
                 crash_vfs=True, worker_env=None):
        self.t = t
        self.control_options = dict(FAST_CONTROL)
        self.control_options.update(control or {})
        self.env = dict(CRASH_ENV) if crash_vfs else {}
        self.cp = t.control_plane(start=False, options=self.control_options, env=self.env)
        self.proxy = None
        if proxy is not None:
            self.proxy = FaultProxy(self.cp.port, **proxy).start()
            t.cleanups.append(self.proxy.stop)
        self.ledger = invariants.Ledger()
        self.kills = {}
        self.job_log = os.path.join(t.tmp, "jobs.log")
        self.workers = {}
        self.worker_options = dict(worker_options or {})
        self.worker_env = dict(self.env)
        self.worker_env.update(worker_env or {})
        if start:
            self.cp.start()
        for i in range(workers):
            self.add_worker(f"w{i + 1}", start=start)

    # -- processes -----------------------------------------------------------------------------
    def control_url(self):
        return self.proxy.url if self.proxy else self.cp.url

    def add_worker(self, name, start=True, options=None):
        opts = dict(self.worker_options)
        opts.update(options or {})
        w = WorkerProcess(self.t, self.cp, name, options=opts, env=self.worker_env)
        if self.proxy:
            w.argv = [a if not a.startswith("--control-url=") else f"--control-url={self.proxy.url}" for a in w.argv]
        self.workers[name] = w
        if start:
            w.start()
        return w

    def kill9_worker(self, name):
        """A worker crash: the worker process alone (its job loses its parent)."""
        w = self.workers[name]
        self.kills.setdefault(name, []).append(time.time())
        w.kill9()

    def power_cut(self, name):
        """Every process of the worker's host at once; its unsynced SQLite writes are lost (crash VFS)."""
        w = self.workers[name]
        if not w.running():
            return
        pids = descendants(w.proc.pid)
        self.kills.setdefault(name, []).append(time.time())
        kill_all_at_once(pids)
        w.proc.wait(timeout=10)

    def kill9_control(self):
        self.cp.kill9()

    def restart_control(self):
        self.cp.restart()

    # -- work ----------------------------------------------------------------------------------
    def job(self, seconds=0.5, exit_code=0, output_bytes=0, **fields):
        """A job that appends 'start|end <job> <assignment> <unix time>' to the shared job log."""
        log = self.job_log
        out = f"head -c {int(output_bytes)} /dev/zero | tr '\\0' x; " if output_bytes else ""
        script = (f'echo "start $ENTROPY_JOB_ID $ENTROPY_ASSIGNMENT_ID $(date +%s.%N)" >> {log}; {out}'
                  f'sleep {seconds}; echo "end $ENTROPY_JOB_ID $ENTROPY_ASSIGNMENT_ID $(date +%s.%N)" >> {log}; '
                  f'exit {exit_code}')
        spec = {"command": "sh", "args": ["-c", script]}
        spec.update(fields)
        return spec

    def submit(self, spec):
        job_id = self.ledger.submit(self.cp, spec)
        if job_id is None:
            raise TestFailure("submit refused")
        return job_id

    def abort(self, job_id):
        status, _ = self.cp.admin("POST", "/abort", {"job_id": job_id})
        if status == 200:
            self.ledger.aborted.add(job_id)
        return status

    def job_state(self, job_id):
        return self.cp.job(job_id)

    def wait_running(self, job_id, timeout=10.0):
        box = {}

        def cond():
            box["j"] = self.cp.job(job_id)
            return box["j"]["status"] == "RUNNING" and self._started(job_id, box["j"]["assignment_id"])
        self.t.wait_for(cond, timeout, f"job {job_id} running", lambda: str(box.get("j", {}).get("status")))
        return box["j"]

    def _started(self, job_id, assignment_id):
        return invariants.read_job_log(self.job_log).get(assignment_id, {}).get("start") is not None

    def wait_all_terminal(self, timeout=30.0, job_ids=None):
        ids = list(job_ids or self.ledger.submitted)
        left = {}

        def cond():
            status, jobs = self.cp.admin("GET", f"/jobs?limit={max(1000, 2 * len(self.ledger.submitted))}")
            if status != 200:
                return False
            st = {j["job_id"]: j["status"] for j in jobs}
            left.clear()
            left.update({j: st.get(j) for j in ids if st.get(j) not in TERMINAL})
            return not left
        self.t.wait_for(cond, timeout, "every job to reach a terminal state",
                        lambda: f"{len(left)} left, e.g. {list(left.items())[:5]}", interval=0.1)

    def events(self, job_id=None, event=None):
        q = {"limit": 1000}
        if job_id:
            q["job_id"] = job_id
        if event:
            q["event"] = event
        return sorted(self.cp.events(**q), key=lambda e: e["id"])

    def first_event_after(self, job_id, names, after):
        """The first of these events of the job at or after `after` (Unix seconds, as GET /events)."""
        for e in self.events(job_id):
            if e["event"] in names and e["ts"] >= after:
                return e
        return None

    # -- the end of every scenario ---------------------------------------------------------------
    def finish(self, allow_in_progress=False, stats=None):
        """Stops every process (cleanly: what a crash lost is lost already), then checks every
        invariant. Records violations as test failures and returns them."""
        for w in self.workers.values():
            if w.running():
                w.stop()
        if self.cp.running():
            self.cp.stop()
        if self.proxy:
            self.proxy.stop()
        v = invariants.check(SRCDIR, self.cp.database, {n: w.state_dir for n, w in self.workers.items()},
                             self.ledger, self.job_log, self.kills, allow_in_progress=allow_in_progress,
                             stats=stats)
        for x in v[:30]:
            self.t.failures.append("invariant: " + x)
        if len(v) > 30:
            self.t.failures.append(f"... and {len(v) - 30} more invariant violations")
        print(f"# invariants: {len(self.ledger.submitted)} jobs checked, {len(v)} violations")
        return v


# -- hosts in network namespaces (root) --------------------------------------------------------

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def netns_available():
    """None when network namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip",):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            return f"needs {tool} (iproute2)"
    probe = f"entf-probe-{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _socket_in_netns(ns, address, timeout):
    """A TCP connection made from inside network namespace `ns` (setns is per thread)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            return socket.create_connection(address, timeout)
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


class _NsConnection(http.client.HTTPConnection):
    ns = None

    def connect(self):
        self.sock = _socket_in_netns(self.ns, (self.host, self.port), self.timeout)


class NsHttp(Http):
    """entropy_test.Http whose connections are made inside a network namespace."""

    def __init__(self, ns, host, port, token=None, timeout=10.0):
        super().__init__(host, port, token, timeout)
        self.ns = ns

    def raw(self, method, path, body=None, headers=None):
        if self.conn is None:
            conn = _NsConnection(self.host, self.port, timeout=self.timeout)
            conn.ns = self.ns
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conn = conn
        return super().raw(method, path, body, headers)


def _ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise TestFailure(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


class NetFleet(Fleet):
    """The control plane and each worker on hosts of their own: network namespaces joined by veth
    links (10.231.0.0/24, one /30 per worker; the addresses exist only inside the namespaces).
    A partition takes a worker's link down; a power cut kills every process in its namespace."""

    def __init__(self, t, workers=2, **kw):
        self.prefix = f"entf{os.getpid() % 100000}"
        self.namespaces = []
        self.links = {}
        self.t = t
        t.cleanups.append(self.teardown)
        self.cp_ns = self._netns("cp")
        _ip("-n", self.cp_ns, "link", "set", "lo", "up")
        kw["start"] = False
        super().__init__(t, workers=0, **kw)
        self.cp.argv = ["ip", "netns", "exec", self.cp_ns] + [
            a if not a.startswith("--listen=") else f"--listen=0.0.0.0:{self.cp.port}" for a in self.cp.argv]
        self.cp.http = NsHttp(self.cp_ns, "127.0.0.1", self.cp.port)
        self.cp.start()
        for i in range(workers):
            self.add_worker(f"w{i + 1}")

    def _netns(self, name):
        ns = f"{self.prefix}-{name}"
        _ip("netns", "del", ns, check=False)
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        return ns

    def teardown(self):
        # Always, even after a failure: every process in the namespaces, then the namespaces
        # (which takes their veth links and addresses with them).
        for ns in self.namespaces:
            r = _ip("netns", "pids", ns, check=False)
            kill_all_at_once([int(p) for p in r.stdout.split() if p.isdigit()])
        for ns in self.namespaces:
            _ip("netns", "del", ns, check=False)
        self.namespaces = []

    def add_worker(self, name, start=True, options=None):
        n = len(self.links) + 1
        ns = self._netns(name)
        cp_if, w_if = f"c{n}", "eth0"
        _ip("link", "add", cp_if, "netns", self.cp_ns, "type", "veth", "peer", "name", w_if, "netns", ns)
        cp_addr, w_addr = f"10.231.0.{4 * n + 1}", f"10.231.0.{4 * n + 2}"
        _ip("-n", self.cp_ns, "addr", "add", f"{cp_addr}/30", "dev", cp_if)
        _ip("-n", ns, "addr", "add", f"{w_addr}/30", "dev", w_if)
        for args in (("-n", self.cp_ns, "link", "set", cp_if, "up"), ("-n", ns, "link", "set", w_if, "up"),
                     ("-n", ns, "link", "set", "lo", "up")):
            _ip(*args)
        self.links[name] = (ns, w_if)
        w = super().add_worker(name, start=False, options=options)
        w.argv = ["ip", "netns", "exec", ns] + [
            a if not a.startswith("--control-url=") else f"--control-url=http://{cp_addr}:{self.cp.port}"
            for a in w.argv]
        w.netns = ns
        if start:
            w.start()
        return w

    def partition(self, name, down=True):
        ns, ifname = self.links[name]
        _ip("-n", ns, "link", "set", ifname, "down" if down else "up")

    def power_cut(self, name):
        ns = self.links[name][0]
        w = self.workers[name]
        r = _ip("netns", "pids", ns, check=False)
        self.kills.setdefault(name, []).append(time.time())
        kill_all_at_once([int(p) for p in r.stdout.split() if p.isdigit()])
        if w.proc:
            w.proc.wait(timeout=10)
