# man/: manual pages (mdoc), one per program, config file and API, and the overview entropy(7).
# Checked by tests/system/test-man-lint.sh (mandoc -T lint) and test-man-options.sh (every
# option of every program's --help is documented).
dist_man_MANS += \
	man/entropyctl.1 \
	man/entropy-control.conf.5 \
	man/entropy-worker.conf.5 \
	man/org.entropy.Control1.5 \
	man/entropy.7 \
	man/entropy-control.8 \
	man/entropy-worker.8

dist_check_SCRIPTS += tests/system/test-man-lint.sh tests/system/test-man-options.sh
TESTS += tests/system/test-man-lint.sh tests/system/test-man-options.sh
