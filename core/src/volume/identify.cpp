// What is on a volume, by libblkid's superblock probing (util-linux): TYPE,
// VERSION, LABEL, UUID. libblkid reads only from a file descriptor, and a
// vdkit volume is bytes of a chain of images behind plugins, so the probe
// runs over a sparse memfd as long as the volume, into which we copy,
// through Disk::read, the windows blkid's probes read:
//   - the first 2 MiB (every superblock blkid knows lies there: ext* at 1 KiB,
//     XFS at 0, btrfs at 64 KiB, swap up to 64 KiB, ISO9660 from 32 KiB, LVM,
//     LUKS1/2 primary, NTFS/FAT/exFAT boot sectors, md 1.1/1.2);
//   - the last 1 MiB (md 0.90/1.0 and other trailing signatures);
//   - what the FAT, exFAT and NTFS probes follow from the boot sector to find
//     the label: the FAT and the root directory's first clusters, NTFS's
//     $MFT records 0-15 ($Volume is record 3).
// Unread bytes of the memfd read as zeros: a probe that looked elsewhere
// sees no signature, so the result is at worst "unknown", never wrong data.
// The memfd holds at most ~4 MiB of data whatever the volume's size.
#include "volume/scan.hpp"

#include "vdkit/endian.hpp"

#include <blkid/blkid.h>

#include <cerrno>
#include <cstring>
#include <sys/mman.h>
#include <unistd.h>

