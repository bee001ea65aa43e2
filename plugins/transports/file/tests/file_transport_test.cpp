// The file transport through the host's store interface.
#include "host/host.hpp"
#include "io/stores.hpp"
#include "test_support.hpp"

#include <algorithm>
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

TEST_CASE("one writer at a time, readers share", "[file][lock]") {
    test::TempDir dir;
    auto host = make_host();
    auto w = host->stores().open_store(dir / "f", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {});
    REQUIRE_OK(w);
    auto w2 = host->stores().open_store(dir / "f", VDKIT_OPEN_WRITE, {});
    REQUIRE_FALSE(w2.is_ok());
    CHECK(w2.status().code() == VDKIT_E_BUSY);
    CHECK_THAT(w2.status().message(), Catch::Contains("in use"));
    auto r = host->stores().open_store(dir / "f", 0, {});
    CHECK(r.status().code() == VDKIT_E_BUSY); // not while a writer holds it
    auto nolock = host->stores().open_store(dir / "f", VDKIT_OPEN_NOLOCK, {});
    REQUIRE_OK(nolock);
    w = Status(VDKIT_E_INTERNAL, "closed"); // drop the writer
    auto r1 = host->stores().open_store(dir / "f", 0, {});
    auto r2 = host->stores().open_store(dir / "f", 0, {});
    REQUIRE_OK(r1);
    REQUIRE_OK(r2);
    CHECK(host->stores().open_store(dir / "f", VDKIT_OPEN_WRITE, {}).status().code() == VDKIT_E_BUSY);
}

// Another user of the file as QEMU would be one: its own open file
// description holding shared read locks on the given bytes.
struct ForeignHolder {
    ForeignHolder(const std::string &p, std::initializer_list<off_t> bytes, short type = F_RDLCK) {
        fd = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
        REQUIRE(fd >= 0);
        for (off_t b : bytes) {
            struct flock l {};
            l.l_type = type;
            l.l_whence = SEEK_SET;
            l.l_start = b;
            l.l_len = b < 0 ? 0 : 1;
            if (b < 0) l.l_start = 0; // -1: the whole file
            REQUIRE(fcntl(fd, F_OFD_SETLK, &l) == 0);
        }
    }
    ~ForeignHolder() { ::close(fd); }
    int fd = -1;
};

// Whether another open file description holds a lock on byte b.
bool byte_taken(const std::string &p, off_t b) {
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    struct flock l {};
    l.l_type = F_WRLCK;
    l.l_whence = SEEK_SET;
    l.l_start = b;
    l.l_len = 1;
    REQUIRE(fcntl(fd, F_OFD_GETLK, &l) == 0);
    ::close(fd);
    return l.l_type != F_UNLCK;
}

TEST_CASE("the lock bytes are QEMU's: 100+i held, 200+i not shared", "[file][lock]") {
    test::TempDir dir;
    auto host = make_host();
    const auto f = dir / "f";
    auto created = host->stores().open_store(f, VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {});
    REQUIRE_OK(created);
    // A writer: consistent read, write, resize held; write, resize not shared.
    for (off_t b : {100, 101, 103, 201, 203})
        CHECK(byte_taken(f, b));
    for (off_t b : {102, 104, 200, 202, 204})
        CHECK_FALSE(byte_taken(f, b));
    created = Status(VDKIT_E_INTERNAL, "closed");
    for (off_t b : {100, 101, 103, 201, 203})
        CHECK_FALSE(byte_taken(f, b));
    // A reader: consistent read held; write, resize not shared.
    auto r = host->stores().open_store(f, 0, {});
    REQUIRE_OK(r);
    for (off_t b : {100, 201, 203})
        CHECK(byte_taken(f, b));
    for (off_t b : {101, 102, 103, 200, 202})
        CHECK_FALSE(byte_taken(f, b));
    r = Status(VDKIT_E_INTERNAL, "closed");
    // Without a lock: nothing.
    auto u = host->stores().open_store(f, VDKIT_OPEN_NOLOCK, {});
    REQUIRE_OK(u);
    for (off_t b = 100; b < 205; ++b)
        CHECK_FALSE(byte_taken(f, b));
}

