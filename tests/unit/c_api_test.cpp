#include "vdkit/vdkit.h"
#include "test_support.hpp"

#include <cstring>
#include <set>
#include <vector>

using vdkit::test::open_c_library;

TEST_CASE("the C API creates, writes, reads and reports errors as codes and text", "[c-api]") {
    vdkit::test::TempDir dir;
    vdkit_library_options lo{};
    lo.struct_size = sizeof(lo);
    std::string path = std::string(VDKIT_TEST_PLUGIN_DIR) + ":" + VDKIT_TEST_EXTRA_PLUGIN_DIR;
    lo.plugin_path = path.c_str();
    lo.flags = VDKIT_LIB_NO_ENV_PATH | VDKIT_LIB_NO_INSTALL_DIR | VDKIT_LIB_QUIET;
    vdkit_error err{};
    err.struct_size = sizeof(err);
    vdkit_library *lib = nullptr;
    REQUIRE(vdkit_library_open(&lo, &lib, &err) == VDKIT_OK);
    std::set<std::string> names;
    for (uint32_t i = 0; i < vdkit_plugin_count(lib); ++i) {
        vdkit_plugin_summary sum{};
        sum.struct_size = sizeof(sum);
        REQUIRE(vdkit_plugin_get(lib, i, &sum, &err) == VDKIT_OK);
        names.insert(std::string(sum.name) + "/" + std::to_string(sum.kind));
    }
    CHECK(names.count("raw/" + std::to_string(VDKIT_KIND_FORMAT)));
    CHECK(names.count("toysparse/" + std::to_string(VDKIT_KIND_FORMAT)));
    CHECK(names.count("file/" + std::to_string(VDKIT_KIND_TRANSPORT)));
    vdkit_plugin_summary past{};
    past.struct_size = sizeof(past);
    CHECK(vdkit_plugin_get(lib, vdkit_plugin_count(lib), &past, &err) == VDKIT_E_OUT_OF_RANGE);

    vdkit_disk *disk = nullptr;
    std::string img = dir / "c.toys";
    REQUIRE(vdkit_disk_create(lib, img.c_str(), "toysparse", 1 << 20, 0, "block-size=4k", nullptr, &disk, &err) ==
            VDKIT_OK);
    CHECK(vdkit_disk_size(disk) == 1u << 20);
    const char text[] = "embedded";
    REQUIRE(vdkit_disk_write(disk, 4000, text, sizeof text, &err) == VDKIT_OK);
    char back[sizeof text] = {};
    REQUIRE(vdkit_disk_read(disk, 4000, back, sizeof back, &err) == VDKIT_OK);
    CHECK(std::strcmp(back, text) == 0);
    uint32_t state = 99;
    uint64_t run = 0;
    REQUIRE(vdkit_disk_block_status(disk, 8192, 4096, &state, &run, &err) == VDKIT_OK);
    CHECK(state == VDKIT_BLOCK_UNALLOCATED);
    CHECK(vdkit_disk_read(disk, 1 << 20, back, 1, &err) == VDKIT_E_OUT_OF_RANGE);
    CHECK(err.code == VDKIT_E_OUT_OF_RANGE);
    CHECK(std::strstr(err.message, "beyond the end") != nullptr);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);

    vdkit_disk *bad = nullptr;
    CHECK(vdkit_disk_create(lib, (dir / "x").c_str(), "raw", 4096, 0, "prealloc=full", nullptr, &bad, &err) ==
          VDKIT_E_CONFIG);
    CHECK(bad == nullptr);
    CHECK(std::strstr(err.message, "did you mean 'preallocation'") != nullptr);
    CHECK(vdkit_disk_open(lib, nullptr, nullptr, 0, nullptr, &bad, &err) == VDKIT_E_INVALID_ARGUMENT);
    CHECK(std::strcmp(vdkit_status_text(VDKIT_E_BUSY), "in use by another process") == 0);
    CHECK(std::strcmp(vdkit_status_text(9999), "unknown status") == 0);
    vdkit_library_close(lib);
}

