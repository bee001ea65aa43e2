// The convert pipeline (Library::copy) and Library::compare: same content for
// every thread count, order and target; zeros found inside data are not
// written; sequential targets get their writes in order; errors and cancels
// stop every worker.
#include "test_support.hpp"
#include "util/executor.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

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
    put(0, test::pattern(3 * kMiB + 4097, 1));              // spans blocks, unaligned end
    put(5 * kMiB, std::vector<unsigned char>(2 * kMiB, 0)); // allocated, all zero
    put(9 * kMiB + 12345, test::pattern(70000, 2));         // small piece inside a block
    put(20 * kMiB, test::pattern(kMiB, 3));
    put(21 * kMiB, std::vector<unsigned char>(kMiB, 0)); // zero block between data
    put(22 * kMiB, test::pattern(5 * kMiB, 4));
    REQUIRE_OK((*d)->write_zeroes(30 * kMiB, 2 * kMiB)); // zero records
    put(47 * kMiB, test::pattern(kMiB, 5));              // the last block
    REQUIRE_OK((*d)->close());
    return model;
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

TEST_CASE("copy gives the same content for every thread count, order and target", "[copy][matrix]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const auto model = make_source(*lib, dir / "src.vdi");
    auto src = test::open_disk(*lib, dir / "src.vdi");
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
        for (unsigned threads : {0u, 1u, 3u, 8u}) // 0: one per processor, 2..4
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
                auto back = test::open_disk(*lib, path);
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
        auto back = test::open_disk(*lib, path);
        CHECK(test::first_difference(*back, bytes) == "equal");
        // VDI: three 1 MiB blocks; VMDK: 16 + 1 + 16 grains of 64 KiB.
        CHECK(data_bytes(*back) == (std::string(format) == "vdi" ? 3 * kMiB : 2 * kMiB + 65536));
    }
}

TEST_CASE("copy widens unaligned data runs to whole target units, up to the disk's odd end", "[copy]") {
    test::TempDir dir;
    auto lib = test::make_library();
    // A sparse raw file whose data runs start and end inside 1 MiB VDI blocks
    // and 64 KiB VMDK grains, and a size that is no multiple of either: the
    // runs are read with their holes as whole units, and the last unit stops
    // at the disk's end.
    const uint64_t size = 5 * kMiB + 12288;
    std::vector<unsigned char> model(size, 0);
    {
        std::ofstream f(dir / "src.img", std::ios::binary);
        auto put = [&](uint64_t off, const std::vector<unsigned char> &data) {
            f.seekp(static_cast<std::streamoff>(off));
            f.write(reinterpret_cast<const char *>(data.data()), static_cast<std::streamsize>(data.size()));
            std::copy(data.begin(), data.end(), model.begin() + static_cast<long>(off));
        };
        put(3 * kMiB / 4, test::pattern(kMiB, 1));     // 0.75 .. 1.75 MiB
        put(3 * kMiB - 4096, test::pattern(12288, 2)); // across the 3 MiB boundary
        put(size - 4096, test::pattern(4096, 3));      // the last 4 KiB
    }
    std::filesystem::resize_file(dir / "src.img", size);
    OpenOptions raw;
    raw.format = "raw";
    auto src = lib->open(dir / "src.img", raw);
    REQUIRE_OK(src);
    int n = 0;
    for (const char *format : {"vdi", "vmdk", "raw"})
        for (unsigned threads : {1u, 4u}) {
            INFO(format << ", " << threads << " threads");
            const std::string path = dir / ("d" + std::to_string(n++) + "." + format);
            auto dst = lib->create_image(path, test::create_opts(format, size));
            REQUIRE_OK(dst);
            CopyOptions o;
            o.threads = threads;
            REQUIRE_OK(lib->copy(**src, **dst, o));
            REQUIRE_OK((*dst)->close());
            auto back = test::open_disk(*lib, path);
            CHECK(test::first_difference(*back, model) == "equal");
            // VDI: blocks 0-3 whole and the 12 KiB of block 5; VMDK: 16
            // grains for the first run, 1 on each side of 3 MiB, and the
            // 12 KiB of the grain holding the last 4 KiB.
            if (std::string(format) == "vdi") CHECK(data_bytes(*back) == 4 * kMiB + 12288);
            if (std::string(format) == "vmdk") CHECK(data_bytes(*back) == 18 * 65536 + 12288);
        }
}

