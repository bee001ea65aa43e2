// The VDI plugin: maintenance (compact, resize, discard, check/repair),
// header variants and hostile headers. Chains over VDI run in chain_test.cpp;
// interop with qemu-img in tests/interop/vdi_interop_test.sh.
#include "test_support.hpp"

#include <filesystem>
#include <fstream>
#include <random>

using namespace vdkit;

namespace {
constexpr uint64_t kBlock = 64u << 10;
constexpr uint64_t kMapOffset = 4096; // with alignment=512: the map follows the parent-location area

CreateOptions vdi_opts(uint64_t size) {
    CreateOptions o = test::create_opts("vdi", size);
    o.options["block-size"] = std::to_string(kBlock);
    o.options["alignment"] = "512";
    return o;
}

void patch_u32(const std::string &path, uint64_t offset, uint32_t v) {
    unsigned char b[4] = {static_cast<unsigned char>(v), static_cast<unsigned char>(v >> 8),
                          static_cast<unsigned char>(v >> 16), static_cast<unsigned char>(v >> 24)};
    test::patch(path, offset, b, 4);
}
uint64_t file_size(const std::string &path) {
    return std::filesystem::file_size(path);
}

// A base image with data in blocks 0..n-1 (pattern seeded by block).
std::vector<unsigned char> make_filled(Library &lib, const std::string &path, uint64_t size, int n) {
    auto d = lib.create_image(path, vdi_opts(size));
    REQUIRE_OK(d);
    std::vector<unsigned char> model(static_cast<size_t>(size), 0);
    for (int b = 0; b < n; ++b) {
        auto data = test::pattern(kBlock, static_cast<uint32_t>(b + 1));
        REQUIRE_OK((*d)->write(b * kBlock, data.data(), kBlock));
        std::copy(data.begin(), data.end(), model.begin() + static_cast<long>(b * kBlock));
    }
    REQUIRE_OK((*d)->close());
    return model;
}
} // namespace

TEST_CASE("vdi: compact drops zero blocks, closes holes and truncates", "[vdi]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string path = dir / "c.vdi";
    auto model = make_filled(*lib, path, 16 * kBlock, 8);
    const uint64_t before = file_size(path);
    {
        // Blocks 1 and 3 become all zero as data (written, so still allocated).
        auto d = test::open_disk(*lib, path, true);
        std::vector<unsigned char> zeros(kBlock, 0);
        for (uint64_t b : {1, 3}) {
            REQUIRE_OK(d->write(b * kBlock, zeros.data(), kBlock / 2));
            REQUIRE_OK(d->write(b * kBlock + kBlock / 2, zeros.data(), kBlock / 2));
            std::fill(model.begin() + static_cast<long>(b * kBlock),
                      model.begin() + static_cast<long>((b + 1) * kBlock), 0);
        }
        CHECK(file_size(path) == before);
        uint64_t calls = 0;
        REQUIRE_OK(d->compact([&](uint64_t, uint64_t) { return ++calls > 0; }));
        CHECK(calls > 0);
        CHECK(test::read_all(*d) == model);
        REQUIRE_OK(d->close());
    }
    CHECK(file_size(path) == before - 2 * kBlock);
    auto d = test::open_disk(*lib, path, false);
    CHECK(test::read_all(*d) == model);
    auto report = d->check();
    REQUIRE_OK(report);
    CHECK(report->clean());
}

