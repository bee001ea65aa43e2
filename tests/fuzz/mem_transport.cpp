// Fuzzing transport `fuzzmem`: files held in memory by the fuzz target that
// loaded it, so a fuzzed image is opened through the same host, probe and
// format-plugin path as a real file, with no disk I/O per input.
//
// The files come from the executable that loads this plugin: it exports
// vdkit_fuzz_file() (tests/fuzz/fuzz_support.cpp). Locations are
// "fuzzmem://NAME"; each open gets a private copy, so a writable open (a
// repair) changes nothing the next open sees. Growth is bounded (kMaxGrowth
// past the input) so the transport itself never hides an unbounded
// allocation behind the format's: a write beyond it fails with NO_MEMORY.
//
// Test-only; never installed.
#include "vdkit/plugin.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

extern "C" {
// Exported by the fuzz executable: the bytes of file `name` (ptr, len) and
// true, or false when no such file exists. Weak so the plugin links alone.
__attribute__((weak)) bool vdkit_fuzz_file(const char *name, size_t name_len, const unsigned char **data, size_t *len);
}

using namespace vdkit;
using sdk::Context;
using sdk::Error;

namespace {

constexpr uint64_t kMaxGrowth = 64ull << 20;

std::string_view name_of(std::string_view location) {
    constexpr std::string_view scheme = "fuzzmem://";
    if (location.substr(0, scheme.size()) == scheme) location.remove_prefix(scheme.size());
    return location;
}

bool lookup(std::string_view location, const unsigned char **data, size_t *len) {
    const std::string_view name = name_of(location);
    return vdkit_fuzz_file != nullptr && vdkit_fuzz_file(name.data(), name.size(), data, len);
}

class MemFile {
public:
    static std::unique_ptr<MemFile> open(Context &, std::string_view location, uint32_t flags) {
        const unsigned char *data = nullptr;
        size_t len = 0;
        if (flags & VDKIT_OPEN_CREATE) throw Error(VDKIT_E_READ_ONLY, "fuzzmem: cannot create files");
        if (!lookup(location, &data, &len)) throw Error(VDKIT_E_NOT_FOUND, "fuzzmem: no file " + std::string(location));
        auto f = std::make_unique<MemFile>();
        f->bytes_.assign(data, data + len);
        f->limit_ = len + kMaxGrowth;
        f->writable_ = (flags & VDKIT_OPEN_WRITE) != 0;
        return f;
    }
    void pread(Context &, uint64_t off, void *buf, uint64_t len) {
        if (off > bytes_.size() || len > bytes_.size() - off) throw Error(VDKIT_E_IO, "fuzzmem: short read");
        if (len) std::memcpy(buf, bytes_.data() + off, len);
    }
    void pwrite(Context &, uint64_t off, const void *buf, uint64_t len) {
        if (!writable_) throw Error(VDKIT_E_READ_ONLY, "fuzzmem: opened read-only");
        if (off > limit_ || len > limit_ - off) throw Error(VDKIT_E_NO_MEMORY, "fuzzmem: write beyond the bound");
        if (off + len > bytes_.size()) bytes_.resize(off + len);
        if (len) std::memcpy(bytes_.data() + off, buf, len);
    }
    void flush(Context &) {}
    void truncate(Context &, uint64_t size) {
        if (!writable_) throw Error(VDKIT_E_READ_ONLY, "fuzzmem: opened read-only");
        if (size > limit_) throw Error(VDKIT_E_NO_MEMORY, "fuzzmem: truncate beyond the bound");
        bytes_.resize(size);
    }
    uint64_t size(Context &) { return bytes_.size(); }
    static bool exists(Context &, std::string_view location) {
        const unsigned char *data = nullptr;
        size_t len = 0;
        return lookup(location, &data, &len);
    }

private:
    std::vector<unsigned char> bytes_;
    uint64_t limit_ = 0;
    bool writable_ = false;
};

const vdkit_plugin_descriptor *mem_transport() {
    static const vdkit_plugin_descriptor d = sdk::describe(
        VDKIT_KIND_TRANSPORT,
        sdk::DescriptorSpec{"fuzzmem", "1", "In-memory files of a fuzz target (tests only)", 0, nullptr, 0},
        sdk::transport_ops<MemFile>());
    return &d;
}

} // namespace
VDKIT_SDK_ENTRY(mem_transport())
