#include "registry/registry.hpp"

#include "util/util.hpp"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <mutex>

namespace vdkit {

namespace {

std::string copy_str(vdkit_str s) {
    return s.data ? std::string(s.data, static_cast<size_t>(s.size)) : std::string();
}

// Sizes of the ABI 2.0 structs: anything shorter is refused.
constexpr uint32_t kDescriptorMin = offsetof(vdkit_plugin_descriptor, ops) + sizeof(void *);
constexpr uint32_t kKeyMin = offsetof(vdkit_config_key, max_value) + sizeof(int64_t);
constexpr uint32_t kFormatMin = offsetof(vdkit_format_ops, measure) + sizeof(void *);
constexpr uint32_t kTransportMin = offsetof(vdkit_transport_ops, exists) + sizeof(void *);
constexpr uint32_t kFilterMin = offsetof(vdkit_filter_ops, extents) + sizeof(void *);

// Copy min(their size, ours) bytes of a size-stamped struct and zero-fill the rest.
template <class S>
Status copy_sized(const void *src, uint32_t min_size, const char *what, const std::string &plugin, S &out) {
    if (!src) return Status(VDKIT_E_ABI, "plugin '" + plugin + "': no " + what);
    uint32_t their = *static_cast<const uint32_t *>(src);
    if (their < min_size)
        return Status(VDKIT_E_ABI, "plugin '" + plugin + "': " + what + " struct_size " + std::to_string(their) +
                                       " is smaller than ABI " + std::to_string(VDKIT_ABI_MAJOR) + ".0 requires (" +
                                       std::to_string(min_size) + ")");
    std::memset(&out, 0, sizeof(S));
    std::memcpy(&out, src, std::min<size_t>(their, sizeof(S)));
    return Status::ok();
}

bool valid_name(std::string_view n) {
    if (n.empty() || n.size() > 64 || !(n[0] >= 'a' && n[0] <= 'z')) return false;
    for (char c : n)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
    return true;
}

// A URL scheme a transport may declare (RFC 3986 section 3.1, lower case):
// [a-z][a-z0-9+.-]*, at most 32 characters.
bool valid_scheme(std::string_view n) {
    if (n.empty() || n.size() > 32 || !(n[0] >= 'a' && n[0] <= 'z')) return false;
    for (char c : n)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.')) return false;
    return true;
}

// Whether transport `e` serves `scheme`: its name or one of its schemes.
bool serves(const PluginEntry &e, std::string_view scheme) {
    if (util::iequals(e.info.name, scheme)) return true;
    for (const std::string &s : e.info.schemes)
        if (util::iequals(s, scheme)) return true;
    return false;
}

std::vector<std::string> split_enum(std::string_view s) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size() && !s.empty()) {
        size_t bar = s.find('|', start);
        std::string_view item = s.substr(start, bar == std::string_view::npos ? std::string_view::npos : bar - start);
        if (!item.empty()) out.emplace_back(item);
        if (bar == std::string_view::npos) break;
        start = bar + 1;
    }
    return out;
}

} // namespace

std::vector<std::string> capability_names(uint64_t caps) {
    // Retired bits (VDKIT_CAP_OBSOLETE_*) have no name: nothing sets them.
    static const std::pair<uint64_t, const char *> names[] = {
        {VDKIT_CAP_CREATE_FIXED, "create-fixed"},
        {VDKIT_CAP_CREATE_DYNAMIC, "create-dynamic"},
        {VDKIT_CAP_CREATE_SPLIT, "create-split"},
        {VDKIT_CAP_DIFF, "diff"},
        {VDKIT_CAP_DISCARD, "discard"},
        {VDKIT_CAP_UUID, "uuid"},
        {VDKIT_CAP_FILE_BASED, "file-based"},
        {VDKIT_CAP_COMPACT, "compact"},
        {VDKIT_CAP_RESIZE, "resize"},
        {VDKIT_CAP_CHECK, "check"},
        {VDKIT_CAP_METADATA, "metadata"},
        {VDKIT_CAP_COMMENT, "comment"},
        {VDKIT_CAP_GEOMETRY, "geometry"},
        {VDKIT_CAP_ZERO_STATE, "zero-state"},
        {VDKIT_CAP_THREAD_SAFE, "thread-safe"},
        {VDKIT_CAP_EXTENTS, "extents"},
        {VDKIT_CAP_LOCKING, "locking"},
        {VDKIT_CAP_FILTER_FILE, "file-filter"},
        {VDKIT_CAP_RENAME, "rename"},
        {VDKIT_CAP_FILTER_DISK, "disk-filter"},
    };
    std::vector<std::string> out;
    for (auto [bit, name] : names)
        if (caps & bit) out.emplace_back(name);
    return out;
}

