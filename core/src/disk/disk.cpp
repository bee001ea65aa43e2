// Disk: chain reads, copy-on-write writes and the other Disk operations,
// done once here for every format (VirtualBox's VD container semantics:
// reads fall through "unallocated here", partial writes into an unallocated
// block are completed from the chain below).
#include "disk/disk_state.hpp"
#include "host/host.hpp"
#include "io/stores.hpp"
#include "util/util.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>

namespace vdkit {

namespace {

Status check_range(uint64_t offset, uint64_t len, uint64_t size) {
    if (!util::range_within(offset, len, size))
        return Status(VDKIT_E_OUT_OF_RANGE, "range " + util::hex(offset) + "+" + util::hex(len) +
                                                " is beyond the end of the disk (" + std::to_string(size) + " bytes)");
    return Status::ok();
}
} // namespace

Status Disk::State::read_chain(size_t level, uint64_t offset, void *buf, uint64_t len) const {
    auto *out = static_cast<unsigned char *>(buf);
    Image &img = *images[level];
    // A parent smaller than its child (the child was grown) reads as zeros past its end.
    if (offset >= img.size()) {
        std::memset(out, 0, static_cast<size_t>(len));
        return Status::ok();
    }
    if (len > img.size() - offset) {
        const uint64_t inside = img.size() - offset;
        std::memset(out + inside, 0, static_cast<size_t>(len - inside));
        len = inside;
    }
    while (len > 0) {
        uint64_t n = 0;
        bool unallocated = false;
        VDKIT_TRY(img.read(offset, out, len, n, unallocated));
        if (unallocated) {
            if (level == 0)
                std::memset(out, 0, static_cast<size_t>(n));
            else
                VDKIT_TRY(read_chain(level - 1, offset, out, n));
        }
        offset += n;
        out += n;
        len -= n;
    }
    return Status::ok();
}

Disk::Disk(std::unique_ptr<State> state) : state_(std::move(state)) {}

Disk::~Disk() {
    if (state_ && !state_->closed) {
        Status st = close();
        if (!st && state_->host) state_->host->log(LogLevel::error, "closing disk: " + st.message());
    }
}

uint64_t Disk::size() const noexcept {
    return state_->size;
}
bool Disk::writable() const noexcept {
    return state_->writable;
}
size_t Disk::image_count() const noexcept {
    return state_->images.size();
}

Result<ImageInfo> Disk::image_info(size_t index) const {
    std::shared_lock lock(state_->mu);
    if (state_->closed) return closed_error();
    if (index >= state_->images.size())
        return Status(VDKIT_E_INVALID_ARGUMENT, "image index " + std::to_string(index) + " is beyond the chain (" +
                                                    std::to_string(state_->images.size()) + " images)");
    return state_->images[index]->info();
}

std::vector<std::string> Disk::disk_filters() const {
    return state_->disk_filter_names;
}

Status Disk::read(uint64_t offset, void *buf, uint64_t len) const {
    std::shared_lock lock(state_->mu);
    if (state_->closed) return closed_error();
    if (state_->info_only) return info_only_error();
    VDKIT_TRY(check_range(offset, len, state_->size));
    if (state_->filtered) return state_->filtered->pread(buf, len, offset);
    if (state_->cache) return state_->read_cached(offset, buf, len);
    return state_->read_chain(state_->images.size() - 1, offset, buf, len);
}

Status Disk::write(uint64_t offset, const void *buf, uint64_t len) {
    std::unique_lock lock(state_->mu);
    if (state_->closed) return closed_error();
    if (!state_->writable) return Status(VDKIT_E_READ_ONLY, "the disk is open read-only");
    VDKIT_TRY(check_range(offset, len, state_->size));
    VDKIT_TRY(state_->cache_before_change());
    if (state_->filtered) return state_->filtered->pwrite(buf, len, offset); // the chain store updates the cache
    VDKIT_TRY(state_->write_locked(state_->images.size() - 1, offset, buf, len));
    return state_->cache_after_write(offset, buf, len);
}

Status Disk::State::write_locked(size_t top, uint64_t offset, const void *buf, uint64_t len) {
    Image &img = *images[top];
    const auto *in = static_cast<const unsigned char *>(buf);
    std::vector<unsigned char> block;
    while (len > 0) {
        uint64_t n = 0, fill_offset = 0, fill_len = 0;
        bool block_free = false;
        VDKIT_TRY(img.write(offset, in, len, n, block_free, fill_offset, fill_len));
        if (block_free) {
            // Copy-on-write fill: the block's current content from the chain
            // below (zeros for a base image), overlaid with the new data.
            block.resize(static_cast<size_t>(fill_len));
            if (top == 0)
                std::memset(block.data(), 0, block.size());
            else
                VDKIT_TRY(read_chain(top - 1, fill_offset, block.data(), fill_len));
            uint64_t overlay = std::min(len, fill_offset + fill_len - offset);
            std::memcpy(block.data() + (offset - fill_offset), in, static_cast<size_t>(overlay));
            uint64_t written = 0;
            while (written < fill_len) {
                uint64_t m = 0, fo = 0, fl = 0;
                bool again = false;
                VDKIT_TRY(
                    img.write(fill_offset + written, block.data() + written, fill_len - written, m, again, fo, fl));
                if (again)
                    return Status(VDKIT_E_INTERNAL, img.location() + ": format '" + img.format().info.name +
                                                        "' refused a whole-block write at " + util::hex(fill_offset));
                written += m;
            }
            n = overlay;
        }
        offset += n;
        in += n;
        len -= n;
    }
    return Status::ok();
}

Status Disk::State::write_zero_bytes_locked(size_t level, uint64_t offset, uint64_t len) {
    std::vector<unsigned char> zeros(static_cast<size_t>(std::min<uint64_t>(len, 1u << 20)), 0);
    for (uint64_t done = 0; done < len;) {
        uint64_t n = std::min<uint64_t>(zeros.size(), len - done);
        VDKIT_TRY(write_locked(level, offset + done, zeros.data(), n));
        done += n;
    }
    return Status::ok();
}

Status Disk::State::zero_locked(size_t level, uint64_t offset, uint64_t len) {
    if (len == 0) return Status::ok();
    Image &img = *images[level];
    VDKIT_ASSIGN_OR_RETURN(vdkit_image_info info, img.raw_info());
    const uint64_t g = std::max<uint64_t>(info.granularity, 1);
    const uint64_t end = offset + len;
    // Whole allocation units go to the format (recorded as zero); partial
    // edges are written as zero data through the copy-on-write path. The
    // image's short last unit counts as whole.
    uint64_t mid_start = std::min(end, (offset + g - 1) / g * g);
    uint64_t mid_end = end == img.size() ? end : std::max(mid_start, end / g * g);
    if (mid_start > offset) VDKIT_TRY(write_zero_bytes_locked(level, offset, mid_start - offset));
    if (mid_end > mid_start) {
        Status st = img.write_zeroes(mid_start, mid_end - mid_start);
        if (st.code() == VDKIT_E_NOT_SUPPORTED) st = write_zero_bytes_locked(level, mid_start, mid_end - mid_start);
        VDKIT_TRY(st);
    }
    if (end > mid_end) VDKIT_TRY(write_zero_bytes_locked(level, mid_end, end - mid_end));
    return Status::ok();
}

Status Disk::write_zeroes(uint64_t offset, uint64_t len) {
    std::unique_lock lock(state_->mu);
    if (state_->closed) return closed_error();
    if (!state_->writable) return Status(VDKIT_E_READ_ONLY, "the disk is open read-only");
    VDKIT_TRY(check_range(offset, len, state_->size));
    VDKIT_TRY(state_->cache_before_change());
    if (state_->filtered) return state_->filtered->zero(offset, len);
    VDKIT_TRY(state_->zero_locked(state_->images.size() - 1, offset, len));
    return state_->cache_after_write(offset, nullptr, len);
}

Status Disk::discard(uint64_t offset, uint64_t len) {
    std::unique_lock lock(state_->mu);
    if (state_->closed) return closed_error();
    if (!state_->writable) return Status(VDKIT_E_READ_ONLY, "the disk is open read-only");
    VDKIT_TRY(check_range(offset, len, state_->size));
    VDKIT_TRY(state_->cache_before_change());
    if (state_->filtered) return state_->filtered->discard(offset, len);
    VDKIT_TRY(state_->images.back()->discard(offset, len));
    return state_->cache_after_write(offset, nullptr, len);
}

Status Disk::flush() {
    std::unique_lock lock(state_->mu);
    if (state_->closed) return closed_error();
    if (state_->filtered) return state_->filtered->flush();
    return state_->images.back()->flush();
}

Result<BlockRun> Disk::block_status(uint64_t offset, uint64_t len) const {
    std::shared_lock lock(state_->mu);
    if (state_->closed) return closed_error();
    if (state_->info_only) return info_only_error();
    VDKIT_TRY(check_range(offset, len, state_->size));
    // A disk-level filter keeps sizes and offsets: the chain's allocation is
    // the disk's (a pass-through-safe query).
    return state_->block_status_locked(offset, len);
}

Result<BlockRun> Disk::State::block_status_locked(uint64_t offset, uint64_t len) const {
    if (len == 0) return Status(VDKIT_E_INVALID_ARGUMENT, "block status of an empty range");
    uint64_t span = len;
    for (size_t level = images.size(); level-- > 0;) {
        uint32_t status = 0;
        uint64_t run = 0;
        Image &img = *images[level];
        // Past a smaller parent's end the chain reads zeros (see read_chain).
        if (offset >= img.size()) return BlockRun{offset, span, BlockState::zero, level};
        VDKIT_TRY(img.block_status(offset, std::min(span, img.size() - offset), status, run));
        if (status != VDKIT_BLOCK_UNALLOCATED)
            return BlockRun{offset, run, status == VDKIT_BLOCK_ZERO ? BlockState::zero : BlockState::data, level};
        span = run; // the next level answers only within what this one left open
    }
    return BlockRun{offset, span, BlockState::unallocated, 0};
}

Result<Ranges> data_ranges(const Disk &disk, uint64_t from, uint64_t to) {
    Ranges out;
    for (uint64_t off = from; off < to;) {
        VDKIT_ASSIGN_OR_RETURN(BlockRun r, disk.block_status(off, to - off));
        if (r.state == BlockState::data) {
            if (!out.empty() && out.back().second == off)
                out.back().second += r.length;
            else
                out.emplace_back(off, off + r.length);
        }
        off += r.length;
    }
    return out;
}

Result<std::string> Disk::metadata_get(std::string_view key) const {
    std::shared_lock lock(state_->mu);
    if (state_->closed) return closed_error();
    return state_->images.back()->metadata_get(key);
}

Status Disk::metadata_set(std::string_view key, std::string_view value) {
    std::unique_lock lock(state_->mu);
    if (state_->closed) return closed_error();
    if (!state_->writable) return Status(VDKIT_E_READ_ONLY, "the disk is open read-only");
    return state_->images.back()->metadata_set(key, value);
}

Result<std::vector<std::string>> Disk::metadata_keys() const {
    std::shared_lock lock(state_->mu);
    if (state_->closed) return closed_error();
    return state_->images.back()->metadata_keys();
}

Status Disk::set_comment(std::string_view comment) {
    std::unique_lock lock(state_->mu);
    if (state_->closed) return closed_error();
    if (!state_->writable) return Status(VDKIT_E_READ_ONLY, "the disk is open read-only");
    return state_->images.back()->set_comment(comment);
}

Result<Image *> Disk::State::image_to_change(size_t image) {
    State &st = *this;
    if (st.closed) return closed_error();
    if (image >= st.images.size())
        return Status(VDKIT_E_INVALID_ARGUMENT, "image index " + std::to_string(image) + " is beyond the chain (" +
                                                    std::to_string(st.images.size()) + " images)");
    Image &img = *st.images[image];
    if (!img.writable())
        return Status(VDKIT_E_READ_ONLY, img.location() + " is open read-only" +
                                             (image + 1 < st.images.size() && st.writable
                                                  ? " (a lower image of the chain needs writable_chain)"
                                                  : ""));
    return &img;
}

Status Disk::set_uuid(size_t image, UuidKind which, const Uuid &uuid) {
    std::unique_lock lock(state_->mu);
    VDKIT_ASSIGN_OR_RETURN(Image * img, state_->image_to_change(image));
    const auto kind = static_cast<uint32_t>(which);
    if (kind > VDKIT_UUID_PARENT_MODIFICATION)
        return Status(VDKIT_E_INVALID_ARGUMENT, "unknown UUID kind " + std::to_string(kind));
    return img->set_uuid(kind, uuid);
}

Status Disk::set_geometry(size_t image, const std::optional<Geometry> &pchs, const std::optional<Geometry> &lchs) {
    std::unique_lock lock(state_->mu);
    VDKIT_ASSIGN_OR_RETURN(Image * img, state_->image_to_change(image));
    if (!pchs && !lchs) return Status::ok();
    uint32_t p[3] = {}, l[3] = {};
    if (pchs) p[0] = pchs->cylinders, p[1] = pchs->heads, p[2] = pchs->sectors;
    if (lchs) l[0] = lchs->cylinders, l[1] = lchs->heads, l[2] = lchs->sectors;
    return img->set_geometry(pchs ? p : nullptr, lchs ? l : nullptr);
}

Status Disk::set_comment(size_t image, std::string_view comment) {
    std::unique_lock lock(state_->mu);
    VDKIT_ASSIGN_OR_RETURN(Image * img, state_->image_to_change(image));
    return img->set_comment(comment);
}

Status Disk::close() {
    state_->stop_async(); // what was submitted completes first
    std::unique_lock lock(state_->mu);
    if (state_->closed) return Status::ok();
    state_->closed = true;
    // Disk-level filters go first: they may still write through the chain.
    Status filters = state_->filtered ? state_->filtered->flush() : Status::ok();
    state_->filtered.reset();
    std::optional<std::string> identity; // what a changed cache matches once the chain is closed
    if (state_->cache && state_->cache->changing) {
        if (auto id = state_->cache_identity()) identity = *id;
    }
    Status first;
    // Top first: a child may still reference its parent while closing.
    for (size_t i = state_->images.size(); i-- > 0;) {
        Status st = state_->images[i]->close(false);
        if (!st && first.is_ok()) first = st;
    }
    state_->images.clear();
    Status cache = state_->cache_close(first.is_ok() ? identity : std::nullopt);
    if (!filters) return filters;
    return first.is_ok() ? cache : first;
}

Status Disk::close_and_delete() {
    state_->stop_async();
    std::unique_lock lock(state_->mu);
    if (state_->closed) return closed_error();
    if (!state_->writable) return Status(VDKIT_E_READ_ONLY, "the disk is open read-only");
    state_->closed = true;
    state_->filtered.reset();
    (void)state_->cache_close(std::nullopt); // its disk is going: the cache is stale
    const std::string location = state_->images.back()->location();
    Status first = state_->images.back()->close(true);
    state_->images.pop_back();
    for (size_t i = state_->images.size(); i-- > 0;) {
        Status st = state_->images[i]->close(false);
        if (!st && first.is_ok()) first = st;
    }
    state_->images.clear();
    Status rm = state_->host->stores().remove_location(location);
    return first.is_ok() ? rm : first;
}

Status Disk::compact(const ProgressFunction &progress) {
    std::unique_lock lock(state_->mu);
    if (state_->closed) return closed_error();
    if (!state_->writable) return Status(VDKIT_E_READ_ONLY, "the disk is open read-only");
    VDKIT_TRY(state_->cache_before_change()); // content stays, the top's modification id changes
    const size_t top = state_->images.size() - 1;
    Image &img = *state_->images[top];
    // Nothing a reader of the top sees changes, so its modification id
    // stays: images made over it (children recording its CID / modification
    // UUID) still open afterwards, also when compact fails half-way.
    VDKIT_TRY(img.keep_modification_id());
    if (top > 0) {
        // Give back the blocks of a differencing image that read the same as
        // the chain below: after discarding them the parent shows through
        // with identical content.
        VDKIT_ASSIGN_OR_RETURN(vdkit_image_info info, img.raw_info());
        const uint64_t g = std::max<uint64_t>(info.granularity, 512);
        if (g > (64u << 20))
            return Status(VDKIT_E_NOT_SUPPORTED, img.location() + ": allocation unit too large to compare");
        std::vector<unsigned char> mine(static_cast<size_t>(g)), below(static_cast<size_t>(g));
        const uint64_t size = img.size();
        for (uint64_t off = 0; off < size;) {
            uint32_t status = 0;
            uint64_t run = 0;
            VDKIT_TRY(img.block_status(off, size - off, status, run));
            if (status == VDKIT_BLOCK_UNALLOCATED) {
                off += run;
                continue;
            }
            // Whole units inside this run only; a unit cut by the run's edge is kept.
            const uint64_t run_end = off + run;
            for (uint64_t u = (off + g - 1) / g * g; u < run_end; u += g) {
                const uint64_t n = std::min(g, size - u); // the disk's last unit may be short
                if (u + n > run_end) break;
                VDKIT_TRY(state_->read_chain(top, u, mine.data(), n));
                VDKIT_TRY(state_->read_chain(top - 1, u, below.data(), n));
                if (std::memcmp(mine.data(), below.data(), static_cast<size_t>(n)) == 0) VDKIT_TRY(img.discard(u, n));
            }
            off += run;
            if (progress && !progress(off, size * 2)) return Status(VDKIT_E_CANCELLED, "compact cancelled");
        }
    }
    ProgressFunction scaled;
    if (progress && top > 0)
        scaled = [&](uint64_t done, uint64_t total) { return progress(total + done, total * 2); };
    else
        scaled = progress;
    Status st = img.compact(scaled);
    // A diff's compact is useful even when the format cannot compact the file.
    if (st.code() == VDKIT_E_NOT_SUPPORTED && top > 0 && img.format().format.discard) return Status::ok();
    return st;
}

Status Disk::resize(uint64_t new_size, bool allow_shrink) {
    std::unique_lock lock(state_->mu);
    if (state_->closed) return closed_error();
    if (!state_->writable) return Status(VDKIT_E_READ_ONLY, "the disk is open read-only");
    if (new_size == 0) return Status(VDKIT_E_INVALID_ARGUMENT, "a disk cannot be resized to 0 bytes");
    if (new_size < state_->size && !allow_shrink)
        return Status(VDKIT_E_INVALID_ARGUMENT, "shrinking from " + std::to_string(state_->size) + " to " +
                                                    std::to_string(new_size) +
                                                    " bytes loses data beyond the new end; allow shrinking to do it");
    if (new_size == state_->size) return Status::ok();
    Image &img = *state_->images.back();
    VDKIT_TRY(state_->cache_before_change());
    VDKIT_TRY(img.resize(new_size, new_size < state_->size ? VDKIT_RESIZE_SHRINK : 0));
    state_->size = new_size;
    return state_->cache_reset();
}

Result<CheckReport> Disk::check(const CheckOptions &options) {
    std::unique_lock lock(state_->mu);
    if (state_->closed) return closed_error();
    uint32_t flags = 0;
    if (options.repair) flags |= VDKIT_CHECK_REPAIR;
    if (options.dry_run) flags |= VDKIT_CHECK_DRY_RUN;
    if (options.repair && !options.dry_run && !state_->writable)
        return Status(VDKIT_E_READ_ONLY, "repair needs the disk open for writing");
    CheckReport report;
    const bool repairing = options.repair && !options.dry_run;
    if (repairing) VDKIT_TRY(state_->cache_before_change());
    VDKIT_TRY(state_->images.back()->check(flags, report));
    if (repairing && report.repaired > 0) VDKIT_TRY(state_->cache_reset()); // what the disk reads may have changed
    return report;
}

} // namespace vdkit
