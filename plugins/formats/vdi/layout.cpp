#include "layout.hpp"

#include "vdkit/endian.hpp"
#include "vdkit/text.hpp"

#include <cstring>

namespace vdkit::vdi {

namespace {

using sdk::hex;
using sdk::load_le;
using sdk::store_le;

constexpr char kBanner[] = "<<< Oracle VM VirtualBox Disk Image >>>\n";

// IPRT stores a UUID's first three fields (u32, u16, u16) little-endian;
// vdkit keeps RFC 4122 byte order. The conversion is its own inverse.
void swap_uuid(const unsigned char *in, uint8_t *out) {
    const int order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
    for (int i = 0; i < 16; ++i)
        out[i] = in[order[i]];
}

bool power_of_two(uint64_t v) {
    return v && !(v & (v - 1));
}

// Field offsets, absolute in the file. Version 1.x header:
struct V1 {
    static constexpr uint64_t header_size = 0x48, type = 0x4C, flags = 0x50, comment = 0x54, off_blocks = 0x154,
                              off_data = 0x158, pchs = 0x15C, disk_size = 0x170, block_size = 0x178,
                              block_extra = 0x17C, blocks = 0x180, allocated = 0x184, uuid_create = 0x188,
                              uuid_modify = 0x198, uuid_linkage = 0x1A8, uuid_parent_modify = 0x1B8, lchs = 0x1C8;
};
// Legacy version 0 header (no header size, offsets or extra bytes):
struct V0 {
    static constexpr uint64_t type = 0x48, flags = 0x4C, comment = 0x50, pchs = 0x150, disk_size = 0x160,
                              block_size = 0x168, blocks = 0x16C, allocated = 0x170, uuid_create = 0x174,
                              uuid_modify = 0x184, uuid_linkage = 0x194;
};

void load_geometry(const unsigned char *p, std::array<uint32_t, 4> &g) {
    for (int i = 0; i < 4; ++i)
        g[i] = static_cast<uint32_t>(load_le(p + 4 * i, 4));
}
void store_geometry(unsigned char *p, const std::array<uint32_t, 4> &g) {
    for (int i = 0; i < 4; ++i)
        store_le(p + 4 * i, g[i], 4);
}

} // namespace

bool probe(const unsigned char *buf, uint64_t len) {
    return len >= kPreHeaderSize && load_le(buf + 0x40, 4) == kSignature;
}

std::optional<std::string> parse(const unsigned char *buf, uint64_t len, uint64_t file_size, Header &h) {
    if (len < kPreHeaderSize || load_le(buf + 0x40, 4) != kSignature)
        return "no VDI signature (0xBEDA107F at offset 0x40)";
    h = Header{};
    h.version = static_cast<uint32_t>(load_le(buf + 0x44, 4));
    const uint32_t major = h.version >> 16;
    if (h.version == kVersion0) {
        if (len < kPreHeaderSize + kHeader0Size) return "the file ends inside the version 0 header";
        h.header_size = kHeader0Size;
        h.type = static_cast<uint32_t>(load_le(buf + V0::type, 4));
        h.flags = static_cast<uint32_t>(load_le(buf + V0::flags, 4));
        std::memcpy(h.comment.data(), buf + V0::comment, 256);
        load_geometry(buf + V0::pchs, h.pchs);
        h.disk_size = load_le(buf + V0::disk_size, 8);
        h.block_size = static_cast<uint32_t>(load_le(buf + V0::block_size, 4));
        h.blocks = static_cast<uint32_t>(load_le(buf + V0::blocks, 4));
        h.blocks_allocated = static_cast<uint32_t>(load_le(buf + V0::allocated, 4));
        swap_uuid(buf + V0::uuid_create, h.uuid_create.data());
        swap_uuid(buf + V0::uuid_modify, h.uuid_modify.data());
        swap_uuid(buf + V0::uuid_linkage, h.uuid_linkage.data());
        // The map follows the header; the data follows the map, unaligned.
        h.off_blocks = static_cast<uint32_t>(kPreHeaderSize + kHeader0Size);
        const uint64_t off_data = h.off_blocks + uint64_t(h.blocks) * 4;
        if (off_data > UINT32_MAX) return "version 0 header: block count " + std::to_string(h.blocks) + " is too large";
        h.off_data = static_cast<uint32_t>(off_data);
    } else if (major == 1) {
        if (len < kPreHeaderSize + kHeader1Size) return "the file ends inside the header";
        h.header_size = static_cast<uint32_t>(load_le(buf + V1::header_size, 4));
        if (h.header_size < kHeader1Size || h.header_size > kHeaderReadSize - kPreHeaderSize)
            return "header size " + hex(h.header_size) + " at 0x48 is not between 0x180 and 0x1b8";
        if (len < h.end()) return "the file ends inside the header";
        h.type = static_cast<uint32_t>(load_le(buf + V1::type, 4));
        h.flags = static_cast<uint32_t>(load_le(buf + V1::flags, 4));
        std::memcpy(h.comment.data(), buf + V1::comment, 256);
        h.off_blocks = static_cast<uint32_t>(load_le(buf + V1::off_blocks, 4));
        h.off_data = static_cast<uint32_t>(load_le(buf + V1::off_data, 4));
        load_geometry(buf + V1::pchs, h.pchs);
        h.disk_size = load_le(buf + V1::disk_size, 8);
        h.block_size = static_cast<uint32_t>(load_le(buf + V1::block_size, 4));
        h.block_extra = static_cast<uint32_t>(load_le(buf + V1::block_extra, 4));
        h.blocks = static_cast<uint32_t>(load_le(buf + V1::blocks, 4));
        h.blocks_allocated = static_cast<uint32_t>(load_le(buf + V1::allocated, 4));
        swap_uuid(buf + V1::uuid_create, h.uuid_create.data());
        swap_uuid(buf + V1::uuid_modify, h.uuid_modify.data());
        swap_uuid(buf + V1::uuid_linkage, h.uuid_linkage.data());
        swap_uuid(buf + V1::uuid_parent_modify, h.uuid_parent_modify.data());
        if (h.has_lchs()) load_geometry(buf + V1::lchs, h.lchs);
        if (h.off_blocks < h.end())
            return "block map offset " + hex(h.off_blocks) + " at 0x154 overlaps the header (ends at " + hex(h.end()) +
                   ")";
    } else {
        return "unsupported VDI version " + std::to_string(major) + "." + std::to_string(h.version & 0xFFFF) +
               " at 0x44 (known: 0 and 1.1)";
    }

    if (h.type < kTypeNormal || h.type > kTypeDiff) return "unknown image type " + std::to_string(h.type) + " (1-4)";
    if (h.flags & ~kFlagZeroExpand) return "unknown image flags " + hex(h.flags);
    if (h.disk_size == 0) return "the disk size is 0";
    if (h.disk_size >= kMaxDiskSize) return "disk size " + std::to_string(h.disk_size) + " is beyond the VDI limit";
    if (!power_of_two(h.block_size) || h.block_size < kMinBlockSize || h.block_size > kMaxBlockSize)
        return "block size " + std::to_string(h.block_size) + " is not a power of two from 512 bytes to 256 MiB";
    if (h.block_extra && (!power_of_two(h.block_extra) || h.block_extra > kMaxBlockExtra))
        return "per-block extra size " + std::to_string(h.block_extra) + " is not a power of two up to 1 MiB";
    if (h.blocks >= kBlockZero) return "block count " + std::to_string(h.blocks) + " is out of range";
    if (uint64_t(h.blocks) * h.block_size < h.disk_size)
        return std::to_string(h.blocks) + " blocks of " + std::to_string(h.block_size) +
               " bytes cannot hold the disk size " + std::to_string(h.disk_size);
    // An allocated count above the block count is not refused here: the
    // writer derives its allocation point from the map, never from this
    // field, and check reports (and check -r corrects) it.
    const uint64_t map_end = uint64_t(h.off_blocks) + uint64_t(h.blocks) * 4;
    if (map_end > file_size)
        return "the block map (" + std::to_string(h.blocks) + " entries at " + hex(h.off_blocks) +
               ") extends beyond the end of the file (" + std::to_string(file_size) + " bytes)";
    if (h.off_data < map_end)
        return "data offset " + hex(h.off_data) + " overlaps the block map (ends at " + hex(map_end) + ")";
    return std::nullopt;
}

void serialise(const Header &h, unsigned char *buf) {
    std::memset(buf, 0, kHeaderReadSize);
    std::memcpy(buf, kBanner, sizeof kBanner - 1);
    store_le(buf + 0x40, kSignature, 4);
    store_le(buf + 0x44, h.version, 4);
    if (h.legacy()) {
        store_le(buf + V0::type, h.type, 4);
        store_le(buf + V0::flags, h.flags, 4);
        std::memcpy(buf + V0::comment, h.comment.data(), 256);
        store_geometry(buf + V0::pchs, h.pchs);
        store_le(buf + V0::disk_size, h.disk_size, 8);
        store_le(buf + V0::block_size, h.block_size, 4);
        store_le(buf + V0::blocks, h.blocks, 4);
        store_le(buf + V0::allocated, h.blocks_allocated, 4);
        swap_uuid(h.uuid_create.data(), buf + V0::uuid_create);
        swap_uuid(h.uuid_modify.data(), buf + V0::uuid_modify);
        swap_uuid(h.uuid_linkage.data(), buf + V0::uuid_linkage);
        return;
    }
    store_le(buf + V1::header_size, h.header_size, 4);
    store_le(buf + V1::type, h.type, 4);
    store_le(buf + V1::flags, h.flags, 4);
    std::memcpy(buf + V1::comment, h.comment.data(), 256);
    store_le(buf + V1::off_blocks, h.off_blocks, 4);
    store_le(buf + V1::off_data, h.off_data, 4);
    store_geometry(buf + V1::pchs, h.pchs);
    store_le(buf + V1::disk_size, h.disk_size, 8);
    store_le(buf + V1::block_size, h.block_size, 4);
    store_le(buf + V1::block_extra, h.block_extra, 4);
    store_le(buf + V1::blocks, h.blocks, 4);
    store_le(buf + V1::allocated, h.blocks_allocated, 4);
    swap_uuid(h.uuid_create.data(), buf + V1::uuid_create);
    swap_uuid(h.uuid_modify.data(), buf + V1::uuid_modify);
    swap_uuid(h.uuid_linkage.data(), buf + V1::uuid_linkage);
    swap_uuid(h.uuid_parent_modify.data(), buf + V1::uuid_parent_modify);
    if (h.has_lchs()) store_geometry(buf + V1::lchs, h.lchs);
}

} // namespace vdkit::vdi
