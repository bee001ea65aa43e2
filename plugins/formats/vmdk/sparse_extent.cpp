#include "sparse_extent.hpp"

#include "vdkit/endian.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <unordered_set>

namespace vdkit::vmdk {

namespace {

using sdk::load_le;
using sdk::store_le;

bool mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

constexpr uint64_t kMaxGdEntries = 32u << 20; // qemu's L1 bound
constexpr size_t kMaxCachedTables = 4096;     // 4096 * 2 KiB = 8 MiB of grain tables

} // namespace

void encode_sparse_header(const SparseHeader &h, unsigned char *p) {
    auto put = [&](size_t off, uint64_t v, int n) { store_le(p + off, v, n); };
    std::memset(p, 0, 512);
    put(0, kSparseMagic, 4);
    put(4, h.version, 4);
    put(8, h.flags, 4);
    put(12, h.capacity, 8);
    put(20, h.grain_size, 8);
    put(28, h.descriptor_offset, 8);
    put(36, h.descriptor_size, 8);
    put(44, h.gtes_per_gt, 4);
    put(48, h.rgd_offset, 8);
    put(56, h.gd_offset, 8);
    put(64, h.overhead, 8);
    p[72] = h.unclean_shutdown;
    p[73] = '\n';
    p[74] = ' ';
    p[75] = '\r';
    p[76] = '\n';
    put(77, h.compress_algorithm, 2);
}

SparseHeader plan_sparse_layout(uint64_t capacity, uint64_t grain, bool zeroed_grain, uint64_t descriptor_sectors) {
    SparseHeader h;
    h.version = zeroed_grain ? 2 : 1;
    h.flags = kFlagNewlineTest | kFlagRedundant | (zeroed_grain ? kFlagZeroedGrain : 0);
    h.capacity = capacity;
    h.grain_size = grain;
    h.descriptor_offset = descriptor_sectors ? 1 : 0;
    h.descriptor_size = descriptor_sectors;
    h.gtes_per_gt = 512;
    uint64_t gt_coverage = 512 * grain;
    uint64_t gt_count = (capacity + gt_coverage - 1) / gt_coverage;
    if (gt_count > kMaxGdEntries) throw sdk::Error(VDKIT_E_INVALID_ARGUMENT, "disk too large for this grain size");
    uint64_t gd_sectors = (gt_count * 4 + 511) / 512;
    uint64_t gt_sectors = gt_count * 4; // 512 entries * 4 bytes = 4 sectors each
    h.rgd_offset = 1 + descriptor_sectors;
    uint64_t rgt_start = h.rgd_offset + gd_sectors;
    h.gd_offset = rgt_start + gt_sectors;
    uint64_t gt_start = h.gd_offset + gd_sectors;
    uint64_t end = gt_start + gt_sectors;
    h.overhead = (end + grain - 1) / grain * grain;
    return h;
}

SparseHeader create_sparse_layout(sdk::Context &ctx, sdk::StoreRef store, uint64_t capacity, uint64_t grain,
                                  bool zeroed_grain, uint64_t descriptor_sectors) {
    const SparseHeader h = plan_sparse_layout(capacity, grain, zeroed_grain, descriptor_sectors);
    const uint64_t gt_count = (capacity + 512 * grain - 1) / (512 * grain);
    const uint64_t gd_sectors = (gt_count * 4 + 511) / 512;
    const uint64_t rgt_start = h.rgd_offset + gd_sectors;
    const uint64_t gt_start = h.gd_offset + gd_sectors;

    unsigned char header[512];
    encode_sparse_header(h, header);
    store.truncate(ctx.get(), 0);
    store.truncate(ctx.get(), h.overhead * 512); // tables start zeroed (sparse file)
    store.pwrite(ctx.get(), 0, header, 512);
    // Directories point at their preallocated tables.
    std::vector<unsigned char> gd(static_cast<size_t>(gd_sectors * 512), 0), rgd(gd.size(), 0);
    for (uint64_t i = 0; i < gt_count; ++i) {
        store_le(&gd[i * 4], gt_start + i * 4, 4);
        store_le(&rgd[i * 4], rgt_start + i * 4, 4);
    }
    if (!gd.empty()) {
        store.pwrite(ctx.get(), h.rgd_offset * 512, rgd.data(), rgd.size());
        store.pwrite(ctx.get(), h.gd_offset * 512, gd.data(), gd.size());
    }
    return h;
}

SparseHeader parse_sparse_header(const unsigned char *p, const std::string &where) {
    auto bad = [&](const std::string &why) { return sdk::Error(VDKIT_E_CORRUPT, where + ": sparse header: " + why); };
    uint32_t magic = static_cast<uint32_t>(load_le(p, 4));
    if (magic == kTemporaryMagic)
        throw sdk::Error(VDKIT_E_CORRUPT, where + ": the header magic is 'vmdk', the mark of a file whose writer "
                                                  "never finished; it is incomplete");
    if (magic != kSparseMagic) throw bad("bad magic at offset 0");
    SparseHeader h;
    h.version = static_cast<uint32_t>(load_le(p + 4, 4));
    h.flags = static_cast<uint32_t>(load_le(p + 8, 4));
    h.capacity = load_le(p + 12, 8);
    h.grain_size = load_le(p + 20, 8);
    h.descriptor_offset = load_le(p + 28, 8);
    h.descriptor_size = load_le(p + 36, 8);
    h.gtes_per_gt = static_cast<uint32_t>(load_le(p + 44, 4));
    h.rgd_offset = load_le(p + 48, 8);
    h.gd_offset = load_le(p + 56, 8);
    h.overhead = load_le(p + 64, 8);
    h.unclean_shutdown = p[72];
    h.compress_algorithm = static_cast<uint16_t>(load_le(p + 77, 2));
    if (h.version < 1 || h.version > 3) throw bad("unsupported version " + std::to_string(h.version) + " at offset 4");
    uint32_t incompatible = h.flags & 0xffff0000u & ~(kFlagCompressed | kFlagMarkers);
    if (incompatible) throw sdk::Error(VDKIT_E_NOT_SUPPORTED, where + ": unknown incompatible header flags");
    if ((h.flags & kFlagMarkers) && !(h.flags & kFlagCompressed))
        throw bad("markers without compression (flags at offset 8)");
    if ((h.flags & kFlagCompressed) && !(h.flags & kFlagMarkers))
        throw sdk::Error(VDKIT_E_NOT_SUPPORTED, where + ": compressed grains without markers are not supported");
    if ((h.flags & kFlagCompressed) && h.compress_algorithm != 1)
        throw bad("compression algorithm " + std::to_string(h.compress_algorithm) + " at offset 77 is not DEFLATE");
    if ((h.flags & kFlagNewlineTest) && (p[73] != '\n' || p[74] != ' ' || p[75] != '\r' || p[76] != '\n'))
        throw bad("the newline test bytes at offset 73 are mangled (was the file transferred in text mode?)");
    if (h.grain_size == 0 || h.grain_size > 0x200000 || (h.grain_size & (h.grain_size - 1)))
        throw bad("grain size " + std::to_string(h.grain_size) + " at offset 20 is not a power of two up to 1 GiB");
    if (h.gtes_per_gt == 0 || h.gtes_per_gt > 512)
        throw bad("grain table size " + std::to_string(h.gtes_per_gt) + " at offset 44 is outside 1..512");
    uint64_t bytes = 0;
    if (!mul_ok(h.capacity, 512, &bytes)) throw bad("capacity at offset 12 overflows");
    return h;
}

SparseExtent::SparseExtent(sdk::Context &ctx, sdk::StoreRef store, std::string name, const SparseHeader &header)
    : GrainExtent(ctx, store, std::move(name)), h_(header) {
    if (h_.gd_offset == kGdAtEnd) {
        // Stream layout with the grain directory at the end: the footer (a
        // second header, EOF-1024) has the real offsets (VDF50 "footer").
        std::string missing;
        if (file_size_ < 1536) {
            missing = "the file is too short for a footer";
        } else {
            // The footer ends at the file size rounded up to a sector (as
            // qemu looks for it): a file cut inside its last sector still has one.
            uint64_t end = (file_size_ + 511) / 512 * 512;
            unsigned char marker[512], footer[512];
            store_.pread(ctx.get(), end - 1536, marker, 512);
            store_.pread(ctx.get(), end - 1024, footer, 512);
            if (load_le(marker + 8, 4) != 0 || load_le(marker + 12, 4) != 3) {
                missing = "no footer marker at offset " + std::to_string(end - 1536);
            } else {
                SparseHeader f = parse_sparse_header(footer, name_ + " (footer)");
                if (f.gd_offset == kGdAtEnd) corrupt("the footer also puts the grain directory at the end");
                h_.gd_offset = f.gd_offset;
                footer_at_ = end - 1536;
            }
        }
        if (!missing.empty()) {
            // A truncated download: rebuild the map from the grain markers.
            if (!(h_.flags & kFlagMarkers)) corrupt(missing + ", and without markers the grains cannot be found");
            scan_markers(ctx, missing);
            return;
        }
    }
    uint64_t gt_coverage = uint64_t(h_.gtes_per_gt) * h_.grain_size; // ≤ 2^30, no overflow
    uint64_t gd_entries = (h_.capacity + gt_coverage - 1) / gt_coverage;
    if (h_.capacity && gd_entries == 0) corrupt("capacity overflows the grain directory");
    if (gd_entries > kMaxGdEntries)
        corrupt("capacity " + std::to_string(h_.capacity) + " sectors needs " + std::to_string(gd_entries) +
                " grain directory entries (limit " + std::to_string(kMaxGdEntries) + ")");
    uint64_t gd_byte = 0;
    if (!mul_ok(h_.gd_offset, 512, &gd_byte) || gd_byte > file_size_ || file_size_ - gd_byte < gd_entries * 4)
        corrupt("grain directory at sector " + std::to_string(h_.gd_offset) + " lies beyond the end of the file");
    gd_.resize(static_cast<size_t>(gd_entries));
    if (!gd_.empty()) {
        std::vector<unsigned char> raw(gd_.size() * 4);
        store_.pread(ctx.get(), gd_byte, raw.data(), raw.size());
        for (size_t i = 0; i < gd_.size(); ++i)
            gd_[i] = static_cast<uint32_t>(load_le(raw.data() + i * 4, 4));
    }
    opened_unclean_ = h_.unclean_shutdown != 0;
    uint64_t rgd_byte = 0;
    if ((h_.flags & kFlagRedundant) && !(h_.flags & kFlagCompressed) && h_.rgd_offset &&
        mul_ok(h_.rgd_offset, 512, &rgd_byte) && rgd_byte <= file_size_ && file_size_ - rgd_byte >= gd_entries * 4 &&
        !gd_.empty() &&
        rgd_byte != gd_byte) { // a "redundant" directory that is the primary one is no copy (check says so)
        std::vector<unsigned char> raw(gd_.size() * 4);
        store_.pread(ctx.get(), rgd_byte, raw.data(), raw.size());
        rgd_.resize(gd_.size());
        for (size_t i = 0; i < rgd_.size(); ++i)
            rgd_[i] = static_cast<uint32_t>(load_le(raw.data() + i * 4, 4));
    }
}

void SparseExtent::set_unclean(sdk::Context &ctx, bool unclean) {
    if (h_.unclean_shutdown == (unclean ? 1 : 0)) return;
    if (!unclean && opened_unclean_) refresh_redundant_tables(ctx);
    h_.unclean_shutdown = unclean ? 1 : 0;
    unsigned char b = h_.unclean_shutdown;
    store_.pwrite(ctx.get(), 72, &b, 1);
}

void SparseExtent::set_gte(sdk::Context &ctx, uint64_t index, uint32_t value) {
    uint64_t gdi = index / h_.gtes_per_gt, slot = index % h_.gtes_per_gt;
    if (gdi >= gd_.size() || gd_[gdi] == 0)
        throw sdk::Error(VDKIT_E_NOT_SUPPORTED, name_ + ": grain table " + std::to_string(gdi) +
                                                    " is not allocated; writing needs preallocated tables");
    std::vector<uint32_t> &gt = grain_table(ctx, gdi);
    set_unclean(ctx, true);
    gt[slot] = value;
    dirty_[gdi].set(slot);
}

std::vector<uint32_t> *SparseExtent::held_table(uint64_t gd_index) {
    if (resolved_) {
        auto r = resolved_->find(gd_index);
        if (r != resolved_->end()) return &r->second;
    }
    auto it = gt_cache_.find(gd_index);
    return it == gt_cache_.end() ? nullptr : &it->second;
}

void SparseExtent::write_tables(sdk::Context &ctx) {
    if (dirty_.empty()) return;
    // The barrier: every grain a changed entry names is on the disk before
    // any entry names it.
    store_.flush(ctx.get());
    // Keep the redundant table in step (VDF50: both are updated). The copy
    // that names a data grain is written first, so a cut between the two
    // leaves the primary entry naming a sound grain — the old one
    // (unmapping: the redundant copy goes first) or the new one (mapping:
    // the primary goes first) — which check calls a stale copy of an extent
    // not closed cleanly and close refreshes; never a primary 0 beside a
    // sound redundant grain, which check must call an error. Runs of
    // neighbouring entries go in one write (convert: one per table).
    const uint64_t n = h_.gtes_per_gt;
    std::vector<unsigned char> run(static_cast<size_t>(n) * 4);
    bool second_phase = false;
    for (int phase = 0; phase < 2; ++phase) {
        if (phase == 1) {
            if (!second_phase) break;
            store_.flush(ctx.get());
        }
        for (const auto &entry : dirty_) {
            const uint64_t gdi = entry.first; // named, not a structured binding: clang < 16 cannot capture those
            const std::bitset<512> &bits = entry.second;
            const std::vector<uint32_t> *gt = held_table(gdi);
            if (!gt)
                throw sdk::Error(VDKIT_E_INTERNAL,
                                 name_ + ": changed grain table " + std::to_string(gdi) + " left memory");
            const bool redundant = gdi < rgd_.size() && rgd_[gdi] && uint64_t(rgd_[gdi]) * 512 + n * 4 <= file_size_;
            // Which table this phase writes slot k to: 0 none, else its sector.
            auto target = [&](uint64_t k) -> uint64_t {
                if (!bits.test(k)) return 0;
                if (!redundant) return phase == 0 ? gd_[gdi] : 0;
                const bool primary_first = (*gt)[k] > 1;
                if (phase == 0) return primary_first ? gd_[gdi] : rgd_[gdi];
                return primary_first ? rgd_[gdi] : gd_[gdi];
            };
            if (redundant) second_phase = true;
            for (uint64_t k = 0; k < n;) {
                const uint64_t table = target(k);
                if (!table) {
                    ++k;
                    continue;
                }
                uint64_t end = k;
                for (; end < n && target(end) == table; ++end)
                    store_le(run.data() + (end - k) * 4, (*gt)[end], 4);
                store_.pwrite(ctx.get(), table * 512 + k * 4, run.data(), (end - k) * 4);
                k = end;
            }
        }
    }
    store_.flush(ctx.get());
    dirty_.clear();
}

void SparseExtent::refresh_redundant_tables(sdk::Context &ctx) {
    write_tables(ctx); // the tables are read raw below
    opened_unclean_ = false;
    if (!tables_sound_) {
        // Never copy a table over a location not proven to be the redundant table.
        std::string first;
        vdkit_check_result r{};
        r.struct_size = sizeof r;
        check_tables(ctx, 0, r, &first);
        if (!first.empty()) return;
    }
    const uint64_t bytes = uint64_t(h_.gtes_per_gt) * 4;
    const uint64_t file_end = (file_size_ + 511) / 512 * 512;
    auto fits = [&](uint32_t sector) { return sector && uint64_t(sector) * 512 + bytes <= file_size_; };
    auto sound = [&](uint32_t e) {
        if (e <= 1) return e == 0 || (h_.flags & kFlagZeroedGrain);
        return e >= h_.overhead && uint64_t(e) * 512 + grain_bytes() <= file_end;
    };
    std::vector<unsigned char> primary(static_cast<size_t>(bytes)), copy(static_cast<size_t>(bytes));
    for (size_t gdi = 0; gdi < gd_.size() && gdi < rgd_.size(); ++gdi) {
        if (!fits(gd_[gdi]) || !fits(rgd_[gdi])) continue; // check reports those
        store_.pread(ctx.get(), uint64_t(gd_[gdi]) * 512, primary.data(), bytes);
        store_.pread(ctx.get(), uint64_t(rgd_[gdi]) * 512, copy.data(), bytes);
        if (primary == copy) continue;
        for (uint64_t k = 0; k < h_.gtes_per_gt; ++k)
            if (sound(static_cast<uint32_t>(load_le(primary.data() + k * 4, 4))))
                std::memcpy(copy.data() + k * 4, primary.data() + k * 4, 4);
        store_.pwrite(ctx.get(), uint64_t(rgd_[gdi]) * 512, copy.data(), bytes);
    }
}

void SparseExtent::scan_free(sdk::Context &ctx) {
    // Besides the free gaps: a grain the end of the file cuts (a truncated
    // file check -r has not padded yet) reads as zeros past it; a new grain
    // appended at the end of the file would land on that tail, so appends
    // go after its end. The tables are read raw, not cached; a table named
    // twice (or by both copies) is read once, after the changed entries
    // were written.
    write_tables(ctx);
    const uint64_t gb = grain_bytes(), bytes = uint64_t(h_.gtes_per_gt) * 4;
    std::vector<std::pair<uint64_t, uint64_t>> taken = metadata_ranges();
    std::vector<unsigned char> raw(static_cast<size_t>(bytes));
    std::unordered_set<uint32_t> seen;
    uint64_t cut = 0;
    for (const std::vector<uint32_t> *dir : {&gd_, &rgd_}) {
        for (uint32_t t : *dir) {
            if (t == 0 || !seen.insert(t).second || uint64_t(t) * 512 > file_size_ ||
                file_size_ - uint64_t(t) * 512 < bytes)
                continue;
            store_.pread(ctx.get(), uint64_t(t) * 512, raw.data(), raw.size());
            for (uint64_t k = 0; k < h_.gtes_per_gt; ++k) {
                const uint64_t at = load_le(raw.data() + k * 4, 4) * 512;
                if (at <= 512 || at >= file_size_) continue;
                taken.emplace_back(at, at + gb);
                if (at + gb > file_size_) cut = std::max(cut, at + gb);
            }
        }
    }
    std::sort(taken.begin(), taken.end());
    std::set<uint64_t> found;
    uint64_t pos = h_.overhead * 512;
    for (const auto &[a, b] : taken) {
        if (b <= pos) continue;
        for (; pos + gb <= a; pos += gb)
            found.insert(pos);
        pos = std::max(pos, b);
    }
    // After the last structure every grain's worth is free, also a last
    // part shorter than a grain (a new grain there extends the file; the
    // flush cuts it off the end).
    for (; pos < file_size_; pos += gb)
        found.insert(pos);
    // Grains given back since the last flush wait for it (after_flush).
    for (uint64_t at : released_)
        found.erase(at);
    free_ = std::move(found);
    cut_end_ = cut;
}

void SparseExtent::forget_free(sdk::Context &ctx) {
    write_tables(ctx);
    if (!released_.empty()) store_.flush(ctx.get());
    free_.reset();
    cut_end_.reset();
    released_.clear();
}

void SparseExtent::after_flush(sdk::Context &ctx) {
    if (!free_ && released_.empty()) return; // nothing allocated or given back this session
    if (!free_) scan_free(ctx);              // finds the released grains too: their entries are 0 or 1 now
    free_->insert(released_.begin(), released_.end());
    released_.clear();
    // Free grains that end the file are cut off. A grain the end of the
    // file cuts that is still in use is the last thing in the file, so no
    // free grain lies after it; once one was cut off, none is left.
    bool cut = false;
    while (!free_->empty() && *free_->rbegin() + grain_bytes() >= file_size_) {
        file_size_ = *free_->rbegin();
        free_->erase(std::prev(free_->end()));
        cut = true;
    }
    if (cut) {
        store_.truncate(ctx.get(), file_size_);
        store_.flush(ctx.get());
        cut_end_ = 0;
    }
}

// Data first, then the table entries (write_tables, after a barrier): a
// crash in between leaks a grain but never exposes unwritten data or the
// old content of a reused place. A grain given back earlier in the session
// is reused only after a flush made its table entry durable.
void SparseExtent::allocate(sdk::Context &ctx, uint64_t index, const unsigned char *grain) {
    if (!free_) scan_free(ctx);
    if (free_->empty() && !released_.empty()) {
        write_tables(ctx);
        store_.flush(ctx.get());
        free_->insert(released_.begin(), released_.end());
        released_.clear();
    }
    uint64_t at;
    if (!free_->empty()) {
        at = *free_->begin();
        free_->erase(free_->begin());
    } else {
        at = std::max((file_size_ + 511) / 512 * 512, *cut_end_);
    }
    if ((at + grain_bytes()) / 512 > UINT32_MAX)
        throw sdk::Error(VDKIT_E_NO_MEMORY, name_ + ": extent file would exceed 2 TiB");
    store_.pwrite(ctx.get(), at, grain, grain_bytes());
    file_size_ = std::max(file_size_, at + grain_bytes());
    set_gte(ctx, index, static_cast<uint32_t>(at / 512));
}

sdk::WriteResult SparseExtent::write(sdk::Context &ctx, uint64_t offset, const void *buf, uint64_t len) {
    if (!writable()) throw sdk::Error(VDKIT_E_NOT_SUPPORTED, name_ + ": compressed extents cannot be rewritten");
    require_sound_tables(ctx);
    uint64_t gb = grain_bytes();
    uint64_t index = offset / gb, within = offset % gb;
    uint64_t grain_len = std::min(gb, capacity_bytes() - index * gb); // the last grain may be short
    uint64_t n = std::min(len, grain_len - within);
    uint64_t sector = 0;
    Grain g = lookup(ctx, index, &sector);
    if (g == Grain::data) {
        store_.pwrite(ctx.get(), sector * 512 + within, buf, n);
        return {n};
    }
    const bool whole = within == 0 && n == grain_len;
    if (g == Grain::unallocated && !whole) return {0, true, index * gb, grain_len};
    // A whole grain, or part of a zero grain (whose old content is zeros).
    std::vector<unsigned char> grain(static_cast<size_t>(gb), 0);
    std::memcpy(grain.data() + within, buf, static_cast<size_t>(n));
    allocate(ctx, index, grain.data());
    return {n};
}

void SparseExtent::set_whole_grains(sdk::Context &ctx, uint64_t offset, uint64_t len, bool unmap) {
    require_sound_tables(ctx);
    uint64_t gb = grain_bytes();
    uint64_t first = (offset + gb - 1) / gb;
    uint64_t end = offset + len;
    uint64_t last = end >= capacity_bytes() ? (capacity_bytes() + gb - 1) / gb : end / gb;
    const uint32_t value = unmap ? 0 : 1;
    for (uint64_t i = first; i < last; ++i) {
        uint64_t sector = 0;
        const Grain g = lookup(ctx, i, &sector);
        set_gte(ctx, i, value);
        if (g == Grain::data) released_.push_back(sector * 512);
    }
}

std::vector<uint32_t> &SparseExtent::grain_table(sdk::Context &ctx, uint64_t gd_index) {
    if (resolved_) {
        auto r = resolved_->find(gd_index);
        if (r != resolved_->end()) return r->second;
    }
    auto it = gt_cache_.find(gd_index);
    if (it != gt_cache_.end()) return it->second;
    const uint64_t bytes = uint64_t(h_.gtes_per_gt) * 4;
    auto fits = [&](uint64_t sector) {
        return sector && sector * 512 <= file_size_ && file_size_ - sector * 512 >= bytes;
    };
    auto load = [&](uint64_t sector) {
        std::vector<unsigned char> raw(static_cast<size_t>(bytes));
        store_.pread(ctx.get(), sector * 512, raw.data(), raw.size());
        std::vector<uint32_t> gt(h_.gtes_per_gt);
        for (size_t i = 0; i < gt.size(); ++i)
            gt[i] = static_cast<uint32_t>(load_le(raw.data() + i * 4, 4));
        return gt;
    };
    const uint64_t sector = gd_[gd_index];
    std::vector<uint32_t> gt;
    if (fits(sector)) gt = load(sector);
    // With a redundant copy, reads follow the copy check -r would keep
    // (docs/check.md rule 5): when the two tables are not the same, or the
    // primary entry names no table while the redundant one does, the
    // tables are resolved once, exactly as check decides, so the disk reads
    // the same before and after the repair.
    const uint32_t rsector = gd_index < rgd_.size() ? rgd_[gd_index] : 0;
    if (!resolved_ && rsector && fits(rsector) && (gt.empty() || load(rsector) != gt)) {
        resolve_tables(ctx);
        auto r = resolved_->find(gd_index);
        if (r != resolved_->end()) return r->second;
    }
    if (gt.empty())
        corrupt("grain table " + std::to_string(gd_index) + " at sector " + std::to_string(sector) +
                " (grain directory entry at byte " + std::to_string(h_.gd_offset * 512 + gd_index * 4) +
                ") lies beyond the end of the file");
    if (gt_cache_.size() >= kMaxCachedTables) {
        write_tables(ctx); // changed tables leave memory only once written
        gt_cache_.clear();
    }
    return gt_cache_.emplace(gd_index, std::move(gt)).first->second;
}

void SparseExtent::resolve_tables(sdk::Context &ctx) {
    std::unordered_map<uint64_t, std::vector<uint32_t>> plan;
    std::string first;
    vdkit_check_result r{};
    r.struct_size = sizeof r;
    check_tables(ctx, 0, r, &first, &plan);
    resolved_ = std::move(plan);
    gt_cache_.clear();
}

void SparseExtent::scan_markers(sdk::Context &ctx, const std::string &why) {
    const uint64_t gt_coverage = uint64_t(h_.gtes_per_gt) * h_.grain_size;
    if ((h_.capacity + gt_coverage - 1) / gt_coverage > kMaxGdEntries)
        corrupt("capacity " + std::to_string(h_.capacity) + " sectors is too large to scan");
    const uint64_t grains = (h_.capacity + h_.grain_size - 1) / h_.grain_size;
    // Only grains found go into the map: its size follows the file, not the header's capacity.
    scanned_.emplace();
    const uint64_t sectors = (file_size_ + 511) / 512;
    uint64_t s = h_.overhead, found = 0, last_end = 0; // last_end: disk byte after the highest grain found
    bool eos = false;
    while (s < sectors && s <= UINT32_MAX && s * 512 + 16 <= file_size_) {
        unsigned char m[16];
        store_.pread(ctx.get(), s * 512, m, sizeof m);
        const uint64_t val = load_le(m, 8), size = load_le(m + 8, 4), type = load_le(m + 12, 4);
        if (size > 0) { // a grain: LBA, compressed length, data
            const uint64_t next = s + (12 + size + 511) / 512;
            if (size > 2 * grain_bytes() + 1024 || s * 512 + 12 + size > file_size_) break; // cut off
            if (val % h_.grain_size == 0 && val / h_.grain_size < grains) {
                if (scanned_->insert_or_assign(val / h_.grain_size, static_cast<uint32_t>(s)).second) ++found;
                last_end = std::max(last_end, std::min(capacity_bytes(), (val / h_.grain_size + 1) * grain_bytes()));
            }
            s = next;
        } else if (type == 0) {
            eos = true;
            break;
        } else if (type <= 4 && val < sectors) { // GT, GD, footer, progress: skip the metadata
            s += 1 + val;
        } else {
            break;
        }
    }
    scan_report_ = why + "; " + std::to_string(found) + " grains recovered by scanning the markers up to byte " +
                   std::to_string(std::min(s * 512, file_size_)) +
                   (eos ? " (end-of-stream marker found)" : " (the stream is cut off there; later data reads as zero)");
    // VDF50 "Stream-Optimized Compressed Sparse Extents": grains are written
    // in increasing LBA order, so what the cut took is the disk after the
    // highest grain found (grains missing below it were never written).
    if (!eos && last_end < capacity_bytes())
        scan_report_ += "; lost disk bytes [" + std::to_string(last_end) + ", " + std::to_string(capacity_bytes()) +
                        "): the stream is written in disk order and was cut after the grain ending there";
    ctx.log(VDKIT_LOG_WARNING, name_ + ": " + scan_report_);
}

SparseExtent::Grain SparseExtent::lookup(sdk::Context &ctx, uint64_t index, uint64_t *sector) {
    uint64_t gd_index = index / h_.gtes_per_gt;
    uint32_t gte = 0;
    if (scanned_) {
        auto it = scanned_->find(index);
        gte = it == scanned_->end() ? 0 : it->second;
    } else {
        if (gd_index >= gd_.size()) return Grain::unallocated;
        // A primary entry 0 reads the redundant table when that one is sound (check's rule).
        if (gd_[gd_index] == 0 && (gd_index >= rgd_.size() || rgd_[gd_index] == 0)) return Grain::unallocated;
        if (gd_[gd_index] == 0 && !resolved_) resolve_tables(ctx);
        if (gd_[gd_index] == 0 && !resolved_->count(gd_index)) return Grain::unallocated;
        gte = grain_table(ctx, gd_index)[index % h_.gtes_per_gt];
    }
    if (gte == 0) return Grain::unallocated;
    if (gte == 1) {
        if (h_.flags & kFlagZeroedGrain) return Grain::zero;
        corrupt("grain " + std::to_string(index) + " has entry 1 without the zeroed-grain flag");
    }
    if ((h_.flags & kFlagCompressed) && cut_off(ctx, gte)) {
        // A stream with its tables at the front, cut short (a truncated
        // download): the grains past the end are gone; say so once, with
        // how many, and read them as zeros like a stream without footer.
        if (scan_report_.empty()) count_cut_grains(ctx);
        return Grain::unallocated;
    }
    // The grain must start inside the file (a short last grain reads as zeros).
    if (uint64_t(gte) * 512 >= file_size_)
        corrupt("grain " + std::to_string(index) + " points to sector " + std::to_string(gte) +
                ", beyond the end of the file");
    if (gte < h_.overhead && !(h_.flags & kFlagCompressed))
        corrupt("grain " + std::to_string(index) + " points to sector " + std::to_string(gte) +
                ", inside the metadata");
    *sector = gte;
    return Grain::data;
}

bool SparseExtent::cut_off(sdk::Context &ctx, uint32_t gte) const {
    const uint64_t at = uint64_t(gte) * 512;
    if (at + 12 > file_size_) return true;
    if (at + 12 + 2 * grain_bytes() + 1024 <= file_size_) return false; // any valid length fits
    unsigned char marker[12];
    store_.pread(ctx.get(), at, marker, sizeof marker);
    // A length no grain can have (formats.md §8.1, Q-VMDK: in (0, 2·grain])
    // is a bad marker, not a truncated copy: reading it says so.
    const uint64_t size = load_le(marker + 8, 4);
    if (size == 0 || size > 2 * grain_bytes() + 1024) return false;
    return at + 12 + size > file_size_;
}

void SparseExtent::count_cut_grains(sdk::Context &ctx) {
    uint64_t total = 0, cut = 0;
    std::unordered_set<uint32_t> seen; // each table once, however many entries name it
    for (uint64_t g = 0; g < gd_.size(); ++g) {
        if (gd_[g] == 0 || !seen.insert(gd_[g]).second) continue;
        for (uint32_t e : grain_table(ctx, g)) {
            if (e <= 1) continue;
            ++total;
            if (cut_off(ctx, e)) ++cut;
        }
    }
    scan_report_ = "the stream is cut off at byte " + std::to_string(file_size_) +
                   " (a truncated copy?): " + std::to_string(cut) + " of its " + std::to_string(total) +
                   " grains lie past the end and read as zero; the others are intact";
    ctx.log(VDKIT_LOG_WARNING, name_ + ": " + scan_report_);
}

void SparseExtent::read_compressed(sdk::Context &ctx, uint64_t index, uint64_t sector) {
    if (cached_grain_ == index) return;
    unsigned char marker[12];
    store_.pread(ctx.get(), sector * 512, marker, 12);
    uint64_t lba = load_le(marker, 8);
    uint64_t size = load_le(marker + 8, 4);
    if (lba != index * h_.grain_size)
        corrupt("grain marker at sector " + std::to_string(sector) + " is for sector " + std::to_string(lba) +
                ", expected " + std::to_string(index * h_.grain_size));
    if (size == 0 || size > 2 * grain_bytes() + 1024 || sector * 512 + 12 + size > file_size_)
        corrupt("grain marker at sector " + std::to_string(sector) + " has a bad length " + std::to_string(size));
    std::vector<unsigned char> in(static_cast<size_t>(size));
    store_.pread(ctx.get(), sector * 512 + 12, in.data(), size);
    grain_buf_.assign(static_cast<size_t>(grain_bytes()), 0);
    uLongf out_len = static_cast<uLongf>(grain_buf_.size());
    int rc = uncompress(grain_buf_.data(), &out_len, in.data(), static_cast<uLong>(size));
    // The last grain of a disk may be short; anything else must inflate fully.
    if (rc == Z_BUF_ERROR && out_len == grain_buf_.size())
        corrupt("compressed grain at sector " + std::to_string(sector) + " inflates to more than a grain (" +
                std::to_string(grain_bytes()) + " bytes)");
    if (rc != Z_OK)
        corrupt("compressed grain at sector " + std::to_string(sector) + " does not inflate (zlib " +
                std::to_string(rc) + ")");
    cached_grain_ = index;
}

void SparseExtent::read_grain(sdk::Context &ctx, uint64_t index, uint64_t sector, uint64_t within, void *buf,
                              uint64_t n) {
    if (!(h_.flags & kFlagCompressed)) return GrainExtent::read_grain(ctx, index, sector, within, buf, n);
    read_compressed(ctx, index, sector);
    std::memcpy(buf, grain_buf_.data() + within, static_cast<size_t>(n));
}

void SparseExtent::grow(sdk::Context &ctx, uint64_t new_capacity) {
    require_sound_tables(ctx);
    if (!writable() || scanned_) throw sdk::Error(VDKIT_E_NOT_SUPPORTED, name_ + ": compressed extents cannot grow");
    if (new_capacity <= h_.capacity) return;
    forget_free(ctx); // tables are appended
    if (new_capacity >= (1ull << 32))
        throw sdk::Error(VDKIT_E_INVALID_ARGUMENT, name_ + ": a hosted sparse extent holds less than 2 TiB");
    const uint64_t coverage = uint64_t(h_.gtes_per_gt) * h_.grain_size;
    const uint64_t count = (new_capacity + coverage - 1) / coverage, old_count = gd_.size();
    if (count > kMaxGdEntries) throw sdk::Error(VDKIT_E_INVALID_ARGUMENT, name_ + ": too large for this grain size");
    const bool redundant = !rgd_.empty();
    const uint64_t table_sectors = (uint64_t(h_.gtes_per_gt) * 4 + 511) / 512;
    const uint64_t dir_sectors_old = (old_count * 4 + 511) / 512, dir_sectors = (count * 4 + 511) / 512;
    const bool move_dirs = dir_sectors > dir_sectors_old;
    uint64_t end = (file_size_ + 511) / 512; // sectors; everything new goes here
    auto take = [&](uint64_t sectors) {
        const uint64_t at = end;
        end += sectors;
        if (end > UINT32_MAX) throw sdk::Error(VDKIT_E_OUT_OF_RANGE, name_ + ": the extent file would exceed 2 TiB");
        return at;
    };
    std::vector<uint32_t> gd = gd_, rgd = rgd_;
    gd.resize(count, 0);
    if (redundant) rgd.resize(count, 0);
    for (uint64_t i = old_count; i < count; ++i) {
        gd[i] = static_cast<uint32_t>(take(table_sectors));
        if (redundant) rgd[i] = static_cast<uint32_t>(take(table_sectors));
    }
    const uint64_t gd_at = move_dirs ? take(dir_sectors) : h_.gd_offset;
    const uint64_t rgd_at = redundant ? (move_dirs ? take(dir_sectors) : h_.rgd_offset) : 0;
    store_.truncate(ctx.get(), end * 512); // new tables start zeroed
    auto put_dir = [&](const std::vector<uint32_t> &dir, uint64_t sector) {
        std::vector<unsigned char> raw(static_cast<size_t>(dir_sectors * 512), 0);
        for (size_t i = 0; i < dir.size(); ++i)
            store_le(raw.data() + i * 4, dir[i], 4);
        store_.pwrite(ctx.get(), sector * 512, raw.data(), raw.size());
    };
    put_dir(gd, gd_at);
    if (redundant) put_dir(rgd, rgd_at);
    store_.flush(ctx.get());
    h_.capacity = new_capacity;
    h_.gd_offset = gd_at;
    if (redundant) h_.rgd_offset = rgd_at;
    write_layout(ctx);
    gd_ = std::move(gd);
    rgd_ = std::move(rgd);
    file_size_ = end * 512;
}

void SparseExtent::write_layout(sdk::Context &ctx) {
    unsigned char header[512];
    store_.pread(ctx.get(), 0, header, 512);
    store_le(header + 12, h_.capacity, 8);
    store_le(header + 48, h_.rgd_offset, 8);
    store_le(header + 56, h_.gd_offset, 8);
    store_.pwrite(ctx.get(), 0, header, 512);
    store_.flush(ctx.get());
}

uint64_t SparseExtent::shrink(sdk::Context &ctx, uint64_t new_capacity, bool has_parent) {
    require_sound_tables(ctx);
    if (!writable() || scanned_) throw sdk::Error(VDKIT_E_NOT_SUPPORTED, name_ + ": compressed extents cannot shrink");
    if (new_capacity >= h_.capacity) return 0;
    const uint64_t coverage = uint64_t(h_.gtes_per_gt) * h_.grain_size;
    const uint64_t count = (new_capacity + coverage - 1) / coverage;
    const uint64_t first_gone = (new_capacity + h_.grain_size - 1) / h_.grain_size; // first grain wholly past the end
    // 1. Entries past the end are cleared in both tables (a later grow must
    // not bring old data back), directory entries past the new count too.
    for (uint64_t i = first_gone; i < count * h_.gtes_per_gt; ++i) {
        uint64_t sector;
        if (lookup(ctx, i, &sector) != Grain::unallocated) set_gte(ctx, i, 0);
    }
    write_tables(ctx);
    const uint64_t tail = (gd_.size() - count) * 4;
    if (tail) {
        std::vector<unsigned char> zeros(static_cast<size_t>(tail), 0);
        store_.pwrite(ctx.get(), h_.gd_offset * 512 + count * 4, zeros.data(), zeros.size());
        if (!rgd_.empty()) store_.pwrite(ctx.get(), h_.rgd_offset * 512 + count * 4, zeros.data(), zeros.size());
    }
    store_.flush(ctx.get());
    // 2. The header's capacity.
    h_.capacity = new_capacity;
    write_layout(ctx);
    gd_.resize(static_cast<size_t>(count));
    if (!rgd_.empty()) rgd_.resize(static_cast<size_t>(count));
    gt_cache_.clear();
    resolved_.reset();
    // 3. The grains and tables no entry uses any more go back (VMware's Shrink).
    return compact(ctx, has_parent);
}

std::vector<std::pair<uint64_t, uint64_t>> SparseExtent::metadata_ranges() const {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    const uint64_t dir_bytes = (gd_.size() * 4 + 511) / 512 * 512, table_bytes = uint64_t(h_.gtes_per_gt) * 4;
    out.emplace_back(0, h_.overhead * 512); // header, descriptor and front tables
    out.emplace_back(h_.gd_offset * 512, h_.gd_offset * 512 + dir_bytes);
    if (!rgd_.empty()) out.emplace_back(h_.rgd_offset * 512, h_.rgd_offset * 512 + dir_bytes);
    for (size_t i = 0; i < gd_.size(); ++i) {
        if (gd_[i]) out.emplace_back(uint64_t(gd_[i]) * 512, uint64_t(gd_[i]) * 512 + table_bytes);
        if (i < rgd_.size() && rgd_[i])
            out.emplace_back(uint64_t(rgd_[i]) * 512, uint64_t(rgd_[i]) * 512 + table_bytes);
    }
    std::sort(out.begin(), out.end());
    return out;
}

uint64_t SparseExtent::compact(sdk::Context &ctx, bool has_parent) {
    if (!writable() || scanned_)
        throw sdk::Error(VDKIT_E_NOT_SUPPORTED, name_ + ": compressed extents cannot be compacted");
    require_sound_tables(ctx);
    // Grains given back before are holes now: their table entries become
    // durable before anything is copied over them.
    store_.flush(ctx.get());
    forget_free(ctx);
    const uint64_t gb = grain_bytes(), before = file_size_;
    const uint64_t grains = (h_.capacity + h_.grain_size - 1) / h_.grain_size;
    std::vector<unsigned char> buf(static_cast<size_t>(gb));
    struct Placed {
        uint64_t sector, index;
    };
    std::vector<Placed> used;
    // 1. Zero grains leave the data area.
    for (uint64_t i = 0; i < grains; ++i) {
        uint64_t sector = 0;
        if (lookup(ctx, i, &sector) != Grain::data) continue;
        const uint64_t n = std::min(gb, file_size_ - sector * 512);
        store_.pread(ctx.get(), sector * 512, buf.data(), n);
        const bool zero = sdk::is_zero(buf.data(), static_cast<size_t>(n));
        if (zero && !has_parent)
            set_gte(ctx, i, 0);
        else if (zero && zeroed_grains())
            set_gte(ctx, i, 1);
        else
            used.push_back({sector, i});
        if ((i & 1023) == 0) ctx.progress(i, grains * 2);
    }
    // Unmapped before anything is copied over them.
    write_tables(ctx);
    // 2. Move grains down into holes, in batches whose copies land below
    //    every grain of the batch still to be repointed.
    std::sort(used.begin(), used.end(), [](const Placed &a, const Placed &b) { return a.sector < b.sector; });
    const auto meta = metadata_ranges();
    auto free_at = [&](uint64_t pos) { // first position >= pos where a grain fits between metadata
        for (bool moved = true; moved;) {
            moved = false;
            for (const auto &[a, b] : meta)
                if (pos < b && pos + gb > a) {
                    pos = b;
                    moved = true;
                }
        }
        return pos;
    };
    uint64_t pos = free_at(h_.overhead * 512);
    std::vector<std::pair<Placed, uint64_t>> batch; // grain, destination byte
    auto commit = [&] {
        if (batch.empty()) return;
        for (const auto &[g, dest] : batch)
            set_gte(ctx, g.index, static_cast<uint32_t>(dest / 512));
        write_tables(ctx); // flushes the copies first
        batch.clear();
    };
    for (size_t k = 0; k < used.size(); ++k) {
        const Placed &g = used[k];
        const uint64_t src = g.sector * 512;
        pos = free_at(pos);
        // Moving is worth it and safe only into space that does not touch the grain itself.
        if (pos + gb > src) {
            pos = std::max(pos, src + gb);
            continue;
        }
        if (!batch.empty() && pos + gb > batch.front().first.sector * 512) commit();
        // A grain the end of the file cuts reads as zeros past it, and is moved so.
        const uint64_t have = std::min(gb, file_size_ - src);
        store_.pread(ctx.get(), src, buf.data(), have);
        std::fill(buf.begin() + static_cast<long>(have), buf.end(), 0);
        store_.pwrite(ctx.get(), pos, buf.data(), gb);
        batch.emplace_back(g, pos);
        pos += gb;
        if ((k & 1023) == 0) ctx.progress(grains + k * grains / std::max<size_t>(used.size(), 1), grains * 2);
    }
    commit();
    // 3. Grain directories that were moved to the end (by a grow) move down
    //    into the lowest hole that holds them: copy, flush, then the header.
    auto occupied = [&] {
        auto taken = metadata_ranges();
        for (uint64_t i = 0; i < grains; ++i) {
            uint64_t sector = 0;
            if (lookup(ctx, i, &sector) == Grain::data) taken.emplace_back(sector * 512, sector * 512 + gb);
        }
        std::sort(taken.begin(), taken.end());
        return taken;
    };
    const uint64_t dir_bytes = (gd_.size() * 4 + 511) / 512 * 512;
    for (uint64_t *dir : {&h_.gd_offset, &h_.rgd_offset}) {
        if (*dir == 0 || (dir == &h_.rgd_offset && rgd_.empty()) || *dir < h_.overhead) continue;
        const auto taken = occupied();
        uint64_t hole = h_.overhead * 512;
        for (const auto &[a, b] : taken) {
            if (a >= hole + dir_bytes) break;
            hole = std::max(hole, (b + 511) / 512 * 512);
        }
        if (hole + dir_bytes > *dir * 512) continue; // nothing lower
        std::vector<unsigned char> raw(static_cast<size_t>(dir_bytes));
        store_.pread(ctx.get(), *dir * 512, raw.data(), raw.size());
        store_.pwrite(ctx.get(), hole, raw.data(), raw.size());
        store_.flush(ctx.get());
        *dir = hole / 512;
        write_layout(ctx);
    }
    // 3b. Grain tables past the front metadata (a grow puts them at the end)
    //     move down, highest first, into the lowest holes below them, so the
    //     free grains between them and the data are given back too (VDF50
    //     "Grain directory": an entry names its table's sector). All copies
    //     of a batch land in space nothing uses, are flushed, and only then
    //     do the directory entries name them; the old places become free.
    {
        const uint64_t table_bytes = uint64_t(h_.gtes_per_gt) * 4, table_span = (table_bytes + 511) / 512 * 512;
        std::vector<std::pair<uint64_t, uint64_t>> holes; // free [start, end), ascending
        uint64_t at = h_.overhead * 512;
        for (const auto &[a, b] : occupied()) {
            if (a > at) holes.emplace_back(at, a);
            at = std::max(at, (b + 511) / 512 * 512);
        }
        struct Table {
            uint64_t byte;
            size_t id; // gd index * 2 (+1: redundant copy)
        };
        std::vector<Table> tables;
        for (size_t i = 0; i < gd_.size(); ++i) {
            if (gd_[i] >= h_.overhead) tables.push_back({uint64_t(gd_[i]) * 512, i * 2});
            if (i < rgd_.size() && rgd_[i] >= h_.overhead) tables.push_back({uint64_t(rgd_[i]) * 512, i * 2 + 1});
        }
        std::sort(tables.begin(), tables.end(), [](const Table &a, const Table &b) { return a.byte > b.byte; });
        std::vector<std::pair<Table, uint64_t>> moves; // table, destination byte
        size_t h = 0;
        for (const Table &t : tables) {
            while (h < holes.size() && holes[h].second - holes[h].first < table_span)
                ++h;
            if (h == holes.size() || holes[h].first + table_span > t.byte) break; // nothing lower
            moves.emplace_back(t, holes[h].first);
            holes[h].first += table_span;
        }
        std::vector<unsigned char> raw(static_cast<size_t>(table_span), 0);
        for (size_t k = 0; k < moves.size(); k += 1024) {
            const size_t stop = std::min(moves.size(), k + 1024);
            for (size_t j = k; j < stop; ++j) {
                store_.pread(ctx.get(), moves[j].first.byte, raw.data(), static_cast<size_t>(table_bytes));
                store_.pwrite(ctx.get(), moves[j].second, raw.data(), raw.size());
            }
            store_.flush(ctx.get());
            for (size_t j = k; j < stop; ++j) {
                const auto &[t, dest] = moves[j];
                const bool red = t.id % 2;
                unsigned char e[4];
                store_le(e, dest / 512, 4);
                store_.pwrite(ctx.get(), (red ? h_.rgd_offset : h_.gd_offset) * 512 + (t.id / 2) * 4, e, 4);
                (red ? rgd_ : gd_)[t.id / 2] = static_cast<uint32_t>(dest / 512);
            }
            store_.flush(ctx.get());
        }
        gt_cache_.clear();
    }
    // 4. Truncate after the last grain or metadata.
    uint64_t end = h_.overhead * 512;
    for (const auto &[a, b] : occupied())
        end = std::max(end, b);
    if (end < file_size_) {
        store_.truncate(ctx.get(), end);
        file_size_ = end;
    }
    store_.flush(ctx.get());
    forget_free(ctx);
    ctx.progress(grains * 2, grains * 2);
    return before - file_size_;
}

void SparseExtent::require_sound_tables(sdk::Context &ctx) {
    if (tables_sound_ || scanned_) return;
    std::string first;
    vdkit_check_result r{};
    r.struct_size = sizeof r;
    check_tables(ctx, 0, r, &first);
    if (!first.empty())
        throw sdk::Error(VDKIT_E_CORRUPT, name_ + ": the grain tables are damaged (" + first +
                                              "); writing could destroy data, run 'vdkit check -r' first");
    tables_sound_ = true;
}

std::string SparseExtent::stream_grain_problem(sdk::Context &ctx, uint32_t sector, uint64_t grain) const {
    // VDF50 "Stream-Optimized Compressed Sparse Extents", grain marker:
    // u64 LBA of the grain's first sector, u32 compressed size, the zlib data.
    const uint64_t at = uint64_t(sector) * 512;
    if (at + 12 > file_size_)
        return "the grain marker at byte " + std::to_string(at) + " lies past the end of the file";
    unsigned char m[12];
    store_.pread(ctx.get(), at, m, sizeof m);
    const uint64_t lba = load_le(m, 8), size = load_le(m + 8, 4);
    if (grain != UINT64_MAX && lba != grain * h_.grain_size)
        return "the grain marker at byte " + std::to_string(at) + " is for sector " + std::to_string(lba) +
               ", not sector " + std::to_string(grain * h_.grain_size);
    if (lba % h_.grain_size || lba >= h_.capacity)
        return "the grain marker at byte " + std::to_string(at) + " names sector " + std::to_string(lba) +
               ", not the start of a grain of the disk (" + std::to_string(h_.capacity) + " sectors)";
    if (size == 0 || size > 2 * grain_bytes() + 1024)
        return "the grain marker at byte " + std::to_string(at) + " has a bad compressed size " + std::to_string(size);
    if (at + 12 + size > file_size_)
        return "the compressed grain at byte " + std::to_string(at) + " (" + std::to_string(size) +
               " bytes) reaches past the end of the file";
    std::vector<unsigned char> in(static_cast<size_t>(size)), out(static_cast<size_t>(grain_bytes()));
    store_.pread(ctx.get(), at + 12, in.data(), size);
    uLongf out_len = static_cast<uLongf>(out.size());
    const int rc = uncompress(out.data(), &out_len, in.data(), static_cast<uLong>(size));
    if (rc == Z_BUF_ERROR && out_len == out.size())
        return "the compressed grain at byte " + std::to_string(at) + " inflates to more than a grain (" +
               std::to_string(grain_bytes()) + " bytes)";
    if (rc != Z_OK)
        return "the compressed grain at byte " + std::to_string(at) + " does not inflate (zlib " + std::to_string(rc) +
               ")";
    return {};
}

template <class Report>
void SparseExtent::check_stream_markers(sdk::Context &ctx, const std::unordered_set<uint32_t> &referenced,
                                        Report &&report) {
    // VDF50 "Stream-Optimized Compressed Sparse Extents": after the
    // overhead, grain markers (size > 0) and metadata markers (size 0; type
    // 1 grain table, 2 grain directory, 3 footer, each followed by `val`
    // sectors; type 4 is skipped the same way) follow one another on sector
    // boundaries up to the end-of-stream marker (type 0). Each marker is
    // walked; grains the tables name were checked by the table walk.
    const uint64_t sectors = (file_size_ + 511) / 512;
    uint64_t s = h_.overhead, unreferenced = 0, first_unreferenced = 0;
    for (;;) {
        if (s >= sectors) {
            if (!footer_at_)
                report(VDKIT_FINDING_NOTE, file_size_,
                       "the stream has no end-of-stream marker (qemu leaves it out); every grain the tables name was "
                       "found",
                       false);
            else
                report(VDKIT_FINDING_ERROR, file_size_,
                       "the marker walk ran past the footer without an end-of-stream marker", false);
            return;
        }
        const uint64_t at = s * 512;
        unsigned char m[16] = {};
        store_.pread(ctx.get(), at, m, static_cast<size_t>(std::min<uint64_t>(16, file_size_ - at)));
        const uint64_t val = load_le(m, 8), size = load_le(m + 8, 4), type = load_le(m + 12, 4);
        if (size > 0) {
            if (!referenced.count(static_cast<uint32_t>(s))) {
                if (const std::string bad = stream_grain_problem(ctx, static_cast<uint32_t>(s), UINT64_MAX);
                    !bad.empty()) {
                    report(VDKIT_FINDING_ERROR, at,
                           "the marker walk stops at byte " + std::to_string(at) + ": " + bad +
                               " (no table names it; the markers after it cannot be found)",
                           false);
                    return;
                }
                if (!unreferenced++) first_unreferenced = at;
            }
            s += (12 + size + 511) / 512;
            continue;
        }
        if (type == 0) break;                                    // end of stream
        const uint64_t follow = type == 3 && val == 0 ? 1 : val; // a footer marker may leave val 0
        if (type > 4 || follow > sectors - s - 1) {
            report(VDKIT_FINDING_ERROR, at,
                   "the marker walk stops at byte " + std::to_string(at) + ": a metadata marker of type " +
                       std::to_string(type) + " with " + std::to_string(val) + " sectors is not a valid marker" +
                       (type <= 4 ? " (it reaches past the end of the file)" : ""),
                   false);
            return;
        }
        s += 1 + follow;
    }
    if (unreferenced)
        report(VDKIT_FINDING_LEAK, first_unreferenced,
               std::to_string(unreferenced) + " compressed grains in the stream are named by no grain table entry",
               false);
}

void SparseExtent::check_tables(sdk::Context &ctx, uint32_t flags, vdkit_check_result &r, std::string *gate,
                                std::unordered_map<uint64_t, std::vector<uint32_t>> *plan) {
    write_tables(ctx); // the tables are read raw below
    const sdk::CheckReporter reporter(ctx, gate ? 0 : flags, r);
    const bool compressed = h_.flags & kFlagCompressed;
    // A stream (compressed grains) is checked, never repaired in place: its
    // grains are written once, front to back (docs/check.md). `check -r`
    // reports what it finds and changes nothing.
    const bool repair = reporter.repairing() && !compressed;
    bool stream_errors = false;
    // Every finding names the extent file.
    auto report = [&](uint32_t severity, uint64_t offset, const std::string &msg, bool fixable) {
        if (gate) {
            if (severity == VDKIT_FINDING_ERROR && gate->empty()) *gate = msg + " at byte " + std::to_string(offset);
            return;
        }
        if (compressed && severity == VDKIT_FINDING_ERROR) stream_errors = true;
        reporter(severity, offset, name_ + ": " + msg, fixable && !compressed);
    };
    auto write_entry = [&](uint64_t table_sector, uint64_t slot, uint32_t value) {
        unsigned char e[4];
        store_le(e, value, 4);
        store_.pwrite(ctx.get(), table_sector * 512 + slot * 4, e, 4);
    };
    const uint64_t table_bytes = uint64_t(h_.gtes_per_gt) * 4;
    auto table_fits = [&](uint64_t sector) {
        return sector * 512 <= file_size_ && file_size_ - sector * 512 >= table_bytes;
    };
    auto read_table = [&](uint64_t sector) {
        std::vector<unsigned char> raw(static_cast<size_t>(table_bytes));
        store_.pread(ctx.get(), sector * 512, raw.data(), raw.size());
        std::vector<uint32_t> t(h_.gtes_per_gt);
        for (size_t i = 0; i < t.size(); ++i)
            t[i] = static_cast<uint32_t>(load_le(raw.data() + i * 4, 4));
        return t;
    };
    const uint64_t gb = grain_bytes();
    // What readers use besides grains (tables and directories, moved ones
    // too; the footer), merged: no grain may overlap it.
    // Which grain tables are real (VDF50 "Grain directory": each entry names
    // a table of gtesPerGT entries; docs/check.md rule 5). A directory entry
    // (either copy) naming a table that lies past the end of the file or
    // overlaps the header, the descriptor, a directory, another table or a
    // grain another table names is itself the error: that "table" is never
    // read for grains nor written. id = gdi * 2 (+1 for the redundant copy).
    using Range = std::pair<uint64_t, uint64_t>;
    const bool have_r = !rgd_.empty();
    const size_t n = scanned_ ? 0 : gd_.size();
    const uint64_t dir_bytes = (gd_.size() * 4 + 511) / 512 * 512;
    auto sec = [&](size_t id) -> uint32_t { return id % 2 ? (have_r ? rgd_[id / 2] : 0) : gd_[id / 2]; };
    auto table_name = [&](size_t id) {
        return std::string(id % 2 ? "redundant grain table " : "grain table ") + std::to_string(id / 2);
    };
    auto dir_entry_at = [&](size_t id) { return (id % 2 ? h_.rgd_offset : h_.gd_offset) * 512 + (id / 2) * 4; };
    std::vector<std::pair<Range, std::string>> fixed;
    fixed.push_back({{0, 512}, "the header"});
    // The embedded descriptor (header bytes 28 and 36): its text, up to the
    // first NUL, is what a reader uses; a declared region reaching over the
    // directories or tables is a wrong size field, not damaged tables.
    Range desc_declared{0, 0}, desc_text{0, 0};
    if (h_.descriptor_offset && h_.descriptor_size && h_.descriptor_offset < (1ull << 40) &&
        h_.descriptor_size < (1ull << 40)) {
        desc_declared = {h_.descriptor_offset * 512, (h_.descriptor_offset + h_.descriptor_size) * 512};
        const uint64_t avail = desc_declared.first < file_size_ ? file_size_ - desc_declared.first : 0;
        std::vector<unsigned char> text(
            static_cast<size_t>(std::min<uint64_t>({desc_declared.second - desc_declared.first, avail, 1u << 20})));
        if (!text.empty()) store_.pread(ctx.get(), desc_declared.first, text.data(), text.size());
        const uint64_t len = static_cast<uint64_t>(std::find(text.begin(), text.end(), 0) - text.begin());
        desc_text = {
            desc_declared.first,
            std::min(desc_declared.second, desc_declared.first + std::max<uint64_t>(512, (len + 511) / 512 * 512))};
        fixed.push_back({desc_text, "the embedded descriptor"});
    }
    if (n) fixed.push_back({{h_.gd_offset * 512, h_.gd_offset * 512 + dir_bytes}, "the grain directory"});
    if (n && have_r)
        fixed.push_back({{h_.rgd_offset * 512, h_.rgd_offset * 512 + dir_bytes}, "the redundant grain directory"});
    if (footer_at_) fixed.push_back({{footer_at_, footer_at_ + 1536}, "the footer"});
    // A redundant directory the header announces (flags bit 1) that is not there.
    if (n && (h_.flags & kFlagRedundant) && !compressed && !have_r) {
        report(VDKIT_FINDING_ERROR, 48,
               "the header announces a redundant grain directory (flags bit 1, byte 8) but its offset (byte 48) is " +
                   (h_.rgd_offset && h_.rgd_offset == h_.gd_offset
                        ? "the grain directory's own (byte 56: sector " + std::to_string(h_.rgd_offset) +
                              "), so there is no redundant copy"
                    : h_.rgd_offset ? "sector " + std::to_string(h_.rgd_offset) + ", past the end of the file (" +
                                          std::to_string(file_size_) + " bytes)"
                                    : std::string("0")) +
                   "; reads use the primary directory; repair clears the flag and the offset",
               true);
        if (repair) {
            unsigned char hb[512];
            store_.pread(ctx.get(), 0, hb, 512);
            h_.flags &= ~kFlagRedundant;
            h_.rgd_offset = 0;
            store_le(hb + 8, h_.flags, 4);
            store_le(hb + 48, 0, 8);
            store_.pwrite(ctx.get(), 0, hb, 512);
        }
    }
    std::vector<std::string> why(2 * n); // empty: a sound table (or entry 0)
    auto span = [](uint64_t a, uint64_t b) { return " (bytes " + std::to_string(a) + "-" + std::to_string(b) + ")"; };
    for (size_t id = 0; id < 2 * n; ++id) {
        const uint64_t s = sec(id);
        if (!s) continue;
        if (!table_fits(s)) {
            why[id] = "lies beyond the end of the file";
            continue;
        }
        for (const auto &[rng, name] : fixed)
            if (s * 512 < rng.second && rng.first < s * 512 + table_bytes) {
                why[id] = "overlaps " + name + span(rng.first, rng.second);
                break;
            }
    }
    {
        std::vector<std::pair<uint64_t, size_t>> starts;
        for (size_t id = 0; id < 2 * n; ++id)
            if (sec(id) && why[id].empty()) starts.emplace_back(uint64_t(sec(id)) * 512, id);
        std::sort(starts.begin(), starts.end());
        size_t holder = SIZE_MAX;
        uint64_t max_end = 0;
        for (const auto &[a, id] : starts) {
            // Both copies of one directory entry naming the same table: one
            // table (usable, without a redundant copy), not an overlap.
            if (holder != SIZE_MAX && a < max_end && !(sec(holder) == sec(id) && holder / 2 == id / 2)) {
                why[id] = "overlaps " + table_name(holder) + span(uint64_t(sec(holder)) * 512, max_end);
                if (why[holder].empty()) why[holder] = "overlaps " + table_name(id) + span(a, a + table_bytes);
            }
            if (a + table_bytes > max_end) {
                max_end = a + table_bytes;
                holder = id;
            }
        }
    }
    if (desc_declared.second > desc_text.second) {
        // What the declared descriptor region reaches over: a directory or a table in use.
        uint64_t first = UINT64_MAX;
        std::string what;
        auto consider = [&](uint64_t a, uint64_t b, const std::string &name) {
            if (a < desc_declared.second && desc_declared.first < b && a < first) {
                first = a;
                what = name + " at byte " + std::to_string(a);
            }
        };
        if (n) consider(h_.gd_offset * 512, h_.gd_offset * 512 + dir_bytes, "the grain directory");
        if (n && have_r)
            consider(h_.rgd_offset * 512, h_.rgd_offset * 512 + dir_bytes, "the redundant grain directory");
        for (size_t id = 0; id < 2 * n; ++id)
            if (sec(id) && why[id].empty())
                consider(uint64_t(sec(id)) * 512, uint64_t(sec(id)) * 512 + table_bytes, table_name(id));
        if (!what.empty()) {
            const bool fits = first >= desc_text.second;
            report(VDKIT_FINDING_ERROR, 36,
                   "the header's descriptor region (byte 28: sector " + std::to_string(h_.descriptor_offset) +
                       ", byte 36: " + std::to_string(h_.descriptor_size) + " sectors) overlaps " + what +
                       " (the descriptor text ends by byte " + std::to_string(desc_text.second) +
                       "); rewriting the descriptor there would destroy it; " +
                       (fits ? "repair sets the size to " + std::to_string((first - desc_declared.first) / 512) +
                                   " sectors"
                             : std::string("the text itself reaches it, so nothing is repaired")),
                   fits);
            if (repair && fits) {
                h_.descriptor_size = (first - desc_declared.first) / 512;
                unsigned char v[8];
                store_le(v, h_.descriptor_size, 8);
                store_.pwrite(ctx.get(), 36, v, 8);
            }
        }
    }
    // The overhead field (header byte 64) is checked against the structures
    // it should cover, not trusted over the tables: grains past the end of
    // the front metadata (rounded up to a grain) but below the overhead are
    // an inconsistent header field, not grains in the metadata.
    uint64_t ov = h_.overhead;
    if (n) {
        uint64_t front_end = 512;
        for (const auto &f : fixed)
            if (f.first.first < h_.overhead * 512 && f.first.first != footer_at_)
                front_end = std::max(front_end, f.first.second);
        for (size_t id = 0; id < 2 * n; ++id)
            if (sec(id) && why[id].empty() && uint64_t(sec(id)) * 512 < h_.overhead * 512)
                front_end = std::max(front_end, uint64_t(sec(id)) * 512 + table_bytes);
        ov = std::min<uint64_t>(h_.overhead, (front_end + gb - 1) / gb * gb / 512);
    }
    std::vector<std::vector<uint32_t>> tab(2 * n);
    struct Claim {
        uint64_t at, grain;
        size_t id;
        uint64_t len = 0; // bytes the grain takes in the file
        bool operator<(const Claim &o) const { return at < o.at; }
    };
    // The bytes a grain takes in the file: a whole grain, or for a stream
    // the grain marker with its compressed data (VDF50 "Stream-Optimized
    // Compressed Sparse Extents": u64 LBA, u32 size, then `size` bytes,
    // padded to a sector). A marker whose size is not valid takes its own
    // sector (stream_grain_problem reports it). claim_max bounds every len.
    const uint64_t claim_max = compressed ? (12 + 2 * gb + 1024 + 511) / 512 * 512 : gb;
    auto claim_len = [&](uint32_t e) -> uint64_t {
        if (!compressed) return gb;
        const uint64_t at = uint64_t(e) * 512;
        if (at + 12 > file_size_) return 512;
        unsigned char m[4];
        store_.pread(ctx.get(), at + 8, m, 4);
        const uint64_t size = load_le(m, 4);
        return size == 0 || size > 2 * gb + 1024 ? 512 : (12 + size + 511) / 512 * 512;
    };
    std::vector<Claim> claims; // every grain a sound table names inside the file
    for (size_t id = 0; id < 2 * n; ++id) {
        if (!sec(id) || !why[id].empty()) continue;
        tab[id] = read_table(sec(id));
        for (uint64_t k = 0; k < tab[id].size(); ++k)
            // Entries into the header area (below overhead) are errors themselves, not grains.
            if (tab[id][k] > 1 && tab[id][k] >= ov && uint64_t(tab[id][k]) * 512 < file_size_)
                claims.push_back(
                    {uint64_t(tab[id][k]) * 512, (id / 2) * h_.gtes_per_gt + k, id, claim_len(tab[id][k])});
    }
    std::sort(claims.begin(), claims.end());
    if (ov < h_.overhead) {
        auto below = std::lower_bound(claims.begin(), claims.end(), Claim{ov * 512, 0, 0, 0});
        if (below != claims.end() && below->at < h_.overhead * 512) {
            report(VDKIT_FINDING_ERROR, 64,
                   "the header's overhead field (" + std::to_string(h_.overhead) +
                       " sectors) reaches past the metadata, which ends by sector " + std::to_string(ov) +
                       ", over grain " + std::to_string(below->grain) + " at byte " + std::to_string(below->at) +
                       "; the grains are kept and repair sets the field to " + std::to_string(ov),
                   true);
            if (repair) {
                unsigned char v[8];
                store_le(v, ov, 8);
                store_.pwrite(ctx.get(), 64, v, 8);
                h_.overhead = ov;
            }
        } else {
            ov = h_.overhead;
        }
    }
    // The first claim whose grain may reach into [a, b), skipping `skip`.
    auto claim_in = [&](uint64_t a, uint64_t b, auto &&skip) -> const Claim * {
        auto it = std::lower_bound(claims.begin(), claims.end(), Claim{a >= claim_max ? a - claim_max + 1 : 0, 0, 0});
        for (; it != claims.end() && it->at < b; ++it)
            if (it->at + it->len > a && !skip(*it)) return &*it;
        return nullptr;
    };
    for (size_t id = 0; id < 2 * n; ++id) {
        if (!sec(id) || !why[id].empty()) continue;
        const uint64_t a = uint64_t(sec(id)) * 512;
        if (const Claim *c = claim_in(a, a + table_bytes, [&](const Claim &x) { return x.id == id; })) {
            why[id] = "overlaps grain " + std::to_string(c->grain) + " at byte " + std::to_string(c->at) +
                      " (named by " + table_name(c->id) + ")";
            tab[id].clear();
        }
    }
    if (std::any_of(why.begin(), why.end(), [](const std::string &w) { return !w.empty(); })) {
        // Grains named only by an unsound table are not claimed.
        claims.erase(std::remove_if(claims.begin(), claims.end(), [&](const Claim &c) { return !why[c.id].empty(); }),
                     claims.end());
    }

    std::vector<std::pair<uint64_t, uint64_t>> meta, all;
    for (const auto &f : fixed)
        all.push_back(f.first);
    for (size_t id = 0; id < 2 * n; ++id)
        if (sec(id) && why[id].empty())
            all.emplace_back(uint64_t(sec(id)) * 512, uint64_t(sec(id)) * 512 + table_bytes);
    std::sort(all.begin(), all.end());
    for (const auto &[a, b] : all) {
        if (!meta.empty() && a <= meta.back().second)
            meta.back().second = std::max(meta.back().second, b);
        else
            meta.emplace_back(a, b);
    }
    // Disjoint and sorted: only the last range starting before the grain's end can overlap it.
    auto overlaps_meta = [&](uint64_t at) -> const std::pair<uint64_t, uint64_t> * {
        auto it = std::lower_bound(meta.begin(), meta.end(), std::make_pair(at + gb, uint64_t(0)));
        if (it == meta.begin()) return nullptr;
        --it;
        return it->second > at ? &*it : nullptr;
    };
    // The header's geometry against the layout of the grains (VDF50 "Hosted
    // Sparse Extent Header": grainSize is the grain's size in sectors and
    // every grain table entry names the first sector of one whole grain). A
    // writer lays grains out one after the other, so the distance from one
    // grain to the next (or to the metadata or the end of the file after it)
    // is a multiple of the real grain size. Two spacing patterns fit a wrong
    // grainSize but also healthy images (grains freed by discard or zeroed
    // leave every other grain unused): every grain followed by a whole
    // power-of-two multiple of grainSize no entry names, or most grains
    // closer together than grainSize (those overlap, an error of their own).
    // They are a note, and while one is seen the space is kept: nothing is
    // called a leak, truncated, padded or unmapped (docs/check.md rule 6). A
    // grain directory holding more tables than the header needs is an error.
    std::string geometry;        // a pattern a wrong grainSize would explain (space is kept)
    bool geometry_error = false; // geometry names a directory the header undercounts
    if (!compressed) {
        std::vector<uint64_t> starts;
        for (const Claim &c : claims)
            starts.push_back(c.at);
        starts.erase(std::unique(starts.begin(), starts.end()), starts.end());
        if (starts.size() >= 2) {
            const uint64_t file_end = (file_size_ + 511) / 512 * 512;
            uint64_t bits = 0, smaller = 0, min_span = UINT64_MAX;
            for (size_t i = 0; i < starts.size(); ++i) {
                uint64_t stop = i + 1 < starts.size() ? starts[i + 1] : file_end;
                auto m = std::upper_bound(meta.begin(), meta.end(), std::make_pair(starts[i], UINT64_MAX));
                if (m != meta.end()) stop = std::min(stop, m->first);
                const uint64_t gap = stop > starts[i] ? stop - starts[i] : 0;
                bits |= gap | (starts[i] - starts[0]);
                min_span = std::min(min_span, gap);
                if (gap < gb) ++smaller;
            }
            const uint64_t unit = bits ? bits & -bits : 0; // the largest power of two dividing every span and distance
            if (unit > gb && min_span >= unit)
                geometry =
                    "grains lie " + std::to_string(unit / 512) +
                    " sectors apart with unused space between (grainSize, byte 20: " + std::to_string(h_.grain_size) +
                    " sectors); if grainSize were wrong this space would hold data: repair keeps it";
            else if (unit && unit < gb && smaller * 4 >= starts.size() * 3) {
                geometry = std::to_string(smaller) + " of the " + std::to_string(starts.size()) +
                           " grains start less than a grain (grainSize, byte 20: " + std::to_string(h_.grain_size) +
                           " sectors) after the one before (they lie " + std::to_string(unit / 512) +
                           " sectors apart); if grainSize were wrong they would not overlap: repair keeps every grain "
                           "and the space after them";
            }
        }
        // The directory's sectors hold more tables than capacity (byte 12),
        // grainSize and numGTEsPerGT (byte 44) need: the header undercounts.
        if (geometry.empty() && n && uint64_t(h_.gd_offset) * 512 + dir_bytes <= file_size_ && dir_bytes > n * 4) {
            std::vector<unsigned char> raw(static_cast<size_t>(dir_bytes - n * 4));
            store_.pread(ctx.get(), h_.gd_offset * 512 + n * 4, raw.data(), raw.size());
            for (size_t i = 0; i + 4 <= raw.size(); i += 4) {
                const uint64_t e = load_le(raw.data() + i, 4);
                if (e && table_fits(e)) {
                    geometry_error = true;
                    geometry = "the grain directory's entry " + std::to_string(n + i / 4) + " (byte " +
                               std::to_string(h_.gd_offset * 512 + n * 4 + i) + ") names a table at sector " +
                               std::to_string(e) + ", but capacity, grainSize and numGTEsPerGT need only " +
                               std::to_string(n) + " tables";
                    break;
                }
            }
        }
        // Not a write gate by itself: writes under the header's geometry stay
        // consistent with it; grains overlapping under it still refuse them.
        if (geometry_error && !gate)
            report(VDKIT_FINDING_ERROR, 20,
                   "the header's grainSize field (byte 20: " + std::to_string(h_.grain_size) +
                       " sectors) does not fit the grain tables: " + geometry +
                       "; the disk reads as the header says (as qemu reads it); nothing is called a leak, "
                       "truncated or unmapped, and repair leaves the field for you to correct",
                   false);
        else if (!geometry.empty() && !gate)
            report(VDKIT_FINDING_NOTE, 20, geometry, false);
    }
    // Where a grain entry may point: uncompressed grains start in the data
    // area, inside the file (the rule lookup and read_grain follow: a grain
    // the end of the file cuts reads as zeros past it, as qemu reads it);
    // compressed ones start with a marker whose data lies inside the file.
    auto entry_problem = [&](uint32_t e) -> std::string {
        if (e == 0) return {};
        if (e == 1) return (h_.flags & kFlagZeroedGrain) ? std::string() : "has entry 1 without the zeroed-grain flag";
        const uint64_t at = uint64_t(e) * 512;
        if (compressed) return cut_off(ctx, e) ? "lies past the end of the stream (cut off)" : std::string();
        if (e < ov)
            return "points into the metadata (sector " + std::to_string(e) + ", byte " + std::to_string(at) + ")";
        if (at >= file_size_)
            return "starts at byte " + std::to_string(at) + " (sector " + std::to_string(e) +
                   "), at or beyond the end of the file (" + std::to_string(file_size_) + " bytes)";
        if (const auto *m = overlaps_meta(at))
            return "(byte " + std::to_string(at) + ") overlaps the metadata (grain directory, tables" +
                   std::string(footer_at_ ? " or footer" : "") + ") at bytes " + std::to_string(m->first) + "-" +
                   std::to_string(m->second);
        return {};
    };
    // The bytes of grain `grain` the disk shows (the last grain may be short).
    auto visible = [&](uint64_t grain) {
        return std::min(gb, capacity_bytes() - std::min(capacity_bytes(), grain * gb));
    };
    uint64_t pad_to = 0; // repair: the file grows to here (the end of a grain the end of the file cuts)

    if (h_.unclean_shutdown) {
        report(VDKIT_FINDING_NOTE, 72, "the extent was not closed cleanly (uncleanShutdown is set)", true);
    }
    if (scanned_) {
        report(VDKIT_FINDING_ERROR, file_size_, scan_report_, false);
        if (reporter.repairing())
            reporter(VDKIT_FINDING_NOTE, UINT64_MAX,
                     name_ + ": a streamOptimized extent is not repaired in place (its grains are written once); "
                             "nothing was changed: 'vdkit convert' copies every readable grain into a new image",
                     false);
        return; // no tables to check
    }
    struct Use {
        uint32_t sector;
        uint64_t grain;
        bool suspect; // its two tables disagreed: it loses an overlap
    };
    std::vector<Use> used;
    std::unordered_set<uint32_t> stream_referenced;      // compressed: grain markers the tables name
    std::vector<uint64_t> suspects;                      // grains whose tables disagreed (ascending)
    std::vector<uint32_t> use_sec(n, 0), use_rsec(n, 0); // the tables in use (0: none)
    std::vector<std::pair<size_t, uint32_t>> relocate;   // directory entry id to point at a copy of a table
    std::vector<Range> also_held; // grains the copy that lost a disagreement names: never truncated
    bool incomplete = false;      // a table's grains cannot be found: nothing is called a leak
    for (uint64_t gdi = 0; gdi < n; ++gdi) {
        const size_t pid = gdi * 2, rid = pid + 1;
        const uint32_t ps = sec(pid), rs = sec(rid);
        if (!ps && !rs) continue;
        const bool p_ok = ps && why[pid].empty(), r_ok = rs && why[rid].empty();
        for (const size_t id : {pid, rid}) {
            if (!sec(id) || why[id].empty()) continue;
            const bool other_ok = id == pid ? r_ok : p_ok;
            report(VDKIT_FINDING_ERROR, dir_entry_at(id),
                   std::string(id % 2 ? "redundant " : "") + "grain directory entry " + std::to_string(gdi) +
                       " names sector " + std::to_string(sec(id)) + " (byte " +
                       std::to_string(uint64_t(sec(id)) * 512) + "), which " + why[id] +
                       ": it is not a grain table and is never written; " +
                       (other_ok ? std::string("repair writes a new table at the end of the file from the ") +
                                       (id % 2 ? "primary" : "redundant") + " copy"
                                 : std::string("the other copy is unusable too")),
                   other_ok);
            if (other_ok) relocate.emplace_back(id, sec(id ^ 1));
        }
        if (p_ok && ps == rs) {
            // Reads use that table (both copies agree): no data is lost, but
            // nothing is redundant; repair gives the redundant entry its own copy.
            report(VDKIT_FINDING_ERROR, dir_entry_at(rid),
                   "redundant grain directory entry " + std::to_string(gdi) +
                       " names the same grain table as the primary entry (sector " + std::to_string(ps) +
                       "): the table has no redundant copy; reads use it; repair writes a copy "
                       "at the end of the file for the redundant entry",
                   true);
            relocate.emplace_back(rid, ps);
        }
        if (!ps && r_ok) {
            report(VDKIT_FINDING_ERROR, dir_entry_at(pid),
                   "grain directory entry " + std::to_string(gdi) +
                       " is 0 but the redundant directory names the grain table at sector " + std::to_string(rs) +
                       ", whose grains are readable data; repair writes a new primary table at the end of the file "
                       "from it",
                   true);
            relocate.emplace_back(pid, rs);
        }
        if (!p_ok && !r_ok) {
            const uint64_t first_grain = gdi * h_.gtes_per_gt;
            report(VDKIT_FINDING_ERROR, dir_entry_at(ps ? pid : rid),
                   "grain table " + std::to_string(gdi) + " has no usable copy: its grains cannot be found (" +
                       lost_range(first_grain, 0, uint64_t(h_.gtes_per_gt) * gb) +
                       " read as zeros); nothing is repaired or truncated",
                   false);
            incomplete = true;
            continue;
        }
        const uint32_t tsec = p_ok ? ps : rs, rsec = p_ok && r_ok ? rs : 0;
        use_sec[gdi] = tsec;
        use_rsec[gdi] = rsec;
        std::vector<uint32_t> gt = tab[p_ok ? pid : rid];
        const bool has_rgt = rsec != 0;
        if (has_rgt) {
            const std::vector<uint32_t> &rgt = tab[rid];
            uint64_t differ = 0, first = 0, from_copy = 0;
            bool primary_sound = true; // every differing primary entry points somewhere valid
            for (uint64_t k = 0; k < gt.size(); ++k) {
                if (gt[k] == rgt[k]) continue;
                const uint64_t grain = gdi * h_.gtes_per_gt + k;
                if (differ++ == 0) first = k;
                // Rank: 3 a data grain inside the file clear of metadata and
                // of every other grain; 2 such a grain overlapping another
                // grain (the overlap pass below decides); 1 a valid 0/1 entry;
                // 0 unusable. The higher wins (readable data beats an empty
                // entry), the primary on a tie.
                auto rank = [&](uint32_t e) {
                    if (!entry_problem(e).empty()) return 0;
                    if (e <= 1) return 1;
                    const uint64_t at = uint64_t(e) * 512;
                    return claim_in(at, at + claim_len(e), [&](const Claim &c) { return c.grain == grain; }) ? 2 : 3;
                };
                const int rp = rank(gt[k]), rr = rank(rgt[k]);
                if (rp < 3) primary_sound = false;
                suspects.push_back(grain);
                const uint32_t v = rp >= rr ? (rp ? gt[k] : 0) : rgt[k];
                const uint32_t loser = v == gt[k] ? rgt[k] : gt[k];
                if (loser > 1 && (v == gt[k] ? rr : rp) >= 2)
                    also_held.emplace_back(uint64_t(loser) * 512, uint64_t(loser) * 512 + gb);
                if (v != gt[k] && v) {
                    ++from_copy;
                    // The disk part read through the primary entry now reads the copy's grain.
                    report(VDKIT_FINDING_ERROR, uint64_t(tsec) * 512 + k * 4,
                           "grain " + std::to_string(grain) + ": the primary entry (" + std::to_string(gt[k]) + ") " +
                               (rp == 0      ? entry_problem(gt[k])
                                : gt[k] <= 1 ? std::string("is empty")
                                             : std::string("overlaps another grain")) +
                               ", the redundant entry names a sound grain at byte " +
                               std::to_string(uint64_t(v) * 512) + "; repair takes the redundant entry (changed " +
                               lost_range(grain, 0, gb).substr(5) + ": they read that grain)",
                           true);
                }
                if (v == 0 && gt[k])
                    report(VDKIT_FINDING_ERROR, uint64_t(tsec) * 512 + k * 4,
                           "grain " + std::to_string(grain) + " " + entry_problem(gt[k]) +
                               " and its redundant entry is unusable too; repair unmaps it (" +
                               lost_range(grain, 0, gb) + ": the entry is unusable, afterwards unallocated)",
                           true);
                if (repair) {
                    if (v != gt[k]) write_entry(tsec, k, v);
                    if (v != rgt[k]) write_entry(rsec, k, v);
                }
                gt[k] = v;
            }
            // An extent closed uncleanly may have stopped between the two
            // table writes of set_gte: when the primary entries are sound that
            // is a stale copy (repair refreshes it), not damage to data.
            const bool interrupted = h_.unclean_shutdown && primary_sound;
            if (differ)
                report(interrupted ? VDKIT_FINDING_LEAK : VDKIT_FINDING_ERROR, uint64_t(tsec) * 512 + first * 4,
                       "grain table " + std::to_string(gdi) + " and its redundant copy differ in " +
                           std::to_string(differ) + " entries (first: entry " + std::to_string(first) + ")" +
                           (from_copy ? "; " + std::to_string(from_copy) +
                                            " primary entries take the redundant copy's value (theirs is unusable, "
                                            "empty or overlaps another grain; the redundant one is a sound grain)"
                                      : std::string()) +
                           (interrupted ? "; the extent was not closed cleanly and the primary table is sound" : ""),
                       true);
        }
        // What reads use (resolve_tables): the table check -r keeps, with
        // the entries it takes from the redundant copy.
        if (plan && (tsec != ps || gt != tab[pid])) (*plan)[gdi] = gt;
        for (uint64_t k = 0; k < gt.size(); ++k) {
            const uint64_t grain = gdi * h_.gtes_per_gt + k;
            const std::string problem = entry_problem(gt[k]);
            if (!problem.empty() && compressed) {
                // A stream cut short: the grain reads as zeros (lookup); nothing to repair.
                report(VDKIT_FINDING_ERROR, uint64_t(tsec) * 512 + k * 4,
                       "grain " + std::to_string(grain) + " " + problem + " and reads as zeros (" +
                           lost_range(grain, 0, gb) + ": the stream was truncated)",
                       false);
                continue;
            }
            if (compressed && gt[k] > 1 && !gate) {
                // VDF50 "Stream-Optimized Compressed Sparse Extents": the
                // entry names a grain marker for this grain whose data
                // inflates to at most one grain.
                stream_referenced.insert(gt[k]);
                const std::string bad = stream_grain_problem(ctx, gt[k], grain);
                if (!bad.empty())
                    report(VDKIT_FINDING_ERROR, uint64_t(gt[k]) * 512,
                           "grain " + std::to_string(grain) + " (table entry at byte " +
                               std::to_string(uint64_t(tsec) * 512 + k * 4) + "): " + bad + " (" +
                               lost_range(grain, 0, gb) + ": the grain cannot be read)",
                           false);
                continue;
            }
            if (!problem.empty()) {
                report(VDKIT_FINDING_ERROR, uint64_t(tsec) * 512 + k * 4,
                       "grain " + std::to_string(grain) + " " + problem + "; repair unmaps it (" +
                           lost_range(grain, 0, gb) + ": the entry is unusable, afterwards unallocated)",
                       true);
                if (repair) {
                    write_entry(tsec, k, 0);
                    if (has_rgt) write_entry(rsec, k, 0);
                }
                continue;
            }
            if (gt[k] > 1 && !compressed && geometry.empty()) { // (a wrong grainSize cuts nothing)
                const uint64_t at = uint64_t(gt[k]) * 512;
                if (at + visible(grain) > file_size_) {
                    // Readable up to the end of the file; the rest is gone.
                    const uint64_t kept = file_size_ - at;
                    if (!gate)
                        report(VDKIT_FINDING_ERROR, file_size_,
                               "grain " + std::to_string(grain) + " (at byte " + std::to_string(at) +
                                   ") is cut off by the end of the file at byte " + std::to_string(file_size_) +
                                   ": its first " + std::to_string(kept) +
                                   " bytes are intact, the rest reads as zeros (" + lost_range(grain, kept, gb) +
                                   ": the file was truncated); repair pads the file with zeros",
                               true);
                    pad_to = std::max(pad_to, at + gb);
                }
            }
            if (gt[k] > 1) used.push_back({gt[k], grain, std::binary_search(suspects.begin(), suspects.end(), grain)});
        }
    }
    if (compressed && !gate) check_stream_markers(ctx, stream_referenced, report);
    if (compressed && stream_errors && reporter.repairing())
        reporter(VDKIT_FINDING_NOTE, UINT64_MAX,
                 name_ + ": a streamOptimized extent is not repaired in place (its grains are written once); "
                         "nothing was changed: 'vdkit convert' copies every readable grain into a new image",
                 false);
    if (repair && pad_to > file_size_) {
        // Zeros where the grain was cut: it reads the same, whole.
        store_.truncate(ctx.get(), pad_to);
        file_size_ = pad_to;
    }
    if (!compressed) {
        // Two entries on the same or overlapping grains: writing one destroys the other.
        std::sort(used.begin(), used.end(), [](const Use &a, const Use &b) {
            return a.sector != b.sector ? a.sector < b.sector : a.suspect < b.suspect;
        });
        std::vector<Use> kept;
        for (const Use &u : used) {
            if (!kept.empty() && uint64_t(u.sector) * 512 < uint64_t(kept.back().sector) * 512 + gb) {
                const uint64_t gdi = u.grain / h_.gtes_per_gt, k = u.grain % h_.gtes_per_gt;
                if (geometry_error && !gate) continue; // the grainSize error covers it (writes still refused)
                if (!geometry.empty()) {
                    // The spacing a wrong grainSize would explain: an error
                    // under the header, but nothing is unmapped (both may be data).
                    report(VDKIT_FINDING_ERROR, uint64_t(use_sec[gdi]) * 512 + k * 4,
                           "grains " + std::to_string(kept.back().grain) + " and " + std::to_string(u.grain) +
                               " overlap at byte " + std::to_string(uint64_t(u.sector) * 512) +
                               " under the header's grainSize (byte 20: " + std::to_string(h_.grain_size) +
                               " sectors); the disk reads as the header says (as qemu reads it); writing one destroys "
                               "the other, so writes are refused; repair leaves both (see the note at byte 20)",
                           false);
                    continue;
                }
                report(VDKIT_FINDING_ERROR, uint64_t(use_sec[gdi]) * 512 + k * 4,
                       "grains " + std::to_string(kept.back().grain) + " and " + std::to_string(u.grain) +
                           " overlap at byte " + std::to_string(uint64_t(u.sector) * 512) +
                           "; repair unmaps the second (" + lost_range(u.grain, 0, gb) +
                           ": its data is shared with another grain)",
                       true);
                if (repair) {
                    write_entry(use_sec[gdi], k, 0);
                    if (use_rsec[gdi]) write_entry(use_rsec[gdi], k, 0);
                }
                continue;
            }
            kept.push_back(u);
        }
        // Orphans: whole grains of the data area that neither a grain
        // entry nor a structure a reader uses (header, descriptor, tables,
        // directories moved by a resize, the footer marker, footer and
        // end-of-stream marker of a directory at the end) holds.
        std::vector<std::pair<uint64_t, uint64_t>> taken; // byte ranges [start, end)
        for (const Use &u : kept)
            taken.emplace_back(uint64_t(u.sector) * 512, uint64_t(u.sector) * 512 + gb);
        // Only sound tables count; a grain the losing copy of a
        // disagreement names is held too (never truncated).
        for (const auto &f : fixed)
            taken.push_back(f.first);
        for (size_t id = 0; id < 2 * n; ++id)
            if (sec(id) && why[id].empty())
                taken.emplace_back(uint64_t(sec(id)) * 512, uint64_t(sec(id)) * 512 + table_bytes);
        taken.insert(taken.end(), also_held.begin(), also_held.end());
        // Every grain any sound table names (primary or redundant, the loser
        // of an overlap too) is held: repair never truncates it.
        for (const Claim &c : claims)
            taken.emplace_back(c.at, c.at + c.len);
        std::sort(taken.begin(), taken.end());
        uint64_t pos = ov * 512, orphans = 0, first_orphan = 0;
        for (const auto &[at, stop] : taken) {
            if (stop <= pos) continue;
            if (at >= pos + gb) {
                if (!orphans) first_orphan = pos;
                orphans += (at - pos) / gb;
            }
            pos = std::max(pos, stop);
        }
        const uint64_t end = (file_size_ + 511) / 512 * 512;
        if (end > pos && !geometry.empty()) {
            report(VDKIT_FINDING_NOTE, pos,
                   std::to_string(end - pos) + " bytes after the last grain as grainSize measures it are kept: the "
                                               "grains' spacing does not fit grainSize "
                                               "(byte 20)",
                   false);
            orphans = 0;
        } else if (end > pos && incomplete) {
            report(VDKIT_FINDING_NOTE, pos,
                   std::to_string(end - pos) +
                       " bytes after the last structure found; a grain table has no usable copy, so they may be its "
                       "grains and are kept",
                   false);
        } else if (end > pos) {
            report(VDKIT_FINDING_LEAK, pos,
                   std::to_string(end - pos) + " bytes after the last structure in use; repair truncates them", true);
            if (repair) {
                store_.truncate(ctx.get(), pos);
                file_size_ = pos;
            }
        }
        // Free space, not a leak: VMDK has no record of free space, so a
        // grain given back by discard or zeroing (by vdkit, qemu or VMware)
        // is simply one no entry names. vdkit's writer finds such grains
        // and reuses them before it extends the file; compact gives them
        // back to the file system.
        if (orphans && geometry.empty())
            report(VDKIT_FINDING_NOTE, first_orphan,
                   std::to_string(orphans) +
                       " grains inside the file are free (used by no grain table entry: given "
                       "back by discard or zeroing, or written by a write cut off before its table entry); new grains "
                       "reuse them, 'vdkit compact' gives them back",
                   false);
    }
    if (repair) {
        // A directory entry that named no table (or 0 where the other copy
        // names one) gets a new table at the end of the file, copied from the
        // sound copy after the entry repairs above: the bad location is
        // never written.
        std::vector<unsigned char> raw(static_cast<size_t>((table_bytes + 511) / 512 * 512), 0);
        for (const auto &[id, src] : relocate) {
            const uint64_t at = (file_size_ + 511) / 512 * 512;
            if ((at + raw.size()) / 512 > UINT32_MAX)
                throw sdk::Error(VDKIT_E_NO_MEMORY, name_ + ": extent file would exceed 2 TiB");
            store_.pread(ctx.get(), uint64_t(src) * 512, raw.data(), static_cast<size_t>(table_bytes));
            store_.pwrite(ctx.get(), at, raw.data(), raw.size());
            file_size_ = at + raw.size();
            store_.flush(ctx.get());
            write_entry(id % 2 ? h_.rgd_offset : h_.gd_offset, id / 2, static_cast<uint32_t>(at / 512));
            (id % 2 ? rgd_ : gd_)[id / 2] = static_cast<uint32_t>(at / 512);
        }
        gt_cache_.clear();
        resolved_.reset();
        forget_free(ctx);
        set_unclean(ctx, false);
        store_.flush(ctx.get());
    }
}

} // namespace vdkit::vmdk