TEST_CASE("vdi: compacting a diff gives back blocks equal to the parent", "[vdi]") {
    test::TempDir dir;
    auto lib = test::make_library();
    auto model = make_filled(*lib, dir / "base.vdi", 8 * kBlock, 8);
    CreateOptions co = vdi_opts(0);
    co.parent = dir / "base.vdi";
    auto child = lib->create_image(dir / "child.vdi", co);
    REQUIRE_OK(child);
    // Block 2: the parent's own data again; block 4: new data; block 5: zeros.
    REQUIRE_OK((*child)->write(2 * kBlock, model.data() + 2 * kBlock, kBlock));
    auto fresh = test::pattern(kBlock, 99);
    REQUIRE_OK((*child)->write(4 * kBlock, fresh.data(), kBlock));
    std::copy(fresh.begin(), fresh.end(), model.begin() + static_cast<long>(4 * kBlock));
    std::vector<unsigned char> zeros(kBlock, 0);
    REQUIRE_OK((*child)->write(5 * kBlock + 10, zeros.data(), kBlock - 10)); // partial: becomes data
    std::fill(model.begin() + static_cast<long>(5 * kBlock + 10), model.begin() + static_cast<long>(6 * kBlock), 0);
    const uint64_t before = file_size(dir / "child.vdi");
    REQUIRE_OK((*child)->compact());
    CHECK(test::read_all(**child) == model);
    auto run2 = (*child)->block_status(2 * kBlock, kBlock);
    REQUIRE_OK(run2);
    CHECK(run2->image == 0); // from the parent again
    auto run4 = (*child)->block_status(4 * kBlock, kBlock);
    REQUIRE_OK(run4);
    CHECK(run4->image == 1);
    REQUIRE_OK((*child)->close());
    CHECK(file_size(dir / "child.vdi") == before - kBlock);
    auto again = test::open_disk(*lib, dir / "child.vdi", false);
    CHECK(test::read_all(*again) == model);
}

TEST_CASE("vdi: discard frees whole blocks and completes partial ones", "[vdi]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string path = dir / "d.vdi";
    auto model = make_filled(*lib, path, 8 * kBlock, 6);
    const uint64_t before = file_size(path);
    auto d = test::open_disk(*lib, path, true);
    REQUIRE_OK(d->discard(kBlock, kBlock)); // whole block 1
    CHECK(file_size(path) == before - kBlock);
    // Block 3 in two halves: the first leaves it allocated, the second frees it.
    REQUIRE_OK(d->discard(3 * kBlock, kBlock / 2));
    CHECK(file_size(path) == before - kBlock);
    REQUIRE_OK(d->discard(3 * kBlock + kBlock / 2, kBlock / 2));
    CHECK(file_size(path) == before - 2 * kBlock);
    // A write in between resets the tracking: block 4 keeps its data.
    REQUIRE_OK(d->discard(4 * kBlock, kBlock / 2));
    auto data = test::pattern(100, 5);
    REQUIRE_OK(d->write(4 * kBlock + 10, data.data(), data.size()));
    REQUIRE_OK(d->discard(4 * kBlock + kBlock / 2, kBlock / 2));
    CHECK(file_size(path) == before - 2 * kBlock);
    auto got = test::read_all(*d);
    for (uint64_t b : {1, 3})
        CHECK(std::all_of(got.begin() + static_cast<long>(b * kBlock),
                          got.begin() + static_cast<long>((b + 1) * kBlock), [](unsigned char c) { return c == 0; }));
    // Untouched blocks keep their content after the blocks moved around.
    for (uint64_t b : {0, 2, 5})
        CHECK(std::equal(got.begin() + static_cast<long>(b * kBlock), got.begin() + static_cast<long>((b + 1) * kBlock),
                         model.begin() + static_cast<long>(b * kBlock)));
    CHECK(std::equal(data.begin(), data.end(), got.begin() + static_cast<long>(4 * kBlock + 10)));
    auto report = d->check();
    REQUIRE_OK(report);
    CHECK(report->clean());
}

TEST_CASE("vdi: resize grows (moving data out of the map's way) and shrinks only over zeros", "[vdi]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string path = dir / "r.vdi";
    auto model = make_filled(*lib, path, 16 * kBlock, 16); // data starts right after a 64-byte map
    {
        auto d = test::open_disk(*lib, path, true);
        // 4096 entries need 16 KiB of map: the first data blocks must move.
        REQUIRE_OK(d->resize(4096 * kBlock));
        CHECK(d->size() == 4096 * kBlock);
        model.resize(static_cast<size_t>(4096 * kBlock), 0);
        auto data = test::pattern(kBlock, 77);
        REQUIRE_OK(d->write(4000 * kBlock, data.data(), kBlock));
        std::copy(data.begin(), data.end(), model.begin() + static_cast<long>(4000 * kBlock));
        REQUIRE_OK(d->close());
    }
    {
        auto d = test::open_disk(*lib, path, true);
        CHECK(test::read_all(*d) == model);
        auto report = d->check();
        REQUIRE_OK(report);
        CHECK(report->clean());
        // Without permission, or over data, shrinking is refused.
        CHECK(d->resize(8 * kBlock).code() == VDKIT_E_INVALID_ARGUMENT);
        CHECK(d->resize(8 * kBlock, true).code() == VDKIT_E_INVALID_ARGUMENT);
        CHECK(d->size() == 4096 * kBlock);
        REQUIRE_OK(d->discard(8 * kBlock, 4088 * kBlock));
        REQUIRE_OK(d->resize(8 * kBlock + 1000, true));
        REQUIRE_OK(d->close());
    }
    auto d = test::open_disk(*lib, path, false);
    CHECK(d->size() == 8 * kBlock + 1000);
    model.resize(static_cast<size_t>(8 * kBlock + 1000));
    std::fill(model.begin() + static_cast<long>(8 * kBlock), model.end(), 0);
    CHECK(test::read_all(*d) == model);
    CHECK(file_size(path) < 10 * kBlock);
}

