// Registries of loaded plugins, one namespace per kind (format, filter,
// transport). Names are unique per kind and looked up case-insensitively;
// a transport's name and its URL schemes are unique among transports.
// Each entry owns a copy of its descriptor's strings and vtable (copied with
// min(struct_size) and zero-filled), plus a reference that keeps the plugin
// library loaded for as long as the entry is used.
//
// Thread-safety: filled during Library::create; Library::load_plugin and
// unload_plugin add and remove entries later, so every method locks. An
// entry removed while a caller still holds its PluginEntryPtr stays valid
// (and its library mapped) until that reference is dropped.
#ifndef VDKIT_CORE_REGISTRY_HPP
#define VDKIT_CORE_REGISTRY_HPP

#include "vdkit/plugin.h"
#include "vdkit/vdkit.hpp"

#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

namespace vdkit {

class PluginLibrary;

struct PluginEntry {
    PluginInfo info;
    vdkit_format_ops format{};       // valid when info.kind == format
    vdkit_transport_ops transport{}; // valid when info.kind == transport
    vdkit_filter_ops filter{};       // valid when info.kind == filter
    std::shared_ptr<const PluginLibrary> library;
};

using PluginEntryPtr = std::shared_ptr<const PluginEntry>;

// Copy and check one descriptor from a plugin; a clear error when it breaks
// the ABI rules (wrong major, short struct, missing required callbacks).
Result<PluginEntryPtr> make_plugin_entry(const vdkit_plugin_descriptor *desc, const std::string &source,
                                         std::shared_ptr<const PluginLibrary> library);

class Registry {
public:
    // Fails with VDKIT_E_EXISTS when the name is taken for that kind.
    Status add(PluginEntryPtr entry);
    // All of `entries` or none: VDKIT_E_EXISTS naming the first name taken
    // (by a registered plugin or an earlier one of `entries`).
    Status add_all(const std::vector<PluginEntryPtr> &entries);
    // Remove every entry that came from `library`, unless one of them is in
    // use (referenced outside the registry: an open image, a store, a call
    // in progress): then nothing is removed and VDKIT_E_BUSY names it. Also
    // VDKIT_E_NOT_FOUND when no entry came from it.
    Status remove_library(const PluginLibrary *library);
    PluginEntryPtr find(PluginKind kind, std::string_view name) const;
    // The transport serving URL scheme `scheme` (case-insensitive): the one
    // named so, or the one listing it among its schemes (ABI 2.1); null
    // when none does. A scheme is served by at most one transport (add
    // refuses a second).
    PluginEntryPtr find_transport_for_scheme(std::string_view scheme) const;
    std::vector<PluginEntryPtr> list(PluginKind kind) const;
    std::vector<PluginEntryPtr> all() const;
    std::vector<std::string> names(PluginKind kind) const;
    // VDKIT_E_NOT_FOUND naming the plugin that is not loaded, a likely
    // typo's correction and what is loaded of that kind.
    Status unknown_plugin(PluginKind kind, std::string_view name) const;
    void clear();

private:
    PluginEntryPtr find_locked(PluginKind kind, std::string_view name) const;
    mutable std::shared_mutex mu_;
    std::vector<PluginEntryPtr> entries_;
};

// Human names of the VDKIT_CAP_* bits that are set.
std::vector<std::string> capability_names(uint64_t caps);

} // namespace vdkit

#endif
