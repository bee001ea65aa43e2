// The FUSE view of a disk or of one of its volumes (fuse.cpp): one file
// holding the bytes, served by libfuse3 in the calling thread until the
// mount is unmounted. Used by `vdkit fuse` and by `vdkit mount`'s daemon.
#ifndef VDKIT_TOOLS_FUSE_HPP
#define VDKIT_TOOLS_FUSE_HPP

#include "vdkit/volumes.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace vdkit::cli {

struct FuseExport {
    std::unique_ptr<Disk> disk;
    std::optional<Volume> volume; // serve only this volume's bytes (its extents); none: the whole disk
    std::string mountpoint;       // a directory (the file appears as `name` in it) or a regular file it covers
    std::string name;             // "" when the mountpoint is a regular file
    std::string fsname;           // shown in /proc/mounts ("vdkit:IMAGE")
    bool writable = false;
    std::function<void()> on_mounted; // called once, from FUSE's init, when the mount works
};

// Serve until unmounted (or a signal); the disk is flushed and closed
// before returning. Returns fuse_main's status; `mounted` tells whether
// the mount ever worked.
int run_fuse_export(FuseExport &x, bool &mounted);

} // namespace vdkit::cli

#endif
