# ui/: the dashboard (issue 9) and, with it, the observability parts of entropy-control:
# live metrics (daemon/metrics-histogram.c), the event stream (daemon/event-stream.c), the
# dashboard's static files (daemon/ui-static.c) and their wiring (daemon/observability.c).

# The static files, installed where ui_serve() reads them (the ui-directory setting's default,
# PKGDATADIR "/ui").
uidir = $(pkgdatadir)/ui
dist_ui_DATA = ui/index.html ui/app.js ui/style.css

# For entropy-control. The live metrics go into the core library (daemon/core.mk adds
# $(CONTROL_CORE_OBSERVABILITY_SRC) to libentropy_control_core_a_SOURCES), because the handlers of
# GET /metrics and GET /next-job there call them; the rest, which needs libmicrohttpd and the
# Control fields named in observability.h, is added by daemon/local.mk to entropy_control_SOURCES
# as $(CONTROL_OBSERVABILITY_SRC).
CONTROL_CORE_OBSERVABILITY_SRC = daemon/metrics-histogram.c daemon/metrics-histogram.h
CONTROL_OBSERVABILITY_SRC = \
	daemon/event-stream.c daemon/event-stream.h \
	daemon/ui-static.c daemon/ui-static.h \
	daemon/observability.c daemon/observability.h

# Unit tests of the three modules; the event stream and static files are served through the real
# HTTP server (daemon/http-server.c) by the tests.
OBSERVABILITY_TESTS = \
	tests/unit/test-metrics-histogram \
	tests/unit/test-event-stream \
	tests/unit/test-ui-static
check_PROGRAMS += $(OBSERVABILITY_TESTS)
TESTS += $(OBSERVABILITY_TESTS)
OBSERVABILITY_TEST_CFLAGS = $(AM_CFLAGS) $(SYSTEMD_CFLAGS) $(MHD_CFLAGS) $(GNUTLS_CFLAGS) $(JSONC_CFLAGS) $(SQLITE_CFLAGS)

tests_unit_test_metrics_histogram_SOURCES = tests/unit/test-metrics-histogram.c tests/tap.h \
	daemon/metrics-histogram.c daemon/metrics-histogram.h
tests_unit_test_metrics_histogram_CFLAGS = $(OBSERVABILITY_TEST_CFLAGS)
tests_unit_test_metrics_histogram_LDADD = $(COMMON_LIBS)

tests_unit_test_event_stream_SOURCES = tests/unit/test-event-stream.c tests/tap.h \
	daemon/event-stream.c daemon/event-stream.h daemon/http-server.c daemon/http-server.h \
	daemon/http-tls.c daemon/http-tls.h
tests_unit_test_event_stream_CFLAGS = $(OBSERVABILITY_TEST_CFLAGS)
tests_unit_test_event_stream_LDADD = $(CONTROL_CORE_LIBS) $(MHD_LIBS) $(GNUTLS_LIBS)

tests_unit_test_ui_static_SOURCES = tests/unit/test-ui-static.c tests/tap.h \
	daemon/ui-static.c daemon/ui-static.h daemon/http-server.c daemon/http-server.h \
	daemon/http-tls.c daemon/http-tls.h
tests_unit_test_ui_static_CFLAGS = $(OBSERVABILITY_TEST_CFLAGS)
tests_unit_test_ui_static_LDADD = $(COMMON_LIBS) $(MHD_LIBS) $(GNUTLS_LIBS) $(SYSTEMD_LIBS)

# Integration: promtool on a live scrape (skips without promtool), the event stream over HTTP, and
# the dashboard in headless Chromium (skips without node, npm or chromium; its Node driver is
# installed by the test from tests/browser/package-lock.json).
TESTS += tests/integration/test-metrics.py tests/integration/test-event-stream.py \
	tests/integration/test-dashboard.py
dist_check_SCRIPTS += tests/integration/test-metrics.py tests/integration/test-event-stream.py \
	tests/integration/test-dashboard.py
EXTRA_DIST += tests/browser/package.json tests/browser/package-lock.json tests/browser/dashboard-test.mjs

# What the dashboard test puts in the build tree: its copy of tests/browser with the Node modules
# it installed, and the screenshot. In an in-tree build tests/browser is the source itself: only
# the installed modules go.
clean-local: clean-browser-local
clean-browser-local:
	rm -rf test-artifacts
	if test "$(abs_builddir)" = "$(abs_srcdir)"; then rm -rf tests/browser/node_modules; \
	else rm -rf tests/browser; fi
.PHONY: clean-browser-local
