// One conversion, as `vdkit convert` and every `vdkit batch` job run it:
// the target is built under a staging directory next to its final name and
// moved into place only when complete, so an interrupted or failed convert
// never leaves a half-written image under the final name (nor touches an
// image it would replace).
#ifndef VDKIT_TOOLS_CONVERT_HPP
#define VDKIT_TOOLS_CONVERT_HPP

#include "cli.hpp"

#include <filesystem>
#include <string>

namespace vdkit::cli {

struct ConvertSpec {
    std::string source, source_format; // source_format empty: probe
    std::string raw_advice = "-f raw";  // how the user names format raw for the source (batch: source_format)
    std::string target, target_format;
    Options target_options;
    bool overwrite = false;
    bool preallocate = false;
    unsigned threads = 0;     // -m; 0: one per processor, 2..4
    bool out_of_order = false; // -W
    // Before the target gets its final name, reopen it and compare it with
    // the source (Library::compare); a difference fails the convert.
    bool verify = false;
    // -B: the target is a differencing image over `backing` (relative to the
    // target's directory, as qemu-img convert -B). When the backing image is
    // a UUID-kept copy of one of the source's images (Library::common_image),
    // only what the source's images above it hold is copied; otherwise the
    // source's data, and zeros where the backing shows data.
    std::string backing, backing_format;
    bool keep_uuid = false; // the target gets the source top's UUID
    // File-level filter stacks (OpenOptions/CreateOptions::filters): the
    // source chain is read through source_filters; the target (and a -B
    // backing image) is stored through target_filters.
    std::vector<FilterSpec> source_filters, target_filters;
    // Read the source through this cache image (Disk::attach_cache); empty: none.
    std::string source_cache, cache_format = "vdi";
};

struct ConvertResult {
    uint64_t virtual_size = 0;
    uint64_t data_bytes = 0; // source data the pipeline read
};

// Throws CliError (naming the source or target) on failure; the final name is
// then untouched. progress may be empty.
ConvertResult convert_image(Library &lib, const ConvertSpec &spec, const ProgressFunction &progress);

// The staging directory convert_image uses for `target` (".NAME.vdkit-partial"
// beside it); a leftover one is removed by the next convert to that target.
std::filesystem::path staging_dir_for(const std::filesystem::path &target);

} // namespace vdkit::cli

#endif
