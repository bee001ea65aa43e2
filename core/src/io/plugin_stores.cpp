#include "io/plugin_stores.hpp"

#include "io/stores.hpp"
#include "util/util.hpp"

#include <mutex>

namespace vdkit {

Status not_supported(const std::string &what, const std::string &plugin, const std::string &location) {
    return Status(VDKIT_E_NOT_SUPPORTED, what + " is not supported by '" + plugin + "' (" + location + ")");
}

namespace {

Status to_extents(const vdkit_extent *raw, uint32_t n, uint64_t offset, uint64_t len, std::vector<Extent> &out,
                  const std::string &location) {
    uint64_t expect = offset;
    for (uint32_t i = 0; i < n; ++i) {
        if (raw[i].offset != expect || raw[i].length == 0 ||
            !util::range_within(raw[i].offset, raw[i].length, offset + len))
            return Status(VDKIT_E_INTERNAL,
                          location + ": plugin returned extents that are not contiguous from " + util::hex(offset));
        out.push_back({raw[i].offset, raw[i].length, raw[i].type == VDKIT_EXTENT_HOLE});
        expect += raw[i].length;
    }
    return Status::ok();
}

// The parts shared by transport- and filter-backed stores: the context,
// per-handle serialisation for plugins that are not thread-safe, and the
// conversion of return codes into Status.
class PluginStoreBase : public ByteStore {
public:
    PluginStoreBase(const Stores &stores, PluginEntryPtr plugin, std::string location, Options options)
        : stores_(stores), plugin_(std::move(plugin)), location_(std::move(location)), options_(std::move(options)),
          serialise_(!(plugin_->info.capabilities & VDKIT_CAP_THREAD_SAFE)) {}

    const std::string &location() const noexcept override { return location_; }

protected:
    // Extents through a plugin callback (transport or filter signature).
    template <class Fn>
    Status call_extents(Fn fn, uint64_t offset, uint64_t len, uint32_t max, std::vector<Extent> &out) {
        std::vector<vdkit_extent> raw(std::max<uint32_t>(1, std::min<uint32_t>(max, 4096)));
        uint32_t n = 0;
        VDKIT_TRY(call("extents", fn, offset, len, raw.data(), static_cast<uint32_t>(raw.size()), &n));
        if (n > raw.size())
            return Status(VDKIT_E_INTERNAL,
                          location_ + ": plugin '" + plugin_->info.name + "' returned too many extents");
        return to_extents(raw.data(), n, offset, len, out, location_);
    }

    template <class Fn, class... Args> Status call(std::string_view op, Fn fn, Args &&...args) {
        vdkit_ctx ctx = stores_.make_ctx(plugin_.get(), &options_);
        ctx.base_location = location_;
        ctx.disk = disk_;
        std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
        if (serialise_) lock.lock();
        uint32_t rc = call_plugin(ctx, fn, handle_, &ctx, std::forward<Args>(args)...);
        if (rc == VDKIT_OK) return Status::ok();
        return status_from_plugin(ctx, rc, std::string(op) + " on " + location_);
    }

    const Stores &stores_;
    PluginEntryPtr plugin_;
    std::string location_;
    Options options_;
    bool serialise_;
    std::mutex mu_;
    void *handle_ = nullptr;
    std::shared_ptr<const DiskHooks> disk_; // a disk-level filter's disk
};

class TransportStore final : public PluginStoreBase {
public:
    using PluginStoreBase::PluginStoreBase;
    ~TransportStore() override {
        if (handle_) plugin_->transport.close(handle_);
    }

    Status open(uint32_t flags) {
        vdkit_ctx ctx = stores_.make_ctx(plugin_.get(), &options_);
        ctx.base_location = location_;
        uint32_t rc = call_plugin(ctx, plugin_->transport.open, &ctx, sdk_str(location_), flags, &handle_);
        if (rc != VDKIT_OK) {
            handle_ = nullptr;
            return status_from_plugin(ctx, rc, "open " + location_);
        }
        return Status::ok();
    }

