// Image targets: the fuzzed bytes opened as an image through the fuzzmem
// transport and used as a user would (fuzz_support.cpp exercise_image).
// One source, several targets (tests/fuzz/CMakeLists.txt):
//   FUZZ_FORMAT    the format to open with ("" = probe, the whole-disk target)
//   FUZZ_MAIN_NAME the main file's name (its extension feeds the probe)
// Their seeds differ: vmdk_image gets every VMDK subformat (sparse header,
// grain directory and tables, stream markers and footer, COWD, seSparse,
// descriptors with extents), vdi_image VDI dynamic/fixed/diff, disk all.
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vdkit::fuzz::set_files(data, size, FUZZ_MAIN_NAME);
    vdkit::fuzz::exercise_image(std::string("fuzzmem://") + FUZZ_MAIN_NAME, FUZZ_FORMAT);
    return 0;
}
