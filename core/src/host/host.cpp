#include "host/host.hpp"
#include "io/stores.hpp"

#include "host/host_api.hpp"
#include "loader/plugin_library.hpp"
#include "util/util.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>

namespace fs = std::filesystem;

namespace vdkit {

namespace {
thread_local const Stores *t_loading_stores = nullptr; // for host->log(NULL, ...) during entry calls

const char *level_name(LogLevel l) {
    switch (l) {
    case LogLevel::error:
        return "error";
    case LogLevel::warning:
        return "warning";
    case LogLevel::info:
        return "info";
    case LogLevel::debug:
        return "debug";
    }
    return "log";
}

} // namespace

const Stores *current_loading_stores() {
    return t_loading_stores;
}

Host::~Host() {
    // Entries reference libraries; drop them first, then the libraries.
    registry_.clear();
    libraries_.clear();
}

const vdkit_host_api *Host::api() const noexcept {
    return host_api_table();
}

void Host::log(LogLevel level, std::string_view message) const {
    if (static_cast<uint32_t>(level) > static_cast<uint32_t>(log_level_)) return;
    if (log_) {
        log_(level, message);
        return;
    }
    std::cerr << "vdkit: " << level_name(level) << ": " << message << "\n";
}

Result<std::shared_ptr<Host>> Host::create(const LibraryOptions &options) {
    std::shared_ptr<Host> host(new Host());
    // Reads registry_ and config_ as they are filled in below.
    host->stores_ = std::make_unique<Stores>(
        host->registry_, host->config_,
        [h = host.get()](LogLevel level, std::string_view message) { h->log(level, message); });
    std::string config_path = options.config_file;
    if (config_path.empty())
        if (const char *env = std::getenv("VDKIT_CONFIG"); env && *env) config_path = env;
    if (!config_path.empty()) {
        VDKIT_ASSIGN_OR_RETURN(host->config_, load_config_file(config_path));
    } else {
        host->config_ = default_config();
    }
    host->log_ = options.log;
    host->log_level_ = options.log_level.value_or(host->config_.log_level);

    std::vector<std::string> dirs = options.plugin_paths;
    for (const auto &p : host->config_.plugin_paths) {
        // Relative plugin paths in a config file are relative to that file.
        fs::path path(p);
        if (path.is_relative() && !host->config_.source.empty())
            path = fs::path(host->config_.source).parent_path() / path;
        dirs.push_back(path.string());
    }
    if (options.search_environment)
        if (const char *env = std::getenv("VDKIT_PLUGIN_PATH"))
            for (const auto &p : util::split_path_list(env))
                dirs.push_back(p);
    if (options.search_install_dir) {
        std::string d = default_plugin_dir();
        if (!d.empty()) dirs.push_back(d);
    }
    std::vector<std::string> seen;
    for (const auto &d : dirs) {
        std::error_code ec;
        fs::path canon = fs::weakly_canonical(d, ec);
        std::string key = ec ? d : canon.string();
        bool dup = false;
        for (const auto &s : seen)
            dup = dup || s == key;
        if (dup) continue;
        seen.push_back(key);
        host->load_directory(d);
    }

    // Option defaults in the config file must name real plugins and keys.
    for (const auto &[id, defaults] : host->config_.defaults) {
        size_t slash = id.find('/');
        std::string kind_name = id.substr(0, slash), name = id.substr(slash + 1);
        PluginKind kind = kind_name == "format"   ? PluginKind::format
                          : kind_name == "filter" ? PluginKind::filter
                                                  : PluginKind::transport;
        auto entry = host->registry_.find(kind, name);
        if (!entry)
            return Status(VDKIT_E_CONFIG, host->config_.source + ": defaults." + kind_name + "." + name + ": " +
                                              host->unknown_plugin(kind, name).message());
        for (const auto &[key, value] : defaults.options) {
            Options one{{key, value}};
            auto checked = resolve_options(entry->info, one, OptionUse::create,
                                           host->config_.source + ":" + std::to_string(defaults.lines.at(key)) + ": " +
                                               kind_name + " '" + name + "'");
            if (!checked) return checked.status();
        }
    }
    return host;
}

void Host::load_directory(const std::string &dir) {
    for (const auto &file : list_plugin_files(dir))
        load_library(file);
}

void Host::load_library(const std::string &path) {
    t_loading_stores = stores_.get();
    auto lib = PluginLibrary::load(path, api());
    t_loading_stores = nullptr;
    if (!lib) {
        problems_.push_back({path, lib.status()});
        log(LogLevel::warning, "skipping plugin: " + lib.status().message());
        return;
    }
    std::shared_ptr<const PluginLibrary> keep = *lib;
    bool any = false;
    for (uint32_t i = 0; i < (*lib)->list().count; ++i) {
        auto entry = make_plugin_entry((*lib)->list().plugins[i], path, keep);
        if (!entry) {
            problems_.push_back({path, entry.status()});
            log(LogLevel::warning, "skipping plugin: " + entry.status().message());
            continue;
        }
        Status added = registry_.add(*entry);
        if (!added) {
            problems_.push_back({path, added});
            log(LogLevel::warning, "skipping plugin: " + added.message());
            continue;
        }
        any = true;
    }
    if (any) libraries_.push_back(*lib);
}

namespace {
std::string same_file_key(const std::string &path) {
    std::error_code ec;
    fs::path canon = fs::weakly_canonical(path, ec);
    return ec ? path : canon.string();
}
} // namespace

Result<std::vector<PluginInfo>> Host::load_plugin_file(const std::string &path) {
    std::lock_guard guard(libraries_mu_);
    std::error_code ec;
    if (!fs::is_regular_file(path, ec))
        return Status(VDKIT_E_NOT_FOUND, path + ": no such plugin file (a plugin library file is expected)");
    const std::string key = same_file_key(path);
    for (const auto &l : libraries_)
        if (same_file_key(l->path()) == key)
            return Status(VDKIT_E_EXISTS, path + ": this plugin library is already loaded");
    t_loading_stores = stores_.get();
    auto lib = PluginLibrary::load(path, api());
    t_loading_stores = nullptr;
    if (!lib) return lib.status();
    std::shared_ptr<const PluginLibrary> keep = *lib;
    std::vector<PluginEntryPtr> entries;
    for (uint32_t i = 0; i < (*lib)->list().count; ++i) {
        VDKIT_ASSIGN_OR_RETURN(PluginEntryPtr entry, make_plugin_entry((*lib)->list().plugins[i], path, keep));
        entries.push_back(std::move(entry));
    }
    if (entries.empty()) return Status(VDKIT_E_ABI, path + ": the plugin library provides no plugins");
    VDKIT_TRY(registry_.add_all(entries));
    libraries_.push_back(*lib);
    std::vector<PluginInfo> out;
    for (const auto &e : entries)
        out.push_back(e->info);
    return out;
}

Status Host::unload_plugin_file(const std::string &path) {
    std::lock_guard guard(libraries_mu_);
    const std::string key = same_file_key(path);
    auto it = std::find_if(libraries_.begin(), libraries_.end(),
                           [&](const auto &l) { return same_file_key(l->path()) == key; });
    if (it == libraries_.end()) return Status(VDKIT_E_NOT_FOUND, path + ": no plugin library of that name is loaded");
    VDKIT_TRY(registry_.remove_library(it->get()));
    libraries_.erase(it); // unmapped once the last entry reference is gone
    return Status::ok();
}

Result<Options> Host::options_for(const PluginEntry &plugin, const Options &given, OptionUse use) const {
    return plugin_options(config_, plugin.info, given, use);
}

Status Host::unknown_plugin(PluginKind kind, std::string_view name) const {
    return registry_.unknown_plugin(kind, name);
}

} // namespace vdkit
