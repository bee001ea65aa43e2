#include "test_support.hpp"

#include <algorithm>
#include <cctype>
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

// Library::formats_for_extension, the one answer the naming rule and the
// CLI give to "which format does this name claim": the extensions each
// plugin's README lists, in any case, and every extension of every loaded
// format plugin (generated from plugins(), in three spellings).
TEST_CASE("formats_for_extension names the format plugins listing an extension, in any case", "[probe][naming]") {
    auto lib = test::make_library();
    using names = std::vector<std::string>;
    CHECK(lib->formats_for_extension("vmdk") == names{"vmdk"});
    CHECK(lib->formats_for_extension("VDI") == names{"vdi"});
    CHECK(lib->formats_for_extension("Img") == names{"raw"});
    CHECK(lib->formats_for_extension("").empty());
    CHECK(lib->formats_for_extension(".vmdk").empty()); // without the dot
    CHECK(lib->formats_for_extension("no-such-extension").empty());
    size_t checked = 0;
    for (const PluginInfo &p : lib->plugins()) {
        if (p.kind != PluginKind::format) continue;
        for (const std::string &e : p.extensions) {
            std::string upper = e, mixed = e;
            for (char &c : upper)
                c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
            mixed[0] = upper[0];
            for (const std::string &spelling : {e, upper, mixed}) {
                INFO(p.name << " lists ." << e << ", asked as ." << spelling);
                const names got = lib->formats_for_extension(spelling);
                CHECK(std::count(got.begin(), got.end(), p.name) == 1);
            }
            ++checked;
        }
    }
    CHECK(checked >= 6); // vmdk, vdi, raw's img raw bin dd at least
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
    CHECK_THAT(r.status().message(),
               Catch::Contains("no transports are loaded") && Catch::Contains("VDKIT_PLUGIN_PATH"));
}

// ---- foreign containers (docs/design/probing.md, "Foreign containers") ---------------

#include "disk/containers.hpp"

namespace {

using Bytes = std::vector<unsigned char>;

void put_be(Bytes &b, size_t off, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i, v >>= 8)
        b[off + size_t(i)] = static_cast<unsigned char>(v);
}
void put_le(Bytes &b, size_t off, uint64_t v, int n) {
    for (int i = 0; i < n; ++i, v >>= 8)
        b[off + size_t(i)] = static_cast<unsigned char>(v);
}
void put_text(Bytes &b, size_t off, std::string_view s) {
    std::memcpy(b.data() + off, s.data(), s.size());
}

// A buffer of `size` bytes of a deterministic non-zero pattern (data that
// matches no signature by itself).
Bytes pattern(size_t size) {
    Bytes b(size);
    for (size_t i = 0; i < size; ++i)
        b[i] = static_cast<unsigned char>(0x5a ^ (i * 7));
    return b;
}

// The name of the container detect() finds in b, or "" for none.
std::string detect(const Bytes &b) {
    auto r = vdkit::containers::detect(b.size(), [&b](uint64_t off, void *buf, size_t len) {
        REQUIRE(off + len <= b.size()); // detect must not read past the end
        std::memcpy(buf, b.data() + off, len);
        return Status::ok();
    });
    REQUIRE_OK(r);
    return *r ? std::string((*r)->container->name) : std::string();
}

// A VHD footer (MS-VHD "Hard Disk Footer Format", formats.md §3.1) of len
// bytes (512, or 511 for the pre-2004 footer) with a correct checksum.
Bytes vhd_footer(uint32_t disk_type, uint64_t size, size_t len = 512) {
    Bytes f(len, 0);
    put_text(f, 0, "conectix");
    put_be(f, 8, 2, 4);
    put_be(f, 12, 0x00010000, 4);
    put_be(f, 16, disk_type == 2 ? ~uint64_t(0) : 512, 8);
    put_text(f, 28, "vpc ");
    put_be(f, 40, size, 8);
    put_be(f, 48, size, 8);
    put_be(f, 60, disk_type, 4);
    uint32_t sum = 0;
    for (auto c : f)
        sum += c;
    put_be(f, 64, ~sum, 4);
    return f;
}

