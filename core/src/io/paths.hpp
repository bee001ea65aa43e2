// The path policy for paths named inside images (docs/design/paths.md):
// where an image's extents and parents may lie, how a parent found outside
// its child's directory is verified, and how a child names its parent.
//
// Free functions with no state: safe to call from any thread.
#ifndef VDKIT_CORE_IO_PATHS_HPP
#define VDKIT_CORE_IO_PATHS_HPP

#include "vdkit/plugin.h"
#include "vdkit/vdkit.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace vdkit {

// Unless allow_unsafe:
//  * never a URL, nothing under /proc or /sys, and an existing target
//    must be a regular file (no device, fifo, socket or directory; a
//    symbolic link is judged by what it leads to);
//  * an extent (or any other file of the image) must lie in the image's
//    directory or below it;
//  * a parent may also lie in the directory kParentLevels up or at most
//    kParentLevels directories below it (a VirtualBox base above
//    Snapshots/, qemu's "-b ../base", "../images/base"): then it is
//    `beyond` and usable only when verify_parent() accepts the image
//    found there.
// Refusals are VDKIT_E_PERMISSION naming the image, the path and the rule.
enum class PathUse { extent, parent };
inline constexpr int kParentLevels = 1;
struct NamedPath {
    std::string location;  // resolved (lexically normal)
    bool beyond = false;   // a parent outside the image's directory
    bool via_link = false; // beyond only through a symbolic link
};
Result<NamedPath> resolve_named(const std::string &image_location, std::string_view path, PathUse use,
                                bool allow_unsafe);
// resolve_named(..., PathUse::extent, ...).location.
Result<std::string> resolve_sibling(const std::string &image_location, std::string_view path, bool allow_unsafe);
// A parent `where` lies beyond its child's directory: the image found
// there must be the one the child records — its UUID equal to the
// recorded parent UUID, or (only when one side has no UUID) its
// modification id equal to the recorded one within one format. A file
// no format recognises (read as raw) has neither and is refused.
// OK when `where` is not beyond.
Status verify_parent(const std::string &child_location, std::string_view hint, const NamedPath &where,
                     std::string_view child_format, const uint8_t recorded_uuid[16],
                     const uint8_t recorded_modification[16], std::string_view parent_format,
                     const vdkit_image_info &parent);
// Before a child at child_location records `hint` for `parent` (create,
// rebase, attach, rename): the link must be one that opening the child
// will accept — resolve_named(PathUse::parent) and verify_parent with
// the ids the child records (the parent's own).
Status check_link(const std::string &child_location, std::string_view hint, std::string_view child_format,
                  std::string_view parent_format, const vdkit_image_info &parent, bool allow_unsafe);

// How a child at `child` names a parent at `parent`: relative to the
// child's directory for files, the parent's location for URLs.
std::string relative_hint(const std::string &child, const std::string &parent);

} // namespace vdkit

#endif
