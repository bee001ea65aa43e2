// Container signatures (see containers.hpp). Each check names the spec it
// follows; the fields beyond the magic are checked where that is cheap, so
// that a raw disk whose data happens to begin with the magic's text is not
// refused (docs/design/probing.md, "Foreign containers").
#include "disk/containers.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstring>

namespace vdkit::containers {

namespace {

using namespace std::string_view_literals;

// ---- the table -------------------------------------------------------------------
// Extensions: the names the format's own tools give files. Deliberately not
// listed: "img" (raw, and also qemu's default for everything), "hds"
// (a Parallels bundle's plain .hds is raw data), "iso", "bin".
constexpr std::string_view kQcowNames[] = {"qcow"sv};
constexpr std::string_view kQcowExt[] = {"qcow"sv};
constexpr std::string_view kQcow2Names[] = {"qcow2"sv};
constexpr std::string_view kQcow2Ext[] = {"qcow2"sv, "qcow3"sv};
constexpr std::string_view kQedNames[] = {"qed"sv};
constexpr std::string_view kQedExt[] = {"qed"sv};
constexpr std::string_view kVpcNames[] = {"vpc"sv, "vhd"sv};
constexpr std::string_view kVpcExt[] = {"vhd"sv, "vpc"sv, "avhd"sv};
constexpr std::string_view kVhdxNames[] = {"vhdx"sv};
constexpr std::string_view kVhdxExt[] = {"vhdx"sv, "avhdx"sv};
constexpr std::string_view kParallelsNames[] = {"parallels"sv};
constexpr std::string_view kParallelsExt[] = {"hdd"sv};
constexpr std::string_view kLuksNames[] = {"luks"sv};
constexpr std::string_view kLuksExt[] = {"luks"sv};
constexpr std::string_view kCloopNames[] = {"cloop"sv};
constexpr std::string_view kCloopExt[] = {"cloop"sv};
constexpr std::string_view kDmgNames[] = {"dmg"sv};
constexpr std::string_view kDmgExt[] = {"dmg"sv};
constexpr std::string_view kBochsNames[] = {"bochs"sv};
constexpr std::string_view kVmdkNames[] = {"vmdk"sv};
constexpr std::string_view kVmdkExt[] = {"vmdk"sv};
constexpr std::string_view kVdiNames[] = {"vdi"sv};
constexpr std::string_view kVdiExt[] = {"vdi"sv};

enum Id : size_t { qcow, qcow2, qed, vpc, vhdx, parallels, luks, cloop, dmg, bochs, vmdk, vdi, count };

const std::array<Container, count> kContainers = {{
    {"qcow"sv, "qcow (version 1)"sv, kQcowNames, kQcowExt},
    {"qcow2"sv, "qcow2"sv, kQcow2Names, kQcow2Ext},
    {"qed"sv, "qed"sv, kQedNames, kQedExt},
    {"vpc"sv, "VHD (vpc)"sv, kVpcNames, kVpcExt},
    {"vhdx"sv, "vhdx"sv, kVhdxNames, kVhdxExt},
    {"parallels"sv, "parallels"sv, kParallelsNames, kParallelsExt},
    {"luks"sv, "luks"sv, kLuksNames, kLuksExt},
    {"cloop"sv, "cloop"sv, kCloopNames, kCloopExt},
    {"dmg"sv, "dmg (UDIF)"sv, kDmgNames, kDmgExt},
    {"bochs"sv, "bochs"sv, kBochsNames, {}},
    {"vmdk"sv, "vmdk"sv, kVmdkNames, kVmdkExt},
    {"vdi"sv, "vdi"sv, kVdiNames, kVdiExt},
}};

// ---- byte helpers ----------------------------------------------------------------
uint32_t be32(const uint8_t *p) {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}
uint16_t be16(const uint8_t *p) {
    return uint16_t(uint16_t(p[0]) << 8 | p[1]);
}
uint32_t le32(const uint8_t *p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
bool starts(const uint8_t *p, size_t have, std::string_view magic) {
    return have >= magic.size() && std::memcmp(p, magic.data(), magic.size()) == 0;
}
bool pow2(uint64_t v) {
    return v != 0 && (v & (v - 1)) == 0;
}
bool contains(const uint8_t *p, size_t have, std::string_view text) {
    const std::string_view hay(reinterpret_cast<const char *>(p), have);
    return hay.find(text) != std::string_view::npos;
}

Match found(Id id, std::string evidence) {
    return Match{&kContainers[id], std::move(evidence), {}};
}
Result<std::optional<Match>> hit(Id id, std::string evidence) {
    return std::optional<Match>(found(id, std::move(evidence)));
}

// ---- checks on the first bytes ---------------------------------------------------
constexpr size_t kHead = 512;

// qcow and qcow2: qemu docs/interop/qcow2.txt "Header" (magic "QFI\xfb",
// then the version, both big-endian u32; qcow2 is version 2 or 3) and
// block/qcow.c's QCowHeader (version 1). Other versions are not qcow.
std::optional<Match> check_qcow(const uint8_t *h, size_t n) {
    if (!starts(h, n, "QFI\xfb"sv) || n < 8) return std::nullopt;
    const uint32_t version = be32(h + 4);
    if (version == 1) return found(qcow, "QFI\\xfb magic, version 1, at offset 0");
    if (version == 2 || version == 3)
        return found(qcow2, "QFI\\xfb magic, version " + std::to_string(version) + ", at offset 0");
    // qemu's qcow2_probe takes any version >= 2 and then refuses the ones it
    // does not know ("Unsupported qcow2 version 4"): not raw either.
    if (version >= 4)
        return found(qcow2, "QFI\\xfb magic, unknown version " + std::to_string(version) + ", at offset 0");
    return std::nullopt;
}

// QED: qemu docs/interop/qed_spec.txt "Header": magic "QED\0"; cluster_size a
// power of 2 from 4 KiB to 64 MiB; table_size a power of 2 from 1 to 16
// clusters; header_size at least one cluster (all little-endian u32).
std::optional<Match> check_qed(const uint8_t *h, size_t n) {
    if (!starts(h, n, std::string_view("QED\0", 4)) || n < 16) return std::nullopt;
    const uint32_t cluster = le32(h + 4), table = le32(h + 8), header = le32(h + 12);
    if (!pow2(cluster) || cluster < (1u << 12) || cluster > (1u << 26)) return std::nullopt;
    if (!pow2(table) || table > 16 || header == 0) return std::nullopt;
    return found(qed, "QED\\0 magic at offset 0, cluster size " + std::to_string(cluster));
}

// VHDX: MS-VHDX 2.2.1 "File Type Identifier" ("vhdxfile" at offset 0). The
// header's "head" signature at 64 KiB or 128 KiB (2.2.2) is checked by
// detect(), which reads there.
bool vhdx_identifier(const uint8_t *h, size_t n) {
    return starts(h, n, "vhdxfile"sv);
}

// Parallels: qemu docs/interop/parallels.txt: magic "WithoutFreeSpace" or
// "WithouFreSpacExt" (16 bytes), then version 2 (little-endian u32).
std::optional<Match> check_parallels(const uint8_t *h, size_t n) {
    if (n < 20 || !(starts(h, n, "WithoutFreeSpace"sv) || starts(h, n, "WithouFreSpacExt"sv))) return std::nullopt;
    if (le32(h + 16) != 2) return std::nullopt;
    return found(parallels,
                 "\"" + std::string(reinterpret_cast<const char *>(h), 16) + "\" magic, version 2, at offset 0");
}

// LUKS: LUKS1 On-Disk Format Specification 1.2.3 §2.4 and the LUKS2 On-Disk
// Format: magic "LUKS\xba\xbe", then version 1 or 2 (big-endian u16).
std::optional<Match> check_luks(const uint8_t *h, size_t n) {
    if (!starts(h, n, "LUKS\xba\xbe"sv) || n < 8) return std::nullopt;
    const uint16_t version = be16(h + 6);
    if (version != 1 && version != 2) return std::nullopt;
    return found(luks, "LUKS\\xba\\xbe magic, version " + std::to_string(version) + ", at offset 0");
}

// cloop: the 128-byte shell preamble of cloop's compressed_loop.h
// (CLOOP_HEADROOM): "#!/bin/sh\n#V2.0 Format\nmodprobe cloop ..." (V3.0 and
// V4.0 for later versions); qemu's cloop_probe matches the V2.0 text.
std::optional<Match> check_cloop(const uint8_t *h, size_t n) {
    if (!starts(h, n, "#!/bin/sh"sv)) return std::nullopt;
    const size_t room = std::min<size_t>(n, 128);
    for (std::string_view v : {"#V2.0 Format"sv, "#V3.0 Format"sv, "#V4.0 Format"sv, "modprobe cloop"sv})
        if (contains(h, room, v)) return found(cloop, "cloop shell preamble (\"" + std::string(v) + "\") at offset 0");
    return std::nullopt;
}

// Bochs: bochs iodev/hdimage/hdimage.h (redolog_header_t) and qemu
// block/bochs.c: magic "Bochs Virtual HD Image" (32 bytes, NUL-padded), type
// "Redolog" (16 bytes), version 0x00020000 or 0x00010000 (little-endian u32
// at 64).
std::optional<Match> check_bochs(const uint8_t *h, size_t n) {
    static constexpr std::string_view magic("Bochs Virtual HD Image\0", 23), type("Redolog\0", 8);
    if (n < 68 || !starts(h, n, magic) || std::memcmp(h + 32, type.data(), type.size()) != 0) return std::nullopt;
    const uint32_t version = le32(h + 64);
    if (version != 0x00020000 && version != 0x00010000) return std::nullopt;
    return found(bochs, "\"Bochs Virtual HD Image\" redolog header at offset 0");
}

// VMDK: VMware's Virtual Disk Format 5.0 "Hosted Sparse Extent Header"
// (magicNumber "KDMV", version 1..3, little-endian) and the ESX "COWD"
// sparse header (formats.md §1.3, §1.7).
std::optional<Match> check_vmdk(const uint8_t *h, size_t n) {
    if (starts(h, n, "KDMV"sv) && n >= 8) {
        const uint32_t version = le32(h + 4);
        if (version >= 1 && version <= 3)
            return found(vmdk, "KDMV sparse extent header, version " + std::to_string(version) + ", at offset 0");
    }
    if (starts(h, n, "COWD"sv) && n >= 8 && le32(h + 4) == 1) return found(vmdk, "COWD sparse header at offset 0");
    return std::nullopt;
}

// VDI: the VirtualBox VDI pre-header (formats.md §2.1): signature 0xBEDA107F
// (little-endian u32) at 0x40.
std::optional<Match> check_vdi(const uint8_t *h, size_t n) {
    if (n < 0x48 || le32(h + 0x40) != 0xBEDA107Fu) return std::nullopt;
    return found(vdi, "VDI signature 0xBEDA107F at offset 0x40");
}

// ---- checks on the last bytes ----------------------------------------------------

// VHD footer: MS-VHD "Hard Disk Footer Format" (formats.md §3.1): cookie
// "conectix" and a checksum that is the one's complement of the byte sum of
// the footer with the checksum field (offset 64) taken as zero. Before Virtual
// PC 2004 the footer was 511 bytes long; the missing byte is reserved zero,
// so the same sum over len bytes holds.
bool vhd_footer(const uint8_t *f, size_t len) {
    if (len < 512 - 1 || std::memcmp(f, "conectix", 8) != 0) return false;
    uint32_t sum = 0;
    for (size_t i = 0; i < len; ++i)
        if (i < 64 || i >= 68) sum += f[i];
    return ~sum == be32(f + 64);
}

// DMG: Apple's UDIF trailer (UDIFResourceFile, "koly" block): the last 512
// bytes hold the signature "koly", version 4 and header size 512 (big-endian
// u32 each).
bool dmg_trailer(const uint8_t *t, size_t len) {
    return len == 512 && std::memcmp(t, "koly", 4) == 0 && be32(t + 4) == 4 && be32(t + 8) == 512;
}

// A file shorter than its format's fixed header that starts with the
// format's whole magic (4 bytes or more) is a cut-off image, not raw data: a
// raw disk is at least one sector, and no such short file is a disk. The
// minimum header sizes: qcow2.txt "Header" (72 bytes for version 2, 104 for
// 3; qcow version 1: 48), qed_spec.txt (64), parallels.txt (64), LUKS1 1.2.3
// §2.4 (592; LUKS2: a 4096-byte binary header), Bochs redolog (512), VMDK
// sparse extent header (512; COWD 2048), MS-VHDX 2.2.2 (the first 4 KiB
// header at 64 KiB), MS-VHD (a 512-byte footer copy at 0).
// Every container magic at offset 0 of 4 bytes or more, with the fixed
// header it begins (the minimum sizes in check_truncated's comment).
struct Magic {
    std::string_view magic;
    Id id;
};
constexpr Magic kMagics[] = {
    {"QFI\xfb"sv, qcow2},
    {std::string_view("QED\0", 4), qed},
    {"WithoutFreeSpace"sv, parallels},
    {"WithouFreSpacExt"sv, parallels},
    {"LUKS\xba\xbe"sv, luks},
    {std::string_view("Bochs Virtual HD Image\0", 23), bochs},
    {"KDMV"sv, vmdk},
    {"COWD"sv, vmdk},
    {"vhdxfile"sv, vhdx},
    {"conectix"sv, vpc},
};

// The magic kMagics lists that h (n bytes from offset 0) starts with, if any;
// a qcow2 magic with version 1 is qcow's.
const Magic *magic_of(const uint8_t *h, size_t n, Id &id) {
    for (const auto &t : kMagics)
        if (starts(h, n, t.magic)) {
            id = t.id;
            if (id == qcow2 && n >= 8 && be32(h + 4) == 1) id = qcow;
            return &t;
        }
    return nullptr;
}

std::optional<Match> check_truncated(const uint8_t *h, size_t n, uint64_t file_size) {
    uint64_t qcow_need = 72, luks_need = 592;
    if (n >= 8) {
        const uint32_t v = be32(h + 4);
        qcow_need = v == 1 ? 48 : v == 3 ? 104 : 72;
    }
    if (n >= 8 && be16(h + 6) == 2) luks_need = 4096;
    Id id{};
    const Magic *t = magic_of(h, n, id);
    if (!t) return std::nullopt;
    const uint64_t need = t->id == qcow2                       ? qcow_need
                          : t->id == qed || t->id == parallels ? 64
                          : t->id == luks                      ? luks_need
                          : t->id == bochs                     ? 512
                          : t->id == vmdk                      ? (t->magic == "COWD"sv ? 2048 : 512)
                          : t->id == vhdx                      ? (uint64_t(64) << 10) + 4096
                                                               : 512; // vpc
    if (file_size >= need) return std::nullopt;
    Match m = found(id, "the file is " + std::to_string(file_size) +
                            " bytes; the header its magic at offset 0 begins needs " + std::to_string(need));
    m.condition = "truncated";
    return m;
}

uint64_t be64(const uint8_t *p) {
    return uint64_t(be32(p)) << 32 | be32(p + 4);
}

} // namespace

std::span<const Container> all() {
    return kContainers;
}

Result<std::optional<Match>> detect(uint64_t file_size, const ReadAt &read) {
    std::array<uint8_t, kHead> head{};
    const size_t n = static_cast<size_t>(std::min<uint64_t>(file_size, kHead));
    if (n) VDKIT_TRY(read(0, head.data(), n));
    const uint8_t *h = head.data();

    if (auto m = check_truncated(h, n, file_size)) return m;
    for (auto check :
         {check_qcow, check_qed, check_parallels, check_luks, check_cloop, check_bochs, check_vmdk, check_vdi})
        if (auto m = check(h, n)) return m;
    if (vhdx_identifier(h, n)) {
        // MS-VHDX 2.2.2: two headers at 64 KiB and 128 KiB, each starting
        // with "head"; one intact copy is enough.
        for (uint64_t off : {uint64_t(64) << 10, uint64_t(128) << 10}) {
            if (file_size < off + 4) continue;
            char sig[4];
            VDKIT_TRY(read(off, sig, 4));
            if (std::memcmp(sig, "head", 4) == 0)
                return hit(vhdx, "vhdxfile identifier at offset 0, \"head\" header at offset " + std::to_string(off));
        }
    }
    // A dynamic or differencing VHD keeps a copy of its footer at offset 0.
    if (n == kHead && vhd_footer(h, kHead)) return hit(vpc, "VHD footer copy (\"conectix\") at offset 0");

    // The last 512 bytes: a VHD footer (or the older 511-byte one), a UDIF trailer.
    const size_t t = static_cast<size_t>(std::min<uint64_t>(file_size, kHead));
    if (t >= kHead - 1) {
        std::array<uint8_t, kHead> tail{};
        VDKIT_TRY(read(file_size - t, tail.data(), t));
        if (t == kHead && vhd_footer(tail.data(), kHead))
            return hit(vpc, "VHD footer (\"conectix\") at offset " + std::to_string(file_size - kHead));
        if (vhd_footer(tail.data() + (t - (kHead - 1)), kHead - 1))
            return hit(vpc, "511-byte VHD footer (\"conectix\") at offset " + std::to_string(file_size - (kHead - 1)));
        if (t == kHead && dmg_trailer(tail.data(), kHead))
            return hit(dmg, "UDIF \"koly\" trailer at offset " + std::to_string(file_size - kHead));
    }
    // A VHD whose footer copies both fail their checksum but whose footer's
    // data offset (MS-VHD "Data Offset", big-endian u64 at 16) leads to the
    // dynamic disk header's cookie "cxsparse": a damaged dynamic VHD.
    std::array<uint8_t, kHead> last{};
    const uint8_t *footers[2] = {n == kHead ? h : nullptr, nullptr};
    if (t == kHead) {
        VDKIT_TRY(read(file_size - t, last.data(), t));
        footers[1] = last.data();
    }
    for (const uint8_t *f : footers) {
        if (!f || std::memcmp(f, "conectix", 8) != 0) continue;
        const uint64_t at = be64(f + 16);
        if (at > file_size || file_size - at < 8) continue;
        char cookie[8];
        VDKIT_TRY(read(at, cookie, 8));
        if (std::memcmp(cookie, "cxsparse", 8) != 0) continue;
        Match m = found(vpc, "\"conectix\" footer with a wrong checksum, \"cxsparse\" dynamic header at offset " +
                                 std::to_string(at));
        m.condition = "damaged";
        return std::optional<Match>(std::move(m));
    }
    return std::optional<Match>{};
}

const Container *by_extension(std::string_view extension) {
    std::string e(extension);
    std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    for (const auto &c : kContainers)
        for (auto x : c.extensions)
            if (x == e) return &c;
    return nullptr;
}

bool is_generic_extension(std::string_view extension) {
    return extension == "img" || extension == "bin" || extension == "dd";
}

std::optional<Match> magic_at_start(const uint8_t *head, size_t len) {
    Id id{};
    const Magic *t = magic_of(head, len, id);
    if (!t) return std::nullopt;
    std::string text;
    for (char c : t->magic) {
        const auto u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7f) {
            text += c;
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", u);
            text += u == 0 ? std::string("\\0") : std::string(buf);
        }
    }
    return found(id, "\"" + text + "\" magic at offset 0");
}

std::string extension_of(std::string_view location) {
    std::string_view path = location;
    if (path.find("://") != std::string_view::npos) path = path.substr(0, path.find_first_of("?#", path.find("://")));
    const size_t slash = path.find_last_of('/');
    const std::string_view last = slash == std::string_view::npos ? path : path.substr(slash + 1);
    const size_t dot = last.find_last_of('.');
    if (dot == std::string_view::npos || dot == 0 || dot + 1 == last.size()) return {};
    std::string e(last.substr(dot + 1));
    std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return e;
}

} // namespace vdkit::containers
