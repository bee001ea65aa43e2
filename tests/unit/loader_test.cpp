#include "test_support.hpp"

#include <filesystem>
#include <fstream>

using namespace vdkit;

namespace {
const LoadProblem *problem_for(const Library &lib, const std::string &file) {
    for (const auto &p : lib.load_problems())
        if (std::filesystem::path(p.path).filename() == file) return &p;
    return nullptr;
}
} // namespace

TEST_CASE("built-in plugins load through the same entry point", "[loader]") {
    auto lib = test::make_library();
    auto raw = lib->plugin(PluginKind::format, "raw");
    auto file = lib->plugin(PluginKind::transport, "file");
    REQUIRE(raw);
    REQUIRE(file);
    CHECK(raw->has(VDKIT_CAP_CREATE_DYNAMIC));
    CHECK(file->has(VDKIT_CAP_LOCKING | VDKIT_CAP_EXTENTS));
    CHECK(raw->keys.size() == 1);
    CHECK(raw->keys[0].name == "preallocation");
    CHECK(raw->keys[0].create_only);
    // Lookup is case-insensitive.
    CHECK(lib->plugin(PluginKind::format, "RAW"));
    CHECK_FALSE(lib->plugin(PluginKind::transport, "raw"));
    CHECK(lib->load_problems().empty());
}

TEST_CASE("bad plugins are rejected with a clear message and the rest still load", "[loader][abi]") {
    test::LogCapture log;
    auto lib = test::make_library({VDKIT_TEST_BAD_PLUGIN_DIR}, &log);
    struct Expect {
        const char *file;
        std::string needle;
    };
    const std::string host_version = std::to_string(VDKIT_ABI_MAJOR) + "." + std::to_string(VDKIT_ABI_MINOR);
    for (const Expect &e :
         {Expect{"wrong_major.so", "this host speaks " + host_version},
          Expect{"old_major.so", "built for ABI 1.2, this host speaks " + host_version},
          Expect{"no_entry.so", "not a vdkit plugin"}, Expect{"throwing_entry.so", "entry threw an exception"},
          Expect{"null_entry.so", "refused to load"}, Expect{"short_struct.so", "struct_size 16 is smaller"},
          Expect{"missing_read.so", "lacks a required format callback"}}) {
        INFO(e.file);
        const LoadProblem *p = problem_for(*lib, e.file);
        REQUIRE(p);
        CHECK(p->status.code() == VDKIT_E_ABI);
        CHECK_THAT(p->status.message(), Catch::Contains(e.needle));
    }
    // Every rejection was also logged as a warning.
    CHECK(log.lines.size() >= 7);
    // The good plugins are unaffected.
    CHECK(lib->plugin(PluginKind::format, "raw"));
    CHECK(lib->plugin(PluginKind::transport, "file"));
}

TEST_CASE("a corrupt plugin file is reported with the dynamic loader's own error", "[loader][abi]") {
    test::TempDir dir;
    // Text that is no ELF file at all, and a real plugin cut short.
    std::ofstream(dir / "garbage.so") << std::string(4096, 'x');
    {
        std::ifstream in(std::string(VDKIT_TEST_PLUGIN_DIR) + "/vdkit_format_raw.so", std::ios::binary);
        std::string head(256, '\0');
        in.read(head.data(), static_cast<std::streamsize>(head.size()));
        REQUIRE(in.gcount() == 256);
        std::ofstream(dir / "truncated.so", std::ios::binary) << head;
    }
    std::ofstream(dir / "empty.so");
    auto lib = test::make_library({dir.path().string()});
    struct Expect {
        const char *file;
        const char *needle; // glibc's dlerror() text
    };
    for (const Expect &e : {Expect{"garbage.so", "invalid ELF header"}, Expect{"truncated.so", "cannot read file data"},
                            Expect{"empty.so", "file too short"}}) {
        INFO(e.file);
        const LoadProblem *p = problem_for(*lib, e.file);
        REQUIRE(p);
        CHECK(p->status.code() == VDKIT_E_ABI);
        CHECK_THAT(p->status.message(), Catch::Contains(std::string(e.file) + ": cannot load plugin library: "));
        CHECK_THAT(p->status.message(), Catch::Contains(e.needle));
        CHECK_THAT(p->status.message(), !Catch::Contains("Bad file descriptor"));
    }
    // The built-in plugins still load.
    CHECK(lib->plugin(PluginKind::format, "raw"));
}

