# daemon/: entropy-control, the control plane daemon. The store, state machine, scheduler,
# reconciler, audit and API handlers come from libentropy-control-core.a (daemon/core.mk,
# $(CONTROL_CORE_LIBS)); the D-Bus API from $(CONTROL_BUS_SOURCES) (daemon/bus.mk). Here: the
# HTTP server, routing and authentication, settings and main().
#
# In sbindir: units/entropy-control.service.in starts @sbindir@/entropy-control.
sbin_PROGRAMS += entropy-control
entropy_control_SOURCES = \
	daemon/control-main.c \
	daemon/control-settings.c daemon/control-settings.h \
	daemon/auth.c daemon/auth.h \
	daemon/http-server.c daemon/http-server.h \
	daemon/http-tls.c daemon/http-tls.h \
	daemon/http-api.c daemon/http-api.h \
	daemon/http-auth.c daemon/http-auth.h \
	daemon/api.h daemon/control.h \
	$(CONTROL_BUS_SOURCES) \
	$(CONTROL_OBSERVABILITY_SRC)
entropy_control_CFLAGS = $(AM_CFLAGS) $(SYSTEMD_CFLAGS) $(MHD_CFLAGS) $(GNUTLS_CFLAGS) $(JSONC_CFLAGS) $(SQLITE_CFLAGS)
entropy_control_LDADD = $(CONTROL_CORE_LIBS) $(COMMON_LIBS) $(MHD_LIBS) $(SYSTEMD_LIBS) $(JSONC_LIBS) $(SQLITE_LIBS)

# Integration tests of the daemon shell and the HTTP layer (tests/integration/entropy_test.py).
TESTS += tests/integration/test-control-daemon.py tests/integration/test-http-api.py
dist_check_SCRIPTS += tests/integration/test-control-daemon.py tests/integration/test-http-api.py

# Security (docs/security.md): HTTPS, client certificates, signed worker tokens, refusals audited
# without secrets. Test certificates are made at test time (tests/integration/tls_certs.py).
TESTS += tests/integration/test-tls.py tests/integration/test-signed-tokens.py tests/integration/test-security.py
dist_check_SCRIPTS += tests/integration/test-tls.py tests/integration/test-signed-tokens.py \
	tests/integration/test-security.py
EXTRA_DIST += tests/integration/tls_certs.py tests/integration/signed_token.py

# A libcurl (GnuTLS) client built on common/http-tls-client.h, for test-tls.py.
check_PROGRAMS += tests/integration/https-probe
tests_integration_https_probe_SOURCES = tests/integration/https-probe.c
tests_integration_https_probe_CFLAGS = $(AM_CFLAGS) $(CURL_CFLAGS)
tests_integration_https_probe_LDADD = $(COMMON_LIBS) $(CURL_LIBS)