TEST_CASE("QEMU's users keep vdkit's out as QEMU's rules say", "[file][lock]") {
    test::TempDir dir;
    auto host = make_host();
    const auto f = dir / "f";
    REQUIRE_OK(host->stores().open_store(f, VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {}));
    SECTION("a QEMU writer (100, 101, 103, 201, 203)") {
        ForeignHolder qemu(f, {100, 101, 103, 201, 203});
        auto r = host->stores().open_store(f, 0, {});
        REQUIRE(r.status().code() == VDKIT_E_BUSY);
        CHECK_THAT(r.status().message(), Catch::Contains(f + " is in use for writing by another process") &&
                                             Catch::Contains("byte 101") && Catch::Contains("-U/--force-share"));
        auto w = host->stores().open_store(f, VDKIT_OPEN_WRITE, {});
        REQUIRE(w.status().code() == VDKIT_E_BUSY);
        CHECK_THAT(w.status().message(), Catch::Contains("close it there first"));
        REQUIRE_OK(host->stores().open_store(f, VDKIT_OPEN_NOLOCK, {}));
    }
    SECTION("a QEMU reader (100, 201, 203)") {
        ForeignHolder qemu(f, {100, 201, 203});
        REQUIRE_OK(host->stores().open_store(f, 0, {}));
        auto w = host->stores().open_store(f, VDKIT_OPEN_WRITE, {});
        REQUIRE(w.status().code() == VDKIT_E_BUSY);
        CHECK_THAT(w.status().message(),
                   Catch::Contains("in use by another process that does not let others write it") &&
                       Catch::Contains("byte 201"));
    }
    SECTION("a user that forbids resizing only (203)") {
        ForeignHolder other(f, {203});
        REQUIRE_OK(host->stores().open_store(f, 0, {}));
        auto w = host->stores().open_store(f, VDKIT_OPEN_WRITE, {});
        REQUIRE(w.status().code() == VDKIT_E_BUSY);
        CHECK_THAT(w.status().message(), Catch::Contains("resize") && Catch::Contains("byte 203"));
    }
    SECTION("a write lock over the whole file (another program)") {
        ForeignHolder other(f, {-1}, F_WRLCK);
        auto r = host->stores().open_store(f, 0, {});
        REQUIRE(r.status().code() == VDKIT_E_BUSY);
        CHECK_THAT(r.status().message(), Catch::Contains("write lock covers byte"));
    }
    SECTION("a failed open keeps no byte") {
        ForeignHolder qemu(f, {100, 201, 203});
        REQUIRE(host->stores().open_store(f, VDKIT_OPEN_WRITE, {}).status().code() == VDKIT_E_BUSY);
        for (off_t b : {101, 103})
            CHECK_FALSE(byte_taken(f, b)); // the writer's own bytes went with it
    }
}

TEST_CASE("force-share opens every file of the chain unlocked, and only for reading", "[file][lock]") {
    test::TempDir dir;
    auto lib = test::make_library();
    CreateOptions co;
    co.format = "vmdk";
    co.size = 5ull << 30;
    co.options = {{"subformat", "twoGbMaxExtentSparse"}};
    {
        auto base = lib->create_image(dir / "base.vmdk", co);
        REQUIRE_OK(base);
        REQUIRE_OK((*base)->close());
    }
    CreateOptions child = co;
    child.options.clear();
    child.size = 0;
    child.parent = dir / "base.vmdk";
    {
        auto c = lib->create_image(dir / "top.vmdk", child);
        REQUIRE_OK(c);
        REQUIRE_OK((*c)->close());
    }
    std::vector<std::string> files;
    for (const auto &e : std::filesystem::directory_iterator(dir.path()))
        files.push_back(e.path().string());
    REQUIRE(files.size() >= 4); // a descriptor, extents and the top
    OpenOptions o;
    o.force_share = true;
    {
        auto d = lib->open(dir / "top.vmdk", o);
        REQUIRE_OK(d);
        for (const auto &f : files)
            CHECK_FALSE(byte_taken(f, 100));
    }
    {
        auto d = lib->open(dir / "top.vmdk", OpenOptions{});
        REQUIRE_OK(d);
        for (const auto &f : files) {
            INFO(f);
            CHECK(byte_taken(f, 100)); // every file of the chain, extents too
        }
    }
    o.writable = true;
    auto w = lib->open(dir / "top.vmdk", o);
    REQUIRE_FALSE(w.is_ok());
    CHECK(w.status().code() == VDKIT_E_INVALID_ARGUMENT);
    CHECK_THAT(w.status().message(), Catch::Contains("force-share"));
}

TEST_CASE("extents follow holes, discard punches them", "[file]") {
    test::TempDir dir;
    auto host = make_host();
    auto s = host->stores().open_store(dir / "f", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {});
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
    auto missing = host->stores().open_store(dir / "nope", 0, {});
    REQUIRE_FALSE(missing.is_ok());
    CHECK(missing.status().code() == VDKIT_E_NOT_FOUND);
    CHECK_THAT(missing.status().message(), Catch::Contains("nope"));
    auto s = host->stores().open_store(dir / "f", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {});
    REQUIRE_OK(s);
    char b[8];
    Status past = (*s)->pread(b, 8, 4096);
    CHECK(past.code() == VDKIT_E_OUT_OF_RANGE);
    CHECK_THAT(past.message(), Catch::Contains("0x1000") && Catch::Contains("/f"));
    auto exists = host->stores().open_store(dir / "f", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE | VDKIT_OPEN_NOLOCK, {});
    CHECK(exists.status().code() == VDKIT_E_EXISTS);
}

