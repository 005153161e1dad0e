# tests/fuzz/: libFuzzer targets for hostile input (docs/security.md). Each target is built twice:
#   tests/fuzz/replay-NAME   always, a plain main() (fuzz-main.c) replaying tests/fuzz/corpus/NAME/
#                            under make check, so every corpus file is a regression test in gcc builds;
#   tests/fuzz/fuzz-NAME     with CC=clang --enable-fuzzers, the libFuzzer binary (scripts/fuzz.sh,
#                            make fuzz-short).
FUZZ_NAMES = http-api reconnect conf signed-token wake

FUZZ_CFLAGS_COMMON = $(AM_CFLAGS) -I$(top_srcdir)/tests/fuzz $(SYSTEMD_CFLAGS) $(MHD_CFLAGS) $(GNUTLS_CFLAGS) \
	$(JSONC_CFLAGS) $(SQLITE_CFLAGS)
FUZZ_API_SOURCES = daemon/http-server.c daemon/http-tls.c daemon/http-auth.c daemon/http-api.c daemon/auth.c \
	daemon/control-settings.c $(CONTROL_OBSERVABILITY_SRC)
FUZZ_API_LIBS = $(CONTROL_CORE_LIBS) $(COMMON_LIBS) $(MHD_LIBS) $(SYSTEMD_LIBS) $(JSONC_LIBS) $(SQLITE_LIBS)
FUZZ_COMMON_SOURCES = tests/fuzz/fuzz.h tests/fuzz/fuzz-util.c


check_PROGRAMS += tests/fuzz/replay-http-api tests/fuzz/replay-reconnect tests/fuzz/replay-conf \
	tests/fuzz/replay-signed-token tests/fuzz/replay-wake
TESTS += tests/fuzz/replay-http-api tests/fuzz/replay-reconnect tests/fuzz/replay-conf \
	tests/fuzz/replay-signed-token tests/fuzz/replay-wake
EXTRA_DIST += tests/fuzz/corpus

tests_fuzz_replay_http_api_SOURCES = tests/fuzz/fuzz-http-api.c tests/fuzz/fuzz-main.c $(FUZZ_COMMON_SOURCES) $(FUZZ_API_SOURCES)
tests_fuzz_replay_http_api_CFLAGS = $(FUZZ_CFLAGS_COMMON) -DFUZZ_NAME=\"http-api\"
tests_fuzz_replay_http_api_LDADD = $(FUZZ_API_LIBS)
tests_fuzz_replay_reconnect_SOURCES = tests/fuzz/fuzz-reconnect.c tests/fuzz/fuzz-main.c $(FUZZ_COMMON_SOURCES) $(FUZZ_API_SOURCES)
tests_fuzz_replay_reconnect_CFLAGS = $(FUZZ_CFLAGS_COMMON) -DFUZZ_NAME=\"reconnect\"
tests_fuzz_replay_reconnect_LDADD = $(FUZZ_API_LIBS)
tests_fuzz_replay_conf_SOURCES = tests/fuzz/fuzz-conf.c tests/fuzz/fuzz-main.c $(FUZZ_COMMON_SOURCES) daemon/control-settings.c
tests_fuzz_replay_conf_CFLAGS = $(FUZZ_CFLAGS_COMMON) -DFUZZ_NAME=\"conf\"
tests_fuzz_replay_conf_LDADD = $(CONTROL_CORE_LIBS) $(COMMON_LIBS)
tests_fuzz_replay_signed_token_SOURCES = tests/fuzz/fuzz-signed-token.c tests/fuzz/fuzz-main.c $(FUZZ_COMMON_SOURCES)
tests_fuzz_replay_signed_token_CFLAGS = $(FUZZ_CFLAGS_COMMON) -DFUZZ_NAME=\"signed-token\"
tests_fuzz_replay_signed_token_LDADD = $(COMMON_LIBS)
tests_fuzz_replay_wake_SOURCES = tests/fuzz/fuzz-wake.c tests/fuzz/fuzz-main.c $(FUZZ_COMMON_SOURCES)
tests_fuzz_replay_wake_CFLAGS = $(FUZZ_CFLAGS_COMMON) -DFUZZ_NAME=\"wake\"
tests_fuzz_replay_wake_LDADD = $(COMMON_LIBS)

if FUZZERS
noinst_PROGRAMS += tests/fuzz/fuzz-http-api tests/fuzz/fuzz-reconnect tests/fuzz/fuzz-conf \
	tests/fuzz/fuzz-signed-token tests/fuzz/fuzz-wake
FUZZ_LINK_FLAGS = -fsanitize=fuzzer
tests_fuzz_fuzz_http_api_SOURCES = tests/fuzz/fuzz-http-api.c $(FUZZ_COMMON_SOURCES) $(FUZZ_API_SOURCES)
tests_fuzz_fuzz_http_api_CFLAGS = $(FUZZ_CFLAGS_COMMON)
tests_fuzz_fuzz_http_api_LDFLAGS = $(FUZZ_LINK_FLAGS)
tests_fuzz_fuzz_http_api_LDADD = $(FUZZ_API_LIBS)
tests_fuzz_fuzz_reconnect_SOURCES = tests/fuzz/fuzz-reconnect.c $(FUZZ_COMMON_SOURCES) $(FUZZ_API_SOURCES)
tests_fuzz_fuzz_reconnect_CFLAGS = $(FUZZ_CFLAGS_COMMON)
tests_fuzz_fuzz_reconnect_LDFLAGS = $(FUZZ_LINK_FLAGS)
tests_fuzz_fuzz_reconnect_LDADD = $(FUZZ_API_LIBS)
tests_fuzz_fuzz_conf_SOURCES = tests/fuzz/fuzz-conf.c $(FUZZ_COMMON_SOURCES) daemon/control-settings.c
tests_fuzz_fuzz_conf_CFLAGS = $(FUZZ_CFLAGS_COMMON)
tests_fuzz_fuzz_conf_LDFLAGS = $(FUZZ_LINK_FLAGS)
tests_fuzz_fuzz_conf_LDADD = $(CONTROL_CORE_LIBS) $(COMMON_LIBS)
tests_fuzz_fuzz_signed_token_SOURCES = tests/fuzz/fuzz-signed-token.c $(FUZZ_COMMON_SOURCES)
tests_fuzz_fuzz_signed_token_CFLAGS = $(FUZZ_CFLAGS_COMMON)
tests_fuzz_fuzz_signed_token_LDFLAGS = $(FUZZ_LINK_FLAGS)
tests_fuzz_fuzz_signed_token_LDADD = $(COMMON_LIBS)
tests_fuzz_fuzz_wake_SOURCES = tests/fuzz/fuzz-wake.c $(FUZZ_COMMON_SOURCES)
tests_fuzz_fuzz_wake_CFLAGS = $(FUZZ_CFLAGS_COMMON)
tests_fuzz_fuzz_wake_LDFLAGS = $(FUZZ_LINK_FLAGS)
tests_fuzz_fuzz_wake_LDADD = $(COMMON_LIBS)
endif

# A bounded fuzz run of every target from its corpus (new finds go to a scratch directory, not
# into the repository): FUZZ_SECONDS per target, 25 s by default, so about two minutes in all.
FUZZ_SECONDS ?= 25
fuzz-short:
	$(AM_V_at)FUZZ_SECONDS=$(FUZZ_SECONDS) $(SHELL) $(top_srcdir)/scripts/fuzz.sh --build-dir "$(abs_top_builddir)"
.PHONY: fuzz-short
