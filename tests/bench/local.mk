# tests/bench/: entropy-bench, the benchmark of issue 8 (docs/performance.md).
#
# A noinst program: built by `make` with everything else (so a full run needs no `make check`),
# never installed (it execs this build tree's entropy-control and entropy-worker, and it is a
# developer's tool, not an operator's). The smoke test runs it in --short mode under `make check`.
noinst_PROGRAMS += tests/bench/entropy-bench
tests_bench_entropy_bench_SOURCES = \
	tests/bench/bench.h \
	tests/bench/bench-main.c \
	tests/bench/bench-util.c tests/bench/bench-util.h \
	tests/bench/bench-stats.c tests/bench/bench-stats.h \
	tests/bench/bench-http.c tests/bench/bench-http.h \
	tests/bench/bench-load.c tests/bench/bench-load.h \
	tests/bench/bench-proc.c tests/bench/bench-proc.h \
	tests/bench/bench-control.c tests/bench/bench-control.h \
	tests/bench/bench-entropy.c \
	tests/bench/bench-beanstalk.c \
	tests/bench/bench-e2e.c \
	tests/bench/bench-report.c
tests_bench_entropy_bench_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
tests_bench_entropy_bench_LDADD = $(COMMON_LIBS)

TESTS += tests/integration/test-bench-smoke.py
dist_check_SCRIPTS += tests/integration/test-bench-smoke.py

# One claim at a time behind queues of other shapes (docs/performance.md); the smoke test runs it.
EXTRA_DIST += tests/bench/claim-probe.py

# The bench with a journald of its own (root: a mount namespace); docs/performance.md.
EXTRA_DIST += tests/bench/with-private-journald.sh
TESTS += tests/integration/test-bench-journald.py
dist_check_SCRIPTS += tests/integration/test-bench-journald.py
