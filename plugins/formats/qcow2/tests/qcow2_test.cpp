// The qcow2 plugin on images built here byte by byte (qcow2.txt layout):
// the mapping kinds read and report the right block status, and every
// hostile header or table field (the CVE-2014-0143..0148 kinds) gives a
// clear error naming the field, at open or at the read that reaches it.
// Interop with qemu-img: plugins/formats/qcow2/tests/qcow2_interop_test.sh.
#include "test_support.hpp"

#include <filesystem>
#include <fstream>

using namespace vdkit;

namespace {
constexpr uint64_t kCs = 512;       // cluster_bits 9
constexpr uint64_t kSize = 1 << 20; // 1 MiB: 32 L1 entries of 64 clusters each
constexpr uint64_t kRefTable = 1 * kCs, kRefBlock = 2 * kCs, kL1 = 3 * kCs, kL2 = 4 * kCs, kData0 = 5 * kCs,
                   kData1 = 6 * kCs, kFileSize = 7 * kCs;

using Bytes = std::vector<unsigned char>;

void put_be(Bytes &b, uint64_t off, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i, v >>= 8)
        b[static_cast<size_t>(off) + static_cast<size_t>(i)] = static_cast<unsigned char>(v);
}

// A version 3 image: guest cluster 0 data (pattern 1), 1 a zero cluster,
// 2 unallocated, 3 data (pattern 2), the rest unallocated. With
// feature_name, a feature name table names incompatible bit 9.
Bytes build(bool feature_name = false) {
    Bytes b(kFileSize, 0);
    put_be(b, 0, 0x514649fb, 4);
    put_be(b, 4, 3, 4);
    put_be(b, 20, 9, 4);
    put_be(b, 24, kSize, 8);
    put_be(b, 36, 32, 4);
    put_be(b, 40, kL1, 8);
    put_be(b, 48, kRefTable, 8);
    put_be(b, 56, 1, 4);
    put_be(b, 96, 4, 4);
    put_be(b, 100, 112, 4);
    uint64_t ext = 112;
    if (feature_name) {
        put_be(b, ext, 0x6803f857, 4);
        put_be(b, ext + 4, 48, 4);
        b[ext + 8] = 0;
        b[ext + 9] = 9;
        const char name[] = "frobnicate";
        std::copy(name, name + sizeof name - 1, b.begin() + static_cast<long>(ext + 10));
        ext += 8 + 48;
    }
    put_be(b, ext, 0, 8); // end of extensions
    put_be(b, kRefTable, kRefBlock, 8);
    for (uint64_t c = 0; c < 7; ++c)
        put_be(b, kRefBlock + 2 * c, 1, 2);
    put_be(b, kL1, kL2 | (1ull << 63), 8);
    put_be(b, kL2 + 0, kData0 | (1ull << 63), 8);
    put_be(b, kL2 + 8, 1, 8); // zero flag
    put_be(b, kL2 + 24, kData1 | (1ull << 63), 8);
    const Bytes p1 = test::pattern(kCs, 1), p2 = test::pattern(kCs, 2);
    std::copy(p1.begin(), p1.end(), b.begin() + static_cast<long>(kData0));
    std::copy(p2.begin(), p2.end(), b.begin() + static_cast<long>(kData1));
    return b;
}

Bytes model() {
    Bytes m(kSize, 0);
    const Bytes p1 = test::pattern(kCs, 1), p2 = test::pattern(kCs, 2);
    std::copy(p1.begin(), p1.end(), m.begin());
    std::copy(p2.begin(), p2.end(), m.begin() + 3 * kCs);
    return m;
}

void write_file(const std::string &path, const Bytes &b) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char *>(b.data()), static_cast<std::streamsize>(b.size()));
    REQUIRE(f.good());
}
} // namespace

TEST_CASE("qcow2: data, zero and unallocated clusters read and report their state", "[qcow2]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string path = dir / "d.qcow2";
    write_file(path, build());
    auto d = test::open_disk(*lib, path);
    CHECK(d->size() == kSize);
    CHECK(test::first_difference(*d, model()) == "equal");
    struct Want {
        uint64_t offset, length;
        BlockState state;
    };
    // Adjacent unallocated clusters form one run; the last run reaches the end.
    for (const Want &w :
         {Want{0, kCs, BlockState::data}, Want{kCs, kCs, BlockState::zero}, Want{2 * kCs, kCs, BlockState::unallocated},
          Want{3 * kCs, kCs, BlockState::data}, Want{4 * kCs, kSize - 4 * kCs, BlockState::unallocated}}) {
        auto r = d->block_status(w.offset, kSize - w.offset);
        REQUIRE_OK(r);
        INFO("at " << w.offset);
        CHECK(r->state == w.state);
        CHECK(r->length == w.length);
    }
    // An odd range inside a data cluster.
    Bytes buf(100);
    REQUIRE_OK(d->read(3 * kCs + 7, buf.data(), buf.size()));
    CHECK(std::equal(buf.begin(), buf.end(), model().begin() + 3 * kCs + 7));
    auto compat = d->metadata_get("compat");
    REQUIRE_OK(compat);
    CHECK(*compat == "1.1");
}