Bytes with_tail(Bytes b, const Bytes &tail) {
    b.insert(b.end(), tail.begin(), tail.end());
    return b;
}

// One header per container checked at offset 0, built from the spec fields.
struct HeadCase {
    const char *what;
    std::string expect; // "" = must not match
    Bytes bytes;
};

std::vector<HeadCase> head_cases() {
    std::vector<HeadCase> v;
    auto qcow = [](uint32_t version) {
        Bytes b = pattern(4096);
        put_text(b, 0, "QFI\xfb");
        put_be(b, 4, version, 4);
        return b;
    };
    v.push_back({"qcow version 1", "qcow", qcow(1)});
    v.push_back({"qcow2 version 2", "qcow2", qcow(2)});
    v.push_back({"qcow2 version 3", "qcow2", qcow(3)});
    v.push_back({"qcow magic, version 0", "", qcow(0)});
    // qemu's probe takes any version >= 2 and refuses the unknown ones.
    v.push_back({"qcow magic, version 4", "qcow2", qcow(4)});
    auto qed = [](uint32_t cluster, uint32_t table, uint32_t header) {
        Bytes b = pattern(4096);
        put_text(b, 0, std::string_view("QED\0", 4));
        put_le(b, 4, cluster, 4);
        put_le(b, 8, table, 4);
        put_le(b, 12, header, 4);
        return b;
    };
    v.push_back({"qed", "qed", qed(65536, 4, 1)});
    v.push_back({"qed, 2 KiB clusters", "", qed(2048, 4, 1)});
    v.push_back({"qed, cluster size not a power of 2", "", qed(65536 + 4096, 4, 1)});
    v.push_back({"qed, table size 32", "", qed(65536, 32, 1)});
    v.push_back({"qed, header size 0", "", qed(65536, 4, 0)});
    auto parallels = [](std::string_view magic, uint32_t version) {
        Bytes b = pattern(4096);
        put_text(b, 0, magic);
        put_le(b, 16, version, 4);
        return b;
    };
    v.push_back({"parallels", "parallels", parallels("WithoutFreeSpace", 2)});
    v.push_back({"parallels ext", "parallels", parallels("WithouFreSpacExt", 2)});
    v.push_back({"parallels magic, version 3", "", parallels("WithoutFreeSpace", 3)});
    auto luks = [](uint16_t version) {
        Bytes b = pattern(4096);
        put_text(b, 0, "LUKS\xba\xbe");
        put_be(b, 6, version, 2);
        return b;
    };
    v.push_back({"luks1", "luks", luks(1)});
    v.push_back({"luks2", "luks", luks(2)});
    v.push_back({"luks magic, version 3", "", luks(3)});
    auto text = [](std::string_view s) {
        Bytes b = pattern(4096);
        put_text(b, 0, s);
        return b;
    };
    v.push_back({"cloop 2.0", "cloop",
                 text("#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n")});
    v.push_back({"cloop 4.0", "cloop", text("#!/bin/sh\n#V4.0 Format\n")});
    v.push_back({"a shell script", "", text("#!/bin/sh\necho hello\n")});
    auto bochs = [](std::string_view type, uint32_t version) {
        Bytes b(4096, 0);
        put_text(b, 0, "Bochs Virtual HD Image");
        put_text(b, 32, type);
        put_text(b, 48, "Growing");
        put_le(b, 64, version, 4);
        return b;
    };
    v.push_back({"bochs v2", "bochs", bochs("Redolog", 0x00020000)});
    v.push_back({"bochs v1", "bochs", bochs("Redolog", 0x00010000)});
    v.push_back({"bochs, other type", "", bochs("Undolog", 0x00020000)});
    v.push_back({"bochs, version 3", "", bochs("Redolog", 0x00030000)});
    auto kdmv = [](uint32_t version) {
        Bytes b = pattern(4096);
        put_text(b, 0, "KDMV");
        put_le(b, 4, version, 4);
        return b;
    };
    v.push_back({"vmdk sparse", "vmdk", kdmv(1)});
    v.push_back({"vmdk magic, version 9", "", kdmv(9)});
    Bytes vdi = pattern(4096);
    put_le(vdi, 0x40, 0xBEDA107F, 4);
    v.push_back({"vdi", "vdi", vdi});
    Bytes vhd_copy = with_tail(vhd_footer(3, 1 << 20), pattern(4096));
    v.push_back({"vhd footer copy at 0", "vpc", vhd_copy});
    Bytes bad_copy = vhd_copy;
    bad_copy[100] ^= 1; // the checksum no longer matches
    v.push_back({"vhd footer copy, bad checksum", "", bad_copy});
    v.push_back({"text \"conectix\" at 0", "", text("conectix and more text")});
    // 4 KiB: too short for the header at 64 KiB, so a cut-off vhdx.
    v.push_back({"vhdxfile, cut before its headers", "vhdx", text("vhdxfile")});
    return v;
}

} // namespace

