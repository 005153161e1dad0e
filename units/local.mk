# units/: systemd units, sysusers.d and tmpfiles.d files; the journal catalog's install rule;
# the system tests (tests/system/) that check all of them and the packages.
#
# Unit files with program paths are built from .in templates (the iwd pattern), so they name
# the programs where this build installs them.
units_in_files = \
	units/entropy-control.service.in \
	units/entropy-worker.service.in \
	units/entropy-worker@.service.in
units_built = \
	units/entropy-control.service \
	units/entropy-worker.service \
	units/entropy-worker@.service
units_static = \
	units/entropy-control.socket \
	units/entropy-worker.socket

systemdsystemunit_DATA += $(units_built) $(units_static)
CLEANFILES += $(units_built)
EXTRA_DIST += $(units_in_files) $(units_static)

units_sed = $(SED) \
	-e 's|@bindir[@]|$(bindir)|g' \
	-e 's|@sbindir[@]|$(sbindir)|g' \
	-e 's|@libexecdir[@]|$(libexecdir)|g' \
	-e 's|@sysconfdir[@]|$(sysconfdir)|g' \
	-e 's|@localstatedir[@]|$(localstatedir)|g' \
	-e 's|@PACKAGE_VERSION[@]|$(PACKAGE_VERSION)|g'

$(units_built): Makefile
	$(AM_V_GEN)$(MKDIR_P) $(@D) && $(units_sed) < $(srcdir)/$@.in > $@.tmp && mv -f $@.tmp $@
units/entropy-control.service: $(srcdir)/units/entropy-control.service.in
units/entropy-worker.service: $(srcdir)/units/entropy-worker.service.in
units/entropy-worker@.service: $(srcdir)/units/entropy-worker@.service.in

# sysusers.d and tmpfiles.d files are installed under the package's name, as those tools expect
# (entropy.conf, entropy-worker.conf).
EXTRA_DIST += units/entropy.sysusers units/entropy-worker.sysusers \
	units/entropy.tmpfiles units/entropy-worker.tmpfiles
install-data-local: install-units-data-local
uninstall-local: uninstall-units-data-local
install-units-data-local:
	$(MKDIR_P) '$(DESTDIR)$(sysusersdir)' '$(DESTDIR)$(tmpfilesdir)'
	$(INSTALL_DATA) $(srcdir)/units/entropy.sysusers '$(DESTDIR)$(sysusersdir)/entropy.conf'
	$(INSTALL_DATA) $(srcdir)/units/entropy-worker.sysusers '$(DESTDIR)$(sysusersdir)/entropy-worker.conf'
	$(INSTALL_DATA) $(srcdir)/units/entropy.tmpfiles '$(DESTDIR)$(tmpfilesdir)/entropy.conf'
	$(INSTALL_DATA) $(srcdir)/units/entropy-worker.tmpfiles '$(DESTDIR)$(tmpfilesdir)/entropy-worker.conf'
uninstall-units-data-local:
	rm -f '$(DESTDIR)$(sysusersdir)/entropy.conf' '$(DESTDIR)$(sysusersdir)/entropy-worker.conf' \
	      '$(DESTDIR)$(tmpfilesdir)/entropy.conf' '$(DESTDIR)$(tmpfilesdir)/entropy-worker.conf'

# distcheck installs into a private prefix; systemd's pkg-config file puts units under
# ${rootprefix} (/lib/systemd/system on Debian), which does not follow --prefix, so point it
# inside the distcheck prefix.
AM_DISTCHECK_CONFIGURE_FLAGS = --with-systemdsystemunitdir='$$dc_install_base/lib/systemd/system'

# --- tests/system: unit and catalog checks run by `make check` (unprivileged, no container).
# The catalog itself (catalog/entropy.catalog) and its install rule belong to daemon/core.mk.
dist_check_SCRIPTS += tests/system/test-units.sh tests/system/test-catalog.sh
TESTS += tests/system/test-units.sh tests/system/test-catalog.sh

# --- Packages. `make debs`: Debian packages into packages/deb/ of the build tree (where
# check-system looks for them); `make rpms`: RPMs into packages/rpm/. Both from `make dist`.
EXTRA_DIST += rpm/entropy.spec
debs:
	ENTROPY_BUILDDIR='$(abs_top_builddir)' $(SHELL) $(abs_top_srcdir)/scripts/build-deb.sh '$(abs_top_builddir)/packages/deb'
rpms:
	ENTROPY_BUILDDIR='$(abs_top_builddir)' $(SHELL) $(abs_top_srcdir)/scripts/build-rpm.sh '$(abs_top_builddir)/packages/rpm'
clean-local: clean-packages-local
clean-packages-local:
	rm -rf packages

# --- tests/system: the container suite, as root: `make check-system` (see tests/system/README).
# It installs the packages from packages/deb/ and packages/rpm/, building them first when there
# are none (ENTROPY_DEB_DIR=DIR and ENTROPY_RPM_DIR=DIR use others; `make debs` and `make rpms`
# rebuild). Its skip (exit 77, no root) passes only without root: as root nothing may be skipped.
EXTRA_DIST += tests/system/README tests/system/lib.sh tests/system/run-system-tests.sh \
	tests/system/steps.sh tests/system/steps-rpm.sh
check-system: all
	@if [ -z "$$ENTROPY_DEB_DIR" ] && ! ls packages/deb/entropy-control_*.deb >/dev/null 2>&1; then \
		$(MAKE) $(AM_MAKEFLAGS) debs || exit 1; fi
	@if [ -z "$$ENTROPY_RPM_DIR" ] && ! ls packages/rpm/entropy-control-[0-9]*.rpm >/dev/null 2>&1; then \
		$(MAKE) $(AM_MAKEFLAGS) rpms || exit 1; fi
	ENTROPY_BUILDDIR='$(abs_top_builddir)' ENTROPY_SRCDIR='$(abs_top_srcdir)' \
		bash $(srcdir)/tests/system/run-system-tests.sh; rc=$$?; \
	if [ $$rc -eq 77 ] && [ "$$(id -u)" -ne 0 ]; then rc=0; fi; exit $$rc
.PHONY: check-system debs rpms clean-packages-local install-units-data-local uninstall-units-data-local