TEST_CASE("qcow2: images vdkit cannot write yet open read-only only, naming why", "[qcow2]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string path = dir / "w.qcow2";
    struct Case {
        const char *what;
        uint64_t offset, value;
        uint32_t code;
        const char *says;
    };
    for (const Case &c : {Case{"corrupt bit", 72, 2, VDKIT_E_READ_ONLY, "marked corrupt"},
                          Case{"dirty bit", 72, 1, VDKIT_E_NOT_SUPPORTED, "the dirty bit is set"},
                          Case{"snapshots", 60, 1ull << 32, VDKIT_E_NOT_SUPPORTED, "internal snapshots"}}) {
        INFO(c.what);
        Bytes b = build();
        if (c.offset == 60) { // one snapshot, its (unread) table in the data cluster
            put_be(b, 60, 1, 4);
            put_be(b, 64, kData1, 8);
        } else {
            put_be(b, c.offset, c.value, 8);
        }
        write_file(path, b);
        OpenOptions o;
        o.writable = true;
        auto r = lib->open(path, o);
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == c.code);
        CHECK_THAT(r.status().message(), Catch::Contains(c.says));
        auto ro = test::open_disk(*lib, path);
        CHECK(test::first_difference(*ro, model()) == "equal");
    }
}

TEST_CASE("qcow2: writes into a hand-built image keep its clusters and refcounts", "[qcow2]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string path = dir / "rw.qcow2";
    write_file(path, build());
    Bytes m = model();
    {
        auto d = test::open_disk(*lib, path, true);
        // In place (data cluster 0), into the zero cluster (1), whole unallocated clusters (2, 10), across L1 entries.
        const Bytes a = test::pattern(700, 9), z(kCs, 0);
        for (uint64_t at :
             {uint64_t(100), uint64_t(kCs + 3), uint64_t(2 * kCs), uint64_t(10 * kCs), uint64_t(32 * 1024 - 200)}) {
            REQUIRE_OK(d->write(at, a.data(), a.size()));
            std::copy(a.begin(), a.end(), m.begin() + static_cast<long>(at));
        }
        // Zeros over data are written in place; a whole zero cluster over
        // an unallocated one is recorded as a zero cluster, not written.
        REQUIRE_OK(d->write(3 * kCs, z.data(), z.size()));
        std::fill(m.begin() + 3 * kCs, m.begin() + 4 * kCs, 0);
        REQUIRE_OK(d->write(20 * kCs, z.data(), z.size()));
        CHECK(test::first_difference(*d, m) == "equal");
        auto st = d->block_status(20 * kCs, kCs);
        REQUIRE_OK(st);
        CHECK(st->state == BlockState::zero);
    }
    auto d = test::open_disk(*lib, path);
    CHECK(test::first_difference(*d, m) == "equal");
    // Every cluster the tables reference is counted once (qcow2.txt §Host cluster management).
    const std::string f = test::file_bytes(path);
    auto be = [&](uint64_t off, int n) {
        uint64_t v = 0;
        for (int i = 0; i < n; ++i)
            v = v << 8 | static_cast<unsigned char>(f[static_cast<size_t>(off) + static_cast<size_t>(i)]);
        return v;
    };
    std::vector<uint64_t> refs(f.size() / kCs, 0);
    for (uint64_t c = 0; c < 7; ++c)
        refs[c] = 1; // header, refcount table and block, L1, L2, two data clusters
    for (uint64_t i = 0; i < 32; ++i) {
        const uint64_t l2 = be(kL1 + 8 * i, 8) & 0x00fffffffffffe00ull;
        if (!l2) continue;
        if (l2 != kL2) refs[l2 / kCs] += 1;
        for (uint64_t j = 0; j < 64; ++j) {
            const uint64_t e = be(l2 + 8 * j, 8) & 0x00fffffffffffe00ull;
            if (e && e != kData0 && e != kData1) refs[e / kCs] += 1;
        }
    }
    for (uint64_t c = 0; c < refs.size(); ++c) {
        const uint64_t rt = be(kRefTable + 8 * (c / 256), 8);
        const uint64_t count = rt ? be(rt + 2 * (c % 256), 2) : 0;
        INFO("cluster " << c);
        CHECK(count == refs[c]);
    }
}

