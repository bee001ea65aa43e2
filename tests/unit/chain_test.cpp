// Chains: reads falling through, copy-on-write done by the core, zero writes
// that keep shadowing the parent after reopen, parent verification.
#include "test_support.hpp"
#include "util/util.hpp"

#include <algorithm>
#include <atomic>
#include <fstream>
#include <random>
#include <thread>

using namespace vdkit;

namespace {
constexpr uint64_t kSize = 4u << 20;
constexpr uint64_t kBlock = 64u << 10;

} // namespace

// A format of each level and its file extension; VDI uses the test's block size.
struct Level {
    std::string format, ext;
};
CreateOptions level_opts(const Level &l, uint64_t size = 0) {
    CreateOptions o = test::create_opts(l.format, size);
    if (l.format == "vdi") o.options["block-size"] = std::to_string(kBlock);
    if (l.format == "vmdk") o.options["zeroed-grain"] = "true"; // zero grains can be recorded
    return o;
}
const Level kToy{"toysparse", "toys"}, kVdi{"vdi", "vdi"}, kVmdk{"vmdk", "vmdk"};

TEST_CASE("a three-level chain reads and writes like one disk (model checked)", "[chain]") {
    // Single-format chains and mixed ones (VDI base with VMDK diffs and the reverse).
    auto levels = GENERATE(std::vector<Level>{kToy, kToy, kToy}, std::vector<Level>{kVdi, kVdi, kVdi},
                           std::vector<Level>{kVmdk, kVmdk, kVmdk}, std::vector<Level>{kVdi, kVmdk, kVdi},
                           std::vector<Level>{kVmdk, kVdi, kVmdk}, std::vector<Level>{kToy, kVdi, kToy});
    CAPTURE(levels[0].format, levels[1].format, levels[2].format);
    test::TempDir dir;
    auto lib = test::make_library();
    std::vector<unsigned char> model(kSize, 0);
    std::mt19937_64 rng(42);
    const std::string names[3] = {dir / ("base." + levels[0].ext), dir / ("mid." + levels[1].ext),
                                  dir / ("top." + levels[2].ext)};

    auto random_write = [&](Disk &d) {
        uint64_t off = rng() % kSize;
        uint64_t len = 1 + rng() % std::min<uint64_t>(3 * kBlock, kSize - off);
        auto data = test::pattern(static_cast<size_t>(len), static_cast<uint32_t>(rng()));
        REQUIRE_OK(d.write(off, data.data(), len));
        std::copy(data.begin(), data.end(), model.begin() + static_cast<long>(off));
    };
    auto random_zero = [&](Disk &d) {
        uint64_t off = rng() % kSize;
        uint64_t len = 1 + rng() % std::min<uint64_t>(3 * kBlock, kSize - off);
        REQUIRE_OK(d.write_zeroes(off, len));
        std::fill(model.begin() + static_cast<long>(off), model.begin() + static_cast<long>(off + len), 0);
    };

    {
        auto base = lib->create_image(names[0], level_opts(levels[0], kSize));
        REQUIRE_OK(base);
        for (int i = 0; i < 40; ++i)
            random_write(**base);
        REQUIRE_OK((*base)->close());
    }
    for (int level = 1; level < 3; ++level) {
        CreateOptions co = level_opts(levels[level]);
        co.parent = names[level - 1];
        auto child = lib->create_image(names[level], co);
        REQUIRE_OK(child);
        CHECK((*child)->size() == kSize);
        CHECK(test::read_all(**child) == model); // a new child shows the parent's data
        for (int i = 0; i < 30; ++i)
            (i % 4 == 3) ? random_zero(**child) : random_write(**child);
        CHECK(test::read_all(**child) == model);
        REQUIRE_OK((*child)->close());
    }
    // Reopen only the top: the chain is found through the parent hints.
    auto top = test::open_disk(*lib, names[2], true);
    CHECK(top->image_count() == 3);
    CHECK(test::read_all(*top) == model);
    for (int i = 0; i < 30; ++i)
        (i % 3 == 2) ? random_zero(*top) : random_write(*top);
    REQUIRE_OK(top->close());
    auto again = lib->open(names[2]);
    REQUIRE_OK(again);
    CHECK(test::read_all(**again) == model);
}

