// The file transport through the host's store interface.
#include "host/host.hpp"
#include "test_support.hpp"

#include <atomic>
#include <fcntl.h>
#include <thread>
#include <unistd.h>

using namespace vdkit;

namespace {
std::shared_ptr<Host> make_host() {
    auto h = Host::create(test::test_options());
    REQUIRE_OK(h);
    return *h;
}
} // namespace

TEST_CASE("one writer at a time; readers share", "[file][lock]") {
    test::TempDir dir;
    auto host = make_host();
    auto w = host->open_store(dir / "f", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {});
    REQUIRE_OK(w);
    auto w2 = host->open_store(dir / "f", VDKIT_OPEN_WRITE, {});
    REQUIRE_FALSE(w2.is_ok());
    CHECK(w2.status().code() == VDKIT_E_BUSY);
    CHECK_THAT(w2.status().message(), Catch::Contains("in use"));
    auto r = host->open_store(dir / "f", 0, {});
    CHECK(r.status().code() == VDKIT_E_BUSY); // not while a writer holds it
    auto nolock = host->open_store(dir / "f", VDKIT_OPEN_NOLOCK, {});
    REQUIRE_OK(nolock);
    w = Status(VDKIT_E_INTERNAL, "closed"); // drop the writer
    auto r1 = host->open_store(dir / "f", 0, {});
    auto r2 = host->open_store(dir / "f", 0, {});
    REQUIRE_OK(r1);
    REQUIRE_OK(r2);
    CHECK(host->open_store(dir / "f", VDKIT_OPEN_WRITE, {}).status().code() == VDKIT_E_BUSY);
}

TEST_CASE("extents follow holes; discard punches them", "[file]") {
    test::TempDir dir;
    auto host = make_host();
    auto s = host->open_store(dir / "f", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {});
    REQUIRE_OK(s);
    ByteStore &st = **s;
    REQUIRE_OK(st.truncate(8u << 20));
    auto data = test::pattern(1u << 20, 2);
    REQUIRE_OK(st.pwrite(data.data(), data.size(), 2u << 20));
    std::vector<Extent> ext;
    REQUIRE_OK(st.extents(0, 8u << 20, 64, ext));
    REQUIRE(ext.size() == 3);
    CHECK(ext[0].hole);
    CHECK(!ext[1].hole);
    CHECK(ext[1].offset == 2u << 20);
    CHECK(ext[1].length == 1u << 20);
    CHECK(ext[2].hole);
    REQUIRE_OK(st.discard(2u << 20, 1u << 20));
    ext.clear();
    REQUIRE_OK(st.extents(0, 8u << 20, 64, ext));
    REQUIRE(ext.size() == 1);
    CHECK(ext[0].hole);
    std::vector<unsigned char> back(4096, 1);
    REQUIRE_OK(st.pread(back.data(), back.size(), 2u << 20));
    CHECK(std::all_of(back.begin(), back.end(), [](unsigned char c) { return c == 0; }));
}

TEST_CASE("I/O errors name the file and offset", "[file]") {
    test::TempDir dir;
    auto host = make_host();
    auto missing = host->open_store(dir / "nope", 0, {});
    REQUIRE_FALSE(missing.is_ok());
    CHECK(missing.status().code() == VDKIT_E_NOT_FOUND);
    CHECK_THAT(missing.status().message(), Catch::Contains("nope"));
    auto s = host->open_store(dir / "f", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {});
    REQUIRE_OK(s);
    char b[8];
    Status past = (*s)->pread(b, 8, 4096);
    CHECK(past.code() == VDKIT_E_OUT_OF_RANGE);
    CHECK_THAT(past.message(), Catch::Contains("0x1000") && Catch::Contains("/f"));
    auto exists = host->open_store(dir / "f", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE | VDKIT_OPEN_NOLOCK, {});
    CHECK(exists.status().code() == VDKIT_E_EXISTS);
}

TEST_CASE("direct I/O round-trips unaligned requests", "[file][direct]") {
    test::TempDir dir;
    // O_DIRECT is a property of the file system under the temp directory.
    int probe = ::open((dir / "probe").c_str(), O_CREAT | O_RDWR | O_DIRECT, 0644);
    if (probe < 0) {
        WARN("skipped: the file system of " << dir.path() << " does not support O_DIRECT");
        return;
    }
    ::close(probe);
    auto host = make_host();
    auto s = host->open_store(dir / "f", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {{"direct", "on"}});
    REQUIRE_OK(s);
    auto data = test::pattern(10000, 4);
    REQUIRE_OK((*s)->pwrite(data.data(), data.size(), 123));
    auto size = (*s)->size();
    REQUIRE_OK(size);
    CHECK(*size == 10123); // the bounce buffer must not grow the file
    std::vector<unsigned char> back(data.size());
    REQUIRE_OK((*s)->pread(back.data(), back.size(), 123));
    CHECK(back == data);
    auto typo = host->open_store(dir / "g", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {{"drect", "on"}});
    CHECK_THAT(typo.status().message(), Catch::Contains("did you mean 'direct'?"));
}

TEST_CASE("write-behind keeps every write and validates its size", "[file]") {
    test::TempDir dir;
    auto host = make_host();
    // A kick after every 64 KiB: writes from several threads cross the
    // threshold at once; what is read back must be exactly what was written.
    auto s = host->open_store(dir / "f", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {{"write_behind", "64K"}});
    REQUIRE_OK(s);
    ByteStore &st = **s;
    constexpr uint64_t kPiece = 12345, kPieces = 64;
    std::vector<std::thread> writers;
    std::atomic<bool> ok{true};
    for (unsigned t = 0; t < 4; ++t)
        writers.emplace_back([&, t] {
            for (uint64_t i = t; i < kPieces; i += 4) {
                auto data = test::pattern(kPiece, static_cast<unsigned>(i));
                if (!st.pwrite(data.data(), data.size(), i * kPiece)) ok = false;
            }
        });
    for (auto &w : writers) w.join();
    REQUIRE(ok);
    REQUIRE_OK(st.flush());
    for (uint64_t i = 0; i < kPieces; ++i) {
        std::vector<unsigned char> back(kPiece);
        REQUIRE_OK(st.pread(back.data(), back.size(), i * kPiece));
        CHECK(back == test::pattern(kPiece, static_cast<unsigned>(i)));
    }
    auto off = host->open_store(dir / "g", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {{"write_behind", "0"}});
    REQUIRE_OK(off);
    auto bad = host->open_store(dir / "h", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {{"write_behind", "lots"}});
    REQUIRE_FALSE(bad.is_ok());
    CHECK(bad.status().code() == VDKIT_E_CONFIG);
    CHECK_THAT(bad.status().message(), Catch::Contains("write_behind"));
}
