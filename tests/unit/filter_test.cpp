// Filter safety: operations a filter does not declare are refused, never
// silently passed to the layer below.
#include "host/host.hpp"
#include "io/plugin_stores.hpp"
#include "io/stores.hpp"
#include "test_support.hpp"

using namespace vdkit;

TEST_CASE("a filter transforms what it handles and refuses what it does not", "[filter][abi]") {
    test::TempDir dir;
    auto o = test::test_options({std::string(VDKIT_TEST_PROBE_PLUGIN_DIR) + "/filters"});
    auto host = Host::create(o);
    REQUIRE_OK(host);
    auto xor_filter = (*host)->registry().find(PluginKind::filter, "xor");
    REQUIRE(xor_filter);
    CHECK(xor_filter->filter.handled_ops == (VDKIT_OP_PREAD | VDKIT_OP_PWRITE));

    auto lower = (*host)->stores().open_store(dir / "f", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {});
    REQUIRE_OK(lower);
    auto filtered = open_filter_store((*host)->stores(), xor_filter, std::move(*lower), VDKIT_OPEN_WRITE, {});
    REQUIRE_OK(filtered);
    ByteStore &f = **filtered;
    const char msg[] = "hello";
    REQUIRE_OK(f.pwrite(msg, 5, 0));
    char back[5];
    REQUIRE_OK(f.pread(back, 5, 0));
    CHECK(std::string(back, 5) == "hello");
    auto size = f.size(); // pass-through-safe
    REQUIRE_OK(size);
    CHECK(*size == 5);
    REQUIRE_OK(f.flush());
    for (Status st : {f.discard(0, 5), f.zero(0, 5), f.truncate(0)}) {
        CHECK(st.code() == VDKIT_E_NOT_SUPPORTED);
        CHECK_THAT(st.message(), Catch::Contains("refused rather than passed through"));
    }
    // The bytes below really are transformed.
    auto raw = (*host)->stores().open_store(dir / "f", VDKIT_OPEN_NOLOCK, {});
    REQUIRE_OK(raw);
    char stored[5];
    REQUIRE_OK((*raw)->pread(stored, 5, 0));
    CHECK(stored[0] == ('h' ^ 0x5a));
}

// ---- file-level filter stacks on images ----------------------------------------------

