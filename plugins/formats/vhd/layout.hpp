// On-disk layout of VHD images (Virtual PC / Virtual Server / Hyper-V /
// Azure), as described by MS-VHD ("Virtual Hard Disk Image Format
// Specification") and summarised in formats.md §3 (cited "§3.x" below):
// the 512-byte footer (§3.1), the dynamic disk header and its parent
// locators (§3.2), the BAT and sector bitmaps (§3.3), and the CHS geometry
// rules (§3.4). All fields are big-endian.
//
// Everything read from a file is untrusted: parse_footer() and
// parse_dynamic() check every field that later drives arithmetic or an
// allocation and return a message naming the field and its byte offset.
// Nothing here allocates more than the structure it is given. Pure
// functions, no I/O, thread-safe.
#ifndef VDKIT_PLUGINS_VHD_LAYOUT_HPP
#define VDKIT_PLUGINS_VHD_LAYOUT_HPP

#include "vdkit/endian.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vdkit::vhd {

// VHD's fields are big-endian (formats.md §3).
using sdk::load_be;
using sdk::store_be;

constexpr uint64_t kSector = 512;
constexpr uint64_t kFooterSize = 512;
constexpr uint64_t kOldFooterSize = 511; // before Virtual PC 2004 (§3.1)
constexpr uint64_t kDynHeaderSize = 1024;
constexpr uint32_t kVersion = 0x00010000u; // footer file format and dynamic header version
constexpr uint64_t kNoDataOffset = ~0ull;  // a fixed disk's footer data offset (§3.1)

// Disk types (footer offset 60).
constexpr uint32_t kTypeFixed = 2;
constexpr uint32_t kTypeDynamic = 3;
constexpr uint32_t kTypeDiff = 4;

constexpr uint32_t kBatFree = 0xFFFFFFFFu; // BAT entry: block not allocated (§3.3)

// Limits. qemu caps the virtual size at 0xFF000000 sectors (§3.4 "Limits"),
// the BAT entries are 32-bit sector numbers (blocks start below 2 TiB).
// Block sizes from 512 bytes to 256 MiB keep one block's bitmap and a
// copy-on-write fill bounded; the in-memory BAT is at most kMaxBatEntries
// entries (64 MiB).
constexpr uint64_t kMaxSize = 0xFF000000ull * kSector;
constexpr uint32_t kMinBlockSize = 512;
constexpr uint32_t kMaxBlockSize = 256u << 20;
constexpr uint64_t kMaxBatEntries = 1ull << 24;
constexpr uint64_t kMaxLocatorBytes = 64u << 10;         // §8.3 lesson 3
constexpr uint64_t kMaxChsSectors = 65535ull * 16 * 255; // the maximum geometry (§3.4)

// Parent locator platform codes (§3.2).
constexpr uint32_t kPlatW2ku = 0x57326B75u; // absolute Windows path, UTF-16LE
constexpr uint32_t kPlatW2ru = 0x57327275u; // path relative to the child, UTF-16LE
constexpr uint32_t kPlatWi2k = 0x5769326Bu; // deprecated ANSI absolute
constexpr uint32_t kPlatWi2r = 0x57693272u; // deprecated ANSI relative
constexpr uint32_t kPlatMac = 0x4D616320u;  // "Mac ": an alias blob
constexpr uint32_t kPlatMacX = 0x4D616358u; // "MacX": a UTF-8 file:// URL

struct Geometry {
    uint32_t cylinders = 0, heads = 0, sectors = 0;
    uint64_t total() const { return uint64_t(cylinders) * heads * sectors; }
};

// The MS-VHD appendix algorithm (§3.4), for a disk of total_sectors
// sectors. The result can hold fewer sectors than asked for.
Geometry chs_for(uint64_t total_sectors);

// §3.1: the 512-byte footer.
struct Footer {
    uint32_t features = 2;
    uint32_t version = kVersion;
    uint64_t data_offset = kNoDataOffset;
    uint32_t timestamp = 0;            // seconds since 2000-01-01 UTC
    std::array<char, 4> creator_app{}; // "vpc ", "win ", "qemu", "qem2", ...
    uint32_t creator_version = 0;
    uint32_t creator_os = 0;
    uint64_t original_size = 0;
    uint64_t current_size = 0;
    Geometry geometry;
    uint32_t type = kTypeDynamic;
    uint32_t checksum = 0;          // as stored
    std::array<uint8_t, 16> uuid{}; // raw bytes, never reinterpreted (§3.5)
    uint8_t saved_state = 0;