TEST_CASE("vdi: a grown child reads zeros past its parent's end", "[vdi][chain]") {
    test::TempDir dir;
    auto lib = test::make_library();
    auto model = make_filled(*lib, dir / "base.vdi", 4 * kBlock, 4);
    CreateOptions co = vdi_opts(0);
    co.parent = dir / "base.vdi";
    auto child = lib->create_image(dir / "child.vdi", co);
    REQUIRE_OK(child);
    REQUIRE_OK((*child)->resize(8 * kBlock));
    model.resize(8 * kBlock, 0);
    CHECK(test::read_all(**child) == model);
    auto run = (*child)->block_status(6 * kBlock, kBlock);
    REQUIRE_OK(run);
    CHECK(run->state != BlockState::data);
}

TEST_CASE("vdi: check finds map damage, dry run changes nothing, repair fixes it", "[vdi]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string path = dir / "k.vdi";
    make_filled(*lib, path, 8 * kBlock, 4);
    // Block 5 claims data block 1 as well (shared), block 6 points past the file.
    patch_u32(path, kMapOffset + 5 * 4, 1);
    patch_u32(path, kMapOffset + 6 * 4, 7);
    {
        auto d = test::open_disk(*lib, path, false);
        auto report = d->check();
        REQUIRE_OK(report);
        CHECK(report->errors == 2);
        REQUIRE(report->findings.size() >= 2);
        CHECK(report->findings[0].offset.value_or(0) == kMapOffset + 5 * 4);
        CHECK(report->findings[0].message.find("shares data block 1") != std::string::npos);
        CHECK(report->findings[1].message.find("beyond the end of the file") != std::string::npos);
    }
    {
        // Writing is refused while the map is damaged.
        auto d = test::open_disk(*lib, path, true);
        unsigned char byte = 1;
        Status st = d->write(7 * kBlock, &byte, 1);
        CHECK(st.code() == VDKIT_E_CORRUPT);
        CHECK(st.message().find("check -r") != std::string::npos);
    }
    const std::string before = test::file_bytes(path);
    {
        auto d = test::open_disk(*lib, path, false);
        CheckOptions dry;
        dry.repair = true;
        dry.dry_run = true;
        auto report = d->check(dry);
        REQUIRE_OK(report);
        CHECK(report->errors == 2);
        CHECK(report->repaired == 0);
        CHECK(report->findings[0].message.find("would be repaired") != std::string::npos);
    }
    CHECK(test::file_bytes(path) == before);
    {
        auto d = test::open_disk(*lib, path, true);
        CheckOptions fix;
        fix.repair = true;
        auto report = d->check(fix);
        REQUIRE_OK(report);
        CHECK(report->repaired == 2);
        CHECK(report->errors == 0);
        unsigned char byte = 1;
        REQUIRE_OK(d->write(7 * kBlock, &byte, 1)); // writable again
    }
    auto d = test::open_disk(*lib, path, false);
    auto report = d->check();
    REQUIRE_OK(report);
    CHECK(report->clean());
}