Result<PluginEntryPtr> make_plugin_entry(const vdkit_plugin_descriptor *desc, const std::string &source,
                                         std::shared_ptr<const PluginLibrary> library) {
    if (!desc) return Status(VDKIT_E_ABI, source + ": plugin list contains a NULL descriptor");
    vdkit_plugin_descriptor d{};
    VDKIT_TRY(copy_sized(desc, kDescriptorMin, "descriptor", source, d));
    auto entry = std::make_shared<PluginEntry>();
    PluginInfo &info = entry->info;
    info.name = copy_str(d.name);
    const std::string who = "plugin '" + info.name + "' in " + source;
    if (d.abi_major != VDKIT_ABI_MAJOR)
        return Status(VDKIT_E_ABI, who + " was built for ABI " + std::to_string(d.abi_major) + "." +
                                       std::to_string(d.abi_minor) + ", this host speaks " +
                                       std::to_string(VDKIT_ABI_MAJOR) + "." + std::to_string(VDKIT_ABI_MINOR));
    if (!valid_name(info.name))
        return Status(VDKIT_E_ABI, "plugin in " + source + " has an invalid name '" + info.name +
                                       "' (expected [a-z][a-z0-9_-]*, at most 64 characters)");
    if (d.kind < VDKIT_KIND_FORMAT || d.kind > VDKIT_KIND_TRANSPORT)
        return Status(VDKIT_E_ABI, who + " has unknown kind " + std::to_string(d.kind));
    info.kind = static_cast<PluginKind>(d.kind);
    info.version = copy_str(d.version);
    info.description = copy_str(d.description);
    info.capabilities = d.capabilities;
    info.capability_names = capability_names(d.capabilities);
    info.source = source;
    info.abi_major = d.abi_major;
    info.abi_minor = d.abi_minor;

    if (d.config_key_count > 256) return Status(VDKIT_E_ABI, who + " declares too many config keys");
    if (d.config_key_count && (!d.config_keys || d.config_key_size < kKeyMin))
        return Status(VDKIT_E_ABI, who + ": config key table missing or config_key_size too small");
    for (uint32_t i = 0; i < d.config_key_count; ++i) {
        const auto *raw = reinterpret_cast<const unsigned char *>(d.config_keys) + size_t(i) * d.config_key_size;
        vdkit_config_key k{};
        VDKIT_TRY(copy_sized(raw, kKeyMin, "config key", info.name, k));
        ConfigKey key;
        key.name = copy_str(k.name);
        if (!valid_name(key.name))
            return Status(VDKIT_E_ABI, who + " has an invalid config key name '" + key.name + "'");
        if (k.type < VDKIT_KEY_STRING || k.type > VDKIT_KEY_ENUM)
            return Status(VDKIT_E_ABI, who + ": key '" + key.name + "' has unknown type " + std::to_string(k.type));
        key.type = static_cast<KeyType>(k.type);
        key.mandatory = k.flags & VDKIT_KEY_MANDATORY;
        key.expert = k.flags & VDKIT_KEY_EXPERT;
        key.create_only = k.flags & VDKIT_KEY_CREATE_ONLY;
        key.secret = k.flags & VDKIT_KEY_SECRET;
        key.default_value = copy_str(k.default_value);
        key.help = copy_str(k.help);
        key.enum_values = split_enum(copy_str(k.enum_values));
        key.min_value = k.min_value;
        key.max_value = k.max_value;
        if (key.type == KeyType::enumeration && key.enum_values.empty())
            return Status(VDKIT_E_ABI, who + ": enum key '" + key.name + "' lists no values");
        for (const ConfigKey &other : info.keys)
            if (other.name == key.name) return Status(VDKIT_E_ABI, who + " declares key '" + key.name + "' twice");
        info.keys.push_back(std::move(key));
    }
    if (d.extension_count > 64 || (d.extension_count && !d.extensions))
        return Status(VDKIT_E_ABI, who + ": bad file extension table");
    for (uint32_t i = 0; i < d.extension_count; ++i)
        info.extensions.push_back(util::to_lower(copy_str(d.extensions[i])));
    // URL schemes (2.1): zero-filled, so absent, for a 2.0 descriptor.
    if (d.scheme_count > 16 || (d.scheme_count && !d.schemes))
        return Status(VDKIT_E_ABI, who + ": bad URL scheme table");
    if (d.scheme_count && d.kind != VDKIT_KIND_TRANSPORT)
        return Status(VDKIT_E_ABI, who + " declares URL schemes but is no transport");
    for (uint32_t i = 0; i < d.scheme_count; ++i) {
        std::string scheme = copy_str(d.schemes[i]);
        if (!valid_scheme(scheme))
            return Status(VDKIT_E_ABI, who + " declares an invalid URL scheme '" + scheme +
                                           "' (expected lower case [a-z][a-z0-9+.-]*, at most 32 characters)");
        if (scheme == info.name || std::find(info.schemes.begin(), info.schemes.end(), scheme) != info.schemes.end())
            return Status(VDKIT_E_ABI, who + " declares URL scheme '" + scheme + "' twice");
        info.schemes.push_back(std::move(scheme));
    }

    switch (info.kind) {
    case PluginKind::format:
        VDKIT_TRY(copy_sized(d.ops, kFormatMin, "format ops", who, entry->format));
        if (!entry->format.probe || !entry->format.open || !entry->format.close || !entry->format.get_info ||
            !entry->format.read)
            return Status(VDKIT_E_ABI, who + " lacks a required format callback (probe, open, close, get_info, read)");
        break;
    case PluginKind::transport:
        VDKIT_TRY(copy_sized(d.ops, kTransportMin, "transport ops", who, entry->transport));
        if (!entry->transport.open || !entry->transport.close || !entry->transport.pread || !entry->transport.get_size)
            return Status(VDKIT_E_ABI, who + " lacks a required transport callback (open, close, pread, get_size)");
        break;
    case PluginKind::filter:
        VDKIT_TRY(copy_sized(d.ops, kFilterMin, "filter ops", who, entry->filter));
        if (!entry->filter.open || !entry->filter.close)
            return Status(VDKIT_E_ABI, who + " lacks a required filter callback (open, close)");
        break;
    }
    entry->library = std::move(library);
    return PluginEntryPtr(std::move(entry));
}

