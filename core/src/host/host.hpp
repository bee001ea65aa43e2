// Host: what a Library holds — the configuration, the plugin registries,
// the loaded plugin libraries and the host function table handed to them,
// and the Stores (io/stores.hpp) through which every byte store is opened
// (held by pointer, so that this header needs only its declaration; a file
// calling stores() includes io/stores.hpp itself).
// Disks are opened and created by disk/ (disk/open.hpp), images managed by
// disk/manage.cpp; the public API (api/) calls those directly.
//
// Thread-safety: immutable after create(); all methods are const and safe to
// call concurrently.
#ifndef VDKIT_CORE_HOST_HOST_HPP
#define VDKIT_CORE_HOST_HOST_HPP

#include "config/config_file.hpp"
#include "config/options.hpp"
#include "registry/registry.hpp"
#include "vdkit/vdkit.hpp"

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace vdkit {

class PluginLibrary;
class Stores;

class Host : public std::enable_shared_from_this<Host> {
public:
    static Result<std::shared_ptr<Host>> create(const LibraryOptions &options);
    ~Host();
    Host(const Host &) = delete;
    Host &operator=(const Host &) = delete;

    const Registry &registry() const noexcept { return registry_; }
    const Config &config() const noexcept { return config_; }
    const Stores &stores() const noexcept { return *stores_; }
    const std::vector<LoadProblem> &load_problems() const noexcept { return problems_; }
    const vdkit_host_api *api() const noexcept;

    void log(LogLevel level, std::string_view message) const;

    // Options for a plugin: config-file defaults overlaid by `given`, then
    // validated against the plugin's key table (config/config_file.hpp,
    // plugin_options).
    Result<Options> options_for(const PluginEntry &plugin, const Options &given, OptionUse use) const;
    // NOT_FOUND naming the plugin that is not loaded, a likely typo's
    // correction and what is loaded of that kind (Registry::unknown_plugin).
    Status unknown_plugin(PluginKind kind, std::string_view name) const;

    // Library::load_plugin / unload_plugin: one plugin library at run time.
    Result<std::vector<PluginInfo>> load_plugin_file(const std::string &path);
    Status unload_plugin_file(const std::string &path);

private:
    Host() = default;
    void load_directory(const std::string &dir);
    void load_library(const std::string &path);

    Config config_;
    LogFunction log_;
    LogLevel log_level_ = LogLevel::warning;
    Registry registry_;
    std::vector<LoadProblem> problems_;
    std::vector<std::shared_ptr<PluginLibrary>> libraries_; // guarded by libraries_mu_ after create()
    std::mutex libraries_mu_;
    // Reads registry_ and config_; made by create() (never null after it).
    std::unique_ptr<Stores> stores_;
};

} // namespace vdkit

#endif
