// One suite run over every format plugin under test that can create images:
// create, write patterns, read back, sparse behaviour, allocation map,
// reopen; and every format under test refuses truncated or foreign files.
// A new format gets it for free. Which plugins are under test is the
// harness's choice (conformance.hpp): vdkit_conformance_tests runs every
// format built here, the installed vdkit-plugin-test runs a third party's.
// Only the public API is used, so the runner links libvdkit alone.
#include "conformance.hpp"
#include "test_support.hpp"

#include <algorithm>
#include <cstdio>

using namespace vdkit;

namespace {

std::vector<std::string> creatable_formats() {
    std::vector<std::string> out;
    for (const auto &p : conformance::library()->plugins())
        if (p.kind == PluginKind::format && conformance::under_test(p) &&
            (p.has(VDKIT_CAP_CREATE_DYNAMIC) || p.has(VDKIT_CAP_CREATE_FIXED)))
            out.push_back(p.name);
    return out;
}

bool all_zero(const unsigned char *p, size_t n) {
    return std::all_of(p, p + n, [](unsigned char b) { return b == 0; });
}

struct Write {
    uint64_t offset, length;
};

constexpr uint64_t kSize = 16u << 20;

// Offsets chosen to hit sector, 4 KiB and 64 KiB-block boundaries and the end.
const Write kWrites[] = {{0, 512},
                         {4096 - 1, 2},
                         {65536 - 100, 300},
                         {1u << 20, 1u << 20},
                         {(3u << 20) + 7, 200000},
                         {kSize - 4096, 4096},
                         {kSize - 1, 1}};

} // namespace

TEST_CASE("every format plugin round-trips data through create, write and reopen", "[conformance]") {
    auto formats = creatable_formats();
    REQUIRE(formats.size() >= conformance::minimum_formats()); // a suite that checks nothing must not pass
    for (const std::string &fmt : formats) {
        DYNAMIC_SECTION("format " << fmt) {
            auto lib = conformance::library();
            test::TempDir dir;
            const std::string path = dir / ("image." + fmt);
            std::vector<unsigned char> model(kSize, 0);
            {
                auto d = lib->create_image(path, test::create_opts(fmt, kSize));
                REQUIRE_OK(d);
                REQUIRE((*d)->size() == kSize);
                // A new image reads as zeros and holds no data.
                std::vector<unsigned char> all(kSize);
                REQUIRE_OK((*d)->read(0, all.data(), kSize));
                CHECK(all_zero(all.data(), all.size()));
                auto first = (*d)->block_status(0, kSize);
                REQUIRE_OK(first);
                CHECK(first->state != BlockState::data);
                uint32_t seed = 1;
                for (const Write &w : kWrites) {
                    auto data = test::pattern(static_cast<size_t>(w.length), seed++);
                    REQUIRE_OK((*d)->write(w.offset, data.data(), w.length));
                    std::copy(data.begin(), data.end(), model.begin() + static_cast<long>(w.offset));
                }
                REQUIRE_OK((*d)->write_zeroes(1u << 20, 4096));
                std::fill(model.begin() + (1 << 20), model.begin() + (1 << 20) + 4096, 0);
                REQUIRE_OK((*d)->flush());
                REQUIRE_OK((*d)->read(0, all.data(), kSize));
                CHECK(all == model);
                REQUIRE_OK((*d)->close());
            }
            // Reopen by probing where the format has a signature, else by name.
            OpenOptions o;
            auto info = lib->plugin(PluginKind::format, fmt);
            if (fmt == "raw") o.format = "raw";
            auto again = lib->open(path, o);
            REQUIRE_OK(again);
            std::vector<unsigned char> all(kSize);
            REQUIRE_OK((*again)->read(0, all.data(), kSize));
            CHECK(all == model);
            // Unaligned small reads agree with the model too.
            for (uint64_t off : {uint64_t(1), uint64_t(4095), uint64_t(65535), kSize - 3}) {
                unsigned char b[3];
                REQUIRE_OK((*again)->read(off, b, 3));
                CHECK(std::equal(b, b + 3, model.begin() + static_cast<long>(off)));
            }
            // The allocation map covers the disk exactly, and every byte
            // reported as not holding data reads as zero.
            uint64_t covered = 0;
            for (uint64_t off = 0; off < kSize;) {
                auto run = (*again)->block_status(off, kSize - off);
                REQUIRE_OK(run);
                REQUIRE(run->length > 0);
                if (run->state != BlockState::data)
                    CHECK(all_zero(model.data() + off, static_cast<size_t>(run->length)));
                off += run->length;
                covered += run->length;
            }
            CHECK(covered == kSize);
            // Sparse formats stay sparse: far less allocated than the virtual size.
            if (info->has(VDKIT_CAP_CREATE_DYNAMIC)) {
                auto ii = (*again)->image_info(0);
                REQUIRE_OK(ii);
                if (ii->file_size) CHECK(*ii->file_size < kSize / 2);
            }
        }
    }
}

TEST_CASE("every format rejects a truncated or foreign file cleanly", "[conformance]") {
    auto lib = conformance::library();
    test::TempDir dir;
    for (const auto &p : lib->plugins()) {
        if (p.kind != PluginKind::format || p.name == "raw" || !conformance::under_test(p)) continue;
        DYNAMIC_SECTION("format " << p.name) {
            for (size_t len : {size_t(0), size_t(7), size_t(600)}) {
                std::string path = dir / ("junk" + std::to_string(len));
                auto junk = test::pattern(len, 77);
                std::FILE *f = std::fopen(path.c_str(), "wb");
                REQUIRE(f);
                if (len) std::fwrite(junk.data(), 1, len, f);
                std::fclose(f);
                OpenOptions o;
                o.format = p.name;
                auto r = lib->open(path, o);
                INFO("length " << len);
                REQUIRE_FALSE(r.is_ok());
                CHECK(r.status().code() != VDKIT_E_INTERNAL);
                CHECK_FALSE(r.status().message().empty());
            }
        }
    }
}