TEST_CASE("copy refuses bad thread counts and stops every worker on cancel", "[copy]") {
    test::TempDir dir;
    auto lib = test::make_library();
    make_source(*lib, dir / "src.vdi");
    auto src = test::open_disk(*lib, dir / "src.vdi");
    auto dst = lib->create_image(dir / "d.img", test::create_opts("raw", kSize));
    REQUIRE_OK(dst);
    CopyOptions bad;
    bad.threads = 65;
    CHECK(lib->copy(*src, **dst, bad).code() == VDKIT_E_INVALID_ARGUMENT);

    for (bool out_of_order : {false, true}) {
        CopyOptions o;
        o.threads = 6;
        o.out_of_order = out_of_order;
        o.buffer_size = 64 << 10;
        // A whole copy reports once per job: the reference count.
        std::atomic<int> whole{0};
        o.progress = [&](uint64_t, uint64_t) {
            ++whole;
            return true;
        };
        REQUIRE_OK(lib->copy(*src, **dst, o));
        std::atomic<int> calls{0};
        std::atomic<uint64_t> last_done{0}, total{0};
        o.progress = [&](uint64_t done, uint64_t t) {
            ++calls;
            last_done = done;
            total = t;
            return done < 2 * kMiB;
        };
        Status st = lib->copy(*src, **dst, o);
        CHECK(st.code() == VDKIT_E_CANCELLED);
        // Workers stop at the cancel: no job is started after it, so the copy
        // ends before its end and reports fewer times than a whole copy. (How
        // many jobs were in flight when the cancel came depends on thread
        // timing, so no tighter count is asserted.)
        INFO("calls " << calls.load() << " of " << whole.load() << ", done " << last_done.load() << " of "
                      << total.load());
        CHECK(calls.load() < whole.load());
        CHECK(last_done.load() < total.load());
    }
}

// CopyOptions::threads is a promise: a copy asking for more workers than the
// core's pool has threads gets them all at once (the pool grows, up to 64).
// The source is read through the test transport `faulty` with gather-reads
// N: its first N reads wait until N are in progress at once, and fail (after
// 30 s) if they never are — so a copy running fewer workers than it asked
// for fails here instead of quietly going slower.
TEST_CASE("a copy gets every worker it asks for, beyond the pool's size", "[copy][threads]") {
    test::TempDir dir;
    auto lib = test::make_library({std::string(VDKIT_TEST_PROBE_PLUGIN_DIR) + "/faulty"});
    constexpr uint64_t kSourceSize = 8 * kMiB; // 128 jobs of 64 KiB: more than any worker count
    const auto model = test::pattern(kSourceSize, 9);
    {
        auto d = lib->create_image(dir / "src.raw", test::create_opts("raw", kSourceSize));
        REQUIRE_OK(d);
        REQUIRE_OK((*d)->write(0, model.data(), model.size()));
        REQUIRE_OK((*d)->close());
    }
    const unsigned more = std::min(util::pool_threads() + 4, util::kMaxPoolThreads);
    int trial = 0;
    for (unsigned workers : {more, util::kMaxPoolThreads})
        for (bool out_of_order : {false, true}) {
            INFO(workers << " workers (the pool had " << util::pool_threads()
                         << " threads), out of order: " << out_of_order);
            OpenOptions o;
            o.format = "raw";
            o.transport_options = {{"plan", "gather" + std::to_string(++trial)},
                                   {"gather-reads", std::to_string(workers)}};
            auto src = lib->open("faulty://" + (dir / "src.raw"), o);
            REQUIRE_OK(src);
            const std::string target = dir / ("t" + std::to_string(trial) + ".raw");
            auto dst = lib->create_image(target, test::create_opts("raw", kSourceSize));
            REQUIRE_OK(dst);
            CopyOptions co;
            co.threads = workers;
            co.out_of_order = out_of_order;
            co.buffer_size = 64 << 10;
            REQUIRE_OK(lib->copy(**src, **dst, co));
            REQUIRE_OK((*dst)->close());
            auto back = test::open_disk(*lib, target);
            CHECK(test::first_difference(*back, model) == "equal");
            CHECK(util::pool_threads() <= util::kMaxPoolThreads);
        }
}

