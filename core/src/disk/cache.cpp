// Cache images (VirtualBox VDCreateCache / VDCacheOpen): a local image in
// front of a slow chain. Reads are answered from the cache where it holds
// the block, else from the chain, and the block is then copied into the
// cache. Writes go to the chain first and then into cached blocks (write
// through), so the cache never holds the only copy of anything: it can be
// detached or deleted at any time without losing data.
//
// A cache is an ordinary sparse image of any format that can write, report
// allocation and keep a comment, with no parent and the disk's size. Its
// comment names what it caches: the disk's size and its top image's UUID,
// modification id and location. Before the first change to the disk the
// comment is replaced by a "being updated" mark (flushed first), and the
// new identity is written only after the chain closed cleanly — a cache
// left by a crash, or one whose disk was changed without it (the top's
// modification id differs), is emptied when it is next attached.
#include "disk/disk_state.hpp"
#include "disk/open.hpp"
#include "host/host.hpp"
#include "io/stores.hpp"
#include "util/util.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>

namespace vdkit {

namespace {

// Every comment a cache carries starts with kCachePrefix: its identity
// ("vdkit cache 1 size=…") or the mark kUpdating.
constexpr const char *kCachePrefix = "vdkit cache";
constexpr const char *kUpdating = "vdkit cache: being updated";
constexpr uint64_t kMaxFill = 8u << 20; // bytes read from the chain per miss, at most

// Write [offset, offset+len) of the cache image in one go: a whole block or
// inside allocated blocks, so the format never asks for a fill.
Status write_cache(Image &img, uint64_t offset, const unsigned char *data, uint64_t len) {
    for (uint64_t done = 0; done < len;) {
        uint64_t m = 0, fo = 0, fl = 0;
        bool block_free = false;
        VDKIT_TRY(img.write(offset + done, data + done, len - done, m, block_free, fo, fl));
        if (block_free)
            return Status(VDKIT_E_INTERNAL, img.location() + ": the cache asked for a fill at " + std::to_string(fo));
        done += m;
    }
    return Status::ok();
}

} // namespace

// What the cache must say it caches.
Result<std::string> Disk::State::cache_identity() const {
    VDKIT_ASSIGN_OR_RETURN(vdkit_image_info info, images.back()->raw_info());
    const std::string where = images.back()->location();
    char loc[17];
    std::snprintf(loc, sizeof loc, "%016zx", std::hash<std::string>{}(where));
    return std::string(kCachePrefix) + " 1 size=" + std::to_string(size) + " top=" + util::uuid_to_string(info.uuid) +
           " mod=" + util::uuid_to_string(info.modification_uuid) + " at=" + loc;
}

Status Disk::attach_cache(const std::string &location, const CacheOptions &options) {
    std::unique_lock lock(state_->mu);
    State &st = *state_;
    if (st.closed) return closed_error();
    if (st.cache) return Status(VDKIT_E_INVALID_ARGUMENT, "the disk already has a cache; detach it first");
    std::error_code ec;
    for (const auto &img : st.images)
        if (std::filesystem::equivalent(img->location(), location, ec))
            return Status(VDKIT_E_INVALID_ARGUMENT, location + " is an image of the disk's chain, not a cache");
    VDKIT_ASSIGN_OR_RETURN(std::string identity, st.cache_identity());
    const Host &host = *st.host;

    // An existing cache for this content is reused; a stale cache is
    // replaced; any other file is left alone (a mistyped path must not cost
    // an image).
    std::unique_ptr<Disk> cache_disk;
    VDKIT_ASSIGN_OR_RETURN(bool exists, host.stores().location_exists(location));
    if (exists) {
        OpenOptions oo;
        oo.format = options.format;
        oo.writable = true;
        oo.follow_parents = false;
        auto opened = open_disk(host, location, oo);
        auto info = opened ? (*opened)->image_info(0) : Result<ImageInfo>(opened.status());
        if (!info || (*opened)->image_count() != 1 || info->comment.rfind(kCachePrefix, 0) != 0)
            return Status(VDKIT_E_EXISTS, location + " exists and is not a vdkit cache" +
                                              (info ? std::string() : " (" + info.status().message() + ")") +
                                              "; name another file for the cache, or delete it first");
        if (info->comment == identity) {
            cache_disk = std::move(*opened);
        } else {
            host.log(LogLevel::info,
                     location + ": the cache is stale (" +
                         (info->comment == kUpdating ? "it was being updated when its disk was last used"
                                                     : "it was made for other content or the disk changed without it") +
                         "); starting it empty");
            VDKIT_TRY((*opened)->close());
        }
    }
    if (!cache_disk) {
        CreateOptions co;
        co.format = options.format;
        co.size = st.size;
        co.options = options.options;
        co.overwrite = true;
        VDKIT_ASSIGN_OR_RETURN(cache_disk, create_disk(host, location, co));
    }
    return st.adopt_cache(std::move(cache_disk), identity, false);
}

Status Disk::State::adopt_cache(std::unique_ptr<Disk> disk, const std::string &comment, bool changing) {
    Image &img = *disk->state_->images.back();
    const PluginEntry &fmt = img.format();
    if (!fmt.format.block_status || !fmt.format.write || !fmt.format.set_comment || !fmt.format.get_comment) {
        Status bad(VDKIT_E_NOT_SUPPORTED,
                   "format '" + fmt.info.name +
                       "' cannot hold a cache (it needs writes, an allocation map and a comment)");
        (void)disk->close_and_delete();
        return bad;
    }
    if (img.size() != size) {
        const std::string where = img.location();
        (void)disk->close();
        return Status(VDKIT_E_INTERNAL, where + ": a cache of the wrong size was made");
    }
    VDKIT_TRY(img.set_comment(comment));
    VDKIT_TRY(img.flush());
    VDKIT_ASSIGN_OR_RETURN(vdkit_image_info info, img.raw_info());
    auto c = std::make_unique<Cache>();
    c->unit = std::clamp<uint64_t>(info.granularity, 4096, kMaxFill);
    c->changing = changing;
    c->image = std::move(disk->state_->images.back());
    disk->state_->images.clear();
    disk->state_->closed = true;
    cache = std::move(c);
    return Status::ok();
}

Status Disk::State::cache_close(const std::optional<std::string> &identity) {
    if (!cache) return Status::ok();
    std::unique_ptr<Cache> c = std::move(cache);
    host->log(LogLevel::info, c->image->location() + ": " + std::to_string(c->hit_bytes.load()) +
                                  " bytes read from the cache, " + std::to_string(c->miss_bytes.load()) +
                                  " from the chain");
    Status st;
    // After changes the mark stays unless the chain is known to be on disk
    // (identity given): the next attach then starts the cache over.
    if (c->changing && identity && !c->failed) st = c->image->set_comment(*identity);
    Status shut = c->image->close(false);
    return st.is_ok() ? shut : st;
}

Status Disk::detach_cache(bool delete_file) {
    std::unique_lock lock(state_->mu);
    State &st = *state_;
    if (st.closed) return closed_error();
    if (!st.cache) return Status(VDKIT_E_INVALID_ARGUMENT, "the disk has no cache");
    const std::string location = st.cache->image->location();
    // The chain's data must be on disk before the cache says it matches it.
    std::optional<std::string> identity;
    if (st.images.back()->flush()) {
        if (auto id = st.cache_identity()) identity = *id;
    }
    Status done = st.cache_close(identity);
    if (delete_file) {
        Status rm = st.host->stores().remove_location(location);
        if (done.is_ok()) done = rm;
    }
    return done;
}

Result<CacheStats> Disk::cache_stats() const {
    std::shared_lock lock(state_->mu);
    if (state_->closed) return closed_error();
    if (!state_->cache) return Status(VDKIT_E_NOT_FOUND, "the disk has no cache");
    CacheStats s;
    s.location = state_->cache->image->location();
    s.hit_bytes = state_->cache->hit_bytes;
    s.miss_bytes = state_->cache->miss_bytes;
    s.bypassed = state_->cache->failed;
    return s;
}

// A cache write failed: reads go on without the cache, and the mark stays
// "being updated" so the next attach starts it over.
void Disk::State::cache_failed(const Status &why) const {
    if (!cache->failed.exchange(true))
        host->log(LogLevel::warning,
                  cache->image->location() + ": the cache is bypassed from now on: " + why.message());
}

Status Disk::State::read_cached(uint64_t offset, void *buf, uint64_t len) const {
    Cache &c = *cache;
    auto *out = static_cast<unsigned char *>(buf);
    std::vector<unsigned char> fill;
    const uint64_t end = offset + len;
    while (offset < end) {
        if (c.failed) return read_chain(images.size() - 1, offset, out, end - offset);
        uint32_t status = 0;
        uint64_t run = 0;
        Status bs = c.image->block_status(offset, end - offset, status, run);
        if (!bs) {
            cache_failed(bs);
            continue;
        }
        if (status == VDKIT_BLOCK_DATA) {
            // Hit: the cache holds the block (reads of it may come back in pieces).
            for (uint64_t done = 0; done < run;) {
                uint64_t n = 0;
                bool unallocated = false;
                Status rd = c.image->read(offset + done, out + done, run - done, n, unallocated);
                if (rd && unallocated) rd = Status(VDKIT_E_INTERNAL, "the cache changed its map while reading");
                if (!rd) {
                    cache_failed(rd);
                    return read_chain(images.size() - 1, offset + done, out + done, run - done);
                }
                done += n;
            }
            c.hit_bytes += run;
            offset += run;
            out += run;
            continue;
        }
        // Miss: read whole cache blocks from the chain (at most kMaxFill),
        // hand back the part asked for and keep the blocks that hold data.
        const uint64_t want_end = std::min(offset + run, end);
        const uint64_t from = offset / c.unit * c.unit;
        const uint64_t to = std::min(size, std::min((want_end + c.unit - 1) / c.unit * c.unit, from + kMaxFill));
        fill.resize(static_cast<size_t>(to - from));
        VDKIT_TRY(read_chain(images.size() - 1, from, fill.data(), to - from));
        const uint64_t give = std::min(want_end, to) - offset;
        std::memcpy(out, fill.data() + (offset - from), static_cast<size_t>(give));
        c.miss_bytes += give;
        for (uint64_t b = from; b < to && !c.failed; b += c.unit) {
            const uint64_t n = std::min(c.unit, to - b);
            const unsigned char *block = fill.data() + (b - from);
            if (util::is_zero(block, static_cast<size_t>(n))) continue; // zeros cost the chain no I/O
            uint32_t here = 0;
            uint64_t here_run = 0;
            Status known = c.image->block_status(b, n, here, here_run);
            if (known && here == VDKIT_BLOCK_DATA) continue; // another reader filled it
            Status wr = known ? write_cache(*c.image, b, block, n) : known;
            if (!wr) cache_failed(wr);
        }
        offset += give;
        out += give;
    }
    return Status::ok();
}

Status Disk::State::cache_before_change() {
    if (!cache || cache->changing || cache->failed) return Status::ok();
    Status st = cache->image->set_comment(kUpdating);
    if (st) st = cache->image->flush();
    if (!st) {
        // Without the mark the cache could later be taken for current: drop it.
        host->log(LogLevel::warning, cache->image->location() + ": cannot mark the cache as being updated (" +
                                         st.message() + "); it is detached and deleted");
        const std::string location = cache->image->location();
        (void)cache->image->close(false);
        cache.reset();
        (void)host->stores().remove_location(location);
        return Status::ok();
    }
    cache->changing = true;
    return Status::ok();
}

Status Disk::State::cache_after_write(uint64_t offset, const void *data, uint64_t len) {
    if (!cache || cache->failed) return Status::ok();
    Cache &c = *cache;
    const auto *in = static_cast<const unsigned char *>(data);
    std::vector<unsigned char> fresh;
    for (uint64_t pos = offset, end = offset + len; pos < end;) {
        uint32_t status = 0;
        uint64_t run = 0;
        Status st = c.image->block_status(pos, end - pos, status, run);
        if (!st) {
            cache_failed(st);
            return Status::ok();
        }
        if (status == VDKIT_BLOCK_DATA) {
            // A cached block: give it what the chain now reads there.
            const unsigned char *src = in ? in + (pos - offset) : nullptr;
            if (!src) {
                fresh.resize(static_cast<size_t>(run));
                VDKIT_TRY(read_chain(images.size() - 1, pos, fresh.data(), run));
                src = fresh.data();
            }
            Status wr = write_cache(*c.image, pos, src, run);
            if (!wr) {
                cache_failed(wr);
                return Status::ok();
            }
        }
        pos += run;
    }
    return Status::ok();
}

Status Disk::State::cache_reset() {
    if (!cache) return Status::ok();
    // Content or size changed wholesale: start the cache over.
    const std::string location = cache->image->location();
    const std::string format = cache->image->format().info.name;
    VDKIT_TRY(cache->image->close(true));
    cache.reset();
    (void)host->stores().remove_location(location);
    CreateOptions co;
    co.format = format;
    co.size = size;
    co.overwrite = true;
    VDKIT_ASSIGN_OR_RETURN(auto fresh, create_disk(*host, location, co));
    return adopt_cache(std::move(fresh), kUpdating, true);
}

} // namespace vdkit
