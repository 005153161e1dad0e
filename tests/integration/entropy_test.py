"""entropy_test: the harness for Entropy's integration tests.

Tests start the real daemons from the build tree on 127.0.0.1, speak to them only through their
public interfaces (HTTP, D-Bus, the CLI) and print TAP for automake's tap-driver.sh.

    from entropy_test import test, run, ControlPlane

    @test
    def test_submit_returns_pending(t):
        cp = t.control_plane()
        status, body = cp.admin("POST", "/jobs", {"command": "true"})
        t.eq(status, 201, "submit answers 201")

    if __name__ == "__main__":
        run()

Every test gets a fresh context `t` whose daemons and temporary files are cleaned up after it,
whatever happens. Waiting is on events (the daemon's sd_notify READY) or bounded polling of an
observable condition with `t.wait_for`, never a fixed sleep.
"""

import errno
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

BUILDDIR = os.environ.get("ENTROPY_BUILDDIR", os.getcwd())
SRCDIR = os.environ.get("ENTROPY_SRCDIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEEP_TMP = bool(os.environ.get("ENTROPY_KEEP_TMP"))
# e.g. ENTROPY_TEST_WRAPPER="valgrind --leak-check=full --error-exitcode=99"
WRAPPER = os.environ.get("ENTROPY_TEST_WRAPPER", "").split()
# Timeouts scale up under slow wrappers (valgrind) or loaded machines.
TIME_SCALE = float(os.environ.get("ENTROPY_TIME_SCALE", "3" if WRAPPER else "1"))

ADMIN_TOKEN = "admin-token-0123456789abcdef"
WORKER_TOKEN = "worker-token-0123456789abcdef"


def binary(name):
    """Path of a program built in this tree (entropy-control, entropy-worker, entropyctl)."""
    for sub in ("", "daemon", "worker", "ctl"):
        p = os.path.join(BUILDDIR, sub, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    raise FileNotFoundError(f"{name} is not built in {BUILDDIR}")


def socket_fds(pid):
    """{fd: socket inode} of a process's open sockets (/proc/PID/fd); fds closed meanwhile are left out."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out[int(fd)] = target[len("socket:["):-1]
    return out


def exchange(cp, request, timeout=10):
    """Sends a raw request and reads until the server closes (or `timeout` passes without a byte):
    (every byte received, whether the server closed the connection cleanly)."""
    s = socket.create_connection(("127.0.0.1", cp.port), timeout=timeout)
    data, closed = b"", False
    try:
        try:
            s.sendall(request)
        except OSError:
            # Refused after reading part of it (16 KiB of a longer head): the server closes with
            # our other bytes unread, and its reset can reach us while we are still sending (a
            # race, a few runs in a hundred). Its answer and its FIN came before the reset: they
            # are still read below, and end in a clean close.
            pass
        while True:
            piece = s.recv(65536)
            if not piece:
                closed = True
                break
            data += piece
    except OSError:
        pass  # a reset or the timeout: not a clean close
    finally:
        s.close()
    return data, closed


def status_lines(data):
    """The status of every status line in data, also one glued to the end of a previous body."""
    return [m.decode() for m in re.findall(rb"HTTP/1\.[01] (\d{3}) ", data)]


def content_length(response_head):
    for line in response_head.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def mhd_refusal(t, what, data, closed, status_line, copies=1):
    """Checks an answer libmicrohttpd made itself (docs/http-api.md, "Refusals made by
    libmicrohttpd"): `copies` times the same status line and headers (0.9.75 sends them twice for a
    Content-Length it cannot read), each with Connection: close and the length of the body that
    follows; its short HTML body, not the JSON error; then the connection closed cleanly."""
    code = status_line.split(" ")[1]
    t.eq(status_lines(data), [code] * copies, f"{what}: {copies} status line(s), {code}")
    *heads, body = data.split(b"\r\n\r\n", copies)
    undated = [re.sub(rb"\r\nDate: [^\r]*", b"", h) for h in heads]
    t.eq([h.split(b"\r\n", 1)[0].decode() for h in heads], [status_line] * copies, f"{what}: {status_line}")
    t.eq(len(set(undated)), 1, f"{what}: every copy of the head is the same, Date aside: {heads!r}")
    for h in heads:
        t.ok(b"\r\nConnection: close\r\n" in h + b"\r\n", f"{what}: Connection: close, got {h!r}")
        t.eq(content_length(h), len(body), f"{what}: Content-Length is the length of the body")
    t.ok(body.startswith(b"<html>") and body.endswith(b"</html>"),
         f"{what}: libmicrohttpd's HTML body, not the JSON error, got {body!r}")
    t.ok(closed, f"{what}: the connection is closed after it, cleanly")


def small_tmpfs(t, path, size="4m"):
    """Mounts a tmpfs of `size` on the directory path for test t (unmounted after it), to fill up:
    a disk that is full for real. Needs root; the test is skipped without it."""
    if os.geteuid() != 0:
        raise TestSkip("needs root (a small tmpfs to fill up)")
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "entropy-test", path], check=True)
    t.cleanups.append(lambda: subprocess.run(["umount", "-l", path], check=True))


def fill_file_system(path):
    """Writes the file path until its file system is full (ENOSPC); returns the bytes written."""
    chunk, n = b"\0" * 65536, 0
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n += f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                return n


def nofile_limited(soft, hard):
    """A wrapper (the start of a daemon's argv) that runs it with these limits on open files, as a
    service manager would (LimitNOFILE=soft:hard). Lowering them needs no privilege."""
    return [sys.executable, "-c", "import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, "
            "(int(sys.argv[1]), int(sys.argv[2]))); os.execv(sys.argv[3], sys.argv[3:])", str(soft), str(hard)]


def nofile_limits(pid):
    """The (soft, hard) limits on open files of process pid."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise TestFailure(f"no limit on open files in /proc/{pid}/limits")


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestFailure(Exception):
    pass


class TestSkip(Exception):
    """Raised inside a test (t.require_tool, t.missing_dependency): that test alone is reported as
    a TAP skip."""


class Http:
    """A keep-alive HTTP/1.1 client for one server, reconnecting when the server closed the link."""

    def __init__(self, host, port, token=None, timeout=10.0):
        self.host, self.port, self.token, self.timeout = host, port, token, timeout
        self.conn = None

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def raw(self, method, path, body=None, headers=None):
        """Sends bytes as they are; returns (status, headers dict, body bytes)."""
        hdrs = dict(headers or {})
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.conn.connect()
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                # A kept-alive connection the server closed meanwhile: one fresh try.
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def request(self, method, path, body=None, token=None, headers=None):
        """JSON in, JSON out: returns (status, decoded body or None). token=False sends none."""
        hdrs = dict(headers or {})
        tok = self.token if token is None else token
        if tok:
            hdrs["X-API-Token"] = tok
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        status, rh, raw = self.raw(method, path, data, hdrs)
        if not raw:
            return status, None
        if rh.get("content-type", "").startswith("application/json"):
            return status, json.loads(raw)
        return status, raw.decode("utf-8", "replace")


class Daemon:
    """A program from the build tree run as a child, its output kept in a log file."""

    def __init__(self, ctx, name, argv, env=None, notify=True, pass_fds=()):
        self.ctx, self.name, self.argv = ctx, name, argv
        self.env = dict(os.environ)
        # The worker reads its own: a test's daemons get the GPUs the test gives them, not this host's.
        self.env.pop("CUDA_VISIBLE_DEVICES", None)
        self.env.update(env or {})
        self.notify = notify
        self.pass_fds = pass_fds
        self.proc = None
        self.log_path = os.path.join(ctx.tmp, f"{name}.log")
        self.notify_sock = None
        self.notify_reader = None
        self.notify_cond = threading.Condition()
        self.status_messages = []  # every sd_notify message received, in order
        self.status_times = []     # time.monotonic() at which each of them arrived
        self.notify_cursor = 0     # how far wait_notify*() has consumed them

    def start(self, wait_ready=True, timeout=10.0):
        if self.notify:
            self._close_notify()  # a restart: the previous run's reader goes first
            path = os.path.join(self.ctx.tmp, f"{self.name}.notify")
            if os.path.exists(path):
                os.unlink(path)
            self.notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.notify_sock.bind(path)
            self.env["NOTIFY_SOCKET"] = path
            # Drained all the time, not only while a test waits: a daemon's sd_notify() blocks once
            # the socket's queue (a handful of datagrams) is full, and that would stall its loop.
            self.notify_reader = threading.Thread(target=self._read_notify, args=(self.notify_sock,), daemon=True)
            self.notify_reader.start()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(WRAPPER + self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, pass_fds=self.pass_fds)
        log.close()
        self.ctx.cleanups.append(self.cleanup)
        if wait_ready and self.notify:
            self.wait_notify("READY=1", timeout)
        return self

    def _read_notify(self, sock):
        while True:
            try:
                data = sock.recv(4096)
            except OSError:
                return
            if not data:  # shut down by _close_notify()
                return
            msg = data.decode("utf-8", "replace")
            with self.notify_cond:
                self.status_messages.append(msg)
                self.status_times.append(time.monotonic())
                self.notify_cond.notify_all()

    def wait_notify_match(self, predicate, timeout=10.0, what="a notification"):
        """Waits for the next sd_notify message not yet consumed by an earlier wait for which
        predicate(message) holds; consumes the messages up to it and returns it."""
        deadline = time.monotonic() + timeout * TIME_SCALE
        with self.notify_cond:
            while True:
                while self.notify_cursor < len(self.status_messages):
                    msg = self.status_messages[self.notify_cursor]
                    self.notify_cursor += 1
                    if predicate(msg):
                        return msg
                if self.proc.poll() is not None:
                    raise TestFailure(f"{self.name} exited with {self.proc.returncode} before {what}\n"
                                      f"{self.log_tail()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TestFailure(f"{self.name}: no {what} in {timeout}s (last: {self.status_messages[-3:]})"
                                      f"\n{self.log_tail()}")
                self.notify_cond.wait(min(remaining, 0.2))

    def wait_notify(self, what, timeout=10.0):
        """Waits for the next sd_notify message with the line `what` (e.g. READY=1); returns it."""
        return self.wait_notify_match(lambda m: what in m.split("\n"), timeout, f"'{what}' notification")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill9(self):
        """A crash: SIGKILL, nothing flushed or cleaned up by the process."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, timeout=15.0):
        """SIGTERM and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout * TIME_SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise TestFailure(f"{self.name} did not exit within {timeout}s of SIGTERM\n{self.log_tail()}")
        return self.proc.returncode

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"  {self.name}| {l}" for l in data[-lines:])

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_notify()

    def _close_notify(self):
        """Stops the reader before its socket is closed. Closed under a reader about to call recv(),
        the socket's descriptor number is free, the next daemon's notify socket may get it, and the
        old reader then takes that daemon's first datagram, its READY=1."""
        if not self.notify_sock:
            return
        try:
            self.notify_sock.shutdown(socket.SHUT_RDWR)  # a recv() in progress returns b""
        except OSError:
            pass
        self.notify_reader.join(5)
        self.notify_sock.close()
        self.notify_sock = self.notify_reader = None


# Short intervals so that time-dependent behaviour shows within a test's budget.
def span(s):
    """Seconds from a span as the daemons' options take it ("1500ms", "1s")."""
    return float(s[:-2]) / 1000 if s.endswith("ms") else float(s.rstrip("s"))


FAST_CONTROL = {
    "lease-timeout": "1500ms",
    "disconnect-timeout": "700ms",
    "heartbeat-timeout": "1500ms",
    "reconcile-interval": "100ms",
    "retry-backoff": "100ms",
    "retry-backoff-max": "1s",
    "lost-grace": "1s",
}


class ControlPlane(Daemon):
    """entropy-control on 127.0.0.1 with a fresh database and token files."""

    def __init__(self, ctx, options=None, env=None, name="control", state_dir=None):
        self.state_dir = state_dir or os.path.join(ctx.tmp, name)
        os.makedirs(self.state_dir, exist_ok=True)
        self.port = free_port()
        self.admin_token_file = os.path.join(self.state_dir, "admin-token")
        self.worker_token_file = os.path.join(self.state_dir, "worker-token")
        for path, tok in ((self.admin_token_file, ADMIN_TOKEN), (self.worker_token_file, WORKER_TOKEN)):
            if not os.path.exists(path):
                with open(path, "w") as f:
                    f.write(tok + "\n")
                os.chmod(path, 0o600)
        self.database = os.path.join(self.state_dir, "control.db")
        opts = dict(FAST_CONTROL)
        opts.update({
            "listen": f"127.0.0.1:{self.port}",
            "database": self.database,
            "admin-token-file": self.admin_token_file,
            "worker-token-file": self.worker_token_file,
            "config": "",
        })
        opts.update(options or {})
        argv = [binary("entropy-control")] + [f"--{k}={v}" for k, v in opts.items() if v is not None]
        super().__init__(ctx, name, argv, env=env)
        self.options = opts
        self.http = Http("127.0.0.1", self.port)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def restart(self, wait_ready=True):
        """Starts the same control plane again (same port, database and tokens) after a stop or crash."""
        self.http.close()
        return self.start(wait_ready=wait_ready)

    def admin(self, method, path, body=None, **kw):
        return self.http.request(method, path, body, token=kw.pop("token", ADMIN_TOKEN), **kw)

    def worker(self, method, path, body=None, **kw):
        return self.http.request(method, path, body, token=kw.pop("token", WORKER_TOKEN), **kw)

    def submit(self, command="true", **fields):
        fields["command"] = command
        status, body = self.admin("POST", "/jobs", fields)
        if status != 201:
            raise TestFailure(f"submit failed: {status} {body}")
        return body["job_id"]

    def job(self, job_id):
        status, body = self.admin("GET", f"/jobs/{job_id}")
        if status != 200:
            raise TestFailure(f"GET /jobs/{job_id}: {status} {body}")
        return body

    def events(self, **filters):
        q = "&".join(f"{k}={v}" for k, v in filters.items())
        status, body = self.admin("GET", "/events" + (f"?{q}" if q else ""))
        if status != 200:
            raise TestFailure(f"GET /events: {status} {body}")
        return body

    def wait_job_state(self, job_id, states, timeout=10.0):
        """Waits until the job is in one of `states` (a name or a list); returns the job."""
        if isinstance(states, str):
            states = [states]
        box = {}

        def reached():
            box["job"] = self.job(job_id)
            return box["job"]["status"] in states
        self.ctx.wait_for(reached, timeout, f"job {job_id} to reach {'/'.join(states)}",
                          lambda: f"last seen: {box.get('job', {}).get('status')}")
        return box["job"]


class Context:
    """One test's resources: a temporary directory and everything to clean up after it."""

    def __init__(self, name):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix=f"entropy-{name[:40]}-")
        self.cleanups = []
        self.failures = []
        self.daemons = []

    # -- resources ---------------------------------------------------------------------------
    def control_plane(self, start=True, **kw):
        cp = ControlPlane(self, **kw)
        self.daemons.append(cp)
        if start:
            cp.start()
        return cp

    def daemon(self, name, argv, **kw):
        d = Daemon(self, name, argv, **kw)
        self.daemons.append(d)
        return d

    def run_cmd(self, argv, env=None, timeout=30.0, input=None):
        """Runs a command to completion; returns CompletedProcess with text stdout/stderr."""
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.run(argv, env=e, capture_output=True, text=True, timeout=timeout * TIME_SCALE,
                              input=input)

    # -- waiting -----------------------------------------------------------------------------
    def wait_for(self, predicate, timeout=10.0, what="condition", detail=None, interval=0.02):
        """Polls an observable condition until true, bounded by `timeout` seconds."""
        deadline = time.monotonic() + timeout * TIME_SCALE
        while True:
            v = predicate()
            if v:
                return v
            if time.monotonic() > deadline:
                extra = f" ({detail()})" if detail else ""
                raise TestFailure(f"timed out after {timeout}s waiting for {what}{extra}")
            time.sleep(interval)

    # -- assertions (recorded; the test goes on) ---------------------------------------------
    def ok(self, cond, desc):
        if not cond:
            self.failures.append(desc)
        return bool(cond)

    def eq(self, got, want, desc):
        if got != want:
            self.failures.append(f"{desc}: got {got!r}, want {want!r}")
            return False
        return True

    def require(self, cond, desc):
        """Like ok(), but stops the test: for what later steps depend on."""
        if not cond:
            raise TestFailure(desc)

    # -- what the test needs from the host ---------------------------------------------------
    def require_tool(self, name, package):
        """require_tool() for this test alone: skipped (not root) or failed (root) without it."""
        return require_tool(name, package, self)

    def missing_dependency(self, reason):
        missing_dependency(reason, self)

    def close(self):
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:  # cleanup must go on
                print(f"# cleanup error: {e}")
        if not KEEP_TMP:
            shutil.rmtree(self.tmp, ignore_errors=True)


_tests = []


def test(fn):
    """Registers a test function taking a Context."""
    _tests.append(fn)
    return fn


def todo(reason):
    """Marks a test as expected to fail until `reason` is resolved."""
    def mark(fn):
        fn.todo = reason
        return fn
    return mark


def skip_all(reason):
    """No test can run here: a TAP skip plan. Outside automake's driver, exit 77."""
    print(f"1..0 # SKIP {reason}")
    sys.stdout.flush()
    sys.exit(0 if os.environ.get("ENTROPY_BUILDDIR") else 77)


def require_root():
    if os.geteuid() != 0:
        skip_all("needs root")


def missing_dependency(reason, t=None):
    """Something scripts/install-deps.sh installs is missing. Without root that script cannot have
    run, so the test is skipped; as root (CI, where it ran) a missing dependency is an error, never
    a silent pass. With a test's context t only that test is skipped or failed, else the file."""
    if os.geteuid() == 0:
        if t is not None:
            raise TestFailure(f"{reason}: as root (CI) that is an error, not a skip")
        print(f"Bail out! {reason}: as root (CI) that is an error, not a skip")
        sys.stdout.flush()
        sys.exit(1)
    if t is not None:
        raise TestSkip(reason)
    skip_all(reason)


def require_tool(name, package, t=None):
    """The path of the program `name` (a command or an absolute path) from the Debian package
    `package`, which scripts/install-deps.sh installs; missing_dependency() without it."""
    path = shutil.which(name) if not os.path.isabs(name) else (name if os.access(name, os.X_OK) else None)
    if not path:
        missing_dependency(f"{name} is not installed (Debian package {package}, scripts/install-deps.sh test)", t)
    return path


def _diag(text):
    for line in str(text).splitlines():
        print(f"# {line}")


def run(skips=None):
    """Runs the registered tests (or those named on the command line) and prints TAP. The tests
    named in skips ({name: reason}) are reported as TAP skips instead of being run."""
    skips = dict(skips or {})
    selected = [t for t in _tests if len(sys.argv) < 2 or t.__name__ in sys.argv[1:]]
    failed = 0
    for n, fn in enumerate(selected, 1):
        if fn.__name__ in skips:
            print(f"ok {n} - {fn.__name__} # SKIP {skips[fn.__name__]}")
            sys.stdout.flush()
            continue
        ctx = Context(fn.__name__)
        started = time.monotonic()
        error = None
        try:
            fn(ctx)
            for d in ctx.daemons:
                # A daemon that died on its own during the test (crash, sanitizer report) fails it.
                if d.proc and d.proc.poll() not in (None, 0, -signal.SIGKILL, -signal.SIGTERM) \
                        and not getattr(d, "expect_exit", False):
                    ctx.failures.append(f"{d.name} exited with status {d.proc.returncode}\n{d.log_tail()}")
        except TestSkip as e:
            skips[fn.__name__] = str(e)
        except Exception as e:
            error = e
        ctx_tail = "\n".join(d.log_tail() for d in ctx.daemons) if (error or ctx.failures) else ""
        ctx.close()
        elapsed = time.monotonic() - started
        # A test marked with todo(reason) is expected to fail (TAP "# TODO": XFAIL, and XPASS once
        # it passes, which tells whoever made it pass to remove the mark).
        todo = f" # TODO {fn.todo}" if getattr(fn, "todo", None) else ""
        if fn.__name__ in skips and not ctx.failures:
            print(f"ok {n} - {fn.__name__} # SKIP {skips[fn.__name__]}")
        elif error is None and not ctx.failures:
            print(f"ok {n} - {fn.__name__} ({elapsed:.1f}s){todo}")
        else:
            failed += 0 if todo else 1
            print(f"not ok {n} - {fn.__name__} ({elapsed:.1f}s){todo}")
            for f in ctx.failures:
                _diag(f)
            if error is not None:
                _diag("".join(traceback.format_exception(type(error), error, error.__traceback__)))
            _diag(ctx_tail)
        sys.stdout.flush()
    print(f"1..{len(selected)}")
    sys.exit(1 if failed else 0)
