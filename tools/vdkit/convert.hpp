// One conversion, as `vdkit convert` and every `vdkit batch` job run it:
// Library::convert (vdkit.hpp) does the whole job — staging, copy, verify,
// publish without replacing, cleanup on failure or cancel; this adds what
// the CLI says around it (its flag names in advice, the signal that
// cancelled it, exit statuses) and the `cleanup` command that lists and
// removes the staging directories interrupted converts left.
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
    std::string source, target;
    ConvertOptions options;            // every setting of the convert (vdkit.hpp)
    std::string raw_advice = "-f raw"; // how the user names format raw for the source (batch: source_format)
    std::string force_share_advice;    // how the user reads a held source anyway (batch: source_force_share); "": -U
};

// Library::convert with spec.options and `progress` (may be empty), which
// also stops the convert on a cancel signal. Throws CliError (naming the
// source or target) on failure; the final name is then untouched. Options
// that cannot go together, and a target that cannot be one
// (Library::check_convert), are usage errors (kExitUsage); every other
// failure, an image's content included, is kExitError; a signal is
// "interrupted by SIG...".
ConvertResult convert_image(Library &lib, const ConvertSpec &spec, const ProgressFunction &progress);

// On stderr: a note naming the stale staging directories in `dir` and how
// to remove them (nothing when there are none). The directories in `except`
// (the staging directories of the targets about to be converted, which the
// converts remove themselves) are not counted.
void note_stale_staging(const std::filesystem::path &dir, const std::vector<std::filesystem::path> &except = {});

// The `cleanup` command (registered by make_commands).
void add_cleanup_command(std::vector<std::unique_ptr<Command>> &commands);

} // namespace vdkit::cli

#endif