TEST_CASE("container signatures are found at their place, near misses are not", "[probe][containers]") {
    for (const auto &c : head_cases()) {
        INFO(c.what);
        CHECK(detect(c.bytes) == c.expect);
        // The same header one byte later is not at its place.
        Bytes shifted(1, 0);
        shifted.insert(shifted.end(), c.bytes.begin(), c.bytes.end());
        CHECK(detect(shifted) == "");
        // Cut short anywhere in the header, nothing is read past the end
        // (detect's reader requires it); inside the magic nothing matches.
        for (size_t len = 0; len <= 600; ++len) {
            const std::string got = detect(Bytes(c.bytes.begin(), c.bytes.begin() + long(len)));
            if (len < 4) CHECK(got == "");
        }
    }
}

TEST_CASE("VHD footers are found at the end, with their checksum", "[probe][containers]") {
    for (size_t data : {size_t(0), size_t(512), size_t(1) << 20, size_t(3 * 512 + 17)}) {
        INFO("data bytes before the footer: " << data);
        const Bytes fixed = with_tail(Bytes(data, 0), vhd_footer(2, data));
        CHECK(detect(fixed) == "vpc");
        CHECK(detect(with_tail(pattern(data), vhd_footer(4, data, 511))) == "vpc"); // pre-2004 footer
        Bytes bad = fixed;
        bad[bad.size() - 512 + 40] ^= 0x10; // size field changed, checksum not
        CHECK(detect(bad) == "");
        if (data == 0) continue; // the footer is also at offset 0 (a copy)
        // A footer that is not the file's end (data follows it).
        CHECK(detect(with_tail(fixed, Bytes(512, 0))) == "");
        CHECK(detect(with_tail(fixed, Bytes(2, 0))) == "");
    }
}

TEST_CASE("VHDX needs its identifier and a header signature", "[probe][containers]") {
    Bytes b(192 << 10, 0);
    put_text(b, 0, "vhdxfile");
    CHECK(detect(b) == "");
    for (size_t at : {size_t(64) << 10, size_t(128) << 10}) {
        Bytes h = b;
        put_text(h, at, "head");
        CHECK(detect(h) == "vhdx");
        Bytes wrong = b;
        put_text(wrong, at + 512, "head");
        CHECK(detect(wrong) == "");
        h[0] = 'V';
        CHECK(detect(h) == "");
    }
    // Cut inside the first header: a truncated vhdx, not raw.
    Bytes short_file(b.begin(), b.begin() + (64 << 10) + 2);
    CHECK(detect(short_file) == "vhdx");
}

TEST_CASE("a DMG is recognised by its koly trailer", "[probe][containers]") {
    auto dmg = [](uint32_t version, uint32_t header_size, size_t after) {
        Bytes t(512, 0);
        put_text(t, 0, "koly");
        put_be(t, 4, version, 4);
        put_be(t, 8, header_size, 4);
        return with_tail(with_tail(pattern(8192), t), Bytes(after, 0));
    };
    CHECK(detect(dmg(4, 512, 0)) == "dmg");
    CHECK(detect(dmg(3, 512, 0)) == "");
    CHECK(detect(dmg(4, 1024, 0)) == "");
    CHECK(detect(dmg(4, 512, 512)) == "");
    Bytes at_start = pattern(8192);
    put_text(at_start, 0, "koly");
    put_be(at_start, 4, 4, 4);
    put_be(at_start, 8, 512, 4);
    CHECK(detect(at_start) == "");
}

