// Chain operations: merge (VDMerge), commit and rebase (qemu-img), done once
// here for every format that can change an image's parent (set_parent).
//
// One primitive carries all three: transfer() makes an image read, block by
// block, what a source view shows wherever that differs from what the image
// will show through its chain afterwards, and writes nothing where the two
// already agree (same-data elision). Data always moves before any link
// changes and images are deleted last, so a failure or a cancel at any point
// leaves a chain whose top reads the same data.
#include "disk/containers.hpp"
#include "disk/disk_state.hpp"
#include "disk/open.hpp"
#include "host/host.hpp"
#include "io/paths.hpp"
#include "io/stores.hpp"
#include "util/util.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>

namespace vdkit {

Ranges unite(Ranges a, const Ranges &b) {
    a.insert(a.end(), b.begin(), b.end());
    std::sort(a.begin(), a.end());
    Ranges out;
    for (const auto &r : a) {
        if (!out.empty() && r.first <= out.back().second)
            out.back().second = std::max(out.back().second, r.second);
        else
            out.push_back(r);
    }
    return out;
}

Ranges subtract(const Ranges &a, const Ranges &b) {
    Ranges out;
    size_t j = 0;
    for (auto [s, e] : a) {
        while (j < b.size() && b[j].second <= s)
            ++j;
        for (size_t k = j; k < b.size() && b[k].first < e && s < e; ++k) {
            if (b[k].first > s) out.emplace_back(s, b[k].first);
            s = std::max(s, b[k].second);
        }
        if (s < e) out.emplace_back(s, e);
    }
    return out;
}

Ranges widen(const Ranges &a, uint64_t unit, uint64_t limit) {
    Ranges out;
    for (auto [s, e] : a) {
        s -= s % unit;
        e = std::min(limit, e % unit ? e - e % unit + unit : e);
        if (!out.empty() && s <= out.back().second)
            out.back().second = std::max(out.back().second, e);
        else
            out.emplace_back(s, e);
    }
    return out;
}

namespace {

constexpr uint64_t kWindow = 1ull << 30; // ranges are gathered a window at a time

// Runs of [off, end) where one image holds something (data or a zero record).
Result<Ranges> held_by(Image &img, uint64_t off, uint64_t end) {
    Ranges out;
    end = std::min(end, img.size());
    while (off < end) {
        uint32_t status = 0;
        uint64_t run = 0;
        VDKIT_TRY(img.block_status(off, end - off, status, run));
        if (status != VDKIT_BLOCK_UNALLOCATED) {
            if (!out.empty() && out.back().second == off)
                out.back().second += run;
            else
                out.emplace_back(off, off + run);
        }
        off += run;
    }
    return out;
}

Status cancelled(const char *op) {
    return Status(VDKIT_E_CANCELLED, std::string(op) + " cancelled; the chain reads as before");
}

} // namespace

Result<Ranges> Disk::State::held(size_t lo, size_t hi, uint64_t off, uint64_t end) const {
    Ranges all;
    for (size_t l = lo; l <= hi && l < images.size(); ++l) {
        VDKIT_ASSIGN_OR_RETURN(Ranges r, held_by(*images[l], off, end));
        all = unite(std::move(all), r);
    }
    return all;
}

Status Disk::State::transfer(size_t dst, const Ranges &ranges, const Reader &source, const Reader &after,
                             const std::function<bool(uint64_t)> &advance) {
    State &st = *this;
    Image &img = *st.images[dst];
    VDKIT_ASSIGN_OR_RETURN(vdkit_image_info info, img.raw_info());
    const uint64_t g = std::clamp<uint64_t>(info.granularity, 512, 64u << 20);
    std::vector<unsigned char> a(static_cast<size_t>(g)), b(static_cast<size_t>(g));
    const uint64_t end = img.size();
    uint64_t next = 0; // blocks below this are done (ranges may share a block)
    for (const auto &[s, e] : ranges) {
        for (uint64_t u = std::max(s / g * g, next); u < e && u < end; u += g) {
            const uint64_t n = std::min(g, end - u);
            VDKIT_TRY(source(u, a.data(), n));
            VDKIT_TRY(after(u, b.data(), n));
            if (std::memcmp(a.data(), b.data(), static_cast<size_t>(n)) != 0) {
                if (util::is_zero(a.data(), static_cast<size_t>(n)))
                    VDKIT_TRY(st.zero_locked(dst, u, n));
                else
                    VDKIT_TRY(st.write_locked(dst, u, a.data(), n));
            }
            next = u + g;
            if (!advance(n)) return cancelled("the operation was");
        }
    }
    return img.flush();
}

namespace {

Status need_writable(const Image &img, const char *op) {
    if (img.writable()) return Status::ok();
    return Status(VDKIT_E_READ_ONLY, std::string(op) + " writes to " + img.location() +
                                         ", which is open read-only (open the chain with writable_chain)");
}

// The bytes a file will hold, read through `read` (the chain's view), as a
// read-only store for the probe; anything but reading is refused.
class ProjectedStore final : public ByteStore {
public:
    ProjectedStore(std::string location, uint64_t size, std::function<Status(uint64_t, void *, size_t)> read)
        : location_(std::move(location)), size_(size), read_(std::move(read)) {}
    const std::string &location() const noexcept override { return location_; }
    Status pread(void *buf, uint64_t len, uint64_t offset) override {
        if (!util::range_within(offset, len, size_))
            return Status(VDKIT_E_OUT_OF_RANGE,
                          location_ + ": read at offset " + std::to_string(offset) + " is beyond the end of the file");
        return read_(offset, buf, static_cast<size_t>(len));
    }
    Status pwrite(const void *, uint64_t, uint64_t) override { return read_only(); }
    Status flush() override { return Status::ok(); }
    Result<uint64_t> size() override { return size_; }
    Status truncate(uint64_t) override { return read_only(); }
    Status discard(uint64_t, uint64_t) override { return read_only(); }
    Status zero(uint64_t, uint64_t) override { return read_only(); }
    Status extents(uint64_t offset, uint64_t len, uint32_t, std::vector<Extent> &out) override {
        out.clear();
        if (offset < size_) out.push_back({offset, std::min(len, size_ - offset), false});
        return Status::ok();
    }
    Result<uint64_t> allocated_size() override { return Status(VDKIT_E_NOT_SUPPORTED, location_ + ": not known"); }

private:
    Status read_only() const { return Status(VDKIT_E_READ_ONLY, location_ + ": a projection for the probe"); }
    std::string location_;
    uint64_t size_;
    std::function<Status(uint64_t, void *, size_t)> read_;
};

// Before commit/merge writes into `dst`: a destination whose format finds no
// header of its own in its file (raw, reached by probing as a chain's base)
// is read back by probing its bytes, so the data written must not give it a
// foreign container's signature (a guest that wrote a qcow2 or LUKS image at
// offset 0 of its disk) nor make another plugin's probe claim it (a VDI or
// VMDK header: qemu's rule for probed raw images). The whole probe runs on
// the chain's view from `view` down, which is what dst holds afterwards
// (docs/design/probing.md, "Links the next open must find").
template <class ChainState> // Disk::State, deduced (it is private to Disk)
Status keeps_openable(const ChainState &st, Image &dst, size_t view, const char *op) {
    VDKIT_ASSIGN_OR_RETURN(uint32_t score, probe_score(*st.host, dst.format(), dst.main(), dst.location()));
    if (score > VDKIT_PROBE_FALLBACK) return Status::ok();
    const uint64_t vsize = st.size, fsize = std::max(dst.size(), vsize);
    auto read = [&](uint64_t o, void *b, size_t n) -> Status {
        const uint64_t a = o < vsize ? std::min<uint64_t>(n, vsize - o) : 0;
        if (a) VDKIT_TRY(st.read_chain(view, o, b, a));
        if (a < n) std::memset(static_cast<char *>(b) + a, 0, n - static_cast<size_t>(a));
        return Status::ok();
    };
    // Probe what the file will hold exactly as the next open will: an
    // installed plugin's header (a VDI, a VMDK, a descriptor's text) wins.
    ProjectedStore projected(dst.location(), fsize, read);
    auto winner = probe(*st.host, projected, dst.location(), true);
    if (!winner && winner.status().code() == VDKIT_E_IO) return winner.status();
    if (winner && (*winner).get() != &dst.format()) {
        const std::string other = (*winner)->info.name;
        return Status(VDKIT_E_INVALID_ARGUMENT,
                      std::string(op) + " would give " + dst.location() + " a " + other + " header (the " + other +
                          " probe recognises the data written from above it); " + dst.location() + " is read as '" +
                          dst.format().info.name + "' by probing, so every later open would take it for a " + other +
                          " image. Nothing was written; copy the chain to a new image with 'vdkit convert' instead");
    }
    // A foreign container's signature (the probe refuses it): named as such.
    VDKIT_ASSIGN_OR_RETURN(auto found, containers::detect(fsize, read));
    if (!found) {
        // Stricter than the probe: a container's magic alone at offset 0
        // (QED\0, vhdxfile, conectix with no valid header after it) is
        // enough for qemu-img and other tools to take the base for that
        // container and fail on it.
        std::array<uint8_t, 512> head{};
        const size_t n = static_cast<size_t>(std::min<uint64_t>(fsize, head.size()));
        if (n) VDKIT_TRY(read(0, head.data(), n));
        if (auto magic = containers::magic_at_start(head.data(), n))
            return Status(VDKIT_E_INVALID_ARGUMENT,
                          std::string(op) + " would give " + dst.location() + " a " +
                              std::string(magic->container->title) + " magic (" + magic->evidence +
                              ", from the data above it); " + dst.location() + " is read as '" +
                              dst.format().info.name +
                              "' by probing, and tools that probe by magic (qemu-img) would "
                              "take it for " +
                              std::string(magic->container->title) +
                              " and fail on it. Nothing was written; copy the chain to a new image with 'vdkit "
                              "convert' instead");
        if (winner) return Status::ok();
        std::string msg = winner.status().message();
        if (auto cut = msg.find("; open it with format"); cut != std::string::npos) msg.erase(cut);
        return Status(VDKIT_E_INVALID_ARGUMENT,
                      std::string(op) + " would give " + dst.location() + " data that its probe refuses (" + msg +
                          "); every later open would refuse the chain. Nothing was written; copy the chain to a new "
                          "image with 'vdkit convert' instead");
    }
    return Status(VDKIT_E_INVALID_ARGUMENT,
                  std::string(op) + " would give " + dst.location() + " a " + std::string(found->container->title) +
                      " signature (" + found->evidence + ", from the data above it); " + dst.location() +
                      " is read as '" + dst.format().info.name +
                      "' by probing, so every later open would refuse the chain. Nothing was written; copy the "
                      "chain to a new image with 'vdkit convert' instead");
}

// Relink images[child] onto `parent` (nullptr: no parent), recording the
// ids in `ids` (default: the parent's own, raw_info).
Status relink(Image &child, Image *parent, const vdkit_image_info *ids = nullptr) {
    if (!parent) return child.set_parent("", "", nullptr);
    VDKIT_ASSIGN_OR_RETURN(vdkit_image_info info, parent->raw_info());
    return child.set_parent(relative_hint(child.location(), parent->location()), parent->format().info.name,
                            ids ? ids : &info);
}

// A modification id every format can record as a parent's: a VMDK keeps its
// first four bytes as the CID, where 00000000 reads as no id (nil) and
// ffffffff/fffffffe mean "no parent".
bool usable_modification_id(const Uuid &id) {
    const uint32_t cid = (uint32_t(id[0]) << 24) | (uint32_t(id[1]) << 16) | (uint32_t(id[2]) << 8) | id[3];
    return cid != 0 && cid != 0xffffffffu && cid != 0xfffffffeu;
}

// Before anything is written into `dst`, whose child in the chain is
// `child`: give dst its new modification id (VMDK CID, VDI modification
// UUID) and record it in the child *before* any data moves, so that no crash
// leaves the child naming an id its parent no longer has (an unopenable
// chain: docs/reliability.md, crash finding 5). Three steps, each made
// durable (flushed) before the next:
//   1. the child records no parent modification id (nil: opening checks
//      nothing; it still names its parent by location and UUID);
//   2. dst takes a new id, pinned for the rest of its session, so the data
//      written afterwards keeps it (no later "first write" changes it);
//   3. the child records the new id.
// A crash before 2 leaves the old ids (1: unchecked); after 3 both name the
// new one; between, the child checks nothing. Either way the chain opens and
// reads what it read before (the data above dst shadows what is written
// into it). Other children of dst, outside this chain, see the new id from
// step 2 on and are refused, as for any change of their parent. Nothing is
// done when dst keeps no modification id, or the format cannot set it.
Status announce_change(Image &dst, Image &child) {
    VDKIT_ASSIGN_OR_RETURN(vdkit_image_info info, dst.raw_info());
    if (util::uuid_is_nil(info.modification_uuid)) return Status::ok();
    Uuid fresh{};
    do
        util::generate_uuid(fresh.data());
    while (!usable_modification_id(fresh));
    vdkit_image_info unchecked = info;
    std::memset(unchecked.modification_uuid, 0, sizeof unchecked.modification_uuid);
    VDKIT_TRY(relink(child, &dst, &unchecked));
    VDKIT_TRY(child.flush());
    Status set = dst.set_uuid(VDKIT_UUID_MODIFICATION, fresh);
    if (set.code() == VDKIT_E_NOT_SUPPORTED)
        set = Status::ok(); // the id changes with the data, as before
    else if (set)
        set = dst.flush();
    Status linked = relink(child, &dst); // the id dst has now
    if (linked) linked = child.flush();
    return set ? linked : set;
}

// Whether relink(child, parent) would succeed: the same call on a dry-run
// copy of the child (no file changes).
Status would_relink(const Image &child, Image *parent) {
    VDKIT_ASSIGN_OR_RETURN(auto trial, child.open_dry_run());
    Status st = relink(*trial, parent);
    Status closed = trial->close(false);
    return st ? closed : st;
}

// Everything relink(child, parent) needs, checked without writing: the
// link must be one opening the child will accept again (the path rule) and
// the format must be able to record it (would_relink). Operations run this
// for every link they will change before they move any data.
Status can_relink(const Image &child, Image *parent) {
    if (parent) {
        VDKIT_ASSIGN_OR_RETURN(vdkit_image_info info, parent->raw_info());
        VDKIT_TRY(check_link(child.location(), relative_hint(child.location(), parent->location()),
                             child.format().info.name, parent->format().info.name, info, child.allow_unsafe_paths()));
    }
    return would_relink(child, parent);
}

// Progress over `total` bytes of work.
struct Meter {
    const ProgressFunction &progress;
    uint64_t total = 0, done = 0;
    bool operator()(uint64_t n) {
        done += n;
        return !progress || progress(std::min(done, total), total);
    }
};

uint64_t bytes_in(const Ranges &r) {
    uint64_t n = 0;
    for (const auto &[s, e] : r)
        n += e - s;
    return n;
}

} // namespace

Status Disk::State::relink_above(size_t dst, Status moved) {
    if (dst + 1 < images.size()) {
        Status l = relink(*images[dst + 1], images[dst].get());
        if (!l && moved.is_ok()) return l;
    }
    return moved;
}

Status Disk::merge(size_t from, size_t to, const ProgressFunction &progress) {
    std::unique_lock lock(state_->mu);
    State &st = *state_;
    if (st.closed) return closed_error();
    const size_t count = st.images.size();
    if (from >= count || to >= count || from == to)
        return Status(VDKIT_E_INVALID_ARGUMENT, "merge needs two different images of the chain (0.." +
                                                    std::to_string(count - 1) + "), got " + std::to_string(from) +
                                                    " and " + std::to_string(to));
    VDKIT_TRY(st.cache_before_change()); // the top reads the same; modification ids change
    const uint64_t size = st.size;
    Meter meter{progress};
    auto advance = [&](uint64_t n) { return meter(n); };
    if (from > to) {
        // Backward: images[to+1..from] into images[to].
        Image &dst = *st.images[to];
        VDKIT_TRY(need_writable(dst, "merge"));
        if (from + 1 < count) VDKIT_TRY(need_writable(*st.images[from + 1], "merge"));
        VDKIT_TRY(need_writable(*st.images[to + 1], "merge"));
        // Every link the merge changes, checked before anything is written.
        VDKIT_TRY(can_relink(*st.images[to + 1], &dst).with_context("merge"));
        if (from + 1 < count) VDKIT_TRY(can_relink(*st.images[from + 1], &dst).with_context("merge"));
        VDKIT_TRY(keeps_openable(st, dst, from, "merge"));
        VDKIT_TRY(announce_change(dst, *st.images[to + 1]).with_context("merge"));
        if (dst.size() < st.images[from]->size()) VDKIT_TRY(dst.resize(st.images[from]->size(), 0));
        Ranges todo;
        for (uint64_t w = 0; w < size; w += kWindow) {
            VDKIT_ASSIGN_OR_RETURN(Ranges r, st.held(to + 1, from, w, std::min(size, w + kWindow)));
            todo = unite(std::move(todo), r);
        }
        meter.total = bytes_in(todo);
        auto source = [&](uint64_t o, void *b, uint64_t n) { return st.read_chain(from, o, b, n); };
        auto after = [&](uint64_t o, void *b, uint64_t n) { return st.read_chain(to, o, b, n); };
        VDKIT_TRY(st.relink_above(to, st.transfer(to, todo, source, after, advance)));
        if (from + 1 < count) VDKIT_TRY(relink(*st.images[from + 1], &dst));
    } else {
        // Forward: images[from..to-1] into images[to], which then sits on images[from-1].
        Image &dst = *st.images[to];
        VDKIT_TRY(need_writable(dst, "merge"));
        Ranges todo;
        for (uint64_t w = 0; w < size; w += kWindow) {
            const uint64_t end = std::min(size, w + kWindow);
            VDKIT_ASSIGN_OR_RETURN(Ranges below, st.held(from, to - 1, w, end));
            VDKIT_ASSIGN_OR_RETURN(Ranges mine, held_by(dst, w, end));
            todo = unite(std::move(todo), subtract(below, mine));
        }
        meter.total = bytes_in(todo);
        // The source is the chain through dst itself: transfer writes whole
        // granules, and the sectors dst holds must keep dst's own data.
        auto source = [&](uint64_t o, void *b, uint64_t n) { return st.read_chain(to, o, b, n); };
        auto after = [&](uint64_t o, void *b, uint64_t n) -> Status {
            if (from == 0) {
                std::memset(b, 0, static_cast<size_t>(n));
                return Status::ok();
            }
            return st.read_chain(from - 1, o, b, n);
        };
        if (to + 1 < count) VDKIT_TRY(need_writable(*st.images[to + 1], "merge"));
        // Every link the merge changes, checked before data moves.
        if (to + 1 < count) VDKIT_TRY(can_relink(*st.images[to + 1], &dst).with_context("merge"));
        VDKIT_TRY(can_relink(dst, from == 0 ? nullptr : st.images[from - 1].get()).with_context("merge"));
        if (to + 1 < count) VDKIT_TRY(announce_change(dst, *st.images[to + 1]).with_context("merge"));
        VDKIT_TRY(st.relink_above(to, st.transfer(to, todo, source, after, advance)));
        VDKIT_TRY(relink(dst, from == 0 ? nullptr : st.images[from - 1].get()));
    }
    // The merged-away images go last: lo..hi.
    const size_t lo = std::min(from, to) + (from > to ? 1 : 0), hi = from > to ? from : to - 1;
    Status first;
    for (size_t i = hi + 1; i-- > lo;) {
        Status s = st.images[i]->close(true);
        if (s) s = st.host->stores().remove_location(st.images[i]->location());
        if (!s && first.is_ok()) first = s.with_context("the merge is done, but removing a merged image failed");
    }
    st.images.erase(st.images.begin() + static_cast<std::ptrdiff_t>(lo),
                    st.images.begin() + static_cast<std::ptrdiff_t>(hi + 1));
    st.size = st.images.back()->size();
    return first;
}

Status Disk::commit(size_t base, bool empty_top, const ProgressFunction &progress) {
    std::unique_lock lock(state_->mu);
    State &st = *state_;
    if (st.closed) return closed_error();
    const size_t top = st.images.size() - 1;
    if (base >= top)
        return Status(VDKIT_E_INVALID_ARGUMENT, "commit needs a base below the top image (0.." +
                                                    std::to_string(top == 0 ? 0 : top - 1) + "); the chain has " +
                                                    std::to_string(top + 1) + " image(s)");
    Image &dst = *st.images[base];
    Image &img = *st.images[top];
    VDKIT_TRY(need_writable(dst, "commit"));
    VDKIT_TRY(need_writable(img, "commit"));
    VDKIT_TRY(need_writable(*st.images[base + 1], "commit"));
    // Every link the commit changes, checked before anything is written.
    VDKIT_TRY(can_relink(*st.images[base + 1], &dst).with_context("commit"));
    VDKIT_TRY(can_relink(img, &dst).with_context("commit"));
    VDKIT_TRY(st.cache_before_change());
    VDKIT_TRY(keeps_openable(st, dst, top, "commit"));
    // dst's new modification id is in its child before any data moves.
    VDKIT_TRY(announce_change(dst, *st.images[base + 1]).with_context("commit"));
    if (dst.size() < img.size()) VDKIT_TRY(dst.resize(img.size(), 0));
    const uint64_t size = st.size;
    Ranges todo;
    for (uint64_t w = 0; w < size; w += kWindow) {
        VDKIT_ASSIGN_OR_RETURN(Ranges r, st.held(base + 1, top, w, std::min(size, w + kWindow)));
        todo = unite(std::move(todo), r);
    }
    Meter meter{progress, bytes_in(todo)};
    auto source = [&](uint64_t o, void *b, uint64_t n) { return st.read_chain(top, o, b, n); };
    auto after = [&](uint64_t o, void *b, uint64_t n) { return st.read_chain(base, o, b, n); };
    VDKIT_TRY(need_writable(*st.images[base + 1], "commit"));
    VDKIT_TRY(st.relink_above(base, st.transfer(base, todo, source, after, [&](uint64_t n) { return meter(n); })));
    // The top now sits on base (which holds everything between), and base's
    // new modification id is recorded.
    VDKIT_TRY(relink(img, &dst));
    VDKIT_TRY(img.flush()); // the top names base before anything else changes
    for (size_t i = top; i-- > base + 1;) {
        Status s = st.images[i]->close(false);
        if (!s) st.host->log(LogLevel::warning, "commit: closing " + st.images[i]->location() + ": " + s.message());
    }
    st.images.erase(st.images.begin() + static_cast<std::ptrdiff_t>(base + 1),
                    st.images.begin() + static_cast<std::ptrdiff_t>(top));
    if (!empty_top) return img.flush();
    // Emptying: every block of the top reads the same as base now.
    Status d = img.discard(0, img.size());
    if (d.code() == VDKIT_E_NOT_SUPPORTED) return img.flush();
    VDKIT_TRY(d);
    Status c = img.compact({});
    return c.code() == VDKIT_E_NOT_SUPPORTED ? img.flush() : c;
}

Status Disk::rebase(const std::string &new_parent, const RebaseOptions &options) {
    std::unique_lock lock(state_->mu);
    State &st = *state_;
    if (st.closed) return closed_error();
    const size_t top = st.images.size() - 1;
    Image &img = *st.images[top];
    VDKIT_TRY(need_writable(img, "rebase"));
    VDKIT_TRY(st.cache_before_change());
    // The new parent chain: an ancestor already open here (images[0..keep)),
    // or another chain opened read-only (below), or nothing.
    size_t keep = 0;
    std::unique_ptr<Disk> below;
    if (!new_parent.empty()) {
        // Named by the user: relative to the image's directory (as qemu-img
        // rebase -b), and the image must be able to find it again.
        VDKIT_ASSIGN_OR_RETURN(std::string resolved, resolve_sibling(img.location(), new_parent, true));
        std::error_code ec;
        if (std::filesystem::equivalent(resolved, img.location(), ec))
            return Status(VDKIT_E_INVALID_ARGUMENT, "an image cannot be its own parent");
        for (size_t i = 0; i < top && keep == 0; ++i)
            if (std::filesystem::equivalent(st.images[i]->location(), resolved, ec)) keep = i + 1;
        if (keep == 0) {
            OpenOptions po;
            po.format = options.format;
            po.filters = open_specs(img.filters()); // a chain is stored one way throughout
            VDKIT_ASSIGN_OR_RETURN(below, open_disk(*st.host, resolved, po));
            for (const auto &p : below->state_->images)
                if (std::filesystem::equivalent(p->location(), img.location(), ec))
                    return Status(VDKIT_E_INVALID_ARGUMENT, new_parent + " is built on " + img.location() +
                                                                "; an image cannot become its own ancestor");
        }
    }
    State *nb = below ? below->state_.get() : nullptr;
    Image *parent = nb ? nb->images.back().get() : keep ? st.images[keep - 1].get() : nullptr;
    // The link is checked as it will be written before any data moves: a
    // path the image can find its parent by again (the path rule, as
    // opening it will apply) and the format's own update on a dry-run copy.
    VDKIT_TRY(can_relink(img, parent).with_context("rebasing " + img.location()));
    // The new parent must be found again by the probe of every later open.
    if (nb) VDKIT_TRY(check_parent_link(*st.host, *nb->images.back(), img.location(), img.format().info.name));
    if (!options.unsafe) {
        const uint64_t size = st.size;
        Ranges todo;
        for (uint64_t w = 0; w < size; w += kWindow) {
            const uint64_t end = std::min(size, w + kWindow);
            // Only what the old and new chains hold can differ; an ancestor
            // kept as the new parent holds the same in both.
            Ranges old_held, new_held, mine;
            if (top > keep) {
                VDKIT_ASSIGN_OR_RETURN(old_held, st.held(keep, top - 1, w, end));
            }
            if (nb) {
                VDKIT_ASSIGN_OR_RETURN(new_held, nb->held(0, nb->images.size() - 1, w, end));
            }
            VDKIT_ASSIGN_OR_RETURN(mine, held_by(img, w, end));
            todo = unite(std::move(todo), subtract(unite(old_held, new_held), mine));
        }
        Meter meter{options.progress, bytes_in(todo)};
        auto zeros = [](void *b, uint64_t n) {
            std::memset(b, 0, static_cast<size_t>(n));
            return Status::ok();
        };
        // What the disk reads now, the image itself included: transfer
        // writes whole granules (a VHD block), and a granule the image holds
        // only in part must keep the image's own sectors, not the old
        // parent's (rebase copies from the old parent only what the image
        // does not hold itself).
        auto source = [&](uint64_t o, void *b, uint64_t n) { return st.read_chain(top, o, b, n); };
        auto after = [&](uint64_t o, void *b, uint64_t n) -> Status {
            if (nb) return nb->read_chain(nb->images.size() - 1, o, b, n);
            return keep ? st.read_chain(keep - 1, o, b, n) : zeros(b, n);
        };
        VDKIT_TRY(st.transfer(top, todo, source, after, [&](uint64_t n) { return meter(n); }));
    }
    VDKIT_TRY(relink(img, parent));
    // The new chain replaces the old one below the top.
    std::vector<std::unique_ptr<Image>> chain;
    if (nb) {
        chain = std::move(nb->images);
        nb->closed = true;
    }
    for (size_t i = top; i-- > 0;) {
        if (i < keep)
            chain.insert(chain.begin(), std::move(st.images[i]));
        else
            (void)st.images[i]->close(false);
    }
    chain.push_back(std::move(st.images[top]));
    st.images = std::move(chain);
    // Unsafe: what the disk reads may have changed anywhere.
    return options.unsafe ? st.cache_reset() : Status::ok();
}

} // namespace vdkit

