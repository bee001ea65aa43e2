// The convert pipeline (Library::copy) and Library::compare: same content for
// every thread count, order and target; zeros found inside data are not
// written; sequential targets get their writes in order; errors and cancels
// stop every worker.
#include "test_support.hpp"

#include <atomic>
#include <fstream>
#include <filesystem>

using namespace vdkit;

namespace {
constexpr uint64_t kMiB = 1u << 20;
constexpr uint64_t kSize = 48 * kMiB;

// A VDI source (1 MiB blocks) holding data, data blocks full of zeros, zero
// records and holes, plus its model.
std::vector<unsigned char> make_source(Library &lib, const std::string &path) {
    CreateOptions co = test::create_opts("vdi", kSize);
    auto d = lib.create_image(path, co);
    REQUIRE_OK(d);
    std::vector<unsigned char> model(kSize, 0);
    auto put = [&](uint64_t off, const std::vector<unsigned char> &data) {
        REQUIRE_OK((*d)->write(off, data.data(), data.size()));
        std::copy(data.begin(), data.end(), model.begin() + static_cast<long>(off));
    };
    put(0, test::pattern(3 * kMiB + 4097, 1));                      // spans blocks, unaligned end
    put(5 * kMiB, std::vector<unsigned char>(2 * kMiB, 0));          // allocated, all zero
    put(9 * kMiB + 12345, test::pattern(70000, 2));                  // small piece inside a block
    put(20 * kMiB, test::pattern(kMiB, 3));
    put(21 * kMiB, std::vector<unsigned char>(kMiB, 0));             // zero block between data
    put(22 * kMiB, test::pattern(5 * kMiB, 4));
    REQUIRE_OK((*d)->write_zeroes(30 * kMiB, 2 * kMiB));             // zero records
    put(47 * kMiB, test::pattern(kMiB, 5));                          // the last block
    REQUIRE_OK((*d)->close());
    return model;
}

std::unique_ptr<Disk> open_ro(Library &lib, const std::string &path) {
    auto d = lib.open(path);
    REQUIRE_OK(d);
    return std::move(*d);
}

uint64_t data_bytes(const Disk &d) {
    uint64_t n = 0;
    for (uint64_t off = 0; off < d.size();) {
        auto r = d.block_status(off, d.size() - off);
        REQUIRE_OK(r);
        if (r->state == BlockState::data) n += r->length;
        off += r->length;
    }
    return n;
}
} // namespace

TEST_CASE("copy gives the same content for every thread count, order and target", "[copy]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const auto model = make_source(*lib, dir / "src.vdi");
    auto src = open_ro(*lib, dir / "src.vdi");
    struct Target {
        std::string format, ext;
        Options options;
    };
    const std::vector<Target> targets = {{"raw", "img", {}},
                                         {"vdi", "vdi", {}},
                                         {"vmdk", "vmdk", {}},
                                         {"vmdk", "vmdk", {{"subformat", "streamOptimized"}}}};
    int n = 0;
    for (const auto &t : targets)
        for (unsigned threads : {1u, 3u, 8u})
            for (bool out_of_order : {false, true}) {
                const std::string path = dir / ("t" + std::to_string(n++) + "." + t.ext);
                INFO(t.format << " " << (t.options.empty() ? "" : t.options.begin()->second) << ", " << threads
                              << " threads, out of order: " << out_of_order);
                CreateOptions co = test::create_opts(t.format, kSize);
                co.options = t.options;
                auto dst = lib->create_image(path, co);
                REQUIRE_OK(dst);
                CopyOptions o;
                o.threads = threads;
                o.out_of_order = out_of_order; // a stream is still written in order
                o.buffer_size = 256 << 10;     // many jobs per run, so workers overtake each other
                uint64_t last_done = 0, total = 0;
                o.progress = [&](uint64_t done, uint64_t t_) {
                    CHECK(done >= last_done); // reported from one thread at a time, never backwards
                    last_done = done;
                    total = t_;
                    return true;
                };
                REQUIRE_OK(lib->copy(*src, **dst, o));
                REQUIRE_OK((*dst)->close());
                CHECK(last_done == total);
                auto back = open_ro(*lib, path);
                CHECK(test::first_difference(*back, model) == "equal");
                auto same = Library::compare(*src, *back);
                REQUIRE_OK(same);
                CHECK_FALSE(same->has_value());
            }
}

