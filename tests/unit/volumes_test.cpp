// The volume layer (vdkit/volumes.hpp, vdkit.h's vdkit_volume_*): MBR tables
// and EBR chains written here byte by byte (formats.md §5.1), read through a
// raw disk with the C API and through a memory reader with the C++ API.
// Real tools' tables (sfdisk, sgdisk, LVM) are compared in
// tests/cli/volumes_test.sh.
#include "test_support.hpp"
#include "vdkit/vdkit.h"
#include "vdkit/volumes.hpp"

#include <cstring>
#include <string>
#include <vector>

namespace {

void entry(std::vector<unsigned char> &d, uint64_t sector, int slot, uint8_t type, uint32_t start, uint32_t count) {
    unsigned char *p = d.data() + sector * 512 + 446 + 16 * slot;
    p[4] = type;
    for (int i = 0; i < 4; ++i)
        p[8 + i] = static_cast<unsigned char>(start >> (8 * i));
    for (int i = 0; i < 4; ++i)
        p[12 + i] = static_cast<unsigned char>(count >> (8 * i));
    d[sector * 512 + 510] = 0x55;
    d[sector * 512 + 511] = 0xAA;
}

// 8 MiB: 1 = 0x83 at 2048+2048; 2 = extended at 4096+8192 holding
// logicals at EBR 4096 (+100, 500 sectors) and EBR 6144 (+50, 1000 sectors).
std::vector<unsigned char> mbr_disk() {
    std::vector<unsigned char> d(8 << 20);
    entry(d, 0, 0, 0x83, 2048, 2048);
    entry(d, 0, 1, 0x0F, 4096, 8192);
    entry(d, 4096, 0, 0x83, 100, 500);
    entry(d, 4096, 1, 0x05, 2048, 2048);
    entry(d, 6144, 0, 0x07, 50, 1000);
    return d;
}

vdkit::VolumeReadFunction reader(const std::vector<unsigned char> &d) {
    return [&d](uint64_t off, void *buf, uint64_t len) {
        std::memcpy(buf, d.data() + off, len);
        return vdkit::Status::ok();
    };
}

vdkit::VolumeOptions no_probe() {
    vdkit::VolumeOptions o;
    o.identify = false;
    return o;
}

bool has_finding(const vdkit::VolumeList &l, const std::string &text) {
    for (const auto &f : l.findings)
        if (f.message.find(text) != std::string::npos) return true;
    return false;
}

} // namespace

TEST_CASE("volumes: an MBR with an EBR chain numbers logicals from 5, by the C API over a raw disk", "[volumes]") {
    vdkit::test::TempDir dir;
    vdkit_error err{};
    vdkit_library *lib = vdkit::test::open_c_library(err);
    const std::string img = dir / "mbr.raw";
    vdkit_disk *disk = nullptr;
    REQUIRE(vdkit_disk_create(lib, img.c_str(), "raw", 8 << 20, 0, "", nullptr, &disk, &err) == VDKIT_OK);
    const auto d = mbr_disk();
    REQUIRE(vdkit_disk_write(disk, 0, d.data(), d.size(), &err) == VDKIT_OK);

    vdkit_volume_list *list = nullptr;
    REQUIRE(vdkit_disk_list_volumes(disk, 0, VDKIT_VOLUMES_NO_IDENTIFY, &list, &err) == VDKIT_OK);
    const char *table = nullptr;
    uint32_t ss = 0;
    vdkit_volume_list_table(list, &table, &ss);
    CHECK(std::string(table) == "mbr");
    CHECK(ss == 512);
    REQUIRE(vdkit_volume_list_count(list) == 4);
    CHECK(vdkit_volume_list_finding_count(list) == 0);
    struct Want {
        uint32_t index, kind;
        uint64_t offset, length;
    } want[] = {{1, VDKIT_VOLUME_PRIMARY, 2048 * 512, 2048 * 512},
                {2, VDKIT_VOLUME_EXTENDED, 4096 * 512, 8192 * 512},
                {5, VDKIT_VOLUME_LOGICAL, (4096 + 100) * 512, 500 * 512},
                {6, VDKIT_VOLUME_LOGICAL, (6144 + 50) * 512, 1000 * 512}};
    for (uint32_t i = 0; i < 4; ++i) {
        vdkit_volume_info v{};
        v.struct_size = sizeof v;
        REQUIRE(vdkit_volume_list_get(list, i, &v, &err) == VDKIT_OK);
        CHECK(v.index == want[i].index);
        CHECK(v.kind == want[i].kind);
        CHECK(v.offset == want[i].offset);
        CHECK(v.length == want[i].length);
        CHECK(((v.flags & VDKIT_VOLUME_MOUNTABLE) != 0) == (v.kind != VDKIT_VOLUME_EXTENDED));
    }
    vdkit_volume_info past{};
    past.struct_size = sizeof past;
    CHECK(vdkit_volume_list_get(list, 4, &past, &err) == VDKIT_E_OUT_OF_RANGE);

    // Reads and writes land inside the volume, and not past its end.
    const auto data = vdkit::test::pattern(4096, 7);
    REQUIRE(vdkit_volume_write(disk, list, 3, 1000 * 512 - 4096, data.data(), data.size(), &err) == VDKIT_OK);
    std::vector<unsigned char> back(4096);
    REQUIRE(vdkit_disk_read(disk, (6144 + 50 + 1000) * 512 - 4096, back.data(), back.size(), &err) == VDKIT_OK);
    CHECK(back == data);
    CHECK(vdkit_volume_read(disk, list, 3, 1000 * 512 - 4095, back.data(), back.size(), &err) == VDKIT_E_OUT_OF_RANGE);
    vdkit_volume_list_free(list);
    CHECK(vdkit_disk_list_volumes(disk, 1024, 0, &list, &err) == VDKIT_E_INVALID_ARGUMENT);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    vdkit_library_close(lib);
}

