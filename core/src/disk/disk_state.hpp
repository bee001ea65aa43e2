// Disk::State — the chain behind a public Disk handle.
#ifndef VDKIT_CORE_DISK_DISK_STATE_HPP
#define VDKIT_CORE_DISK_DISK_STATE_HPP

#include "disk/image.hpp"
#include "vdkit/vdkit.hpp"

#include <memory>
#include <shared_mutex>
#include <vector>

namespace vdkit {

struct Disk::State {
    std::shared_ptr<const Host> host;          // keeps plugins loaded
    std::vector<std::unique_ptr<Image>> images; // 0 = base, back() = top
    uint64_t size = 0;
    bool writable = false;
    bool closed = false;
    // Shared for reads, exclusive for writes and metadata changes.
    mutable std::shared_mutex mu;

    // Read [offset, offset+len) as seen from images[level] down.
    Status read_chain(size_t level, uint64_t offset, void *buf, uint64_t len) const;
    // Write to the top image with the copy-on-write fill; caller holds mu exclusively.
    Status write_locked(uint64_t offset, const void *buf, uint64_t len);
    // Zeros written as data (shadowing any parent); caller holds mu exclusively.
    Status write_zero_bytes_locked(uint64_t offset, uint64_t len);
};

} // namespace vdkit

#endif
