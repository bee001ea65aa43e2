/// @file vdkit/volumes.hpp
/// @brief Volumes of a disk: partition tables (MBR with extended/logical
/// chains, GPT, protective and hybrid MBR), LVM logical volumes inside a PV,
/// and the filesystem on each (libblkid's probing). VixMntapi's
/// GetVolumeHandles/GetVolumeInfo, without its limits (GPT, LVM, any
/// format, chain and transport vdkit opens).
///
/// Everything is read through Disk::read, so any format, chain, filter and
/// transport works. Units: offsets and lengths are bytes; sector_size is the
/// logical sector size the tables were read with (512 or 4096).
///
/// Errors: list_volumes fails only when the disk cannot be read (VDKIT_E_IO
/// and the disk's own codes) or options are invalid (INVALID_ARGUMENT).
/// A damaged table is not an error: what could be read is listed and each
/// problem is a VolumeFinding (error severity when a table is damaged, note
/// for a repaired view such as "primary GPT header damaged; the backup was
/// used"). Parsing is bounded: a logical chain loop or a chain longer than
/// kMaxLogical links stops with a finding; at most 4096 GPT entries and
/// 1 MiB of LVM metadata are read.
///
/// Thread-safety: list_volumes and read_volume only read the disk and may run
/// concurrently with other readers; write_volume writes like Disk::write.
/// Ownership: results are values the caller owns.
#ifndef VDKIT_VOLUMES_HPP
#define VDKIT_VOLUMES_HPP

#include "vdkit/vdkit.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace vdkit {
inline namespace v1 {
/// What a volume is (the values of VDKIT_VOLUME_*).
enum class VolumeKind : uint32_t {
    whole_disk = 0, ///< no partition table: the disk itself holds a filesystem (or nothing known)
    primary = 1,    ///< an MBR primary partition (slots 1-4)
    extended = 2,   ///< an MBR extended partition (holds the logical chain; never mounted)
    logical = 3,    ///< a logical partition of the extended chain (numbered from 5)
    gpt = 4,        ///< a GPT partition (numbered by its entry slot, from 1)
    lvm = 5,        ///< an LVM logical volume inside a PV on this disk
};
/// "whole-disk", "primary", "extended", "logical", "gpt", "lvm" (static storage).
VDKIT_API const char *to_string(VolumeKind kind) noexcept;

/// A byte range of the disk that is part of a volume (in volume order).
struct VolumeExtent {
    uint64_t offset = 0; ///< bytes from the start of the disk
    uint64_t length = 0; ///< bytes
};

/// One volume (list_volumes).
struct Volume {
    /// Number as the kernel numbers partitions: MBR primaries 1-4 by slot,
    /// logicals from 5 in chain order, GPT entries by slot + 1; a disk
    /// without a table has volume 1; LVM logical volumes follow the highest
    /// partition number, in metadata order.
    uint32_t index = 0;
    VolumeKind kind = VolumeKind::whole_disk;
    uint64_t offset = 0; ///< bytes from the disk start to the volume's first byte
    uint64_t length = 0; ///< bytes
    /// Where the bytes are, in order (one extent except for LVM volumes of
    /// several segments). Their lengths add up to `length`.
    std::vector<VolumeExtent> extents;
    uint32_t parent = 0; ///< index of the extended partition or PV volume holding it; 0: the disk
    // Partition table facts (empty / zero where they do not apply).
    uint8_t mbr_type = 0;    ///< MBR type byte (primary, extended, logical)
    bool bootable = false;   ///< MBR status 0x80
    std::string type_guid;   ///< GPT type GUID, upper-case text
    std::string type_name;   ///< "Linux filesystem", "EFI System", "LVM"... ("" when unknown)
    std::string part_uuid;   ///< GPT unique partition GUID
    std::string name;        ///< GPT partition name (UTF-8); LVM: "VG/LV"
    uint64_t attributes = 0; ///< GPT attribute bits
    // Content, from libblkid's probing (empty when nothing was recognised).
    std::string filesystem; ///< blkid TYPE: "ext4", "xfs", "vfat", "ntfs", "swap", "LVM2_member"...
    std::string fs_version; ///< blkid VERSION
    std::string label;
    std::string uuid; ///< filesystem UUID as blkid prints it
    /// LVM: the segment type of the volume ("linear", "striped", "mirror",
    /// "raid1", "thin"...); "" for partitions.
    std::string lvm_segment_type;
    /// Why this volume cannot be mounted, or "" when it may be tried:
    /// extended partitions, swap, LVM PVs, LVM volumes that are not linear
    /// or lie partly on another PV, volumes past the disk's end.
    std::string not_mountable;
};

/// A problem (or a note) found while reading the tables.
struct VolumeFinding {
    FindingSeverity severity{};     ///< error: a table is damaged; note: informational
    std::optional<uint64_t> offset; ///< byte offset on the disk it concerns
    std::string message;
};

/// Options of list_volumes.
struct VolumeOptions {
    /// Logical sector size to read the tables with: 0 detects (a GPT header
    /// at 512 or 4096, the first EBR's signature), else 512 or 4096.
    uint32_t sector_size = 0;
    bool identify = true; ///< probe each volume's filesystem with libblkid
    bool lvm = true;      ///< list the logical volumes inside LVM PVs
};

/// The volumes of a disk.
struct VolumeList {
    uint32_t sector_size = 512;
    std::string table;           ///< "mbr", "gpt" or "" (no table)
    std::string disk_id;         ///< GPT disk GUID, or the MBR disk signature as 8 hex digits
    std::vector<Volume> volumes; ///< in index order
    std::vector<VolumeFinding> findings;
    /// The volume numbered `index`, or null.
    const Volume *find(uint32_t index) const noexcept {
        for (const Volume &v : volumes)
            if (v.index == index) return &v;
        return nullptr;
    }
    /// Whether a finding of error severity was made.
    bool damaged() const noexcept {
        for (const VolumeFinding &f : findings)
            if (f.severity == FindingSeverity::error) return true;
        return false;
    }
};

/// Reads `len` bytes at `offset` of the disk (both in bytes) into buf.
using VolumeReadFunction = std::function<Status(uint64_t offset, void *buf, uint64_t len)>;

/// The volumes of `disk` (see the file comment). INVALID_ARGUMENT when
/// sector_size is not 0, 512 or 4096.
VDKIT_API Result<VolumeList> list_volumes(const Disk &disk, const VolumeOptions &options = {});
/// The same over any reader of a disk of disk_size bytes (the parser
/// itself; the fuzz target drives it). Thread-safe if `read` is.
VDKIT_API Result<VolumeList> list_volumes(uint64_t disk_size, const VolumeReadFunction &read,
                                          const VolumeOptions &options = {});

/// Read `len` bytes at `offset` of the volume (bytes from its start) into
/// buf, through its extents. OUT_OF_RANGE when the range passes the volume's end.
VDKIT_API Status read_volume(const Disk &disk, const Volume &volume, uint64_t offset, void *buf, uint64_t len);
/// Write into the volume (the disk's top image, as Disk::write). READ_ONLY
/// on a read-only disk; OUT_OF_RANGE past the volume's end.
VDKIT_API Status write_volume(Disk &disk, const Volume &volume, uint64_t offset, const void *buf, uint64_t len);

} // namespace v1
} // namespace vdkit

#endif // VDKIT_VOLUMES_HPP