TEST_CASE("a plugin built for a newer minor with longer structs loads", "[loader][abi]") {
    auto lib = test::make_library({VDKIT_TEST_BAD_PLUGIN_DIR});
    auto info = lib->plugin(PluginKind::format, "longstruct");
    REQUIRE(info);
    CHECK(info->abi_minor == VDKIT_ABI_MINOR + 1);
    test::TempDir dir;
    std::ofstream(dir / "any.bin") << "x";
    OpenOptions o;
    o.format = "longstruct";
    auto disk = lib->open(dir / "any.bin", o);
    REQUIRE_OK(disk);
    CHECK((*disk)->size() == 1u << 20);
    std::vector<unsigned char> buf(4096, 0xff);
    REQUIRE_OK((*disk)->read(0, buf.data(), buf.size()));
    CHECK(buf[100] == 0);
}

TEST_CASE("an exception escaping a plugin callback becomes VDKIT_E_INTERNAL", "[loader][abi]") {
    auto lib = test::make_library({VDKIT_TEST_BAD_PLUGIN_DIR});
    test::TempDir dir;
    std::ofstream(dir / "any.bin") << "x";
    OpenOptions o;
    o.format = "throwingread";
    auto disk = lib->open(dir / "any.bin", o);
    REQUIRE_OK(disk);
    std::vector<unsigned char> buf(512);
    Status st = (*disk)->read(0, buf.data(), buf.size());
    CHECK(st.code() == VDKIT_E_INTERNAL);
    CHECK_THAT(st.message(), Catch::Contains("exception"));
}

TEST_CASE("a second plugin with a taken name is refused, the first kept", "[loader]") {
    test::TempDir dir;
    std::filesystem::copy_file(std::string(VDKIT_TEST_PLUGIN_DIR) + "/vdkit_format_raw.so", dir / "zz_raw_copy.so");
    auto lib = test::make_library({dir.path().string()});
    const LoadProblem *p = problem_for(*lib, "zz_raw_copy.so");
    REQUIRE(p);
    CHECK(p->status.code() == VDKIT_E_EXISTS);
    CHECK_THAT(p->status.message(), Catch::Contains("already provided by"));
    CHECK_THAT(lib->plugin(PluginKind::format, "raw")->source, Catch::EndsWith("vdkit_format_raw.so"));
}

TEST_CASE("plugins stay loaded while a disk they made is alive", "[loader]") {
    test::TempDir dir;
    std::unique_ptr<Disk> disk;
    {
        auto lib = test::make_library();
        auto d = lib->create_image(dir / "a.toys", test::create_opts("toysparse", 1 << 20));
        REQUIRE_OK(d);
        disk = std::move(*d);
    } // the Library handle is gone; the disk still calls into the plugin
    auto data = test::pattern(5000, 1);
    REQUIRE_OK(disk->write(100, data.data(), data.size()));
    std::vector<unsigned char> back(data.size());
    REQUIRE_OK(disk->read(100, back.data(), back.size()));
    CHECK(back == data);
    REQUIRE_OK(disk->close());
}

// ---- URL schemes of transports (ABI 2.1) ------------------------------------

#include "registry/registry.hpp"
#include "vdkit/plugin.hpp"

#include <cstddef>

namespace {
struct SchemeTransport {
    static std::unique_ptr<SchemeTransport> open(sdk::Context &, std::string_view, uint32_t) {
        return std::make_unique<SchemeTransport>();
    }
    void pread(sdk::Context &, uint64_t, void *, uint64_t) {}
    uint64_t size(sdk::Context &) { return 0; }
};

vdkit_plugin_descriptor scheme_descriptor(std::string_view name, const vdkit_str *schemes, uint32_t count,
                                          uint32_t kind = VDKIT_KIND_TRANSPORT) {
    sdk::DescriptorSpec spec{name, "1", "test", 0, nullptr, 0, nullptr, 0, schemes, count};
    return sdk::describe(kind, spec, sdk::transport_ops<SchemeTransport>());
}
} // namespace

