// Staging directories for Library::convert (core/src/disk/convert.cpp).
//
// A new target is built under ".NAME.vdkit-partial" beside its final name
// and moved into place only when complete, so an interrupted or failed
// convert never leaves a half-written image under the final name (nor
// touches an image it would replace). The directory holds a marker file
// (kStagingMarker) that the convert keeps locked (an OFD lock) while it
// runs: a directory whose marker nobody holds was left by a convert that
// was killed; Library::staging_dirs reports those and
// Library::remove_stale_staging removes them. Local files only (POSIX
// directories, locks and /proc).
#ifndef VDKIT_CORE_DISK_STAGING_HPP
#define VDKIT_CORE_DISK_STAGING_HPP

#include "vdkit/vdkit.hpp"

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

namespace vdkit::staging {

// The file vdkit writes (and keeps locked while converting) in each staging
// directory; only directories holding it are ever removed by cleanup.
inline constexpr const char *kMarker = ".vdkit-staging";

// Files (regular files, block devices) by st_dev/st_ino, with the path they
// were opened as.
using FileId = std::pair<dev_t, ino_t>;
using OpenFiles = std::map<FileId, std::string>;

// Remove the directory `path` with what it holds: never following a symlink
// (removed, not what it names) and never crossing into another mount
// (PERMISSION naming it, before anything is removed).
Status remove_tree(const std::filesystem::path &path);

// The staging directory of one convert; removed with whatever is in it
// unless published. It appears under its name with its marker already
// written and locked (made under a temporary name, then renamed without
// replacing), so a visible staging directory without a held marker is never
// one a running convert uses.
class Dir {
public:
    // A leftover staging directory of `target` is removed first when it is
    // stale (vdkit's, for this target, made on this host, nobody holding its
    // marker); anything else under the name is refused by name.
    static Result<std::unique_ptr<Dir>> make(const std::filesystem::path &target);
    ~Dir(); // removes the directory (a failure is logged through `log`)
    Dir(const Dir &) = delete;
    Dir &operator=(const Dir &) = delete;

    // Where the new image's main file is built.
    std::filesystem::path main() const { return dir_ / target_.filename(); }

    // Move the finished image's files beside the final name, the main file
    // (a VMDK's descriptor) last. Without `overwrite` each is moved with
    // `rename_noreplace` (the transport's no-replace rename): a name that
    // exists — or appears meanwhile — fails with EXISTS and nothing more
    // moves. With `overwrite` each is renamed over the file of that name
    // (atomically), so at every moment the old main file or the new one is
    // complete; `in_use` is asked first about each file replaced (OK: not
    // held by another process), and a replaced file's mode (and, as root,
    // owner) carries over. Only regular files (or symlinks) are ever
    // replaced; a name that is a file of the source's chain stops it.
    Status publish(bool overwrite, const OpenFiles &source_files,
                   const std::function<Status(const std::filesystem::path &)> &in_use,
                   const std::function<Status(const std::string &, const std::string &)> &rename_noreplace);

private:
    Dir(std::filesystem::path target, std::filesystem::path dir, int marker_fd)
        : target_(std::move(target)), dir_(std::move(dir)), marker_fd_(marker_fd) {}
    std::filesystem::path target_, dir_;
    int marker_fd_ = -1;
};

// Whether a running convert made the staging directory `d.path`, from its
// marker (fills in what the marker says).
void inspect(StagingDir &d);

} // namespace vdkit::staging

#endif