    std::string_view creator() const { return std::string_view(creator_app.data(), 4); }
    // §3.4 and §8.3 lesson 1: Virtual PC semantics (the CHS geometry gives
    // the size) for creators "vpc ", "vs  " and "qemu" whose geometry is
    // below the maximum; current_size for every other writer (Hyper-V,
    // Disk2vhd, Azure, qemu force_size, vdkit).
    bool size_from_chs() const;
    // The disk size a reader uses, in bytes (whole sectors).
    uint64_t disk_size() const;
};

// The checksum rule of §3.1/§3.2: one's complement of the byte sum with the
// checksum field (at checksum_at) taken as zero.
uint32_t checksum(const unsigned char *buf, uint64_t len, uint64_t checksum_at);

// True when buf starts with the footer cookie "conectix".
bool has_cookie(const unsigned char *buf, uint64_t len);

// Parse a footer (len 512, or 511 for a pre-2004 footer). `where` names its
// place in messages ("the footer at byte 1049088"). With verify_checksum
// false a wrong checksum is accepted (the stored value is kept). Returns an
// error message, or nullopt.
std::optional<std::string> parse_footer(const unsigned char *buf, uint64_t len, const std::string &where,
                                        bool verify_checksum, Footer &out);

// Serialise f (its checksum is computed, and stored into f) into 512 bytes.
void serialise_footer(Footer &f, unsigned char *buf);

struct Locator {
    uint32_t code = 0;
    uint32_t space = 0;  // bytes (Virtual PC, Hyper-V) or sectors (MS-VHD text): never trusted (§3.2)
    uint32_t length = 0; // bytes of path data
    uint64_t offset = 0; // absolute file offset of the data
};

// §3.2: the dynamic disk header.
struct DynHeader {
    uint64_t table_offset = 0;
    uint32_t version = kVersion;
    uint32_t max_entries = 0;
    uint32_t block_size = 2u << 20;
    uint32_t checksum = 0;
    std::array<uint8_t, 16> parent_uuid{};
    uint32_t parent_timestamp = 0;
    std::array<unsigned char, 512> parent_name{}; // UTF-16BE, NUL-terminated
    std::array<Locator, 8> locators{};

    // Bytes of one block's sector bitmap: ceil(sectors/8) rounded up to a sector (§3.3).
    uint64_t bitmap_bytes() const { return (uint64_t(block_size) / kSector / 8 + kSector - 1) / kSector * kSector; }
    uint64_t block_stride() const { return bitmap_bytes() + block_size; }
};

// Parse the 1024-byte dynamic header read at `at`, for a disk of disk_size
// bytes in a file of file_size bytes: cookie, checksum, version, block
// size, the BAT's length (it must cover the disk, stay below
// kMaxBatEntries needed entries, and lie inside the file and clear of the
// header). Locators are parsed but checked only when used (locator_text).
std::optional<std::string> parse_dynamic(const unsigned char *buf, uint64_t at, uint64_t disk_size, uint64_t file_size,
                                         bool verify_checksum, DynHeader &out);

// Serialise h (checksum computed and stored) into 1024 bytes.
void serialise_dynamic(DynHeader &h, unsigned char *buf);

// The BAT entries a disk of disk_size bytes needs with blocks of block_size.
inline uint64_t needed_entries(uint64_t disk_size, uint32_t block_size) {
    return (disk_size + block_size - 1) / block_size;
}

// The header's parent name (UTF-16BE, up to the NUL) as UTF-8; unpaired
// surrogates become U+FFFD.
std::string parent_name(const DynHeader &h);
// Store `name` (UTF-8) as the header's parent name; false if it does not
// fit 255 UTF-16 units.
bool set_parent_name(DynHeader &h, std::string_view name);

// Decode a locator's data (raw bytes, `code` says how) to a UTF-8 path:
// W2ku/W2ru UTF-16LE, Wi2k/Wi2r ANSI, MacX a file:// URL (percent-decoded,
// the scheme and host dropped). nullopt for "Mac " alias blobs, unknown
// codes and data that does not decode.
std::optional<std::string> locator_text(uint32_t code, const unsigned char *data, uint64_t len);

// UTF-8 to UTF-16LE (for W2ru/W2ku); nullopt on invalid UTF-8.
std::optional<std::string> utf16le(std::string_view utf8);

// Seconds since 2000-01-01 00:00:00 UTC for a Unix time (clamped to 32 bits).
uint32_t vhd_time(int64_t unix_seconds);

} // namespace vdkit::vhd

#endif
