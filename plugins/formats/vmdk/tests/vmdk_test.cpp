// The VMDK plugin's writers that need the API to exercise (the qemu-img
// interop lives in plugins/formats/vmdk/tests/vmdk_read_test.sh).
#include "test_support.hpp"

#include <algorithm>
#include <filesystem>

using namespace vdkit;

namespace {
constexpr uint64_t kGrain = 64u << 10;

CreateOptions stream_opts(uint64_t size, const std::string &threads = "0") {
    CreateOptions o = test::create_opts("vmdk", size);
    o.options["subformat"] = "streamOptimized";
    o.options["threads"] = threads;
    return o;
}

} // namespace

TEST_CASE("vmdk: streamOptimized takes partial and whole grains front to back", "[vmdk][stream]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const uint64_t size = 40 * kGrain + 3 * 512; // a short last grain
    std::vector<unsigned char> model(size, 0);
    auto put = [&](Disk &d, uint64_t off, uint64_t len, uint32_t seed) {
        auto data = test::pattern(static_cast<size_t>(len), seed);
        REQUIRE_OK(d.write(off, data.data(), len));
        std::copy(data.begin(), data.end(), model.begin() + static_cast<long>(off));
    };
    for (const char *threads : {"1", "3"}) {
        CAPTURE(threads);
        std::fill(model.begin(), model.end(), 0);
        const std::string path = dir / (std::string("s") + threads + ".vmdk");
        auto d = lib->create_image(path, stream_opts(size, threads));
        REQUIRE_OK(d);
        put(**d, 100, 1000, 1);               // inside grain 0
        put(**d, 5000, kGrain, 2);            // spans grains 0 and 1
        put(**d, 3 * kGrain, 10 * kGrain, 3); // whole grains
        std::vector<unsigned char> zeros(kGrain, 0);
        REQUIRE_OK((*d)->write(20 * kGrain, zeros.data(), kGrain)); // an all-zero grain is left out
        put(**d, 25 * kGrain + 7, 2 * kGrain, 4);                   // unaligned across three grains
        put(**d, size - 700, 700, 5);                               // the short last grain
        // Going back is refused: a stream is written once.
        unsigned char byte = 1;
        Status back = (*d)->write(4 * kGrain, &byte, 1);
        CHECK(back.code() == VDKIT_E_NOT_SUPPORTED);
        CHECK(back.message().find("front to back") != std::string::npos);
        std::vector<unsigned char> buf(16);
        CHECK((*d)->read(0, buf.data(), buf.size()).code() == VDKIT_E_NOT_SUPPORTED);
        REQUIRE_OK((*d)->close());

        auto again = lib->open(path);
        REQUIRE_OK(again);
        CHECK((*again)->size() == size);
        std::vector<unsigned char> got(size);
        REQUIRE_OK((*again)->read(0, got.data(), size));
        CHECK(got == model);
        auto info = (*again)->image_info(0);
        REQUIRE_OK(info);
        CHECK(info->subformat == "streamOptimized");
        auto zero_grain = (*again)->block_status(20 * kGrain, kGrain);
        REQUIRE_OK(zero_grain);
        CHECK(zero_grain->state != BlockState::data);
    }
    // The output does not depend on the number of compression threads.
    CHECK(test::file_bytes(dir / "s1.vmdk").substr(2048) == test::file_bytes(dir / "s3.vmdk").substr(2048));
}

TEST_CASE("vmdk: an empty streamOptimized disk is complete after close", "[vmdk][stream]") {
    test::TempDir dir;
    auto lib = test::make_library();
    auto d = lib->create_image(dir / "e.vmdk", stream_opts(1u << 30));
    REQUIRE_OK(d);
    REQUIRE_OK((*d)->close());
    auto again = lib->open(dir / "e.vmdk");
    REQUIRE_OK(again);
    // Runs may be shorter than asked (Disk::block_status: 1..len bytes; a
    // VMDK status call looks at 4096 grains at most): walk them all.
    for (uint64_t at = 0; at < (1u << 30);) {
        auto run = (*again)->block_status(at, (1u << 30) - at);
        REQUIRE_OK(run);
        REQUIRE(run->length > 0);
        CHECK(run->state != BlockState::data);
        at += run->length;
    }
    CHECK(std::filesystem::file_size(dir / "e.vmdk") < 256u << 10);
}

