// Target volumes: the partition table and LVM parsers of the volume layer
// (core/src/volume: MBR and its EBR chain, GPT headers and entries, LVM
// label, metadata area and text metadata; formats.md §5, §8.5) over the
// input as a disk, read at 512- and 4096-byte sectors. Without libblkid
// probing (not our parser). Every listed volume must lie inside the disk,
// its extents must add up to its length, and parsing must end (loops,
// chain lengths and allocation are bounded).
#include "volume/scan.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // The disk is the input, or a claimed larger size taken from its first
    // 8 bytes when the input is large enough (the tail reads as zero), so
    // backup GPT headers and far EBRs are reachable from small inputs.
    uint64_t disk_size = size;
    if (size >= 1024 + 8) {
        uint64_t claimed = 0;
        std::memcpy(&claimed, data + size - 8, 8);
        disk_size = std::max<uint64_t>(size, claimed % (uint64_t{1} << 40));
    }
    const vdkit::VolumeReadFunction read = [&](uint64_t off, void *buf, uint64_t len) {
        auto *out = static_cast<unsigned char *>(buf);
        for (uint64_t i = 0; i < len; ++i)
            out[i] = off + i < size ? data[off + i] : 0;
        return vdkit::Status::ok();
    };
    for (uint32_t ss : {0u, 512u, 4096u}) {
        vdkit::VolumeOptions o;
        o.sector_size = ss;
        o.identify = false;
        auto r = vdkit::list_volumes(disk_size, read, o);
        if (!r) abort(); // the reader never fails: parsing must not either
        for (const vdkit::Volume &v : r->volumes) {
            uint64_t sum = 0;
            for (const vdkit::VolumeExtent &e : v.extents) {
                if (e.offset > disk_size || e.length > disk_size - e.offset) {
                    fprintf(stderr, "volumes: volume %u extent past the disk's end\n", v.index);
                    abort();
                }
                sum += e.length;
            }
            if (sum != v.length) {
                fprintf(stderr, "volumes: volume %u extents add up to %llu, not %llu\n", v.index,
                        static_cast<unsigned long long>(sum), static_cast<unsigned long long>(v.length));
                abort();
            }
        }
    }
    // The LVM text parser directly on the input.
    vdkit::Volume pv;
    pv.index = 1;
    pv.length = uint64_t{1} << 30;
    pv.extents.push_back({0, pv.length});
    uint32_t next = 2;
    std::vector<vdkit::Volume> lvs;
    std::vector<vdkit::VolumeFinding> findings;
    vdkit::volume::parse_lvm_metadata(std::string_view(reinterpret_cast<const char *>(data), size),
                                      "abcdefabcdefabcdefabcdefabcdefab", pv, next, lvs, findings);
    return 0;
}
