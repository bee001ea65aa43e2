// Disk::State — the chain behind a public Disk handle.
#ifndef VDKIT_CORE_DISK_DISK_STATE_HPP
#define VDKIT_CORE_DISK_DISK_STATE_HPP

#include "disk/image.hpp"
#include "io/plugin_stores.hpp"
#include "vdkit/vdkit.hpp"

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <vector>

namespace vdkit {

class Host; // host/host.hpp

// Sorted, disjoint [start, end) byte ranges, and a reader of a chain's view.
using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;
using Reader = std::function<Status(uint64_t offset, void *buf, uint64_t len)>;

// Sorted, disjoint union of two range lists; and what of a lies outside b.
Ranges unite(Ranges a, const Ranges &b);
Ranges subtract(const Ranges &a, const Ranges &b);
// a with each range grown out to multiples of unit (ends capped at limit),
// overlapping and touching ranges merged.
Ranges widen(const Ranges &a, uint64_t unit, uint64_t limit);

// The runs of [from, to) where `disk` holds data (neither zero nor
// unallocated through its chain), adjacent runs merged; from its map only.
Result<Ranges> data_ranges(const Disk &disk, uint64_t from, uint64_t to);

// What every call on a closed Disk returns.
inline Status closed_error() {
    return Status(VDKIT_E_INVALID_ARGUMENT, "the disk is closed");
}
// What data calls on a disk opened info-only (OpenOptions::info_only) return.
inline Status info_only_error() {
    return Status(VDKIT_E_NOT_SUPPORTED, "the disk is open for information only (info_only): no data I/O");
}

class AsyncQueue; // disk/async.cpp

struct Disk::State {
    State();
    ~State();
    std::shared_ptr<const Host> host;           // keeps plugins loaded
    std::vector<std::unique_ptr<Image>> images; // 0 = base, back() = top
    uint64_t size = 0;
    bool writable = false;
    bool info_only = false; // OpenOptions::info_only: read and block_status refused
    bool closed = false;
    // Disk-level filters (disk/disk_filters.cpp): the stack's names, nearest
    // the chain first, and its top store (null: none), through which
    // read/write/write_zeroes/discard/flush pass. Set once at open.
    std::vector<std::string> disk_filter_names;
    ByteStorePtr filtered;
    // Shared for reads, exclusive for writes and metadata changes.
    mutable std::shared_mutex mu;
    // The submit_* queue, started on first use; stopped (after finishing
    // what was submitted) before the disk closes.
    std::mutex async_mu;
    std::shared_ptr<AsyncQueue> async;
    bool async_closed = false; // guarded by async_mu
    Status submit(std::function<Status()> run, Completion done, bool barrier);
    // images[image] for a change of its identity fields (Disk::set_uuid
    // etc.): INVALID_ARGUMENT when closed or out of range, READ_ONLY when
    // that image is not open for writing. Caller holds mu exclusively.
    Result<Image *> image_to_change(size_t image);
    void stop_async();

    // The cache image (disk/cache.cpp), if one is attached.
    struct Cache {
        std::unique_ptr<Image> image;
        uint64_t unit = 0;     // blocks are filled whole: the cache's allocation unit
        bool changing = false; // the "being updated" mark is on disk
        std::atomic<uint64_t> hit_bytes{0}, miss_bytes{0};
        std::atomic<bool> failed{false}; // a cache operation failed: bypassed from now on
    };
    std::unique_ptr<Cache> cache;
    Result<std::string> cache_identity() const;
    // Reads through the cache (caller holds mu shared).
    Status read_cached(uint64_t offset, void *buf, uint64_t len) const;
    void cache_failed(const Status &why) const;
    // Before any change to the disk's content (caller holds mu exclusively).
    Status cache_before_change();
    // After a write of `data` (nullptr: zero/discard, re-read from the chain).
    Status cache_after_write(uint64_t offset, const void *data, uint64_t len);
    // Make the one image of `disk` (a cache just opened or made) the cache,
    // with `comment` written and flushed; NOT_SUPPORTED (and the file
    // removed) when its format cannot hold a cache.
    Status adopt_cache(std::unique_ptr<Disk> disk, const std::string &comment, bool changing);
    // The content or size changed wholesale: empty the cache.
    Status cache_reset();
    // Why `child` cannot go on top of `parent` (Disk::can_attach), or OK.
    static Status attach_problem(const State &parent, const State &child, const AttachOptions &options);
    // Close the cache; with identity, record that it matches the chain.
    Status cache_close(const std::optional<std::string> &identity);

    // Read [offset, offset+len) as seen from images[level] down.
    Status read_chain(size_t level, uint64_t offset, void *buf, uint64_t len) const;
    // Write to images[level] with the copy-on-write fill from the chain
    // below it; caller holds mu exclusively.
    Status write_locked(size_t level, uint64_t offset, const void *buf, uint64_t len);
    // Zeros written as data (shadowing any parent); caller holds mu exclusively.
    Status write_zero_bytes_locked(size_t level, uint64_t offset, uint64_t len);
    // Runs of [off, end) held (data or zero records) by any of images[lo..hi].
    Result<Ranges> held(size_t lo, size_t hi, uint64_t off, uint64_t end) const;
    // Make images[dst] read `source` wherever, inside `ranges`, it differs
    // from `after` (what dst will show there once the operation is done),
    // writing nothing where they agree. Blocks are dst's allocation units;
    // differing zero blocks become zero records. `advance(bytes)` returning
    // false cancels. Caller holds mu exclusively.
    Status transfer(size_t dst, const Ranges &ranges, const Reader &source, const Reader &after,
                    const std::function<bool(uint64_t)> &advance);
    // Writes into images[dst] change its modification id, which the image
    // above records: relink that one whether `moved` (the transfer's
    // result) succeeded or not, so the chain still opens and reads the same
    // after a failure or a cancel. Returns the first error.
    Status relink_above(size_t dst, Status moved);
    // Make [offset, offset+len) of images[level] read as zero: whole units
    // through the format's zero record, edges as zero data.
    Status zero_locked(size_t level, uint64_t offset, uint64_t len);
    // Disk::block_status without the lock (caller holds mu).
    Result<BlockRun> block_status_locked(uint64_t offset, uint64_t len) const;
    // Stack the disk-level layers of `stack` over the chain (flags:
    // VDKIT_OPEN_WRITE, _CREATE for a new base, _INFO); none: nothing.
    Status attach_disk_filters(const FilterStack &stack, uint32_t flags);
};

// How core code outside Disk's own members (disk/open.cpp, copy.cpp,
// manage.cpp) builds a Disk and reaches its State; the only friend of Disk.
struct DiskAccess {
    using State = Disk::State;
    static std::unique_ptr<Disk> make(std::unique_ptr<State> state) {
        return std::unique_ptr<Disk>(new Disk(std::move(state)));
    }
    static State &state(const Disk &disk) { return *disk.state_; }
};

} // namespace vdkit

#endif
