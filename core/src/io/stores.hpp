// Stores: the one place byte stores are opened. It picks the transport for
// a location (its "scheme://" prefix, else "file"), applies the config's
// transport defaults, stacks file-level filters, and runs the transports'
// file operations (remove, rename without replacing, exists). It also makes
// the per-call context (vdkit_ctx) for any plugin call, so stores a plugin
// opens through the host function table come back here.
//
// Owned by Host (host/host.hpp), which owns the registry and config it
// reads. Thread-safety: immutable after construction; all methods are const
// and safe to call concurrently.
#ifndef VDKIT_CORE_IO_STORES_HPP
#define VDKIT_CORE_IO_STORES_HPP

#include "config/config_file.hpp"
#include "config/options.hpp"
#include "io/byte_store.hpp"
#include "io/context.hpp"
#include "io/plugin_stores.hpp"
#include "registry/registry.hpp"
#include "vdkit/vdkit.hpp"

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace vdkit {

class Stores {
public:
    using LogSink = std::function<void(LogLevel, std::string_view)>;
    // `registry` and `config` must outlive this object.
    Stores(const Registry &registry, const Config &config, LogSink log);
    Stores(const Stores &) = delete;
    Stores &operator=(const Stores &) = delete;

    const Registry &registry() const noexcept { return registry_; }
    const Config &config() const noexcept { return config_; }
    // The library's log (level filtering is the sink's).
    void log(LogLevel level, std::string_view message) const;

    // A context for calling `plugin` with `options` (the config's path
    // policy; stores the plugin opens are opened here).
    vdkit_ctx make_ctx(const PluginEntry *plugin, const Options *options) const;

    // The transport for a location: its "scheme://" prefix, else "file".
    Result<PluginEntryPtr> transport_for(const std::string &location) const;
    // Open location through its transport (flags: VDKIT_OPEN_*).
    Result<ByteStorePtr> open_store(const std::string &location, uint32_t flags,
                                    const Options &transport_options) const;
    // The same with the file-level layers of `filters` over the transport's store.
    Result<ByteStorePtr> open_store(const std::string &location, uint32_t flags, const Options &transport_options,
                                    const FilterStack &filters) const;
    // Look up and validate a filter stack: every name a loaded filter with
    // VDKIT_CAP_FILTER_FILE or VDKIT_CAP_FILTER_DISK, its options valid for
    // `use`. One list holds both kinds (split_stack); stores stack only the
    // file-level layers, the disk the others.
    Result<FilterStack> resolve_filters(const std::vector<FilterSpec> &specs, OptionUse use) const;
    Status remove_location(const std::string &location) const;
    // Move a file within one transport; an existing `to` is refused
    // (VDKIT_E_EXISTS), never replaced.
    Status rename_location(const std::string &from, const std::string &to) const;
    Result<bool> location_exists(const std::string &location) const;

private:
    const Registry &registry_;
    const Config &config_;
    LogSink log_;
};

} // namespace vdkit

#endif