TEST_CASE("the C API compacts, resizes and checks disks", "[c-api]") {
    vdkit::test::TempDir dir;
    vdkit_error err{};
    err.struct_size = sizeof(err);
    vdkit_library *lib = open_c_library(err);
    vdkit_disk *disk = nullptr;
    std::string img = dir / "m.vdi";
    REQUIRE(vdkit_disk_create(lib, img.c_str(), "vdi", 8 << 20, 0, "block-size=1M", nullptr, &disk, &err) == VDKIT_OK);
    std::vector<unsigned char> zeros(1 << 20, 0), data(1 << 20, 0x5A);
    REQUIRE(vdkit_disk_write(disk, 0, data.data(), data.size(), &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_write(disk, 1 << 20, data.data(), data.size(), &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_write(disk, 1 << 20, zeros.data(), zeros.size(), &err) == VDKIT_OK); // allocated, all zero
    int calls = 0;
    auto progress = [](void *opaque, uint64_t, uint64_t) {
        ++*static_cast<int *>(opaque);
        return 0;
    };
    REQUIRE(vdkit_disk_compact(disk, progress, &calls, &err) == VDKIT_OK);
    CHECK(calls > 0);
    uint32_t state = 0;
    uint64_t run = 0;
    REQUIRE(vdkit_disk_block_status(disk, 1 << 20, 1 << 20, &state, &run, &err) == VDKIT_OK);
    CHECK(state != VDKIT_BLOCK_DATA);
    REQUIRE(vdkit_disk_resize(disk, 16 << 20, 0, &err) == VDKIT_OK);
    CHECK(vdkit_disk_size(disk) == 16u << 20);
    CHECK(vdkit_disk_resize(disk, 4 << 20, 0, &err) == VDKIT_E_INVALID_ARGUMENT);
    REQUIRE(vdkit_disk_resize(disk, 4 << 20, VDKIT_DISK_RESIZE_SHRINK, &err) == VDKIT_OK);
    CHECK(vdkit_disk_size(disk) == 4u << 20);
    vdkit_check_summary sum{};
    sum.struct_size = sizeof(sum);
    int findings = 0;
    auto on_finding = [](void *opaque, uint32_t, uint64_t, const char *) { ++*static_cast<int *>(opaque); };
    REQUIRE(vdkit_disk_check(disk, 0, on_finding, &findings, &sum, &err) == VDKIT_OK);
    CHECK(sum.errors == 0);
    CHECK(sum.leaks == 0);
    CHECK(findings == 0);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    // A format without check says so.
    std::string raw = dir / "r.raw";
    REQUIRE(vdkit_disk_create(lib, raw.c_str(), "raw", 1 << 20, 0, nullptr, nullptr, &disk, &err) == VDKIT_OK);
    CHECK(vdkit_disk_check(disk, 0, nullptr, nullptr, nullptr, &err) == VDKIT_E_NOT_SUPPORTED);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    vdkit_library_close(lib);
}

TEST_CASE("the C API merges, commits and rebases chains", "[c-api][merge]") {
    vdkit::test::TempDir dir;
    vdkit_error err{};
    err.struct_size = sizeof(err);
    vdkit_library *lib = open_c_library(err);
    const std::string base = dir / "base.vdi", mid = dir / "mid.vmdk", top = dir / "top.vdi";
    std::vector<unsigned char> a(1 << 20, 0x11), b(64 << 10, 0x22), c(4096, 0x33);
    vdkit_disk *disk = nullptr;
    REQUIRE(vdkit_disk_create(lib, base.c_str(), "vdi", 4 << 20, 0, nullptr, nullptr, &disk, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_write(disk, 0, a.data(), a.size(), &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_create(lib, mid.c_str(), "vmdk", 0, 0, nullptr, base.c_str(), &disk, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_write(disk, 100 << 10, b.data(), b.size(), &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_create(lib, top.c_str(), "vdi", 0, 0, nullptr, mid.c_str(), &disk, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_write(disk, 3 << 20, c.data(), c.size(), &err) == VDKIT_OK);
    std::vector<unsigned char> want(4 << 20), got(4 << 20);
    REQUIRE(vdkit_disk_read(disk, 0, want.data(), want.size(), &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);

    // Merging needs the parents writable.
    REQUIRE(vdkit_disk_open(lib, top.c_str(), nullptr, VDKIT_DISK_WRITE, nullptr, &disk, &err) == VDKIT_OK);
    CHECK(vdkit_disk_merge(disk, 1, 0, nullptr, nullptr, &err) == VDKIT_E_READ_ONLY);
    CHECK(std::string(err.message).find("writable_chain") != std::string::npos);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_open(lib, top.c_str(), nullptr, VDKIT_DISK_WRITE | VDKIT_DISK_WRITE_CHAIN, nullptr, &disk,
                            &err) == VDKIT_OK);
    // mid into base (backward): top is relinked onto base, mid is deleted.
    REQUIRE(vdkit_disk_merge(disk, 1, 0, nullptr, nullptr, &err) == VDKIT_OK);
    CHECK(vdkit_disk_image_count(disk) == 2);
    CHECK_FALSE(std::filesystem::exists(mid));
    REQUIRE(vdkit_disk_read(disk, 0, got.data(), got.size(), &err) == VDKIT_OK);
    CHECK(got == want);
    // Rebase onto nothing keeps the content in the top; commit needs a parent.
    REQUIRE(vdkit_disk_rebase(disk, "", nullptr, 0, nullptr, nullptr, &err) == VDKIT_OK);
    CHECK(vdkit_disk_image_count(disk) == 1);
    CHECK(vdkit_disk_commit(disk, 0, 0, nullptr, nullptr, &err) == VDKIT_E_INVALID_ARGUMENT);
    REQUIRE(vdkit_disk_read(disk, 0, got.data(), got.size(), &err) == VDKIT_OK);
    CHECK(got == want);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    vdkit_library_close(lib);
}

TEST_CASE("the C API copies with pipeline options and measures", "[c-api][copy]") {
    vdkit::test::TempDir dir;
    vdkit_error err{};
    err.struct_size = sizeof(err);
    vdkit_library *lib = open_c_library(err);
    vdkit_disk *src = nullptr, *dst = nullptr;
    const std::string a = dir / "a.vdi", b = dir / "b.vmdk";
    REQUIRE(vdkit_disk_create(lib, a.c_str(), "vdi", 16 << 20, 0, "block-size=1M", nullptr, &src, &err) == VDKIT_OK);
    auto data = vdkit::test::pattern(3 << 20, 7);
    REQUIRE(vdkit_disk_write(src, 5 << 20, data.data(), data.size(), &err) == VDKIT_OK);

    // measure: a VDI of the same layout holds the header area and 3 blocks.
    uint64_t required = 0, full = 0;
    REQUIRE(vdkit_library_measure(lib, "vdi", "block-size=1M", src, 0, &required, &full, &err) == VDKIT_OK);
    CHECK(required == (2u << 20) + (3u << 20)); // map area aligned to 1 MiB, then 3 data blocks
    CHECK(full == (2u << 20) + (16u << 20));
    REQUIRE(vdkit_library_measure(lib, "raw", nullptr, nullptr, 1 << 30, &required, nullptr, &err) == VDKIT_OK);
    CHECK(required == 1u << 30);
    CHECK(vdkit_library_measure(lib, "vdi", "block-size=1M", nullptr, 0, &required, &full, &err) ==
          VDKIT_E_INVALID_ARGUMENT);

    REQUIRE(vdkit_disk_create(lib, b.c_str(), "vmdk", 16 << 20, 0, nullptr, nullptr, &dst, &err) == VDKIT_OK);
    vdkit_copy_options co{};
    co.struct_size = sizeof(co);
    co.threads = 3;
    co.flags = VDKIT_COPY_OUT_OF_ORDER;
    int calls = 0;
    co.progress = [](void *opaque, uint64_t, uint64_t) {
        ++*static_cast<int *>(opaque);
        return 0;
    };
    co.opaque = &calls;
    REQUIRE(vdkit_disk_copy_ex(lib, src, dst, &co, &err) == VDKIT_OK);
    CHECK(calls > 1);
    std::vector<unsigned char> back(data.size());
    REQUIRE(vdkit_disk_read(dst, 5 << 20, back.data(), back.size(), &err) == VDKIT_OK);
    CHECK(back == data);
    co.threads = 99;
    CHECK(vdkit_disk_copy_ex(lib, src, dst, &co, &err) == VDKIT_E_INVALID_ARGUMENT);
    co.struct_size = 4; // too small to hold threads and flags
    CHECK(vdkit_disk_copy_ex(lib, src, dst, &co, &err) == VDKIT_E_INVALID_ARGUMENT);
    REQUIRE(vdkit_disk_close(dst, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_close(src, &err) == VDKIT_OK);

    // Into an existing chain: s over a is copied into c, a second child of a.
    const std::string s = dir / "s.vdi", c = dir / "c.vdi";
    REQUIRE(vdkit_disk_create(lib, s.c_str(), "vdi", 0, 0, nullptr, a.c_str(), &src, &err) == VDKIT_OK);
    auto more = vdkit::test::pattern(1 << 20, 8);
    REQUIRE(vdkit_disk_write(src, 1 << 20, more.data(), more.size(), &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_create(lib, c.c_str(), "vdi", 0, 0, nullptr, a.c_str(), &dst, &err) == VDKIT_OK);
    uint32_t same = 99;
    REQUIRE(vdkit_disk_common_image(src, dst, &same, &err) == VDKIT_OK);
    CHECK(same == 0);
    vdkit_copy_options chain{};
    chain.struct_size = sizeof(chain);
    chain.flags = VDKIT_COPY_SAME_UP_TO;
    chain.same_up_to = same;
    uint64_t total = 0;
    chain.progress = [](void *opaque, uint64_t, uint64_t t) {
        *static_cast<uint64_t *>(opaque) = t;
        return 0;
    };
    chain.opaque = &total;
    REQUIRE(vdkit_disk_copy_ex(lib, src, dst, &chain, &err) == VDKIT_OK);
    CHECK(total == 1u << 20); // only what s holds
    std::vector<unsigned char> all_s(16 << 20), all_c(16 << 20);
    REQUIRE(vdkit_disk_read(src, 0, all_s.data(), all_s.size(), &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_read(dst, 0, all_c.data(), all_c.size(), &err) == VDKIT_OK);
    CHECK(all_s == all_c);
    REQUIRE(vdkit_disk_close(dst, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_close(src, &err) == VDKIT_OK);
    vdkit_library_close(lib);
}
