#include "test_support.hpp"
#include "vdkit/vdkit.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
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

namespace {
std::vector<unsigned char> read_c(vdkit_disk *disk, uint64_t off, uint64_t len, vdkit_error &err) {
    std::vector<unsigned char> v(len);
    REQUIRE(vdkit_disk_read(disk, off, v.data(), len, &err) == VDKIT_OK);
    return v;
}
// "equal", or where two buffers first differ (a failure names an offset
// instead of printing megabytes).
std::string diff_at(const std::vector<unsigned char> &a, const std::vector<unsigned char> &b) {
    if (a.size() != b.size()) return "sizes " + std::to_string(a.size()) + " and " + std::to_string(b.size());
    const auto m = std::mismatch(a.begin(), a.end(), b.begin());
    return m.first == a.end() ? "equal" : "differs at byte " + std::to_string(m.first - a.begin());
}
bool all_zero(const std::vector<unsigned char> &v) {
    return std::all_of(v.begin(), v.end(), [](unsigned char c) { return c == 0; });
}
} // namespace

TEST_CASE("the C API writes zeroes, discards and flushes, and a second handle reads what the first wrote", "[c-api]") {
    vdkit::test::TempDir dir;
    vdkit_error err{};
    vdkit_library *lib = open_c_library(err);
    const std::string img = dir / "z.vdi";
    vdkit_disk *disk = nullptr;
    REQUIRE(vdkit_disk_create(lib, img.c_str(), "vdi", 4 << 20, 0, "block-size=1M", nullptr, &disk, &err) == VDKIT_OK);
    const auto data = vdkit::test::pattern(3 << 20, 9);
    REQUIRE(vdkit_disk_write(disk, 0, data.data(), data.size(), &err) == VDKIT_OK);
    // Zeroes inside a block: that range reads zero, its neighbours keep their data.
    REQUIRE(vdkit_disk_write_zeroes(disk, 100000, 70000, &err) == VDKIT_OK);
    auto back = read_c(disk, 0, 3 << 20, err);
    auto want = data;
    std::fill(want.begin() + 100000, want.begin() + 170000, 0);
    CHECK(diff_at(back, want) == "equal");
    // Discarding a whole block of a base frees it: it reads zero and is no longer data.
    REQUIRE(vdkit_disk_discard(disk, 1 << 20, 1 << 20, &err) == VDKIT_OK);
    std::fill(want.begin() + (1 << 20), want.begin() + (2 << 20), 0);
    CHECK(diff_at(read_c(disk, 0, 3 << 20, err), want) == "equal");
    uint32_t state = 0;
    uint64_t run = 0;
    REQUIRE(vdkit_disk_block_status(disk, 1 << 20, 1 << 20, &state, &run, &err) == VDKIT_OK);
    CHECK(state != VDKIT_BLOCK_DATA);
    CHECK(vdkit_disk_write_zeroes(disk, 4 << 20, 512, &err) == VDKIT_E_OUT_OF_RANGE);
    CHECK(vdkit_disk_discard(disk, (4 << 20) - 512, 1024, &err) == VDKIT_E_OUT_OF_RANGE);
    REQUIRE(vdkit_disk_flush(disk, &err) == VDKIT_OK);

    // The writer holds the image lock: a second open is refused, unless it
    // asks for no lock (VDKIT_DISK_NOLOCK); after the flush it reads it all.
    vdkit_disk *second = nullptr;
    CHECK(vdkit_disk_open(lib, img.c_str(), nullptr, 0, nullptr, &second, &err) == VDKIT_E_BUSY);
    CHECK(second == nullptr);
    REQUIRE(vdkit_disk_open(lib, img.c_str(), "vdi", VDKIT_DISK_NOLOCK, nullptr, &second, &err) == VDKIT_OK);
    CHECK(diff_at(read_c(second, 0, 3 << 20, err), want) == "equal");
    REQUIRE(vdkit_disk_close(second, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);

    // Read-only handles refuse every write kind.
    REQUIRE(vdkit_disk_open(lib, img.c_str(), nullptr, 0, nullptr, &disk, &err) == VDKIT_OK);
    CHECK(vdkit_disk_write_zeroes(disk, 0, 512, &err) == VDKIT_E_READ_ONLY);
    CHECK(vdkit_disk_discard(disk, 0, 1 << 20, &err) == VDKIT_E_READ_ONLY);
    CHECK(diff_at(read_c(disk, 0, 3 << 20, err), want) == "equal");
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    vdkit_library_close(lib);
}

TEST_CASE("the C API reads and writes VMDK metadata, which persists in the descriptor", "[c-api]") {
    vdkit::test::TempDir dir;
    vdkit_error err{};
    vdkit_library *lib = open_c_library(err);
    const std::string img = dir / "m.vmdk";
    vdkit_disk *disk = nullptr;
    REQUIRE(vdkit_disk_create(lib, img.c_str(), "vmdk", 1 << 20, 0, nullptr, nullptr, &disk, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_metadata_set(disk, "ddb.comment", "made through C", &err) == VDKIT_OK);
    char buf[64] = {};
    uint64_t needed = 0;
    REQUIRE(vdkit_disk_metadata_get(disk, "ddb.comment", buf, sizeof buf, &needed, &err) == VDKIT_OK);
    CHECK(std::string(buf) == "made through C");
    CHECK(needed == 14);
    // A short buffer: truncated, NUL-terminated, the full length in *needed.
    char small[5];
    std::memset(small, 'x', sizeof small);
    needed = 0;
    REQUIRE(vdkit_disk_metadata_get(disk, "ddb.comment", small, sizeof small, &needed, &err) == VDKIT_OK);
    CHECK(std::string(small) == "made");
    CHECK(needed == 14);
    CHECK(vdkit_disk_metadata_set(disk, "comment", "x", &err) == VDKIT_E_INVALID_ARGUMENT);
    CHECK(vdkit_disk_metadata_set(disk, "ddb.comment", "a \"quote\"", &err) == VDKIT_E_INVALID_ARGUMENT);
    CHECK(vdkit_disk_metadata_get(disk, "ddb.nothing", buf, sizeof buf, &needed, &err) == VDKIT_E_NOT_FOUND);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    // In the descriptor as VMware writes it, and read back after reopening.
    std::ifstream f(img, std::ios::binary);
    const std::string raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    CHECK(raw.find("ddb.comment = \"made through C\"") != std::string::npos);
    REQUIRE(vdkit_disk_open(lib, img.c_str(), nullptr, VDKIT_DISK_WRITE, nullptr, &disk, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_metadata_get(disk, "ddb.comment", buf, sizeof buf, nullptr, &err) == VDKIT_OK);
    CHECK(std::string(buf) == "made through C");
    REQUIRE(vdkit_disk_metadata_set(disk, "ddb.comment", "changed", &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_open(lib, img.c_str(), nullptr, 0, nullptr, &disk, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_metadata_get(disk, "ddb.comment", buf, sizeof buf, &needed, &err) == VDKIT_OK);
    CHECK(std::string(buf) == "changed");
    CHECK(vdkit_disk_metadata_set(disk, "ddb.comment", "x", &err) == VDKIT_E_READ_ONLY);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    vdkit_library_close(lib);
}

TEST_CASE("vdkit_disk_copy copies the content, reports progress and cancels", "[c-api]") {
    vdkit::test::TempDir dir;
    vdkit_error err{};
    vdkit_library *lib = open_c_library(err);
    vdkit_disk *src = nullptr, *dst = nullptr;
    REQUIRE(vdkit_disk_create(lib, (dir / "s.vdi").c_str(), "vdi", 8 << 20, 0, nullptr, nullptr, &src, &err) ==
            VDKIT_OK);
    const auto a = vdkit::test::pattern(1 << 20, 3), b = vdkit::test::pattern(5000, 4);
    REQUIRE(vdkit_disk_write(src, 1 << 20, a.data(), a.size(), &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_write(src, (8 << 20) - 5000, b.data(), b.size(), &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_create(lib, (dir / "d.vmdk").c_str(), "vmdk", 8 << 20, 0, nullptr, nullptr, &dst, &err) ==
            VDKIT_OK);
    struct Seen {
        uint64_t last = 0, total = 0;
        int calls = 0;
    } seen;
    auto progress = [](void *opaque, uint64_t done, uint64_t total) {
        auto *s = static_cast<Seen *>(opaque);
        ++s->calls;
        s->last = done;
        s->total = total;
        return 0;
    };
    REQUIRE(vdkit_disk_copy(lib, src, dst, progress, &seen, &err) == VDKIT_OK);
    CHECK(seen.calls > 0);
    CHECK(seen.last == seen.total);
    CHECK(diff_at(read_c(dst, 0, 8 << 20, err), read_c(src, 0, 8 << 20, err)) == "equal");
    CHECK(diff_at(read_c(dst, 1 << 20, 1 << 20, err), a) == "equal");
    REQUIRE(vdkit_disk_close(dst, &err) == VDKIT_OK);
    // Cancelled by the callback: the status says so.
    REQUIRE(vdkit_disk_create(lib, (dir / "c.raw").c_str(), "raw", 8 << 20, 0, nullptr, nullptr, &dst, &err) ==
            VDKIT_OK);
    auto cancel = [](void *, uint64_t, uint64_t) { return 1; };
    CHECK(vdkit_disk_copy(lib, src, dst, cancel, nullptr, &err) == VDKIT_E_CANCELLED);
    CHECK(err.code == VDKIT_E_CANCELLED);
    REQUIRE(vdkit_disk_close(dst, &err) == VDKIT_OK);
    // A target smaller than the source is refused.
    REQUIRE(vdkit_disk_create(lib, (dir / "small.raw").c_str(), "raw", 4 << 20, 0, nullptr, nullptr, &dst, &err) ==
            VDKIT_OK);
    CHECK(vdkit_disk_copy(lib, src, dst, nullptr, nullptr, &err) != VDKIT_OK);
    REQUIRE(vdkit_disk_close(dst, &err) == VDKIT_OK);
    CHECK(vdkit_disk_copy(lib, src, nullptr, nullptr, nullptr, &err) == VDKIT_E_INVALID_ARGUMENT);
    REQUIRE(vdkit_disk_close(src, &err) == VDKIT_OK);
    vdkit_library_close(lib);
}

TEST_CASE("the C API's create flags: FIXED preallocates, OVERWRITE replaces, without it an existing file stays",
          "[c-api]") {
    vdkit::test::TempDir dir;
    vdkit_error err{};
    vdkit_library *lib = open_c_library(err);
    vdkit_disk *disk = nullptr;
    const std::string fixed = dir / "f.vdi", sparse = dir / "s.vdi";
    REQUIRE(vdkit_disk_create(lib, fixed.c_str(), "vdi", 8 << 20, VDKIT_DISK_FIXED, nullptr, nullptr, &disk, &err) ==
            VDKIT_OK);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_create(lib, sparse.c_str(), "vdi", 8 << 20, 0, nullptr, nullptr, &disk, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    // The fixed image holds all eight 1 MiB blocks beyond the same metadata.
    CHECK(std::filesystem::file_size(fixed) == std::filesystem::file_size(sparse) + (8u << 20));
    // Every block of the fixed image is allocated (and reads zero).
    REQUIRE(vdkit_disk_open(lib, fixed.c_str(), nullptr, 0, nullptr, &disk, &err) == VDKIT_OK);
    uint32_t state = 0;
    uint64_t run = 0;
    REQUIRE(vdkit_disk_block_status(disk, 0, 8 << 20, &state, &run, &err) == VDKIT_OK);
    CHECK(state != VDKIT_BLOCK_UNALLOCATED);
    CHECK(all_zero(read_c(disk, 0, 8 << 20, err)));
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);

    // Without OVERWRITE an existing file is refused and keeps its data.
    const auto data = vdkit::test::pattern(4096, 5);
    REQUIRE(vdkit_disk_open(lib, sparse.c_str(), nullptr, VDKIT_DISK_WRITE, nullptr, &disk, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_write(disk, 0, data.data(), data.size(), &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    CHECK(vdkit_disk_create(lib, sparse.c_str(), "vdi", 2 << 20, 0, nullptr, nullptr, &disk, &err) == VDKIT_E_EXISTS);
    REQUIRE(vdkit_disk_open(lib, sparse.c_str(), nullptr, 0, nullptr, &disk, &err) == VDKIT_OK);
    CHECK(vdkit_disk_size(disk) == 8u << 20);
    CHECK(diff_at(read_c(disk, 0, 4096, err), data) == "equal");
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    // With OVERWRITE: a new, empty image of the new size.
    REQUIRE(vdkit_disk_create(lib, sparse.c_str(), "vdi", 2 << 20, VDKIT_DISK_OVERWRITE, nullptr, nullptr, &disk,
                              &err) == VDKIT_OK);
    CHECK(vdkit_disk_size(disk) == 2u << 20);
    CHECK(all_zero(read_c(disk, 0, 4096, err)));
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    vdkit_library_close(lib);
}
