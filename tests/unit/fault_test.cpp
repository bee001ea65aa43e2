// Injected I/O errors (tests/fixtures/faulty_transport.cpp): a chain
// operation cut off at any write leaves a chain that still reads the same
// data, and images whose check finds no errors; a copy whose source starts
// failing stops every worker and names the file.
#include "test_support.hpp"

#include <filesystem>
#include <functional>

using namespace vdkit;
namespace fs = std::filesystem;

namespace {
constexpr uint64_t kSize = 4u << 20;
constexpr uint64_t kBlock = 64u << 10;

std::shared_ptr<Library> faulty_library() {
    return test::make_library({std::string(VDKIT_TEST_PROBE_PLUGIN_DIR) + "/faulty"});
}

CreateOptions opts(const std::string &format) {
    CreateOptions o = test::create_opts(format, kSize);
    if (format == "vdi") o.options["block-size"] = std::to_string(kBlock);
    if (format == "vmdk") o.options["zeroed-grain"] = "true";
    return o;
}

// The chain's images, base to top: base.vdi <- mid.vmdk <- top.vdi (a mixed
// chain: no link compares modification ids, which are compared within one
// format only), or one format throughout (every link compares them).
struct Names {
    std::string base = "base.vdi", mid = "mid.vmdk", top = "top.vdi";
};
Names one_format(const std::string &fmt) {
    return {"base." + fmt, "mid." + fmt, "top." + fmt};
}
std::string ext(const std::string &name) {
    return name.substr(name.rfind('.') + 1);
}

// The chain of `n`, each image holding data (and mid a zero record) the
// others overlap; returns what the top reads.
std::vector<unsigned char> make_chain(Library &lib, const test::TempDir &dir, const Names &n = {}) {
    std::vector<unsigned char> model(kSize, 0);
    auto write = [&](Disk &d, uint64_t off, uint64_t len, uint32_t seed) {
        auto data = test::pattern(static_cast<size_t>(len), seed);
        REQUIRE_OK(d.write(off, data.data(), len));
        std::copy(data.begin(), data.end(), model.begin() + static_cast<long>(off));
    };
    {
        auto base = lib.create_image(dir / n.base, opts(ext(n.base)));
        REQUIRE_OK(base);
        write(**base, 0, 1u << 20, 1);
        write(**base, 3u << 20, 200000, 2);
        REQUIRE_OK((*base)->close());
    }
    {
        CreateOptions o = opts(ext(n.mid));
        o.parent = dir / n.base;
        auto mid = lib.create_image(dir / n.mid, o);
        REQUIRE_OK(mid);
        write(**mid, 100000, 300000, 3);
        write(**mid, 2u << 20, 5 * kBlock + 7, 4);
        REQUIRE_OK((*mid)->write_zeroes(3u << 20, 2 * kBlock));
        std::fill(model.begin() + (3l << 20), model.begin() + (3l << 20) + 2 * static_cast<long>(kBlock), 0);
        REQUIRE_OK((*mid)->close());
    }
    {
        CreateOptions o = opts(ext(n.top));
        o.parent = dir / n.mid;
        auto top = lib.create_image(dir / n.top, o);
        REQUIRE_OK(top);
        write(**top, 50000, 100000, 5);
        write(**top, (3u << 20) + 10000, 20000, 6);
        REQUIRE_OK((*top)->close());
    }
    return model;
}

// Run `op` on the chain through the faulty transport, with every
// data-changing call after the first `limit` failing; return its status.
Status run_with_fault(Library &lib, const test::TempDir &dir, uint64_t limit, const std::string &plan,
                      const std::function<Status(Disk &)> &op, const Names &n = {}) {
    OpenOptions o;
    o.writable = true;
    o.writable_chain = true;
    o.transport_options = {{"plan", plan}, {"fail-write-after", std::to_string(limit)}};
    auto disk = lib.open("faulty://" + (dir / n.top), o);
    REQUIRE_OK(disk);
    Status st = op(**disk);
    (*disk)->close().ignore(); // may fail too: the disk is "broken" from here on
    return st;
}

// The one error a cut can leave: a VDI header's allocated count written,
// the map entries not (or the map repointed, the count not yet lowered).
// VDI cannot update both at once; qemu-img check calls it an error too
// (docs/check.md), vdkit's writer copes and check -r repairs it.
bool vdi_count_finding(const CheckFinding &f) {
    return f.message.find("allocated blocks, the map uses") != std::string::npos ||
           f.message.find("data blocks among those in use") != std::string::npos;
}

// After the fault: every image that is left opens and checks without errors
// (but the VDI count a cut between header and map leaves, which check -r
// repairs without changing the content), and the chain from `top` reads the
// model. The chain must open as it is: never with ignore_parent_mismatch (a
// link naming a modification id its parent no longer has is a chain cut off
// for good: docs/reliability.md, crash finding 5).
void expect_consistent(Library &lib, const test::TempDir &dir, const std::string &top,
                       const std::vector<unsigned char> &model, const Names &n = {}) {
    OpenOptions o;
    o.writable = true;
    o.writable_chain = true;
    auto disk = lib.open(dir / top, o);
    REQUIRE_OK(disk);
    CHECK(test::first_difference(**disk, model) == "equal");
    REQUIRE_OK((*disk)->close());
    bool repaired = false;
    for (const std::string &name : {n.base, n.mid, n.top}) {
        if (!fs::exists(dir / name)) continue;
        OpenOptions one;
        one.follow_parents = false;
        one.writable = true;
        auto img = lib.open(dir / name, one);
        REQUIRE_OK(img);
        auto report = (*img)->check();
        REQUIRE_OK(report);
        INFO(name << ": " << (report->findings.empty() ? std::string() : report->findings.front().message));
        uint64_t count_errors = 0;
        for (const auto &f : report->findings)
            if (f.severity == FindingSeverity::error && vdi_count_finding(f)) ++count_errors;
        CHECK(report->errors == count_errors);
        if (count_errors) {
            CHECK(name.find(".vdi") != std::string::npos);
            CheckOptions fix;
            fix.repair = true;
            auto fixed = (*img)->check(fix);
            REQUIRE_OK(fixed);
            CHECK(fixed->errors == 0);
            auto again = (*img)->check();
            REQUIRE_OK(again);
            CHECK(again->errors == 0);
            repaired = true;
        }
    }
    if (repaired) { // the repair changed nothing the chain reads
        auto after = lib.open(dir / top, o);
        REQUIRE_OK(after);
        CHECK(test::first_difference(**after, model) == "equal");
    }
}

// Sweep the cut-off point over every data-changing call the operation makes.
// Returns how many cut-off points were tried.
uint64_t sweep(const std::string &what, const std::string &final_top, const std::function<Status(Disk &)> &op,
               const Names &n = {}) {
    auto lib = faulty_library();
    for (uint64_t limit = 1;; ++limit) {
        CAPTURE(what, limit);
        test::TempDir dir;
        const auto model = make_chain(*lib, dir, n);
        const Status st = run_with_fault(*lib, dir, limit, what + std::to_string(limit), op, n);
        if (st) {
            // The whole operation fitted under the limit: the sweep is complete.
            expect_consistent(*lib, dir, final_top, model, n);
            CHECK(limit > 3); // it did write, so earlier limits cut it somewhere
            return limit;
        }
        CHECK(st.code() == VDKIT_E_IO);
        CHECK_THAT(st.message(), Catch::Contains("injected"));
        // Cut off: whatever the operation had done, the old top still reads the same.
        expect_consistent(*lib, dir, fs::exists(dir / n.top) ? n.top : final_top, model, n);
        REQUIRE(limit < 400);
    }
}
} // namespace

