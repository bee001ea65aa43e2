#include "host/host.hpp"

#include "loader/plugin_library.hpp"
#include "util/util.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstdio>
#include <cstring>
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

namespace {

// How far `p` lies from `dir` (both absolute and normal): 0 in dir or below
// it (any depth), k when it lies in the directory k levels up or at most k
// directories below that one (k <= max; for k = 1: `../x`, `../d/x`), -1
// further. The depth limit keeps the set of directories a child of a given
// parent can lie in finite and small (Host::search_children searches it).
int distance(const fs::path &p, const fs::path &dir, int max) {
    fs::path ancestor = dir;
    for (int k = 0; k <= max; ++k) {
        fs::path rel = p.lexically_relative(ancestor);
        if (!rel.empty() && *rel.begin() != "..") {
            if (k == 0) return 0;
            return std::distance(rel.begin(), rel.end()) <= k + 1 ? k : -1;
        }
        if (!ancestor.has_relative_path()) return -1; // the root: nothing above
        ancestor = ancestor.parent_path();
    }
    return -1;
}

int worse(int a, int b) { return a < 0 || b < 0 ? -1 : std::max(a, b); }

const char *file_type_name(fs::file_type t) {
    switch (t) {
    case fs::file_type::directory: return "a directory";
    case fs::file_type::block: return "a block device";
    case fs::file_type::character: return "a character device";
    case fs::file_type::fifo: return "a fifo";
    case fs::file_type::socket: return "a socket";
    default: return "not a regular file";
    }
}

// A path made absolute and normal, without a trailing separator: the
// directory part of `child.vdi` is empty, of `./child.vdi` is `.`, of
// `a/b/../x.vdi` is `a/b/..`; lexically_normal turns `/x/d/.` and
// `/x/d/e/..` into `/x/d/`, whose parent_path() is `/x/d` itself, not the
// directory above. Every spelling must give the same directory.
fs::path normal_path(const fs::path &p) {
    std::error_code ec;
    fs::path a = fs::absolute(p.empty() ? fs::path(".") : p, ec);
    if (ec) a = p;
    a = a.lexically_normal();
    while (a.has_relative_path() && !a.has_filename()) a = a.parent_path();
    return a;
}

fs::path real_path(const fs::path &abs) {
    std::error_code ec;
    fs::path r = fs::weakly_canonical(abs, ec);
    if (ec) return abs;
    return normal_path(r);
}

// A modification id as its format shows it: a VMDK's is its 32-bit CID
// (the plugin stores it as 4 big-endian bytes and a 1 marker, see
// cid_to_uuid in plugins/formats/vmdk), printed as 8 hex digits.
std::string modification_text(std::string_view format, const uint8_t id[16]) {
    bool cid = format == "vmdk" && id[4] == 1;
    for (int i = 5; i < 16; ++i) cid = cid && id[i] == 0;
    if (!cid) return util::uuid_to_string(id);
    char buf[16];
    std::snprintf(buf, sizeof buf, "CID %02x%02x%02x%02x", id[0], id[1], id[2], id[3]);
    return buf;
}

bool under_system_tree(const fs::path &real) {
    for (const char *root : {"/proc", "/sys"}) {
        fs::path rel = real.lexically_relative(root);
        if (!rel.empty() && *rel.begin() != "..") return true;
    }
    return false;
}

// Names from other systems and qemu's pseudo-protocols, which an image's own
// paths never are (shared/reference/formats.md §8.1: CVE-2022-47951,
// CVE-2024-4467): what the name is, or nullptr for a plain path.
const char *foreign_path_form(const std::string &p) {
    if (p.size() >= 2 && p[0] == '\\' && p[1] == '\\') return "a Windows UNC path";
    if (p.size() >= 2 && std::isalpha(static_cast<unsigned char>(p[0])) && p[1] == ':') return "a Windows drive path";
    if (p[0] == '[' && p.find(']') != std::string::npos) return "a VMware datastore path ([datastore] ...)";
    const size_t colon = p.find(':');
    if (colon != std::string::npos && p.find('/') > colon) {
        static const char *const protocols[] = {"json",     "nbd",      "file",  "http",      "https",   "ftp",
                                                "ftps",     "ssh",      "sftp",  "iscsi",     "rbd",     "gluster",
                                                "nfs",      "sheepdog", "vvfat", "fat",       "blkdebug", "blkverify",
                                                "null-co",  "null-aio", "tftp",  "host_device", "host_cdrom"};
        const std::string scheme = p.substr(0, colon);
        for (const char *proto : protocols)
            if (util::iequals(scheme, proto)) return "a protocol name (qemu's '<protocol>:' syntax)";
    }
    return nullptr;
}

} // namespace