    Status pread(void *buf, uint64_t len, uint64_t offset) override {
        return call("read", plugin_->transport.pread, offset, buf, len);
    }
    Status pwrite(const void *buf, uint64_t len, uint64_t offset) override {
        if (!plugin_->transport.pwrite) return not_supported("writing", plugin_->info.name, location_);
        return call("write", plugin_->transport.pwrite, offset, buf, len);
    }
    Status flush() override {
        if (!plugin_->transport.flush) return Status::ok();
        return call("flush", plugin_->transport.flush);
    }
    Result<uint64_t> size() override {
        uint64_t s = 0;
        VDKIT_TRY(call("get size", plugin_->transport.get_size, &s));
        return s;
    }
    Status truncate(uint64_t size) override {
        if (!plugin_->transport.truncate) return not_supported("truncate", plugin_->info.name, location_);
        return call("truncate", plugin_->transport.truncate, size);
    }
    Status discard(uint64_t offset, uint64_t len) override {
        if (!plugin_->transport.discard) return not_supported("discard", plugin_->info.name, location_);
        return call("discard", plugin_->transport.discard, offset, len);
    }
    Status zero(uint64_t offset, uint64_t len) override {
        if (plugin_->transport.zero) return call("zero", plugin_->transport.zero, offset, len);
        // Emulate with writes of zeros.
        std::vector<char> z(static_cast<size_t>(std::min<uint64_t>(len, 1u << 20)), 0);
        for (uint64_t done = 0; done < len;) {
            uint64_t n = std::min<uint64_t>(z.size(), len - done);
            VDKIT_TRY(pwrite(z.data(), n, offset + done));
            done += n;
        }
        return Status::ok();
    }
    Status extents(uint64_t offset, uint64_t len, uint32_t max, std::vector<Extent> &out) override {
        if (!plugin_->transport.extents || len == 0) {
            if (len) out.push_back({offset, len, false});
            return Status::ok();
        }
        return call_extents(plugin_->transport.extents, offset, len, max, out);
    }
    Result<uint64_t> allocated_size() override {
        if (!plugin_->transport.allocated_size) return not_supported("allocated size", plugin_->info.name, location_);
        uint64_t s = 0;
        VDKIT_TRY(call("allocated size", plugin_->transport.allocated_size, &s));
        return s;
    }

private:
    static vdkit_str sdk_str(const std::string &s) { return vdkit_str{s.data(), s.size()}; }
};

class FilterStore final : public PluginStoreBase {
public:
    FilterStore(const Stores &stores, PluginEntryPtr plugin, ByteStorePtr lower, Options options,
                std::shared_ptr<const DiskHooks> disk)
        : PluginStoreBase(stores, std::move(plugin), lower->location(), std::move(options)) {
        next_.store = std::move(lower);
        disk_ = std::move(disk);
    }
    ~FilterStore() override {
        if (handle_) plugin_->filter.close(handle_);
    }

    Status open(uint32_t flags) {
        if (!handles(VDKIT_OP_PREAD) || !plugin_->filter.pread)
            return Status(VDKIT_E_ABI, "filter '" + plugin_->info.name + "' does not implement pread");
        vdkit_ctx ctx = stores_.make_ctx(plugin_.get(), &options_);
        ctx.base_location = location_;
        ctx.disk = disk_;
        uint32_t rc = call_plugin(ctx, plugin_->filter.open, &ctx, &next_, flags, &handle_);
        if (rc != VDKIT_OK) {
            handle_ = nullptr;
            return status_from_plugin(ctx, rc, "open filter '" + plugin_->info.name + "' over " + location_);
        }
        return Status::ok();
    }