TEST_CASE("commit cut off at any write leaves the chain reading the same", "[fault][chain]") {
    SECTION("into the VDI base") {
        sweep("commit", "top.vdi", [](Disk &d) { return d.commit(0, false); });
    }
    SECTION("into the VMDK middle") {
        sweep("commit-mid", "top.vdi", [](Disk &d) { return d.commit(1, false); });
    }
}

// Finding 5 of the crash harness (docs/reliability.md): in a chain of one
// format every link records its parent's modification id (VMDK parentCID,
// VDI parent modification UUID), and the first write into the base changes
// that id. Cut off anywhere — the faulty transport lets the first `limit`
// writes and flushes through and fails the rest, what kill -9 leaves — the
// chain must open as it is (no PARENT_MISMATCH) and read the same.
TEST_CASE("commit and merge cut off at any write in a one-format chain leave a chain that opens", "[fault][chain]") {
    for (const std::string fmt : {"vmdk", "vdi"}) {
        const Names n = one_format(fmt);
        SECTION(fmt + ": commit into the base") {
            CHECK(sweep(
                      "commit-" + fmt, n.top, [](Disk &d) { return d.commit(0, false); }, n) > 5);
        }
        SECTION(fmt + ": commit into the middle, the top emptied") {
            CHECK(sweep(
                      "commit-mid-" + fmt, n.top, [](Disk &d) { return d.commit(1, true); }, n) > 5);
        }
        SECTION(fmt + ": merge backward, top into base") {
            CHECK(sweep(
                      "merge-back-" + fmt, n.base, [](Disk &d) { return d.merge(2, 0); }, n) > 5);
        }
        SECTION(fmt + ": merge forward, base into top") {
            CHECK(sweep(
                      "merge-fwd-" + fmt, n.top, [](Disk &d) { return d.merge(0, 2); }, n) > 5);
        }
    }
}

