// Library::compare — content comparison across formats (qemu-img compare).
#include "disk/disk_state.hpp"
#include "util/util.hpp"

#include <algorithm>
#include <cstring>

namespace vdkit {
inline namespace v1 {

namespace {
constexpr uint64_t kBuffer = 1u << 20;

// First offset in [off, end) where `disk` has data that is not zero.
Result<std::optional<uint64_t>> first_nonzero(const Disk &disk, uint64_t off, uint64_t end,
                                              std::vector<unsigned char> &buf) {
    VDKIT_ASSIGN_OR_RETURN(Ranges data, data_ranges(disk, off, end));
    for (const auto &[a, b] : data) {
        for (uint64_t pos = a; pos < b;) {
            const uint64_t n = std::min<uint64_t>(kBuffer, b - pos);
            VDKIT_TRY(disk.read(pos, buf.data(), n));
            for (uint64_t i = 0; i < n; ++i)
                if (buf[i]) return std::optional<uint64_t>(pos + i);
            pos += n;
        }
    }
    return std::optional<uint64_t>();
}
} // namespace

Result<std::optional<uint64_t>> Library::compare(const Disk &a, const Disk &b) {
    const uint64_t common = std::min(a.size(), b.size());
    std::vector<unsigned char> ba(kBuffer), bb(kBuffer);
    for (uint64_t off = 0; off < common;) {
        VDKIT_ASSIGN_OR_RETURN(BlockRun ra, a.block_status(off, common - off));
        VDKIT_ASSIGN_OR_RETURN(BlockRun rb, b.block_status(off, ra.length));
        const uint64_t n = std::min(ra.length, rb.length);
        if (ra.state != BlockState::data && rb.state != BlockState::data) {
            off += n; // both read as zero
            continue;
        }
        for (uint64_t pos = off; pos < off + n;) {
            const uint64_t m = std::min<uint64_t>(kBuffer, off + n - pos);
            VDKIT_TRY(a.read(pos, ba.data(), m));
            VDKIT_TRY(b.read(pos, bb.data(), m));
            if (std::memcmp(ba.data(), bb.data(), static_cast<size_t>(m)) != 0) {
                uint64_t i = 0;
                while (ba[i] == bb[i])
                    ++i;
                return std::optional<uint64_t>(pos + i);
            }
            pos += m;
        }
        off += n;
    }
    const Disk &longer = a.size() > b.size() ? a : b;
    return first_nonzero(longer, common, longer.size(), ba);
}

} // namespace v1
} // namespace vdkit
