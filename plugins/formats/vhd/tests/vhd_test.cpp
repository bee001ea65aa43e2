// The VHD plugin through the library: crash ordering (BAT entries and
// bitmaps reach the file only after the data, at a flush), sizes as the
// writers make them, differencing writes at sector granularity, and hostile
// footers. Interop with qemu-img and Hyper-V-style images:
// tests/vhd_interop_test.sh.
#include "test_support.hpp"

#include <filesystem>

using namespace vdkit;

namespace {

uint32_t be32(const std::string &bytes, uint64_t at) {
    return uint32_t(uint8_t(bytes[at])) << 24 | uint32_t(uint8_t(bytes[at + 1])) << 16 |
           uint32_t(uint8_t(bytes[at + 2])) << 8 | uint8_t(bytes[at + 3]);
}
uint64_t be64(const std::string &bytes, uint64_t at) {
    return uint64_t(be32(bytes, at)) << 32 | be32(bytes, at + 4);
}

CreateOptions vhd_opts(uint64_t size, std::map<std::string, std::string> extra = {}) {
    CreateOptions o = test::create_opts("vhd", size);
    for (auto &[k, v] : extra)
        o.options[k] = v;
    return o;
}

constexpr uint64_t kTable = 1536; // where vdkit puts the BAT (formats.md §3.2)

} // namespace

TEST_CASE("vhd: BAT entries reach the file only after the data, at a flush", "[vhd]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string path = dir / "c.vhd";
    auto d = lib->create_image(path, vhd_opts(8 << 20, {{"block-size", "1M"}, {"force-size", "on"}}));
    REQUIRE_OK(d);
    REQUIRE_OK((*d)->flush());
    const auto data = test::pattern(4096, 7);
    REQUIRE_OK((*d)->write((3 << 20) + 512, data.data(), data.size()));
    // Written, not flushed: the file's BAT still says "not allocated" for
    // block 3, and the file ends in a valid footer past the new block.
    // The open disk reads what it wrote already (the block lies past the data area it opened with).
    std::vector<unsigned char> now(4096);
    REQUIRE_OK((*d)->read((3 << 20) + 512, now.data(), now.size()));
    CHECK(now == data);
    std::string bytes = test::file_bytes(path);
    CHECK(be32(bytes, kTable + 3 * 4) == 0xFFFFFFFFu);
    CHECK(bytes.compare(bytes.size() - 512, 8, "conectix") == 0);
    REQUIRE_OK((*d)->flush());
    bytes = test::file_bytes(path);
    const uint32_t entry = be32(bytes, kTable + 3 * 4);
    REQUIRE(entry != 0xFFFFFFFFu);
    // The block: a 512-byte bitmap (every bit set in a dynamic image), then the data.
    CHECK(uint8_t(bytes[uint64_t(entry) * 512]) == 0xFF);
    CHECK(bytes.compare(uint64_t(entry) * 512 + 512 + 512, data.size(), std::string(data.begin(), data.end())) == 0);
    REQUIRE_OK((*d)->close());
    auto r = test::open_disk(*lib, path);
    std::vector<unsigned char> back(4096);
    REQUIRE_OK(r->read((3 << 20) + 512, back.data(), back.size()));
    CHECK(back == data);
}