// More copies at once than the core's pool has threads, each with several
// in-order workers: once from plain threads, once from tasks on the pool
// itself (as a completion callback or another embedder's pool task would),
// so every pool thread is a copy's caller. A design whose workers wait for
// their turn to write, or whose caller waits for its queued helpers, hangs
// here; this one must finish every copy, byte for byte, within the limit.
TEST_CASE("many concurrent multi-worker copies finish, also when every pool thread runs one", "[copy][threads]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const auto model = make_source(*lib, dir / "src.vdi");
    const unsigned pool = util::pool_threads();
    REQUIRE(pool >= 1);
    const unsigned copies = pool + 4;
    for (bool on_pool : {false, true}) {
        INFO((on_pool ? "copies started on the pool, " : "copies started on their own threads, ")
             << copies << " copies, pool of " << pool);
        std::vector<std::string> paths;
        for (unsigned i = 0; i < copies; ++i)
            paths.push_back(dir / ("c" + std::to_string(on_pool) + "_" + std::to_string(i) + ".img"));
        std::mutex mu;
        std::condition_variable cv;
        unsigned ended = 0;
        std::vector<Status> results(copies, Status::ok());
        auto copy_one = [&, &lib_ref = *lib](unsigned i) {
            Status st = Status::ok();
            auto src = lib_ref.open(dir / "src.vdi", OpenOptions{});
            auto dst = lib_ref.create_image(paths[i], test::create_opts("raw", kSize));
            if (!src)
                st = src.status();
            else if (!dst)
                st = dst.status();
            else {
                CopyOptions o;
                o.threads = 4;
                o.buffer_size = 64 << 10; // many jobs, so workers overtake each other
                st = lib_ref.copy(**src, **dst, o);
                if (st) st = (*dst)->close();
            }
            std::lock_guard lock(mu);
            results[i] = st;
            ++ended;
            cv.notify_all();
        };
        std::vector<std::thread> threads;
        for (unsigned i = 0; i < copies; ++i) {
            if (on_pool)
                REQUIRE(util::post([&copy_one, i] { copy_one(i); }));
            else
                threads.emplace_back(copy_one, i);
        }
        std::unique_lock lock(mu);
        if (!cv.wait_for(lock, std::chrono::minutes(3), [&] { return ended == copies; })) {
            // Hung: joining would hang the test run too.
            std::cerr << "copy_test: " << copies - ended << " of " << copies << " concurrent copies did not finish ("
                      << (on_pool ? "on the pool" : "on threads") << ")\n";
            std::_Exit(3);
        }
        lock.unlock();
        for (auto &t : threads)
            t.join();
        for (unsigned i = 0; i < copies; ++i) {
            INFO("copy " << i);
            REQUIRE_OK(results[i]);
            auto back = test::open_disk(*lib, paths[i]);
            CHECK(test::first_difference(*back, model) == "equal");
        }
    }
}

