// vdkit_ctx — the per-call context the host passes to every plugin callback,
// and call_plugin(), the only way the core invokes a plugin function pointer.
//
// A context carries the options for the plugin being called, the location
// that sibling paths are resolved against, the path policy, progress and
// check-finding sinks, and the error slot the plugin reports into. It lives
// on the caller's stack for one call (or one open instance) and is never
// shared between threads.
#ifndef VDKIT_CORE_IO_CONTEXT_HPP
#define VDKIT_CORE_IO_CONTEXT_HPP

#include "vdkit/plugin.h"
#include "vdkit/status.hpp"
#include "vdkit/vdkit.hpp"

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace vdkit {
class Stores;
struct PluginEntry;
struct FilterLayer;
struct OpenStores;

// What a disk-level filter reaches through the host table besides its
// `next` store (plugin.h, "added in 2.2"): the chain's base image's
// location and key/value metadata. Set by the disk that stacks the filter.
struct DiskHooks {
    std::string base_location;
    std::function<Result<std::string>(std::string_view key)> metadata_get;
    std::function<Status(std::string_view key, std::string_view value)> metadata_set;
};
} // namespace vdkit

struct vdkit_ctx {
    // Where stores the plugin opens, removes or renames are handled, and the log.
    const vdkit::Stores *stores = nullptr;
    const vdkit::PluginEntry *plugin = nullptr; // who is being called (for logs)
    const vdkit::Options *options = nullptr;    // validated options incl. defaults
    std::string base_location;                  // image location sibling paths resolve against
    bool allow_unsafe_paths = false;
    // false: stores the plugin opens (an image's extents) take no image lock,
    // like the image's main file (OpenOptions::lock, force_share).
    bool lock = true;
    // A dry run (ImageSetup::dry_run): every store the plugin opens takes
    // writes without passing them on; no file is created, removed or renamed.
    bool dry_run = false;
    const vdkit::Options *transport_options = nullptr; // for stores opened by the plugin
    // File-level filters stacked over every store the plugin opens (an
    // image's extents get its main file's stack); null: none.
    const std::vector<vdkit::FilterLayer> *filters = nullptr;
    // Where the stores the plugin opens are listed (an image's files); null: nowhere.
    std::shared_ptr<vdkit::OpenStores> opened;
    std::function<bool(uint64_t, uint64_t)> progress; // false = cancel
    std::function<void(uint32_t, uint64_t, std::string_view)> finding;
    // Disk-level filters only: the disk they sit on; null otherwise.
    std::shared_ptr<const vdkit::DiskHooks> disk;

    uint32_t error_code = VDKIT_OK;
    std::string error_message;

    void clear_error() {
        error_code = VDKIT_OK;
        error_message.clear();
    }
};

namespace vdkit {

// Turn a plugin's return code into a Status, with the message the plugin
// recorded (or a generic one naming the operation and plugin). A plugin that
// fails without a code-consistent message still yields a useful Status.
Status status_from_plugin(vdkit_ctx &ctx, uint32_t rc, std::string_view operation);

// Record st in ctx (for host functions that return a code to a plugin).
uint32_t report_to_ctx(vdkit_ctx *ctx, const Status &st);

// Call a plugin function pointer behind an exception firewall: a plugin that
// lets an exception escape yields VDKIT_E_INTERNAL instead of unwinding
// through the core.
template <class Fn, class... Args> uint32_t call_plugin(vdkit_ctx &ctx, Fn fn, Args &&...args) noexcept {
    ctx.clear_error();
    try {
        return fn(std::forward<Args>(args)...);
    } catch (...) {
        ctx.error_code = VDKIT_E_INTERNAL;
        ctx.error_message = "plugin let an exception escape a C callback";
        return VDKIT_E_INTERNAL;
    }
}

} // namespace vdkit

#endif