namespace {

// Undo the rot fixture (rotate right by bits) on a copy of a file.
void unrotate_file(const std::string &from, const std::string &to, unsigned bits) {
    std::string bytes = test::file_bytes(from);
    for (auto &c : bytes) {
        const auto b = static_cast<unsigned char>(c);
        c = static_cast<char>(static_cast<unsigned char>((b >> bits) | (b << (8 - bits))));
    }
    std::ofstream(to, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string take_location(const Disk &d, size_t i) {
    auto info = d.image_info(i);
    REQUIRE_OK(info);
    return info->location;
}

std::vector<FilterSpec> rot(unsigned bits) {
    return {FilterSpec{"rot", {{"bits", std::to_string(bits)}}}};
}

} // namespace

TEST_CASE("parse_filter_spec reads NAME and NAME:key=value lists", "[filter]") {
    auto plain = parse_filter_spec("rot");
    REQUIRE_OK(plain);
    CHECK(plain->name == "rot");
    CHECK(plain->options.empty());
    auto with = parse_filter_spec("rot:bits=5,x=a,,b");
    REQUIRE_OK(with);
    CHECK(with->name == "rot");
    CHECK(with->options.at("bits") == "5");
    CHECK(with->options.at("x") == "a,b");
    CHECK(parse_filter_spec(":bits=1").status().code() == VDKIT_E_INVALID_ARGUMENT);
    CHECK(parse_filter_spec("rot:=1").status().code() == VDKIT_E_INVALID_ARGUMENT);
}

TEST_CASE("an image is created, written and reopened through a filter stack", "[filter]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const uint64_t size = 4 << 20;
    const auto data = test::pattern(size / 2, 17);
    struct Case {
        const char *format;
        Options options;
        std::vector<std::string> files; // every file the image consists of
    };
    const Case cases[] = {
        {"vdi", {}, {"d.vdi"}},
        {"vmdk",
         {{"subformat", "twoGbMaxExtentSparse"}, {"split-size", "1M"}},
         {"d.vmdk", "d-s001.vmdk", "d-s002.vmdk", "d-s003.vmdk", "d-s004.vmdk"}},
        {"raw", {}, {"d.img"}},
    };
    for (const Case &c : cases) {
        DYNAMIC_SECTION(c.format) {
            const std::string path = dir / c.files[0];
            CreateOptions co = test::create_opts(c.format, size);
            co.options = c.options;
            co.filters = rot(5);
            {
                auto disk = lib->create_image(path, co);
                REQUIRE_OK(disk);
                REQUIRE_OK((*disk)->write(size / 4, data.data(), data.size()));
                REQUIRE_OK((*disk)->write_zeroes(size / 4, 4096));
                REQUIRE_OK((*disk)->close());
            }
            std::vector<unsigned char> model(size, 0);
            std::copy(data.begin(), data.end(), model.begin() + size / 4);
            std::fill_n(model.begin() + size / 4, 4096, 0);

            OpenOptions oo;
            oo.filters = rot(5);
            auto back = lib->open(path, oo);
            REQUIRE_OK(back);
            CHECK(test::first_difference(**back, model) == "equal");
            REQUIRE_OK((*back)->close());

            // Without the stack the files are not an image of that format
            // (raw reads, but reads the transformed bytes).
            OpenOptions plain;
            plain.format = c.format;
            auto bare = lib->open(path, plain);
            if (std::string(c.format) == "raw") {
                REQUIRE_OK(bare);
                CHECK(test::first_difference(**bare, model) != "equal");
            } else {
                CHECK_FALSE(bare.is_ok());
            }

            // Every file went through the filter: undoing the rotation by
            // hand gives an image the plain plugins read.
            for (const auto &f : c.files) {
                INFO(f);
                REQUIRE(std::filesystem::exists(dir / f));
                unrotate_file(dir / f, dir / ("plain-" + f), 5);
            }
            if (std::string(c.format) == "vmdk") {
                // The descriptor names the extents; the plain copies sit
                // beside it under their own names, so read the descriptor in
                // place of the original files.
                for (const auto &f : c.files)
                    std::filesystem::rename(dir / ("plain-" + f), dir / f);
                auto undone = lib->open(path, plain);
                REQUIRE_OK(undone);
                CHECK(test::first_difference(**undone, model) == "equal");
            } else {
                auto undone = lib->open(dir / ("plain-" + c.files[0]), plain);
                REQUIRE_OK(undone);
                CHECK(test::first_difference(**undone, model) == "equal");
            }
        }
    }
}

TEST_CASE("a filtered chain: snapshot, reopen, copy out of it", "[filter]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const uint64_t size = 2 << 20;
    const auto a = test::pattern(size, 3), b = test::pattern(65536, 4);
    {
        CreateOptions co = test::create_opts("vdi", size);
        co.filters = rot(2);
        auto base = lib->create_image(dir / "base.vdi", co);
        REQUIRE_OK(base);
        REQUIRE_OK((*base)->write(0, a.data(), a.size()));
        REQUIRE_OK((*base)->close());
    }
    {
        CreateOptions co = test::create_opts("vmdk");
        co.parent = dir / "base.vdi";
        co.filters = rot(2);
        auto top = lib->create_image(dir / "top.vmdk", co);
        REQUIRE_OK(top);
        REQUIRE_OK((*top)->write(8192, b.data(), b.size()));
        REQUIRE_OK((*top)->close());
    }
    std::vector<unsigned char> model = a;
    std::copy(b.begin(), b.end(), model.begin() + 8192);
    OpenOptions oo;
    oo.filters = rot(2);
    auto chain = lib->open(dir / "top.vmdk", oo);
    REQUIRE_OK(chain);
    CHECK((*chain)->image_count() == 2);
    CHECK(test::first_difference(**chain, model) == "equal");

    // Copy out to an unfiltered image (convert with a source filter).
    auto out = lib->create_image(dir / "out.vdi", test::create_opts("vdi", size));
    REQUIRE_OK(out);
    CopyOptions copy;
    copy.target_is_zero = true;
    REQUIRE_OK(lib->copy(**chain, **out, copy));
    REQUIRE_OK((*out)->close());
    REQUIRE_OK((*chain)->close());
    auto plain = lib->open(dir / "out.vdi", {});
    REQUIRE_OK(plain);
    CHECK(test::first_difference(**plain, model) == "equal");

    // A safe rebase onto another filtered base reads the new parent through
    // the chain's stack and keeps what the top shows.
    {
        CreateOptions co = test::create_opts("vdi", size);
        co.filters = rot(2);
        auto other = lib->create_image(dir / "other.vdi", co);
        REQUIRE_OK(other);
        const auto c = test::pattern(size, 5);
        REQUIRE_OK((*other)->write(0, c.data(), c.size()));
        REQUIRE_OK((*other)->close());
        OpenOptions wo = oo;
        wo.writable = true;
        auto top = lib->open(dir / "top.vmdk", wo);
        REQUIRE_OK(top);
        REQUIRE_OK((*top)->rebase("other.vdi", {}));
        REQUIRE_OK((*top)->close());
        auto again = lib->open(dir / "top.vmdk", oo);
        REQUIRE_OK(again);
        CHECK(test::first_difference(**again, model) == "equal");
        CHECK(take_location(**again, 0) == dir / "other.vdi");
    }

    // Through the wrong stack (another rotation) no format recognises the
    // top: named, it is refused; probed, its name promises a VMDK, so it is
    // refused too (docs/design/probing.md); named raw, it reads raw bytes.
    OpenOptions wrong;
    wrong.filters = rot(3);
    wrong.format = "vmdk";
    CHECK_FALSE(lib->open(dir / "top.vmdk", wrong).is_ok());
    wrong.format.clear();
    auto probed = lib->open(dir / "top.vmdk", wrong);
    REQUIRE_FALSE(probed.is_ok());
    CHECK_THAT(probed.status().message(), Catch::Contains("named like a vmdk image"));
    wrong.format = "raw";
    auto guessed = lib->open(dir / "top.vmdk", wrong);
    REQUIRE_OK(guessed);
    CHECK((*guessed)->image_count() == 1);
    CHECK(test::first_difference(**guessed, model) != "equal");
}

TEST_CASE("bad filter stacks are refused by name and leave no file behind", "[filter]") {
    test::TempDir dir;
    auto lib = test::make_library({std::string(VDKIT_TEST_PROBE_PLUGIN_DIR) + "/filters"});
    auto create = [&](std::vector<FilterSpec> stack) {
        CreateOptions co = test::create_opts("vdi", 1 << 20);
        co.filters = std::move(stack);
        return lib->create_image(dir / "x.vdi", co);
    };
    auto unknown = create({FilterSpec{"gzp", {}}});
    CHECK(unknown.status().code() == VDKIT_E_NOT_FOUND);
    CHECK_THAT(unknown.status().message(), Catch::Contains("gzp"));
    auto format = create({FilterSpec{"vdi", {}}});
    CHECK(format.status().code() == VDKIT_E_NOT_FOUND);
    auto range = create(rot(9));
    CHECK(range.status().code() == VDKIT_E_CONFIG);
    CHECK_THAT(range.status().message(), Catch::Contains("filter 'rot'") && Catch::Contains("bits"));
    auto key = create({FilterSpec{"rot", {{"bitz", "1"}}}});
    CHECK_THAT(key.status().message(), Catch::Contains("did you mean 'bits'"));
    CHECK_FALSE(std::filesystem::exists(dir / "x.vdi"));
    // xor handles reads and writes only: a format's create must grow the
    // file, which xor refuses rather than pass through.
    auto partial = create({FilterSpec{"xor", {}}});
    CHECK(partial.status().code() == VDKIT_E_NOT_SUPPORTED);
    CHECK_THAT(partial.status().message(), Catch::Contains("refused rather than passed through"));
    CHECK_FALSE(std::filesystem::exists(dir / "x.vdi"));

    CHECK(lib->check_filters(rot(4), true).is_ok());
    CHECK(lib->check_filters({FilterSpec{"rot", {{"bits", "0"}}}}, false).code() == VDKIT_E_CONFIG);
}

TEST_CASE("C API: open and create through a filter stack", "[filter][c-api]") {
    test::TempDir dir;
    vdkit_error err;
    vdkit_library *lib = test::open_c_library(err, true);
    const char *stack[] = {"rot:bits=6", nullptr};
    const std::string path = dir / "c.vdi";
    vdkit_disk *disk = nullptr;
    REQUIRE(vdkit_disk_create_filtered(lib, path.c_str(), "vdi", 1 << 20, 0, nullptr, nullptr, stack, &disk, &err) ==
            VDKIT_OK);
    const auto data = test::pattern(4096, 9);
    REQUIRE(vdkit_disk_write(disk, 4096, data.data(), data.size(), &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    CHECK(vdkit_disk_open(lib, path.c_str(), "vdi", 0, nullptr, &disk, &err) != VDKIT_OK);
    REQUIRE(vdkit_disk_open_filtered(lib, path.c_str(), nullptr, 0, nullptr, stack, &disk, &err) == VDKIT_OK);
    std::vector<unsigned char> back(4096);
    REQUIRE(vdkit_disk_read(disk, 4096, back.data(), back.size(), &err) == VDKIT_OK);
    CHECK(back == data);
    REQUIRE(vdkit_disk_close(disk, &err) == VDKIT_OK);
    const char *bad[] = {"rot:bits", nullptr};
    CHECK(vdkit_disk_open_filtered(lib, path.c_str(), nullptr, 0, nullptr, bad, &disk, &err) == VDKIT_E_CONFIG);
    vdkit_library_close(lib);
}

TEST_CASE("a device extent is read as it is, not through the image's filters", "[filter][vmdk]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const auto device = test::pattern(4 << 20, 21);
    std::ofstream(dir / "dev.img", std::ios::binary)
        .write(reinterpret_cast<const char *>(device.data()), static_cast<std::streamsize>(device.size()));
    // The descriptor is stored through the filter; the device it maps is not.
    std::string text = "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
                       "createType=\"fullDevice\"\nRW 8192 FLAT \"dev.img\" 0\n";
    for (auto &c : text) {
        const auto b = static_cast<unsigned char>(c);
        c = static_cast<char>(static_cast<unsigned char>((b << 5) | (b >> 3)));
    }
    std::ofstream(dir / "full.vmdk", std::ios::binary).write(text.data(), static_cast<std::streamsize>(text.size()));
    OpenOptions oo;
    oo.format = "vmdk";
    oo.filters = rot(5);
    oo.allow_unsafe_paths = true;
    auto disk = lib->open(dir / "full.vmdk", oo);
    REQUIRE_OK(disk);
    CHECK(test::first_difference(**disk, device) == "equal");
}