// ---- attach (VixDiskLib_Attach / IsAttachPossible) -----------------------------------

namespace vdkit {

Status Disk::State::attach_problem(const State &parent, const State &child, const AttachOptions &options) {
    if (parent.closed || child.closed) return closed_error();
    if (&parent == &child) return Status(VDKIT_E_INVALID_ARGUMENT, "a disk cannot be attached to itself");
    Image &bottom = *child.images.front();
    Image &top = *parent.images.back();
    VDKIT_ASSIGN_OR_RETURN(vdkit_image_info mine, bottom.raw_info());
    VDKIT_ASSIGN_OR_RETURN(vdkit_image_info theirs, top.raw_info());
    std::error_code ec;
    for (const auto &a : parent.images)
        for (const auto &b : child.images)
            if (std::filesystem::equivalent(a->location(), b->location(), ec))
                return Status(VDKIT_E_INVALID_ARGUMENT, a->location() + " is in both chains; attaching would loop");
    if (!(mine.flags & VDKIT_IMAGE_HAS_PARENT) && (!options.relink || options.verify_identity))
        return Status(VDKIT_E_INVALID_ARGUMENT,
                      bottom.location() + " is a base image, so the chain has nothing to attach (open the child "
                                          "alone, without its parents, or relink it)");
    if (options.relink) {
        if (!bottom.format().format.set_parent)
            return Status(VDKIT_E_NOT_SUPPORTED, "format '" + bottom.format().info.name + "' cannot change " +
                                                     bottom.location() + "'s parent");
        VDKIT_TRY(need_writable(bottom, "attach with relink"));
    }
    if (top.size() > bottom.size())
        return Status(VDKIT_E_INVALID_ARGUMENT, top.location() + " (" + std::to_string(top.size()) +
                                                    " bytes) is larger than " + bottom.location() + " (" +
                                                    std::to_string(bottom.size()) + " bytes)");
    if (!options.relink || options.verify_identity) {
        if (!util::uuid_is_nil(mine.parent_uuid) && !util::uuid_is_nil(theirs.uuid) &&
            std::memcmp(mine.parent_uuid, theirs.uuid, 16) != 0)
            return Status(VDKIT_E_PARENT_MISMATCH, bottom.location() + " records parent " +
                                                       util::uuid_to_string(mine.parent_uuid) + ", but " +
                                                       top.location() + " is " + util::uuid_to_string(theirs.uuid));
        if (bottom.format().info.name == top.format().info.name && !util::uuid_is_nil(mine.parent_modification_uuid) &&
            !util::uuid_is_nil(theirs.modification_uuid) &&
            std::memcmp(mine.parent_modification_uuid, theirs.modification_uuid, 16) != 0)
            return Status(VDKIT_E_PARENT_MISMATCH,
                          top.location() + " was modified after " + bottom.location() + " was made over it");
        // A child that records its parent's UUID is attached only to an
        // image that can prove it is that parent: one with no identity (a
        // raw file, or any file no format recognises, read as raw) would
        // erase the recorded UUID unchecked.
        const bool same_modification = bottom.format().info.name == top.format().info.name &&
                                       !util::uuid_is_nil(mine.parent_modification_uuid) &&
                                       std::memcmp(mine.parent_modification_uuid, theirs.modification_uuid, 16) == 0;
        if (!util::uuid_is_nil(mine.parent_uuid) && util::uuid_is_nil(theirs.uuid) && !same_modification)
            return Status(VDKIT_E_PARENT_MISMATCH,
                          bottom.location() + " records parent " + util::uuid_to_string(mine.parent_uuid) + ", but " +
                              top.location() + " (read as '" + top.format().info.name +
                              "') has no identity to compare it with; it cannot be shown to be that parent "
                              "(force the attach to link it anyway — the recorded UUID is replaced)");
    }
    // The child's link leads to the parent's top, which later opens probe.
    VDKIT_TRY(check_parent_link(*child.host, top, bottom.location(), bottom.format().info.name));
    const size_t depth = parent.images.size() + child.images.size();
    if (depth > child.host->config().max_chain_depth)
        return Status(VDKIT_E_OUT_OF_RANGE, "the combined chain would be " + std::to_string(depth) +
                                                " images deep (max_chain_depth is " +
                                                std::to_string(child.host->config().max_chain_depth) + ")");
    if (options.relink) {
        // The link as it will be written: a path the child can find its
        // parent by again (the path rule), and the format's own update run
        // on a dry-run copy of the child (e.g. a VDI with no room for a
        // parent location refuses here, not halfway through attach).
        VDKIT_TRY(can_relink(bottom, &top).with_context("attaching " + bottom.location() + " onto " + top.location()));
    }
    return Status::ok();
}

Status Disk::can_attach(const Disk &parent, const AttachOptions &options) const {
    if (&parent == this) return Status(VDKIT_E_INVALID_ARGUMENT, "a disk cannot be attached to itself");
    std::shared_lock a(state_->mu, std::defer_lock);
    std::shared_lock b(parent.state_->mu, std::defer_lock);
    std::lock(a, b);
    return State::attach_problem(*parent.state_, *state_, options);
}

Status Disk::attach(Disk &parent, const AttachOptions &options) {
    if (&parent == this) return Status(VDKIT_E_INVALID_ARGUMENT, "a disk cannot be attached to itself");
    parent.state_->stop_async();
    std::unique_lock a(state_->mu, std::defer_lock);
    std::unique_lock b(parent.state_->mu, std::defer_lock);
    std::lock(a, b);
    State &child = *state_, &below = *parent.state_;
    VDKIT_TRY(State::attach_problem(below, child, options));
    Image &bottom = *child.images.front();
    if (options.relink) {
        VDKIT_TRY(child.cache_before_change());
        VDKIT_TRY(relink(bottom, below.images.back().get()));
    }
    // What the child shows where it holds nothing changes: start its cache over.
    if (child.cache) {
        VDKIT_TRY(child.cache_before_change());
        VDKIT_TRY(child.cache_reset());
    }
    (void)below.cache_close(std::nullopt);
    std::vector<std::unique_ptr<Image>> chain = std::move(below.images);
    for (auto &img : child.images)
        chain.push_back(std::move(img));
    child.images = std::move(chain);
    below.images.clear();
    below.closed = true;
    return Status::ok();
}

} // namespace vdkit
