// Shared pieces of the fuzz targets (tests/fuzz/README in docs/reliability.md).
//
// Every target is a libFuzzer entry point, LLVMFuzzerTestOneInput, built two
// ways: with -fsanitize=fuzzer under clang (the `fuzz` preset) and with
// replay_main.cpp under any compiler, which runs saved inputs (the
// regressions/ directory) through the same code in the normal test suite.
//
// Image targets see their input as one or more in-memory files served by the
// `fuzzmem` transport plugin (mem_transport.cpp):
//   <main file bytes>[\n@@vdkit-fuzz-file NAME\n<bytes>]...
// so multi-file images (a descriptor and its extents, a diff and its parent)
// can be fuzzed together; make_seeds.py writes seeds in this form.
#ifndef VDKIT_TESTS_FUZZ_SUPPORT_HPP
#define VDKIT_TESTS_FUZZ_SUPPORT_HPP

#include "vdkit/vdkit.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace vdkit::fuzz {

constexpr std::string_view kFileSeparator = "\n@@vdkit-fuzz-file ";

// Split data into in-memory files (main file named main_name) and make them
// what fuzzmem:// serves until the next call. Not thread-safe (libFuzzer
// runs one input at a time).
void set_files(const uint8_t *data, size_t size, const std::string &main_name);

// The library the image targets share: the built plugins plus fuzzmem, no
// environment or install-dir search, diagnostics discarded. Created once.
const Library &library();

// Open location as an image (format empty: probe), then do what a user
// would: read the start, walk the allocation map (bounded), read a few
// data runs, check the metadata, and (when the check finds errors) repair a
// private copy and read again. Every failure must be a Status, never a
// crash; the function returns nothing because any outcome but a crash is
// acceptable for untrusted bytes.
void exercise_image(const std::string &location, const std::string &format);

} // namespace vdkit::fuzz

#endif
