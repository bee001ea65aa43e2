// Asynchronous I/O (Disk::submit_* and the C API's vdkit_disk_aio_*): every
// operation completes once with its result, flushes are barriers, close waits
// for what was submitted, and the data matches a model after reopening.
#include "test_support.hpp"

#include "vdkit/vdkit.h"

#include <atomic>
#include <condition_variable>
#include <map>
#include <numeric>

using namespace vdkit;

namespace {

constexpr uint64_t kSize = 16u << 20;
constexpr uint64_t kSlot = 128u << 10; // writes in flight together use distinct slots

// Results delivered to completions, gathered for the test thread.
struct Tally {
    std::mutex mu;
    std::condition_variable cv;
    std::map<std::string, int> codes; // status name -> count
    int completed = 0;
    void add(const Status &st) {
        std::lock_guard l(mu);
        ++codes[st.is_ok() ? "ok" : std::to_string(st.code())];
        ++completed;
        cv.notify_all();
    }
    Completion sink() {
        return [this](Status st) { add(st); };
    }
};

} // namespace

TEST_CASE("submitted writes, zero writes and reads match a model, flushes are barriers", "[async]") {
    test::TempDir dir;
    auto lib = test::make_library();
    CreateOptions co = test::create_opts("vdi", kSize);
    co.options["block-size"] = "64k";
    auto disk = lib->create_image(dir / "a.vdi", co);
    REQUIRE_OK(disk);
    Disk &d = **disk;
    std::vector<unsigned char> model(kSize, 0);
    std::mt19937_64 rng(7);
    Tally tally;
    std::atomic<int> writes_done{0};
    std::atomic<int> barrier_violations{0};
    std::vector<std::vector<unsigned char>> buffers; // alive until the end
    buffers.reserve(2000);
    int submitted = 0;
    const int rounds = 40;
    for (int round = 0; round < rounds; ++round) {
        std::vector<uint64_t> slots(kSize / kSlot);
        std::iota(slots.begin(), slots.end(), 0);
        std::shuffle(slots.begin(), slots.end(), rng);
        for (int i = 0; i < 24; ++i) {
            const uint64_t base = slots[static_cast<size_t>(i)] * kSlot;
            const uint64_t off = base + rng() % (kSlot / 2), len = 1 + rng() % (kSlot / 2);
            if (rng() % 4 == 0) {
                REQUIRE_OK(d.submit_write_zeroes(off, len, [&](Status st) {
                    tally.add(st);
                    ++writes_done;
                }));
                std::fill(model.begin() + static_cast<long>(off), model.begin() + static_cast<long>(off + len), 0);
            } else {
                buffers.push_back(test::pattern(static_cast<size_t>(len), static_cast<uint32_t>(rng())));
                const auto &b = buffers.back();
                REQUIRE_OK(d.submit_write(off, b.data(), len, [&](Status st) {
                    tally.add(st);
                    ++writes_done;
                }));
                std::copy(b.begin(), b.end(), model.begin() + static_cast<long>(off));
            }
            ++submitted;
        }
        // Every write submitted before the flush has completed when it runs.
        REQUIRE_OK(d.submit_flush([&, expected = submitted](Status st) {
            if (writes_done.load() != expected) ++barrier_violations;
            tally.add(st);
        }));
        // Reads submitted after the flush see every write before it.
        auto snapshot = std::make_shared<std::vector<unsigned char>>(model);
        for (int r = 0; r < 4; ++r) {
            const uint64_t off = rng() % (kSize - kSlot), len = 1 + rng() % kSlot;
            auto got = std::make_shared<std::vector<unsigned char>>(static_cast<size_t>(len));
            REQUIRE_OK(d.submit_read(off, got->data(), len, [&tally, got, snapshot, off, len](Status st) {
                const bool same =
                    st.is_ok() && std::equal(got->begin(), got->end(), snapshot->begin() + static_cast<long>(off));
                tally.add(same ? st
                               : Status(VDKIT_E_CORRUPT, "read " + std::to_string(len) + " at " + std::to_string(off) +
                                                             " differs from the model"));
            }));
        }
        // Wait for this round before the next reuses slots.
        d.drain();
    }
    CHECK(tally.completed == submitted + rounds * 5);
    CHECK(tally.codes["ok"] == tally.completed);
    CHECK(barrier_violations == 0);
    REQUIRE_OK(d.close());
    auto again = lib->open(dir / "a.vdi");
    REQUIRE_OK(again);
    CHECK(test::first_difference(**again, model) == "equal");
}

