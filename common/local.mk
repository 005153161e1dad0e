# common/: code shared by entropy-control, entropy-worker and entropyctl.
noinst_LIBRARIES += libentropy-common.a
libentropy_common_a_SOURCES = \
	common/macro.h \
	common/list.h \
	common/log.c common/log.h \
	common/time-util.c common/time-util.h \
	common/strv.c common/strv.h \
	common/fs-util.c common/fs-util.h \
	common/rlimit-util.c common/rlimit-util.h \
	common/crypto.c common/crypto.h \
	common/json-util.c common/json-util.h \
	common/conf.c common/conf.h \
	common/protocol.c common/protocol.h \
	common/wake-proto.c common/wake-proto.h \
	common/signed-token.c common/signed-token.h \
	common/http-tls-client.c common/http-tls-client.h \
	common/crash-vfs.c common/crash-vfs.h \
	common/sqlite-util.c common/sqlite-util.h \
	common/bus-json.c common/bus-json.h
# http-tls-client.o needs libcurl: only programs that call it (worker, entropyctl) link $(CURL_LIBS);
# bus-json.o needs libsystemd: only the programs that call it (entropy-control, entropyctl).
libentropy_common_a_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS) $(GNUTLS_CFLAGS) $(INIH_CFLAGS) $(SQLITE_CFLAGS) $(CURL_CFLAGS) \
	$(SYSTEMD_CFLAGS)
COMMON_LIBS = libentropy-common.a $(JSONC_LIBS) $(GNUTLS_LIBS) $(INIH_LIBS) -lm

check_PROGRAMS += tests/unit/test-common
TESTS += tests/unit/test-common
tests_unit_test_common_SOURCES = tests/unit/test-common.c tests/tap.h
tests_unit_test_common_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
tests_unit_test_common_LDADD = $(COMMON_LIBS)

check_PROGRAMS += tests/unit/test-conf
TESTS += tests/unit/test-conf
tests_unit_test_conf_SOURCES = tests/unit/test-conf.c tests/tap.h
tests_unit_test_conf_LDADD = $(COMMON_LIBS)

check_PROGRAMS += tests/unit/test-signed-token
TESTS += tests/unit/test-signed-token
tests_unit_test_signed_token_SOURCES = tests/unit/test-signed-token.c tests/tap.h
tests_unit_test_signed_token_LDADD = $(COMMON_LIBS)

check_PROGRAMS += tests/unit/test-http-tls-client
TESTS += tests/unit/test-http-tls-client
tests_unit_test_http_tls_client_SOURCES = tests/unit/test-http-tls-client.c tests/tap.h
tests_unit_test_http_tls_client_CFLAGS = $(AM_CFLAGS) $(CURL_CFLAGS)
tests_unit_test_http_tls_client_LDADD = $(COMMON_LIBS) $(CURL_LIBS)