TEST_CASE("direct I/O round-trips unaligned requests", "[file][direct]") {
    test::TempDir dir;
    // O_DIRECT is a property of the file system under the temp directory.
    int probe = ::open((dir / "probe").c_str(), O_CREAT | O_RDWR | O_DIRECT, 0644);
    if (probe < 0) {
        VDKIT_SKIP("the file system of " << dir.path() << " does not support O_DIRECT");
    }
    ::close(probe);
    auto host = make_host();
    auto s = host->stores().open_store(dir / "f", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {{"direct", "on"}});
    REQUIRE_OK(s);
    auto data = test::pattern(10000, 4);
    REQUIRE_OK((*s)->pwrite(data.data(), data.size(), 123));
    auto size = (*s)->size();
    REQUIRE_OK(size);
    CHECK(*size == 10123); // the bounce buffer must not grow the file
    std::vector<unsigned char> back(data.size());
    REQUIRE_OK((*s)->pread(back.data(), back.size(), 123));
    CHECK(back == data);
    auto typo = host->stores().open_store(dir / "g", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {{"drect", "on"}});
    CHECK_THAT(typo.status().message(), Catch::Contains("did you mean 'direct'?"));
}

TEST_CASE("write-behind keeps every write and validates its size", "[file]") {
    test::TempDir dir;
    auto host = make_host();
    // A kick after every 64 KiB: writes from several threads cross the
    // threshold at once; what is read back must be exactly what was written.
    auto s = host->stores().open_store(dir / "f", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {{"write_behind", "64K"}});
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
    for (auto &w : writers)
        w.join();
    REQUIRE(ok);
    REQUIRE_OK(st.flush());
    for (uint64_t i = 0; i < kPieces; ++i) {
        std::vector<unsigned char> back(kPiece);
        REQUIRE_OK(st.pread(back.data(), back.size(), i * kPiece));
        CHECK(back == test::pattern(kPiece, static_cast<unsigned>(i)));
    }
    auto off = host->stores().open_store(dir / "g", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {{"write_behind", "0"}});
    REQUIRE_OK(off);
    auto bad = host->stores().open_store(dir / "h", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {{"write_behind", "lots"}});
    REQUIRE_FALSE(bad.is_ok());
    CHECK(bad.status().code() == VDKIT_E_CONFIG);
    CHECK_THAT(bad.status().message(), Catch::Contains("write_behind"));
}

TEST_CASE("sparse appends leave long zero runs past the end as holes, never zeros inside the file", "[file]") {
    test::TempDir dir;
    auto host = make_host();
    constexpr uint64_t kK = 1024, kAt = 1 << 20;
    // [64K data][256K zeros][4K data][8K zeros][4K data][192K zeros]: the
    // 256K and 192K runs may be skipped, the 8K one (under 64K) not.
    std::vector<unsigned char> buf(528 * kK, 0);
    auto put = [&](uint64_t at, uint64_t n, unsigned seed) {
        auto d = test::pattern(n, seed);
        std::copy(d.begin(), d.end(), buf.begin() + static_cast<std::ptrdiff_t>(at));
    };
    put(0, 64 * kK, 1);
    put(320 * kK, 4 * kK, 2);
    put(332 * kK, 4 * kK, 3);
    uint64_t allocated[2] = {0, 0};
    for (int sparse = 0; sparse < 2; ++sparse) {
        INFO("sparse " << (sparse ? "64K (default)" : "0"));
        const std::string path = dir / ("f" + std::to_string(sparse));
        auto s = sparse ? host->stores().open_store(path, VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {})
                        : host->stores().open_store(path, VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {{"sparse", "0"}});
        REQUIRE_OK(s);
        REQUIRE_OK((*s)->pwrite(buf.data(), buf.size(), kAt));
        REQUIRE_OK((*s)->flush());
        auto size = (*s)->size();
        REQUIRE_OK(size);
        CHECK(*size == kAt + buf.size()); // the zero tail still grows the file
        std::vector<unsigned char> back(buf.size());
        REQUIRE_OK((*s)->pread(back.data(), back.size(), kAt));
        CHECK(back == buf);
        auto used = (*s)->allocated_size();
        REQUIRE_OK(used);
        allocated[sparse] = *used;
    }
    CHECK(allocated[0] >= buf.size());
    CHECK(allocated[1] <= 96 * kK); // 64K + 4K + 8K + 4K of data and short zeros, the last page, file system slack
    CHECK(allocated[1] >= 80 * kK);

    // Zeros written inside the file replace what was there.
    auto s = host->stores().open_store(dir / "g", VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {});
    REQUIRE_OK(s);
    const auto old = test::pattern(512 * kK, 9);
    REQUIRE_OK((*s)->pwrite(old.data(), old.size(), 0));
    const std::vector<unsigned char> zeros(512 * kK, 0);
    REQUIRE_OK((*s)->pwrite(zeros.data(), zeros.size(), 0));
    std::vector<unsigned char> back(zeros.size());
    REQUIRE_OK((*s)->pread(back.data(), back.size(), 0));
    CHECK(back == zeros);

    // Appends from several threads, each a block whose head is data and
    // whose tail is zeros, land in any order; every block reads back whole.
    constexpr uint64_t kBlock = 256 * kK, kBlocks = 32;
    std::vector<std::thread> writers;
    std::atomic<bool> ok{true};
    for (unsigned t = 0; t < 4; ++t)
        writers.emplace_back([&, t] {
            for (uint64_t i = t; i < kBlocks; i += 4) {
                std::vector<unsigned char> block(kBlock, 0);
                auto d = test::pattern(kBlock / 4, static_cast<unsigned>(i));
                std::copy(d.begin(), d.end(), block.begin());
                if (!(*s)->pwrite(block.data(), block.size(), 512 * kK + (kBlocks - 1 - i) * kBlock)) ok = false;
            }
        });
    for (auto &w : writers)
        w.join();
    REQUIRE(ok);
    for (uint64_t i = 0; i < kBlocks; ++i) {
        std::vector<unsigned char> block(kBlock), want(kBlock, 0);
        auto d = test::pattern(kBlock / 4, static_cast<unsigned>(i));
        std::copy(d.begin(), d.end(), want.begin());
        REQUIRE_OK((*s)->pread(block.data(), block.size(), 512 * kK + (kBlocks - 1 - i) * kBlock));
        CHECK(block == want);
    }
}

