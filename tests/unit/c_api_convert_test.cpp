// vdkit_convert (C API): the whole convert job in one call — success, a
// target that exists or appears meanwhile (refused, untouched), cancel from
// the progress callback at every step (no target, no staging leftovers),
// and options it refuses before touching anything.
#include "test_support.hpp"
#include "vdkit/vdkit.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using vdkit::test::open_c_library;

namespace {

constexpr uint64_t kSize = 8u << 20;

// The names in `dir` (hidden ones too), sorted.
std::vector<std::string> names_in(const fs::path &dir) {
    std::vector<std::string> out;
    for (const auto &e : fs::directory_iterator(dir))
        out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<unsigned char> read_all(vdkit_disk *d, vdkit_error &err) {
    std::vector<unsigned char> buf(static_cast<size_t>(vdkit_disk_size(d)));
    REQUIRE(vdkit_disk_read(d, 0, buf.data(), buf.size(), &err) == VDKIT_OK);
    return buf;
}

std::string file_text(const fs::path &p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// A VDI source with data at three places (one at the very end).
std::string make_source(vdkit_library *lib, const fs::path &dir, vdkit_error &err) {
    const std::string src = (dir / "src.vdi").string();
    vdkit_disk *d = nullptr;
    REQUIRE(vdkit_disk_create(lib, src.c_str(), "vdi", kSize, 0, nullptr, nullptr, &d, &err) == VDKIT_OK);
    const auto a = vdkit::test::pattern(1 << 20, 7), b = vdkit::test::pattern(4096, 8);
    REQUIRE(vdkit_disk_write(d, 0, b.data(), b.size(), &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_write(d, 3 << 20, a.data(), a.size(), &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_write(d, kSize - 4096, b.data(), b.size(), &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_close(d, &err) == VDKIT_OK);
    return src;
}

vdkit_convert_options options_for(const char *format) {
    vdkit_convert_options o{};
    o.struct_size = sizeof(o);
    o.target_format = format;
    o.threads = 2;
    return o;
}

} // namespace

TEST_CASE("vdkit_convert converts a chain into a new image of each format and leaves nothing else",
          "[c-api][convert]") {
    vdkit::test::TempDir dir;
    vdkit_error err{};
    vdkit_library *lib = open_c_library(err);
    const std::string src = make_source(lib, dir.path(), err);
    for (const char *format : {"raw", "vmdk", "vdi"}) {
        // (The VMDK plugin makes sparse images only: no PREALLOCATE for it.)
        const bool fixed = std::string(format) != "vmdk";
        for (uint32_t flags : {0u, unsigned(VDKIT_CONVERT_VERIFY),
                               unsigned((fixed ? VDKIT_CONVERT_PREALLOCATE : 0) | VDKIT_CONVERT_OUT_OF_ORDER)}) {
            INFO(format << " flags " << flags << ": " << err.message);
            const std::string dst = dir / (std::string("out.") + format);
            struct Seen {
                int calls = 0;
                uint64_t last = 0, total = 0;
            } seen;
            vdkit_convert_options o = options_for(format);
            o.flags = flags;
            o.progress = [](void *opaque, uint64_t done, uint64_t total) {
                auto *s = static_cast<Seen *>(opaque);
                ++s->calls, s->last = done, s->total = total;
                return 0;
            };
            o.opaque = &seen;
            vdkit_convert_result r{};
            r.struct_size = sizeof(r);
            REQUIRE(vdkit_convert(lib, src.c_str(), dst.c_str(), &o, &r, &err) == VDKIT_OK);
            CHECK(r.virtual_size == kSize);
            CHECK(r.data_bytes >= (1u << 20) + 8192);
            CHECK(seen.calls > 0);
            CHECK(seen.last == seen.total);
            CHECK(seen.total == r.data_bytes);
            // Only the source and the new image: the staging directory is gone.
            CHECK(names_in(dir.path()) == std::vector<std::string>{"out." + std::string(format), "src.vdi"});
            vdkit_disk *a = nullptr, *b = nullptr;
            REQUIRE(vdkit_disk_open(lib, src.c_str(), nullptr, 0, nullptr, &a, &err) == VDKIT_OK);
            REQUIRE(vdkit_disk_open(lib, dst.c_str(), format, 0, nullptr, &b, &err) == VDKIT_OK);
            CHECK(vdkit_disk_size(b) == kSize);
            CHECK(read_all(a, err) == read_all(b, err));
            REQUIRE(vdkit_disk_close(a, &err) == VDKIT_OK);
            REQUIRE(vdkit_disk_close(b, &err) == VDKIT_OK);
            fs::remove(dst);
        }
    }
    // The same into an existing target in place (EXISTING_TARGET): a larger
    // raw file keeps its excess.
    const fs::path big = dir / "big.raw";
    {
        std::ofstream out(big, std::ios::binary);
        std::string fill(kSize + 4096, 'x');
        out.write(fill.data(), static_cast<std::streamsize>(fill.size()));
    }
    vdkit_convert_options o = options_for("raw");
    o.flags = VDKIT_CONVERT_EXISTING_TARGET | VDKIT_CONVERT_VERIFY;
    REQUIRE(vdkit_convert(lib, src.c_str(), big.c_str(), &o, nullptr, &err) == VDKIT_OK);
    CHECK(fs::file_size(big) == kSize + 4096);
    CHECK(file_text(big).substr(kSize) == std::string(4096, 'x'));
    vdkit_library_close(lib);
}

TEST_CASE("vdkit_convert refuses a target that exists or appears while converting, and leaves it untouched",
          "[c-api][convert]") {
    vdkit::test::TempDir dir;
    vdkit_error err{};
    vdkit_library *lib = open_c_library(err);
    const std::string src = make_source(lib, dir.path(), err);
    const fs::path dst = dir / "out.vmdk";
    { std::ofstream(dst) << "the user's file"; }
    vdkit_convert_options o = options_for("vmdk");
    CHECK(vdkit_convert(lib, src.c_str(), dst.c_str(), &o, nullptr, &err) == VDKIT_E_EXISTS);
    CHECK(std::strstr(err.message, "already exists") != nullptr);
    CHECK(file_text(dst) == "the user's file");
    CHECK(names_in(dir.path()) == std::vector<std::string>{"out.vmdk", "src.vdi"});

    // A file that appears under the name while the copy runs (made from the
    // progress callback, at each call in turn) is not replaced: the publish
    // renames without replacing.
    fs::remove(dst);
    for (int at = 1; at <= 3; ++at) {
        INFO("the file appears at progress call " << at);
        struct Race {
            fs::path target;
            int at = 0, calls = 0;
        } race{dst, at, 0};
        o.progress = [](void *opaque, uint64_t, uint64_t) {
            auto *r = static_cast<Race *>(opaque);
            if (++r->calls == r->at) std::ofstream(r->target) << "appeared";
            return 0;
        };
        o.opaque = &race;
        CHECK(vdkit_convert(lib, src.c_str(), dst.c_str(), &o, nullptr, &err) == VDKIT_E_EXISTS);
        CHECK(std::strstr(err.message, "appeared while converting") != nullptr);
        CHECK(file_text(dst) == "appeared");
        CHECK(names_in(dir.path()) == std::vector<std::string>{"out.vmdk", "src.vdi"});
        fs::remove(dst);
    }

    // With OVERWRITE the existing file is replaced by the complete new image.
    { std::ofstream(dst) << "old"; }
    o.progress = nullptr;
    o.flags = VDKIT_CONVERT_OVERWRITE;
    REQUIRE(vdkit_convert(lib, src.c_str(), dst.c_str(), &o, nullptr, &err) == VDKIT_OK);
    vdkit_disk *d = nullptr;
    REQUIRE(vdkit_disk_open(lib, dst.c_str(), "vmdk", 0, nullptr, &d, &err) == VDKIT_OK);
    CHECK(vdkit_disk_size(d) == kSize);
    REQUIRE(vdkit_disk_close(d, &err) == VDKIT_OK);
    // A directory under the target name is never replaced, even so.
    const fs::path sub = dir / "sub.vmdk";
    fs::create_directory(sub);
    CHECK(vdkit_convert(lib, src.c_str(), sub.c_str(), &o, nullptr, &err) == VDKIT_E_PERMISSION);
    CHECK(fs::is_directory(sub));
    vdkit_library_close(lib);
}

TEST_CASE("vdkit_convert cancelled from the progress callback leaves no target and no staging directory",
          "[c-api][convert]") {
    vdkit::test::TempDir dir;
    vdkit_error err{};
    vdkit_library *lib = open_c_library(err);
    const std::string src = make_source(lib, dir.path(), err);
    // Count the calls a whole convert makes, then cancel at each one of them
    // (before the copy, during it, after it, before the publish).
    struct Count {
        int calls = 0, stop_at = 0;
    } count;
    auto counting = [](void *opaque, uint64_t, uint64_t) {
        auto *c = static_cast<Count *>(opaque);
        return ++c->calls == c->stop_at ? 1 : 0;
    };
    for (const char *format : {"vmdk", "vdi"}) {
        const std::string dst = dir / (std::string("out.") + format);
        vdkit_convert_options o = options_for(format);
        o.threads = 1; // one worker: the same calls each run
        o.flags = VDKIT_CONVERT_VERIFY;
        o.progress = counting;
        o.opaque = &count;
        count = Count{};
        REQUIRE(vdkit_convert(lib, src.c_str(), dst.c_str(), &o, nullptr, &err) == VDKIT_OK);
        const int calls = count.calls;
        REQUIRE(calls >= 4);
        fs::remove(dst);
        for (int stop = 1; stop <= calls; ++stop) {
            INFO(format << ": cancelled at call " << stop << " of " << calls);
            count = Count{0, stop};
            CHECK(vdkit_convert(lib, src.c_str(), dst.c_str(), &o, nullptr, &err) == VDKIT_E_CANCELLED);
            CHECK(err.code == VDKIT_E_CANCELLED);
            CHECK(std::strstr(err.message, "was not written") != nullptr);
            CHECK(names_in(dir.path()) == std::vector<std::string>{"src.vdi"});
        }
    }
    vdkit_library_close(lib);
}

TEST_CASE("vdkit_convert refuses bad options before touching anything", "[c-api][convert]") {
    vdkit::test::TempDir dir;
    vdkit_error err{};
    vdkit_library *lib = open_c_library(err);
    const std::string src = make_source(lib, dir.path(), err);
    const std::string dst = dir / "out.vmdk";
    const std::vector<std::string> before = names_in(dir.path());
    auto refused = [&](const vdkit_convert_options *o, const char *source, const char *target, const char *says) {
        INFO("expecting: " << says);
        CHECK(vdkit_convert(lib, source, target, o, nullptr, &err) == VDKIT_E_INVALID_ARGUMENT);
        CHECK(err.code == VDKIT_E_INVALID_ARGUMENT);
        CHECK(std::strstr(err.message, says) != nullptr);
        CHECK(names_in(dir.path()) == before);
    };
    vdkit_convert_options o = options_for("vmdk");
    refused(nullptr, src.c_str(), dst.c_str(), "must not be NULL");
    refused(&o, nullptr, dst.c_str(), "must not be NULL");
    refused(&o, src.c_str(), nullptr, "must not be NULL");
    vdkit_convert_options small = o;
    small.struct_size = 8;
    refused(&small, src.c_str(), dst.c_str(), "struct_size is too small");
    vdkit_convert_options none = o;
    none.target_format = nullptr;
    refused(&none, src.c_str(), dst.c_str(), "target format");
    // Settings that only apply when the target is created, with EXISTING_TARGET.
    struct Case {
        uint32_t flags;
        const char *says;
    };
    for (const Case &c :
         {Case{VDKIT_CONVERT_EXISTING_TARGET | VDKIT_CONVERT_KEEP_UUID, "--keep-uuid"},
          Case{VDKIT_CONVERT_EXISTING_TARGET | VDKIT_CONVERT_OVERWRITE, "--overwrite"},
          Case{VDKIT_CONVERT_EXISTING_TARGET | VDKIT_CONVERT_PREALLOCATE, "--preallocate"},
          Case{VDKIT_CONVERT_TARGET_IS_ZERO, "--target-is-zero needs -n"}, Case{1u << 20, "unknown bits"}}) {
        vdkit_convert_options bad = o;
        bad.flags = c.flags;
        refused(&bad, src.c_str(), dst.c_str(), c.says);
    }
    vdkit_convert_options opts = o;
    opts.flags = VDKIT_CONVERT_EXISTING_TARGET;
    opts.target_options = "compat6=on";
    refused(&opts, src.c_str(), dst.c_str(), "-o (target format options)");
    vdkit_convert_options threads = o;
    threads.threads = 65;
    refused(&threads, src.c_str(), dst.c_str(), "1..64");
    vdkit_convert_options filters = o;
    const char *bad_filter[] = {":x=1", nullptr};
    filters.target_filters = bad_filter;
    refused(&filters, src.c_str(), dst.c_str(), "no filter name");
    refused(&o, src.c_str(), src.c_str(), "the same file");
    refused(&o, src.c_str(), (dir.path().string() + "/").c_str(), "naming a directory");
    // The naming rule (Library::written_name_problem) is the library's: a
    // new target whose extension names another format than the one written
    // is refused, for a plugin's extension (.vdi), a foreign container's
    // (.qcow2, .vhd), also when written through a symlink, and whatever the
    // case or trailing dots; generic and matching names pass.
    for (const char *name : {"out.vdi", "out.qcow2", "out.VHD", "out.vdi.", ".vdi"}) {
        const std::string t = dir / name;
        INFO("target " << t);
        refused(&o, src.c_str(), t.c_str(), "would be written as vmdk");
    }
    {
        // The link names the file it replaces (with overwrite): real.vdi.
        const std::string link = dir / "link.vmdk", real = dir / "real.vdi";
        std::ofstream(real).put('x');
        std::error_code ec;
        fs::create_symlink(real, link, ec);
        REQUIRE_FALSE(ec);
        CHECK(vdkit_convert(lib, src.c_str(), link.c_str(), &o, nullptr, &err) == VDKIT_E_INVALID_ARGUMENT);
        CHECK(std::strstr(err.message, "is a symlink to") != nullptr);
        CHECK(std::strstr(err.message, "would be written as vmdk") != nullptr);
        vdkit_convert_options replace = o;
        replace.flags |= VDKIT_CONVERT_OVERWRITE;
        CHECK(vdkit_convert(lib, src.c_str(), link.c_str(), &replace, nullptr, &err) == VDKIT_E_INVALID_ARGUMENT);
        CHECK(std::strstr(err.message, "is a symlink to") != nullptr);
        CHECK(fs::file_size(real) == 1); // nothing written
        fs::remove(link);
        fs::remove(real);
    }
    vdkit_convert_options raw = options_for("raw");
    refused(&raw, src.c_str(), (dir / "out.vmdk").c_str(), "would be written as raw");
    for (const char *fine : {"fine.vmdk", "fine.img"}) {
        const std::string t = dir / fine;
        INFO("target " << t);
        vdkit_convert_options ok = o;
        CHECK(vdkit_convert(lib, src.c_str(), t.c_str(), &ok, nullptr, &err) == VDKIT_OK);
        fs::remove(t);
    }
    // A source that does not exist: NOT_FOUND, nothing made.
    CHECK(vdkit_convert(lib, (dir / "nope.vdi").c_str(), dst.c_str(), &o, nullptr, &err) == VDKIT_E_NOT_FOUND);
    CHECK(names_in(dir.path()) == before);
    vdkit_library_close(lib);
}
