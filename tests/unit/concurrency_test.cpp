// One disk handle hammered by several threads at once (vdkit.h: "reads run
// concurrently; writes are serialised"): writer threads own interleaved
// byte ranges that share grains and blocks with each other and with ranges
// nobody writes, reader threads check those stable ranges while the writers
// allocate around them, a flusher flushes. At the end the whole disk must
// equal the model the writers kept, before and after reopening, and check
// must find nothing. Run under ThreadSanitizer by `make test-tsan`.
#include "test_support.hpp"

#include <atomic>
#include <random>
#include <thread>

using namespace vdkit;

namespace {

constexpr uint64_t kSize = 12u << 20;
// Regions of 40 KiB + 512: never aligned to a 64 KiB grain or a 1 MiB
// block, so neighbouring regions (of other writers, or stable) share them.
constexpr uint64_t kRegion = (40u << 10) + 512;
constexpr unsigned kWriters = 4, kReaders = 3;
constexpr unsigned kKinds = kWriters + 1; // region r is stable when r % kKinds == kWriters

struct Case {
    const char *name, *format;
    Options options;
    bool diff;
};

void hammer(const Case &c) {
    CAPTURE(c.name);
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string ext = std::string(".") + (std::string(c.format) == "raw" ? "img" : c.format);
    const std::string path = dir / (std::string("disk") + ext);
    std::vector<unsigned char> model(kSize, 0);
    if (c.diff) {
        CreateOptions bo = test::create_opts(c.format, kSize);
        auto base = lib->create_image(dir / (std::string("base") + ext), bo);
        REQUIRE_OK(base);
        auto data = test::pattern(kSize / 2, 77);
        REQUIRE_OK((*base)->write(kSize / 4, data.data(), data.size()));
        std::copy(data.begin(), data.end(), model.begin() + kSize / 4);
        REQUIRE_OK((*base)->close());
    }
    CreateOptions co = test::create_opts(c.format, c.diff ? 0 : kSize);
    co.options = c.options;
    if (c.diff) co.parent = dir / (std::string("base") + ext);
    auto created = lib->create_image(path, co);
    REQUIRE_OK(created);
    Disk &disk = **created;
    const uint64_t regions = kSize / kRegion;
    // Stable regions first, written before any thread starts.
    for (uint64_t r = kWriters; r < regions; r += kKinds) {
        auto data = test::pattern(kRegion, static_cast<uint32_t>(1000 + r));
        REQUIRE_OK(disk.write(r * kRegion, data.data(), kRegion));
        std::copy(data.begin(), data.end(), model.begin() + static_cast<std::ptrdiff_t>(r * kRegion));
    }
    const std::vector<unsigned char> stable_model = model;

    std::atomic<bool> stop{false};
    std::atomic<int> failures{0};
    std::mutex msg_mu;
    std::string first_failure;
    auto fail = [&](const std::string &what) {
        if (failures++ == 0) {
            std::lock_guard l(msg_mu);
            first_failure = what;
        }
    };
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < kWriters; ++t)
        threads.emplace_back([&, t] {
            std::mt19937_64 rng(t * 7919 + 1);
            std::vector<unsigned char> buf, back;
            for (int i = 0; i < 30 && failures == 0; ++i) {
                const uint64_t r = (rng() % (regions / kKinds)) * kKinds + t;
                if (r >= regions) continue;
                const uint64_t off = r * kRegion + (rng() % (kRegion / 512)) * 512;
                const uint64_t len = std::min<uint64_t>((1 + rng() % 64) * 512, (r + 1) * kRegion - off);
                const auto at = model.begin() + static_cast<std::ptrdiff_t>(off);
                const unsigned k = static_cast<unsigned>(rng() % 10);
                if (k < 6) {
                    buf = test::pattern(static_cast<size_t>(len), static_cast<uint32_t>(rng()));
                    if (!disk.write(off, buf.data(), len)) fail("write at " + std::to_string(off));
                    std::copy(buf.begin(), buf.end(), at); // this writer's own bytes only
                } else if (k < 8) {
                    if (!disk.write_zeroes(off, len)) fail("write_zeroes at " + std::to_string(off));
                    std::fill(at, at + static_cast<std::ptrdiff_t>(len), 0);
                } else {
                    // A discard may keep the data or give it back (zeros, or
                    // the parent's data): the model takes what it reads as.
                    if (!disk.discard(off, len)) fail("discard at " + std::to_string(off));
                    back.resize(static_cast<size_t>(len));
                    if (!disk.read(off, back.data(), len)) fail("read after discard at " + std::to_string(off));
                    std::copy(back.begin(), back.end(), at);
                }
            }
        });
    for (unsigned t = 0; t < kReaders; ++t)
        threads.emplace_back([&, t] {
            std::mt19937_64 rng(t + 100);
            std::vector<unsigned char> buf(kRegion);
            while (!stop && failures == 0) {
                const uint64_t r = (rng() % (regions / kKinds)) * kKinds + kWriters;
                if (r >= regions) continue;
                if (!disk.read(r * kRegion, buf.data(), kRegion))
                    fail("read at " + std::to_string(r * kRegion));
                else if (!std::equal(buf.begin(), buf.end(),
                                     stable_model.begin() + static_cast<std::ptrdiff_t>(r * kRegion)))
                    fail("stable region " + std::to_string(r) + " changed while the writers worked");
            }
        });
    threads.emplace_back([&] {
        while (!stop && failures == 0) {
            if (!disk.flush()) fail("flush");
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    });
    for (unsigned t = 0; t < kWriters; ++t)
        threads[t].join();
    stop = true;
    for (size_t t = kWriters; t < threads.size(); ++t)
        threads[t].join();
    INFO(first_failure);
    REQUIRE(failures == 0);
    CHECK(test::first_difference(disk, model) == "equal");
    REQUIRE_OK(disk.close());
    auto again = test::open_disk(*lib, path);
    CHECK(test::first_difference(*again, model) == "equal");
    if (std::string(c.format) != "raw") {
        auto report = again->check();
        REQUIRE_OK(report);
        INFO((report->findings.empty() ? std::string() : report->findings.front().message));
        CHECK(report->errors == 0);
    }
    REQUIRE_OK(again->close());
}

} // namespace

TEST_CASE("one handle, writers and readers in many threads: the data matches a model", "[threads][concurrency]") {
    const Case cases[] = {
        {"raw", "raw", {}, false},
        {"vdi dynamic", "vdi", {}, false},
        {"vdi 64K blocks", "vdi", {{"block-size", "64K"}}, false},
        {"vdi differencing", "vdi", {}, true},
        {"vmdk monolithicSparse", "vmdk", {}, false},
        {"vmdk twoGbMaxExtentSparse", "vmdk", {{"subformat", "twoGbMaxExtentSparse"}, {"split-size", "4M"}}, false},
        {"vmdk differencing", "vmdk", {}, true},
    };
    for (const Case &c : cases)
        hammer(c);
}