Result<Host::NamedPath> Host::resolve_named(const std::string &image_location, std::string_view path, PathUse use,
                                            bool allow_unsafe) const {
    std::string p(path);
    const char *what = use == PathUse::parent ? "parent" : "file";
    if (p.empty()) return Status(VDKIT_E_INVALID_ARGUMENT, image_location + ": names an empty path");
    if (p.find('\0') != std::string::npos)
        return Status(VDKIT_E_CORRUPT, image_location + ": names a path containing a NUL byte");
    const bool url = p.find("://") != std::string::npos;
    if (url) {
        if (!allow_unsafe)
            return Status(VDKIT_E_PERMISSION, image_location + ": refers to '" + p + "' as its " + what +
                                                  ", a URL; an image's own paths are never followed to URLs "
                                                  "(set allow_unsafe_paths to follow it)");
        return NamedPath{p, false};
    }
    if (const char *form = foreign_path_form(p); form && !allow_unsafe)
        return Status(VDKIT_E_PERMISSION, image_location + ": refers to '" + p + "' as its " + what + ", " + form +
                                              "; an image's own paths are plain file names relative to its directory "
                                              "(set allow_unsafe_paths to follow it)");
    if (image_location.find("://") != std::string::npos) {
        // Location-relative join for URL-based images.
        size_t slash = image_location.rfind('/');
        if (p[0] == '/' || p.find("..") != std::string::npos) {
            if (!allow_unsafe)
                return Status(VDKIT_E_PERMISSION, image_location + ": refers to '" + p +
                                                      "' outside its directory; set allow_unsafe_paths to allow it");
        }
        return NamedPath{image_location.substr(0, slash + 1) + p, false};
    }
    fs::path base_dir = fs::path(image_location).parent_path();
    if (base_dir.empty()) base_dir = ".";
    fs::path candidate = fs::path(p).is_absolute() ? fs::path(p) : base_dir / p;
    candidate = candidate.lexically_normal();
    if (allow_unsafe) return NamedPath{candidate.string(), false};

    const fs::path abs_dir = normal_path(base_dir);
    const fs::path abs_cand = normal_path(candidate);
    auto refuse = [&](const std::string &why) {
        return Status(VDKIT_E_PERMISSION, image_location + ": refers to '" + p + "' (" + abs_cand.string() +
                                              ") as its " + what + ", which " + why +
                                              "; set allow_unsafe_paths to allow it");
    };
    std::error_code ec;
    // Where the path really leads: symbolic links resolved, in the
    // directory and on the way.
    const fs::path real_dir = real_path(abs_dir);
    const fs::path real_cand = real_path(abs_cand);
    const int levels = use == PathUse::parent ? kParentLevels : 0;
    const int lexical = distance(abs_cand, abs_dir, levels);
    const int real = distance(real_cand, real_dir, levels);
    const int zone = worse(lexical, real);
    if (zone < 0) {
        std::string where = use == PathUse::parent
                                ? "lies neither in the image's directory (" + abs_dir.string() +
                                      ") nor in the directory above it or a directory directly in that one; a parent must lie in one of those"
                                : "lies outside the image's directory (" + abs_dir.string() +
                                      "); an image's files must lie in its directory or below it";
        if (lexical >= 0) where = "leads through a symbolic link to " + real_cand.string() + ", which " + where;
        return refuse(where);
    }
    if (under_system_tree(real_cand)) return refuse("lies in " + real_cand.string() + ", a system tree");
    fs::file_status status = fs::status(real_cand, ec);
    if (!ec && fs::exists(status) && !fs::is_regular_file(status))
        return refuse("is " + std::string(file_type_name(status.type())) + " (" + real_cand.string() +
                      "), not an image file");
    return NamedPath{candidate.string(), zone > 0, zone > 0 && lexical == 0};
}

Result<std::string> Host::resolve_sibling(const std::string &image_location, std::string_view path,
                                          bool allow_unsafe) const {
    VDKIT_ASSIGN_OR_RETURN(NamedPath named, resolve_named(image_location, path, PathUse::extent, allow_unsafe));
    return named.location;
}

Status Host::verify_parent(const std::string &child_location, std::string_view hint, const NamedPath &where,
                           std::string_view child_format, const uint8_t recorded_uuid[16],
                           const uint8_t recorded_modification[16], std::string_view parent_format,
                           const vdkit_image_info &parent) {
    if (!where.beyond) return Status::ok();
    const bool uuids = !util::uuid_is_nil(recorded_uuid) && !util::uuid_is_nil(parent.uuid);
    if (uuids && std::memcmp(recorded_uuid, parent.uuid, 16) == 0) return Status::ok();
    const bool modification = !uuids && child_format == parent_format && !util::uuid_is_nil(recorded_modification) &&
                              !util::uuid_is_nil(parent.modification_uuid);
    if (modification && std::memcmp(recorded_modification, parent.modification_uuid, 16) == 0) return Status::ok();
    std::string why;
    if (uuids)
        why = "the image there is " + util::uuid_to_string(parent.uuid) + ", not the parent " +
              util::uuid_to_string(recorded_uuid) + " it records";
    else if (modification)
        why = "the image there is not the one it records (modification id " +
              modification_text(parent_format, parent.modification_uuid) + ", recorded " +
              modification_text(parent_format, recorded_modification) + ")";
    else if (util::uuid_is_nil(parent.uuid) && util::uuid_is_nil(parent.modification_uuid))
        why = "the file there (read as '" + std::string(parent_format) +
              "') has no identity to verify it by — only an image of a known format can be a parent there";
    else
        why = "it records no identity of its parent to verify the image there by";
    return Status(VDKIT_E_PERMISSION, child_location + ": its parent '" + std::string(hint) + "' (" +
                                          normal_path(where.location).string() +
                                          (where.via_link ? ") leads through a symbolic link" : ") lies") +
                                          " outside its directory, and " + why +
                                          "; set allow_unsafe_paths to allow it");
}

Status Host::check_link(const std::string &child_location, std::string_view hint, std::string_view child_format,
                        std::string_view parent_format, const vdkit_image_info &parent, bool allow_unsafe) const {
    VDKIT_ASSIGN_OR_RETURN(NamedPath where, resolve_named(child_location, hint, PathUse::parent, allow_unsafe));
    return verify_parent(child_location, hint, where, child_format, parent.uuid, parent.modification_uuid,
                         parent_format, parent);
}

} // namespace vdkit