TEST_CASE("vmdk: ddb metadata is written into the descriptor and survives reopen", "[vmdk][metadata]") {
    test::TempDir dir;
    auto lib = test::make_library();
    for (const char *subformat : {"monolithicSparse", "monolithicFlat"}) {
        CAPTURE(subformat);
        const std::string path = dir / (std::string(subformat) + ".vmdk");
        CreateOptions o = test::create_opts("vmdk", 8u << 20);
        o.options["subformat"] = subformat;
        {
            auto d = lib->create_image(path, o);
            REQUIRE_OK(d);
            REQUIRE_OK((*d)->metadata_set("ddb.comment", "made by the test"));
            REQUIRE_OK((*d)->metadata_set("ddb.adapterType", "lsilogic")); // replaces in place
            CHECK((*d)->metadata_set("uuid", "x").code() == VDKIT_E_INVALID_ARGUMENT);
            CHECK((*d)->metadata_set("ddb.x", "a\"b").code() == VDKIT_E_INVALID_ARGUMENT);
            // More than the 20-sector embedded descriptor holds: refused, nothing changes.
            Status big = (*d)->metadata_set("ddb.big", std::string(4000, 'x'));
            Status bigger = (*d)->metadata_set("ddb.bigger", std::string(4000, 'y'));
            Status biggest = (*d)->metadata_set("ddb.biggest", std::string(4000, 'z'));
            if (std::string(subformat) == "monolithicSparse") {
                CHECK(big.is_ok());
                CHECK(bigger.is_ok());
                CHECK(biggest.code() == VDKIT_E_NOT_SUPPORTED);
                CHECK_FALSE((*d)->metadata_get("ddb.biggest").is_ok()); // the failed change was rolled back
            } else {
                CHECK(biggest.is_ok()); // a descriptor file has room
            }
            REQUIRE_OK((*d)->close());
        }
        OpenOptions ro;
        auto d = lib->open(path, ro);
        REQUIRE_OK(d);
        auto comment = (*d)->metadata_get("ddb.comment");
        REQUIRE_OK(comment);
        CHECK(*comment == "made by the test");
        auto adapter = (*d)->metadata_get("ddb.adapterType");
        REQUIRE_OK(adapter);
        CHECK(*adapter == "lsilogic");
        auto keys = (*d)->metadata_keys();
        REQUIRE_OK(keys);
        CHECK(std::count(keys->begin(), keys->end(), "ddb.adapterType") == 1);
        CHECK((*d)->metadata_set("ddb.comment", "x").code() == VDKIT_E_READ_ONLY);
    }
}

TEST_CASE("vmdk: the comment is ddb.comment, escaped as VirtualBox writes it", "[vmdk][metadata]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string path = dir / "c.vmdk";
    {
        auto d = lib->create_image(path, test::create_opts("vmdk", 1u << 20));
        REQUIRE_OK(d);
        REQUIRE_OK((*d)->set_comment("two\nlines with a \\ backslash"));
        CHECK((*d)->set_comment("a \"quote\"").code() == VDKIT_E_INVALID_ARGUMENT);
        auto raw = (*d)->metadata_get("ddb.comment");
        REQUIRE_OK(raw);
        CHECK(*raw == "two\\nlines with a \\\\ backslash");
        REQUIRE_OK((*d)->close());
    }
    auto d = lib->open(path);
    REQUIRE_OK(d);
    auto info = (*d)->image_info(0);
    REQUIRE_OK(info);
    CHECK(info->comment == "two\nlines with a \\ backslash");
}

TEST_CASE("vmdk: resize grows sparse disks (moving the directories) and grows or shrinks flat ones", "[vmdk][resize]") {
    test::TempDir dir;
    auto lib = test::make_library();
    OpenOptions rw;
    rw.writable = true;
    for (const char *subformat : {"monolithicSparse", "monolithicFlat"}) {
        CAPTURE(subformat);
        const std::string path = dir / (std::string(subformat) + ".vmdk");
        CreateOptions o = test::create_opts("vmdk", 8u << 20);
        o.options["subformat"] = subformat;
        auto head = test::pattern(1u << 20, 11), tail = test::pattern(1u << 20, 12);
        {
            auto d = lib->create_image(path, o);
            REQUIRE_OK(d);
            REQUIRE_OK((*d)->write(0, head.data(), head.size()));
        }
        const uint64_t big = 40ull << 30; // 1280 grain tables: the directory outgrows its sector
        {
            auto d = lib->open(path, rw);
            REQUIRE_OK(d);
            REQUIRE_OK((*d)->resize(big));
            REQUIRE_OK((*d)->write(big - tail.size(), tail.data(), tail.size()));
        }
        auto d = lib->open(path, rw);
        REQUIRE_OK(d);
        CHECK((*d)->size() == big);
        std::vector<unsigned char> got(1u << 20);
        REQUIRE_OK((*d)->read(0, got.data(), got.size()));
        CHECK(got == head);
        REQUIRE_OK((*d)->read(big - tail.size(), got.data(), got.size()));
        CHECK(got == tail);
        REQUIRE_OK((*d)->read(20ull << 30, got.data(), got.size()));
        CHECK(std::all_of(got.begin(), got.end(), [](unsigned char c) { return c == 0; }));
        auto report = (*d)->check();
        REQUIRE_OK(report);
        CHECK(report->clean());
        auto cylinders = (*d)->metadata_get("ddb.geometry.cylinders");
        REQUIRE_OK(cylinders);
        CHECK(*cylinders != "8");
        if (std::string(subformat) == "monolithicSparse") {
            // Shrinking clears the grains past the end and compacts: the
            // first 4 MiB stay, the check is clean, the file is smaller.
            std::vector<unsigned char> first(4u << 20), after(4u << 20);
            REQUIRE_OK((*d)->read(0, first.data(), first.size()));
            const auto before = std::filesystem::file_size(dir / "monolithicSparse.vmdk");
            CHECK((*d)->resize(4u << 20, false).code() == VDKIT_E_INVALID_ARGUMENT);
            REQUIRE_OK((*d)->resize(4u << 20, true));
            REQUIRE_OK((*d)->read(0, after.data(), after.size()));
            CHECK(after == first);
            auto shrunk = (*d)->check();
            REQUIRE_OK(shrunk);
            for (const auto &f : shrunk->findings)
                UNSCOPED_INFO(f.message);
            CHECK(shrunk->clean());
            CHECK(std::filesystem::file_size(dir / "monolithicSparse.vmdk") < before);
        } else {
            REQUIRE_OK((*d)->resize(4u << 20, true));
            CHECK(std::filesystem::file_size(dir / "monolithicFlat-flat.vmdk") == 4u << 20);
        }
    }
}