TEST_CASE("qcow2: hostile header fields are refused at open, naming the field", "[qcow2][hostile]") {
    test::TempDir dir;
    auto lib = test::make_library();
    struct Case {
        const char *what;
        uint64_t offset;
        uint64_t value;
        int width;
        const char *says;
        uint32_t code;
        uint64_t offset2 = 0, value2 = 0; // a second 8-byte field, when offset2 is not 0
    };
    const Case cases[] = {
        {"version 4", 4, 4, 4, "unknown qcow2 version 4", VDKIT_E_CORRUPT},
        {"cluster_bits 30", 20, 30, 4, "cluster_bits 30 (header byte 20) is out of range", VDKIT_E_CORRUPT},
        {"cluster_bits 8", 20, 8, 4, "cluster_bits 8", VDKIT_E_CORRUPT},
        // CVE-2014-0143 kinds: table sizes that would overflow or allocate without bound.
        {"huge l1_size", 36, 0x7fffffff, 4, "makes an L1 table over 32 MiB", VDKIT_E_CORRUPT},
        {"l1_size too small", 36, 1, 4, "is too small for a disk of 1048576 bytes", VDKIT_E_CORRUPT},
        {"huge size", 24, 0xffffffffffffffffull, 8, "is too small for a disk of", VDKIT_E_CORRUPT},
        {"L1 past the end", 40, 1 << 20, 8, "the L1 table of 256 bytes at offset 1048576 extends past the end",
         VDKIT_E_CORRUPT},
        {"L1 unaligned", 40, kL1 + 8, 8, "the L1 table offset 1544 is not aligned", VDKIT_E_CORRUPT},
        {"L1 over the header", 40, 0, 8, "the L1 table starts at offset 0, over the header", VDKIT_E_CORRUPT},
        {"huge refcount table", 56, 0xffffffff, 4, "makes a refcount table over 8 MiB", VDKIT_E_CORRUPT},
        {"refcount table past the end", 56, 100, 4, "the refcount table of 51200 bytes", VDKIT_E_CORRUPT},
        {"huge nb_snapshots", 60, 0x7fffffff, 4, "nb_snapshots 2147483647 (header byte 60) exceeds 65536",
         VDKIT_E_CORRUPT},
        {"snapshots over the header", 60, 3, 4, "the snapshot table starts at offset 0, over the header",
         VDKIT_E_CORRUPT},
        {"refcount_order 7", 96, 7, 4, "refcount_order 7", VDKIT_E_CORRUPT},
        {"header_length 105", 100, 105, 4, "must be a multiple of 8", VDKIT_E_CORRUPT},
        {"header_length past the cluster", 100, 4096, 4, "header_length 4096", VDKIT_E_CORRUPT},
        // CVE-2014-0142/0147 kinds: an extension or backing name longer than its area.
        {"huge extension", 112, 0x12345678fffffff0ull, 8, "claims 4294967280 bytes, past the end of the header area",
         VDKIT_E_CORRUPT},
        {"backing name too long", 16, 5000, 4, "backing_file_size 5000 (header byte 16) exceeds 1023", VDKIT_E_CORRUPT,
         8, 200},
        {"backing name past the cluster", 8, 600, 8, "is not inside the header cluster", VDKIT_E_CORRUPT},
        // Features refused by name.
        {"AES encryption", 32, 1, 4,
         "encrypted (AES, crypt_method 1 (header byte 32)): encrypted qcow2 images are refused until the crypt filter "
         "can serve them",
         VDKIT_E_NOT_SUPPORTED},
        {"LUKS encryption", 32, 2, 4, "refused until the crypt filter can serve them", VDKIT_E_NOT_SUPPORTED},
        {"external data file", 72, 4, 8, "external data file", VDKIT_E_NOT_SUPPORTED},
        {"unknown incompatible bit", 72, 1 << 9, 8, "unknown incompatible feature bit 9 (header byte 72)",
         VDKIT_E_NOT_SUPPORTED},
        {"compression bit without a type", 72, 8, 8, "the compression type feature bit is set but compression_type",
         VDKIT_E_CORRUPT},
        {"extended L2 with 512-byte clusters", 72, 16, 8, "extended L2 entries need clusters of 16 KiB",
         VDKIT_E_CORRUPT},
    };
    for (const Case &c : cases) {
        INFO(c.what);
        const std::string path = dir / "h.qcow2";
        Bytes b = build();
        put_be(b, c.offset, c.value, c.width);
        if (c.offset2) put_be(b, c.offset2, c.value2, 8);
        write_file(path, b);
        OpenOptions o;
        o.format = "qcow2"; // judged by the plugin, not the probe
        auto r = lib->open(path, o);
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == c.code);
        CHECK_THAT(r.status().message(), Catch::Contains(path) && Catch::Contains(c.says));
    }
    // The feature name table names an unknown incompatible bit.
    const std::string path = dir / "n.qcow2";
    Bytes b = build(true);
    put_be(b, 72, 1 << 9, 8);
    write_file(path, b);
    auto r = lib->open(path, OpenOptions{});
    REQUIRE_FALSE(r.is_ok());
    CHECK_THAT(r.status().message(), Catch::Contains("unknown incompatible feature bit 9 ('frobnicate')"));
    // A file cut inside the header.
    const Bytes whole = build();
    write_file(path, Bytes(whole.begin(), whole.begin() + 90));
    OpenOptions o;
    o.format = "qcow2";
    r = lib->open(path, o);
    REQUIRE_FALSE(r.is_ok());
    CHECK_THAT(r.status().message(), Catch::Contains("the file ends inside the version 3 header (90 of 104 bytes)"));
}

