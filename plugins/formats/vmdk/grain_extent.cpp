#include "grain_extent.hpp"

#include <algorithm>
#include <cstring>

namespace vdkit::vmdk {

GrainExtent::GrainExtent(sdk::Context &ctx, sdk::StoreRef store, std::string name)
    : store_(store), name_(std::move(name)), file_size_(store.size(ctx.get())) {}

void GrainExtent::corrupt(const std::string &what) const {
    throw sdk::Error(VDKIT_E_CORRUPT, name_ + ": " + what);
}

std::string GrainExtent::lost_range(uint64_t index, uint64_t from, uint64_t to) const {
    const uint64_t base = index * grain_bytes(), cap = capacity_bytes();
    const uint64_t a = std::min(base + from, cap), b = std::min(base + to, cap);
    return "lost disk bytes [" + std::to_string(disk_offset_ + a) + ", " + std::to_string(disk_offset_ + b) + ")";
}

sdk::ReadResult GrainExtent::read(sdk::Context &ctx, uint64_t offset, void *buf, uint64_t len) {
    const uint64_t gb = grain_bytes();
    const uint64_t index = offset / gb, within = offset % gb;
    const uint64_t n = std::min(len, gb - within);
    uint64_t sector = 0;
    switch (lookup(ctx, index, &sector)) {
    case Grain::unallocated: {
        uint64_t run = n;
        for (uint64_t i = index + 1; run < len; ++i) {
            uint64_t s2;
            if (lookup(ctx, i, &s2) != Grain::unallocated) break;
            run += std::min(gb, len - run);
        }
        return {run, true};
    }
    case Grain::zero:
        std::memset(buf, 0, static_cast<size_t>(n));
        return {n, false};
    case Grain::data:
        break;
    }
    read_grain(ctx, index, sector, within, buf, n);
    return {n, false};
}

void GrainExtent::read_grain(sdk::Context &ctx, uint64_t, uint64_t sector, uint64_t within, void *buf, uint64_t n) {
    const uint64_t at = sector * 512 + within;
    const uint64_t avail = at < file_size_ ? std::min(n, file_size_ - at) : 0;
    if (avail) store_.pread(ctx.get(), at, buf, avail);
    if (avail < n) std::memset(static_cast<unsigned char *>(buf) + avail, 0, static_cast<size_t>(n - avail));
}

// Grains one status call looks at, at most.
constexpr uint64_t kMaxStatusGrains = 1u << 12;

sdk::BlockStatus GrainExtent::status(sdk::Context &ctx, uint64_t offset, uint64_t len) {
    const uint64_t gb = grain_bytes();
    auto kind = [&](uint64_t i) {
        uint64_t s;
        switch (lookup(ctx, i, &s)) {
        case Grain::unallocated:
            return VDKIT_BLOCK_UNALLOCATED;
        case Grain::zero:
            return VDKIT_BLOCK_ZERO;
        case Grain::data:
            break;
        }
        return VDKIT_BLOCK_DATA;
    };
    const uint64_t index = offset / gb;
    const uint32_t st = kind(index);
    uint64_t run = std::min(len, gb - offset % gb);
    // At most kMaxStatusGrains grains per call (the caller asks again from
    // where the run ends): a hostile header with 512-byte grains and a
    // terabyte capacity otherwise makes one call walk billions of grains.
    for (uint64_t i = index + 1; run < len && i - index < kMaxStatusGrains && kind(i) == st; ++i)
        run += std::min(gb, len - run);
    return {st, run};
}

} // namespace vdkit::vmdk
