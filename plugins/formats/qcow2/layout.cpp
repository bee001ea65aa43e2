// qcow2 header, header extensions and L2 entries: see layout.hpp.
#include "layout.hpp"

#include <algorithm>
#include <cstring>

namespace vdkit::qcow2 {

namespace {

std::string hex(uint64_t v) {
    static const char digits[] = "0123456789abcdef";
    std::string s;
    do {
        s.insert(s.begin(), digits[v & 15]);
        v >>= 4;
    } while (v);
    return "0x" + s;
}
std::string at(uint64_t offset) {
    return " (header byte " + std::to_string(offset) + ")";
}
uint64_t align8(uint64_t v) {
    return (v + 7) & ~uint64_t(7);
}

// A table of `bytes` bytes at `offset`, cluster aligned, inside the file
// and not over the header cluster (qcow2.txt §Header: "Must be aligned to a
// cluster boundary"). `what` and `field` name it in the message.
std::optional<std::string> check_table(const Header &h, uint64_t offset, uint64_t bytes, uint64_t file_size,
                                       const char *what, uint64_t field) {
    if (offset % h.cluster_size())
        return std::string(what) + " offset " + std::to_string(offset) + " is not aligned to a cluster" + at(field);
    if (bytes == 0) return std::nullopt;
    if (offset == 0) return std::string(what) + " starts at offset 0, over the header" + at(field);
    if (offset > file_size || bytes > file_size - offset)
        return std::string(what) + " of " + std::to_string(bytes) + " bytes at offset " + std::to_string(offset) +
               " extends past the end of the file (" + std::to_string(file_size) + " bytes)" + at(field);
    return std::nullopt;
}

std::optional<std::string> parse_extensions(const unsigned char *buf, uint64_t start, uint64_t end, Header &h) {
    // qcow2.txt §Header extensions: type, length, data padded to 8 bytes,
    // until type 0 or the end of the area. Known types appear at most once.
    uint32_t seen = 0;
    auto once = [&](uint32_t bit, uint32_t type, uint64_t where) -> std::optional<std::string> {
        if (seen & bit) return "header extension " + hex(type) + " appears twice" + at(where);
        seen |= bit;
        return std::nullopt;
    };
    auto text = [&](const unsigned char *p, uint64_t n, uint64_t max, const char *what,
                    uint64_t where) -> std::optional<std::string> {
        if (n > max)
            return std::string(what) + " is " + std::to_string(n) + " bytes long, more than " + std::to_string(max) +
                   at(where);
        if (std::memchr(p, 0, static_cast<size_t>(n))) return std::string(what) + " contains a NUL byte" + at(where);
        return std::nullopt;
    };
    uint64_t off = start;
    while (off < end) {
        if (end - off < 8)
            return "header extension at byte " + std::to_string(off) + " is cut off by the end of the header cluster";
        const uint32_t type = static_cast<uint32_t>(load_be(buf + off, 4));
        const uint64_t len = load_be(buf + off + 4, 4);
        if (type == kExtEnd) return std::nullopt;
        if (len > end - off - 8)
            return "header extension " + hex(type) + " at byte " + std::to_string(off) + " claims " +
                   std::to_string(len) + " bytes, past the end of the header area (byte " + std::to_string(end) + ")";
        const unsigned char *data = buf + off + 8;
        std::optional<std::string> err;
        switch (type) {
        case kExtBackingFormat:
            if ((err = once(1, type, off)) || (err = text(data, len, 255, "the backing format name", off))) return err;
            h.backing_format.assign(reinterpret_cast<const char *>(data), static_cast<size_t>(len));
            break;
        case kExtFeatureNames:
            if ((err = once(2, type, off))) return err;
            for (uint64_t i = 0; i + 48 <= len; i += 48) {
                const char *name = reinterpret_cast<const char *>(data + i + 2);
                h.feature_names.push_back({data[i], data[i + 1], std::string(name, strnlen(name, 46))});
            }
            break;
        case kExtBitmaps:
            if ((err = once(4, type, off))) return err;
            h.has_bitmaps_ext = true; // kept as it is; vdkit does not read bitmaps
            break;
        case kExtCrypto:
            if ((err = once(8, type, off))) return err;
            h.has_crypto_ext = true;
            break;
        case kExtDataFile:
            if ((err = once(16, type, off)) || (err = text(data, len, 1023, "the external data file name", off)))
                return err;
            h.has_data_file_ext = true;
            h.data_file.assign(reinterpret_cast<const char *>(data), static_cast<size_t>(len));
            break;
        default:
            ++h.unknown_extensions;
            break; // "can be safely ignored"
        }
        const uint64_t next = off + 8 + align8(len);
        if (next <= off) break;
        off = next;
    }
    return std::nullopt;
}

} // namespace

std::string Header::feature_name(uint8_t type, uint8_t bit) const {
    for (const auto &f : feature_names)
        if (f.type == type && f.bit == bit) return f.name;
    return {};
}

uint64_t claimed_cluster_size(const unsigned char *buf, uint64_t len) {
    if (len < 24) return 0;
    const uint64_t bits = load_be(buf + 20, 4);
    if (bits < kMinClusterBits || bits > kMaxClusterBits) return 0;
    return 1ull << bits;
}

bool probe(const unsigned char *buf, uint64_t len) {
    if (len < 8 || load_be(buf, 4) != kMagic) return false;
    const uint64_t version = load_be(buf + 4, 4);
    return version == 2 || version == 3;
}

std::optional<std::string> parse_header(const unsigned char *buf, uint64_t len, uint64_t file_size, Header &h) {
    h = Header{};
    if (len < 8 || load_be(buf, 4) != kMagic) return std::string("no qcow2 magic (QFI\\xfb) at byte 0");
    h.version = static_cast<uint32_t>(load_be(buf + 4, 4));
    if (h.version != 2 && h.version != 3)
        return "unknown qcow2 version " + std::to_string(h.version) + at(4) + "; versions 2 and 3 are defined";
    const uint64_t fixed = h.version == 2 ? kV2HeaderLength : kV3HeaderLength;
    if (len < fixed)
        return "the file ends inside the version " + std::to_string(h.version) + " header (" + std::to_string(len) +
               " of " + std::to_string(fixed) + " bytes)";
    h.backing_file_offset = load_be(buf + 8, 8);
    h.backing_file_size = static_cast<uint32_t>(load_be(buf + 16, 4));
    h.cluster_bits = static_cast<uint32_t>(load_be(buf + 20, 4));
    h.size = load_be(buf + 24, 8);
    h.crypt_method = static_cast<uint32_t>(load_be(buf + 32, 4));
    h.l1_size = static_cast<uint32_t>(load_be(buf + 36, 4));
    h.l1_table_offset = load_be(buf + 40, 8);
    h.refcount_table_offset = load_be(buf + 48, 8);
    h.refcount_table_clusters = static_cast<uint32_t>(load_be(buf + 56, 4));
    h.nb_snapshots = static_cast<uint32_t>(load_be(buf + 60, 4));
    h.snapshots_offset = load_be(buf + 64, 8);
    if (h.version == 3) {
        h.incompatible = load_be(buf + 72, 8);
        h.compatible = load_be(buf + 80, 8);
        h.autoclear = load_be(buf + 88, 8);
        h.refcount_order = static_cast<uint32_t>(load_be(buf + 96, 4));
        h.header_length = static_cast<uint32_t>(load_be(buf + 100, 4));
    }

    // Cluster size first: every other bound depends on it.
    if (h.cluster_bits < kMinClusterBits || h.cluster_bits > kMaxClusterBits)
        return "cluster_bits " + std::to_string(h.cluster_bits) + at(20) +
               " is out of range (9 to 21: 512 bytes to 2 MiB)";
    const uint64_t cs = h.cluster_size();
    const uint64_t header_area = std::min(cs, len); // what of the first cluster we were given
    if (h.version == 3) {
        if (h.header_length < kV3HeaderLength || h.header_length % 8 || h.header_length > cs)
            return "header_length " + std::to_string(h.header_length) + at(100) +
                   " must be a multiple of 8 from 104 up to the cluster size";
        if (h.header_length > header_area)
            return "the file ends inside the header (header_length " + std::to_string(h.header_length) + ")";
        if (h.header_length > 104) h.compression_type = buf[104];
        if (h.refcount_order > 6)
            return "refcount_order " + std::to_string(h.refcount_order) + at(96) + " exceeds 6 (64-bit refcounts)";
    }

    // Header extensions, up to the backing name (or the cluster's end).
    uint64_t ext_end = header_area;
    if (h.backing_file_offset != 0) {
        if (h.backing_file_offset >= cs || h.backing_file_offset < h.header_length)
            return "backing_file_offset " + std::to_string(h.backing_file_offset) + at(8) +
                   " is not inside the header cluster after the header";
        if (h.backing_file_size > kMaxBackingNameLength)
            return "backing_file_size " + std::to_string(h.backing_file_size) + at(16) + " exceeds 1023 bytes";
        if (h.backing_file_offset + h.backing_file_size > header_area)
            return "the backing file name (" + std::to_string(h.backing_file_size) + " bytes at offset " +
                   std::to_string(h.backing_file_offset) + ") runs past the header cluster or the file";
        const unsigned char *name = buf + h.backing_file_offset;
        if (std::memchr(name, 0, h.backing_file_size))
            return "the backing file name contains a NUL byte" + at(h.backing_file_offset);
        h.backing_file.assign(reinterpret_cast<const char *>(name), h.backing_file_size);
        ext_end = h.backing_file_offset;
    }
    if (auto err = parse_extensions(buf, h.header_length, ext_end, h)) return err;

    // Features (qcow2.txt §Header bytes 72-95): what the layout needs.
    if (h.has_crypto_ext && h.crypt_method == kCryptNone)
        return std::string("a full disk encryption header extension in an unencrypted image");
    if (h.incompatible & kIncompatCompression) {
        if (h.header_length <= 104 || h.compression_type == kCompressionZlib)
            return "the compression type feature bit is set but compression_type" + at(104) + " is absent or zlib";
    } else if (h.compression_type != kCompressionZlib) {
        return "compression_type " + std::to_string(h.compression_type) + at(104) +
               " is not zlib but the compression type feature bit is clear";
    }
    if (h.compression_type != kCompressionZlib && h.compression_type != kCompressionZstd)
        return "unknown compression_type " + std::to_string(h.compression_type) + at(104) + " (0 zlib, 1 zstd)";
    if (h.extended_l2() && h.cluster_bits < 14)
        return "extended L2 entries need clusters of 16 KiB or more; cluster_bits is " +
               std::to_string(h.cluster_bits) + at(20);
    if ((h.autoclear & kAutoclearRawData) && !(h.incompatible & kIncompatDataFile))
        return std::string("the raw external data auto-clear bit is set without an external data file") + at(88);

    // Tables: sizes bounded before anything is allocated (CVE-2014-0143/0144).
    const uint64_t needed = h.size / h.l2_span() + (h.size % h.l2_span() != 0);
    if (uint64_t(h.l1_size) * 8 > kMaxL1Bytes)
        return "l1_size " + std::to_string(h.l1_size) + at(36) + " makes an L1 table over 32 MiB";
    if (needed > h.l1_size)
        return "the L1 table (l1_size " + std::to_string(h.l1_size) + at(36) + ") is too small for a disk of " +
               std::to_string(h.size) + " bytes (needs " + std::to_string(needed) + " entries)";
    if (auto err = check_table(h, h.l1_table_offset, uint64_t(h.l1_size) * 8, file_size, "the L1 table", 40))
        return err;
    if (uint64_t(h.refcount_table_clusters) * cs > kMaxRefcountTableBytes)
        return "refcount_table_clusters " + std::to_string(h.refcount_table_clusters) + at(56) +
               " makes a refcount table over 8 MiB";
    if (auto err = check_table(h, h.refcount_table_offset, uint64_t(h.refcount_table_clusters) * cs, file_size,
                               "the refcount table", 48))
        return err;
    if (h.nb_snapshots > kMaxSnapshots)
        return "nb_snapshots " + std::to_string(h.nb_snapshots) + at(60) + " exceeds 65536";
    // Each snapshot table entry takes at least 40 bytes (qcow2.txt §Snapshots).
    if (auto err =
            check_table(h, h.snapshots_offset, uint64_t(h.nb_snapshots) * 40, file_size, "the snapshot table", 64))
        return err;
    return std::nullopt;
}

std::optional<std::string> refusal(const Header &h) {
    // Features vdkit does not serve (qcow2.txt §Header bytes 32-35, 72-79).
    if (const uint64_t unknown = h.incompatible & ~kIncompatKnown) {
        unsigned bit = 0;
        while (!(unknown >> bit & 1))
            ++bit;
        const std::string name = h.feature_name(0, static_cast<uint8_t>(bit));
        return "unknown incompatible feature bit " + std::to_string(bit) +
               (name.empty() ? std::string() : " ('" + name + "')") + at(72) + " is set; vdkit cannot read this image";
    }
    if (h.incompatible & kIncompatDataFile)
        return "the image keeps its data in an external data file" +
               (h.data_file.empty() ? std::string() : " ('" + h.data_file + "')") +
               " (incompatible feature bit 2); vdkit refuses external qcow2 data files (another file the image "
               "would make vdkit open: CVE-2024-32498)";
    if (h.has_data_file_ext)
        return "an external data file name extension ('" + h.data_file +
               "') without the external data file feature bit";
    if (h.crypt_method != kCryptNone) {
        if (h.crypt_method == kCryptAes || h.crypt_method == kCryptLuks)
            return std::string("the image is encrypted (") + (h.crypt_method == kCryptAes ? "AES" : "LUKS") +
                   ", crypt_method " + std::to_string(h.crypt_method) + at(32) +
                   "): encrypted qcow2 images are refused until the crypt filter can serve them";
        return "unknown crypt_method " + std::to_string(h.crypt_method) + at(32);
    }
    return std::nullopt;
}

std::optional<std::string> decode_l2(const Header &h, uint64_t entry, uint64_t bitmap, uint32_t sc, Mapping &out) {
    out = Mapping{};
    if (entry & kL2Compressed) {
        // qcow2.txt §Cluster mapping, Compressed Clusters Descriptor.
        if (h.extended_l2() && bitmap) return std::string("a compressed cluster's subcluster bitmap is not zero");
        const uint32_t x = h.compressed_offset_bits();
        const uint64_t host = entry & ((1ull << x) - 1);
        const uint64_t sectors = (entry & ~kL2Copied & ~kL2Compressed) >> x;
        if (host >> 56) return "compressed cluster offset " + hex(host) + " uses bits beyond 55";
        out.kind = Kind::compressed;
        out.host_offset = host;
        out.compressed_bytes = (sectors + 1) * 512 - (host & 511);
        return std::nullopt;
    }
    // Standard Cluster Descriptor.
    const uint64_t offset = entry & kL2OffsetMask;
    if (entry & kL2StandardReserved)
        return "L2 entry " + hex(entry) + " has reserved bits set (an unaligned or oversized cluster offset)";
    if (offset % h.cluster_size()) return "L2 entry " + hex(entry) + " points at an offset not aligned to a cluster";
    if (!h.extended_l2()) {
        if (entry & kL2ZeroFlag) {
            if (h.version < 3) return "L2 entry " + hex(entry) + " has the zero flag, which version 2 does not have";
            out.kind = Kind::zero;
            return std::nullopt;
        }
        if (offset == 0) {
            if (entry & kL2Copied)
                return "L2 entry " + hex(entry) +
                       " is allocated at host offset 0 (only valid with an external data file)";
            return std::nullopt; // unallocated
        }
        out.kind = Kind::data;
        out.host_offset = offset;
        return std::nullopt;
    }
    // qcow2.txt §Extended L2 Entries: subcluster allocation bitmap.
    if (entry & kL2ZeroFlag) return "extended L2 entry " + hex(entry) + " has bit 0 set (always 0 with extended L2)";
    const uint32_t alloc = static_cast<uint32_t>(bitmap), zeros = static_cast<uint32_t>(bitmap >> 32);
    if (alloc & zeros) return "subcluster bitmap " + hex(bitmap) + " marks subclusters both allocated and zero";
    if (alloc && offset == 0)
        return "subcluster bitmap " + hex(bitmap) + " allocates subclusters of a cluster with no host offset";
    if (alloc >> sc & 1) {
        out.kind = Kind::data;
        out.host_offset = offset + uint64_t(sc) * h.subcluster_size();
    } else if (zeros >> sc & 1) {
        out.kind = Kind::zero;
    }
    return std::nullopt;
}

} // namespace vdkit::qcow2
