#include "test_support.hpp"
#include "util/util.hpp"
#include "vdkit/text.hpp"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>

using namespace vdkit;

TEST_CASE("sizes parse with binary suffixes and reject garbage", "[util]") {
    CHECK(util::parse_size("4096") == 4096u);
    CHECK(util::parse_size("64k") == 65536u);
    CHECK(util::parse_size("2M") == 2u << 20);
    CHECK(util::parse_size("1G") == 1ull << 30);
    CHECK(util::parse_size("1.5G") == 3ull << 29);
    CHECK(util::parse_size("10GiB") == 10ull << 30);
    CHECK(util::parse_size("3T") == 3ull << 40);
    CHECK_FALSE(util::parse_size(""));
    CHECK_FALSE(util::parse_size("ten"));
    CHECK_FALSE(util::parse_size("-1"));
    CHECK_FALSE(util::parse_size("12Q"));
    CHECK_FALSE(util::parse_size("99999999999999999999"));
    CHECK_FALSE(util::parse_size("16E"));  // 2^64 overflows
    CHECK_FALSE(util::parse_size("1.3k")); // not a whole number of bytes
}

TEST_CASE("checked arithmetic catches overflow", "[util]") {
    CHECK(util::checked_add(1, 2) == 3u);
    CHECK_FALSE(util::checked_add(UINT64_MAX, 1));
    CHECK_FALSE(util::checked_mul(1ull << 40, 1ull << 30));
    CHECK(util::range_within(10, 5, 15));
    CHECK_FALSE(util::range_within(10, 6, 15));
    CHECK_FALSE(util::range_within(UINT64_MAX, 2, UINT64_MAX));
}

TEST_CASE("did-you-mean suggests close names only", "[util]") {
    std::vector<std::string> keys{"preallocation", "block-size", "direct"};
    CHECK(util::closest_match("prealocation", keys) == "preallocation");
    CHECK(util::closest_match("blok-size", keys) == "block-size");
    CHECK_FALSE(util::closest_match("compression-level", keys));
}

TEST_CASE("UUIDs are version 4 and round-trip through text", "[util]") {
    uint8_t a[16], b[16];
    util::generate_uuid(a);
    util::generate_uuid(b);
    CHECK(std::memcmp(a, b, 16) != 0);
    CHECK((a[6] >> 4) == 4);
    CHECK((a[8] & 0xc0) == 0x80);
    auto text = util::uuid_to_string(a);
    auto back = util::parse_uuid(text);
    REQUIRE(back);
    CHECK(std::memcmp(back->data(), a, 16) == 0);
    CHECK_FALSE(util::parse_uuid("not-a-uuid"));
    // Canonical RFC 4122 text: 8-4-4-4-12 lower-case hex digits.
    REQUIRE(text.size() == 36);
    for (size_t i = 0; i < text.size(); ++i) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            CHECK(text[i] == '-');
        else
            CHECK(((text[i] >= '0' && text[i] <= '9') || (text[i] >= 'a' && text[i] <= 'f')));
    }
    const uint8_t fixed[16] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef,
                               0x80, 0x01, 0x02, 0x03, 0x04, 0x05, 0xa6, 0xff};
    CHECK(util::uuid_to_string(fixed) == "12345678-9abc-4def-8001-02030405a6ff");
    auto upper = util::parse_uuid("12345678-9ABC-4DEF-8001-02030405A6FF");
    REQUIRE(upper);
    CHECK(std::memcmp(upper->data(), fixed, 16) == 0);
    CHECK_FALSE(util::parse_uuid("12345678-9abc-4def-8001-02030405a6f"));   // 31 digits
    CHECK_FALSE(util::parse_uuid("12345678-9abc-4def-8001-02030405a6fff")); // 33 digits
    // Many in a row: all distinct, all version 4 / RFC 4122 variant.
    std::set<std::string> seen;
    for (int i = 0; i < 2000; ++i) {
        uint8_t u[16];
        util::generate_uuid(u);
        CHECK((u[6] >> 4) == 4);
        CHECK((u[8] & 0xc0) == 0x80);
        seen.insert(util::uuid_to_string(u));
    }
    CHECK(seen.size() == 2000);
}

TEST_CASE("option lists split on commas with ,, as an escape", "[util]") {
    auto kv = util::parse_key_values("a=1,b=x,,y,flag");
    REQUIRE(kv);
    REQUIRE(kv->size() == 3);
    CHECK((*kv)[0] == std::pair<std::string, std::string>{"a", "1"});
    CHECK((*kv)[1] == std::pair<std::string, std::string>{"b", "x,y"});
    CHECK((*kv)[2] == std::pair<std::string, std::string>{"flag", "on"});
    CHECK_FALSE(util::parse_key_values("=3"));
}

TEST_CASE("zero detection sees a single set byte anywhere", "[util]") {
    std::vector<unsigned char> buf(4099, 0);
    CHECK(util::is_zero(buf.data(), buf.size()));
    for (size_t pos : {size_t(0), size_t(7), size_t(64), size_t(4098)}) {
        buf[pos] = 1;
        CHECK_FALSE(util::is_zero(buf.data(), buf.size()));
        buf[pos] = 0;
    }
    CHECK(util::is_zero(buf.data() + 1, buf.size() - 1)); // unaligned start
}

TEST_CASE("path lists split on colons and drop empty items", "[util]") {
    CHECK(util::split_path_list("a:b::/c/d:") == std::vector<std::string>{"a", "b", "/c/d"});
    CHECK(util::split_path_list("").empty());
    CHECK(util::split_path_list(":::").empty());
    CHECK(util::split_path_list("one") == std::vector<std::string>{"one"});
}

// One way of writing offsets in messages (vdkit/text.hpp), used by the core,
// the CLI and the plugins: checked against snprintf's "0x%" PRIx64 over
// edge values and every bit position.
TEST_CASE("hex writes offsets as 0x and lower-case digits, as printf would", "[util][sdk]") {
    CHECK(sdk::hex(0) == "0x0");
    CHECK(sdk::hex(0x1a2b) == "0x1a2b");
    CHECK(sdk::hex(UINT64_MAX) == "0xffffffffffffffff");
    for (int bit = 0; bit < 64; ++bit)
        for (uint64_t v : {uint64_t{1} << bit, (uint64_t{1} << bit) - 1, (uint64_t{1} << bit) | 0xabc}) {
            char want[32];
            std::snprintf(want, sizeof want, "0x%" PRIx64, v);
            INFO("bit " << bit);
            CHECK(sdk::hex(v) == want);
            CHECK(util::hex(v) == want); // the core's name for the same helper
        }
}
