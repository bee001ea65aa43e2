// Helpers for vdkit's C++ tests: temporary directories, a library that loads
// only the plugins under test, and deterministic data patterns.
#ifndef VDKIT_TEST_SUPPORT_HPP
#define VDKIT_TEST_SUPPORT_HPP

#include "vdkit/vdkit.h"
#include "vdkit/vdkit.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <random>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace vdkit::test {

// Skips (Catch2 v2 has none; main.cpp turns them into an exit code).
constexpr int kSkipExitCode = 77;
inline bool &skipped() {
    static bool flag = false;
    return flag;
}
inline bool in_ci() {
    const char *ci = std::getenv("CI");
    return ci && std::string(ci) == "true";
}

class TempDir {
public:
    explicit TempDir(const std::filesystem::path &parent = std::filesystem::temp_directory_path()) {
        std::string tmpl = (parent / "vdkit-test-XXXXXX").string();
        if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed in " + parent.string());
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    std::string operator/(const std::string &name) const { return (path_ / name).string(); }
    const std::filesystem::path &path() const { return path_; }

private:
    std::filesystem::path path_;
};

// A writable directory on another file system than dir (for moves that
// rename(2) refuses with EXDEV): /dev/shm, or empty where it is missing or
// on the same device.
inline std::string other_file_system(const TempDir &dir) {
    struct stat a {
    }, b{};
    if (::stat(dir.path().c_str(), &a) != 0 || ::stat("/dev/shm", &b) != 0 || a.st_dev == b.st_dev ||
        ::access("/dev/shm", W_OK) != 0)
        return {};
    return "/dev/shm";
}

// Log lines the library emitted (for asserting on warnings).
struct LogCapture {
    std::mutex mu;
    std::vector<std::string> lines;
    LogFunction sink() {
        return [this](LogLevel, std::string_view m) {
            std::lock_guard<std::mutex> l(mu);
            lines.emplace_back(m);
        };
    }
};

inline LibraryOptions test_options(std::vector<std::string> extra_dirs = {}, LogCapture *log = nullptr) {
    LibraryOptions o;
    o.plugin_paths = {VDKIT_TEST_PLUGIN_DIR, VDKIT_TEST_EXTRA_PLUGIN_DIR};
    for (auto &d : extra_dirs)
        o.plugin_paths.push_back(d);
    o.search_environment = false;
    o.search_install_dir = false;
    o.log = log ? log->sink() : [](LogLevel, std::string_view) {};
    o.log_level = LogLevel::debug;
    return o;
}

inline CreateOptions create_opts(std::string format, uint64_t size = 0) {
    CreateOptions o;
    o.format = std::move(format);
    o.size = size;
    return o;
}

inline std::shared_ptr<Library> make_library(std::vector<std::string> extra_dirs = {}, LogCapture *log = nullptr) {
    auto lib = Library::create(test_options(std::move(extra_dirs), log));
    REQUIRE(lib.is_ok());
    return *lib;
}

// A C API library with the built plugins (and with extra: the test plugins
// such as toysparse), no environment or install paths, quiet.
inline vdkit_library *open_c_library(vdkit_error &err, bool extra = false) {
    vdkit_library_options lo{};
    lo.struct_size = sizeof(lo);
    const std::string path =
        std::string(VDKIT_TEST_PLUGIN_DIR) + (extra ? std::string(":") + VDKIT_TEST_EXTRA_PLUGIN_DIR : "");
    lo.plugin_path = path.c_str();
    lo.flags = VDKIT_LIB_NO_ENV_PATH | VDKIT_LIB_NO_INSTALL_DIR | VDKIT_LIB_QUIET;
    err = vdkit_error{};
    err.struct_size = sizeof(err);
    vdkit_library *lib = nullptr;
    REQUIRE(vdkit_library_open(&lo, &lib, &err) == VDKIT_OK);
    return lib;
}

inline std::vector<unsigned char> pattern(size_t len, uint32_t seed) {
    std::vector<unsigned char> v(len);
    std::mt19937 rng(seed);
    for (auto &b : v)
        b = static_cast<unsigned char>(rng() | 1); // never zero: distinguishable from holes
    return v;
}

inline std::string describe(const Status &s) {
    return s.to_string();
}
template <class T> std::string describe(const Result<T> &r) {
    return r.is_ok() ? std::string("ok") : r.status().to_string();
}

// REQUIRE that a Status or Result is OK, printing its message if not.
#define REQUIRE_OK(expr)                                                                                               \
    do {                                                                                                               \
        const auto &vdkit_test_r_ = (expr);                                                                            \
        INFO(::vdkit::test::describe(vdkit_test_r_));                                                                  \
        REQUIRE(vdkit_test_r_.is_ok());                                                                                \
    } while (0)

// The whole content of a disk.
// Open a disk (its whole chain), requiring success: the test stops there,
// with the error, otherwise. writable_chain: the images below the top too.
inline std::unique_ptr<Disk> open_disk(Library &lib, const std::string &path, bool writable = false,
                                       bool writable_chain = false) {
    OpenOptions o;
    o.writable = writable;
    o.writable_chain = writable_chain;
    auto d = lib.open(path, o);
    REQUIRE_OK(d);
    return std::move(*d);
}

inline std::vector<unsigned char> read_all(const Disk &d) {
    std::vector<unsigned char> v(static_cast<size_t>(d.size()));
    REQUIRE_OK(d.read(0, v.data(), v.size()));
    return v;
}

// Where a disk's content first differs from a model: "equal", or the offset
// and both bytes (a comparison Catch can print without dumping megabytes).
inline std::string first_difference(const Disk &d, const std::vector<unsigned char> &model) {
    const std::vector<unsigned char> got = read_all(d);
    if (got.size() != model.size())
        return "size " + std::to_string(got.size()) + " instead of " + std::to_string(model.size());
    for (size_t i = 0; i < got.size(); ++i)
        if (got[i] != model[i])
            return "byte " + std::to_string(i) + " is " + std::to_string(got[i]) + ", the model has " +
                   std::to_string(model[i]);
    return "equal";
}

// Overwrite bytes of a file in place (damage for the corruption tests).
inline void patch(const std::string &path, uint64_t offset, const void *data, size_t len) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(static_cast<const char *>(data), static_cast<std::streamsize>(len));
}

inline std::string file_bytes(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

} // namespace vdkit::test

// VDKIT_SKIP(why): this test case cannot run here (a missing file system
// feature, a second file system...). Leaves the test case; the binary exits
// 77 (ctest: skipped) unless something failed. Under CI=true: a failure.
// Use it in the TEST_CASE or SECTION body (it returns from there).
#define VDKIT_SKIP(why)                                                                                                \
    do {                                                                                                               \
        if (::vdkit::test::in_ci()) FAIL("cannot run under CI=true: " << why);                                         \
        WARN("SKIP: " << why);                                                                                         \
        ::vdkit::test::skipped() = true;                                                                               \
        return;                                                                                                        \
    } while (0)

#endif
