# daemon/ core: store, state machine, scheduler, reconciler, audit, API handlers. Linked into
# entropy-control (daemon/local.mk) through $(CONTROL_CORE_LIBS), and into the unit tests below.
noinst_LIBRARIES += libentropy-control-core.a
libentropy_control_core_a_SOURCES = \
	daemon/ops.h daemon/ops.c \
	daemon/store.c daemon/store.h \
	daemon/store-schema.c daemon/store-schema.h \
	daemon/audit.c daemon/audit.h \
	daemon/control-events.c \
	daemon/control-clock.c daemon/control-clock.h \
	daemon/control-wake.c daemon/control-wake.h \
	daemon/wake-send.c daemon/wake-send.h \
	daemon/wake-rate.c daemon/wake-rate.h \
	daemon/control-settings-check.c daemon/control-settings-check.h \
	daemon/job-state.c daemon/job-state.h \
	daemon/jobs.c daemon/jobs.h daemon/jobs-internal.h \
	daemon/jobs-reconnect.c \
	daemon/workers.c daemon/workers.h \
	daemon/schedule.c daemon/schedule.h \
	daemon/requirement-sets.c daemon/requirement-sets.h \
	daemon/reconcile.c daemon/reconcile.h \
	daemon/retention.c daemon/retention.h \
	daemon/job-json.c daemon/job-json.h \
	daemon/api-admin.c daemon/api-worker.c daemon/api-util.c daemon/api-util.h \
	$(CONTROL_CORE_OBSERVABILITY_SRC)
libentropy_control_core_a_CFLAGS = $(AM_CFLAGS) $(SYSTEMD_CFLAGS) $(SQLITE_CFLAGS) $(JSONC_CFLAGS) $(MHD_CFLAGS)
CONTROL_CORE_LIBS = libentropy-control-core.a $(COMMON_LIBS) $(SYSTEMD_LIBS) $(SQLITE_LIBS)

catalog_DATA += catalog/entropy.catalog
EXTRA_DIST += catalog/entropy.catalog

# Unit tests of the core. The API handlers call into the HTTP server's response helpers, so the
# tests link a small stand-in for them (tests/unit/http-stub.c) instead of libmicrohttpd.
CORE_TEST_CFLAGS = $(AM_CFLAGS) $(SYSTEMD_CFLAGS) $(SQLITE_CFLAGS) $(JSONC_CFLAGS) $(MHD_CFLAGS)
CORE_TEST_SOURCES = tests/unit/core-test-util.c tests/unit/core-test-util.h tests/unit/http-stub.c tests/tap.h
CORE_TEST_LIBS = $(CONTROL_CORE_LIBS)

CORE_TESTS = \
	tests/unit/test-store \
	tests/unit/test-job-state \
	tests/unit/test-schedule \
	tests/unit/test-jobs \
	tests/unit/test-reconcile \
	tests/unit/test-retention \
	tests/unit/test-audit \
	tests/unit/test-api \
	tests/unit/test-control-wake \
	tests/unit/test-wake-rate
check_PROGRAMS += $(CORE_TESTS)
TESTS += $(CORE_TESTS)

tests_unit_test_store_SOURCES = tests/unit/test-store.c $(CORE_TEST_SOURCES)
tests_unit_test_store_CFLAGS = $(CORE_TEST_CFLAGS)
tests_unit_test_store_LDADD = $(CORE_TEST_LIBS)
tests_unit_test_job_state_SOURCES = tests/unit/test-job-state.c $(CORE_TEST_SOURCES)
tests_unit_test_job_state_CFLAGS = $(CORE_TEST_CFLAGS)
tests_unit_test_job_state_LDADD = $(CORE_TEST_LIBS)
tests_unit_test_schedule_SOURCES = tests/unit/test-schedule.c $(CORE_TEST_SOURCES)
tests_unit_test_schedule_CFLAGS = $(CORE_TEST_CFLAGS)
tests_unit_test_schedule_LDADD = $(CORE_TEST_LIBS)
tests_unit_test_jobs_SOURCES = tests/unit/test-jobs.c $(CORE_TEST_SOURCES)
tests_unit_test_jobs_CFLAGS = $(CORE_TEST_CFLAGS)
tests_unit_test_jobs_LDADD = $(CORE_TEST_LIBS)
tests_unit_test_reconcile_SOURCES = tests/unit/test-reconcile.c $(CORE_TEST_SOURCES)
tests_unit_test_reconcile_CFLAGS = $(CORE_TEST_CFLAGS)
tests_unit_test_reconcile_LDADD = $(CORE_TEST_LIBS)
tests_unit_test_retention_SOURCES = tests/unit/test-retention.c $(CORE_TEST_SOURCES)
tests_unit_test_retention_CFLAGS = $(CORE_TEST_CFLAGS)
tests_unit_test_retention_LDADD = $(CORE_TEST_LIBS)
tests_unit_test_audit_SOURCES = tests/unit/test-audit.c $(CORE_TEST_SOURCES)
tests_unit_test_audit_CFLAGS = $(CORE_TEST_CFLAGS) -DCATALOG_PATH=\"$(abs_top_srcdir)/catalog/entropy.catalog\"
tests_unit_test_audit_LDADD = $(CORE_TEST_LIBS)
tests_unit_test_api_SOURCES = tests/unit/test-api.c $(CORE_TEST_SOURCES)
tests_unit_test_api_CFLAGS = $(CORE_TEST_CFLAGS)
tests_unit_test_api_LDADD = $(CORE_TEST_LIBS)
tests_unit_test_control_wake_SOURCES = tests/unit/test-control-wake.c $(CORE_TEST_SOURCES)
tests_unit_test_control_wake_CFLAGS = $(CORE_TEST_CFLAGS)
tests_unit_test_control_wake_LDADD = $(CORE_TEST_LIBS)
tests_unit_test_wake_rate_SOURCES = tests/unit/test-wake-rate.c tests/tap.h
tests_unit_test_wake_rate_CFLAGS = $(CORE_TEST_CFLAGS)
tests_unit_test_wake_rate_LDADD = $(CORE_TEST_LIBS)

# Integration test of the worker protocol over HTTP (tests/integration/entropy_test.py harness).
TESTS += tests/integration/test-worker-protocol.py
dist_check_SCRIPTS += tests/integration/test-worker-protocol.py
