// Target batch_file: `vdkit batch` job files (config/batch.md;
// tools/vdkit/batch_file.cpp), parsed and validated against the loaded
// plugins as the CLI does before any job runs. The input is written to a
// job file in a private directory (the parser reads a path and resolves
// job paths against its directory).
#include "batch_file.hpp"
#include "fuzz_support.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

namespace {
std::string job_path() {
    static const std::string path = [] {
        char dir[] = "/tmp/vdkit-fuzz-batch-XXXXXX";
        if (!mkdtemp(dir)) abort();
        return std::string(dir) + "/jobs.yaml";
    }();
    return path;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string path = job_path();
    FILE *f = std::fopen(path.c_str(), "wb");
    if (!f) abort();
    if (size && std::fwrite(data, 1, size, f) != size) abort();
    std::fclose(f);
    std::vector<std::string> problems;
    (void)vdkit::cli::load_batch_file(vdkit::fuzz::library(), path, problems);
    return 0;
}
