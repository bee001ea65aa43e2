// ESX sparse extents, read-only: VMFSSPARSE redo logs ("COWD", VDF50 "ESX
// Server Sparse Extent Header") and SESPARSE space-efficient sparse extents
// (undocumented by VMware; the layout qemu's block/vmdk.c reads in
// vmdk_open_se_sparse).
//
// Both are untrusted like every header: the constructors check each field
// against the file before anything is allocated, directories are read only
// as far as the capacity needs them, and every table entry is checked
// against the file before it is followed (lookup throws, check reports).
#ifndef VDKIT_VMDK_ESX_EXTENTS_HPP
#define VDKIT_VMDK_ESX_EXTENTS_HPP

#include "grain_extent.hpp"

#include <string>
#include <unordered_map>
#include <vector>

namespace vdkit::vmdk {

constexpr uint32_t kCowdMagic = 0x44574f43; // "COWD"
constexpr uint64_t kSeSparseMagic = 0xcafebabe;

// A COWD redo log: 2048-byte header, a directory of u32 sector offsets of
// grain tables, 4096 u32 sector entries per table, 0 = not in this extent.
// There is no zero-grain entry and no redundant directory.
class CowdExtent : public GrainExtent {
public:
    CowdExtent(sdk::Context &ctx, sdk::StoreRef store, std::string name);

    uint64_t capacity_bytes() const override { return capacity_ * 512; }
    uint64_t grain_bytes() const override { return grain_ * 512; }
    // Tables beyond the file or reaching into the header, entries outside
    // the file or inside the header, grains used twice, the unclean flag.
    void check(sdk::Context &ctx, uint32_t flags, vdkit_check_result &r) override;

private:
    static constexpr uint64_t kEntriesPerTable = 4096;
    Grain lookup(sdk::Context &ctx, uint64_t index, uint64_t *sector) override;
    std::string table_problem(uint32_t sector) const;
    std::string entry_problem(uint32_t sector) const;
    const std::vector<uint32_t> &table(sdk::Context &ctx, uint64_t gd_index);

    uint64_t capacity_ = 0, grain_ = 0, gd_offset_ = 0;
    bool unclean_ = false;
    std::vector<uint32_t> gd_;
    std::unordered_map<uint64_t, std::vector<uint32_t>> cache_;
};

// A seSparse extent: a 512-byte constant header, a volatile header (a dirty
// journal is refused), a directory of u64 entries naming grain tables by
// index, 4096 u64 entries per table whose top nibble says unallocated /
// unmapped / zero / allocated, 4 KiB grains.
class SeSparseExtent : public GrainExtent {
public:
    SeSparseExtent(sdk::Context &ctx, sdk::StoreRef store, std::string name);

    uint64_t capacity_bytes() const override { return capacity_ * 512; }
    uint64_t grain_bytes() const override { return kGrainSectors * 512; }
    // Directory and table entries of unknown kinds or out of range, grains
    // outside the grain area or the file, grains used twice.
    void check(sdk::Context &ctx, uint32_t flags, vdkit_check_result &r) override;

private:
    static constexpr uint64_t kGrainSectors = 8, kTableSectors = 64, kEntriesPerTable = 4096;
    Grain lookup(sdk::Context &ctx, uint64_t index, uint64_t *sector) override;
    // Decoders shared by lookup and check: empty string when fine.
    std::string directory_problem(uint64_t entry) const;
    std::string entry_problem(uint64_t entry, Grain *kind, uint64_t *sector) const;
    const std::vector<uint64_t> &table(sdk::Context &ctx, uint64_t gd_index);

    uint64_t capacity_ = 0;
    uint64_t gd_offset_ = 0, tables_offset_ = 0, tables_count_ = 0, grains_offset_ = 0, grains_count_ = 0;
    std::vector<uint64_t> gd_;
    std::unordered_map<uint64_t, std::vector<uint64_t>> cache_;
};

} // namespace vdkit::vmdk

#endif
