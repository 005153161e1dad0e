#!/usr/bin/env python3
"""test-bench-journald: entropy-bench under tests/bench/with-private-journald.sh (root only).

On a machine without journald the control plane's audit copies cost almost nothing (the library
drops them when the socket is missing), so docs/performance.md also gives figures with a journald
of the bench's own. This checks that the documented command still works: the bench sees journald,
every audit copy is taken, and the wrapper reports journald's CPU time.
"""

import json
import os
import re
import sys

from entropy_test import BUILDDIR, SRCDIR, require_root, require_tool, run, test

BENCH = os.path.join(BUILDDIR, "tests", "bench", "entropy-bench")
WRAPPER = os.path.join(SRCDIR, "tests", "bench", "with-private-journald.sh")
JOURNALD = os.environ.get("ENTROPY_JOURNALD", "/lib/systemd/systemd-journald")


@test
def test_bench_with_a_private_journald(t):
    proc = t.run_cmd([WRAPPER, BENCH, "--short", "--json", "--beanstalkd=no", "--e2e=no", "--workers=16"],
                     timeout=60, env={"TMPDIR": t.tmp})
    t.require(proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    report_text, _, tail = proc.stdout.rpartition("}")
    report = json.loads(report_text + "}")
    e = report["entropy"]
    t.ok(e["lifecycles"] > 0 and e["verified"], f"the bench ran and its store check passed ({e['lifecycles']})")
    t.ok(e["journald"], "the bench saw the private journald")
    t.eq(e["journal_failures"], 0, "journald took every audit copy")
    m = re.search(r"journald CPU during the command: ([0-9.]+) s", tail)
    t.ok(m and float(m.group(1)) > 0, f"the wrapper reports journald's CPU time ({tail.strip()!r})")


if __name__ == "__main__":
    require_root()
    if not os.access(BENCH, os.X_OK):  # built by `make` with everything else: never a skip
        print(f"Bail out! {BENCH} is not built")
        sys.exit(1)
    require_tool(JOURNALD, "systemd")
    run()
