# tests/faults/: the fault-injection suite (issue 6) and the crash-simulating SQLite VFS's unit
# test. The suite starts entropy-control and entropy-worker from the build tree; the network
# namespace scenarios need root and report "SKIP needs root" otherwise (as root, anything else that
# stops them, or a program not built, is a failure: faultlib.cannot_run). soak.py is run by hand
# (see docs/reliability.md), never by make check.
check_PROGRAMS += tests/unit/test-crash-vfs
TESTS += tests/unit/test-crash-vfs
tests_unit_test_crash_vfs_SOURCES = tests/unit/test-crash-vfs.c tests/tap.h
tests_unit_test_crash_vfs_CFLAGS = $(AM_CFLAGS) $(SQLITE_CFLAGS)
tests_unit_test_crash_vfs_LDADD = $(COMMON_LIBS) $(SQLITE_LIBS)

FAULT_TESTS = tests/faults/test-faults.py tests/faults/test-faults-netns.py
TESTS += $(FAULT_TESTS)
dist_check_SCRIPTS += $(FAULT_TESTS)
EXTRA_DIST += tests/faults/faultlib.py tests/faults/invariants.py tests/faults/proxy.py tests/faults/soak.py
