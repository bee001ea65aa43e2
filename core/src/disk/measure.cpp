// Library::measure — qemu-img measure / VixDiskLib SpaceNeededForClone. The
// core turns the source's allocation map into data ranges (nothing is read,
// cost follows the map) and the format plugin, which alone knows its layout,
// says what an image with those ranges would take (vdkit_format_ops.measure).
#include "disk/disk_state.hpp"
#include "host/host.hpp"
#include "io/context.hpp"
#include "io/stores.hpp"
#include "registry/registry.hpp"

namespace vdkit {
inline namespace v1 {

Result<MeasureResult> Library::measure(const std::string &format, const Options &options, const Disk *source,
                                       uint64_t size) const {
    auto entry = host_->registry().find(PluginKind::format, format);
    if (!entry) return host_->unknown_plugin(PluginKind::format, format);
    if (!entry->format.measure) return Status(VDKIT_E_NOT_SUPPORTED, "format '" + format + "' cannot measure images");
    VDKIT_ASSIGN_OR_RETURN(Options resolved, host_->options_for(*entry, options, OptionUse::create));

    std::vector<vdkit_extent> data;
    if (source) {
        size = source->size();
        VDKIT_ASSIGN_OR_RETURN(Ranges ranges, data_ranges(*source, 0, size));
        for (const auto &[a, b] : ranges)
            data.push_back(vdkit_extent{a, b - a, VDKIT_EXTENT_DATA, 0});
    }
    if (size == 0) return Status(VDKIT_E_INVALID_ARGUMENT, "measure needs a source or a size");

    vdkit_ctx ctx = host_->stores().make_ctx(entry.get(), &resolved);
    vdkit_measure out{};
    out.struct_size = sizeof(out);
    const uint32_t rc =
        call_plugin(ctx, entry->format.measure, &ctx, size, data.data(), static_cast<uint64_t>(data.size()), &out);
    if (rc != VDKIT_OK) return status_from_plugin(ctx, rc, "measure");
    return MeasureResult{out.required, out.fully_allocated};
}

} // namespace v1
} // namespace vdkit
