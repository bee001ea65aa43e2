#include "esx_extents.hpp"

#include "vdkit/endian.hpp"
#include "vdkit/text.hpp"

#include <unordered_map>

namespace vdkit::vmdk {

namespace {

using sdk::hex;
using sdk::load_le;

constexpr uint64_t kMaxDirectoryEntries = 32u << 20; // as for hosted sparse (qemu's L1 bound)
constexpr size_t kMaxCachedTables = 512;             // 512 * 16..32 KiB

// Finds grains used by two entries: the first user of each sector is kept.
class GrainOwners {
public:
    // Returns the grain index already using `sector`, or UINT64_MAX.
    uint64_t claim(uint64_t sector, uint64_t index) {
        auto [it, fresh] = owners_.emplace(sector, index);
        return fresh ? UINT64_MAX : it->second;
    }

private:
    std::unordered_map<uint64_t, uint64_t> owners_;
};

} // namespace

// ---- COWD --------------------------------------------------------------------------

CowdExtent::CowdExtent(sdk::Context &ctx, sdk::StoreRef store, std::string name)
    : GrainExtent(ctx, store, std::move(name)) {
    if (file_size_ < 2048) corrupt("file is shorter than a COWD header (2048 bytes)");
    unsigned char h[2048];
    store_.pread(ctx.get(), 0, h, sizeof h);
    if (load_le(h, 4) != kCowdMagic) corrupt("bad magic at offset 0 (not a COWD extent)");
    if (const uint64_t version = load_le(h + 4, 4); version != 1)
        throw sdk::Error(VDKIT_E_NOT_SUPPORTED,
                         name_ + ": COWD version " + std::to_string(version) + " at offset 4 (only 1 is known)");
    capacity_ = load_le(h + 12, 4);
    grain_ = load_le(h + 16, 4);
    gd_offset_ = load_le(h + 20, 4);
    const uint64_t gd_entries = load_le(h + 24, 4);
    unclean_ = load_le(h + 1648, 4) != 0;
    // VirtualBox allows grains up to 1 MiB; qemu a little more. 1 MiB it is.
    if (grain_ == 0 || grain_ > 2048)
        corrupt("grain size " + std::to_string(grain_) + " sectors at offset 16 is outside 1..2048");
    const uint64_t coverage = kEntriesPerTable * grain_;
    const uint64_t needed = (capacity_ + coverage - 1) / coverage;
    if (gd_entries < needed)
        corrupt("the grain directory has " + std::to_string(gd_entries) + " entries (offset 24) but the capacity of " +
                std::to_string(capacity_) + " sectors needs " + std::to_string(needed));
    if (gd_offset_ < 4) corrupt("the grain directory (offset 20) overlaps the header");
    if (gd_offset_ * 512 > file_size_ || file_size_ - gd_offset_ * 512 < needed * 4)
        corrupt("the grain directory at sector " + std::to_string(gd_offset_) + " lies beyond the end of the file");
    std::vector<unsigned char> raw(static_cast<size_t>(needed * 4));
    if (!raw.empty()) store_.pread(ctx.get(), gd_offset_ * 512, raw.data(), raw.size());
    gd_.resize(static_cast<size_t>(needed));
    for (size_t i = 0; i < gd_.size(); ++i)
        gd_[i] = static_cast<uint32_t>(load_le(raw.data() + i * 4, 4));
}

std::string CowdExtent::table_problem(uint32_t sector) const {
    if (sector < 4) return "reaches into the header";
    if (uint64_t(sector) * 512 + kEntriesPerTable * 4 > file_size_) return "lies beyond the end of the file";
    return {};
}

std::string CowdExtent::entry_problem(uint32_t sector) const {
    if (sector == 0) return {};
    if (sector < 4) return "points into the header";
    if (uint64_t(sector) * 512 >= file_size_) return "points beyond the end of the file";
    return {};
}

const std::vector<uint32_t> &CowdExtent::table(sdk::Context &ctx, uint64_t gd_index) {
    if (auto it = cache_.find(gd_index); it != cache_.end()) return it->second;
    const uint32_t sector = gd_[gd_index];
    if (auto why = table_problem(sector); !why.empty())
        corrupt("grain table " + std::to_string(gd_index) + " at sector " + std::to_string(sector) +
                " (directory byte " + std::to_string(gd_offset_ * 512 + gd_index * 4) + ") " + why);
    if (cache_.size() >= kMaxCachedTables) cache_.clear();
    unsigned char raw[kEntriesPerTable * 4];
    store_.pread(ctx.get(), uint64_t(sector) * 512, raw, sizeof raw);
    std::vector<uint32_t> t(kEntriesPerTable);
    for (size_t i = 0; i < t.size(); ++i)
        t[i] = static_cast<uint32_t>(load_le(raw + i * 4, 4));
    return cache_.emplace(gd_index, std::move(t)).first->second;
}

CowdExtent::Grain CowdExtent::lookup(sdk::Context &ctx, uint64_t index, uint64_t *sector) {
    const uint64_t gd_index = index / kEntriesPerTable;
    if (gd_index >= gd_.size() || gd_[gd_index] == 0) return Grain::unallocated;
    const uint32_t e = table(ctx, gd_index)[index % kEntriesPerTable];
    if (e == 0) return Grain::unallocated;
    if (auto why = entry_problem(e); !why.empty())
        corrupt("grain " + std::to_string(index) + " (sector " + std::to_string(e) + ") " + why);
    *sector = e;
    return Grain::data;
}

void CowdExtent::check(sdk::Context &ctx, uint32_t flags, vdkit_check_result &r) {
    const sdk::CheckReporter reporter(ctx, flags, r);
    if (reporter.repairing())
        throw sdk::Error(VDKIT_E_NOT_SUPPORTED, name_ + ": COWD extents are checked, not repaired");
    auto report = [&](uint32_t severity, uint64_t offset, const std::string &msg) {
        reporter(severity, offset, name_ + ": " + msg, false);
    };
    if (unclean_) report(VDKIT_FINDING_NOTE, 1648, "the redo log was not closed cleanly (uncleanShutdown is set)");
    GrainOwners owners;
    for (uint64_t g = 0; g < gd_.size(); ++g) {
        if (gd_[g] == 0) continue;
        if (auto why = table_problem(gd_[g]); !why.empty()) {
            report(VDKIT_FINDING_ERROR, gd_offset_ * 512 + g * 4, "grain table " + std::to_string(g) + " " + why);
            continue;
        }
        const std::vector<uint32_t> &t = table(ctx, g);
        for (uint64_t i = 0; i < t.size(); ++i) {
            const uint64_t index = g * kEntriesPerTable + i, at = uint64_t(gd_[g]) * 512 + i * 4;
            if (t[i] == 0) continue;
            if (index * grain_ >= capacity_) {
                report(VDKIT_FINDING_ERROR, at, "grain " + std::to_string(index) + " lies beyond the capacity");
                continue;
            }
            if (auto why = entry_problem(t[i]); !why.empty()) {
                report(VDKIT_FINDING_ERROR, at,
                       "grain " + std::to_string(index) + " " + why + " (" + lost_range(index, 0, grain_bytes()) +
                           ": reading it fails)");
                continue;
            }
            if (uint64_t first = owners.claim(t[i], index); first != UINT64_MAX)
                report(VDKIT_FINDING_ERROR, at,
                       "grain " + std::to_string(index) + " uses sector " + std::to_string(t[i]) +
                           ", already used by grain " + std::to_string(first));
            report_cut(index, uint64_t(t[i]) * 512,
                       [&](uint64_t off, const std::string &m) { report(VDKIT_FINDING_ERROR, off, m); });
        }
    }
}

// ---- seSparse ----------------------------------------------------------------------

SeSparseExtent::SeSparseExtent(sdk::Context &ctx, sdk::StoreRef store, std::string name)
    : GrainExtent(ctx, store, std::move(name)) {
    if (file_size_ < 512) corrupt("file is shorter than a seSparse header (512 bytes)");
    unsigned char h[512];
    store_.pread(ctx.get(), 0, h, sizeof h);
    auto field = [&](size_t i) { return load_le(h + i * 8, 8); }; // u64 number i
    auto unsupported = [&](const std::string &what) {
        throw sdk::Error(VDKIT_E_NOT_SUPPORTED, name_ + ": " + what +
                                                    " (seSparse is undocumented; vdkit reads the "
                                                    "one known layout)");
    };
    if (field(0) != kSeSparseMagic) corrupt("bad magic at offset 0 (not a seSparse extent)");
    if (field(1) != 0x200000001ull) unsupported("version " + hex(field(1)) + " at offset 8");
    capacity_ = field(2);
    if (field(3) != kGrainSectors) unsupported("grain size " + std::to_string(field(3)) + " at offset 24");
    if (field(4) != kTableSectors) unsupported("grain table size " + std::to_string(field(4)) + " at offset 32");
    if (field(5) != 0) unsupported("flags " + hex(field(5)) + " at offset 40");
    for (size_t i = 6; i < 10; ++i)
        if (field(i)) unsupported("reserved field at offset " + std::to_string(i * 8) + " is " + hex(field(i)));
    if (!sdk::is_zero(h + 208, 512 - 208)) unsupported("header padding (offset 208) is not zero");

    // {offset, size} pairs in sectors. A region may reach past the end of
    // the file (an seSparse file grows as grains are written, and the header
    // declares the regions at their final size): only the arithmetic is
    // bounded here; every read is bounded by the file (directory_problem,
    // entry_problem, the volatile header and directory checks below).
    auto area = [&](size_t i, const char *what, uint64_t *offset, uint64_t *size) {
        *offset = field(i);
        *size = field(i + 1);
        constexpr uint64_t kLimit = (UINT64_MAX / 512) / 2; // offset + size stays a valid byte offset
        if (*offset > kLimit || *size > kLimit)
            corrupt(std::string(what) + " region (header fields at bytes " + std::to_string(i * 8) + " and " +
                    std::to_string(i * 8 + 8) + ": sector " + std::to_string(*offset) + ", " + std::to_string(*size) +
                    " sectors) overflows");
    };
    uint64_t vh_offset, vh_size, gd_size, tables_size, grains_size;
    area(10, "the volatile header", &vh_offset, &vh_size);
    area(16, "the grain directory", &gd_offset_, &gd_size);
    area(18, "the grain tables", &tables_offset_, &tables_size);
    area(24, "the grains", &grains_offset_, &grains_size);
    tables_count_ = tables_size / kTableSectors;
    grains_count_ = grains_size / kGrainSectors;

    if (vh_offset == 0 || vh_offset * 512 + 512 > file_size_)
        corrupt("the volatile header at sector " + std::to_string(vh_offset) + " lies outside the file");
    unsigned char v[512];
    store_.pread(ctx.get(), vh_offset * 512, v, sizeof v);
    if (load_le(v, 8) != 0xcafecafe) corrupt("bad volatile header magic at byte " + std::to_string(vh_offset * 512));
    if (load_le(v + 24, 8) != 0)
        unsupported("the journal is dirty (replay_journal at byte " + std::to_string(vh_offset * 512 + 24) +
                    "); let ESXi replay it first");

    const uint64_t coverage = kEntriesPerTable * kGrainSectors;
    if (capacity_ > UINT64_MAX / 512 - coverage) corrupt("capacity at offset 16 overflows");
    const uint64_t needed = (capacity_ + coverage - 1) / coverage;
    if (needed > kMaxDirectoryEntries) corrupt("capacity " + std::to_string(capacity_) + " sectors is too large");
    if (gd_size * 512 / 8 < needed)
        corrupt("the grain directory has " + std::to_string(gd_size * 512 / 8) + " entries but the capacity needs " +
                std::to_string(needed));
    if (gd_offset_ == 0 || gd_offset_ * 512 > file_size_ || file_size_ - gd_offset_ * 512 < needed * 8)
        corrupt("the grain directory at sector " + std::to_string(gd_offset_) + " lies outside the file");
    std::vector<unsigned char> raw(static_cast<size_t>(needed * 8));
    if (!raw.empty()) store_.pread(ctx.get(), gd_offset_ * 512, raw.data(), raw.size());
    gd_.resize(static_cast<size_t>(needed));
    for (size_t i = 0; i < gd_.size(); ++i)
        gd_[i] = load_le(raw.data() + i * 8, 8);
}

std::string SeSparseExtent::directory_problem(uint64_t e) const {
    if (e == 0) return {};
    if ((e >> 32) != 0x10000000u) return "has an unknown kind (" + hex(e) + ")";
    const uint64_t t = e & 0xffffffffu;
    if (t >= tables_count_) return "names grain table " + std::to_string(t) + " of " + std::to_string(tables_count_);
    if ((tables_offset_ + (t + 1) * kTableSectors) * 512 > file_size_)
        return "names a table beyond the end of the file";
    return {};
}

std::string SeSparseExtent::entry_problem(uint64_t e, Grain *kind, uint64_t *sector) const {
    switch (e >> 60) {
    case 0x0:
        *kind = Grain::unallocated;
        return e == 0 ? std::string() : "is unallocated with stray bits (" + hex(e) + ")";
    case 0x1: // unmapped by the guest (SCSI UNMAP): reads zero
    case 0x2: // zero
        *kind = Grain::zero;
        return {};
    case 0x3: {
        *kind = Grain::data;
        // The grain index is split: bits 48..59 are its low 12 bits, bits 0..47 the rest.
        const uint64_t index = ((e & 0x0fff000000000000ull) >> 48) | ((e & 0x0000ffffffffffffull) << 12);
        if (index >= grains_count_)
            return "names grain " + std::to_string(index) + " of " + std::to_string(grains_count_);
        *sector = grains_offset_ + index * kGrainSectors;
        if (*sector * 512 >= file_size_) return "points beyond the end of the file";
        return {};
    }
    default:
        return "has an unknown kind (" + hex(e) + ")";
    }
}

const std::vector<uint64_t> &SeSparseExtent::table(sdk::Context &ctx, uint64_t gd_index) {
    if (auto it = cache_.find(gd_index); it != cache_.end()) return it->second;
    const uint64_t e = gd_[gd_index];
    if (auto why = directory_problem(e); !why.empty())
        corrupt("grain directory entry " + std::to_string(gd_index) + " (byte " +
                std::to_string(gd_offset_ * 512 + gd_index * 8) + ") " + why);
    if (cache_.size() >= kMaxCachedTables) cache_.clear();
    std::vector<unsigned char> raw(kEntriesPerTable * 8);
    store_.pread(ctx.get(), (tables_offset_ + (e & 0xffffffffu) * kTableSectors) * 512, raw.data(), raw.size());
    std::vector<uint64_t> t(kEntriesPerTable);
    for (size_t i = 0; i < t.size(); ++i)
        t[i] = load_le(raw.data() + i * 8, 8);
    return cache_.emplace(gd_index, std::move(t)).first->second;
}

SeSparseExtent::Grain SeSparseExtent::lookup(sdk::Context &ctx, uint64_t index, uint64_t *sector) {
    const uint64_t gd_index = index / kEntriesPerTable;
    if (gd_index >= gd_.size() || gd_[gd_index] == 0) return Grain::unallocated;
    const uint64_t e = table(ctx, gd_index)[index % kEntriesPerTable];
    Grain kind = Grain::unallocated;
    if (auto why = entry_problem(e, &kind, sector); !why.empty())
        corrupt("grain table entry for grain " + std::to_string(index) + " " + why);
    return kind;
}

void SeSparseExtent::check(sdk::Context &ctx, uint32_t flags, vdkit_check_result &r) {
    const sdk::CheckReporter reporter(ctx, flags, r);
    if (reporter.repairing()) throw sdk::Error(VDKIT_E_NOT_SUPPORTED, name_ + ": seSparse extents are read-only");
    auto report = [&](uint64_t offset, const std::string &msg) {
        reporter(VDKIT_FINDING_ERROR, offset, name_ + ": " + msg, false);
    };
    GrainOwners owners;
    std::unordered_map<uint64_t, uint64_t> table_users; // table index → directory entry
    for (uint64_t g = 0; g < gd_.size(); ++g) {
        if (gd_[g] == 0) continue;
        const uint64_t gd_at = gd_offset_ * 512 + g * 8;
        if (auto why = directory_problem(gd_[g]); !why.empty()) {
            report(gd_at, "grain directory entry " + std::to_string(g) + " " + why);
            continue;
        }
        const uint64_t t_index = gd_[g] & 0xffffffffu;
        if (auto [it, fresh] = table_users.emplace(t_index, g); !fresh) {
            report(gd_at, "grain directory entry " + std::to_string(g) + " shares grain table " +
                              std::to_string(t_index) + " with entry " + std::to_string(it->second));
            continue;
        }
        const std::vector<uint64_t> &t = table(ctx, g);
        const uint64_t t_at = (tables_offset_ + t_index * kTableSectors) * 512;
        for (uint64_t i = 0; i < t.size(); ++i) {
            const uint64_t index = g * kEntriesPerTable + i;
            Grain kind = Grain::unallocated;
            uint64_t sector = 0;
            if (auto why = entry_problem(t[i], &kind, &sector); !why.empty()) {
                // The grain cannot be read at all: its whole disk range is lost.
                report(t_at + i * 8, "grain " + std::to_string(index) + " " + why + " (" +
                                         lost_range(index, 0, grain_bytes()) + ": reading it fails)");
                continue;
            }
            if (kind != Grain::data) continue;
            if (index * kGrainSectors >= capacity_)
                report(t_at + i * 8, "grain " + std::to_string(index) + " lies beyond the capacity");
            else if (uint64_t first = owners.claim(sector, index); first != UINT64_MAX)
                report(t_at + i * 8,
                       "grain " + std::to_string(index) + " shares its data with grain " + std::to_string(first));
            else
                report_cut(index, sector * 512, report);
        }
    }
}

} // namespace vdkit::vmdk