TEST_CASE("a zero write over parent data keeps shadowing it after reopen", "[chain]") {
    auto level = GENERATE(kToy, kVdi, kVmdk);
    CAPTURE(level.format);
    test::TempDir dir;
    auto lib = test::make_library();
    auto data = test::pattern(kSize, 7);
    const std::string base_name = dir / ("b." + level.ext), child_name = dir / ("c." + level.ext);
    {
        auto base = lib->create_image(base_name, level_opts(level, kSize));
        REQUIRE_OK(base);
        REQUIRE_OK((*base)->write(0, data.data(), data.size()));
        REQUIRE_OK((*base)->close());
        CreateOptions co = level_opts(level);
        co.parent = base_name;
        auto child = lib->create_image(child_name, co);
        REQUIRE_OK(child);
        // Whole blocks and ragged edges.
        REQUIRE_OK((*child)->write_zeroes(kBlock, 2 * kBlock));
        REQUIRE_OK((*child)->write_zeroes(5 * kBlock + 100, 1000));
        // Zero data written over a whole block counts the same as write_zeroes.
        std::vector<unsigned char> zeros(kBlock, 0);
        REQUIRE_OK((*child)->write(8 * kBlock, zeros.data(), zeros.size()));
        REQUIRE_OK((*child)->close());
    }
    auto child = lib->open(child_name);
    REQUIRE_OK(child);
    auto got = test::read_all(**child);
    std::fill(data.begin() + kBlock, data.begin() + 3 * kBlock, 0);
    std::fill(data.begin() + 5 * kBlock + 100, data.begin() + 5 * kBlock + 1100, 0);
    std::fill(data.begin() + 8 * kBlock, data.begin() + 9 * kBlock, 0);
    CHECK(got == data);
    // The whole zeroed blocks are recorded in the child, not left to the parent.
    auto run = (*child)->block_status(kBlock, kBlock);
    REQUIRE_OK(run);
    CHECK(run->state == BlockState::zero);
    CHECK(run->image == 1);
    auto run8 = (*child)->block_status(8 * kBlock, kBlock);
    REQUIRE_OK(run8);
    CHECK(run8->state != BlockState::unallocated);
    CHECK(run8->image == 1);
}

TEST_CASE("block status resolves through the chain", "[chain]") {
    test::TempDir dir;
    auto lib = test::make_library();
    auto data = test::pattern(kBlock, 3);
    {
        auto base = lib->create_image(dir / "b.toys", test::create_opts("toysparse", kSize));
        REQUIRE_OK(base);
        REQUIRE_OK((*base)->write(2 * kBlock, data.data(), kBlock));
        REQUIRE_OK((*base)->close());
    }
    CreateOptions co = test::create_opts("toysparse");
    co.parent = dir / "b.toys";
    auto child = lib->create_image(dir / "c.toys", co);
    REQUIRE_OK(child);
    REQUIRE_OK((*child)->write(0, data.data(), 10)); // partial: the core fills the block
    auto r0 = (*child)->block_status(0, kSize);
    REQUIRE_OK(r0);
    CHECK(r0->state == BlockState::data);
    CHECK(r0->length == kBlock);
    CHECK(r0->image == 1);
    auto r1 = (*child)->block_status(kBlock, kSize - kBlock);
    REQUIRE_OK(r1);
    CHECK(r1->state == BlockState::unallocated);
    CHECK(r1->length == kBlock);
    auto r2 = (*child)->block_status(2 * kBlock, kSize - 2 * kBlock);
    REQUIRE_OK(r2);
    CHECK(r2->state == BlockState::data);
    CHECK(r2->image == 0);
    // Bytes after the partial write came from the (zero) parent block, not garbage.
    std::vector<unsigned char> back(kBlock);
    REQUIRE_OK((*child)->read(0, back.data(), kBlock));
    CHECK(std::equal(back.begin(), back.begin() + 10, data.begin()));
    CHECK(util::is_zero(back.data() + 10, kBlock - 10));
}

