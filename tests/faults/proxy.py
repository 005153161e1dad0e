"""proxy: a fault-injecting HTTP proxy between entropy-worker and entropy-control, on 127.0.0.1.

One asyncio loop in a background thread. Each worker request is forwarded upstream on its own
connection (Connection: close both ways). Decisions come from random.Random(seed) in the order
requests arrive, so a seed replays the same choices for the same arrival order:

  delay      hold the request back for up to max_delay before forwarding it (requests that are
             in flight together are thereby reordered: heartbeats overtake each other, a
             completion overtakes a heartbeat)
  duplicate  after answering, send the same request upstream again, later (answer discarded)
  stale      also re-send an older worker request of the same kind (an /ack, /complete or /fail
             of an earlier assignment: a replay of a superseded message)
  drop       (set_blackhole) close every connection without an answer: the network is gone

Only the worker endpoints in FAULT_PATHS are tampered with; everything else passes through.
"""

import asyncio
import random
import threading

FAULT_PATHS = ("/ack", "/heartbeat", "/complete", "/fail", "/reconnect", "/next-job")
REPLAYABLE = ("/ack", "/complete", "/fail")


class FaultProxy:
    def __init__(self, upstream_port, seed=0, delay=0.0, max_delay=0.3, duplicate=0.0, stale=0.0,
                 upstream_host="127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.rng = random.Random(seed)
        self.p_delay, self.max_delay, self.p_dup, self.p_stale = delay, max_delay, duplicate, stale
        self.blackhole = False
        self.history = []
        self.stats = {"requests": 0, "delayed": 0, "duplicated": 0, "stale_replayed": 0, "dropped": 0,
                      "upstream_errors": 0}
        self.loop = None
        self.port = None
        self._thread = None
        self._server = None
        self._ready = threading.Event()
        self._tasks = set()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self):
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def _run(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        self._server.close()
        # Every task, the server's connection handlers included (not only the ones _spawn()
        # tracks): cancelled and awaited, so none is destroyed while pending.
        pending = asyncio.all_tasks(self.loop)
        for t in pending:
            t.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def stop(self):
        if self.loop and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def set_blackhole(self, on):
        self.blackhole = on

    def set_upstream_port(self, port):
        self.upstream = (self.upstream[0], port)

    # -- HTTP plumbing -----------------------------------------------------------------------
    @staticmethod
    async def _read_request(reader):
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
        headers = []
        length = 0
        for l in lines[1:]:
            if not l or ":" not in l:
                continue
            k, val = l.split(":", 1)
            if k.strip().lower() in ("connection", "keep-alive", "proxy-connection"):
                continue
            if k.strip().lower() == "content-length":
                length = int(val.strip() or 0)
            headers.append((k.strip(), val.strip()))
        body = await reader.readexactly(length) if length else b""
        return method, path, headers, body

    @staticmethod
    def _serialize(method, path, headers, body):
        h = "".join(f"{k}: {val}\r\n" for k, val in headers)
        return f"{method} {path} HTTP/1.1\r\n{h}Connection: close\r\n\r\n".encode("latin-1") + body

    async def _forward(self, raw):
        r, w = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 5)
        try:
            w.write(raw)
            await w.drain()
            return await asyncio.wait_for(r.read(), 30)
        finally:
            w.close()

    @staticmethod
    def _rewrite_response(resp):
        head, sep, body = resp.partition(b"\r\n\r\n")
        lines = [l for l in head.split(b"\r\n") if not l.lower().startswith(b"connection:")
                 and not l.lower().startswith(b"keep-alive:")]
        return b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n" + body

    def _spawn(self, coro):
        t = self.loop.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _resend_later(self, raw, delay, key):
        await asyncio.sleep(delay)
        try:
            await self._forward(raw)
            self.stats[key] += 1
        except (OSError, asyncio.TimeoutError):
            self.stats["upstream_errors"] += 1

    async def _handle(self, reader, writer):
        try:
            req = await self._read_request(reader)
            if req is None:
                return
            method, path, headers, body = req
            self.stats["requests"] += 1
            if self.blackhole:
                self.stats["dropped"] += 1
                return
            raw = self._serialize(method, path, headers, body)
            route = path.split("?", 1)[0]
            tamper = route in FAULT_PATHS
            # Draw every decision, used or not, so that the sequence depends only on arrival order.
            d_delay, d_dup, d_stale = self.rng.random(), self.rng.random(), self.rng.random()
            delay = self.rng.uniform(0, self.max_delay)
            later = self.rng.uniform(0.05, max(0.1, 2 * self.max_delay))
            pick = self.rng.random()
            if tamper and d_delay < self.p_delay:
                self.stats["delayed"] += 1
                await asyncio.sleep(delay)
            try:
                resp = await self._forward(raw)
            except (OSError, asyncio.TimeoutError):
                self.stats["upstream_errors"] += 1
                return
            writer.write(self._rewrite_response(resp))
            await writer.drain()
            if tamper and route in REPLAYABLE:
                if d_dup < self.p_dup:
                    self._spawn(self._resend_later(raw, later, "duplicated"))
                if d_stale < self.p_stale and self.history:
                    old = [h for h in self.history if h[0] == route] or self.history
                    self._spawn(self._resend_later(old[int(pick * len(old))][1], later, "stale_replayed"))
                self.history.append((route, raw))
                del self.history[:-200]
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass
