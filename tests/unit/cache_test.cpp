// Cache images (Disk::attach_cache, VDCreateCache/VDCacheOpen): reads fill
// the cache and are then served from it; writes go through to the chain;
// a cache survives a clean close and is emptied when stale; it can be
// dropped at any time without losing data.
#include "test_support.hpp"

#include "vdkit/vdkit.h"

#include <algorithm>

using namespace vdkit;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMiB = 1u << 20;
constexpr uint64_t kSize = 16 * kMiB;

struct Setup {
    std::string base, top;
    std::vector<unsigned char> model;
    uint64_t data_bytes = 0;
};

// base.vdi (data at 0..3 MiB) <- top.vmdk (data at 8..10 MiB).
Setup make_chain(Library &lib, const test::TempDir &dir) {
    Setup s{dir / "base.vdi", dir / "top.vmdk", std::vector<unsigned char>(kSize, 0), 5 * kMiB};
    auto put = [&](Disk &d, uint64_t off, uint64_t len, uint32_t seed) {
        auto data = test::pattern(static_cast<size_t>(len), seed);
        REQUIRE_OK(d.write(off, data.data(), len));
        std::copy(data.begin(), data.end(), s.model.begin() + static_cast<long>(off));
    };
    auto base = lib.create_image(s.base, test::create_opts("vdi", kSize));
    REQUIRE_OK(base);
    put(**base, 0, 3 * kMiB, 1);
    REQUIRE_OK((*base)->close());
    CreateOptions co = test::create_opts("vmdk");
    co.parent = s.base;
    auto top = lib.create_image(s.top, co);
    REQUIRE_OK(top);
    put(**top, 8 * kMiB, 2 * kMiB, 2);
    REQUIRE_OK((*top)->close());
    return s;
}

CacheStats stats(const Disk &d) {
    auto s = d.cache_stats();
    REQUIRE_OK(s);
    return *s;
}

} // namespace

TEST_CASE("a cache is filled by reads and then answers them", "[cache]") {
    test::TempDir dir;
    auto lib = test::make_library();
    Setup s = make_chain(*lib, dir);
    const std::string cache = dir / "c.vdi";
    {
        auto d = test::open_disk(*lib, s.top, false);
        REQUIRE_OK(d->attach_cache(cache));
        CHECK(test::first_difference(*d, s.model) == "equal");
        CHECK(stats(*d).hit_bytes == 0);
        CHECK(stats(*d).miss_bytes == kSize);
        CHECK(test::first_difference(*d, s.model) == "equal");
        // The data blocks come from the cache now; only zeros still go to the chain.
        CHECK(stats(*d).hit_bytes == s.data_bytes);
        // Proof: damage the base's data in its file; the cached blocks still read right.
        std::vector<unsigned char> junk(4096, 0xEE);
        test::patch(s.base, fs::file_size(s.base) - 8192, junk.data(), junk.size()); // the base's last data block
        auto uncached = test::open_disk(*lib, s.top, false);
        CHECK(test::first_difference(*uncached, s.model) != "equal");
        CHECK(test::first_difference(*d, s.model) == "equal");
        REQUIRE_OK(d->close());
    }
    // The cache holds only data blocks, no more.
    auto c = lib->open(cache);
    REQUIRE_OK(c);
    CHECK((*c)->image_count() == 1);
    CHECK(*(*c)->image_info(0)->file_size < kSize);
}

TEST_CASE("a cache is reused after a clean close, emptied when stale", "[cache]") {
    test::TempDir dir;
    test::LogCapture log;
    auto lib = test::make_library({}, &log);
    Setup s = make_chain(*lib, dir);
    const std::string cache = dir / "c.vmdk";
    CacheOptions vmdk_cache;
    vmdk_cache.format = "vmdk";
    {
        auto d = test::open_disk(*lib, s.top, false);
        REQUIRE_OK(d->attach_cache(cache, vmdk_cache));
        CHECK(test::first_difference(*d, s.model) == "equal");
    } // closed by the destructor
    {
        auto d = test::open_disk(*lib, s.top, false);
        REQUIRE_OK(d->attach_cache(cache, vmdk_cache));
        CHECK(test::first_difference(*d, s.model) == "equal");
        CHECK(stats(*d).hit_bytes == s.data_bytes); // warm from the first read on
        REQUIRE_OK(d->detach_cache());
    }
    // The disk changes without the cache: its top's modification id moves on.
    {
        auto d = test::open_disk(*lib, s.top, true);
        auto data = test::pattern(kMiB, 3);
        REQUIRE_OK(d->write(0, data.data(), data.size()));
        std::copy(data.begin(), data.end(), s.model.begin());
        REQUIRE_OK(d->close());
    }
    {
        auto d = test::open_disk(*lib, s.top, false);
        REQUIRE_OK(d->attach_cache(cache, vmdk_cache));
        CHECK(std::any_of(log.lines.begin(), log.lines.end(),
                          [](const std::string &l) { return l.find("the cache is stale") != std::string::npos; }));
        CHECK(test::first_difference(*d, s.model) == "equal");
        CHECK(stats(*d).hit_bytes == 0);
    }
}

TEST_CASE("writes go through the cache to the chain, the cache can be dropped any time", "[cache]") {
    test::TempDir dir;
    test::LogCapture log;
    auto lib = test::make_library({}, &log);
    Setup s = make_chain(*lib, dir);
    const std::string cache = dir / "c.vdi";
    auto d = test::open_disk(*lib, s.top, true);
    REQUIRE_OK(d->attach_cache(cache));
    CHECK(test::first_difference(*d, s.model) == "equal"); // warm
    // Into cached blocks: a partial write, zeros, a discard (the top's own data).
    auto data = test::pattern(300000, 4);
    REQUIRE_OK(d->write(kMiB + 12345, data.data(), data.size()));
    std::copy(data.begin(), data.end(), s.model.begin() + static_cast<long>(kMiB + 12345));
    REQUIRE_OK(d->write_zeroes(2 * kMiB + 100, 5000));
    std::fill(s.model.begin() + static_cast<long>(2 * kMiB + 100), s.model.begin() + static_cast<long>(2 * kMiB + 5100),
              0);
    REQUIRE_OK(d->discard(8 * kMiB, kMiB)); // the top gives it back: the base (zeros) shows through
    std::fill(s.model.begin() + static_cast<long>(8 * kMiB), s.model.begin() + static_cast<long>(9 * kMiB), 0);
    const uint64_t hits_before = stats(*d).hit_bytes;
    CHECK(test::first_difference(*d, s.model) == "equal");
    CHECK(stats(*d).hit_bytes > hits_before);

    // A copy of the cache taken now carries the "being updated" mark.
    fs::copy_file(cache, dir / "mid-update.vdi");
    // Dropped while the disk is open and changed: nothing is lost.
    REQUIRE_OK(d->detach_cache(true));
    CHECK(!fs::exists(cache));
    auto more = test::pattern(kMiB, 5);
    REQUIRE_OK(d->write(12 * kMiB, more.data(), more.size()));
    std::copy(more.begin(), more.end(), s.model.begin() + static_cast<long>(12 * kMiB));
    REQUIRE_OK(d->close());
    auto plain = test::open_disk(*lib, s.top, false);
    CHECK(test::first_difference(*plain, s.model) == "equal");
    // A cache left mid-update (as after a crash) is never trusted.
    REQUIRE_OK(plain->attach_cache(dir / "mid-update.vdi"));
    CHECK(test::first_difference(*plain, s.model) == "equal");
    CHECK(stats(*plain).hit_bytes == 0);
    CHECK(std::any_of(log.lines.begin(), log.lines.end(), [](const std::string &l) {
        return l.find("being updated when its disk was last used") != std::string::npos;
    }));
}

