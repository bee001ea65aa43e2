#include "config/options.hpp"
#include "test_support.hpp"

using namespace vdkit;

namespace {
PluginInfo sample_plugin() {
    PluginInfo p;
    p.name = "sample";
    ConfigKey size;
    size.name = "grain-size";
    size.type = KeyType::size;
    size.default_value = "64k";
    size.min_value = 4096;
    size.max_value = 1 << 20;
    ConfigKey mode;
    mode.name = "mode";
    mode.type = KeyType::enumeration;
    mode.enum_values = {"fast", "safe"};
    mode.create_only = true;
    ConfigKey flag;
    flag.name = "verify";
    flag.type = KeyType::boolean;
    ConfigKey must;
    must.name = "password";
    must.type = KeyType::string_;
    must.mandatory = true;
    must.secret = true;
    p.keys = {size, mode, flag, must};
    return p;
}
} // namespace

TEST_CASE("options are normalised and defaults applied", "[options]") {
    auto r = resolve_options(sample_plugin(), {{"Mode", "SAFE"}, {"verify", "yes"}, {"password", "x"}},
                             OptionUse::create, "format 'sample'");
    REQUIRE_OK(r);
    CHECK(r->at("mode") == "safe");
    CHECK(r->at("verify") == "true");
    CHECK(r->at("grain-size") == "65536");
}

TEST_CASE("an unknown key is an error with a suggestion", "[options]") {
    auto r = resolve_options(sample_plugin(), {{"grain-sise", "4k"}, {"password", "x"}}, OptionUse::create,
                             "format 'sample'");
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == VDKIT_E_CONFIG);
    CHECK_THAT(r.status().message(),
               Catch::Contains("unknown option 'grain-sise'") && Catch::Contains("did you mean 'grain-size'?"));
}

TEST_CASE("types, ranges, enums and flags are enforced", "[options]") {
    auto p = sample_plugin();
    auto bad = [&](Options o, OptionUse use, const char *needle) {
        auto r = resolve_options(p, o, use, "format 'sample'");
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == VDKIT_E_CONFIG);
        CHECK_THAT(r.status().message(), Catch::Contains(needle));
    };
    bad({{"grain-size", "1k"}, {"password", "x"}}, OptionUse::create, "must be within");
    bad({{"grain-size", "lots"}, {"password", "x"}}, OptionUse::create, "expects a size");
    bad({{"verify", "maybe"}, {"password", "x"}}, OptionUse::create, "expects a boolean");
    bad({{"mode", "turbo"}, {"password", "x"}}, OptionUse::create, "must be one of: fast, safe");
    bad({{"mode", "fast"}, {"password", "x"}}, OptionUse::open, "only applies when creating");
    bad({}, OptionUse::create, "option 'password' is required");
}

TEST_CASE("secret values never appear in error messages", "[options]") {
    PluginInfo p = sample_plugin();
    p.keys[3].type = KeyType::integer; // make the secret key fail validation
    auto r = resolve_options(p, {{"password", "hunter2"}}, OptionUse::create, "format 'sample'");
    REQUIRE_FALSE(r.is_ok());
    CHECK_THAT(r.status().message(), !Catch::Contains("hunter2"));
}