TEST_CASE("vmdk: compact drops zero grains, closes holes and truncates", "[vmdk][compact]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string path = dir / "c.vmdk";
    std::vector<unsigned char> model(2u << 20, 0);
    {
        auto d = lib->create_image(path, test::create_opts("vmdk", model.size()));
        REQUIRE_OK(d);
        for (uint64_t g = 0; g < 10; ++g) {
            auto data = test::pattern(kGrain, static_cast<uint32_t>(g + 1));
            REQUIRE_OK((*d)->write(g * kGrain, data.data(), kGrain));
            std::copy(data.begin(), data.end(), model.begin() + static_cast<long>(g * kGrain));
        }
        std::vector<unsigned char> zeros(kGrain, 0);
        for (uint64_t g : {1, 3}) { // zeros written as data: still allocated
            REQUIRE_OK((*d)->write(g * kGrain, zeros.data(), kGrain));
            std::fill(model.begin() + static_cast<long>(g * kGrain),
                      model.begin() + static_cast<long>((g + 1) * kGrain), 0);
        }
        REQUIRE_OK((*d)->discard(5 * kGrain, kGrain)); // a hole in the middle
        std::fill(model.begin() + static_cast<long>(5 * kGrain), model.begin() + static_cast<long>(6 * kGrain), 0);
    }
    const uint64_t before = std::filesystem::file_size(path);
    OpenOptions rw;
    rw.writable = true;
    {
        auto d = lib->open(path, rw);
        REQUIRE_OK(d);
        REQUIRE_OK((*d)->compact());
    }
    CHECK(std::filesystem::file_size(path) == before - 3 * kGrain);
    auto d = lib->open(path, rw);
    REQUIRE_OK(d);
    std::vector<unsigned char> got(model.size());
    REQUIRE_OK((*d)->read(0, got.data(), got.size()));
    CHECK(got == model);
    auto report = (*d)->check();
    REQUIRE_OK(report);
    CHECK(report->clean());
    // Still writable after the grains moved.
    auto data = test::pattern(kGrain, 99);
    REQUIRE_OK((*d)->write(12 * kGrain, data.data(), kGrain));
    std::vector<unsigned char> back(kGrain);
    REQUIRE_OK((*d)->read(12 * kGrain, back.data(), kGrain));
    CHECK(back == data);
}

TEST_CASE("vmdk: compacting a child gives back grains equal to the parent", "[vmdk][compact]") {
    test::TempDir dir;
    auto lib = test::make_library();
    auto base_data = test::pattern(1u << 20, 3);
    {
        auto b = lib->create_image(dir / "base.vmdk", test::create_opts("vmdk", base_data.size()));
        REQUIRE_OK(b);
        REQUIRE_OK((*b)->write(0, base_data.data(), base_data.size()));
    }
    CreateOptions co = test::create_opts("vmdk");
    co.parent = dir / "base.vmdk";
    auto child = lib->create_image(dir / "child.vmdk", co);
    REQUIRE_OK(child);
    REQUIRE_OK((*child)->write(2 * kGrain, base_data.data() + 2 * kGrain, 3 * kGrain)); // same as the parent
    auto fresh = test::pattern(kGrain, 8);
    REQUIRE_OK((*child)->write(6 * kGrain, fresh.data(), kGrain));
    const uint64_t before = std::filesystem::file_size(dir / "child.vmdk");
    REQUIRE_OK((*child)->compact());
    CHECK(std::filesystem::file_size(dir / "child.vmdk") == before - 3 * kGrain);
    auto run = (*child)->block_status(2 * kGrain, 3 * kGrain);
    REQUIRE_OK(run);
    CHECK(run->image == 0);
    std::copy(fresh.begin(), fresh.end(), base_data.begin() + static_cast<long>(6 * kGrain));
    std::vector<unsigned char> got(base_data.size());
    REQUIRE_OK((*child)->read(0, got.data(), got.size()));
    CHECK(got == base_data);
}
