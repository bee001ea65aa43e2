// PluginLibrary: one loaded plugin shared library. This folder is the only
// place in vdkit that includes Boost.DLL.
//
// Lifetime: a PluginLibrary is held by shared_ptr from every registry entry
// and every instance its plugins created, so the code stays mapped until the
// last of them is gone (Boost.DLL's "keep the library alive" rule).
#ifndef VDKIT_CORE_LOADER_PLUGIN_LIBRARY_HPP
#define VDKIT_CORE_LOADER_PLUGIN_LIBRARY_HPP

#include "vdkit/plugin.h"
#include "vdkit/status.hpp"

#include <memory>
#include <string>
#include <vector>

namespace vdkit {

class PluginLibrary {
public:
    ~PluginLibrary();
    PluginLibrary(const PluginLibrary &) = delete;
    PluginLibrary &operator=(const PluginLibrary &) = delete;

    // Load path and call its entry with host. Fails (never throws) when the
    // file is not a loadable library, has no vdkit_plugin_entry, the entry
    // throws or returns NULL, or the returned list breaks the ABI rules.
    static Result<std::shared_ptr<PluginLibrary>> load(const std::string &path, const vdkit_host_api *host);

    const std::string &path() const noexcept { return path_; }
    const vdkit_plugin_list &list() const noexcept { return list_; }

private:
    PluginLibrary() = default;
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::string path_;
    vdkit_plugin_list list_{};
};

// Plugin library files (*.so) in dir, sorted by name; none if dir is missing.
// dir naming a *.so file itself: that file.
std::vector<std::string> list_plugin_files(const std::string &dir);

// <directory of the file holding this code>/vdkit/plugins — the install
// layout (libdir/vdkit/plugins) and the build tree use the same shape.
std::string default_plugin_dir();

} // namespace vdkit

#endif
