# tests/: (rules added as this part is built)

# The integration harness and the helpers the tests import or read, so that `make distcheck` runs
# the same suite from the tarball. (Listed one by one: automake copies a listed directory from the
# build tree when one exists there, objects and all.)
EXTRA_DIST += tests/integration/entropy_test.py tests/integration/worker_harness.py \
	tests/integration/tls_certs.py tests/integration/signed_token.py \
	tests/integration/test-dbus-helpers.py tests/integration/test-dbus-fake-polkit.py \
	tests/integration/dbus-test.conf tests/browser/.gitignore
