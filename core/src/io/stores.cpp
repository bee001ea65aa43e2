// Stores: opening byte stores through transports (with file-level filter
// stacks), and the file operations of transports (remove, rename, exists).
#include "io/stores.hpp"

#include "util/util.hpp"

namespace vdkit {

Stores::Stores(const Registry &registry, const Config &config, LogSink log)
    : registry_(registry), config_(config), log_(std::move(log)) {}

void Stores::log(LogLevel level, std::string_view message) const {
    if (log_) log_(level, message);
}

Result<PluginEntryPtr> Stores::transport_for(const std::string &location) const {
    std::string scheme = "file";
    size_t sep = location.find("://");
    if (sep != std::string::npos && sep > 0) scheme = util::to_lower(location.substr(0, sep));
    auto t = registry_.find_transport_for_scheme(scheme);
    if (!t) {
        std::string msg = "no transport plugin for URL scheme '" + scheme + "' (needed for " + location + ")";
        const auto transports = registry_.list(PluginKind::transport);
        if (transports.empty()) {
            msg += "; no transports are loaded at all — check VDKIT_PLUGIN_PATH or the plugin_paths configuration";
        } else {
            std::string known;
            for (const auto &e : transports) {
                known += (known.empty() ? "" : ", ") + e->info.name + "://";
                for (const std::string &s : e->info.schemes)
                    known += ", " + s + "://";
            }
            msg += " (the loaded transports serve " + known + ")";
        }
        return Status(VDKIT_E_NOT_FOUND, msg);
    }
    return t;
}

vdkit_ctx Stores::make_ctx(const PluginEntry *plugin, const Options *options) const {
    vdkit_ctx ctx;
    ctx.stores = this;
    ctx.plugin = plugin;
    ctx.options = options;
    ctx.allow_unsafe_paths = config_.allow_unsafe_paths;
    return ctx;
}

Result<ByteStorePtr> Stores::open_store(const std::string &location, uint32_t flags,
                                        const Options &transport_options) const {
    VDKIT_ASSIGN_OR_RETURN(PluginEntryPtr t, transport_for(location));
    VDKIT_ASSIGN_OR_RETURN(Options opts, plugin_options(config_, t->info, transport_options, OptionUse::open));
    return open_transport_store(*this, t, location, flags, std::move(opts));
}

Result<ByteStorePtr> Stores::open_store(const std::string &location, uint32_t flags, const Options &transport_options,
                                        const FilterStack &filters) const {
    VDKIT_ASSIGN_OR_RETURN(ByteStorePtr store, open_store(location, flags, transport_options));
    return stack_filters(*this, std::move(store), flags, filters);
}

Result<FilterStack> Stores::resolve_filters(const std::vector<FilterSpec> &specs, OptionUse use) const {
    FilterStack stack;
    for (const FilterSpec &spec : specs) {
        PluginEntryPtr f = registry_.find(PluginKind::filter, spec.name);
        if (!f) return registry_.unknown_plugin(PluginKind::filter, spec.name);
        if (!f->info.has(VDKIT_CAP_FILTER_FILE) && !f->info.has(VDKIT_CAP_FILTER_DISK))
            return Status(VDKIT_E_NOT_SUPPORTED, "filter '" + spec.name +
                                                     "' declares neither file-level nor disk-level use (capability "
                                                     "file-filter or disk-filter)");
        VDKIT_ASSIGN_OR_RETURN(Options opts,
                               plugin_options(config_, f->info, spec.options, use)); // errors name the filter
        stack.push_back(FilterLayer{f, std::move(opts)});
    }
    return stack;
}

Status Stores::remove_location(const std::string &location) const {
    VDKIT_ASSIGN_OR_RETURN(PluginEntryPtr t, transport_for(location));
    if (!t->transport.remove) return not_supported("removing files", t->info.name, location);
    // The configuration's defaults for the transport (an s3 endpoint and keys).
    VDKIT_ASSIGN_OR_RETURN(const Options opts, plugin_options(config_, t->info, Options{}, OptionUse::open));
    vdkit_ctx ctx = make_ctx(t.get(), &opts);
    uint32_t rc = call_plugin(ctx, t->transport.remove, &ctx, vdkit_str{location.data(), location.size()});
    if (rc != VDKIT_OK) return status_from_plugin(ctx, rc, "remove " + location);
    return Status::ok();
}

Status Stores::rename_location(const std::string &from, const std::string &to) const {
    VDKIT_ASSIGN_OR_RETURN(PluginEntryPtr t, transport_for(from));
    VDKIT_ASSIGN_OR_RETURN(PluginEntryPtr tt, transport_for(to));
    if (t != tt)
        return Status(VDKIT_E_NOT_SUPPORTED, "cannot move " + from + " to " + to +
                                                 ": they are reached through different transports ('" + t->info.name +
                                                 "', '" + tt->info.name + "')");
    if (!t->transport.rename) return not_supported("renaming files", t->info.name, from);
    // Never replaces: a rename (an image's extent following its descriptor)
    // must not cost a file that happens to carry the new name.
    VDKIT_ASSIGN_OR_RETURN(bool taken, location_exists(to));
    if (taken) return Status(VDKIT_E_EXISTS, "cannot rename " + from + " to " + to + ": " + to + " already exists");
    // The configuration's defaults for the transport (an s3 endpoint and keys).
    VDKIT_ASSIGN_OR_RETURN(const Options opts, plugin_options(config_, t->info, Options{}, OptionUse::open));
    vdkit_ctx ctx = make_ctx(t.get(), &opts);
    uint32_t rc = call_plugin(ctx, t->transport.rename, &ctx, vdkit_str{from.data(), from.size()},
                              vdkit_str{to.data(), to.size()});
    if (rc != VDKIT_OK) return status_from_plugin(ctx, rc, "rename " + from + " to " + to);
    return Status::ok();
}

Result<bool> Stores::location_exists(const std::string &location) const {
    VDKIT_ASSIGN_OR_RETURN(PluginEntryPtr t, transport_for(location));
    if (!t->transport.exists) return not_supported("existence checks", t->info.name, location);
    // The configuration's defaults for the transport (an s3 endpoint and keys).
    VDKIT_ASSIGN_OR_RETURN(const Options opts, plugin_options(config_, t->info, Options{}, OptionUse::open));
    vdkit_ctx ctx = make_ctx(t.get(), &opts);
    uint8_t yes = 0;
    uint32_t rc = call_plugin(ctx, t->transport.exists, &ctx, vdkit_str{location.data(), location.size()}, &yes);
    if (rc != VDKIT_OK) return status_from_plugin(ctx, rc, "check " + location);
    return yes != 0;
}

} // namespace vdkit
