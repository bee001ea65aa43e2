// ByteStores backed by plugins: TransportStore (a transport's open handle)
// and FilterStore (a filter instance stacked on a lower store).
//
// FilterStore enforces the filter safety rule: an operation the filter did
// not declare in handled_ops is never silently passed through if it changes
// data (pwrite, truncate, discard, zero → VDKIT_E_NOT_SUPPORTED); read-only
// queries (get_size, extents) and flush are pass-through-safe and go to the
// layer below. pread is required for a filter to be stacked at all.
#ifndef VDKIT_CORE_IO_PLUGIN_STORES_HPP
#define VDKIT_CORE_IO_PLUGIN_STORES_HPP

#include "io/byte_store.hpp"
#include "io/context.hpp"
#include "registry/registry.hpp"

namespace vdkit {

class Stores;

// VDKIT_E_NOT_SUPPORTED: `what` is not supported by `plugin` (at location).
Status not_supported(const std::string &what, const std::string &plugin, const std::string &location);

Result<ByteStorePtr> open_transport_store(const Stores &stores, PluginEntryPtr transport, const std::string &location,
                                          uint32_t flags, Options options);

// Stack filter `filter` (validated options) over `lower`. `disk`: the disk a
// disk-level filter sits on (what its host calls disk_* reach); null for a
// file-level filter.
Result<ByteStorePtr> open_filter_store(const Stores &stores, PluginEntryPtr filter, ByteStorePtr lower, uint32_t flags,
                                       Options options, std::shared_ptr<const DiskHooks> disk = nullptr);

// One layer of a filter stack (Stores::resolve_filters): a loaded filter
// with VDKIT_CAP_FILTER_FILE or VDKIT_CAP_FILTER_DISK and its validated
// options.
struct FilterLayer {
    PluginEntryPtr plugin;
    Options options;
};
using FilterStack = std::vector<FilterLayer>;

// The specs that open images stored through `stack` (a new image's parent,
// a rebase target): its options without the keys that only shape new files.
std::vector<FilterSpec> open_specs(const FilterStack &stack);

// A resolved stack split by where each layer sits: file-level filters
// (VDKIT_CAP_FILTER_FILE) under the format, disk-level ones
// (VDKIT_CAP_FILTER_DISK only) over the chain; each keeps its order.
struct SplitStack {
    FilterStack file, disk;
};
SplitStack split_stack(const FilterStack &stack);
// Whether a layer sits over the disk rather than under the format.
bool is_disk_layer(const FilterLayer &layer);

// Stack every file-level layer of `stack` over `lower`, the first nearest
// it (disk-level layers are skipped: the disk stacks them). None: lower
// itself.
Result<ByteStorePtr> stack_filters(const Stores &stores, ByteStorePtr lower, uint32_t flags, const FilterStack &stack);

} // namespace vdkit

#endif