TEST_CASE("broken chains give clear errors", "[chain]") {
    test::TempDir dir;
    auto lib = test::make_library();
    REQUIRE_OK(lib->create_image(dir / "b.toys", test::create_opts("toysparse", kSize)));
    CreateOptions co = test::create_opts("toysparse");
    co.parent = dir / "b.toys";
    REQUIRE_OK(lib->create_image(dir / "c.toys", co));

    SECTION("a replaced parent fails verification") {
        uint8_t other[16];
        util::generate_uuid(other);
        test::patch(dir / "b.toys", 48, other, 16); // the base's own UUID
        auto r = lib->open(dir / "c.toys");
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == VDKIT_E_PARENT_MISMATCH);
        OpenOptions o;
        o.ignore_parent_mismatch = true;
        REQUIRE_OK(lib->open(dir / "c.toys", o));
    }
    SECTION("a missing parent is named") {
        std::filesystem::remove(dir / "b.toys");
        auto r = lib->open(dir / "c.toys");
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == VDKIT_E_NOT_FOUND);
        CHECK_THAT(r.status().message(), Catch::Contains("b.toys"));
    }
    SECTION("a chain that loops is refused") {
        const char hint[] = "c.toys";
        test::patch(dir / "c.toys", 80, "\x06\x00", 2);
        test::patch(dir / "c.toys", 82, hint, 6);
        OpenOptions o;
        o.ignore_parent_mismatch = true;
        auto r = lib->open(dir / "c.toys", o);
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == VDKIT_E_CORRUPT);
        CHECK_THAT(r.status().message(), Catch::Contains("loops"));
    }
    SECTION("chains deeper than max_chain_depth are refused") {
        std::ofstream(dir / "cfg.yaml") << "max_chain_depth: 1\n";
        auto o = test::test_options();
        o.config_file = dir / "cfg.yaml";
        auto shallow = Library::create(o);
        REQUIRE_OK(shallow);
        auto r = (*shallow)->open(dir / "c.toys");
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == VDKIT_E_OUT_OF_RANGE);
    }
    SECTION("a corrupt block map entry is reported with its offset") {
        uint64_t bad = 1ull << 40;
        test::patch(dir / "b.toys", 512 + 8 * 3, &bad, 8);
        auto r = lib->open(dir / "b.toys");
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == VDKIT_E_CORRUPT);
        CHECK_THAT(r.status().message(), Catch::Contains("block 3") && Catch::Contains("offset 536"));
    }
}

TEST_CASE("a new diff never replaces a file of its own chain", "[chain]") {
    test::TempDir dir;
    auto lib = test::make_library();
    REQUIRE_OK(lib->create_image(dir / "b.toys", test::create_opts("toysparse", kSize)));
    CreateOptions co = test::create_opts("toysparse");
    co.parent = dir / "b.toys";
    co.overwrite = true;
    auto r = lib->create_image(dir / "b.toys", co);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == VDKIT_E_INVALID_ARGUMENT);
    REQUIRE_OK(lib->open(dir / "b.toys")); // still there, still valid
}

TEST_CASE("reads and writes outside the disk are refused", "[chain]") {
    test::TempDir dir;
    auto lib = test::make_library();
    auto d = lib->create_image(dir / "a.toys", test::create_opts("toysparse", kSize));
    REQUIRE_OK(d);
    char b[16] = {};
    CHECK((*d)->read(kSize - 8, b, 16).code() == VDKIT_E_OUT_OF_RANGE);
    CHECK((*d)->write(UINT64_MAX - 4, b, 16).code() == VDKIT_E_OUT_OF_RANGE);
    auto ro = lib->open(dir / "a.toys");
    CHECK_FALSE(ro.is_ok()); // the writer holds the lock
    REQUIRE_OK((*d)->close());
    auto ro2 = lib->open(dir / "a.toys");
    REQUIRE_OK(ro2);
    CHECK((*ro2)->write(0, b, 16).code() == VDKIT_E_READ_ONLY);
}

