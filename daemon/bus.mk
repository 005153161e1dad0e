# daemon/ bus: the D-Bus admin interface of entropy-control (org.entropy.Control1).
# daemon/local.mk adds $(CONTROL_BUS_SOURCES) to entropy-control's sources (they need
# $(SYSTEMD_CFLAGS) $(JSONC_CFLAGS) $(SQLITE_CFLAGS) like the rest of the daemon).
CONTROL_BUS_SOURCES = \
	daemon/bus.c daemon/bus.h \
	daemon/bus-internal.h \
	daemon/bus-auth.c \
	daemon/bus-manager.c \
	daemon/bus-objects.c \
	daemon/bus-util.c

# The introspection data of every interface the daemon exports; tests/integration/test-dbus.py
# compares it with what the running daemon answers to Introspect.
dbusinterface_DATA += dbus/org.entropy.Control1.xml
EXTRA_DIST += dbus/org.entropy.Control1.xml tests/integration/dbus-test.conf \
	tests/integration/test-dbus-helpers.py tests/integration/test-dbus-fake-polkit.py

# The D-Bus API on a private dbus-daemon (tests/integration/dbus-test.conf); no root needed, the
# tests that call as another uid are skipped without it.
TESTS += tests/integration/test-dbus.py
dist_check_SCRIPTS += tests/integration/test-dbus.py