namespace vdkit::volume {
using sdk::load_le;

namespace {

constexpr uint64_t kHead = 2 << 20, kTail = 1 << 20, kWindow = 256 << 10;

struct Memfd {
    int fd = -1;
    ~Memfd() {
        if (fd >= 0) ::close(fd);
    }
};

// Copy [off, off+len) of the volume (clipped to it) into the memfd.
Status fill(const Reader &r, const Volume &v, int fd, uint64_t off, uint64_t len, std::vector<unsigned char> &buf) {
    if (off >= v.length) return Status::ok();
    len = std::min(len, v.length - off);
    uint64_t done = 0;
    for (const VolumeExtent &e : v.extents) {
        if (len == 0) break;
        if (off >= done + e.length) {
            done += e.length;
            continue;
        }
        const uint64_t in = off - done, n = std::min(len, e.length - in);
        buf.resize(n);
        bool inside = false;
        VDKIT_TRY(r.read(e.offset + in, buf.data(), n, inside));
        if (!inside) return Status::ok();
        for (uint64_t w = 0; w < n;) {
            const ssize_t k = ::pwrite(fd, buf.data() + w, n - w, static_cast<off_t>(off + w));
            if (k <= 0) return Status(VDKIT_E_IO, std::string("memfd for blkid: ") + std::strerror(errno));
            w += static_cast<uint64_t>(k);
        }
        off += n;
        len -= n;
        done += e.length;
    }
    return Status::ok();
}

// The windows the FAT/exFAT/NTFS probes follow from the boot sector.
Status fill_followed(const Reader &r, const Volume &v, int fd, const unsigned char *bs,
                     std::vector<unsigned char> &buf) {
    const uint64_t bps = load_le(bs + 0x0B, 2);
    if (std::memcmp(bs + 3, "NTFS    ", 8) == 0 && bps >= 256 && bps <= 4096) {
        uint64_t spc = bs[0x0D];
        if (spc > 0x80) spc = uint64_t{1} << std::min<uint64_t>(256 - spc, 20); // 2^-n sectors form
        const uint64_t mft = load_le(bs + 0x30, 8);
        if (spc && mft < (uint64_t{1} << 40)) VDKIT_TRY(fill(r, v, fd, mft * spc * bps, 64 << 10, buf));
        return Status::ok();
    }
    if (std::memcmp(bs + 3, "EXFAT   ", 8) == 0) {
        const unsigned ss_shift = bs[0x6C], spc_shift = bs[0x6D];
        if (ss_shift < 9 || ss_shift > 12 || spc_shift > 25) return Status::ok();
        const uint64_t fat = load_le(bs + 0x50, 4) << ss_shift, heap = load_le(bs + 0x58, 4) << ss_shift;
        const uint64_t root = load_le(bs + 0x60, 4);
        VDKIT_TRY(fill(r, v, fd, fat, kWindow, buf));
        if (root >= 2) VDKIT_TRY(fill(r, v, fd, heap + ((root - 2) << (ss_shift + spc_shift)), kWindow, buf));
        return Status::ok();
    }
    // FAT12/16/32 BPB (formats.md §5.3).
    const uint64_t spc = bs[0x0D], reserved = load_le(bs + 0x0E, 2), nfats = bs[0x10];
    const uint64_t root_entries = load_le(bs + 0x11, 2);
    uint64_t fatsz = load_le(bs + 0x16, 2);
    if (bps < 512 || bps > 4096 || spc == 0 || nfats == 0 || nfats > 4) return Status::ok();
    if (fatsz == 0) fatsz = load_le(bs + 0x24, 4);
    const uint64_t fat_start = reserved * bps, root_dir = fat_start + nfats * fatsz * bps;
    VDKIT_TRY(fill(r, v, fd, fat_start, kWindow, buf));
    VDKIT_TRY(fill(r, v, fd, root_dir, std::max<uint64_t>(root_entries * 32, kWindow), buf));
    if (root_entries == 0) { // FAT32: the root directory is a cluster chain from root_cluster
        const uint64_t root_cluster = load_le(bs + 0x2C, 4);
        if (root_cluster >= 2 && root_cluster < (uint64_t{1} << 28))
            VDKIT_TRY(fill(r, v, fd, root_dir + (root_cluster - 2) * spc * bps, kWindow, buf));
    }
    return Status::ok();
}

std::string value_of(blkid_probe pr, const char *name) {
    const char *data = nullptr;
    size_t len = 0;
    if (blkid_probe_lookup_value(pr, name, &data, &len) != 0 || !data) return {};
    std::string s(data, len);
    while (!s.empty() && s.back() == '\0')
        s.pop_back();
    return s;
}

} // namespace

Status identify(const Reader &r, Volume &v, std::vector<VolumeFinding> &findings) {
    if (v.length == 0 || v.extents.empty()) return Status::ok();
    Memfd m;
    m.fd = ::memfd_create("vdkit-volume-probe", MFD_CLOEXEC);
    if (m.fd < 0 || ::ftruncate(m.fd, static_cast<off_t>(v.length)) != 0) {
        findings.push_back(VolumeFinding{FindingSeverity::note, v.offset,
                                         "volume " + std::to_string(v.index) + ": no memfd for blkid (" +
                                             std::strerror(errno) + "); its filesystem is not identified"});
        return Status::ok();
    }
    std::vector<unsigned char> buf;
    VDKIT_TRY(fill(r, v, m.fd, 0, kHead, buf));
    if (v.length > kHead) VDKIT_TRY(fill(r, v, m.fd, v.length - std::min(v.length - kHead, kTail), kTail, buf));
    unsigned char bs[512] = {};
    if (::pread(m.fd, bs, sizeof bs, 0) == static_cast<ssize_t>(sizeof bs))
        VDKIT_TRY(fill_followed(r, v, m.fd, bs, buf));

    blkid_probe pr = blkid_new_probe();
    if (!pr) return Status(VDKIT_E_NO_MEMORY, "blkid_new_probe failed");
    if (blkid_probe_set_device(pr, m.fd, 0, static_cast<blkid_loff_t>(v.length)) != 0) {
        blkid_free_probe(pr);
        return Status::ok();
    }
    blkid_probe_enable_superblocks(pr, 1);
    blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID |
                                              BLKID_SUBLKS_VERSION);
    blkid_probe_enable_partitions(pr, 0);
    const int rc = blkid_do_safeprobe(pr);
    if (rc == 0) {
        v.filesystem = value_of(pr, "TYPE");
        v.fs_version = value_of(pr, "VERSION");
        v.label = value_of(pr, "LABEL");
        v.uuid = value_of(pr, "UUID");
    } else if (rc == -2) {
        findings.push_back(VolumeFinding{FindingSeverity::note, v.offset,
                                         "volume " + std::to_string(v.index) +
                                             ": blkid found more than one filesystem signature; none is reported"});
    }
    blkid_free_probe(pr);
    return Status::ok();
}

} // namespace vdkit::volume