TEST_CASE("vhd: sizes are exact by default and CHS-rounded with force-size=off", "[vhd]") {
    test::TempDir dir;
    auto lib = test::make_library();
    // qemu-img create -f vpc 20M gives 20994048 bytes (formats.md §3.4, checked with qemu-img 7.2).
    auto a = lib->create_image(dir / "a.vhd", vhd_opts(20 << 20, {{"force-size", "off"}}));
    REQUIRE_OK(a);
    CHECK((*a)->size() == 20994048);
    REQUIRE_OK((*a)->close());
    auto b = lib->create_image(dir / "b.vhd", vhd_opts(20 << 20));
    REQUIRE_OK(b);
    CHECK((*b)->size() == (20u << 20));
    REQUIRE_OK((*b)->close());
    const std::string fb = test::file_bytes(dir / "b.vhd");
    CHECK(fb.compare(fb.size() - 512 + 28, 4, "qem2") == 0);
    CHECK(be64(fb, fb.size() - 512 + 48) == (20u << 20));
    // Azure: fixed, whole MiB only.
    auto z = lib->create_image(dir / "z.vhd", vhd_opts(5000000, {{"azure", "on"}}));
    REQUIRE_FALSE(z.is_ok());
    CHECK(z.status().message().find("Azure takes whole MiB") != std::string::npos);
    auto z2 = lib->create_image(dir / "z2.vhd", vhd_opts(5 << 20, {{"azure", "on"}}));
    REQUIRE_OK(z2);
    REQUIRE_OK((*z2)->close());
    CHECK(std::filesystem::file_size(dir / "z2.vhd") == (5u << 20) + 512);
}

TEST_CASE("vhd: a differencing image keeps the parent's bytes around a partial-sector write", "[vhd][chain]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string base = dir / "base.vhd", child = dir / "child.vhd";
    auto model = test::pattern(4 << 20, 3);
    {
        auto d = lib->create_image(base, vhd_opts(4 << 20, {{"force-size", "on"}, {"block-size", "512k"}}));
        REQUIRE_OK(d);
        REQUIRE_OK((*d)->write(0, model.data(), model.size()));
        REQUIRE_OK((*d)->close());
    }
    {
        CreateOptions o = vhd_opts(0, {{"block-size", "512k"}});
        o.parent = base;
        auto d = lib->create_image(child, o);
        REQUIRE_OK(d);
        const unsigned char x[3] = {1, 2, 3};
        REQUIRE_OK((*d)->write(700001, x, 3)); // inside one sector, mid-block
        std::copy(x, x + 3, model.begin() + 700001);
        REQUIRE_OK((*d)->close());
    }
    auto d = test::open_disk(*lib, child);
    CHECK(test::first_difference(*d, model) == "equal");
    // Only that sector is this image's: one bit of block 1's bitmap (MSB first, formats.md §3.3).
    const std::string bytes = test::file_bytes(child);
    const uint32_t entry = be32(bytes, kTable + 4);
    REQUIRE(entry != 0xFFFFFFFFu);
    const uint64_t s = (700001 - (512 << 10)) / 512;
    for (uint64_t i = 0; i < 128; ++i) {
        const uint8_t want = i == s / 8 ? uint8_t(0x80 >> (s % 8)) : 0;
        INFO("bitmap byte " << i);
        CHECK(uint8_t(bytes[uint64_t(entry) * 512 + i]) == want);
    }
    auto report = d->check();
    REQUIRE_OK(report);
    CHECK(report->clean());
}

TEST_CASE("vhd: hostile footers are refused naming the field", "[vhd][hostile]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string path = dir / "h.vhd";
    {
        auto d = lib->create_image(path, vhd_opts(1 << 20, {{"force-size", "on"}}));
        REQUIRE_OK(d);
        REQUIRE_OK((*d)->close());
    }
    const uint64_t end = std::filesystem::file_size(path) - 512;
    SECTION("both checksums wrong") {
        const unsigned char junk[1] = {0x5a};
        test::patch(path, 70, junk, 1);
        test::patch(path, end + 70, junk, 1);
        OpenOptions o;
        auto r = lib->open(path, o);
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().message().find("checksum") != std::string::npos);
        CHECK(r.status().message().find("byte 64 of the footer") != std::string::npos);
    }
    SECTION("only the footer at the end is wrong: the copy serves, check names it") {
        const unsigned char junk[1] = {0x5a};
        test::patch(path, end + 70, junk, 1);
        auto d = test::open_disk(*lib, path);
        auto report = d->check();
        REQUIRE_OK(report);
        CHECK_FALSE(report->clean());
    }
}