TEST_CASE("qcow2: L1 and L2 entries pointing at metadata or past the end are found, not followed", "[qcow2][hostile]") {
    test::TempDir dir;
    auto lib = test::make_library();
    struct Case {
        const char *what;
        uint64_t offset; // of the entry patched
        uint64_t value;
        uint64_t guest; // a guest offset whose read reaches it
        const char *says;
    };
    const Case cases[] = {
        {"L2 table over the refcount table", kL1, kRefTable, 0,
         "points at an L2 table at offset 512, over the refcount table"},
        {"L2 table over the header", kL1, kCs * 0 + (1ull << 63) + 0, 0, ""}, // offset 0: unallocated, reads zeros
        {"L2 table past the end", kL1, 1 << 20, 0, "past the end of the file (3584 bytes)"},
        {"L2 table unaligned", kL1, kL2 + 8, 0, "has reserved bits set"},
        {"L1 reserved bits", kL1, kL2 | (1ull << 60), 0, "has reserved bits set"},
        {"data over the L1 table", kL2, kL1, 0, "points at host offset 1536, over the L1 table"},
        {"data over the header", kL2 + 24, kCs * 0 + 0x200 * 0 + 0, 3 * kCs, ""}, // 0: unallocated
        {"data past the end", kL2, 1 << 20, 0, "points at host offset 1048576, past the end of the file"},
        {"data unaligned", kL2, kData0 + 16, 0, "has reserved bits set"},
        {"data at host 0 with the copied flag", kL2, 1ull << 63, 0, "is allocated at host offset 0"},
        {"compressed at the header", kL2, 1ull << 62 | 16, 0, "points at host offset 16, over the header cluster"},
        {"compressed past the end", kL2, 1ull << 62 | (1 << 20), 0, "past the end of the file"},
    };
    for (const Case &c : cases) {
        INFO(c.what);
        const std::string path = dir / "e.qcow2";
        Bytes b = build();
        put_be(b, c.offset, c.value, 8);
        write_file(path, b);
        auto d = test::open_disk(*lib, path); // the header is fine
        Bytes buf(kCs);
        Status st = d->read(c.guest, buf.data(), buf.size());
        if (std::string(c.says).empty()) {
            REQUIRE_OK(st);
            CHECK(std::all_of(buf.begin(), buf.end(), [](unsigned char x) { return x == 0; }));
            continue;
        }
        REQUIRE_FALSE(st.is_ok());
        CHECK(st.code() == VDKIT_E_CORRUPT);
        CHECK_THAT(st.message(), Catch::Contains(path) && Catch::Contains(c.says));
        // block status reaches the same entry and says the same.
        auto bs = d->block_status(c.guest, kCs);
        REQUIRE_FALSE(bs.is_ok());
        CHECK_THAT(bs.status().message(), Catch::Contains(c.says));
    }
}
