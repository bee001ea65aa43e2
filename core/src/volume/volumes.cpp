// The volume layer over a Disk (vdkit/volumes.hpp): the table parsers read
// through Disk::read; a volume's bytes are read and written through its
// extents.
#include "volume/scan.hpp"

namespace vdkit {
inline namespace v1 {

Result<VolumeList> list_volumes(const Disk &disk, const VolumeOptions &options) {
    const VolumeReadFunction read = [&disk](uint64_t offset, void *buf, uint64_t len) {
        return disk.read(offset, buf, len);
    };
    return list_volumes(disk.size(), read, options);
}

namespace {
// Call f(disk_offset, buffer_offset, n) for each piece of [offset, offset+len)
// of the volume; OUT_OF_RANGE past its end.
template <class F> Status each_piece(const Volume &v, uint64_t offset, uint64_t len, F &&f) {
    if (offset > v.length || len > v.length - offset)
        return Status(VDKIT_E_OUT_OF_RANGE, "volume " + std::to_string(v.index) + ": " + std::to_string(len) +
                                                " bytes at " + std::to_string(offset) + " pass its end (" +
                                                std::to_string(v.length) + " bytes)");
    if (len && !v.not_mountable.empty() && v.extents.empty())
        return Status(VDKIT_E_NOT_SUPPORTED,
                      "volume " + std::to_string(v.index) + " cannot be read: " + v.not_mountable);
    uint64_t base = 0, done = 0;
    for (const VolumeExtent &e : v.extents) {
        if (done == len) break;
        const uint64_t pos = offset + done;
        if (pos < base + e.length) {
            const uint64_t in = pos - base, n = std::min(len - done, e.length - in);
            VDKIT_TRY(f(e.offset + in, done, n));
            done += n;
        }
        base += e.length;
    }
    if (done != len)
        return Status(VDKIT_E_INTERNAL, "volume " + std::to_string(v.index) + ": extents shorter than its length");
    return Status::ok();
}
} // namespace

Status read_volume(const Disk &disk, const Volume &volume, uint64_t offset, void *buf, uint64_t len) {
    auto *out = static_cast<unsigned char *>(buf);
    return each_piece(volume, offset, len,
                      [&](uint64_t at, uint64_t b, uint64_t n) { return disk.read(at, out + b, n); });
}

Status write_volume(Disk &disk, const Volume &volume, uint64_t offset, const void *buf, uint64_t len) {
    const auto *in = static_cast<const unsigned char *>(buf);
    return each_piece(volume, offset, len,
                      [&](uint64_t at, uint64_t b, uint64_t n) { return disk.write(at, in + b, n); });
}

} // namespace v1
} // namespace vdkit
