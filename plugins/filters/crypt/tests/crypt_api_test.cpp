// crypt through the C++ API: unaligned writes, zero writes and discards
// into encrypted images and chains against a byte model, after reopening;
// allocation through the filter; wrong password changes nothing; the core
// refuses writes through a disk-level filter that declares none (rodisk).
// The CLI and the independent Python decryption: crypt_test.sh.
#include "test_support.hpp"

#include <filesystem>
#include <fstream>
#include <random>

using namespace vdkit;

namespace {

constexpr uint64_t kSize = 4u << 20;

std::vector<FilterSpec> crypt_stack(const std::string &pwfile) {
    return {FilterSpec{"crypt", {{"password-file", pwfile}, {"kdf-iterations", "20000"}}}};
}

std::string write_file(const std::string &path, const std::string &text) {
    std::ofstream(path) << text << "\n";
    return path;
}

std::vector<unsigned char> read_all(const Disk &d) {
    std::vector<unsigned char> out(static_cast<size_t>(d.size()));
    REQUIRE_OK(d.read(0, out.data(), out.size()));
    return out;
}

std::vector<unsigned char> file_bytes(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), {});
}

// Random unaligned writes, zero writes and reads against `model`.
void exercise(Disk &d, std::vector<unsigned char> &model, uint32_t seed) {
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 60; ++i) {
        const uint64_t len = 1 + rng() % 70000;
        const uint64_t off = rng() % (kSize - len);
        if (i % 5 == 4) {
            REQUIRE_OK(d.write_zeroes(off, len));
            std::fill(model.begin() + static_cast<long>(off), model.begin() + static_cast<long>(off + len), 0);
        } else {
            auto data = test::pattern(static_cast<size_t>(len), static_cast<uint32_t>(rng()));
            REQUIRE_OK(d.write(off, data.data(), len));
            std::copy(data.begin(), data.end(), model.begin() + static_cast<long>(off));
        }
        const uint64_t roff = rng() % (kSize - 1000), rlen = 1 + rng() % 999;
        std::vector<unsigned char> got(static_cast<size_t>(rlen));
        REQUIRE_OK(d.read(roff, got.data(), rlen));
        REQUIRE(std::equal(got.begin(), got.end(), model.begin() + static_cast<long>(roff)));
    }
}

} // namespace

TEST_CASE("crypt: unaligned writes, zeros and chains read back through the filter", "[crypt]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string pw = write_file(dir / "pw.txt", "a password");
    for (const char *fmt : {"raw", "vdi", "vmdk"}) {
        INFO(fmt);
        const std::string base = dir / (std::string("base.") + fmt);
        std::vector<unsigned char> model(kSize, 0);
        {
            CreateOptions co = test::create_opts(fmt, kSize);
            co.filters = crypt_stack(pw);
            auto d = lib->create_image(base, co);
            REQUIRE_OK(d);
            REQUIRE((*d)->disk_filters() == std::vector<std::string>{"crypt"});
            exercise(**d, model, 1);
            REQUIRE_OK((*d)->close());
        }
        OpenOptions oo;
        oo.filters = crypt_stack(pw);
        {
            auto d = lib->open(base, oo);
            REQUIRE_OK(d);
            REQUIRE(read_all(**d) == model);
            // Allocation through the filter is the chain's: a never-written
            // tail of a sparse format is not data.
            auto plain = test::open_disk(*lib, base);
            for (uint64_t off = 0; off < kSize;) {
                auto a = (*d)->block_status(off, kSize - off);
                auto b = plain->block_status(off, kSize - off);
                REQUIRE_OK(a);
                REQUIRE_OK(b);
                REQUIRE(a->state == b->state);
                REQUIRE(a->length == b->length);
                off += a->length;
            }
            // The stored bytes are not the plaintext.
            REQUIRE(read_all(*plain) != model);
        }
        // A differencing image over the encrypted base: partial writes fill
        // from the (encrypted) parent; the base does not change.
        const std::string top = dir / (std::string("top.") + fmt + (std::string(fmt) == "raw" ? ".vmdk" : ""));
        const auto base_bytes = file_bytes(base);
        {
            CreateOptions co = test::create_opts(std::string(fmt) == "raw" ? "vmdk" : fmt);
            co.parent = base;
            co.filters = crypt_stack(pw);
            auto d = lib->create_image(top, co);
            REQUIRE_OK(d);
            auto child = model;
            exercise(**d, child, 2);
            REQUIRE_OK((*d)->close());
            auto again = lib->open(top, oo);
            REQUIRE_OK(again);
            REQUIRE(read_all(**again) == child);
        }
        REQUIRE(file_bytes(base) == base_bytes);
    }
}

TEST_CASE("crypt: a wrong password is refused and changes nothing", "[crypt]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string pw = write_file(dir / "pw.txt", "right"), wrong = write_file(dir / "wrong.txt", "wrong");
    const std::string path = dir / "w.vdi";
    {
        CreateOptions co = test::create_opts("vdi", kSize);
        co.filters = crypt_stack(pw);
        auto d = lib->create_image(path, co);
        REQUIRE_OK(d);
        auto data = test::pattern(100000, 7);
        REQUIRE_OK((*d)->write(12345, data.data(), data.size()));
        REQUIRE_OK((*d)->close());
    }
    const auto image = file_bytes(path), store = file_bytes(path + ".keystore");
    OpenOptions oo;
    oo.writable = true;
    oo.filters = crypt_stack(wrong);
    auto d = lib->open(path, oo);
    REQUIRE_FALSE(d.is_ok());
    CHECK(d.status().code() == VDKIT_E_PERMISSION);
    CHECK(d.status().message().find("password is wrong") != std::string::npos);
    CHECK(d.status().message().find("right") == std::string::npos);
    CHECK(file_bytes(path) == image);
    CHECK(file_bytes(path + ".keystore") == store);
}

TEST_CASE("disk filters: a filter that declares no writes is never written through", "[crypt][filters]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string path = dir / "r.vdi";
    {
        auto d = lib->create_image(path, test::create_opts("vdi", kSize));
        REQUIRE_OK(d);
        auto data = test::pattern(kSize, 3);
        REQUIRE_OK((*d)->write(0, data.data(), data.size()));
        REQUIRE_OK((*d)->close());
    }
    const auto before = file_bytes(path);
    OpenOptions oo;
    oo.writable = true;
    oo.filters = {FilterSpec{"rodisk", {}}};
    auto d = lib->open(path, oo);
    REQUIRE_OK(d);
    std::vector<unsigned char> buf(4096, 0xab);
    for (const Status &st :
         {(*d)->write(0, buf.data(), buf.size()), (*d)->write_zeroes(0, 65536), (*d)->discard(0, 1 << 20)}) {
        CHECK(st.code() == VDKIT_E_NOT_SUPPORTED);
        CHECK(st.message().find("filter 'rodisk' does not handle") != std::string::npos);
    }
    // Reads pass through it (XOR 0x5a).
    REQUIRE_OK((*d)->read(0, buf.data(), buf.size()));
    auto plain = test::pattern(kSize, 3);
    for (size_t i = 0; i < buf.size(); ++i)
        REQUIRE(buf[i] == (plain[i] ^ 0x5a));
    REQUIRE_OK((*d)->close());
    CHECK(file_bytes(path) == before);
}
