#!/usr/bin/env bash
# The installed conformance runner, as a plugin author uses it: install vdkit
# into a fresh prefix and run `vdkit-plugin-test PLUGIN.so` from there. It
# passes the SDK example (toysparse), and fails — naming why — a plugin that
# breaks the format contract, a corrupt file, a plugin for another ABI, and
# a run that names nothing to test.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
prefix="$work/prefix"
cmake --install "$VDKIT_BUILD_DIR" --prefix "$prefix" > "$work/install.log" || { bad "cmake --install failed"; finish; }
runner="$prefix/bin/vdkit-plugin-test"
bad_dir="$VDKIT_BUILD_DIR/tests/bad-plugins"
[ -x "$runner" ] && ok || bad "vdkit-plugin-test is not installed in $prefix/bin"

# The example plugin conforms: every test case runs on it and passes.
expect_exit 0 "toysparse passes" env -u VDKIT_PLUGIN_PATH "$runner" "$VDKIT_TEST_EXTRA_PLUGIN_DIR/toysparse.so"
says "it tests the plugin it was given" "testing format plugin 'toysparse' from $VDKIT_TEST_EXTRA_PLUGIN_DIR/toysparse.so"
says "both test cases ran" "All tests passed"
grep -q "testing format plugin 'raw'" out && bad "the installed raw plugin was tested too" || ok
# Catch2 options after --: list the test cases.
expect_exit 0 "catch2 options pass through" "$runner" "$VDKIT_TEST_EXTRA_PLUGIN_DIR/toysparse.so" -- --list-tests
says "the round-trip case is listed" "every format plugin round-trips data"

# A format that accepts any file as an image breaks the contract.
expect_exit 1 "a non-conforming plugin fails" "$runner" "$bad_dir/throwing_read.so"
says "the failing check is reported" "format throwingread"

# Corrupt files and other ABIs fail with the loader's own words, naming the file.
head -c 300 "$VDKIT_TEST_EXTRA_PLUGIN_DIR/toysparse.so" > "$work/cut.so"
expect_exit 1 "a truncated plugin fails" "$runner" "$work/cut.so"
says "the loader's reason" "$work/cut.so: cannot load plugin library: "
grep -q "Bad file descriptor" out && bad "the message is Boost's, not the loader's" || ok
random_bytes 5000 > "$work/garbage.so"
expect_exit 1 "a garbage plugin fails" "$runner" "$work/garbage.so"
says "the loader's reason" "invalid ELF header"
expect_exit 1 "another ABI major fails" "$runner" "$bad_dir/wrong_major.so"
says "both versions named" "this host speaks 2."
expect_exit 1 "a missing file fails" "$runner" "$work/nothing.so"
says "named" "$work/nothing.so: no such file"

# Nothing to test is a usage error, never a pass.
expect_exit 2 "no arguments" "$runner"
expect_exit 2 "a library with no format plugin" "$runner" "$prefix/lib/vdkit/plugins/vdkit_transport_file.so"
says "why" "provide no format plugin"
finish