TEST_CASE("plain data matches no container", "[probe][containers]") {
    std::mt19937 rng(20261130);
    for (size_t size : {size_t(1), size_t(511), size_t(512), size_t(513), size_t(4096), size_t(200000)}) {
        Bytes b(size);
        for (auto &c : b)
            c = static_cast<unsigned char>(rng());
        INFO(size);
        CHECK(detect(b) == "");
        CHECK(detect(Bytes(size, 0)) == "");
    }
}

TEST_CASE("extensions name containers", "[probe][containers]") {
    using namespace vdkit::containers;
    using vdkit::containers::extension_of; // not the public vdkit::extension_of (same function)
    CHECK(extension_of("dir/Disk.QCOW2") == "qcow2");
    CHECK(extension_of("a.b/c") == "");
    CHECK(extension_of(".hidden") == "");
    CHECK(extension_of("x.") == "");
    CHECK(extension_of("http://h/x.vhd?sig=a.b") == "vhd");
    for (const auto &c : all())
        for (auto e : c.extensions) {
            INFO(e);
            REQUIRE(by_extension(e) == &c);
            CHECK(c.aliases.front() == c.name);
        }
    for (auto plain : {"img", "raw", "bin", "iso", "dd", "hds", ""})
        CHECK(by_extension(plain) == nullptr);
}

namespace {

void write_file(const std::string &path, const Bytes &b) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char *>(b.data()), std::streamsize(b.size()));
    REQUIRE(f.good());
}

// A qcow2 image of the given version (qcow2.txt): virtual size 1 MiB, 64 KiB
// clusters, an empty one-entry L1 table in the second cluster; it reads as
// zeros through the qcow2 plugin.
Bytes qcow2_file(uint32_t version) {
    Bytes b(128 << 10, 0);
    put_text(b, 0, "QFI\xfb");
    put_be(b, 4, version, 4);
    put_be(b, 20, 16, 4);
    put_be(b, 24, 1 << 20, 8);
    put_be(b, 36, 1, 4);
    put_be(b, 40, 64 << 10, 8);
    if (version == 3) {
        put_be(b, 96, 4, 4);
        put_be(b, 100, 104, 4);
    }
    return b;
}

// A QED header (qed_spec.txt: magic, 64 KiB clusters, table size 4, header
// size 1), padded to 64 KiB: a container no plugin built here reads.
Bytes qed_file() {
    Bytes b(64 << 10, 0);
    put_text(b, 0, std::string_view("QED\0", 4));
    put_le(b, 4, 65536, 4);
    put_le(b, 8, 4, 4);
    put_le(b, 12, 1, 4);
    put_le(b, 40, 1 << 20, 8);
    return b;
}

} // namespace

TEST_CASE("a foreign container is refused by name unless the format is named", "[probe][containers]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string q = dir / "disk.img"; // a name that does not help
    write_file(q, qed_file());
    for (bool writable : {false, true}) {
        OpenOptions o;
        o.writable = writable;
        auto r = lib->open(q, o);
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == VDKIT_E_NOT_SUPPORTED);
        CHECK_THAT(r.status().message(), Catch::Contains(q + " is a qed image") &&
                                             Catch::Contains("no installed plugin reads qed") &&
                                             Catch::Contains("open it with format 'raw'"));
    }
    auto p = lib->probe(q);
    REQUIRE_FALSE(p.is_ok());
    CHECK(p.status().code() == VDKIT_E_NOT_SUPPORTED);
    OpenOptions raw;
    raw.format = "raw";
    auto d = lib->open(q, raw);
    REQUIRE_OK(d);
    CHECK(test::read_all(**d) == qed_file()); // the container bytes
}