namespace {
Status name_taken(const PluginEntry &entry, const PluginEntry &existing) {
    return Status(VDKIT_E_EXISTS, std::string(to_string(entry.info.kind)) + " plugin '" + entry.info.name + "' from " +
                                      entry.info.source + " is already provided by " + existing.info.source +
                                      "; keeping the first");
}

// A transport's name and schemes are all URL schemes: none may be served by
// another transport already (nor by an earlier one of a batch).
const std::string *scheme_clash(const PluginEntry &entry, const PluginEntry &other) {
    if (entry.info.kind != PluginKind::transport || other.info.kind != PluginKind::transport) return nullptr;
    if (serves(other, entry.info.name)) return &entry.info.name;
    for (const std::string &s : entry.info.schemes)
        if (serves(other, s)) return &s;
    return nullptr;
}

Status scheme_taken(const PluginEntry &entry, const PluginEntry &existing, const std::string &scheme) {
    return Status(VDKIT_E_EXISTS, "transport plugin '" + entry.info.name + "' from " + entry.info.source +
                                      " serves URL scheme '" + scheme + "', which transport '" + existing.info.name +
                                      "' from " + existing.info.source + " already serves; keeping the first");
}
} // namespace

Status Registry::add(PluginEntryPtr entry) {
    std::unique_lock lock(mu_);
    if (auto existing = find_locked(entry->info.kind, entry->info.name)) return name_taken(*entry, *existing);
    for (const auto &e : entries_)
        if (const std::string *s = scheme_clash(*entry, *e)) return scheme_taken(*entry, *e, *s);
    entries_.push_back(std::move(entry));
    return Status::ok();
}