TEST_CASE("merge cut off at any write leaves the chain reading the same", "[fault][chain]") {
    SECTION("backward: top into base") {
        sweep("merge-back", "base.vdi", [](Disk &d) { return d.merge(2, 0); });
    }
    SECTION("forward: base into top") {
        sweep("merge-fwd", "top.vdi", [](Disk &d) { return d.merge(0, 2); });
    }
}

TEST_CASE("rebase cut off at any write leaves the top reading the same", "[fault][chain]") {
    sweep("rebase", "top.vdi", [](Disk &d) { return d.rebase(""); });
}

TEST_CASE("a copy whose source fails stops every worker and names the file", "[fault][copy]") {
    auto lib = faulty_library();
    test::TempDir dir;
    make_chain(*lib, dir);
    for (bool out_of_order : {false, true}) {
        OpenOptions o;
        o.transport_options = {{"plan", out_of_order ? "copy-ooo" : "copy"}, {"fail-read-after", "40"}};
        auto src = lib->open("faulty://" + (dir / "top.vdi"), o);
        REQUIRE_OK(src);
        auto dst = lib->create_image(dir / (out_of_order ? "c1.img" : "c2.img"), test::create_opts("raw", kSize));
        REQUIRE_OK(dst);
        CopyOptions co;
        co.threads = 4;
        co.out_of_order = out_of_order;
        co.buffer_size = 64 << 10;
        Status st = lib->copy(**src, **dst, co);
        CHECK(st.code() == VDKIT_E_IO);
        CHECK_THAT(st.message(), Catch::Contains("injected read error") && Catch::Contains(".v"));
    }
}

namespace {
// base.<fmt> (data, zeros written as data, a discarded hole) <- child.<fmt>;
// returns what the child reads.
std::vector<unsigned char> make_parent_and_child(Library &lib, const test::TempDir &dir, const std::string &fmt) {
    std::vector<unsigned char> model(kSize, 0);
    {
        auto base = lib.create_image(dir / ("base." + fmt), opts(fmt));
        REQUIRE_OK(base);
        for (uint64_t b = 0; b < 12; ++b) {
            auto data = test::pattern(kBlock, static_cast<uint32_t>(b + 1));
            REQUIRE_OK((*base)->write(b * kBlock, data.data(), kBlock));
            if (b % 3 == 1) { // zeros over allocated data are data: compact gives these back
                std::fill(data.begin(), data.end(), 0);
                REQUIRE_OK((*base)->write(b * kBlock, data.data(), kBlock));
            }
            std::copy(data.begin(), data.end(), model.begin() + static_cast<long>(b * kBlock));
        }
        REQUIRE_OK((*base)->discard(3 * kBlock, kBlock)); // a hole in the middle
        std::fill(model.begin() + static_cast<long>(3 * kBlock), model.begin() + static_cast<long>(4 * kBlock), 0);
        REQUIRE_OK((*base)->close());
    }
    CreateOptions o = opts(fmt);
    o.parent = dir / ("base." + fmt);
    auto child = lib.create_image(dir / ("child." + fmt), o);
    REQUIRE_OK(child);
    auto data = test::pattern(2 * kBlock + 100, 77);
    REQUIRE_OK((*child)->write(20 * kBlock + 5, data.data(), data.size()));
    std::copy(data.begin(), data.end(), model.begin() + static_cast<long>(20 * kBlock + 5));
    REQUIRE_OK((*child)->close());
    return model;
}
} // namespace

