#include "loader/plugin_library.hpp"

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>

#if !defined(_WIN32)
#include <dlfcn.h>
#endif

namespace vdkit {

namespace {

// Why the dynamic loader refused `path`. Boost.DLL reports every dlopen
// failure as "Bad file descriptor" and clears dlerror(), so on failure ask
// the loader once more for its own words ("file too short", "invalid ELF
// header", "undefined symbol: ..."). Only runs after a failed load.
std::string load_error(const std::string &path, const boost::dll::fs::error_code &ec) {
#if !defined(_WIN32)
    dlerror(); // clear
    if (void *h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) {
        dlclose(h); // loads now (a race with a writer): keep Boost's message
    } else if (const char *why = dlerror()) {
        std::string text(why);
        // dlerror() starts with the path; the caller names it already.
        if (text.rfind(path + ": ", 0) == 0) text.erase(0, path.size() + 2);
        return text;
    }
#endif
    return ec.message();
}

} // namespace

struct PluginLibrary::Impl {
    boost::dll::shared_library lib;
};

PluginLibrary::~PluginLibrary() = default;

Result<std::shared_ptr<PluginLibrary>> PluginLibrary::load(const std::string &path, const vdkit_host_api *host) {
    std::shared_ptr<PluginLibrary> self(new PluginLibrary());
    self->impl_ = std::make_unique<Impl>();
    self->path_ = path;
    boost::dll::fs::error_code ec;
    self->impl_->lib.load(path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
    if (ec) return Status(VDKIT_E_ABI, path + ": cannot load plugin library: " + load_error(path, ec));
    if (!self->impl_->lib.has(VDKIT_PLUGIN_ENTRY_SYMBOL))
        return Status(VDKIT_E_ABI, path + ": not a vdkit plugin (no '" VDKIT_PLUGIN_ENTRY_SYMBOL "' symbol)");

    // Import a plain C function, never a C++ object.
    vdkit_plugin_entry_fn entry = nullptr;
    try {
        entry = self->impl_->lib.get<const vdkit_plugin_list *(const vdkit_host_api *)>(VDKIT_PLUGIN_ENTRY_SYMBOL);
    } catch (const std::exception &e) {
        return Status(VDKIT_E_ABI, path + ": cannot resolve the plugin entry: " + e.what());
    }
    const vdkit_plugin_list *list = nullptr;
    try {
        list = entry(host);
    } catch (...) {
        return Status(VDKIT_E_ABI, path + ": the plugin entry threw an exception");
    }
    if (!list) return Status(VDKIT_E_ABI, path + ": the plugin entry refused to load (returned NULL)");
    constexpr uint32_t min_size = offsetof(vdkit_plugin_list, plugins) + sizeof(void *);
    if (list->struct_size < min_size)
        return Status(VDKIT_E_ABI, path + ": plugin list struct_size " + std::to_string(list->struct_size) +
                                       " is smaller than ABI " + std::to_string(VDKIT_ABI_MAJOR) + ".0 requires (" +
                                       std::to_string(min_size) + ")");
    if (list->abi_major != VDKIT_ABI_MAJOR)
        return Status(VDKIT_E_ABI, path + ": built for ABI " + std::to_string(list->abi_major) + "." +
                                       std::to_string(list->abi_minor) + ", this host speaks " +
                                       std::to_string(VDKIT_ABI_MAJOR) + "." + std::to_string(VDKIT_ABI_MINOR));
    std::memcpy(&self->list_, list, std::min<size_t>(list->struct_size, sizeof(vdkit_plugin_list)));
    if (self->list_.count > 64 || (self->list_.count && !self->list_.plugins))
        return Status(VDKIT_E_ABI, path + ": plugin list has a bad count or no descriptors");
    return self;
}

std::vector<std::string> list_plugin_files(const std::string &dir) {
    std::vector<std::string> out;
    std::error_code ec;
    if (std::filesystem::is_regular_file(dir, ec) && std::filesystem::path(dir).extension() == ".so")
        return {dir}; // a plugin file named where a directory may be
    if (!std::filesystem::is_directory(dir, ec)) return out;
    for (const auto &e : std::filesystem::directory_iterator(dir, ec)) {
        if (!e.is_regular_file(ec) && !e.is_symlink(ec)) continue;
        if (e.path().extension() == ".so") out.push_back(e.path().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::string default_plugin_dir() {
    boost::dll::fs::error_code ec;
    auto here = boost::dll::this_line_location(ec);
    if (ec) return {};
    return (std::filesystem::path(here.parent_path().string()) / "vdkit" / "plugins").string();
}

} // namespace vdkit
