# ctl/: entropyctl, the administration CLI (D-Bus to the local control plane, HTTP with --url).
bin_PROGRAMS += entropyctl
entropyctl_SOURCES = \
	ctl/entropyctl.c \
	ctl/ctl.h \
	ctl/ctl-bus.c \
	ctl/ctl-http.c \
	ctl/ctl-backup.c ctl/ctl-backup.h \
	ctl/ctl-output.c ctl/ctl-output.h \
	ctl/ctl-replay.c ctl/ctl-replay.h \
	ctl/ctl-verbs.c
entropyctl_CFLAGS = $(AM_CFLAGS) $(SYSTEMD_CFLAGS) $(CURL_CFLAGS) $(JSONC_CFLAGS) $(SQLITE_CFLAGS)
entropyctl_LDADD = $(COMMON_LIBS) $(SYSTEMD_LIBS) $(CURL_LIBS) $(SQLITE_LIBS)

bashcompletion_DATA += ctl/bash-completion/entropyctl
EXTRA_DIST += ctl/bash-completion/entropyctl

# entropyctl against a real control plane over D-Bus (private dbus-daemon) and HTTP.
TESTS += tests/integration/test-entropyctl.py
dist_check_SCRIPTS += tests/integration/test-entropyctl.py