TEST_CASE("volumes: damaged MBRs give findings and end", "[volumes]") {
    SECTION("a logical chain that loops") {
        auto d = mbr_disk();
        entry(d, 6144, 1, 0x05, 0, 2048); // back to the first EBR
        auto l = vdkit::list_volumes(d.size(), reader(d), no_probe());
        REQUIRE(l.is_ok());
        CHECK(l->damaged());
        CHECK(has_finding(*l, "loops back"));
        CHECK(l->find(5) != nullptr);
        CHECK(l->find(6) != nullptr);
        CHECK(l->find(7) == nullptr);
    }
    SECTION("a link outside the extended partition") {
        auto d = mbr_disk();
        entry(d, 6144, 1, 0x05, 9000, 10);
        auto l = vdkit::list_volumes(d.size(), reader(d), no_probe());
        REQUIRE(l.is_ok());
        CHECK(has_finding(*l, "outside the extended partition"));
    }
    SECTION("overlapping primaries and one past the end") {
        auto d = mbr_disk();
        entry(d, 0, 2, 0x83, 3000, 100);
        entry(d, 0, 3, 0x83, 16000, 1000);
        auto l = vdkit::list_volumes(d.size(), reader(d), no_probe());
        REQUIRE(l.is_ok());
        CHECK(has_finding(*l, "partitions 1 and 3 overlap"));
        CHECK(has_finding(*l, "partition 4 (sectors 16000+1000) extends past the disk's end"));
        REQUIRE(l->find(4));
        CHECK(l->find(4)->length == (16384 - 16000) * 512u);
        CHECK(!l->find(4)->not_mountable.empty());
    }
    SECTION("a FAT boot sector is no table: one whole-disk volume") {
        std::vector<unsigned char> d(1 << 20);
        const unsigned char bpb[] = {0xEB, 0x3C, 0x90, 'm', 'k', 'f', 's', '.', 'f', 'a', 't', 0x00, 0x02, 4, 1, 0, 2};
        std::memcpy(d.data(), bpb, sizeof bpb);
        d[0x15] = 0xF8;
        d[510] = 0x55;
        d[511] = 0xAA;
        auto l = vdkit::list_volumes(d.size(), reader(d), no_probe());
        REQUIRE(l.is_ok());
        REQUIRE(l->volumes.size() == 1);
        CHECK(l->volumes[0].kind == vdkit::VolumeKind::whole_disk);
        CHECK(l->table.empty());
    }
}