TEST_CASE("a transport's URL schemes pick it, and clashes and bad schemes are refused", "[loader][abi]") {
    static constexpr vdkit_str nbd_schemes[] = {sdk::str("nbds"), sdk::str("nbd+unix")};
    const vdkit_plugin_descriptor nbd = scheme_descriptor("nbdx", nbd_schemes, 2);
    auto entry = make_plugin_entry(&nbd, "test", nullptr);
    REQUIRE_OK(entry);
    CHECK((*entry)->info.schemes == std::vector<std::string>{"nbds", "nbd+unix"});
    Registry reg;
    REQUIRE_OK(reg.add(*entry));
    CHECK(reg.find_transport_for_scheme("nbdx") == *entry);
    CHECK(reg.find_transport_for_scheme("NBD+Unix") == *entry);
    CHECK(reg.find_transport_for_scheme("nbds") == *entry);
    CHECK_FALSE(reg.find_transport_for_scheme("nbd+tcp"));
    // Another transport may not take a served scheme, by name or by scheme.
    static constexpr vdkit_str clash[] = {sdk::str("nbd+unix")};
    const vdkit_plugin_descriptor other = scheme_descriptor("other", clash, 1);
    auto second = make_plugin_entry(&other, "test2", nullptr);
    REQUIRE_OK(second);
    Status st = reg.add(*second);
    CHECK(st.code() == VDKIT_E_EXISTS);
    CHECK_THAT(st.message(), Catch::Contains("'nbd+unix'") && Catch::Contains("'nbdx'"));
    const vdkit_plugin_descriptor named = scheme_descriptor("nbds", nullptr, 0);
    auto third = make_plugin_entry(&named, "test3", nullptr);
    REQUIRE_OK(third);
    CHECK(reg.add(*third).code() == VDKIT_E_EXISTS);
    CHECK(reg.add_all({*third}).code() == VDKIT_E_EXISTS);
    CHECK(reg.find_transport_for_scheme("nbds") == *entry);

    for (std::string_view bad : {"Nbd", "1nbd", "nbd:x", "", "nbd/unix"}) {
        INFO(bad);
        const vdkit_str one[] = {sdk::str(bad)};
        const vdkit_plugin_descriptor d = scheme_descriptor("bad", one, 1);
        auto r = make_plugin_entry(&d, "bad", nullptr);
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == VDKIT_E_ABI);
        CHECK_THAT(r.status().message(), Catch::Contains("URL scheme"));
    }
    // Only transports serve URLs.
    const vdkit_plugin_descriptor fmt = scheme_descriptor("fmt", nbd_schemes, 2, VDKIT_KIND_FILTER);
    CHECK(make_plugin_entry(&fmt, "fmt", nullptr).status().code() == VDKIT_E_ABI);
}

TEST_CASE("a 2.0 descriptor (no scheme fields) loads with no schemes", "[loader][abi]") {
    // What follows a 2.0-sized descriptor is not the plugin's: garbage
    // there must not be read as a scheme table.
    struct {
        vdkit_plugin_descriptor d;
    } holder{scheme_descriptor("old", nullptr, 0)};
    holder.d.struct_size = static_cast<uint32_t>(offsetof(vdkit_plugin_descriptor, schemes));
    holder.d.abi_minor = 0;
    holder.d.schemes = reinterpret_cast<const vdkit_str *>(uintptr_t{0xdead});
    holder.d.scheme_count = 7;
    auto entry = make_plugin_entry(&holder.d, "old", nullptr);
    REQUIRE_OK(entry);
    CHECK((*entry)->info.schemes.empty());
    CHECK((*entry)->info.abi_minor == 0);
}
