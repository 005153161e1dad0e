"""worker_harness: entropy-worker for the integration tests, on top of entropy_test.

    from worker_harness import WorkerProcess, FAST_WORKER
    w = WorkerProcess(t, cp, "w1").start()

A WorkerProcess runs the worker from the build tree against a ControlPlane with short intervals,
its own state directory and the control plane's worker token file. Its replay buffer and run
records (SQLite, see worker/replay.h) can be read with runs() and outbox(). Helpers here: wake
datagrams (the format of common/wake-proto.h), shell jobs that log their start and end times, a
check that logged runs never overlap, and pausing a control plane (SIGSTOP/SIGCONT).
"""

import contextlib
import hashlib
import hmac
import os
import signal
import socket
import sqlite3
import time

from entropy_test import WORKER_TOKEN, Daemon, TestFailure, binary, skip_all

# Intervals well inside the test control plane's (lease and heartbeat timeout 1500ms).
def require_daemons():
    """Skips the file when entropy-control or entropy-worker is not built."""
    try:
        binary("entropy-control")
        binary("entropy-worker")
    except FileNotFoundError as e:
        skip_all(str(e))


FAST_WORKER = {
    "poll-interval": "100ms",
    "heartbeat-interval": "200ms",
    "request-timeout": "1s",
    "backoff-max": "1s",
    "kill-grace": "500ms",
    "log-level": "debug",
}


class WorkerProcess(Daemon):
    """entropy-worker with a state directory of its own, talking to `cp`."""

    def __init__(self, ctx, cp, name="worker", worker_id=None, options=None, env=None, state_dir=None,
                 wrapper=None, notify=True, pass_fds=()):
        self.cp = cp
        self.worker_id = worker_id or name
        self.state_dir = state_dir or os.path.join(ctx.tmp, f"{name}-state")
        os.makedirs(self.state_dir, exist_ok=True)
        opts = dict(FAST_WORKER)
        opts.update({
            "control-url": cp.url,
            "worker-id": self.worker_id,
            "token-file": cp.worker_token_file,
            "state-directory": self.state_dir,
            "config": "",
        })
        opts.update(options or {})
        self.options = opts
        argv = [binary("entropy-worker")] + [f"--{k}={v}" for k, v in opts.items() if v is not None]
        super().__init__(ctx, name, (wrapper or []) + argv, env=env, notify=notify, pass_fds=pass_fds)
        ctx.daemons.append(self)

    # -- state on disk -------------------------------------------------------------------------
    def _query(self, sql, args=()):
        path = os.path.join(self.state_dir, "worker.db")
        if not os.path.exists(path):
            return []
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute(sql, args)]
        finally:
            con.close()

    def runs(self, job_id=None):
        if job_id:
            return self._query("SELECT * FROM runs WHERE job_id = ? ORDER BY id", (job_id,))
        return self._query("SELECT * FROM runs ORDER BY id")

    def outbox(self, job_id=None, state=None):
        sql, args = "SELECT * FROM outbox WHERE 1", []
        if job_id:
            sql += " AND job_id = ?"
            args.append(job_id)
        if state:
            sql += " AND state = ?"
            args.append(state)
        return self._query(sql + " ORDER BY id", tuple(args))

    def wait_log(self, text, timeout=10.0):
        self.ctx.wait_for(lambda: text in self.log_text(), timeout, f"'{text}' in {self.name}'s log",
                          lambda: self.log_tail(10))

    def wait_status(self, predicate, timeout=10.0):
        """Waits for an sd_notify STATUS= line (received at any time) for which predicate(text) holds."""
        def match():
            with self.notify_cond:
                msgs = list(self.status_messages)
            for m in msgs:
                for line in m.split("\n"):
                    if line.startswith("STATUS=") and predicate(line[7:]):
                        return line[7:]
            return None
        return self.ctx.wait_for(match, timeout, f"{self.name}: a matching STATUS",
                                 lambda: f"last: {self.status_messages[-3:]}")


def wake_datagram(worker_id, token=WORKER_TOKEN, unix_ms=None):
    """`entropy-wake1 <worker_id> <unix_ms> <hmac>`, as common/wake-proto.h defines it."""
    ms = int(time.time() * 1000) if unix_ms is None else unix_ms
    text = f"entropy-wake1 {worker_id} {ms}"
    mac = hmac.new(token.encode(), text.encode(), hashlib.sha256).hexdigest()
    return f"{text} {mac}".encode()


def send_wake(port, datagram, host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(datagram, (host, port))


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_port_bound(port):
    """True once something is bound to 127.0.0.1:port (UDP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def children(pid):
    """The pids of pid's children."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
                if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                    out.append(int(d))
            except (OSError, ValueError):
                pass
    return out


def children_named(pid, comm):
    """The pids of pid's children whose command name is comm."""
    out = []
    for child in children(pid):
        try:
            with open(f"/proc/{child}/comm") as f:
                if f.read().strip() == comm:
                    out.append(child)
        except OSError:
            pass
    return out


def keeper_of(w):
    """The pid of w's entropy-keeper (once it has named itself), or None."""
    keepers = children_named(w.proc.pid, "entropy-keeper")
    return keepers[0] if keepers else None


def gate_loop(path):
    """Shell code that waits until path exists."""
    return f"while [ ! -e {path} ]; do sleep 0.02; done"


def timed_job(log_path, seconds, tag="$ENTROPY_ASSIGNMENT_ID"):
    """A shell job that appends 'start <tag> <t>' and, unless stopped, 'end <tag> <t>' to log_path."""
    script = (f'echo "start {tag} $(date +%s.%N)" >> {log_path}; sleep {seconds}; '
              f'echo "end {tag} $(date +%s.%N)" >> {log_path}')
    return {"command": "sh", "args": ["-c", script]}


def logged_runs(log_path):
    """{tag: [start, end or None]} from a timed_job log."""
    runs = {}
    if not os.path.exists(log_path):
        return runs
    with open(log_path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 3:
                continue
            kind, tag, ts = parts
            r = runs.setdefault(tag, [None, None])
            r[0 if kind == "start" else 1] = float(ts)
    return runs


def run_intervals(worker_runs):
    """[(start, end)] in Unix seconds from workers' run records; an unknown end is infinity."""
    out = []
    for r in worker_runs:
        end = r["ended_at"] / 1e6 if r["ended_at"] else float("inf")
        out.append((r["started_at"] / 1e6, end, r["assignment_id"], r["outcome"]))
    return sorted(out)


def overlapping(intervals):
    """The first pair of overlapping (start, end, ...) intervals, or None."""
    s = sorted(intervals)
    for a, b in zip(s, s[1:]):
        if b[0] < a[1]:
            return (a, b)
    return None


@contextlib.contextmanager
def paused(daemon):
    """The daemon is alive but answers nothing (SIGSTOP) for the duration of the block."""
    daemon.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        daemon.signal(signal.SIGCONT)


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