TEST_CASE("a file named for a format it is not is refused, plain dumps are raw", "[probe][containers]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const Bytes data = pattern(8192);
    struct Case {
        const char *name;
        const char *says; // "" = opens as raw
    };
    for (const Case c :
         {Case{"disk.vdi", "named like a vdi image but it is not one (the vdi probe found no header)"},
          Case{"DISK.VMDK", "named like a vmdk image but it is not one (the vmdk probe"},
          Case{"disk.qcow2", "named like a qcow2 image but it is not one (the qcow2 probe found no header)"},
          Case{"disk.qed", "named like a qed image but it carries no qed signature, and no "
                           "installed plugin reads qed"},
          Case{"disk.vhd", "named like a vhd image but it is not one (the vhd probe found no header)"},
          Case{"disk.vhdx", "vhdx"}, Case{"disk.hdd", "parallels"}, Case{"disk.img", ""}, Case{"disk.raw", ""},
          Case{"disk.iso", ""}, Case{"disk.bin", ""}, Case{"disk", ""}, Case{"disk.hds", ""}}) {
        INFO(c.name);
        const std::string path = dir / c.name;
        write_file(path, data);
        auto r = lib->open(path);
        if (*c.says) {
            REQUIRE_FALSE(r.is_ok());
            CHECK(r.status().code() == VDKIT_E_PERMISSION);
            CHECK_THAT(r.status().message(), Catch::Contains(c.says) && Catch::Contains("open it with format 'raw'"));
            OpenOptions raw;
            raw.format = "raw";
            auto d = lib->open(path, raw);
            REQUIRE_OK(d);
            CHECK(test::read_all(**d) == data);
        } else {
            REQUIRE_OK(r);
            CHECK((*r)->image_info(0)->format == "raw");
        }
    }
}

TEST_CASE("a foreign parent is refused, also under a named top format", "[probe][containers]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string base = dir / "base.img", top = dir / "top.toys";
    REQUIRE_OK(lib->create_image(base, test::create_opts("raw", 64 << 10)));
    CreateOptions co = test::create_opts("toysparse");
    co.parent = base;
    REQUIRE_OK(lib->create_image(top, co));
    REQUIRE_OK(lib->open(top));
    write_file(base, qed_file()); // the parent is now a qed (same size)
    OpenOptions named;
    named.format = "toysparse"; // -f names the top image only
    for (const OpenOptions &o : {OpenOptions{}, named}) {
        auto r = lib->open(top, o);
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == VDKIT_E_NOT_SUPPORTED);
        CHECK_THAT(r.status().message(), Catch::Contains(base + " is a qed image"));
    }
    // Nor can a new image be made over it, unless its format is named.
    CreateOptions over = test::create_opts("toysparse");
    over.parent = base;
    auto made = lib->create_image(dir / "new.toys", over);
    REQUIRE_FALSE(made.is_ok());
    CHECK(made.status().code() == VDKIT_E_NOT_SUPPORTED);
    CHECK_FALSE(std::filesystem::exists(dir / "new.toys"));
    // Naming it raw does not help: the next open probes it again (a
    // toysparse child records no parent format), so nothing is made.
    over.parent_format = "raw";
    made = lib->create_image(dir / "new.toys", over);
    REQUIRE_FALSE(made.is_ok());
    CHECK_THAT(made.status().message(),
               Catch::Contains("could never be opened again") && Catch::Contains(base + " is a qed image"));
    CHECK_FALSE(std::filesystem::exists(dir / "new.toys"));
}

namespace {
// detect()'s whole match (nullopt: none).
std::optional<vdkit::containers::Match> detect_match(const Bytes &b) {
    auto r = vdkit::containers::detect(b.size(), [&b](uint64_t off, void *buf, size_t len) {
        REQUIRE(off + len <= b.size());
        std::memcpy(buf, b.data() + off, len);
        return Status::ok();
    });
    REQUIRE_OK(r);
    return *r;
}
} // namespace