TEST_CASE("vdi: check reports orphaned blocks and a wrong allocated count", "[vdi]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string path = dir / "o.vdi";
    auto model = make_filled(*lib, path, 8 * kBlock, 4);
    patch_u32(path, kMapOffset + 2 * 4, 0xFFFFFFFFu); // block 2's data is orphaned
    std::fill(model.begin() + static_cast<long>(2 * kBlock), model.begin() + static_cast<long>(3 * kBlock), 0);
    patch_u32(path, 0x184, 2); // and the header undercounts
    const uint64_t before = file_size(path);
    {
        auto d = test::open_disk(*lib, path, false);
        auto report = d->check();
        REQUIRE_OK(report);
        // The count, and the orphan: writers that append at the count never
        // reuse it (qemu-img check: allocated blocks mismatch).
        CHECK(report->errors == 2);
        CHECK(report->leaks == 0);
        CHECK(test::read_all(*d) == model);
    }
    {
        auto d = test::open_disk(*lib, path, true);
        CheckOptions fix;
        fix.repair = true;
        auto report = d->check(fix);
        REQUIRE_OK(report);
        CHECK(report->repaired == 2);
        CHECK(test::read_all(*d) == model);
    }
    CHECK(file_size(path) == before - kBlock);
    auto d = test::open_disk(*lib, path, false);
    auto report = d->check();
    REQUIRE_OK(report);
    CHECK(report->clean());
    CHECK(test::read_all(*d) == model);
}

TEST_CASE("vdi: hostile headers give clear errors", "[vdi][corrupt]") {
    test::TempDir dir;
    auto lib = test::make_library();
    struct Case {
        const char *what;
        uint64_t offset;
        uint32_t value;
        const char *expect;
    };
    const Case cases[] = {
        {"bad signature", 0x40, 0x12345678, "signature"},
        {"unknown version", 0x44, 0x00050001, "unsupported VDI version"},
        {"header size", 0x48, 0x10, "header size"},
        {"image type", 0x4C, 9, "image type"},
        {"block size not a power of two", 0x178, 3u << 16, "power of two"},
        {"absurd block count", 0x180, 0xFFFFFFF0u, "beyond the end of the file"},
        {"reserved block count", 0x180, 0xFFFFFFFEu, "block count"},
        {"map beyond the end of the file", 0x180, 1u << 24, "beyond the end of the file"},
        {"data offset inside the map", 0x158, 4100, "overlaps the block map"},
    };
    for (const auto &c : cases) {
        CAPTURE(c.what);
        const std::string path = dir / "h.vdi";
        std::filesystem::remove(path);
        make_filled(*lib, path, 8 * kBlock, 2);
        patch_u32(path, c.offset, c.value);
        OpenOptions o;
        o.format = "vdi";
        auto d = lib->open(path, o);
        REQUIRE_FALSE(d.is_ok());
        CHECK(d.status().code() == VDKIT_E_CORRUPT);
        CHECK(d.status().message().find(c.expect) != std::string::npos);
        CHECK(d.status().message().find("h.vdi") != std::string::npos);
    }
    // An allocated count beyond the block count drives nothing (the writer
    // works from the map): the image opens, check names the field.
    {
        const std::string path = dir / "a.vdi";
        make_filled(*lib, path, 8 * kBlock, 2);
        patch_u32(path, 0x184, 1000);
        auto d = test::open_disk(*lib, path, false);
        auto report = d->check();
        REQUIRE_OK(report);
        CHECK(report->errors == 1);
        REQUIRE(report->findings.size() == 1);
        CHECK(report->findings[0].offset == 0x184u);
        CHECK(report->findings[0].message.find("counts 1000 allocated blocks") != std::string::npos);
    }
    // A truncated file: the block map no longer fits.
    const std::string path = dir / "t.vdi";
    make_filled(*lib, path, 8 * kBlock, 2);
    std::filesystem::resize_file(path, 1000);
    auto d = lib->open(path);
    REQUIRE_FALSE(d.is_ok());
    CHECK(d.status().message().find("block map") != std::string::npos);
}