TEST_CASE("a cache follows resize and refuses what cannot hold it", "[cache]") {
    test::TempDir dir;
    auto lib = test::make_library();
    Setup s = make_chain(*lib, dir);
    auto d = test::open_disk(*lib, s.top, true);
    CHECK(d->attach_cache(s.base).code() == VDKIT_E_INVALID_ARGUMENT); // an image of the chain
    CacheOptions toy;
    toy.format = "toysparse"; // no comment field
    CHECK(d->attach_cache(dir / "c.toys", toy).code() == VDKIT_E_NOT_SUPPORTED);
    CHECK(!fs::exists(dir / "c.toys"));
    CHECK(d->cache_stats().status().code() == VDKIT_E_NOT_FOUND);

    // A file that is not a cache is never replaced: an image outside the
    // chain, a VMDK named with the VDI cache format, plain data.
    auto stranger = lib->create_image(dir / "stranger.vdi", test::create_opts("vdi", kSize));
    REQUIRE_OK(stranger);
    auto data = test::pattern(kMiB, 6);
    REQUIRE_OK((*stranger)->write(0, data.data(), data.size()));
    REQUIRE_OK((*stranger)->close());
    REQUIRE_OK(lib->create_image(dir / "other.vmdk", test::create_opts("vmdk", kSize)));
    std::ofstream(dir / "notes.txt") << "keep me";
    const std::string before = test::file_bytes(dir / "stranger.vdi");
    for (const std::string name : {"stranger.vdi", "other.vmdk", "notes.txt"}) {
        INFO(name);
        auto refused = d->attach_cache(dir / name);
        CHECK(refused.code() == VDKIT_E_EXISTS);
        CHECK(refused.message().find("is not a vdkit cache") != std::string::npos);
    }
    CHECK(test::file_bytes(dir / "stranger.vdi") == before);
    CHECK(test::file_bytes(dir / "notes.txt") == "keep me");
    CHECK(test::first_difference(*d, s.model) == "equal");

    REQUIRE_OK(d->attach_cache(dir / "c.vdi"));
    CHECK(d->attach_cache(dir / "d.vdi").code() == VDKIT_E_INVALID_ARGUMENT); // one at a time
    CHECK(test::first_difference(*d, s.model) == "equal");
    REQUIRE_OK(d->resize(kSize + 4 * kMiB));
    s.model.resize(kSize + 4 * kMiB, 0);
    CHECK(test::first_difference(*d, s.model) == "equal");
    CHECK(stats(*d).hit_bytes == 0); // started over at the new size
    CHECK(test::first_difference(*d, s.model) == "equal");
    CHECK(stats(*d).hit_bytes == s.data_bytes);
    REQUIRE_OK(d->close());
}

TEST_CASE("the C API attaches, reports and detaches caches", "[cache][c-api]") {
    test::TempDir dir;
    auto cpp = test::make_library();
    Setup s = make_chain(*cpp, dir);
    vdkit_error err{};
    vdkit_library *lib = test::open_c_library(err);
    vdkit_disk *disk = nullptr;
    REQUIRE(vdkit_disk_open(lib, s.top.c_str(), nullptr, 0, nullptr, &disk, &err) == VDKIT_OK);
    const std::string cache = dir / "c.vdi";
    REQUIRE(vdkit_disk_attach_cache(disk, cache.c_str(), nullptr, nullptr, &err) == VDKIT_OK);
    std::vector<unsigned char> all(kSize);
    for (int pass = 0; pass < 2; ++pass)
        REQUIRE(vdkit_disk_read(disk, 0, all.data(), all.size(), &err) == VDKIT_OK);
    CHECK(all == s.model);
    vdkit_cache_stats st{};
    st.struct_size = sizeof st;
    REQUIRE(vdkit_disk_cache_stats(disk, &st, &err) == VDKIT_OK);
    CHECK(st.hit_bytes == s.data_bytes);
    CHECK(st.miss_bytes == 2 * kSize - s.data_bytes); // zeros are never cached
    REQUIRE(vdkit_disk_detach_cache(disk, VDKIT_CACHE_DELETE, &err) == VDKIT_OK);
    CHECK(!fs::exists(cache));
    CHECK(vdkit_disk_cache_stats(disk, &st, &err) == VDKIT_E_NOT_FOUND);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    vdkit_library_close(lib);
}