TEST_CASE("async errors arrive through the callback, close waits for submitted work", "[async]") {
    test::TempDir dir;
    auto lib = test::make_library();
    auto made = lib->create_image(dir / "b.vmdk", test::create_opts("vmdk", kSize));
    REQUIRE_OK(made);
    REQUIRE_OK((*made)->close());

    Tally tally;
    {
        auto ro = lib->open(dir / "b.vmdk");
        REQUIRE_OK(ro);
        std::vector<unsigned char> buf(4096, 1);
        REQUIRE_OK((*ro)->submit_write(0, buf.data(), buf.size(), tally.sink()));
        REQUIRE_OK((*ro)->submit_read(kSize - 10, buf.data(), 100, tally.sink())); // past the end
        (*ro)->drain();
        CHECK(tally.codes[std::to_string(VDKIT_E_READ_ONLY)] == 1);
        CHECK(tally.codes[std::to_string(VDKIT_E_OUT_OF_RANGE)] == 1);
    }

    OpenOptions w;
    w.writable = true;
    auto disk = lib->open(dir / "b.vmdk", w);
    REQUIRE_OK(disk);
    auto data = test::pattern(64u << 10, 3);
    Tally many;
    for (int i = 0; i < 100; ++i)
        REQUIRE_OK(
            (*disk)->submit_write(static_cast<uint64_t>(i) * data.size(), data.data(), data.size(), many.sink()));
    REQUIRE_OK((*disk)->submit_flush(many.sink()));
    REQUIRE_OK((*disk)->close()); // returns only after all 101 completed
    CHECK(many.completed == 101);
    CHECK(many.codes["ok"] == 101);
    CHECK((*disk)->submit_flush(many.sink()).code() == VDKIT_E_INVALID_ARGUMENT);

    auto back = lib->open(dir / "b.vmdk");
    REQUIRE_OK(back);
    std::vector<unsigned char> got(data.size());
    REQUIRE_OK((*back)->read(99 * data.size(), got.data(), got.size()));
    CHECK(got == data);
}

TEST_CASE("the C API submits asynchronous I/O with completion callbacks", "[async][c-api]") {
    test::TempDir dir;
    vdkit_error err{};
    vdkit_library *lib = test::open_c_library(err);
    vdkit_disk *disk = nullptr;
    const std::string path = dir / "c.vdi";
    REQUIRE(vdkit_disk_create(lib, path.c_str(), "vdi", kSize, 0, nullptr, nullptr, &disk, &err) == VDKIT_OK);

    struct Seen {
        std::atomic<int> ok{0}, failed{0};
        std::mutex mu;
        std::string message;
    } seen;
    auto done = [](void *opaque, vdkit_status status, const char *message) {
        auto *s = static_cast<Seen *>(opaque);
        if (status == VDKIT_OK) {
            ++s->ok;
        } else {
            ++s->failed;
            std::lock_guard l(s->mu);
            s->message = message;
        }
    };
    auto data = test::pattern(1u << 20, 9);
    REQUIRE(vdkit_disk_aio_write(disk, 3u << 20, data.data(), data.size(), done, &seen, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_aio_write_zeroes(disk, 0, 4096, done, &seen, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_aio_flush(disk, done, &seen, &err) == VDKIT_OK);
    std::vector<unsigned char> back(data.size());
    REQUIRE(vdkit_disk_aio_read(disk, 3u << 20, back.data(), back.size(), done, &seen, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_aio_discard(disk, 8u << 20, 1u << 20, done, &seen, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_aio_read(disk, kSize, back.data(), 1, done, &seen, &err) == VDKIT_OK); // past the end
    REQUIRE(vdkit_disk_aio_drain(disk, &err) == VDKIT_OK);
    CHECK(seen.ok == 5);
    CHECK(seen.failed == 1);
    CHECK(seen.message.find("beyond") != std::string::npos);
    CHECK(back == data);
    CHECK(vdkit_disk_aio_read(disk, 0, nullptr, 10, done, &seen, &err) == VDKIT_E_INVALID_ARGUMENT);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    vdkit_library_close(lib);
}
