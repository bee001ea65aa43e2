// One conversion, as `vdkit convert` and every `vdkit batch` job run it:
// the target is built under a staging directory next to its final name and
// moved into place only when complete, so an interrupted or failed convert
// never leaves a half-written image under the final name (nor touches an
// image it would replace). Only a regular file is ever replaced: a target
// that is a block or character device, a fifo, a socket or a directory (or
// a symlink to one) is refused by name, whatever `overwrite` says; -n
// (existing_target) writes into such a device, or into an existing file or
// image, in place.
//
// The staging directory holds a marker file (kStagingMarker) that the
// convert keeps locked (an OFD lock) while it runs: a directory whose marker
// nobody holds was left by a convert that was killed, and `vdkit cleanup`
// (find_staging_dirs / remove_stale_staging) reports and removes those.
#ifndef VDKIT_TOOLS_CONVERT_HPP
#define VDKIT_TOOLS_CONVERT_HPP

#include "cli.hpp"

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vdkit::cli {

class Command; // commands.hpp

struct ConvertSpec {
    std::string source, source_format; // source_format empty: probe
    bool source_force_share = false;    // -U: read the source unlocked (OpenOptions::force_share)
    std::string raw_advice = "-f raw";  // how the user names format raw for the source (batch: source_format)
    std::string force_share_advice;     // how the user reads a held source anyway (batch: source_force_share); "": -U
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
    // -n (qemu-img convert -n): write into the existing `target` — a block
    // device, a preallocated file, an existing image of target_format —
    // instead of creating it: no staging, the data goes straight into it.
    // It must be at least the source's virtual size (a larger one keeps its
    // excess untouched). Options that only apply when creating (options,
    // preallocate, backing, keep_uuid, overwrite) are refused with it.
    bool existing_target = false;
    // --target-is-zero (needs existing_target): the target already reads as
    // zero, so the source's zero ranges are not written.
    bool target_is_zero = false;
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

// "a block device", "a fifo (named pipe)", ... for a stat(2) st_mode.
std::string file_type_name(unsigned mode);

// For verifying a -n target: the first offset below src's size where dst
// reads differently (a larger dst's excess is not compared), or nullopt.
// Throws CliError on a read error or a cancel signal.
std::optional<uint64_t> target_difference(const Disk &src, const Disk &dst, const std::string &target);

// The file vdkit writes (and keeps locked while converting) in each staging
// directory; only directories holding it are ever removed by cleanup.
inline constexpr const char *kStagingMarker = ".vdkit-staging";

struct StagingDir {
    // unknown: its file system cannot lock files, so whether a convert
    // still runs there cannot be told: left alone.
    // mismatched: its marker names another target (a copied marker);
    // other_host: made on another host, whose locks may not reach here.
    // Both left alone, like foreign.
    enum class State { stale, in_use, foreign, removed, unknown, mismatched, other_host };
    std::filesystem::path path;
    State state = State::foreign; // foreign: no vdkit marker, left alone
    long pid = 0;                  // of the convert that made it (from the marker)
    std::string target, started;   // from the marker
    std::string host;              // from the marker
    uint64_t bytes = 0;            // allocated on disk by what it holds
};
const char *to_string(StagingDir::State state);

// The staging directories (".*.vdkit-partial*") directly in `dir`, and
// whether a running convert holds each. Throws CliError when `dir` cannot
// be read.
std::vector<StagingDir> find_staging_dirs(const std::filesystem::path &dir);
// Remove `d` if it is still stale (its marker is vdkit's, names the target
// this directory stages, was written on this host, and nobody holds its
// lock; the lock is held while removing). Symlinks in it are removed, not
// followed; a mount point in it stops the removal (CliError). Returns the state it was found
// in (removed on success); throws CliError when removing fails.
StagingDir::State remove_stale_staging(StagingDir &d);
// On stderr: a note naming the stale staging directories in `dir` and how
// to remove them (nothing when there are none). The directories in `except`
// (the staging directories of the targets about to be converted, which the
// converts remove themselves) are not counted.
void note_stale_staging(const std::filesystem::path &dir, const std::vector<std::filesystem::path> &except = {});

// The `cleanup` command (registered by make_commands).
void add_cleanup_command(std::vector<std::unique_ptr<Command>> &commands);

} // namespace vdkit::cli

#endif
