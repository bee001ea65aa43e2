// Internal pieces of the volume layer (vdkit/volumes.hpp): the partition
// table and LVM parsers (tables.cpp, lvm.cpp) and libblkid identification
// (identify.cpp). Every parser reads through a bounded reader and reports
// damage as findings.
#ifndef VDKIT_CORE_VOLUME_SCAN_HPP
#define VDKIT_CORE_VOLUME_SCAN_HPP

#include "vdkit/volumes.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace vdkit::volume {

// Caps on what untrusted tables may make us read or allocate.
constexpr uint32_t kMaxGptEntries = 4096;     // UEFI allows more; no real disk has them
constexpr uint32_t kMaxLogical = 128;         // EBR links (Linux stops after 100 empty links)
constexpr uint64_t kMaxLvmMetadata = 1 << 20; // bytes of LVM text metadata parsed
constexpr size_t kMaxLvmVolumes = 1024;

// Reads through the caller's function, refusing ranges past the disk's end
// (they are the table's fault, not an I/O error: false, no Status).
struct Reader {
    uint64_t size = 0;
    const VolumeReadFunction *fn = nullptr;
    // buf gets len bytes at off. Status error: the disk failed; ok with
    // `inside` false: the range is not inside the disk (buf untouched).
    Status read(uint64_t off, void *buf, uint64_t len, bool &inside) const;
};

// Standard CRC-32 (IEEE 802.3, reflected; zlib's crc32), formats.md §5.2.
uint32_t crc32(const unsigned char *p, size_t n, uint32_t crc = 0) noexcept;

// GUID bytes as stored on disk (mixed-endian, first three fields LE) as
// upper-case text (formats.md §5.2).
std::string guid_text(const unsigned char *p);

// The logical volumes inside the PV that `pv` is (its first bytes carry an
// LVM2 label, formats.md §5.3), appended to `out` with indices from
// next_index; findings for damaged labels or metadata. Status: I/O only.
Status scan_lvm(const Reader &r, const Volume &pv, uint32_t &next_index, std::vector<Volume> &out,
                std::vector<VolumeFinding> &findings);

// Whether the LVM2 label is in one of the first four 512-byte sectors.
bool has_lvm_label(const Reader &r, uint64_t offset, uint64_t length);

// Fill filesystem, fs_version, label, uuid of v by libblkid's probing
// through r (identify.cpp). A failure to probe leaves them empty and adds a
// note; Status: I/O only.
Status identify(const Reader &r, Volume &v, std::vector<VolumeFinding> &findings);

// The LVM metadata text parser, exposed for the fuzz target: the logical
// volumes of the VG described by `text` that live on PV `pv_id` (dashes
// ignored) whose data area starts at pe_start_bytes from `pv`.
void parse_lvm_metadata(std::string_view text, const std::string &pv_id, const Volume &pv, uint32_t &next_index,
                        std::vector<Volume> &out, std::vector<VolumeFinding> &findings);

} // namespace vdkit::volume

#endif
