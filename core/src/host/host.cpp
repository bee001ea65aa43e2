#include "host/host.hpp"

#include "loader/plugin_library.hpp"
#include "util/util.hpp"

#include <cstdlib>
#include <filesystem>
#include <iostream>

namespace fs = std::filesystem;

namespace vdkit {

namespace {
thread_local const Host *t_loading_host = nullptr; // for host->log(NULL, ...) during entry calls

const char *level_name(LogLevel l) {
    switch (l) {
    case LogLevel::error: return "error";
    case LogLevel::warning: return "warning";
    case LogLevel::info: return "info";
    case LogLevel::debug: return "debug";
    }
    return "log";
}

} // namespace

const Host *current_loading_host() { return t_loading_host; }
const vdkit_host_api *host_api_table();

Host::~Host() {
    // Entries reference libraries; drop them first, then the libraries.
    registry_ = Registry();
    libraries_.clear();
}

const vdkit_host_api *Host::api() const noexcept { return host_api_table(); }

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
            for (const auto &p : util::split_path_list(env)) dirs.push_back(p);
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
        for (const auto &s : seen) dup = dup || s == key;
        if (dup) continue;
        seen.push_back(key);
        host->load_directory(d);
    }

    // Option defaults in the config file must name real plugins and keys.
    for (const auto &[id, defaults] : host->config_.defaults) {
        size_t slash = id.find('/');
        std::string kind_name = id.substr(0, slash), name = id.substr(slash + 1);
        PluginKind kind = kind_name == "format" ? PluginKind::format
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
    for (const auto &file : list_plugin_files(dir)) load_library(file);
}

void Host::load_library(const std::string &path) {
    t_loading_host = this;
    auto lib = PluginLibrary::load(path, api());
    t_loading_host = nullptr;
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

Result<Options> Host::options_for(const PluginEntry &plugin, const Options &given, OptionUse use) const {
    Options merged;
    const char *kind = to_string(plugin.info.kind);
    auto it = config_.defaults.find(std::string(kind) + "/" + plugin.info.name);
    if (it != config_.defaults.end()) {
        for (const auto &[k, v] : it->second.options) {
            // Create-only defaults do not apply to opens.
            const ConfigKey *key = plugin.info.key(k);
            if (use == OptionUse::create || !(key && key->create_only)) merged[k] = v;
        }
    }
    for (const auto &[k, v] : given) {
        // A given key replaces a default spelled differently in case.
        for (auto m = merged.begin(); m != merged.end();)
            m = util::iequals(m->first, k) ? merged.erase(m) : std::next(m);
        merged[k] = v;
    }
    return resolve_options(plugin.info, merged, use, std::string(kind) + " '" + plugin.info.name + "'");
}

Status Host::unknown_plugin(PluginKind kind, std::string_view name) const {
    const std::string kind_name = to_string(kind);
    std::string msg = "no " + kind_name + " plugin named '" + std::string(name) + "' is loaded";
    const std::vector<std::string> names = registry_.names(kind);
    if (auto guess = util::closest_match(name, names)) msg += " — did you mean '" + *guess + "'?";
    std::string all;
    for (const auto &n : names) all += (all.empty() ? "" : ", ") + n;
    msg += all.empty() ? " (no " + kind_name + " plugins are loaded)" : " (available: " + all + ")";
    return Status(VDKIT_E_NOT_FOUND, msg);
}

Result<PluginEntryPtr> Host::transport_for(const std::string &location) const {
    std::string scheme = "file";
    size_t sep = location.find("://");
    if (sep != std::string::npos && sep > 0) scheme = util::to_lower(location.substr(0, sep));
    auto t = registry_.find(PluginKind::transport, scheme);
    if (!t) {
        std::string msg = "no transport plugin for '" + scheme + "' (needed for " + location + ")";
        if (registry_.list(PluginKind::transport).empty())
            msg += "; no transports are loaded at all — check VDKIT_PLUGIN_PATH or the plugin_paths configuration";
        return Status(VDKIT_E_NOT_FOUND, msg);
    }
    return t;
}

vdkit_ctx Host::make_ctx(const PluginEntry *plugin, const Options *options) const {
    vdkit_ctx ctx;
    ctx.host = this;
    ctx.plugin = plugin;
    ctx.options = options;
    ctx.allow_unsafe_paths = config_.allow_unsafe_paths;
    return ctx;
}

Result<std::string> Host::resolve_sibling(const std::string &image_location, std::string_view path,
                                          bool allow_unsafe) const {
    std::string p(path);
    if (p.empty()) return Status(VDKIT_E_INVALID_ARGUMENT, image_location + ": names an empty path");
    if (p.find('\0') != std::string::npos)
        return Status(VDKIT_E_CORRUPT, image_location + ": names a path containing a NUL byte");
    const bool url = p.find("://") != std::string::npos;
    if (url) {
        if (!allow_unsafe)
            return Status(VDKIT_E_PERMISSION, image_location + ": refers to '" + p +
                                                  "', a URL; set allow_unsafe_paths to follow it");
        return p;
    }
    if (image_location.find("://") != std::string::npos) {
        // Location-relative join for URL-based images.
        size_t slash = image_location.rfind('/');
        if (p[0] == '/' || p.find("..") != std::string::npos) {
            if (!allow_unsafe)
                return Status(VDKIT_E_PERMISSION, image_location + ": refers to '" + p +
                                                      "' outside its directory; set allow_unsafe_paths to allow it");
        }
        return image_location.substr(0, slash + 1) + p;
    }
    fs::path base_dir = fs::path(image_location).parent_path();
    if (base_dir.empty()) base_dir = ".";
    fs::path candidate = fs::path(p).is_absolute() ? fs::path(p) : base_dir / p;
    candidate = candidate.lexically_normal();
    if (allow_unsafe) return candidate.string();

    auto refuse = [&](const std::string &why) {
        return Status(VDKIT_E_PERMISSION, image_location + ": refers to '" + p + "', which " + why +
                                              " (" + base_dir.string() +
                                              "); set allow_unsafe_paths to allow it");
    };
    std::error_code ec;
    fs::path abs_dir = fs::absolute(base_dir, ec).lexically_normal();
    fs::path abs_cand = fs::absolute(candidate, ec).lexically_normal();
    fs::path rel = abs_cand.lexically_relative(abs_dir);
    if (rel.empty() || *rel.begin() == "..") return refuse("lies outside the image's directory");
    // Symbolic links must not lead out either.
    fs::path real_dir = fs::weakly_canonical(abs_dir, ec);
    fs::path real_cand = fs::weakly_canonical(abs_cand, ec);
    if (!ec) {
        fs::path real_rel = real_cand.lexically_relative(real_dir);
        if (real_rel.empty() || *real_rel.begin() == "..")
            return refuse("leads outside the image's directory through a symbolic link");
    }
    return candidate.string();
}

} // namespace vdkit