TEST_CASE("unknown qcow2 versions, cut-off headers and damaged VHDs are not raw", "[probe][containers]") {
    for (uint32_t version : {4u, 5u, 0xffffffffu}) {
        Bytes b = pattern(4096);
        put_text(b, 0, "QFI\xfb");
        put_be(b, 4, version, 4);
        auto m = detect_match(b);
        REQUIRE(m);
        CHECK(m->container->name == "qcow2");
        CHECK_THAT(m->evidence, Catch::Contains("unknown version " + std::to_string(version)));
    }
    struct Cut {
        std::string_view magic;
        const char *name;
        size_t need; // the header's size: a file this long is judged on its fields
    };
    for (const Cut c :
         {Cut{std::string_view("QFI\xfb\0\0\0\3", 8), "qcow2", 104},
          Cut{std::string_view("QFI\xfb\0\0\0\1", 8), "qcow", 48}, Cut{std::string_view("QED\0", 4), "qed", 64},
          Cut{"WithoutFreeSpace", "parallels", 64}, Cut{"LUKS\xba\xbe", "luks", 592},
          Cut{std::string_view("LUKS\xba\xbe\0\2", 8), "luks", 4096}, Cut{"KDMV", "vmdk", 512},
          Cut{"COWD", "vmdk", 2048}, Cut{"conectix", "vpc", 512}, Cut{"vhdxfile", "vhdx", (64 << 10) + 4096}}) {
        INFO(c.name << " magic of " << c.magic.size() << " bytes");
        for (size_t len : {c.magic.size(), c.magic.size() + 1, c.need / 2, c.need - 1}) {
            if (len < c.magic.size()) continue;
            INFO("cut at " << len);
            Bytes b(len, 0);
            put_text(b, 0, c.magic);
            auto m = detect_match(b);
            REQUIRE(m);
            CHECK(m->container->name == c.name);
            CHECK(m->condition == "truncated");
            // One byte of the magic changed: a near miss stays raw.
            b[1] ^= 0x20;
            CHECK_FALSE(detect_match(b));
        }
        // Three bytes of a magic (each is 4 bytes or more) are no evidence.
        CHECK_FALSE(detect_match(Bytes(c.magic.begin(), c.magic.begin() + 3)));
    }
    // A dynamic VHD (MS-VHD: footer copy at 0, "cxsparse" dynamic header at
    // the footer's data offset, footer at the end) with both checksums broken.
    Bytes footer = vhd_footer(3, 1 << 20);
    Bytes dyn(512, 0);
    put_text(dyn, 0, "cxsparse");
    Bytes vhd = with_tail(with_tail(with_tail(footer, dyn), Bytes(1024, 0)), footer);
    CHECK(detect(vhd) == "vpc");
    vhd[64] ^= 0xff;
    vhd[vhd.size() - 512 + 64] ^= 0xff;
    auto m = detect_match(vhd);
    REQUIRE(m);
    CHECK(m->container->name == "vpc");
    CHECK(m->condition == "damaged");
    vhd[512] = 'X'; // no dynamic header there: plain data that mentions "conectix"
    CHECK_FALSE(detect_match(vhd));
}

TEST_CASE("the qcow2 plugin wins over the core's refusal of qcow2 containers", "[probe][containers]") {
    test::TempDir dir;
    auto lib = test::make_library();
    const std::string v3 = dir / "v3.img", v2 = dir / "v2.qcow2", v4 = dir / "v4.qcow2", none = dir / "none.qcow2";
    write_file(v3, qcow2_file(3));
    write_file(v2, qcow2_file(2));
    Bytes four = qcow2_file(3);
    put_be(four, 4, 4, 4);
    write_file(v4, four);
    write_file(none, pattern(8192));
    for (const std::string &path : {v3, v2}) {
        INFO(path);
        auto p = lib->probe(path);
        REQUIRE_OK(p);
        CHECK(*p == "qcow2");
        auto d = lib->open(path);
        REQUIRE_OK(d);
        CHECK((*d)->size() == (1u << 20));
        CHECK(test::read_all(**d) == Bytes(1 << 20, 0));
    }
    // A version the plugin declines: the refusal names the installed plugin.
    auto r = lib->open(v4);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == VDKIT_E_NOT_SUPPORTED);
    CHECK_THAT(r.status().message(), Catch::Contains("carries a qcow2 signature") &&
                                         Catch::Contains("installed 'qcow2' plugin does not recognise it"));
    // Its extension is the plugin's.
    auto n = lib->open(none);
    REQUIRE_FALSE(n.is_ok());
    CHECK(n.status().code() == VDKIT_E_PERMISSION);
    CHECK_THAT(n.status().message(), Catch::Contains("the qcow2 probe found no header"));
}
