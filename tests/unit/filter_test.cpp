// Filter safety: operations a filter does not declare are refused, never
// silently passed to the layer below.
#include "host/host.hpp"
#include "io/plugin_stores.hpp"
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

    auto lower = (*host)->open_store(dir / "f", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {});
    REQUIRE_OK(lower);
    auto filtered = open_filter_store(**host, xor_filter, std::move(*lower), VDKIT_OPEN_WRITE, {});
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
    auto raw = (*host)->open_store(dir / "f", VDKIT_OPEN_NOLOCK, {});
    REQUIRE_OK(raw);
    char stored[5];
    REQUIRE_OK((*raw)->pread(stored, 5, 0));
    CHECK(stored[0] == ('h' ^ 0x5a));
}
