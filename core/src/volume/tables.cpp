// Partition tables: MBR with its extended/logical chain (formats.md §5.1),
// GPT with both headers and their CRCs (§5.2), protective and hybrid MBR,
// 512- and 4096-byte logical sectors, and the pitfalls of §8.5. Our own
// parser, not libfdisk's: libfdisk (and libblkid's partition probing) read
// only from a file descriptor, and vdkit's disks are chains of images behind
// plugins and transports (docs/dependencies.md).
#include "volume/scan.hpp"

#include "vdkit/endian.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <set>

namespace vdkit {
inline namespace v1 {

const char *to_string(VolumeKind kind) noexcept {
    switch (kind) {
    case VolumeKind::whole_disk:
        return "whole-disk";
    case VolumeKind::primary:
        return "primary";
    case VolumeKind::extended:
        return "extended";
    case VolumeKind::logical:
        return "logical";
    case VolumeKind::gpt:
        return "gpt";
    case VolumeKind::lvm:
        return "lvm";
    }
    return "unknown";
}

} // namespace v1

namespace volume {
using sdk::load_le;

Status Reader::read(uint64_t off, void *buf, uint64_t len, bool &inside) const {
    inside = off <= size && len <= size - off;
    if (!inside) return Status::ok();
    return (*fn)(off, buf, len);
}

uint32_t crc32(const unsigned char *p, size_t n, uint32_t crc) noexcept {
    static const std::array<uint32_t, 256> table = [] {
        std::array<uint32_t, 256> t{};
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k)
                c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    crc = ~crc;
    for (size_t i = 0; i < n; ++i)
        crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

std::string guid_text(const unsigned char *p) {
    char s[37];
    std::snprintf(s, sizeof s, "%08X-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X", static_cast<unsigned>(load_le(p, 4)),
                  static_cast<unsigned>(load_le(p + 4, 2)), static_cast<unsigned>(load_le(p + 6, 2)), p[8], p[9], p[10],
                  p[11], p[12], p[13], p[14], p[15]);
    return s;
}

namespace {

using Findings = std::vector<VolumeFinding>;

void finding(Findings &f, FindingSeverity sev, std::optional<uint64_t> off, std::string msg) {
    f.push_back(VolumeFinding{sev, off, std::move(msg)});
}
void damage(Findings &f, uint64_t off, std::string msg) {
    finding(f, FindingSeverity::error, off, std::move(msg));
}
void note(Findings &f, std::optional<uint64_t> off, std::string msg) {
    finding(f, FindingSeverity::note, off, std::move(msg));
}

std::string hex_text(uint64_t v) {
    char s[24];
    std::snprintf(s, sizeof s, "0x%llx", static_cast<unsigned long long>(v));
    return s;
}

// MBR type bytes (formats.md §5.1, LY-MBR).
const char *mbr_type_name(uint8_t t) {
    switch (t) {
    case 0x01:
        return "FAT12";
    case 0x04:
    case 0x06:
    case 0x0E:
        return "FAT16";
    case 0x05:
    case 0x0F:
    case 0x85:
        return "Extended";
    case 0x07:
        return "HPFS/NTFS/exFAT";
    case 0x0B:
    case 0x0C:
        return "W95 FAT32";
    case 0x42:
        return "Windows LDM";
    case 0x82:
        return "Linux swap";
    case 0x83:
        return "Linux";
    case 0x8E:
        return "Linux LVM";
    case 0xA5:
        return "FreeBSD";
    case 0xA6:
        return "OpenBSD";
    case 0xA9:
        return "NetBSD";
    case 0xAF:
        return "HFS";
    case 0xEE:
        return "GPT protective";
    case 0xEF:
        return "EFI System";
    case 0xFB:
        return "VMFS";
    case 0xFC:
        return "VMware swap";
    case 0xFD:
        return "Linux RAID";
    default:
        return "";
    }
}
bool is_extended(uint8_t t) {
    return t == 0x05 || t == 0x0F || t == 0x85;
}

// GPT type GUIDs (formats.md §5.2, LY-GPT).
const char *gpt_type_name(const std::string &g) {
    static const std::pair<const char *, const char *> names[] = {
        {"C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EFI System"},
        {"21686148-6449-6E6F-744E-656564454649", "BIOS boot"},
        {"E3C9E316-0B5C-4DB8-817D-F92DF00215AE", "Microsoft reserved"},
        {"EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "Microsoft basic data"},
        {"DE94BBA4-06D1-4D40-A16A-BFD50179D6AC", "Windows recovery environment"},
        {"0FC63DAF-8483-4772-8E79-3D69D8477DE4", "Linux filesystem"},
        {"0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "Linux swap"},
        {"E6D6D379-F507-44C2-A23C-238F2A3DF928", "Linux LVM"},
        {"A19D880F-05FC-4D3B-A006-743F0F84911E", "Linux RAID"},
        {"CA7D7CCB-63ED-4C53-861C-1742536059CC", "Linux LUKS"},
        {"4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "Linux root (x86-64)"},
        {"933AC7E1-2EB4-4F13-B844-0E14E2AEF915", "Linux home"},
        {"48465300-0000-11AA-AA11-00306543ECAC", "Apple HFS+"},
        {"7C3457EF-0000-11AA-AA11-00306543ECAC", "Apple APFS"},
        {"AA31E02A-400F-11DB-9590-000C2911D1B8", "VMware VMFS"},
        {"516E7CB6-6ECF-11D6-8FF8-00022D09712B", "FreeBSD UFS"},
    };
    for (const auto &[guid, name] : names)
        if (g == guid) return name;
    return "";
}

// UTF-16LE (NUL-terminated within n code units) to UTF-8.
std::string utf16_name(const unsigned char *p, size_t units) {
    std::string out;
    for (size_t i = 0; i < units; ++i) {
        uint32_t c = static_cast<uint32_t>(load_le(p + 2 * i, 2));
        if (c == 0) break;
        if (c >= 0xD800 && c < 0xDC00 && i + 1 < units) {
            const auto lo = static_cast<uint32_t>(load_le(p + 2 * (i + 1), 2));
            if (lo >= 0xDC00 && lo < 0xE000) {
                c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
                ++i;
            } else
                c = 0xFFFD;
        } else if (c >= 0xD800 && c < 0xE000)
            c = 0xFFFD;
        if (c < 0x80)
            out += static_cast<char>(c);
        else if (c < 0x800) {
            out += static_cast<char>(0xC0 | (c >> 6));
            out += static_cast<char>(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            out += static_cast<char>(0xE0 | (c >> 12));
            out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (c & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (c >> 18));
            out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (c & 0x3F));
        }
    }
    return out;
}

struct MbrEntry {
    uint8_t status = 0, type = 0;
    uint32_t start = 0, count = 0;
};
std::array<MbrEntry, 4> mbr_entries(const unsigned char *s) {
    std::array<MbrEntry, 4> e{};
    for (int i = 0; i < 4; ++i) {
        const unsigned char *p = s + 446 + 16 * i;
        e[i] =
            MbrEntry{p[0], p[4], static_cast<uint32_t>(load_le(p + 8, 4)), static_cast<uint32_t>(load_le(p + 12, 4))};
    }
    return e;
}
bool has_signature(const unsigned char *s) {
    return s[510] == 0x55 && s[511] == 0xAA;
}

// A FAT/NTFS/exFAT boot sector also ends in 55AA (formats.md §8.5 item 1):
// a BPB, or any status byte other than 0x00/0x80, means no partition table.
bool looks_like_boot_sector(const unsigned char *s) {
    const bool jump = (s[0] == 0xEB && s[2] == 0x90) || s[0] == 0xE9;
    if (!jump) return false;
    if (std::memcmp(s + 3, "NTFS    ", 8) == 0 || std::memcmp(s + 3, "EXFAT   ", 8) == 0) return true;
    const auto bps = static_cast<uint32_t>(load_le(s + 11, 2));
    const bool pow2 = bps >= 512 && bps <= 4096 && (bps & (bps - 1)) == 0;
    return pow2 && s[0x10] >= 1 && s[0x10] <= 2 && (s[0x15] == 0xF0 || s[0x15] >= 0xF8);
}

struct Scan {
    const Reader &r;
    const VolumeOptions &opt;
    VolumeList &out;
    uint64_t ss = 512;
    uint64_t sectors() const { return r.size / ss; }
};

Volume make_volume(uint32_t index, VolumeKind kind, uint64_t offset, uint64_t length) {
    Volume v;
    v.index = index;
    v.kind = kind;
    v.offset = offset;
    v.length = length;
    v.extents.push_back(VolumeExtent{offset, length});
    return v;
}

// Two overlapping partitions: neither is mounted, since a filesystem
// mounted on one could write into the other. A reason already given (past
// the end, extended) is kept.
void mark_overlap(Volume &a, Volume &b) {
    const auto mark = [](Volume &v, const Volume &other) {
        if (v.not_mountable.empty())
            v.not_mountable =
                "it overlaps partition " + std::to_string(other.index) + " (mounting one could write into the other)";
    };
    mark(a, b);
    mark(b, a);
}

// ---- GPT (formats.md §5.2) ----

struct GptHeader {
    uint64_t my_lba = 0, alternate = 0, first_usable = 0, last_usable = 0, entries_lba = 0;
    uint32_t count = 0, entry_size = 0, array_crc = 0;
    std::string disk_guid;
};

// Validate the header in block `lba`; "" when good, else why not.
Status read_gpt_header(Scan &s, uint64_t lba, std::optional<GptHeader> &hdr, std::string &why) {
    std::vector<unsigned char> b(s.ss);
    bool inside = false;
    if (lba >= s.sectors()) return why = "the block is past the disk's end", Status::ok();
    VDKIT_TRY(s.r.read(lba * s.ss, b.data(), b.size(), inside));
    if (!inside) return why = "the block is past the disk's end", Status::ok();
    if (std::memcmp(b.data(), "EFI PART", 8) != 0) return why = "no 'EFI PART' signature", Status::ok();
    if (load_le(b.data() + 8, 4) >> 16 != 1) return why = "revision is not 1.x", Status::ok();
    const auto hsize = static_cast<uint32_t>(load_le(b.data() + 12, 4));
    if (hsize < 92 || hsize > s.ss) return why = "header size " + std::to_string(hsize) + " out of range", Status::ok();
    const auto stored = static_cast<uint32_t>(load_le(b.data() + 16, 4));
    std::memset(b.data() + 16, 0, 4);
    const uint32_t crc = crc32(b.data(), hsize);
    if (crc != stored) return why = "header CRC " + hex_text(stored) + " should be " + hex_text(crc), Status::ok();
    GptHeader h;
    h.my_lba = load_le(b.data() + 24, 8);
    h.alternate = load_le(b.data() + 32, 8);
    h.first_usable = load_le(b.data() + 40, 8);
    h.last_usable = load_le(b.data() + 48, 8);
    h.disk_guid = guid_text(b.data() + 56);
    h.entries_lba = load_le(b.data() + 72, 8);
    h.count = static_cast<uint32_t>(load_le(b.data() + 80, 4));
    h.entry_size = static_cast<uint32_t>(load_le(b.data() + 84, 4));
    h.array_crc = static_cast<uint32_t>(load_le(b.data() + 88, 4));
    if (h.my_lba != lba)
        return why = "MyLBA " + std::to_string(h.my_lba) + " is not its own block " + std::to_string(lba), Status::ok();
    if (h.first_usable > h.last_usable || h.last_usable >= s.sectors())
        return why = "usable range " + std::to_string(h.first_usable) + ".." + std::to_string(h.last_usable) +
                     " is not inside the disk",
               Status::ok();
    if (h.entry_size < 128 || (h.entry_size & (h.entry_size - 1)) != 0 || h.entry_size > 4096)
        return why = "entry size " + std::to_string(h.entry_size) + " is not 128·2^n", Status::ok();
    if (h.count > kMaxGptEntries)
        return why = std::to_string(h.count) + " entries (vdkit reads at most " + std::to_string(kMaxGptEntries) + ")",
               Status::ok();
    hdr = h;
    return Status::ok();
}

Status read_gpt_array(Scan &s, const GptHeader &h, std::vector<unsigned char> &arr, std::string &why) {
    arr.assign(static_cast<size_t>(h.count) * h.entry_size, 0);
    if (h.entries_lba > s.sectors()) return why = "entry array is past the disk's end", Status::ok();
    bool inside = false;
    VDKIT_TRY(s.r.read(h.entries_lba * s.ss, arr.data(), arr.size(), inside));
    if (!inside) return why = "entry array is past the disk's end", Status::ok();
    const uint32_t crc = crc32(arr.data(), arr.size());
    if (crc != h.array_crc) why = "entry array CRC " + hex_text(h.array_crc) + " should be " + hex_text(crc);
    return Status::ok();
}

Status scan_gpt(Scan &s) {
    VolumeList &out = s.out;
    if (s.sectors() < 3) {
        damage(out.findings, 0,
               "a GPT needs at least 3 sectors of " + std::to_string(s.ss) + " bytes; the disk has " +
                   std::to_string(s.sectors()));
        return Status::ok();
    }
    std::optional<GptHeader> primary, backup;
    std::string why_p, why_b, arr_p, arr_b;
    std::vector<unsigned char> array_p, array_b;
    VDKIT_TRY(read_gpt_header(s, 1, primary, why_p));
    if (primary) VDKIT_TRY(read_gpt_array(s, *primary, array_p, arr_p));
    uint64_t backup_lba = s.sectors() - 1;
    if (primary && primary->alternate < s.sectors() && primary->alternate > 1) backup_lba = primary->alternate;
    VDKIT_TRY(read_gpt_header(s, backup_lba, backup, why_b));
    if (!backup && backup_lba != s.sectors() - 1) {
        why_b.clear();
        backup_lba = s.sectors() - 1;
        VDKIT_TRY(read_gpt_header(s, backup_lba, backup, why_b));
    }
    if (backup) VDKIT_TRY(read_gpt_array(s, *backup, array_b, arr_b));
    const GptHeader *use = nullptr;
    const std::vector<unsigned char> *arr = nullptr;
    if (primary && arr_p.empty()) {
        use = &*primary;
        arr = &array_p;
        if (!backup)
            damage(out.findings, backup_lba * s.ss,
                   "backup GPT header (LBA " + std::to_string(backup_lba) + ") is damaged: " + why_b);
        else if (!arr_b.empty())
            damage(out.findings, backup->entries_lba * s.ss, "backup GPT " + arr_b);
    } else if (backup && arr_b.empty()) {
        use = &*backup;
        arr = &array_b;
        damage(out.findings, s.ss,
               "primary GPT " + (primary ? arr_p : "header (LBA 1) is damaged: " + why_p) + "; the backup GPT at LBA " +
                   std::to_string(backup_lba) + " was used");
    } else {
        damage(out.findings, s.ss,
               "no valid GPT: primary " + (primary ? arr_p : why_p) + "; backup " + (backup ? arr_b : why_b));
        return Status::ok();
    }
    out.table = "gpt";
    out.disk_id = use->disk_guid;
    struct Span {
        uint64_t first, last;
        uint32_t index;
    };
    std::vector<Span> spans;
    for (uint32_t i = 0; i < use->count; ++i) {
        const unsigned char *e = arr->data() + static_cast<size_t>(i) * use->entry_size;
        static const unsigned char zero[16] = {};
        if (std::memcmp(e, zero, 16) == 0) continue;
        const uint64_t first = load_le(e + 32, 8), last = load_le(e + 40, 8);
        const uint32_t index = i + 1;
        const uint64_t entry_off = use->entries_lba * s.ss + static_cast<uint64_t>(i) * use->entry_size;
        if (first > last) {
            damage(out.findings, entry_off,
                   "GPT entry " + std::to_string(index) + ": first LBA " + std::to_string(first) +
                       " is after its last LBA " + std::to_string(last) + "; skipped");
            continue;
        }
        // first, last < 2^64; in bytes they may overflow: clip to the disk.
        const bool past_end = last >= s.sectors();
        const uint64_t off = first < s.sectors() ? first * s.ss : s.r.size;
        const uint64_t end = past_end ? s.r.size : (last + 1) * s.ss;
        Volume v = make_volume(index, VolumeKind::gpt, off, end - off);
        v.type_guid = guid_text(e);
        v.type_name = gpt_type_name(v.type_guid);
        v.part_uuid = guid_text(e + 16);
        v.attributes = load_le(e + 48, 8);
        v.name = utf16_name(e + 56, std::min<size_t>(36, (use->entry_size - 56) / 2));
        if (past_end) {
            v.not_mountable = "it extends past the disk's end";
            damage(out.findings, entry_off,
                   "GPT entry " + std::to_string(index) + " (LBA " + std::to_string(first) + ".." +
                       std::to_string(last) + ") extends past the disk's end (" + std::to_string(s.sectors()) +
                       " sectors)");
        } else if (first < use->first_usable || last > use->last_usable) {
            damage(out.findings, entry_off,
                   "GPT entry " + std::to_string(index) + " lies outside the usable range " +
                       std::to_string(use->first_usable) + ".." + std::to_string(use->last_usable));
        }
        spans.push_back(Span{first, last, index});
        out.volumes.push_back(std::move(v));
    }
    std::sort(spans.begin(), spans.end(), [](const Span &a, const Span &b) { return a.first < b.first; });
    for (size_t i = 1; i < spans.size(); ++i)
        for (size_t j = 0; j < i; ++j)
            if (spans[j].last >= spans[i].first) {
                damage(out.findings, spans[i].first * s.ss,
                       "GPT partitions " + std::to_string(spans[j].index) + " and " + std::to_string(spans[i].index) +
                           " overlap");
                Volume *a = nullptr, *b = nullptr;
                for (Volume &v : out.volumes) {
                    if (v.index == spans[j].index) a = &v;
                    if (v.index == spans[i].index) b = &v;
                }
                if (a && b) mark_overlap(*a, *b);
            }
    return Status::ok();
}

// ---- MBR and the EBR chain (formats.md §5.1) ----

void check_overlaps(VolumeList &out, uint64_t ss) {
    std::vector<Volume *> vs;
    for (Volume &v : out.volumes)
        if (v.kind == VolumeKind::primary || v.kind == VolumeKind::logical || v.kind == VolumeKind::extended)
            vs.push_back(&v);
    for (size_t i = 0; i < vs.size(); ++i)
        for (size_t j = i + 1; j < vs.size(); ++j) {
            Volume &a = *vs[i], &b = *vs[j];
            // A logical partition lies inside its extended one by design.
            if ((a.kind == VolumeKind::extended && b.kind == VolumeKind::logical) ||
                (b.kind == VolumeKind::extended && a.kind == VolumeKind::logical))
                continue;
            if (a.length && b.length && a.offset < b.offset + b.length && b.offset < a.offset + a.length) {
                damage(out.findings, std::max(a.offset, b.offset),
                       "partitions " + std::to_string(a.index) + " and " + std::to_string(b.index) +
                           " overlap (sectors " + std::to_string(a.offset / ss) + "+" + std::to_string(a.length / ss) +
                           " and " + std::to_string(b.offset / ss) + "+" + std::to_string(b.length / ss) + ")");
                mark_overlap(a, b);
            }
        }
}

// A partition [start, start+count) sectors: clipped to the disk, with a
// finding when it passes the end.
Volume mbr_volume(Scan &s, uint32_t index, VolumeKind kind, const MbrEntry &e, uint64_t abs_start, uint64_t where) {
    const uint64_t start = abs_start, end = abs_start + e.count; // < 2^33: no overflow
    const uint64_t n = s.sectors();
    const uint64_t off = std::min(start, n) * s.ss, stop = std::min(end, n) * s.ss;
    Volume v = make_volume(index, kind, off, stop - off);
    v.mbr_type = e.type;
    v.bootable = e.status == 0x80;
    v.type_name = mbr_type_name(e.type);
    if (end > n) {
        v.not_mountable = "it extends past the disk's end";
        damage(s.out.findings, where,
               "partition " + std::to_string(index) + " (sectors " + std::to_string(start) + "+" +
                   std::to_string(e.count) + ") extends past the disk's end (" + std::to_string(n) + " sectors)");
    }
    return v;
}

Status scan_logicals(Scan &s, const Volume &ext, uint64_t ext_start, uint64_t ext_count) {
    std::set<uint64_t> seen;
    uint64_t ebr = ext_start;
    uint32_t index = 5;
    unsigned empty_links = 0;
    std::vector<unsigned char> b(s.ss);
    for (unsigned link = 0;; ++link) {
        const uint64_t where = ebr * s.ss;
        if (link >= kMaxLogical) {
            damage(s.out.findings, where,
                   "the logical partition chain has more than " + std::to_string(kMaxLogical) + " links; stopped");
            break;
        }
        if (!seen.insert(ebr).second) {
            damage(s.out.findings, where,
                   "the logical partition chain loops back to the EBR at sector " + std::to_string(ebr) + "; stopped");
            break;
        }
        if (ebr < ext_start || ebr >= ext_start + ext_count) {
            damage(s.out.findings, where,
                   "an EBR link points outside the extended partition (sector " + std::to_string(ebr) + "); stopped");
            break;
        }
        bool inside = false;
        VDKIT_TRY(s.r.read(where, b.data(), b.size(), inside));
        if (!inside) {
            damage(s.out.findings, where,
                   "the EBR at sector " + std::to_string(ebr) + " is past the disk's end; stopped");
            break;
        }
        if (!has_signature(b.data())) {
            damage(s.out.findings, where,
                   "the EBR at sector " + std::to_string(ebr) + " has no 55AA signature; stopped");
            break;
        }
        const auto e = mbr_entries(b.data());
        uint64_t next = 0;
        bool data = false;
        for (int i = 0; i < 4; ++i) {
            if (e[i].type == 0 || e[i].count == 0) continue;
            if (is_extended(e[i].type)) {
                if (!next) next = ext_start + e[i].start; // relative to the first EBR
                continue;
            }
            // Entry 1 is the logical partition; entries 3 and 4 only when
            // inside this EBR's span (Linux's rule, §8.5 item 2).
            if (i >= 2 && ebr + e[i].start + e[i].count > ext_start + ext_count) continue;
            if (data) continue; // one logical per EBR
            data = true;
            Volume v = mbr_volume(s, index++, VolumeKind::logical, e[i], ebr + e[i].start, where + 446 + 16 * i);
            v.parent = ext.index;
            if (ebr + e[i].start + e[i].count > ext_start + ext_count && v.not_mountable.empty())
                damage(s.out.findings, where + 446 + 16 * i,
                       "logical partition " + std::to_string(v.index) + " extends past its extended partition");
            s.out.volumes.push_back(std::move(v));
        }
        if (!data && ++empty_links > 100) {
            damage(s.out.findings, where, "more than 100 EBR links without a partition; stopped");
            break;
        }
        if (!next) break;
        ebr = next;
    }
    return Status::ok();
}

// Sector size: an explicit option, else a GPT header at 512 or 4096 (§5.2),
// else the first EBR's signature at its 512- or 4096-byte address (§5.1).
Status detect_sector_size(Scan &s, const unsigned char *mbr) {
    if (s.opt.sector_size) return s.ss = s.opt.sector_size, Status::ok();
    unsigned char sig[8];
    bool inside = false;
    for (uint64_t ss : {512u, 4096u}) {
        VDKIT_TRY(s.r.read(ss, sig, 8, inside));
        if (inside && std::memcmp(sig, "EFI PART", 8) == 0) return s.ss = ss, Status::ok();
    }
    for (const MbrEntry &e : mbr_entries(mbr)) {
        if (!is_extended(e.type) || e.start == 0) continue;
        for (uint64_t ss : {512u, 4096u}) {
            unsigned char tail[2];
            VDKIT_TRY(s.r.read(e.start * ss + 510, tail, 2, inside));
            if (inside && tail[0] == 0x55 && tail[1] == 0xAA) return s.ss = ss, Status::ok();
        }
    }
    s.ss = 512;
    return Status::ok();
}

Status scan_mbr(Scan &s, const unsigned char *mbr) {
    VolumeList &out = s.out;
    const auto e = mbr_entries(mbr);
    bool protective = false, others = false;
    for (const MbrEntry &m : e) {
        if (m.type == 0xEE)
            protective = true;
        else if (m.type != 0)
            others = true;
    }
    char sig[9];
    std::snprintf(sig, sizeof sig, "%08x", static_cast<unsigned>(load_le(mbr + 440, 4)));
    unsigned char gpt_sig[8];
    bool inside = false;
    VDKIT_TRY(s.r.read(s.ss, gpt_sig, 8, inside));
    const bool gpt_here = inside && std::memcmp(gpt_sig, "EFI PART", 8) == 0;
    if (protective || gpt_here) {
        // The UEFI rule (§8.5 item 3): with a valid GPT the MBR is
        // protective only; a hybrid MBR's other entries are reported, not used.
        const size_t before = out.findings.size();
        VDKIT_TRY(scan_gpt(s));
        if (out.table == "gpt") {
            if (others)
                note(out.findings, 446, "hybrid MBR: its entries beside the 0xEE one are ignored (the GPT wins)");
            if (!protective) note(out.findings, 446, "the MBR has no protective 0xEE entry; the GPT was used");
            return Status::ok();
        }
        if (!others) return Status::ok(); // the GPT finding says why nothing is listed
        out.findings.resize(before);
        note(out.findings, s.ss, "the MBR has a 0xEE entry but no valid GPT; the MBR's other entries are used");
    }
    out.table = "mbr";
    out.disk_id = sig;
    for (int i = 0; i < 4; ++i) {
        const MbrEntry &m = e[i];
        if (m.type == 0 || m.count == 0 || m.type == 0xEE) continue;
        const uint64_t where = 446 + 16 * static_cast<uint64_t>(i);
        Volume v = mbr_volume(s, static_cast<uint32_t>(i + 1),
                              is_extended(m.type) ? VolumeKind::extended : VolumeKind::primary, m, m.start, where);
        if (m.start == 0)
            damage(out.findings, where, "partition " + std::to_string(i + 1) + " starts at sector 0 (the MBR)");
        if (is_extended(m.type)) {
            v.not_mountable = "it is an extended partition (it holds the logical partitions)";
            const Volume copy = v;
            out.volumes.push_back(std::move(v));
            VDKIT_TRY(scan_logicals(s, copy, m.start, m.count));
        } else {
            out.volumes.push_back(std::move(v));
        }
    }
    std::sort(out.volumes.begin(), out.volumes.end(),
              [](const Volume &a, const Volume &b) { return a.index < b.index; });
    check_overlaps(out, s.ss);
    return Status::ok();
}

} // namespace

} // namespace volume

inline namespace v1 {

Result<VolumeList> list_volumes(uint64_t disk_size, const VolumeReadFunction &read, const VolumeOptions &options) {
    using namespace volume;
    if (options.sector_size != 0 && options.sector_size != 512 && options.sector_size != 4096)
        return Status(VDKIT_E_INVALID_ARGUMENT,
                      "sector size " + std::to_string(options.sector_size) + ": expected 512 or 4096 (or 0 to detect)");
    if (!read) return Status(VDKIT_E_INVALID_ARGUMENT, "no read function");
    Reader r{disk_size, &read};
    VolumeList out;
    Scan s{r, options, out};
    std::vector<unsigned char> mbr(512);
    bool inside = false;
    VDKIT_TRY(r.read(0, mbr.data(), mbr.size(), inside));
    if (inside && has_signature(mbr.data()) && !looks_like_boot_sector(mbr.data())) {
        bool statuses_ok = true;
        for (const MbrEntry &m : mbr_entries(mbr.data()))
            statuses_ok &= m.status == 0 || m.status == 0x80;
        VDKIT_TRY(detect_sector_size(s, mbr.data()));
        if (statuses_ok)
            VDKIT_TRY(scan_mbr(s, mbr.data()));
        else if (!options.sector_size)
            note(out.findings, 446,
                 "sector 0 ends in 55AA but its status bytes are not 0x00/0x80: not a partition table");
    } else if (inside && !looks_like_boot_sector(mbr.data())) {
        // No MBR signature: a GPT without a protective MBR is still read.
        VDKIT_TRY(detect_sector_size(s, mbr.data()));
        unsigned char sig[8];
        VDKIT_TRY(r.read(s.ss, sig, 8, inside));
        if (inside && std::memcmp(sig, "EFI PART", 8) == 0) {
            VDKIT_TRY(scan_gpt(s));
            if (out.table == "gpt") note(out.findings, 0, "the disk has a GPT but no protective MBR");
        }
    }
    out.sector_size = static_cast<uint32_t>(s.ss);
    if (out.table.empty() && out.volumes.empty() && disk_size > 0 && !out.damaged())
        out.volumes.push_back(make_volume(1, VolumeKind::whole_disk, 0, disk_size));
    if (options.identify)
        for (Volume &v : out.volumes)
            if (v.kind != VolumeKind::extended && v.length) VDKIT_TRY(identify(r, v, out.findings));
    if (options.lvm) {
        uint32_t next = 1;
        for (const Volume &v : out.volumes)
            next = std::max(next, v.index + 1);
        std::vector<Volume> lvs;
        for (Volume &v : out.volumes)
            if (v.kind != VolumeKind::extended && v.length && has_lvm_label(r, v.offset, v.length)) {
                if (v.not_mountable.empty())
                    v.not_mountable = "it is an LVM physical volume (mount its logical volumes)";
                VDKIT_TRY(scan_lvm(r, v, next, lvs, out.findings));
            }
        for (Volume &lv : lvs) {
            if (options.identify && lv.length) VDKIT_TRY(identify(r, lv, out.findings));
            out.volumes.push_back(std::move(lv));
        }
    }
    for (Volume &v : out.volumes) {
        if (!v.not_mountable.empty()) continue;
        if (v.filesystem == "swap")
            v.not_mountable = "it is swap space";
        else if (v.filesystem == "LVM2_member")
            v.not_mountable = "it is an LVM physical volume (mount its logical volumes)";
        else if (v.filesystem == "crypto_LUKS")
            v.not_mountable = "it is LUKS-encrypted (unlock it with cryptsetup first)";
        else if (v.length == 0)
            v.not_mountable = "it is empty";
    }
    return out;
}

} // namespace v1
} // namespace vdkit
