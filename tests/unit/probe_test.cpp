#include "test_support.hpp"

#include <fstream>

using namespace vdkit;

TEST_CASE("a signature beats raw's fallback score", "[probe]") {
    test::TempDir dir;
    auto lib = test::make_library();
    REQUIRE_OK(lib->create_image(dir / "a.toys", test::create_opts("toysparse", 1 << 20)));
    auto name = lib->probe(dir / "a.toys");
    REQUIRE_OK(name);
    CHECK(*name == "toysparse");
}

TEST_CASE("an unrecognised file opens as raw read-only, never for writing", "[probe]") {
    test::TempDir dir;
    std::ofstream(dir / "blob") << std::string(4096, 'x');
    auto lib = test::make_library();
    {
        auto ro = lib->open(dir / "blob");
        REQUIRE_OK(ro);
        CHECK(*lib->probe(dir / "blob") == "raw");
    }
    OpenOptions w;
    w.writable = true;
    auto rw = lib->open(dir / "blob", w);
    REQUIRE_FALSE(rw.is_ok());
    CHECK(rw.status().code() == VDKIT_E_PERMISSION);
    CHECK_THAT(rw.status().message(), Catch::Contains("-f raw"));
    w.format = "raw";
    REQUIRE_OK(lib->open(dir / "blob", w)); // naming the format is enough
}

TEST_CASE("a probing tie is an error naming the candidates", "[probe]") {
    test::TempDir dir;
    auto lib = test::make_library({VDKIT_TEST_PROBE_PLUGIN_DIR});
    REQUIRE_OK(lib->create_image(dir / "a.toys", test::create_opts("toysparse", 1 << 20)));
    auto r = lib->open(dir / "a.toys");
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == VDKIT_E_AMBIGUOUS);
    CHECK_THAT(r.status().message(), Catch::Contains("greedy") && Catch::Contains("toysparse"));
    OpenOptions o;
    o.format = "toysparse";
    REQUIRE_OK(lib->open(dir / "a.toys", o));
}

TEST_CASE("an unknown format name gets a suggestion", "[probe]") {
    test::TempDir dir;
    auto lib = test::make_library();
    auto r = lib->create_image(dir / "x", test::create_opts("rwa", 4096));
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == VDKIT_E_NOT_FOUND);
    CHECK_THAT(r.status().message(), Catch::Contains("did you mean 'raw'?"));
}

TEST_CASE("with no plugins found, opening says where to look", "[probe][loader]") {
    test::TempDir dir;
    std::ofstream(dir / "disk.img") << "x";
    LibraryOptions o;
    o.search_environment = false;
    o.search_install_dir = false;
    o.log = [](LogLevel, std::string_view) {};
    auto lib = Library::create(o);
    REQUIRE_OK(lib);
    CHECK((*lib)->plugins().empty());
    auto r = (*lib)->open(dir / "disk.img");
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == VDKIT_E_NOT_FOUND);
    CHECK_THAT(r.status().message(), Catch::Contains("no transports are loaded") &&
                                         Catch::Contains("VDKIT_PLUGIN_PATH"));
}
