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

// base.vdi <- mid.vmdk <- top.vdi, each holding data (and mid a zero
// record) the others overlap; returns what the top reads.
std::vector<unsigned char> make_chain(Library &lib, const test::TempDir &dir) {
    std::vector<unsigned char> model(kSize, 0);
    auto write = [&](Disk &d, uint64_t off, uint64_t len, uint32_t seed) {
        auto data = test::pattern(static_cast<size_t>(len), seed);
        REQUIRE_OK(d.write(off, data.data(), len));
        std::copy(data.begin(), data.end(), model.begin() + static_cast<long>(off));
    };
    {
        auto base = lib.create_image(dir / "base.vdi", opts("vdi"));
        REQUIRE_OK(base);
        write(**base, 0, 1u << 20, 1);
        write(**base, 3u << 20, 200000, 2);
        REQUIRE_OK((*base)->close());
    }
    {
        CreateOptions o = opts("vmdk");
        o.parent = dir / "base.vdi";
        auto mid = lib.create_image(dir / "mid.vmdk", o);
        REQUIRE_OK(mid);
        write(**mid, 100000, 300000, 3);
        write(**mid, 2u << 20, 5 * kBlock + 7, 4);
        REQUIRE_OK((*mid)->write_zeroes(3u << 20, 2 * kBlock));
        std::fill(model.begin() + (3l << 20), model.begin() + (3l << 20) + 2 * static_cast<long>(kBlock), 0);
        REQUIRE_OK((*mid)->close());
    }
    {
        CreateOptions o = opts("vdi");
        o.parent = dir / "mid.vmdk";
        auto top = lib.create_image(dir / "top.vdi", o);
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
                      const std::function<Status(Disk &)> &op) {
    OpenOptions o;
    o.writable = true;
    o.writable_chain = true;
    o.transport_options = {{"plan", plan}, {"fail-write-after", std::to_string(limit)}};
    auto disk = lib.open("faulty://" + (dir / "top.vdi"), o);
    REQUIRE_OK(disk);
    Status st = op(**disk);
    (*disk)->close().ignore(); // may fail too: the disk is "broken" from here on
    return st;
}

// After the fault: every image that is left opens and checks without errors,
// and the chain from `top` reads the model.
void expect_consistent(Library &lib, const test::TempDir &dir, const std::string &top,
                       const std::vector<unsigned char> &model) {
    OpenOptions o;
    o.writable = true;
    o.writable_chain = true;
    auto disk = lib.open(dir / top, o);
    REQUIRE_OK(disk);
    CHECK(test::first_difference(**disk, model) == "equal");
    REQUIRE_OK((*disk)->close());
    for (const char *name : {"base.vdi", "mid.vmdk", "top.vdi"}) {
        if (!fs::exists(dir / name)) continue;
        OpenOptions one;
        one.follow_parents = false;
        auto img = lib.open(dir / name, one);
        REQUIRE_OK(img);
        auto report = (*img)->check();
        REQUIRE_OK(report);
        INFO(name << ": " << (report->findings.empty() ? std::string() : report->findings.front().message));
        CHECK(report->errors == 0);
    }
}

// Sweep the cut-off point over every data-changing call the operation makes.
void sweep(const std::string &what, const std::string &final_top, const std::function<Status(Disk &)> &op) {
    auto lib = faulty_library();
    for (uint64_t limit = 1;; ++limit) {
        CAPTURE(what, limit);
        test::TempDir dir;
        const auto model = make_chain(*lib, dir);
        const Status st = run_with_fault(*lib, dir, limit, what + std::to_string(limit), op);
        if (st) {
            // The whole operation fitted under the limit: the sweep is complete.
            expect_consistent(*lib, dir, final_top, model);
            CHECK(limit > 3); // it did write, so earlier limits cut it somewhere
            break;
        }
        CHECK(st.code() == VDKIT_E_IO);
        CHECK_THAT(st.message(), Catch::Contains("injected"));
        // Cut off: whatever the operation had done, the old top still reads the same.
        expect_consistent(*lib, dir, fs::exists(dir / "top.vdi") ? "top.vdi" : final_top, model);
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