TEST_CASE("a move to another file system copies data and holes, keeps the mode, then removes the source", "[file]") {
    test::TempDir dir;
    const std::string elsewhere = test::other_file_system(dir);
    if (elsewhere.empty()) {
        VDKIT_SKIP("/dev/shm is missing or on the test directory's file system; no EXDEV move to test");
    }
    test::TempDir other(elsewhere);
    auto host = make_host();
    const std::string from = dir / "f", to = other / "moved";
    const auto head = test::pattern(64 << 10, 1), middle = test::pattern(4096, 2);
    {
        auto s = host->stores().open_store(from, VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, {});
        REQUIRE_OK(s);
        REQUIRE_OK((*s)->truncate(3 << 20));
        REQUIRE_OK((*s)->pwrite(head.data(), head.size(), 0));
        REQUIRE_OK((*s)->pwrite(middle.data(), middle.size(), 2 << 20));
    }
    REQUIRE(::chmod(from.c_str(), 0640) == 0);
    REQUIRE_OK(host->stores().rename_location(from, to));
    struct stat st {};
    CHECK(::stat(from.c_str(), &st) != 0);
    REQUIRE(::stat(to.c_str(), &st) == 0);
    CHECK(st.st_size == (3 << 20));
    CHECK((st.st_mode & 07777) == 0640);
    // The holes were not filled: no more is allocated than the two written
    // pieces take in the file system's blocks (st_blksize), with a block of
    // slack each; far less than the 3 MiB a filled copy takes.
    const uint64_t blk = std::max<uint64_t>(static_cast<uint64_t>(st.st_blksize), 512);
    const auto blocks_of = [&](uint64_t n) { return (n + blk - 1) / blk * blk + blk; };
    const uint64_t bound = blocks_of(head.size()) + blocks_of(middle.size());
    INFO("allocated " << st.st_blocks * 512 << " bytes, st_blksize " << blk);
    REQUIRE(bound < (3u << 20));
    CHECK(static_cast<uint64_t>(st.st_blocks) * 512 <= bound);
    std::vector<unsigned char> want(3 << 20, 0), back(3 << 20);
    std::copy(head.begin(), head.end(), want.begin());
    std::copy(middle.begin(), middle.end(), want.begin() + (2 << 20));
    auto s = host->stores().open_store(to, 0, {});
    REQUIRE_OK(s);
    REQUIRE_OK((*s)->pread(back.data(), back.size(), 0));
    CHECK(back == want);
    CHECK(std::filesystem::directory_iterator(other.path())->path().filename() == "moved"); // no hidden leftover
    // Never onto an existing file: both stay as they were.
    const std::string third = dir / "g";
    std::ofstream(third) << "keep";
    CHECK(host->stores().rename_location(to, third).code() == VDKIT_E_EXISTS);
    CHECK(std::filesystem::file_size(to) == (3u << 20));
    CHECK(std::filesystem::file_size(third) == 4);
}