TEST_CASE("concurrent readers see consistent data while a writer works", "[chain][threads]") {
    test::TempDir dir;
    auto lib = test::make_library();
    auto d = lib->create_image(dir / "a.toys", test::create_opts("toysparse", kSize));
    REQUIRE_OK(d);
    Disk &disk = **d;
    auto stable = test::pattern(kBlock, 9);
    REQUIRE_OK(disk.write(0, stable.data(), kBlock));
    std::atomic<bool> mismatch{false}, failed{false};
    std::vector<std::thread> readers;
    for (int t = 0; t < 3; ++t)
        readers.emplace_back([&] {
            std::vector<unsigned char> buf(kBlock);
            for (int i = 0; i < 200; ++i) {
                if (!disk.read(0, buf.data(), kBlock).is_ok()) failed = true;
                if (buf != stable) mismatch = true;
            }
        });
    for (int i = 0; i < 50; ++i) {
        auto data = test::pattern(kBlock, 100 + i);
        REQUIRE_OK(disk.write(kBlock * (1 + i % 60), data.data(), kBlock));
    }
    for (auto &t : readers)
        t.join();
    CHECK_FALSE(failed);
    CHECK_FALSE(mismatch);
}

TEST_CASE("copy follows allocation and reproduces content", "[chain][copy]") {
    test::TempDir dir;
    auto lib = test::make_library();
    auto src = lib->create_image(dir / "s.toys", test::create_opts("toysparse", kSize));
    REQUIRE_OK(src);
    auto a = test::pattern(3 * kBlock + 17, 5);
    REQUIRE_OK((*src)->write(kBlock / 2, a.data(), a.size()));
    auto dst = lib->create_image(dir / "d.img", test::create_opts("raw", kSize));
    REQUIRE_OK(dst);
    uint64_t last_total = 0, calls = 0;
    CopyOptions co;
    co.progress = [&](uint64_t, uint64_t total) {
        last_total = total;
        ++calls;
        return true;
    };
    REQUIRE_OK(lib->copy(**src, **dst, co));
    CHECK(test::read_all(**dst) == test::read_all(**src));
    CHECK(last_total == 4 * kBlock); // progress counts allocated data only
    CHECK(calls >= 2);

    CopyOptions cancel;
    cancel.progress = [](uint64_t done, uint64_t) { return done == 0; };
    auto dst2 = lib->create_image(dir / "e.img", test::create_opts("raw", kSize));
    REQUIRE_OK(dst2);
    cancel.buffer_size = kBlock;
    CHECK(lib->copy(**src, **dst2, cancel).code() == VDKIT_E_CANCELLED);
}

TEST_CASE("metadata of the top image is reachable through the disk", "[chain][metadata]") {
    test::TempDir dir;
    auto lib = test::make_library();
    CreateOptions co = test::create_opts("vmdk", kSize);
    co.options = {{"adapter-type", "lsilogic"}};
    REQUIRE_OK(lib->create_image(dir / "m.vmdk", co));
    auto disk = lib->open(dir / "m.vmdk");
    REQUIRE_OK(disk);
    auto adapter = (*disk)->metadata_get("ddb.adapterType");
    REQUIRE_OK(adapter);
    CHECK(*adapter == "lsilogic");
    auto keys = (*disk)->metadata_keys();
    REQUIRE_OK(keys);
    CHECK(std::find(keys->begin(), keys->end(), "ddb.virtualHWVersion") != keys->end());
    auto missing = (*disk)->metadata_get("ddb.nothing");
    CHECK(missing.status().code() == VDKIT_E_NOT_FOUND);
    CHECK_THAT(missing.status().message(), Catch::Contains("ddb.nothing"));
    // Read-only disk, and a format without metadata: both clear refusals.
    CHECK((*disk)->metadata_set("ddb.x", "1").code() == VDKIT_E_READ_ONLY);
    auto raw = lib->create_image(dir / "r.img", test::create_opts("raw", kSize));
    REQUIRE_OK(raw);
    auto none = (*raw)->metadata_get("anything");
    CHECK(none.status().code() == VDKIT_E_NOT_SUPPORTED);
    CHECK_THAT(none.status().message(), Catch::Contains("raw"));
}
