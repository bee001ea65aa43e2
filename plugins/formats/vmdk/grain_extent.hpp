// What every grain-mapped VMDK extent shares: hosted sparse (KDMV), ESX
// redo logs (COWD) and space-efficient sparse (seSparse) all map the disk
// in fixed-size grains through a directory of grain tables. A subclass says
// what one grain is (lookup) and may say how to read it (read_grain); the
// run-length reading and allocation status live here once.
#ifndef VDKIT_VMDK_GRAIN_EXTENT_HPP
#define VDKIT_VMDK_GRAIN_EXTENT_HPP

#include "vdkit/plugin.hpp"

#include <algorithm>
#include <string>

namespace vdkit::vmdk {

class GrainExtent {
public:
    virtual ~GrainExtent() = default;

    virtual uint64_t capacity_bytes() const = 0;
    virtual uint64_t grain_bytes() const = 0;

    // Read within the extent; the format read callback's contract
    // (unallocated runs are answered as such, so the chain below fills them).
    sdk::ReadResult read(sdk::Context &ctx, uint64_t offset, void *buf, uint64_t len);
    sdk::BlockStatus status(sdk::Context &ctx, uint64_t offset, uint64_t len);

    // Consistency check (VDKIT_CHECK_* flags), findings through ctx.finding.
    virtual void check(sdk::Context &ctx, uint32_t flags, vdkit_check_result &r) = 0;

    // Where the extent starts in the disk (bytes): findings name the disk
    // bytes they lose from it.
    void set_disk_offset(uint64_t offset) { disk_offset_ = offset; }

protected:
    GrainExtent(sdk::Context &ctx, sdk::StoreRef store, std::string name);

    enum class Grain { unallocated, zero, data };
    // Classify grain `index`; for data, *sector gets the grain's first
    // sector in the file. Entries were checked against the file.
    virtual Grain lookup(sdk::Context &ctx, uint64_t index, uint64_t *sector) = 0;
    // Copy n bytes at `within` of data grain `index` (at `sector`) into buf.
    // The default reads plain bytes; a grain cut short by the end of the
    // file reads as zeros past it (the one rule read, map, check and repair
    // share: a grain that starts inside the file is data up to the end of
    // the file, as qemu reads it).
    virtual void read_grain(sdk::Context &ctx, uint64_t index, uint64_t sector, uint64_t within, void *buf, uint64_t n);
    [[noreturn]] void corrupt(const std::string &what) const;
    // "lost disk bytes [A, B)": the disk range bytes [from, to) of grain
    // `index` cover (clamped to the capacity), in the form every check
    // finding that changes or loses readable data uses (docs/check.md).
    std::string lost_range(uint64_t index, uint64_t from, uint64_t to) const;
    // check: a data grain at byte `at` that the end of the file cuts is
    // reported through report(offset, message) (read-only extents: the
    // message says what is lost, nothing is repaired).
    template <class Report> void report_cut(uint64_t index, uint64_t at, Report &&report) const {
        const uint64_t gb = grain_bytes(), start = index * gb;
        const uint64_t shown = start < capacity_bytes() ? std::min(gb, capacity_bytes() - start) : 0;
        if (at >= file_size_ || at + shown <= file_size_) return;
        report(file_size_, "grain " + std::to_string(index) + " (at byte " + std::to_string(at) +
                               ") is cut off by the end of the file at byte " + std::to_string(file_size_) +
                               ": its first " + std::to_string(file_size_ - at) +
                               " bytes are intact, the rest reads as zeros (" + lost_range(index, file_size_ - at, gb) +
                               ": the file was truncated)");
    }

    sdk::StoreRef store_;
    std::string name_;
    uint64_t file_size_ = 0;
    uint64_t disk_offset_ = 0;
};

} // namespace vdkit::vmdk

#endif
