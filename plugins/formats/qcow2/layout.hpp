// On-disk layout of QEMU qcow2 images (QEMU docs/interop/qcow2.txt, cited
// below as "qcow2.txt §Section"): the header of versions 2 and 3, its
// extensions, and the L1/L2 cluster-mapping entries (standard and extended).
//
// Everything read from a file is untrusted (the qcow2 CVEs, CVE-2014-0143
// to -0148, were header fields driving unchecked arithmetic and
// allocation): parse_header() checks every field that later sizes a table,
// an allocation or an offset, and returns a message naming the field and
// its byte offset. Nothing here allocates more than the header cluster it
// is given. Pure functions, no I/O, thread-safe.
#ifndef VDKIT_PLUGINS_QCOW2_LAYOUT_HPP
#define VDKIT_PLUGINS_QCOW2_LAYOUT_HPP

#include "vdkit/endian.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vdkit::qcow2 {

// qcow2.txt §Header.
constexpr uint32_t kMagic = 0x514649fbu;  // "QFI\xfb"
constexpr uint32_t kV2HeaderLength = 72;  // version 2: fixed
constexpr uint32_t kV3HeaderLength = 104; // version 3: at least this
constexpr uint32_t kMinClusterBits = 9;   // 512 B
constexpr uint32_t kMaxClusterBits = 21;  // 2 MiB (qemu's implementation limit; so is ours)
constexpr uint32_t kMaxBackingNameLength = 1023;

// Incompatible feature bits (qcow2.txt §Header, bytes 72-79).
constexpr uint64_t kIncompatDirty = 1ull << 0;
constexpr uint64_t kIncompatCorrupt = 1ull << 1;
constexpr uint64_t kIncompatDataFile = 1ull << 2;
constexpr uint64_t kIncompatCompression = 1ull << 3;
constexpr uint64_t kIncompatExtendedL2 = 1ull << 4;
constexpr uint64_t kIncompatKnown = (1ull << 5) - 1;
// Compatible (80-87) and auto-clear (88-95) bits.
constexpr uint64_t kCompatLazyRefcounts = 1ull << 0;
constexpr uint64_t kAutoclearBitmaps = 1ull << 0;
constexpr uint64_t kAutoclearRawData = 1ull << 1;

// compression_type (byte 104).
constexpr uint8_t kCompressionZlib = 0;
constexpr uint8_t kCompressionZstd = 1;

// crypt_method (bytes 32-35).
constexpr uint32_t kCryptNone = 0, kCryptAes = 1, kCryptLuks = 2;

// Header extension types (qcow2.txt §Header extensions).
constexpr uint32_t kExtEnd = 0x00000000u;
constexpr uint32_t kExtBackingFormat = 0xe2792acau;
constexpr uint32_t kExtFeatureNames = 0x6803f857u;
constexpr uint32_t kExtBitmaps = 0x23852875u;
constexpr uint32_t kExtCrypto = 0x0537be77u;
constexpr uint32_t kExtDataFile = 0x44415441u;

// Limits that keep memory and time bounded whatever a header says. qemu
// has the same ones (block/qcow2.h): a 32 MiB L1 table, an 8 MiB refcount
// table, 65536 snapshots.
constexpr uint64_t kMaxL1Bytes = 32ull << 20;
constexpr uint64_t kMaxRefcountTableBytes = 8ull << 20;
constexpr uint32_t kMaxSnapshots = 65536;

// Mapping entries (qcow2.txt §Cluster mapping).
constexpr uint64_t kL1OffsetMask = 0x00fffffffffffe00ull;   // bits 9-55
constexpr uint64_t kL1ReservedMask = 0x7f000000000001ffull; // bits 0-8, 56-62
constexpr uint64_t kL2OffsetMask = 0x00fffffffffffe00ull;   // standard descriptor bits 9-55
constexpr uint64_t kL2Compressed = 1ull << 62;
constexpr uint64_t kL2Copied = 1ull << 63;
constexpr uint64_t kL2ZeroFlag = 1ull << 0;
constexpr uint64_t kL2StandardReserved = 0x3f000000000001feull; // bits 1-8, 56-61
constexpr uint32_t kSubclusters = 32;                           // qcow2.txt §Extended L2 Entries

