# dbus/: the control plane's system bus policy, bus activation file and polkit actions
# (packaging; the introspection XML org.entropy.Control1.xml belongs to the D-Bus API).
dbuspolicy_DATA += dbus/org.entropy.Control1.conf
polkitaction_DATA += dbus/org.entropy.Control1.policy
dbussystemservice_DATA += dbus/org.entropy.Control1.service
CLEANFILES += dbus/org.entropy.Control1.service
EXTRA_DIST += dbus/org.entropy.Control1.conf dbus/org.entropy.Control1.policy \
	dbus/org.entropy.Control1.service.in

dbus/org.entropy.Control1.service: $(srcdir)/dbus/org.entropy.Control1.service.in Makefile
	$(AM_V_GEN)$(MKDIR_P) $(@D) && $(units_sed) < $(srcdir)/$@.in > $@.tmp && mv -f $@.tmp $@

dist_check_SCRIPTS += tests/system/test-dbus-files.sh
TESTS += tests/system/test-dbus-files.sh
