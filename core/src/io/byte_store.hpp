// ByteStore: the one byte-addressed I/O interface of the core.
//
// Transports produce ByteStores, file-level filters wrap them, and format
// backends reach their container files only through them (via the host
// table's store_* functions). Errors are Status values whose message names
// the location and the offset.
//
// Thread-safety: implementations must allow concurrent pread/pwrite on
// distinct ranges (the file transport does; plugin-backed stores serialise
// per handle unless the plugin declares VDKIT_CAP_THREAD_SAFE).
#ifndef VDKIT_CORE_IO_BYTE_STORE_HPP
#define VDKIT_CORE_IO_BYTE_STORE_HPP

#include "vdkit/plugin.h"
#include "vdkit/status.hpp"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace vdkit {

struct Extent {
    uint64_t offset = 0;
    uint64_t length = 0;
    bool hole = false; // reads as zero, nothing stored
};

class ByteStore {
public:
    virtual ~ByteStore() = default;
    // The location this store was opened from (a path or URL).
    virtual const std::string &location() const noexcept = 0;
    virtual Status pread(void *buf, uint64_t len, uint64_t offset) = 0;
    virtual Status pwrite(const void *buf, uint64_t len, uint64_t offset) = 0;
    virtual Status flush() = 0;
    virtual Result<uint64_t> size() = 0;
    virtual Status truncate(uint64_t size) = 0;
    // Deallocate; the range reads as zero afterwards.
    virtual Status discard(uint64_t offset, uint64_t len) = 0;
    // Make the range read as zero (may or may not deallocate).
    virtual Status zero(uint64_t offset, uint64_t len) = 0;
    // Up to max extents from offset, in order and contiguous; a store that
    // cannot tell reports one data extent covering the range.
    virtual Status extents(uint64_t offset, uint64_t len, uint32_t max, std::vector<Extent> &out) = 0;
    // Bytes used on the medium; nothing when unknown.
    virtual Result<uint64_t> allocated_size() = 0;
};

using ByteStorePtr = std::unique_ptr<ByteStore>;

// The files an open image holds through the host besides its main file (a
// split VMDK's extents, a device an extent maps): each store registers when
// the plugin opens it (host_api.cpp h_store_open) and leaves when the plugin
// closes it, so the image's "disk size" can count them (`live`; devices are
// not the image's space) and its owner can tell which files it holds
// (Image::files: both lists; convert's same-file refusals).
struct OpenStores {
    std::mutex mu;
    std::vector<ByteStore *> live;
    std::vector<ByteStore *> devices;
};

} // namespace vdkit

// The opaque handle plugins see: a host-owned ByteStore, and the image's
// register of open stores it is listed in (none for a main file).
struct vdkit_store {
    vdkit::ByteStorePtr store;
    std::shared_ptr<vdkit::OpenStores> listed_in = nullptr;

    ~vdkit_store() {
        if (!listed_in) return;
        std::lock_guard lock(listed_in->mu);
        for (auto *v : {&listed_in->live, &listed_in->devices})
            v->erase(std::remove(v->begin(), v->end(), store.get()), v->end());
    }
};

#endif
