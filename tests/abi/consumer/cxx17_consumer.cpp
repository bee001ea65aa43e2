// A C++17 embedder's program: vdkit.hpp (and status.hpp) compile as C++17
// with -Wall -Wextra -Wpedantic -Werror, and the installed vdkit::core
// target does not raise the consumer's language level
// (tests/abi/installed_api_test.sh builds this against the INSTALLED tree).
// Usage: cxx17_consumer DIR — creates DIR/cxx.raw, writes, reads it back.
#include <vdkit/vdkit.hpp>

#include <cstring>
#include <iostream>
#include <vector>

#if __cplusplus != 201703L
#error "built as something other than C++17"
#endif

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    vdkit::LibraryOptions lo;
    lo.search_environment = false; // only the plugins installed beside the library
    auto lib = vdkit::Library::create(lo);
    if (!lib) {
        std::cerr << "FAIL: " << lib.status().to_string() << "\n";
        return 1;
    }
    size_t formats = 0;
    for (const vdkit::PluginInfo &p : (*lib)->plugins())
        if (p.kind == vdkit::PluginKind::format) ++formats;
    vdkit::CreateOptions co;
    co.format = "raw";
    co.size = 1u << 20;
    co.overwrite = true;
    auto disk = (*lib)->create_image(std::string(argv[1]) + "/cxx.raw", co);
    if (!disk) {
        std::cerr << "FAIL: create: " << disk.status().to_string() << "\n";
        return 1;
    }
    std::vector<char> buf(4096), back(4096);
    for (size_t i = 0; i < buf.size(); ++i)
        buf[i] = static_cast<char>(i * 3 + 5);
    vdkit::Status st = (*disk)->write(8192, buf.data(), buf.size());
    if (st.is_ok()) st = (*disk)->read(8192, back.data(), back.size());
    if (!st.is_ok() || std::memcmp(buf.data(), back.data(), buf.size()) != 0) {
        std::cerr << "FAIL: write/read: " << st.to_string() << "\n";
        return 1;
    }
    auto info = (*disk)->image_info(0);
    if (!info || info->format != "raw") {
        std::cerr << "FAIL: image_info\n";
        return 1;
    }
    st = (*disk)->close();
    if (!st.is_ok()) {
        std::cerr << "FAIL: close: " << st.to_string() << "\n";
        return 1;
    }
    std::cout << "OK: C++17 consumer: " << formats << " format plugins (" << vdkit::to_string(vdkit::PluginKind::format)
              << "), " << info->format << " image written and read back; "
              << vdkit::Status(VDKIT_E_IO, "x").with_context("ctx").to_string() << "\n";
    return formats > 0 ? 0 : 1;
}
