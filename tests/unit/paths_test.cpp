// Parent and extent paths named inside an image must not escape its directory.
#include "test_support.hpp"

#include <fstream>

using namespace vdkit;

namespace {
void set_hint(const std::string &image, const std::string &hint) {
    std::fstream f(image, std::ios::in | std::ios::out | std::ios::binary);
    unsigned char len[2] = {static_cast<unsigned char>(hint.size()), 0};
    f.seekp(80);
    f.write(reinterpret_cast<const char *>(len), 2);
    f.write(hint.data(), static_cast<std::streamsize>(hint.size()));
}
} // namespace

TEST_CASE("a parent hint leaving the image's directory is refused unless allowed", "[paths]") {
    test::TempDir dir;
    std::filesystem::create_directory(dir / "vm");
    auto lib = test::make_library();
    REQUIRE_OK(lib->create_image(dir / "outside.toys", test::create_opts("toysparse", 1 << 20)));
    REQUIRE_OK(lib->create_image(dir / "vm/inside.toys", test::create_opts("toysparse", 1 << 20)));
    CreateOptions co = test::create_opts("toysparse");
    co.parent = dir / "vm/inside.toys";
    REQUIRE_OK(lib->create_image(dir / "vm/child.toys", co));
    OpenOptions lenient;
    lenient.ignore_parent_mismatch = true;

    for (std::string hint : {std::string("../outside.toys"), dir / "outside.toys", std::string("sub/../../outside.toys"),
                             std::string("http://example.invalid/x.toys")}) {
        INFO(hint);
        set_hint(dir / "vm/child.toys", hint);
        auto r = lib->open(dir / "vm/child.toys", lenient);
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == VDKIT_E_PERMISSION);
        CHECK_THAT(r.status().message(), Catch::Contains("allow_unsafe_paths"));
    }
    set_hint(dir / "vm/child.toys", "../outside.toys");
    OpenOptions allowed = lenient;
    allowed.allow_unsafe_paths = true;
    REQUIRE_OK(lib->open(dir / "vm/child.toys", allowed));
}

TEST_CASE("a symlink inside the directory that leads out is refused", "[paths]") {
    test::TempDir dir;
    std::filesystem::create_directory(dir / "vm");
    auto lib = test::make_library();
    REQUIRE_OK(lib->create_image(dir / "outside.toys", test::create_opts("toysparse", 1 << 20)));
    std::filesystem::create_symlink(dir / "outside.toys", dir / "vm/link.toys");
    REQUIRE_OK(lib->create_image(dir / "vm/p.toys", test::create_opts("toysparse", 1 << 20)));
    CreateOptions co = test::create_opts("toysparse");
    co.parent = dir / "vm/p.toys";
    REQUIRE_OK(lib->create_image(dir / "vm/child.toys", co));
    set_hint(dir / "vm/child.toys", "link.toys");
    OpenOptions lenient;
    lenient.ignore_parent_mismatch = true;
    auto r = lib->open(dir / "vm/child.toys", lenient);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == VDKIT_E_PERMISSION);
    CHECK_THAT(r.status().message(), Catch::Contains("symbolic link"));
}

TEST_CASE("a diff in another directory than its parent needs the user's consent", "[paths]") {
    test::TempDir dir;
    std::filesystem::create_directory(dir / "a");
    std::filesystem::create_directory(dir / "b");
    auto lib = test::make_library();
    REQUIRE_OK(lib->create_image(dir / "a/base.toys", test::create_opts("toysparse", 1 << 20)));
    CreateOptions co = test::create_opts("toysparse");
    co.parent = dir / "a/base.toys";
    auto r = lib->create_image(dir / "b/child.toys", co);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == VDKIT_E_PERMISSION);
    CHECK_FALSE(std::filesystem::exists(dir / "b/child.toys")); // nothing half-made
    co.allow_unsafe_paths = true;
    REQUIRE_OK(lib->create_image(dir / "b/child.toys", co));
}
