#include "layout.hpp"

#include "vdkit/text.hpp"

#include <cstring>

namespace vdkit::vhd {

namespace {

using sdk::hex;

constexpr char kCookie[8] = {'c', 'o', 'n', 'e', 'c', 't', 'i', 'x'};
constexpr char kDynCookie[8] = {'c', 'x', 's', 'p', 'a', 'r', 's', 'e'};

// Footer field offsets (§3.1).
struct F {
    static constexpr uint64_t features = 8, version = 12, data_offset = 16, timestamp = 24, creator_app = 28,
                              creator_version = 32, creator_os = 36, original_size = 40, current_size = 48,
                              geometry = 56, type = 60, checksum = 64, uuid = 68, saved_state = 84;
};
// Dynamic header field offsets (§3.2).
struct D {
    static constexpr uint64_t data_offset = 8, table_offset = 16, version = 24, max_entries = 28, block_size = 32,
                              checksum = 36, parent_uuid = 40, parent_timestamp = 56, parent_name = 64, locators = 576;
};

bool power_of_two(uint64_t v) {
    return v && !(v & (v - 1));
}

void put_utf8(std::string &out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

// UTF-16 (units of 2 bytes, big- or little-endian) to UTF-8, up to the
// first NUL. Unpaired surrogates become U+FFFD (§3.2: they occur).
std::string from_utf16(const unsigned char *p, uint64_t len, bool big_endian) {
    std::string out;
    auto unit = [&](uint64_t i) -> uint32_t {
        return big_endian ? (uint32_t(p[2 * i]) << 8 | p[2 * i + 1]) : (uint32_t(p[2 * i + 1]) << 8 | p[2 * i]);
    };
    const uint64_t n = len / 2;
    for (uint64_t i = 0; i < n; ++i) {
        const uint32_t u = unit(i);
        if (u == 0) break;
        if (u >= 0xD800 && u < 0xDC00 && i + 1 < n) {
            const uint32_t lo = unit(i + 1);
            if (lo >= 0xDC00 && lo < 0xE000) {
                put_utf8(out, 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00));
                ++i;
                continue;
            }
        }
        put_utf8(out, (u >= 0xD800 && u < 0xE000) ? 0xFFFD : u);
    }
    return out;
}

// UTF-8 to code points; false on invalid input.
bool code_points(std::string_view s, std::basic_string<uint32_t> &out) {
    for (size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        int extra = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
        if (extra < 0 || i + extra >= s.size()) return false;
        uint32_t cp = extra == 0 ? c : c & (0x3F >> extra);
        for (int k = 1; k <= extra; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc >> 6) != 2) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return false;
        out.push_back(cp);
        i += extra + 1;
    }
    return true;
}

std::optional<std::string> to_utf16(std::string_view utf8, bool big_endian) {
    std::basic_string<uint32_t> cps;
    if (!code_points(utf8, cps)) return std::nullopt;
    std::string out;
    auto put = [&](uint32_t u) {
        const char hi = static_cast<char>(u >> 8), lo = static_cast<char>(u & 0xFF);
        if (big_endian) {
            out.push_back(hi);
            out.push_back(lo);
        } else {
            out.push_back(lo);
            out.push_back(hi);
        }
    };
    for (uint32_t cp : cps) {
        if (cp >= 0x10000) {
            put(0xD800 + ((cp - 0x10000) >> 10));
            put(0xDC00 + ((cp - 0x10000) & 0x3FF));
        } else {
            put(cp);
        }
    }
    return out;
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

} // namespace

Geometry chs_for(uint64_t total) {
    // MS-VHD appendix "CHS Calculation", step by step (§3.4).
    if (total > kMaxChsSectors) total = kMaxChsSectors;
    uint64_t spt, heads, cth;
    if (total >= 65535ull * 16 * 63) {
        spt = 255;
        heads = 16;
        cth = total / spt;
    } else {
        spt = 17;
        cth = total / spt;
        heads = (cth + 1023) / 1024;
        if (heads < 4) heads = 4;
        if (cth >= heads * 1024 || heads > 16) {
            spt = 31;
            heads = 16;
            cth = total / spt;
        }
        if (cth >= heads * 1024) {
            spt = 63;
            heads = 16;
            cth = total / spt;
        }
    }
    return {static_cast<uint32_t>(cth / heads), static_cast<uint32_t>(heads), static_cast<uint32_t>(spt)};
}

bool Footer::size_from_chs() const {
    const std::string_view c = creator();
    const bool vpc_semantics = c == "vpc " || c == "vs  " || c == "qemu";
    return vpc_semantics && geometry.total() != kMaxChsSectors;
}

uint64_t Footer::disk_size() const {
    return size_from_chs() ? geometry.total() * kSector : current_size / kSector * kSector;
}

uint32_t checksum(const unsigned char *buf, uint64_t len, uint64_t at) {
    uint32_t sum = 0;
    for (uint64_t i = 0; i < len; ++i)
        if (i < at || i >= at + 4) sum += buf[i];
    return ~sum;
}

bool has_cookie(const unsigned char *buf, uint64_t len) {
    return len >= 8 && std::memcmp(buf, kCookie, 8) == 0;
}

std::optional<std::string> parse_footer(const unsigned char *in, uint64_t len, const std::string &where,
                                        bool verify_checksum, Footer &f) {
    if (len != kFooterSize && len != kOldFooterSize) return where + " is not 511 or 512 bytes";
    unsigned char buf[kFooterSize]{}; // a 511-byte footer reads with a zero last byte
    std::memcpy(buf, in, static_cast<size_t>(len));
    if (!has_cookie(buf, len)) return where + " has no \"conectix\" cookie";
    f = Footer{};
    f.checksum = static_cast<uint32_t>(load_be(buf + F::checksum, 4));
    const uint32_t sum = checksum(buf, kFooterSize, F::checksum);
    if (verify_checksum && sum != f.checksum)
        return where + ": checksum " + hex(f.checksum) + " (field at byte 64 of the footer) does not match the " +
               hex(sum) + " its bytes give (a damaged footer)";
    f.features = static_cast<uint32_t>(load_be(buf + F::features, 4));
    f.version = static_cast<uint32_t>(load_be(buf + F::version, 4));
    f.data_offset = load_be(buf + F::data_offset, 8);
    f.timestamp = static_cast<uint32_t>(load_be(buf + F::timestamp, 4));
    std::memcpy(f.creator_app.data(), buf + F::creator_app, 4);
    f.creator_version = static_cast<uint32_t>(load_be(buf + F::creator_version, 4));
    f.creator_os = static_cast<uint32_t>(load_be(buf + F::creator_os, 4));
    f.original_size = load_be(buf + F::original_size, 8);
    f.current_size = load_be(buf + F::current_size, 8);
    f.geometry = {static_cast<uint32_t>(load_be(buf + F::geometry, 2)), buf[F::geometry + 2], buf[F::geometry + 3]};
    f.type = static_cast<uint32_t>(load_be(buf + F::type, 4));
    std::memcpy(f.uuid.data(), buf + F::uuid, 16);
    f.saved_state = buf[F::saved_state];
    if (f.version >> 16 != 1) return where + ": file format version " + hex(f.version) + " (byte 12) is not 1.x";
    if (f.type != kTypeFixed && f.type != kTypeDynamic && f.type != kTypeDiff)
        return where + ": disk type " + std::to_string(f.type) +
               " (byte 60) is not fixed (2), dynamic (3) or differencing (4)";
    const uint64_t size = f.disk_size();
    if (size == 0) return where + ": the disk size is 0 (current size at byte 48, geometry at byte 56)";
    if (f.current_size > kMaxSize && !f.size_from_chs())
        return where + ": current size " + std::to_string(f.current_size) + " (byte 48) is beyond the VHD limit of " +
               std::to_string(kMaxSize) + " bytes";
    if (f.type != kTypeFixed && (f.data_offset == kNoDataOffset || f.data_offset % kSector))
        return where + ": data offset " + hex(f.data_offset) + " (byte 16) does not name a dynamic header";
    return std::nullopt;
}

void serialise_footer(Footer &f, unsigned char *buf) {
    std::memset(buf, 0, kFooterSize);
    std::memcpy(buf, kCookie, 8);
    store_be(buf + F::features, f.features, 4);
    store_be(buf + F::version, f.version, 4);
    store_be(buf + F::data_offset, f.data_offset, 8);
    store_be(buf + F::timestamp, f.timestamp, 4);
    std::memcpy(buf + F::creator_app, f.creator_app.data(), 4);
    store_be(buf + F::creator_version, f.creator_version, 4);
    store_be(buf + F::creator_os, f.creator_os, 4);
    store_be(buf + F::original_size, f.original_size, 8);
    store_be(buf + F::current_size, f.current_size, 8);
    store_be(buf + F::geometry, f.geometry.cylinders, 2);
    buf[F::geometry + 2] = static_cast<unsigned char>(f.geometry.heads);
    buf[F::geometry + 3] = static_cast<unsigned char>(f.geometry.sectors);
    store_be(buf + F::type, f.type, 4);
    std::memcpy(buf + F::uuid, f.uuid.data(), 16);
    buf[F::saved_state] = f.saved_state;
    f.checksum = checksum(buf, kFooterSize, F::checksum);
    store_be(buf + F::checksum, f.checksum, 4);
}

std::optional<std::string> parse_dynamic(const unsigned char *buf, uint64_t at, uint64_t disk_size, uint64_t file_size,
                                         bool verify_checksum, DynHeader &h) {
    const std::string where = "the dynamic header at byte " + std::to_string(at);
    if (std::memcmp(buf, kDynCookie, 8) != 0) return where + " has no \"cxsparse\" cookie";
    h = DynHeader{};
    h.checksum = static_cast<uint32_t>(load_be(buf + D::checksum, 4));
    const uint32_t sum = checksum(buf, kDynHeaderSize, D::checksum);
    if (verify_checksum && sum != h.checksum)
        return where + ": checksum " + hex(h.checksum) + " (field at byte " + std::to_string(at + D::checksum) +
               ") does not match the " + hex(sum) + " its bytes give (a damaged header)";
    h.table_offset = load_be(buf + D::table_offset, 8);
    h.version = static_cast<uint32_t>(load_be(buf + D::version, 4));
    h.max_entries = static_cast<uint32_t>(load_be(buf + D::max_entries, 4));
    h.block_size = static_cast<uint32_t>(load_be(buf + D::block_size, 4));
    std::memcpy(h.parent_uuid.data(), buf + D::parent_uuid, 16);
    h.parent_timestamp = static_cast<uint32_t>(load_be(buf + D::parent_timestamp, 4));
    std::memcpy(h.parent_name.data(), buf + D::parent_name, 512);
    for (int i = 0; i < 8; ++i) {
        const unsigned char *p = buf + D::locators + 24 * i;
        h.locators[i] = {static_cast<uint32_t>(load_be(p, 4)), static_cast<uint32_t>(load_be(p + 4, 4)),
                         static_cast<uint32_t>(load_be(p + 8, 4)), load_be(p + 16, 8)};
    }
    if (h.version >> 16 != 1)
        return where + ": version " + hex(h.version) + " (byte " + std::to_string(at + D::version) + ") is not 1.x";
    if (!power_of_two(h.block_size) || h.block_size < kMinBlockSize || h.block_size > kMaxBlockSize)
        return where + ": block size " + std::to_string(h.block_size) + " (byte " + std::to_string(at + D::block_size) +
               ") is not a power of two from 512 bytes to 256 MiB";
    const uint64_t needed = needed_entries(disk_size, h.block_size);
    if (h.max_entries < needed)
        return where + ": " + std::to_string(h.max_entries) + " BAT entries (byte " +
               std::to_string(at + D::max_entries) + ") of " + std::to_string(h.block_size) +
               "-byte blocks cannot hold the disk size " + std::to_string(disk_size);
    if (needed > kMaxBatEntries)
        return where + ": the disk needs " + std::to_string(needed) + " BAT entries of " +
               std::to_string(h.block_size) + "-byte blocks, more than the " + std::to_string(kMaxBatEntries) +
               " vdkit holds in memory";
    if (h.table_offset % kSector || (h.table_offset < at + kDynHeaderSize && h.table_offset + needed * 4 > at))
        return where + ": BAT offset " + hex(h.table_offset) + " (byte " + std::to_string(at + D::table_offset) +
               ") is not sector aligned or overlaps the header";
    if (h.table_offset > file_size || needed * 4 > file_size - h.table_offset)
        return where + ": the BAT (" + std::to_string(needed) + " entries at " + hex(h.table_offset) +
               ") extends beyond the end of the file (" + std::to_string(file_size) + " bytes)";
    // The table as declared (max table entries): only the entries the disk
    // needs are used, but a declared extent past the file or past what
    // vdkit holds is an implausible field, refused by name before anything
    // is allocated (never reported as damaged data blocks).
    if (h.max_entries > kMaxBatEntries || h.table_offset + uint64_t(h.max_entries) * 4 > file_size)
        return where + ": max table entries " + std::to_string(h.max_entries) + " (byte " +
               std::to_string(at + D::max_entries) + ") declares a BAT of " +
               std::to_string(uint64_t(h.max_entries) * 4) + " bytes at " + hex(h.table_offset) +
               ", beyond the end of the file (" + std::to_string(file_size) + " bytes) or the " +
               std::to_string(kMaxBatEntries) + " entries vdkit accepts; the disk needs " + std::to_string(needed) +
               " (a damaged header field; not repaired)";
    return std::nullopt;
}

void serialise_dynamic(DynHeader &h, unsigned char *buf) {
    std::memset(buf, 0, kDynHeaderSize);
    std::memcpy(buf, kDynCookie, 8);
    store_be(buf + D::data_offset, kNoDataOffset, 8);
    store_be(buf + D::table_offset, h.table_offset, 8);
    store_be(buf + D::version, h.version, 4);
    store_be(buf + D::max_entries, h.max_entries, 4);
    store_be(buf + D::block_size, h.block_size, 4);
    std::memcpy(buf + D::parent_uuid, h.parent_uuid.data(), 16);
    store_be(buf + D::parent_timestamp, h.parent_timestamp, 4);
    std::memcpy(buf + D::parent_name, h.parent_name.data(), 512);
    for (int i = 0; i < 8; ++i) {
        unsigned char *p = buf + D::locators + 24 * i;
        store_be(p, h.locators[i].code, 4);
        store_be(p + 4, h.locators[i].space, 4);
        store_be(p + 8, h.locators[i].length, 4);
        store_be(p + 16, h.locators[i].offset, 8);
    }
    h.checksum = checksum(buf, kDynHeaderSize, D::checksum);
    store_be(buf + D::checksum, h.checksum, 4);
}

std::string parent_name(const DynHeader &h) {
    return from_utf16(h.parent_name.data(), h.parent_name.size(), true);
}

bool set_parent_name(DynHeader &h, std::string_view name) {
    auto u = to_utf16(name, true);
    if (!u || u->size() > h.parent_name.size() - 2) return false;
    h.parent_name.fill(0);
    std::memcpy(h.parent_name.data(), u->data(), u->size());
    return true;
}

std::optional<std::string> locator_text(uint32_t code, const unsigned char *data, uint64_t len) {
    std::string s;
    switch (code) {
    case kPlatW2ku:
    case kPlatW2ru:
        s = from_utf16(data, len, false);
        break;
    case kPlatWi2k:
    case kPlatWi2r:
        s.assign(reinterpret_cast<const char *>(data), strnlen(reinterpret_cast<const char *>(data), len));
        break;
    case kPlatMacX: {
        const std::string url(reinterpret_cast<const char *>(data), strnlen(reinterpret_cast<const char *>(data), len));
        if (url.rfind("file://", 0) != 0) return std::nullopt;
        const size_t slash = url.find('/', 7); // file://host/path: the host is dropped
        if (slash == std::string::npos) return std::nullopt;
        for (size_t i = slash; i < url.size(); ++i) {
            if (url[i] == '%' && i + 2 < url.size() && hex_digit(url[i + 1]) >= 0 && hex_digit(url[i + 2]) >= 0) {
                s.push_back(static_cast<char>(hex_digit(url[i + 1]) * 16 + hex_digit(url[i + 2])));
                i += 2;
            } else {
                s.push_back(url[i]);
            }
        }
        break;
    }
    default:
        return std::nullopt; // "Mac " alias blobs and unknown codes name no path vdkit can use
    }
    if (s.empty()) return std::nullopt;
    return s;
}

std::optional<std::string> utf16le(std::string_view utf8) {
    return to_utf16(utf8, false);
}

uint32_t vhd_time(int64_t unix_seconds) {
    const int64_t t = unix_seconds - 946684800; // 2000-01-01 00:00:00 UTC
    return t < 0 ? 0u : t > int64_t(UINT32_MAX) ? UINT32_MAX : static_cast<uint32_t>(t);
}

} // namespace vdkit::vhd