    Status pread(void *buf, uint64_t len, uint64_t offset) override {
        return call("read", plugin_->filter.pread, offset, buf, len);
    }
    Status pwrite(const void *buf, uint64_t len, uint64_t offset) override {
        if (!handles(VDKIT_OP_PWRITE) || !plugin_->filter.pwrite) return refuse("writing");
        return call("write", plugin_->filter.pwrite, offset, buf, len);
    }
    Status flush() override {
        if (!handles(VDKIT_OP_FLUSH) || !plugin_->filter.flush) return next_.store->flush(); // pass-through-safe
        return call("flush", plugin_->filter.flush);
    }
    Result<uint64_t> size() override {
        if (!handles(VDKIT_OP_GET_SIZE) || !plugin_->filter.get_size) return next_.store->size();
        uint64_t s = 0;
        VDKIT_TRY(call("get size", plugin_->filter.get_size, &s));
        return s;
    }
    Status truncate(uint64_t size) override {
        if (!handles(VDKIT_OP_TRUNCATE) || !plugin_->filter.truncate) return refuse("truncate");
        return call("truncate", plugin_->filter.truncate, size);
    }
    Status discard(uint64_t offset, uint64_t len) override {
        if (!handles(VDKIT_OP_DISCARD) || !plugin_->filter.discard) return refuse("discard");
        return call("discard", plugin_->filter.discard, offset, len);
    }
    Status zero(uint64_t offset, uint64_t len) override {
        if (!handles(VDKIT_OP_ZERO) || !plugin_->filter.zero) return refuse("zero");
        return call("zero", plugin_->filter.zero, offset, len);
    }
    Status extents(uint64_t offset, uint64_t len, uint32_t max, std::vector<Extent> &out) override {
        if (!handles(VDKIT_OP_EXTENTS) || !plugin_->filter.extents) {
            // The lower layer's holes may not be holes above a transforming
            // filter: report data, which is always correct.
            if (len) out.push_back({offset, len, false});
            return Status::ok();
        }
        return call_extents(plugin_->filter.extents, offset, len, max, out);
    }
    Result<uint64_t> allocated_size() override { return next_.store->allocated_size(); }

private:
    bool handles(uint64_t op) const { return (plugin_->filter.handled_ops & op) != 0; }
    Status refuse(const std::string &what) const {
        return Status(VDKIT_E_NOT_SUPPORTED, "filter '" + plugin_->info.name + "' does not handle " + what +
                                                 ", so it is refused rather than passed through (" + location_ + ")");
    }
    vdkit_store next_;
};

} // namespace

Result<ByteStorePtr> open_transport_store(const Stores &stores, PluginEntryPtr transport, const std::string &location,
                                          uint32_t flags, Options options) {
    auto store = std::make_unique<TransportStore>(stores, std::move(transport), location, std::move(options));
    VDKIT_TRY(store->open(flags));
    return ByteStorePtr(std::move(store));
}

Result<ByteStorePtr> open_filter_store(const Stores &stores, PluginEntryPtr filter, ByteStorePtr lower, uint32_t flags,
                                       Options options, std::shared_ptr<const DiskHooks> disk) {
    auto store =
        std::make_unique<FilterStore>(stores, std::move(filter), std::move(lower), std::move(options), std::move(disk));
    VDKIT_TRY(store->open(flags));
    return ByteStorePtr(std::move(store));
}

std::vector<FilterSpec> open_specs(const FilterStack &stack) {
    std::vector<FilterSpec> out;
    for (const FilterLayer &layer : stack) {
        FilterSpec spec{layer.plugin->info.name, {}};
        for (const auto &[k, v] : layer.options) {
            const ConfigKey *key = layer.plugin->info.key(k);
            if (!(key && key->create_only)) spec.options[k] = v;
        }
        out.push_back(std::move(spec));
    }
    return out;
}

bool is_disk_layer(const FilterLayer &layer) {
    return !layer.plugin->info.has(VDKIT_CAP_FILTER_FILE) && layer.plugin->info.has(VDKIT_CAP_FILTER_DISK);
}

SplitStack split_stack(const FilterStack &stack) {
    SplitStack out;
    for (const FilterLayer &layer : stack)
        (is_disk_layer(layer) ? out.disk : out.file).push_back(layer);
    return out;
}

Result<ByteStorePtr> stack_filters(const Stores &stores, ByteStorePtr lower, uint32_t flags, const FilterStack &stack) {
    // A filter sees only the open mode; creating and locking are the transport's.
    flags &= VDKIT_OPEN_WRITE;
    for (const FilterLayer &layer : stack) {
        if (is_disk_layer(layer)) continue; // sits over the disk (disk/disk_filters.cpp), not on its files
        VDKIT_ASSIGN_OR_RETURN(lower, open_filter_store(stores, layer.plugin, std::move(lower), flags, layer.options));
    }
    return lower;
}

} // namespace vdkit