TEST_CASE("vdi: version 0 headers are read and written", "[vdi]") {
    test::TempDir dir;
    auto lib = test::make_library();
    // Build a legacy image by hand: pre-header, 348-byte header, map, data.
    constexpr uint32_t blocks = 4;
    std::vector<unsigned char> img(0x1A4 + blocks * 4 + 2 * kBlock, 0);
    auto put = [&](size_t off, uint64_t v, int n) {
        for (int i = 0; i < n; ++i)
            img[off + static_cast<size_t>(i)] = static_cast<unsigned char>(v >> (8 * i));
    };
    put(0x40, 0xBEDA107F, 4);
    put(0x44, 0x00000002, 4);
    put(0x48, 1, 4);                // normal
    put(0x160, blocks * kBlock, 8); // disk size
    put(0x168, kBlock, 4);          // block size
    put(0x16C, blocks, 4);
    put(0x170, 2, 4);    // allocated
    put(0x174, 0x11, 1); // non-null UUIDs
    put(0x184, 0x22, 1);
    const uint32_t map[blocks] = {1, 0xFFFFFFFF, 0, 0xFFFFFFFE};
    for (uint32_t i = 0; i < blocks; ++i)
        put(0x1A4 + 4 * i, map[i], 4);
    const size_t data = 0x1A4 + blocks * 4;
    std::fill(img.begin() + static_cast<long>(data), img.begin() + static_cast<long>(data + kBlock), 0xAA);
    std::fill(img.begin() + static_cast<long>(data + kBlock), img.end(), 0xBB);
    const std::string path = dir / "v0.vdi";
    {
        std::ofstream f(path, std::ios::binary);
        f.write(reinterpret_cast<const char *>(img.data()), static_cast<std::streamsize>(img.size()));
    }
    auto d = test::open_disk(*lib, path, true);
    auto got = test::read_all(*d);
    CHECK(got[0] == 0xBB);
    CHECK(got[kBlock] == 0);
    CHECK(got[2 * kBlock] == 0xAA);
    CHECK(got[3 * kBlock] == 0);
    auto data2 = test::pattern(kBlock, 3);
    REQUIRE_OK(d->write(kBlock, data2.data(), kBlock));
    CHECK(d->resize(8 * kBlock).code() == VDKIT_E_NOT_SUPPORTED);
    REQUIRE_OK(d->close());
    auto again = test::open_disk(*lib, path, false);
    got = test::read_all(*again);
    CHECK(std::equal(data2.begin(), data2.end(), got.begin() + static_cast<long>(kBlock)));
    CHECK(got[2 * kBlock] == 0xAA);
}

TEST_CASE("vdi: UUIDs, comment and parent verification", "[vdi]") {
    test::TempDir dir;
    auto lib = test::make_library();
    make_filled(*lib, dir / "base.vdi", 4 * kBlock, 2);
    ImageInfo first;
    {
        auto d = test::open_disk(*lib, dir / "base.vdi", true);
        first = *d->image_info(0);
        REQUIRE_OK(d->set_comment("a comment"));
        CHECK(d->set_comment(std::string(300, 'x')).code() == VDKIT_E_INVALID_ARGUMENT);
    }
    {
        auto d = test::open_disk(*lib, dir / "base.vdi", true);
        auto info = *d->image_info(0);
        CHECK(info.comment == "a comment");
        CHECK(info.uuid == first.uuid);
        unsigned char byte = 7;
        REQUIRE_OK(d->write(0, &byte, 1));
        auto after = *d->image_info(0);
        CHECK(after.modification_uuid != info.modification_uuid); // changed by the first write
        CHECK(after.uuid == info.uuid);
    }
    CreateOptions co = vdi_opts(0);
    co.parent = dir / "base.vdi";
    {
        auto child = lib->create_image(dir / "child.vdi", co);
        REQUIRE_OK(child);
        auto info = *(*child)->image_info(1);
        CHECK(info.parent_uuid == first.uuid);
        CHECK(info.parent_hint == "base.vdi");
    }
    // The parent changes after the child was made: the child's view is stale.
    {
        auto d = test::open_disk(*lib, dir / "base.vdi", true);
        unsigned char byte = 8;
        REQUIRE_OK(d->write(0, &byte, 1));
    }
    auto stale = lib->open(dir / "child.vdi");
    REQUIRE_FALSE(stale.is_ok());
    CHECK(stale.status().code() == VDKIT_E_PARENT_MISMATCH);
    OpenOptions lenient;
    lenient.ignore_parent_mismatch = true;
    CHECK(lib->open(dir / "child.vdi", lenient).is_ok());
}