TEST_CASE("compact of a parent cut off at any write keeps its id, the child opens and reads the same",
          "[fault][compact]") {
    auto lib = faulty_library();
    for (const std::string fmt : {"vmdk", "vdi"}) {
        for (uint64_t limit = 1;; ++limit) {
            CAPTURE(fmt, limit);
            test::TempDir dir;
            const auto model = make_parent_and_child(*lib, dir, fmt);
            const std::string base = dir / ("base." + fmt);
            const auto size_before = fs::file_size(base);
            Uuid id{};
            {
                auto d = test::open_disk(*lib, base);
                auto info = d->image_info(0);
                REQUIRE_OK(info);
                id = info->modification_uuid;
            }
            OpenOptions o;
            o.writable = true;
            o.transport_options = {{"plan", "compact-" + fmt + std::to_string(limit)},
                                   {"fail-write-after", std::to_string(limit)}};
            Status st;
            {
                auto disk = lib->open("faulty://" + base, o);
                REQUIRE_OK(disk);
                st = (*disk)->compact();
                (void)(*disk)->close();
            }
            CHECK(fs::file_size(base) <= size_before); // compact never grows the file
            {
                auto d = test::open_disk(*lib, base);
                auto info = d->image_info(0);
                REQUIRE_OK(info);
                CHECK(info->modification_uuid == id);
            }
            auto child = test::open_disk(*lib, dir / ("child." + fmt)); // verifies the parent's id
            CHECK(test::first_difference(*child, model) == "equal");
            OpenOptions one;
            one.follow_parents = false;
            auto img = lib->open(base, one);
            REQUIRE_OK(img);
            auto report = (*img)->check();
            REQUIRE_OK(report);
            uint64_t count_errors = 0;
            for (const auto &f : report->findings)
                if (f.severity == FindingSeverity::error && vdi_count_finding(f)) ++count_errors;
            for (const auto &f : report->findings)
                UNSCOPED_INFO(f.message);
            CHECK(report->errors == count_errors);
            if (st) {
                CHECK(fs::file_size(base) < size_before);
                CHECK(report->clean());
                CHECK(limit > 1); // it did write, so earlier limits cut it somewhere
                break;
            }
            CHECK(st.code() == VDKIT_E_IO);
            REQUIRE(limit < 400);
        }
    }
}

TEST_CASE("compacting a middle image gives back blocks equal to its parent and keeps its id", "[compact][chain]") {
    auto lib = test::make_library();
    for (const std::string fmt : {"vmdk", "vdi"}) {
        CAPTURE(fmt);
        test::TempDir dir;
        std::vector<unsigned char> model(kSize, 0);
        {
            auto base = lib->create_image(dir / ("base." + fmt), opts(fmt));
            REQUIRE_OK(base);
            auto data = test::pattern(4 * kBlock, 5);
            REQUIRE_OK((*base)->write(0, data.data(), data.size()));
            std::copy(data.begin(), data.end(), model.begin());
            REQUIRE_OK((*base)->close());
        }
        {
            CreateOptions o = opts(fmt);
            o.parent = dir / ("base." + fmt);
            auto mid = lib->create_image(dir / ("mid." + fmt), o);
            REQUIRE_OK(mid);
            // Blocks 0-1: the parent's data again (compact gives them back); block 6: new.
            REQUIRE_OK((*mid)->write(0, model.data(), 2 * kBlock));
            auto fresh = test::pattern(kBlock, 6);
            REQUIRE_OK((*mid)->write(6 * kBlock, fresh.data(), kBlock));
            std::copy(fresh.begin(), fresh.end(), model.begin() + static_cast<long>(6 * kBlock));
            REQUIRE_OK((*mid)->close());
        }
        {
            CreateOptions o = opts(fmt);
            o.parent = dir / ("mid." + fmt);
            auto top = lib->create_image(dir / ("top." + fmt), o);
            REQUIRE_OK(top);
            REQUIRE_OK((*top)->close());
        }
        const std::string mid = dir / ("mid." + fmt);
        const auto before = fs::file_size(mid);
        Uuid id{};
        {
            auto d = test::open_disk(*lib, mid, true);
            auto info = d->image_info(1);
            REQUIRE_OK(info);
            id = info->modification_uuid;
            REQUIRE_OK(d->compact());
            auto run = d->block_status(0, 2 * kBlock);
            REQUIRE_OK(run);
            CHECK(run->image == 0); // the parent shows through again
            REQUIRE_OK(d->close());
        }
        CHECK(fs::file_size(mid) < before);
        auto d = test::open_disk(*lib, mid);
        auto info = d->image_info(1);
        REQUIRE_OK(info);
        CHECK(info->modification_uuid == id);
        auto top = test::open_disk(*lib, dir / ("top." + fmt)); // verifies mid's id
        CHECK(test::first_difference(*top, model) == "equal");
    }
}