TEST_CASE("copy does not write target units that read as zero", "[copy]") {
    test::TempDir dir;
    auto lib = test::make_library();
    // A raw file written whole: the source map says data everywhere, and only
    // reading finds the zeros. Non-zero: MiB 0, one byte in MiB 3, MiB 7.
    std::vector<unsigned char> bytes(8 * kMiB, 0);
    auto a = test::pattern(kMiB, 1);
    std::copy(a.begin(), a.end(), bytes.begin());
    bytes[3 * kMiB + 4321] = 7;
    std::copy(a.begin(), a.end(), bytes.begin() + 7 * kMiB);
    {
        std::ofstream f(dir / "src.img", std::ios::binary);
        f.write(reinterpret_cast<const char *>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    }
    OpenOptions raw;
    raw.format = "raw";
    auto src = lib->open(dir / "src.img", raw);
    REQUIRE_OK(src);
    REQUIRE(data_bytes(**src) == 8 * kMiB);
    for (const char *format : {"vdi", "vmdk"}) {
        INFO(format);
        const std::string path = dir / (std::string("d.") + format);
        auto dst = lib->create_image(path, test::create_opts(format, 8 * kMiB));
        REQUIRE_OK(dst);
        REQUIRE_OK(lib->copy(**src, **dst));
        REQUIRE_OK((*dst)->close());
        auto back = open_ro(*lib, path);
        CHECK(test::first_difference(*back, bytes) == "equal");
        // VDI: three 1 MiB blocks; VMDK: 16 + 1 + 16 grains of 64 KiB.
        CHECK(data_bytes(*back) == (std::string(format) == "vdi" ? 3 * kMiB : 2 * kMiB + 65536));
    }
}

TEST_CASE("copy refuses bad thread counts and stops every worker on cancel", "[copy]") {
    test::TempDir dir;
    auto lib = test::make_library();
    make_source(*lib, dir / "src.vdi");
    auto src = open_ro(*lib, dir / "src.vdi");
    auto dst = lib->create_image(dir / "d.img", test::create_opts("raw", kSize));
    REQUIRE_OK(dst);
    CopyOptions bad;
    bad.threads = 0;
    CHECK(lib->copy(*src, **dst, bad).code() == VDKIT_E_INVALID_ARGUMENT);
    bad.threads = 65;
    CHECK(lib->copy(*src, **dst, bad).code() == VDKIT_E_INVALID_ARGUMENT);

    for (bool out_of_order : {false, true}) {
        CopyOptions o;
        o.threads = 6;
        o.out_of_order = out_of_order;
        o.buffer_size = 64 << 10;
        std::atomic<int> calls{0};
        o.progress = [&](uint64_t done, uint64_t) {
            ++calls;
            return done < 2 * kMiB;
        };
        Status st = lib->copy(*src, **dst, o);
        CHECK(st.code() == VDKIT_E_CANCELLED);
        // Workers stop at the first cancel: far fewer reports than jobs (17 MiB / 64 KiB).
        CHECK(calls.load() < 60);
    }
}

TEST_CASE("compare finds the first differing byte, also in the larger disk's tail", "[copy][compare]") {
    test::TempDir dir;
    auto lib = test::make_library();
    auto a = lib->create_image(dir / "a.img", test::create_opts("raw", 8 * kMiB));
    auto b = lib->create_image(dir / "b.vdi", test::create_opts("vdi", 12 * kMiB));
    REQUIRE_OK(a);
    REQUIRE_OK(b);
    auto data = test::pattern(100000, 9);
    REQUIRE_OK((*a)->write(kMiB, data.data(), data.size()));
    REQUIRE_OK((*b)->write(kMiB, data.data(), data.size()));
    auto same = Library::compare(**a, **b);
    REQUIRE_OK(same);
    CHECK_FALSE(same->has_value());

    const unsigned char x = 0x42;
    REQUIRE_OK((*b)->write(kMiB + 777, &x, 1));
    auto diff = Library::compare(**a, **b);
    REQUIRE_OK(diff);
    REQUIRE(diff->has_value());
    CHECK(**diff == kMiB + 777);

    REQUIRE_OK((*b)->write(kMiB + 777, data.data() + 777, 1)); // undo
    REQUIRE_OK((*b)->write(10 * kMiB + 5, &x, 1));             // beyond a's end
    auto tail = Library::compare(**a, **b);
    REQUIRE_OK(tail);
    REQUIRE(tail->has_value());
    CHECK(**tail == 10 * kMiB + 5);
}
