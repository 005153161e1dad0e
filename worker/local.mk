# worker/: entropy-worker. Everything but main() is in a convenience library, so that the unit
# tests link the same code the daemon runs.
noinst_LIBRARIES += libentropy-worker.a
libentropy_worker_a_SOURCES = \
	worker/worker.h \
	worker/worker.c \
	worker/worker-settings.c worker/worker-settings.h \
	worker/client.c worker/client.h \
	worker/session.c \
	worker/run.c \
	worker/lease.c \
	worker/wake.c worker/wake.h \
	worker/executor.c worker/executor.h worker/keeper-protocol.h \
	worker/job-cgroup.c worker/job-cgroup.h \
	worker/artifacts.c worker/artifacts.h \
	worker/finisher.c worker/finisher.h \
	worker/replay.c worker/replay.h \
	worker/policy.c worker/policy.h \
	worker/prepare.c worker/prepare.h \
	worker/gpu.c worker/gpu.h \
	worker/host-metrics.c worker/host-metrics.h
WORKER_CFLAGS = $(AM_CFLAGS) $(SYSTEMD_CFLAGS) $(CURL_CFLAGS) $(JSONC_CFLAGS) $(GNUTLS_CFLAGS) $(SQLITE_CFLAGS)
libentropy_worker_a_CFLAGS = $(WORKER_CFLAGS)
WORKER_LIBS = libentropy-worker.a $(COMMON_LIBS) $(SYSTEMD_LIBS) $(CURL_LIBS) $(SQLITE_LIBS)

bin_PROGRAMS += entropy-worker
entropy_worker_SOURCES = worker/worker-main.c
entropy_worker_CFLAGS = $(WORKER_CFLAGS)
entropy_worker_LDADD = $(WORKER_LIBS)

# The worker's keeper process (keeper.c): nothing but libc, so that forking it is cheap.
pkglibexec_PROGRAMS += entropy-keeper
entropy_keeper_SOURCES = worker/keeper.c worker/keeper-protocol.h

# Unit tests of the worker's mechanisms (no control plane needed).
WORKER_UNIT_TESTS = \
	tests/unit/test-worker-policy \
	tests/unit/test-worker-replay \
	tests/unit/test-worker-wake \
	tests/unit/test-worker-artifacts \
	tests/unit/test-worker-executor \
	tests/unit/test-worker-host-metrics \
	tests/unit/test-worker-maintenance \
	tests/unit/test-worker-settings \
	tests/unit/test-worker-gpu
check_PROGRAMS += $(WORKER_UNIT_TESTS)
TESTS += $(WORKER_UNIT_TESTS)
tests_unit_test_worker_policy_SOURCES = tests/unit/test-worker-policy.c tests/tap.h
tests_unit_test_worker_policy_CFLAGS = $(WORKER_CFLAGS)
tests_unit_test_worker_policy_LDADD = $(WORKER_LIBS)
tests_unit_test_worker_replay_SOURCES = tests/unit/test-worker-replay.c tests/tap.h
tests_unit_test_worker_replay_CFLAGS = $(WORKER_CFLAGS)
tests_unit_test_worker_replay_LDADD = $(WORKER_LIBS)
# wake-send.c is the control plane's half of the protocol; linked here to test both halves.
tests_unit_test_worker_wake_SOURCES = tests/unit/test-worker-wake.c daemon/wake-send.c daemon/wake-send.h tests/tap.h
tests_unit_test_worker_wake_CFLAGS = $(WORKER_CFLAGS)
tests_unit_test_worker_wake_LDADD = $(WORKER_LIBS)
tests_unit_test_worker_artifacts_SOURCES = tests/unit/test-worker-artifacts.c tests/tap.h
tests_unit_test_worker_artifacts_CFLAGS = $(WORKER_CFLAGS)
tests_unit_test_worker_artifacts_LDADD = $(WORKER_LIBS)
tests_unit_test_worker_executor_SOURCES = tests/unit/test-worker-executor.c tests/tap.h
tests_unit_test_worker_executor_CFLAGS = $(WORKER_CFLAGS) -DTEST_KEEPER_PATH=\"$(abs_top_builddir)/entropy-keeper\" \
	-DTEST_FAKE_KEEPER_PATH=\"$(abs_top_builddir)/tests/unit/keeper-dies-mid-spawn\"
tests_unit_test_worker_executor_LDADD = $(WORKER_LIBS)
# An entropy-keeper that dies in the middle of a spawn, for test-worker-executor.
check_PROGRAMS += tests/unit/keeper-dies-mid-spawn
tests_unit_keeper_dies_mid_spawn_SOURCES = tests/unit/keeper-dies-mid-spawn.c worker/keeper-protocol.h

# Integration tests against the real entropy-control on 127.0.0.1.
TESTS += tests/integration/test-worker.py tests/integration/test-worker-cp-pending.py \
	tests/integration/test-worker-output-limit.py
EXTRA_DIST += tests/integration/test-worker.py tests/integration/test-worker-cp-pending.py \
	tests/integration/test-worker-output-limit.py tests/integration/worker_harness.py

# Job cgroups (root: each test makes a cgroup of its own for its worker).
TESTS += tests/integration/test-worker-cgroups.py
EXTRA_DIST += tests/integration/test-worker-cgroups.py

# The worker against the control plane's answers at the moments that once went wrong (a late
# /reconnect or heartbeat answer, a lease lost while stopping), through tests/faults/proxy.py.
TESTS += tests/integration/test-worker-races.py
EXTRA_DIST += tests/integration/test-worker-races.py

# The worker over HTTPS and mutual TLS with signed tokens (certificates made by certtool at test time).
TESTS += tests/integration/test-tls-worker.py
EXTRA_DIST += tests/integration/test-tls-worker.py
tests_unit_test_worker_host_metrics_SOURCES = tests/unit/test-worker-host-metrics.c tests/tap.h
tests_unit_test_worker_host_metrics_CFLAGS = $(WORKER_CFLAGS)
tests_unit_test_worker_host_metrics_LDADD = $(WORKER_LIBS)
tests_unit_test_worker_maintenance_SOURCES = tests/unit/test-worker-maintenance.c tests/tap.h
tests_unit_test_worker_maintenance_CFLAGS = $(WORKER_CFLAGS)
tests_unit_test_worker_maintenance_LDADD = $(WORKER_LIBS)
tests_unit_test_worker_settings_SOURCES = tests/unit/test-worker-settings.c tests/tap.h
tests_unit_test_worker_settings_CFLAGS = $(WORKER_CFLAGS)
tests_unit_test_worker_settings_LDADD = $(WORKER_LIBS)
tests_unit_test_worker_gpu_SOURCES = tests/unit/test-worker-gpu.c tests/tap.h
tests_unit_test_worker_gpu_CFLAGS = $(WORKER_CFLAGS)
tests_unit_test_worker_gpu_LDADD = $(WORKER_LIBS)
