// Disk-level filter stacks: filters with VDKIT_CAP_FILTER_DISK (crypt) sit
// between the chain and the caller (VirtualBox's VDFilterAdd; the layer
// ARCHITECTURE.md draws above the image chain). Each layer is an ordinary
// FilterStore (io/plugin_stores.cpp) — so an operation the filter did not
// declare is refused, never passed through — stacked over a ChainStore: the
// chain's virtual disk as a ByteStore.
//
// The ChainStore runs inside Disk's calls: the caller already holds
// Disk::State::mu (shared for reads, exclusive for writes), so it takes no
// lock of its own; it keeps the cache image (disk/cache.cpp) up to date
// with what the chain stores, which is what a filter writes (ciphertext).
#include "disk/disk_state.hpp"
#include "host/host.hpp"
#include "io/stores.hpp"
#include "util/util.hpp"

namespace vdkit {

namespace {

class ChainStore final : public ByteStore {
public:
    explicit ChainStore(DiskAccess::State &state) : state_(state), location_(state.images.front()->location()) {}

    const std::string &location() const noexcept override { return location_; }

    Status pread(void *buf, uint64_t len, uint64_t offset) override {
        VDKIT_TRY(check(offset, len));
        if (state_.cache) return state_.read_cached(offset, buf, len);
        return state_.read_chain(state_.images.size() - 1, offset, buf, len);
    }
    Status pwrite(const void *buf, uint64_t len, uint64_t offset) override {
        VDKIT_TRY(writable(offset, len));
        VDKIT_TRY(state_.write_locked(state_.images.size() - 1, offset, buf, len));
        return state_.cache_after_write(offset, buf, len);
    }
    Status flush() override { return state_.images.back()->flush(); }
    Result<uint64_t> size() override { return state_.size; }
    Status truncate(uint64_t) override {
        return Status(VDKIT_E_NOT_SUPPORTED, location_ + ": a disk-level filter cannot change the disk's size");
    }
    Status discard(uint64_t offset, uint64_t len) override {
        VDKIT_TRY(writable(offset, len));
        VDKIT_TRY(state_.images.back()->discard(offset, len));
        return state_.cache_after_write(offset, nullptr, len);
    }
    Status zero(uint64_t offset, uint64_t len) override {
        VDKIT_TRY(writable(offset, len));
        VDKIT_TRY(state_.zero_locked(state_.images.size() - 1, offset, len));
        return state_.cache_after_write(offset, nullptr, len);
    }
    // Data where the chain holds data; a hole where it reads zeros
    // (unallocated through the chain, or a zero record).
    Status extents(uint64_t offset, uint64_t len, uint32_t max, std::vector<Extent> &out) override {
        VDKIT_TRY(check(offset, len));
        for (uint64_t pos = offset, end = offset + len; pos < end && out.size() < std::max<uint32_t>(max, 1);) {
            VDKIT_ASSIGN_OR_RETURN(BlockRun run, state_.block_status_locked(pos, end - pos));
            const bool hole = run.state != BlockState::data;
            if (!out.empty() && out.back().hole == hole && out.back().offset + out.back().length == pos)
                out.back().length += run.length;
            else
                out.push_back({pos, run.length, hole});
            pos += run.length;
        }
        return Status::ok();
    }
    Result<uint64_t> allocated_size() override {
        return Status(VDKIT_E_NOT_SUPPORTED, location_ + ": a disk has no single allocated size");
    }

private:
    Status check(uint64_t offset, uint64_t len) const {
        if (!util::range_within(offset, len, state_.size))
            return Status(VDKIT_E_OUT_OF_RANGE, location_ + ": a disk-level filter asked for " + util::hex(offset) +
                                                    "+" + util::hex(len) + ", beyond the disk's " +
                                                    std::to_string(state_.size) + " bytes");
        return Status::ok();
    }
    Status writable(uint64_t offset, uint64_t len) const {
        if (!state_.writable) return Status(VDKIT_E_READ_ONLY, "the disk is open read-only");
        return check(offset, len);
    }

    DiskAccess::State &state_;
    std::string location_;
};

} // namespace

Status Disk::State::attach_disk_filters(const FilterStack &stack, uint32_t flags) {
    const FilterStack disk = split_stack(stack).disk;
    if (disk.empty()) return Status::ok();
    Image &base = *images.front();
    auto hooks = std::make_shared<DiskHooks>();
    hooks->base_location = base.location();
    // The base image's metadata: a filter keeps its key store there, with the
    // chain (every image of it is stored the same way).
    hooks->metadata_get = [&base](std::string_view key) { return base.metadata_get(key); };
    hooks->metadata_set = [&base](std::string_view key, std::string_view value) {
        if (!base.writable())
            return Status(VDKIT_E_READ_ONLY, base.location() + " (the base image, which keeps the disk-level "
                                                               "filters' metadata) is open read-only");
        return base.metadata_set(key, value);
    };
    ByteStorePtr top = std::make_unique<ChainStore>(*this);
    std::vector<std::string> names;
    for (const FilterLayer &layer : disk) {
        VDKIT_ASSIGN_OR_RETURN(top, open_filter_store(host->stores(), layer.plugin, std::move(top),
                                                      flags & (VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE | VDKIT_OPEN_INFO),
                                                      layer.options, hooks));
        names.push_back(layer.plugin->info.name);
    }
    filtered = std::move(top);
    disk_filter_names = std::move(names);
    return Status::ok();
}

} // namespace vdkit
