#include "io/dry_run_store.hpp"

#include "util/util.hpp"

#include <cstring>
#include <map>
#include <mutex>

namespace vdkit {

namespace {

constexpr uint64_t kPage = 4096;

class DryRunStore : public ByteStore {
public:
    DryRunStore(ByteStorePtr below, uint64_t limit) : below_(std::move(below)), limit_(limit) {}

    const std::string &location() const noexcept override { return below_->location(); }

    Status pread(void *buf, uint64_t len, uint64_t offset) override {
        std::lock_guard lock(mu_);
        VDKIT_TRY(init());
        auto *out = static_cast<unsigned char *>(buf);
        while (len > 0) {
            const uint64_t page = offset / kPage * kPage, in = offset - page, n = std::min(len, kPage - in);
            auto it = pages_.find(page);
            if (it != pages_.end())
                std::memcpy(out, it->second.data() + in, static_cast<size_t>(n));
            else
                VDKIT_TRY(read_below(out, n, offset));
            out += n;
            offset += n;
            len -= n;
        }
        return Status::ok();
    }

    Status pwrite(const void *buf, uint64_t len, uint64_t offset) override {
        std::lock_guard lock(mu_);
        VDKIT_TRY(init());
        if (!util::range_within(offset, len, UINT64_MAX))
            return Status(VDKIT_E_OUT_OF_RANGE, location() + ": write past the largest offset");
        const auto *in_buf = static_cast<const unsigned char *>(buf);
        while (len > 0) {
            const uint64_t page = offset / kPage * kPage, in = offset - page, n = std::min(len, kPage - in);
            VDKIT_ASSIGN_OR_RETURN(unsigned char *p, page_for(page));
            if (in_buf)
                std::memcpy(p + in, in_buf, static_cast<size_t>(n));
            else
                std::memset(p + in, 0, static_cast<size_t>(n));
            if (in_buf) in_buf += n;
            offset += n;
            len -= n;
        }
        size_ = std::max(size_, offset);
        return Status::ok();
    }

    Status flush() override { return Status::ok(); }

    Result<uint64_t> size() override {
        std::lock_guard lock(mu_);
        VDKIT_TRY(init());
        return size_;
    }

    Status truncate(uint64_t size) override {
        std::lock_guard lock(mu_);
        VDKIT_TRY(init());
        for (auto it = pages_.lower_bound(size / kPage * kPage); it != pages_.end();) {
            if (it->first >= size)
                it = pages_.erase(it);
            else {
                std::memset(it->second.data() + (size - it->first), 0, static_cast<size_t>(kPage - (size - it->first)));
                ++it;
            }
        }
        floor_ = std::min(floor_, size);
        size_ = size;
        return Status::ok();
    }

    Status discard(uint64_t offset, uint64_t len) override { return zero(offset, len); }
    Status zero(uint64_t offset, uint64_t len) override { return pwrite(nullptr, len, offset); }

    Status extents(uint64_t offset, uint64_t len, uint32_t, std::vector<Extent> &out) override {
        out.push_back({offset, len, false});
        return Status::ok();
    }

    Result<uint64_t> allocated_size() override { return below_->allocated_size(); }

private:
    Status init() {
        if (ready_) return Status::ok();
        VDKIT_ASSIGN_OR_RETURN(uint64_t n, below_->size());
        size_ = floor_ = n;
        ready_ = true;
        return Status::ok();
    }

    // What the store below shows at [offset, +n) (one page at most): zero
    // past its end and past any truncation made here.
    Status read_below(unsigned char *out, uint64_t n, uint64_t offset) {
        std::memset(out, 0, static_cast<size_t>(n));
        if (offset >= floor_) return Status::ok();
        return below_->pread(out, std::min(n, floor_ - offset), offset);
    }

    Result<unsigned char *> page_for(uint64_t page) {
        auto it = pages_.find(page);
        if (it != pages_.end()) return it->second.data();
        if ((pages_.size() + 1) * kPage > limit_)
            return Status(VDKIT_E_NO_MEMORY, location() +
                                                 ": a dry run keeps its writes in memory, and this one "
                                                 "would need more than " +
                                                 util::format_size(limit_));
        std::vector<unsigned char> data(kPage);
        VDKIT_TRY(read_below(data.data(), kPage, page));
        return pages_.emplace(page, std::move(data)).first->second.data();
    }

    ByteStorePtr below_;
    uint64_t limit_;
    std::mutex mu_;
    bool ready_ = false;
    uint64_t size_ = 0, floor_ = 0;
    std::map<uint64_t, std::vector<unsigned char>> pages_;
};

} // namespace

ByteStorePtr make_dry_run_store(ByteStorePtr below, uint64_t memory_limit) {
    return std::make_unique<DryRunStore>(std::move(below), memory_limit);
}

} // namespace vdkit
