#include "config/config_file.hpp"
#include "test_support.hpp"

#include <fstream>
#include <sys/stat.h>

using namespace vdkit;

TEST_CASE("the shipped vdkit.yaml parses and matches the built-in defaults", "[config]") {
    auto cfg = load_config_file(std::string(VDKIT_SOURCE_DIR) + "/config/vdkit.yaml");
    REQUIRE_OK(cfg);
    Config def = default_config();
    CHECK(cfg->allow_unsafe_paths == def.allow_unsafe_paths);
    CHECK(cfg->max_chain_depth == def.max_chain_depth);
    CHECK(cfg->log_level == def.log_level);
    CHECK(cfg->defaults.count("format/raw") == 1);
}

TEST_CASE("config errors name the file and line", "[config]") {
    auto r = parse_config_text("log_level: info\nmax_chain_dept: 4\n", "test.yaml");
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == VDKIT_E_CONFIG);
    CHECK_THAT(r.status().message(),
               Catch::Contains("test.yaml:2") && Catch::Contains("did you mean 'max_chain_depth'"));

    auto bad_level = parse_config_text("log_level: loud\n", "t.yaml");
    REQUIRE_FALSE(bad_level.is_ok());
    CHECK_THAT(bad_level.status().message(), Catch::Contains("t.yaml:1"));

    auto syntax = parse_config_text("plugin_paths: [a, b\n", "s.yaml");
    REQUIRE_FALSE(syntax.is_ok());
    CHECK_THAT(syntax.status().message(), Catch::StartsWith("s.yaml:"));
}

TEST_CASE("plugin defaults in the config are validated against the plugin's keys", "[config]") {
    test::TempDir dir;
    auto write = [&](const std::string &text) {
        std::ofstream(dir / "c.yaml") << text;
        auto o = test::test_options();
        o.config_file = dir / "c.yaml";
        return Library::create(o);
    };
    auto typo = write("defaults:\n  format:\n    raw:\n      preallocaton: full\n");
    REQUIRE_FALSE(typo.is_ok());
    CHECK_THAT(typo.status().message(), Catch::Contains("c.yaml:4") && Catch::Contains("did you mean 'preallocation'"));

    auto no_plugin = write("defaults:\n  format:\n    rwa: {}\n");
    REQUIRE_FALSE(no_plugin.is_ok());
    CHECK_THAT(no_plugin.status().message(), Catch::Contains("did you mean 'raw'"));

    auto good = write("defaults:\n  format:\n    raw:\n      preallocation: full\n");
    REQUIRE_OK(good);
    // The default applies to images created without the option.
    auto disk = (*good)->create_image(dir / "p.img", test::create_opts("raw", 1 << 20));
    REQUIRE_OK(disk);
    REQUIRE_OK((*disk)->close());
    CHECK(std::filesystem::file_size(dir / "p.img") == 1u << 20);
    struct stat st {};
    REQUIRE(::stat((dir / "p.img").c_str(), &st) == 0);
    CHECK(static_cast<uint64_t>(st.st_blocks) * 512 >= (1u << 20)); // preallocated, not sparse
}