struct Header {
    uint32_t version = 3;
    uint64_t backing_file_offset = 0;
    uint32_t backing_file_size = 0;
    uint32_t cluster_bits = 16;
    uint64_t size = 0; // virtual disk size, bytes
    uint32_t crypt_method = 0;
    uint32_t l1_size = 0; // entries
    uint64_t l1_table_offset = 0;
    uint64_t refcount_table_offset = 0;
    uint32_t refcount_table_clusters = 0;
    uint32_t nb_snapshots = 0;
    uint64_t snapshots_offset = 0;
    uint64_t incompatible = 0;
    uint64_t compatible = 0;
    uint64_t autoclear = 0;
    uint32_t refcount_order = 4;
    uint32_t header_length = kV2HeaderLength;
    uint8_t compression_type = kCompressionZlib;

    // From the header extensions and the backing name area.
    std::string backing_file;   // empty: none
    std::string backing_format; // empty: not recorded
    bool has_data_file_ext = false;
    std::string data_file;
    bool has_crypto_ext = false;
    bool has_bitmaps_ext = false;
    struct FeatureName {
        uint8_t type; // 0 incompatible, 1 compatible, 2 autoclear
        uint8_t bit;
        std::string name;
    };
    std::vector<FeatureName> feature_names;
    uint32_t unknown_extensions = 0; // kept in the file, ignored (qcow2.txt allows it)

    uint64_t cluster_size() const { return 1ull << cluster_bits; }
    bool extended_l2() const { return incompatible & kIncompatExtendedL2; }
    uint64_t l2_entry_bytes() const { return extended_l2() ? 16 : 8; }
    uint64_t l2_entries() const { return cluster_size() / l2_entry_bytes(); }
    // Guest bytes one L2 table maps.
    uint64_t l2_span() const { return l2_entries() << cluster_bits; }
    uint64_t subcluster_size() const { return extended_l2() ? cluster_size() / kSubclusters : cluster_size(); }
    // The L1 entries a disk of `size` bytes needs.
    uint64_t l1_needed() const { return (size + l2_span() - 1) / l2_span(); }
    // Compressed cluster descriptor split (qcow2.txt §Cluster mapping, x = 62 - (cluster_bits - 8)).
    uint32_t compressed_offset_bits() const { return 62 - (cluster_bits - 8); }
    // The name of a feature bit from the feature name table, or "".
    std::string feature_name(uint8_t type, uint8_t bit) const;
};

// Bytes parse_header() needs to see: the whole first cluster (header,
// extensions, backing name) — at most 2 MiB, less when the file is shorter.
constexpr uint64_t kProbeBytes = kV3HeaderLength;

// Parse and validate the header cluster `buf` (len bytes: the first
// min(cluster_size, file_size) bytes of the file; pass at least
// kProbeBytes or the whole file). Returns an error message naming the
// field and its offset, or nullopt with `out` filled. Features vdkit does
// not serve are not judged here: see refusal().
std::optional<std::string> parse_header(const unsigned char *buf, uint64_t len, uint64_t file_size, Header &out);

// For a header parse_header() accepted: why vdkit refuses the image
// (encryption, an external data file, an unknown incompatible feature bit,
// named from the feature name table when there is one), or nullopt.
std::optional<std::string> refusal(const Header &h);

// The cluster size a header claims (cluster_bits at byte 20), or 0 if buf
// is too short or the value is out of range; lets the caller read the
// whole first cluster before parse_header().
uint64_t claimed_cluster_size(const unsigned char *buf, uint64_t len);

// True if the first bytes carry the qcow2 magic and version 2 or 3.
bool probe(const unsigned char *buf, uint64_t len);

// Big-endian field access (qcow2.txt §General: all numbers are big endian).
using sdk::load_be;
using sdk::store_be;

// What one guest (sub)cluster is, decoded from its L2 entry.
enum class Kind { unallocated, zero, data, compressed };
struct Mapping {
    Kind kind = Kind::unallocated;
    uint64_t host_offset = 0;      // data: the byte of the (sub)cluster; compressed: start of the stream
    uint64_t compressed_bytes = 0; // compressed: bytes from host_offset the stream may use
};

// Decode the L2 entry (and, with extended L2, its bitmap) for subcluster
// `sc` (0 without extended L2). Returns an error message for an entry the
// spec forbids (reserved bits, an unaligned offset, contradictory bitmap
// bits), else nullopt with `out` filled. Offsets are not checked against
// the file here.
std::optional<std::string> decode_l2(const Header &h, uint64_t entry, uint64_t bitmap, uint32_t sc, Mapping &out);

} // namespace vdkit::qcow2

#endif