Status Registry::add_all(const std::vector<PluginEntryPtr> &entries) {
    std::unique_lock lock(mu_);
    for (size_t i = 0; i < entries.size(); ++i) {
        if (auto existing = find_locked(entries[i]->info.kind, entries[i]->info.name))
            return name_taken(*entries[i], *existing);
        for (const auto &e : entries_)
            if (const std::string *s = scheme_clash(*entries[i], *e)) return scheme_taken(*entries[i], *e, *s);
        for (size_t j = 0; j < i; ++j) {
            if (entries[j]->info.kind == entries[i]->info.kind &&
                util::iequals(entries[j]->info.name, entries[i]->info.name))
                return name_taken(*entries[i], *entries[j]);
            if (const std::string *s = scheme_clash(*entries[i], *entries[j]))
                return scheme_taken(*entries[i], *entries[j], *s);
        }
    }
    entries_.insert(entries_.end(), entries.begin(), entries.end());
    return Status::ok();
}

Status Registry::remove_library(const PluginLibrary *library) {
    std::unique_lock lock(mu_);
    bool any = false;
    for (const auto &e : entries_) {
        if (e->library.get() != library) continue;
        any = true;
        // The registry's own reference is the only one when nothing uses it.
        if (e.use_count() > 1)
            return Status(VDKIT_E_BUSY,
                          std::string(to_string(e->info.kind)) + " plugin '" + e->info.name + "' from " +
                              e->info.source +
                              " is in use (an open disk or a call in progress); close what uses it first");
    }
    if (!any) return Status(VDKIT_E_NOT_FOUND, "no registered plugin came from that library");
    std::erase_if(entries_, [&](const PluginEntryPtr &e) { return e->library.get() == library; });
    return Status::ok();
}

PluginEntryPtr Registry::find_locked(PluginKind kind, std::string_view name) const {
    for (const auto &e : entries_)
        if (e->info.kind == kind && util::iequals(e->info.name, name)) return e;
    return nullptr;
}

PluginEntryPtr Registry::find(PluginKind kind, std::string_view name) const {
    std::shared_lock lock(mu_);
    return find_locked(kind, name);
}

PluginEntryPtr Registry::find_transport_for_scheme(std::string_view scheme) const {
    std::shared_lock lock(mu_);
    for (const auto &e : entries_)
        if (e->info.kind == PluginKind::transport && serves(*e, scheme)) return e;
    return nullptr;
}

std::vector<PluginEntryPtr> Registry::list(PluginKind kind) const {
    std::shared_lock lock(mu_);
    std::vector<PluginEntryPtr> out;
    for (const auto &e : entries_)
        if (e->info.kind == kind) out.push_back(e);
    return out;
}

std::vector<PluginEntryPtr> Registry::all() const {
    std::shared_lock lock(mu_);
    return entries_;
}

std::vector<std::string> Registry::names(PluginKind kind) const {
    std::shared_lock lock(mu_);
    std::vector<std::string> out;
    for (const auto &e : entries_)
        if (e->info.kind == kind) out.push_back(e->info.name);
    return out;
}

Status Registry::unknown_plugin(PluginKind kind, std::string_view name) const {
    const std::string kind_name = to_string(kind);
    std::string msg = "no " + kind_name + " plugin named '" + std::string(name) + "' is loaded";
    const std::vector<std::string> known = names(kind);
    if (auto guess = util::closest_match(name, known)) msg += " — did you mean '" + *guess + "'?";
    std::string all;
    for (const auto &n : known)
        all += (all.empty() ? "" : ", ") + n;
    msg += all.empty() ? " (no " + kind_name + " plugins are loaded)" : " (available: " + all + ")";
    return Status(VDKIT_E_NOT_FOUND, msg);
}

void Registry::clear() {
    std::unique_lock lock(mu_);
    entries_.clear();
}

} // namespace vdkit