TEST_CASE("copy into a target holding data zeroes it and can be cancelled between zero jobs", "[copy]") {
    // convert -n: the target is not zero, so the source's holes become zero
    // jobs; the progress callback is asked after each one too (a large
    // device may take long to zero), with no bytes of data added.
    test::TempDir dir;
    auto lib = test::make_library();
    auto src = lib->create_image(dir / "empty.img", test::create_opts("raw", 8 * kMiB));
    REQUIRE_OK(src);
    auto dst = lib->create_image(dir / "full.img", test::create_opts("raw", 8 * kMiB));
    REQUIRE_OK(dst);
    const auto junk = test::pattern(8 * kMiB, 7);
    REQUIRE_OK((*dst)->write(0, junk.data(), junk.size()));

    CopyOptions o;
    o.target_is_zero = false;
    std::vector<uint64_t> reports;
    o.progress = [&](uint64_t done, uint64_t) {
        reports.push_back(done);
        return reports.size() < 2; // the first report is the start; cancel at the next
    };
    CHECK(lib->copy(**src, **dst, o).code() == VDKIT_E_CANCELLED);
    REQUIRE(reports.size() == 2);
    CHECK(reports[1] == 0); // a zero job adds no data bytes

    o.progress = {};
    REQUIRE_OK(lib->copy(**src, **dst, o));
    auto same = Library::compare(**src, **dst);
    REQUIRE_OK(same);
    CHECK_FALSE(same->has_value()); // every byte the target held now reads as zero
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

// VDCopyEx into an existing chain: a chain base <- s1 <- s2 is copied image
// by image, each copy a differencing image over the copy of the image below
// (UUIDs kept), and each copy reads only what its own source image holds.
TEST_CASE("copy into an existing chain copies only what the images above the common one hold", "[copy][chain]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::vector<unsigned char> base_model = make_source(*lib, dir / "base.vdi");
    std::vector<unsigned char> s1_model = base_model;
    auto snapshot = [&](const std::string &parent, const std::string &name, const std::string &format) {
        CreateOptions co = test::create_opts(format);
        co.parent = parent;
        auto d = lib->create_image(name, co);
        REQUIRE_OK(d);
        return std::move(*d);
    };
    {
        auto s1 = snapshot(dir / "base.vdi", dir / "s1.vmdk", "vmdk");
        auto data = test::pattern(3 * kMiB, 11);
        REQUIRE_OK(s1->write(10 * kMiB, data.data(), data.size()));
        std::copy(data.begin(), data.end(), s1_model.begin() + static_cast<long>(10 * kMiB));
        REQUIRE_OK(s1->write_zeroes(0, kMiB)); // zeros over the base's data must survive the copy
        std::fill(s1_model.begin(), s1_model.begin() + static_cast<long>(kMiB), 0);
        REQUIRE_OK(s1->close());
    }
    std::vector<unsigned char> s2_model = s1_model;
    {
        auto s2 = snapshot(dir / "s1.vmdk", dir / "s2.vdi", "vdi");
        auto data = test::pattern(kMiB, 12);
        REQUIRE_OK(s2->write(40 * kMiB, data.data(), data.size()));
        std::copy(data.begin(), data.end(), s2_model.begin() + static_cast<long>(40 * kMiB));
        REQUIRE_OK(s2->close());
    }

    // The base, copied whole with its UUID.
    auto base = test::open_disk(*lib, dir / "base.vdi");
    CreateOptions bo = test::create_opts("vdi", kSize);
    bo.uuid = base->image_info(0)->uuid;
    auto base_copy = lib->create_image(dir / "copy-base.vdi", bo);
    REQUIRE_OK(base_copy);
    REQUIRE_OK(lib->copy(*base, **base_copy));
    CHECK((*base_copy)->image_info(0)->uuid == base->image_info(0)->uuid);
    REQUIRE_OK((*base_copy)->close());

    // s1 over the base's copy: image 0 is the common one.
    auto s1 = test::open_disk(*lib, dir / "s1.vmdk");
    CreateOptions so = test::create_opts("vmdk");
    so.parent = dir / "copy-base.vdi";
    so.uuid = s1->image_info(1)->uuid;
    auto s1_copy = lib->create_image(dir / "copy-s1.vmdk", so);
    REQUIRE_OK(s1_copy);
    auto common = Library::common_image(*s1, **s1_copy);
    REQUIRE_OK(common);
    REQUIRE(*common == std::optional<size_t>(0));
    CopyOptions co;
    co.same_up_to = 0;
    uint64_t total = 0;
    co.progress = [&](uint64_t, uint64_t t) {
        total = t;
        return true;
    };
    REQUIRE_OK(lib->copy(*s1, **s1_copy, co));
    CHECK(total == 4 * kMiB); // s1's 3 MiB of data and 1 MiB of zeros; nothing of the base
    CHECK(test::first_difference(**s1_copy, s1_model) == "equal");
    REQUIRE_OK((*s1_copy)->close());

    // s2 over the copy of s1: image 1 is the common one (image 0 below it too).
    auto s2 = test::open_disk(*lib, dir / "s2.vdi");
    CreateOptions to = test::create_opts("vdi");
    to.parent = dir / "copy-s1.vmdk";
    auto s2_copy = lib->create_image(dir / "copy-s2.vdi", to);
    REQUIRE_OK(s2_copy);
    common = Library::common_image(*s2, **s2_copy);
    REQUIRE_OK(common);
    REQUIRE(*common == std::optional<size_t>(1));
    co.same_up_to = 1;
    REQUIRE_OK(lib->copy(*s2, **s2_copy, co));
    CHECK(total == kMiB);
    CHECK(test::first_difference(**s2_copy, s2_model) == "equal");
    REQUIRE_OK((*s2_copy)->close());
    auto reopened = test::open_disk(*lib, dir / "copy-s2.vdi");
    CHECK(reopened->image_count() == 3);
    CHECK(test::first_difference(*reopened, s2_model) == "equal");

    // Without a common image (a diff over an unrelated base) the copy is
    // whole, and zeros are written only where the target showed data.
    auto other = lib->create_image(dir / "other.vdi", test::create_opts("vdi", kSize));
    REQUIRE_OK(other);
    auto noise = test::pattern(kSize, 99);
    REQUIRE_OK((*other)->write(0, noise.data(), noise.size()));
    REQUIRE_OK((*other)->close());
    CreateOptions uo = test::create_opts("vdi");
    uo.parent = dir / "other.vdi";
    auto over = lib->create_image(dir / "over-other.vdi", uo);
    REQUIRE_OK(over);
    common = Library::common_image(*s2, **over);
    REQUIRE_OK(common);
    CHECK(!*common);
    CopyOptions whole;
    whole.target_is_zero = false;
    REQUIRE_OK(lib->copy(*s2, **over, whole));
    CHECK(test::first_difference(**over, s2_model) == "equal");

    // same_up_to is checked: past the source's images, or a target with no parent.
    CopyOptions bad;
    bad.same_up_to = 3;
    CHECK(lib->copy(*s2, **over, bad).code() == VDKIT_E_INVALID_ARGUMENT);
    auto lone = lib->create_image(dir / "lone.vdi", test::create_opts("vdi", kSize));
    REQUIRE_OK(lone);
    bad.same_up_to = 0;
    CHECK(lib->copy(*s2, **lone, bad).code() == VDKIT_E_INVALID_ARGUMENT);
}
