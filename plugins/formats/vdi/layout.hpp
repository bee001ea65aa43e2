// On-disk layout of VirtualBox VDI images (VirtualBox src/VBox/Storage/VDICore.h):
// the 72-byte pre-header, header versions 0 and 1.1 (with or without LCHS),
// the block map entries, and vdkit's parent-location record.
//
// Everything read from a file is untrusted: parse() checks every field that
// later drives arithmetic or allocation, and fails with a message naming the
// field and its offset.
#ifndef VDKIT_PLUGINS_VDI_LAYOUT_HPP
#define VDKIT_PLUGINS_VDI_LAYOUT_HPP

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vdkit::vdi {

constexpr uint32_t kSignature = 0xBEDA107Fu; // at 0x40
constexpr uint32_t kVersion11 = 0x00010001u; // header 1.1
constexpr uint32_t kVersion0 = 0x00000002u;  // legacy header (major 0)
constexpr uint64_t kPreHeaderSize = 0x48;
constexpr uint32_t kHeader1Size = 0x180;     // VDIHEADER1 (qemu writes this)
constexpr uint32_t kHeader1PlusSize = 0x190; // VDIHEADER1PLUS: adds LCHS (VirtualBox writes this)
constexpr uint32_t kHeader0Size = 348;       // legacy header, map right behind it
constexpr uint64_t kHeaderReadSize = 0x200;  // enough for every header version

// Image types (header field at 0x4C).
constexpr uint32_t kTypeNormal = 1; // dynamic
constexpr uint32_t kTypeFixed = 2;
constexpr uint32_t kTypeUndo = 3; // legacy; handled like normal
constexpr uint32_t kTypeDiff = 4;

constexpr uint32_t kFlagZeroExpand = 1; // the only defined image flag

// Block map entries.
constexpr uint32_t kBlockFree = 0xFFFFFFFFu; // unallocated: zero in a base, the parent's data in a diff
constexpr uint32_t kBlockZero = 0xFFFFFFFEu; // reads as zero, shadows any parent
inline bool is_allocated(uint32_t entry) {
    return entry < kBlockZero;
}

// Limits: VirtualBox refuses disks of 4 PiB − 3 MiB or more; blocks from
// 512 bytes to 256 MiB keep the host's copy-on-write fill bounded.
constexpr uint64_t kMaxDiskSize = (4ull << 50) - (3ull << 20);
constexpr uint32_t kMinBlockSize = 512;
constexpr uint32_t kMaxBlockSize = 256u << 20;
constexpr uint32_t kMaxBlockExtra = 1u << 20;

// vdkit's parent location record. VDI keeps no parent path (VirtualBox
// stores chains in its .vbox XML), so vdkit writes one at 0x200, in the gap
// between the header and the block map that VirtualBox and qemu ignore.
constexpr uint64_t kHintOffset = 0x200;
constexpr uint64_t kHintAreaEnd = 0x1000; // created images start their map at or after this
constexpr char kHintMagic[8] = {'V', 'D', 'K', 'T', 'P', 'R', 'N', 'T'};
constexpr uint64_t kHintHeader = 16; // magic, u32 version, u32 length

struct Header {
    uint32_t version = kVersion11;
    uint32_t header_size = kHeader1PlusSize; // cbHeader (v1); kHeader0Size for v0
    uint32_t type = kTypeNormal;
    uint32_t flags = 0;
    std::array<char, 256> comment{};
    uint32_t off_blocks = 0;
    uint32_t off_data = 0;
    std::array<uint32_t, 4> pchs{}; // cylinders, heads, sectors, bytes per sector
    uint64_t disk_size = 0;
    uint32_t block_size = 1u << 20;
    uint32_t block_extra = 0;
    uint32_t blocks = 0;
    uint32_t blocks_allocated = 0;
    // UUIDs in RFC 4122 byte order (the file holds IPRT's little-endian fields).
    std::array<uint8_t, 16> uuid_create{}, uuid_modify{}, uuid_linkage{}, uuid_parent_modify{};
    std::array<uint32_t, 4> lchs{}; // only with header_size >= kHeader1PlusSize

    bool legacy() const { return version == kVersion0; }
    bool has_lchs() const { return !legacy() && header_size >= kHeader1PlusSize; }
    uint64_t stride() const { return uint64_t(block_size) + block_extra; }
    // Bytes of header the file holds: pre-header plus this version's header.
    uint64_t end() const { return kPreHeaderSize + header_size; }
};

// Parse and validate a header from the first kHeaderReadSize bytes (fewer
// if the file is shorter: len). Returns an error message, or nullopt on
// success. file_size bounds the map and data offsets.
std::optional<std::string> parse(const unsigned char *buf, uint64_t len, uint64_t file_size, Header &out);

// Serialise h into buf (h.end() bytes; buf must hold kHeaderReadSize).
void serialise(const Header &h, unsigned char *buf);

// True if the first bytes look like a VDI (signature at 0x40).
bool probe(const unsigned char *buf, uint64_t len);

} // namespace vdkit::vdi

#endif
