#include "fuzz_support.hpp"

#include <algorithm>
#include <map>
#include <vector>

namespace {
std::map<std::string, std::vector<unsigned char>, std::less<>> g_files;
}

extern "C" __attribute__((visibility("default"))) bool vdkit_fuzz_file(const char *name, size_t name_len,
                                                                       const unsigned char **data, size_t *len) {
    auto it = g_files.find(std::string_view(name, name_len));
    if (it == g_files.end()) return false;
    *data = it->second.data();
    *len = it->second.size();
    return true;
}

namespace vdkit::fuzz {

void set_files(const uint8_t *data, size_t size, const std::string &main_name) {
    g_files.clear();
    const std::string_view all(reinterpret_cast<const char *>(data), size);
    size_t at = all.find(kFileSeparator);
    const std::string_view first = all.substr(0, at);
    g_files[main_name].assign(first.begin(), first.end());
    while (at != std::string_view::npos) {
        const size_t name_at = at + kFileSeparator.size();
        const size_t eol = all.find('\n', name_at);
        if (eol == std::string_view::npos) break;
        const std::string name(all.substr(name_at, eol - name_at));
        at = all.find(kFileSeparator, eol + 1);
        const std::string_view body = all.substr(eol + 1, at == std::string_view::npos ? at : at - eol - 1);
        if (!name.empty() && name != main_name && !g_files.contains(name))
            g_files[name].assign(body.begin(), body.end());
    }
}

const Library &library() {
    static const std::shared_ptr<Library> lib = [] {
        LibraryOptions o;
        o.plugin_paths = {VDKIT_FUZZ_PLUGIN_DIR, VDKIT_FUZZ_MEM_PLUGIN_DIR};
        o.search_environment = false;
        o.search_install_dir = false;
        o.log = [](LogLevel, std::string_view) {};
        auto r = Library::create(o);
        if (!r) {
            fprintf(stderr, "fuzz: cannot create the library: %s\n", r.status().message().c_str());
            abort();
        }
        return std::move(r).value();
    }();
    return *lib;
}

namespace {

constexpr uint64_t kMaxRuns = 256;         // allocation-map steps per open
constexpr uint64_t kMaxDataReads = 16;     // data runs read per open
constexpr uint64_t kReadBytes = 64 * 1024; // bytes read per data run

void exercise_disk(Disk &disk) {
    std::vector<unsigned char> buf(kReadBytes);
    const uint64_t size = disk.size();
    for (size_t i = 0; i < disk.image_count(); ++i)
        (void)disk.image_info(i);
    (void)disk.metadata_keys();
    (void)disk.read(0, buf.data(), std::min<uint64_t>(size, kReadBytes));
    if (size > kReadBytes) (void)disk.read(size - kReadBytes, buf.data(), kReadBytes);
    uint64_t offset = 0, data_reads = 0;
    for (uint64_t step = 0; step < kMaxRuns && offset < size; ++step) {
        auto run = disk.block_status(offset, size - offset);
        if (!run || run->length == 0) break;
        if (run->state == BlockState::data && data_reads++ < kMaxDataReads)
            (void)disk.read(offset, buf.data(), std::min<uint64_t>(run->length, kReadBytes));
        offset += std::min(run->length, size - offset);
    }
}

} // namespace

void exercise_image(const std::string &location, const std::string &format) {
    OpenOptions o;
    o.format = format;
    o.lock = false;
    bool errors = false;
    {
        auto disk = library().open(location, o);
        if (!disk) return;
        exercise_disk(*disk.value());
        auto report = disk.value()->check();
        errors = report && !report->clean();
    }
    if (!errors) return;
    // Repair a private copy (fuzzmem gives every open its own), then the
    // repaired image must still open and read without crashing.
    o.writable = true;
    o.follow_parents = false;
    auto disk = library().open(location, o);
    if (!disk) return;
    CheckOptions repair;
    repair.repair = true;
    (void)disk.value()->check(repair);
    exercise_disk(*disk.value());
    (void)disk.value()->check();
}

} // namespace vdkit::fuzz
