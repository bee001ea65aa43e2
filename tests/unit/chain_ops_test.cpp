// Merge, commit and rebase, model checked: thousands of random steps —
// writes, zero writes, snapshots, merges in both directions, commits,
// rebases (safe, onto an ancestor or onto nothing), compacts, cancelled
// operations and reopens — over chains of VDI, VMDK and toysparse images, every step
// followed by a full read compared with an in-memory model of the disk.
#include "test_support.hpp"

#include <map>
#include <random>

using namespace vdkit;

namespace {

constexpr uint64_t kSize = 2u << 20;
constexpr uint64_t kBlock = 64u << 10;
constexpr size_t kMaxDepth = 5;

CreateOptions options_for(const std::string &format, uint64_t size = 0) {
    CreateOptions o = test::create_opts(format, size);
    if (format == "vdi") o.options["block-size"] = std::to_string(kBlock);
    if (format == "vmdk") o.options["zeroed-grain"] = "true";
    return o;
}

std::string location(const Disk &d, size_t i) {
    auto info = d.image_info(i);
    REQUIRE_OK(info);
    return info->location;
}

} // namespace

TEST_CASE("chain operations keep the disk's content (model checked)", "[chain][merge]") {
    const uint64_t seed = GENERATE(range(1, 9));
    CAPTURE(seed);
    test::TempDir dir;
    auto lib = test::make_library();
    std::mt19937_64 rng(seed);
    // toysparse is the SDK example: a third-party format takes part too.
    const char *formats[] = {"vdi", "vmdk", "toysparse"};
    auto pick_format = [&] { return std::string(formats[rng() % 3]); };
    std::vector<unsigned char> model(kSize, 0);
    int names = 0;
    auto new_name = [&](const std::string &format) {
        return std::string(dir / ("img" + std::to_string(names++) + "." + format));
    };

    std::string top_name = new_name(pick_format());
    {
        const std::string fmt = top_name.substr(top_name.rfind('.') + 1);
        auto base = lib->create_image(top_name, options_for(fmt, kSize));
        REQUIRE_OK(base);
        REQUIRE_OK((*base)->close());
    }
    auto disk = test::open_disk(*lib, top_name, true, true);
    std::map<std::string, int> done;
    const int steps = 500;
    for (int step = 0; step < steps; ++step) {
        const size_t count = disk->image_count();
        const int op = static_cast<int>(rng() % 100);
        std::string what;
        if (op < 35) {
            what = "write";
            const uint64_t off = rng() % kSize, len = 1 + rng() % std::min<uint64_t>(2 * kBlock, kSize - off);
            auto data = test::pattern(static_cast<size_t>(len), static_cast<uint32_t>(rng()));
            // Sometimes the same bytes the disk already shows (elision must keep them).
            if (rng() % 5 == 0)
                data.assign(model.begin() + static_cast<long>(off), model.begin() + static_cast<long>(off + len));
            REQUIRE_OK(disk->write(off, data.data(), len));
            std::copy(data.begin(), data.end(), model.begin() + static_cast<long>(off));
        } else if (op < 45) {
            what = "zero";
            const uint64_t off = rng() % kSize, len = 1 + rng() % std::min<uint64_t>(3 * kBlock, kSize - off);
            REQUIRE_OK(disk->write_zeroes(off, len));
            std::fill(model.begin() + static_cast<long>(off), model.begin() + static_cast<long>(off + len), 0);
        } else if (op < 60 && count < kMaxDepth) {
            what = "snapshot";
            REQUIRE_OK(disk->close());
            const std::string fmt = pick_format();
            CreateOptions co = options_for(fmt);
            co.parent = top_name;
            top_name = new_name(fmt);
            auto child = lib->create_image(top_name, co);
            REQUIRE_OK(child);
            REQUIRE_OK((*child)->close());
            disk = test::open_disk(*lib, top_name, true, true);
        } else if (op < 70 && count > 1) {
            what = "merge";
            size_t a = rng() % count, b = rng() % count;
            if (a == b) b = (a + 1) % count;
            const bool cancel = rng() % 6 == 0;
            uint64_t calls = 0;
            Status st = disk->merge(a, b, [&](uint64_t, uint64_t) { return !(cancel && ++calls > 2); });
            if (cancel && st.code() == VDKIT_E_CANCELLED) {
                what += " (cancelled)";
            } else {
                REQUIRE_OK(st);
                CHECK(disk->image_count() == count - (a > b ? a - b : b - a));
            }
        } else if (op < 78 && count > 1) {
            what = "commit";
            const size_t base = rng() % (count - 1);
            REQUIRE_OK(disk->commit(base, rng() % 2 == 0));
            CHECK(disk->image_count() == base + 2);
        } else if (op < 86 && count > 1) {
            // Onto an ancestor (skipping images) or onto nothing.
            const size_t target = rng() % count; // == count-1: none
            const std::string parent = target + 1 == count ? std::string() : location(*disk, target);
            what = "rebase onto " + (parent.empty() ? std::string("nothing") : std::to_string(target));
            RebaseOptions ro;
            REQUIRE_OK(disk->rebase(parent, ro));
            CHECK(disk->image_count() == (parent.empty() ? 1 : target + 2));
        } else if (op < 92) {
            what = "compact";
            Status st = disk->compact();
            if (st.code() != VDKIT_E_NOT_SUPPORTED) REQUIRE_OK(st);
        } else {
            what = "reopen";
            REQUIRE_OK(disk->close());
            disk = test::open_disk(*lib, top_name, true, true);
        }
        top_name = location(*disk, disk->image_count() - 1);
        ++done[what.substr(0, what.find(' '))];
        INFO("step " << step << ": " << what << ", chain of " << disk->image_count());
        REQUIRE(test::first_difference(*disk, model) == "equal");
    }
    // Every kind of step ran.
    for (const char *kind : {"write", "zero", "snapshot", "merge", "commit", "rebase", "compact", "reopen"}) {
        INFO(kind);
        CHECK(done[kind] > 0);
    }
    REQUIRE_OK(disk->close());
    auto again = lib->open(top_name);
    REQUIRE_OK(again);
    CHECK(test::first_difference(**again, model) == "equal");
    // What the chain holds passes each format's own check.
    for (size_t i = 0; i < (*again)->image_count(); ++i) {
        auto one = lib->open(location(**again, i), [] {
            OpenOptions o;
            o.follow_parents = false;
            return o;
        }());
        REQUIRE_OK(one);
        auto report = (*one)->check();
        INFO(location(**again, i));
        if (report.status().code() == VDKIT_E_NOT_SUPPORTED) continue; // toysparse has no check
        REQUIRE_OK(report);
        CHECK(report->errors == 0);
    }
}
