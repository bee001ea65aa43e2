// Hosted sparse extents (VDF50 "Hosted Sparse Extent Header", "Grain
// Directories and Grain Tables", "Stream-Optimized Compressed Sparse
// Extents" of VMware's "Virtual Disk Format 5.0" technote).
//
// Every header field is untrusted: the constructor validates them all
// against the file size before anything is allocated, and lookups check each
// grain table entry against the file before it is used.
#ifndef VDKIT_VMDK_SPARSE_EXTENT_HPP
#define VDKIT_VMDK_SPARSE_EXTENT_HPP

#include "grain_extent.hpp"

#include "vdkit/plugin.hpp"

#include <bitset>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace vdkit::vmdk {

constexpr uint32_t kSparseMagic = 0x564d444b;    // "KDMV"
constexpr uint32_t kTemporaryMagic = 0x766d646b; // "kdmv" read as LE u32 of "vmdk" (open-vmdk in progress)
constexpr uint64_t kGdAtEnd = UINT64_MAX;
constexpr uint32_t kFlagNewlineTest = 1u << 0;
constexpr uint32_t kFlagRedundant = 1u << 1;
constexpr uint32_t kFlagZeroedGrain = 1u << 2;
constexpr uint32_t kFlagCompressed = 1u << 16;
constexpr uint32_t kFlagMarkers = 1u << 17;

struct SparseHeader {
    uint32_t version = 0;
    uint32_t flags = 0;
    uint64_t capacity = 0;   // sectors
    uint64_t grain_size = 0; // sectors
    uint64_t descriptor_offset = 0;
    uint64_t descriptor_size = 0;
    uint32_t gtes_per_gt = 0;
    uint64_t rgd_offset = 0;
    uint64_t gd_offset = 0;
    uint64_t overhead = 0;
    uint8_t unclean_shutdown = 0;
    uint16_t compress_algorithm = 0;
};

// Decodes and validates a 512-byte header. `where` names the file in errors.
SparseHeader parse_sparse_header(const unsigned char *h, const std::string &where);

// Writes the metadata of a new, empty hosted sparse extent in the layout
// qemu and VMware use: header, embedded descriptor area (descriptor_sectors,
// may be 0), redundant grain directory and tables, grain directory and
// tables, all tables preallocated, grains after the grain-aligned overhead.
SparseHeader create_sparse_layout(sdk::Context &ctx, sdk::StoreRef store, uint64_t capacity_sectors,
                                  uint64_t grain_sectors, bool zeroed_grain, uint64_t descriptor_sectors);
// The header create_sparse_layout writes (overhead and table positions),
// without writing anything; measure uses it too.
SparseHeader plan_sparse_layout(uint64_t capacity_sectors, uint64_t grain_sectors, bool zeroed_grain,
                                uint64_t descriptor_sectors);

// Encodes a header into 512 bytes.
void encode_sparse_header(const SparseHeader &h, unsigned char *out);

class SparseExtent : public GrainExtent {
public:
    // `store` must outlive the extent. The header has been read already.
    SparseExtent(sdk::Context &ctx, sdk::StoreRef store, std::string name, const SparseHeader &header);

    const SparseHeader &header() const { return h_; }
    uint64_t capacity_bytes() const override { return h_.capacity * 512; }
    uint64_t grain_bytes() const override { return h_.grain_size * 512; }

    // Writing (uncompressed extents with preallocated grain tables). A
    // partial write into an unallocated grain answers block_free with the
    // grain's range, so the host fills it from the chain.
    // An extent with its grain directory at the end (a footer, then the
    // end-of-stream marker, in the last 1536 bytes) is read-only: a grain
    // appended after the footer would hide it from every reader.
    bool writable() const { return !(h_.flags & kFlagCompressed) && footer_at_ == 0; }
    // Grains are deflate-compressed (streamOptimized; VMDK spec "Stream-
    // Optimized Compressed Sparse Extents", header flag bit 16).
    bool compressed() const { return h_.flags & kFlagCompressed; }
    std::string read_only_reason() const {
        return h_.flags & kFlagCompressed ? "compressed (streamOptimized) grains are written once, at creation"
                                          : name_ + ": the grain directory is at the end of the file (footer layout); "
                                                    "convert the disk to write it";
    }
    sdk::WriteResult write(sdk::Context &ctx, uint64_t offset, const void *buf, uint64_t len);
    // Whole grains in [offset, offset+len) become zero grains (needs the
    // zeroed-grain flag) or, with `unmap`, unallocated. The grains they
    // held become free space once the change is flushed (after_flush).
    void set_whole_grains(sdk::Context &ctx, uint64_t offset, uint64_t len, bool unmap);
    // Grain table entries changed since the last call reach the file here,
    // after a barrier (VDF50 "Grain Directories and Grain Tables" has no
    // journal; order is the only protection): flush, so every grain an
    // entry names is durable; then the copy of each entry that names data
    // (mapping: the primary table; unmapping: the redundant one); flush;
    // then the other copy; flush. A power cut anywhere leaves entries that
    // name written grains or none (docs/reliability.md). Call before the
    // extent's file is flushed (the disk's flush, close); every reader of
    // the tables on disk (check, compact, shrink, grow, the free-space
    // scan, the table cache's eviction) calls it first.
    void write_tables(sdk::Context &ctx);
    // Call after the extent's file was flushed (flush, close). VMDK keeps
    // no record of free space, so vdkit finds it (one scan of both grain
    // table copies, at the first allocation or release of a session):
    // grain-sized gaps no table entry and no metadata uses. Grains given
    // back before the flush join it (their entries are durable now; they
    // are never reused before that), and free space at the end of the file
    // is cut off, so a disk used normally keeps no unused grains at its end.
    // New grains go into the lowest free gap before the file is extended.
    void after_flush(sdk::Context &ctx);
    bool zeroed_grains() const { return h_.flags & kFlagZeroedGrain; }
    // uncleanShutdown: set before the first metadata change, cleared on close.
    void set_unclean(sdk::Context &ctx, bool unclean);

    // Grow the extent to new_capacity sectors: new grain tables (and
    // redundant ones) are appended; the directories grow in place when their
    // sectors have room, else move to the end of the file. Tables first,
    // then the header.
    void grow(sdk::Context &ctx, uint64_t new_capacity);

    // Shrink the extent to new_capacity sectors: entries past the end are
    // cleared (both tables), the header says the new capacity, then compact
    // gives the unused grains and tables back. Returns the bytes given back.
    uint64_t shrink(sdk::Context &ctx, uint64_t new_capacity, bool has_parent);

    // VMware's Shrink + Defragment: all-zero grains are unmapped (no
    // parent) or become zero grains (zeroed-grain extents), the remaining
    // grains move down into holes (copies flushed before the tables point
    // at them) and the file is truncated. Returns the bytes given back.
    uint64_t compact(sdk::Context &ctx, bool has_parent);

    // Consistency check (VDKIT_CHECK_* flags), findings through ctx.finding
    // with file offsets: unclean-shutdown flag, grain tables beyond the file,
    // table vs redundant table mismatches, entries outside the data area or
    // beyond the file, grains used twice or overlapping, orphaned grains;
    // header fields the layout contradicts (grainSize, descriptor size, a
    // missing redundant directory); for streams, every grain marker.
    // Repair (not dry run) fixes tables and truncates orphans at the end,
    // never a grain any table entry names; streams are never repaired
    // (docs/check.md rules 5-7).
    void check(sdk::Context &ctx, uint32_t flags, vdkit_check_result &r) override {
        check_tables(ctx, flags, r, nullptr);
    }

    // Before the first write of a session: tables that disagree, entries
    // into metadata or shared grains refuse writing (docs/check.md).
    void require_sound_tables(sdk::Context &ctx);

private:
    // Sets a grain table entry in memory; write_tables writes it. The table
    // stays in memory (gt_cache_ or resolved_) until then.
    void set_gte(sdk::Context &ctx, uint64_t index, uint32_t value);
    // The table of gd_index held in memory (resolved_ first), or nullptr.
    std::vector<uint32_t> *held_table(uint64_t gd_index);
    // Grain directory index → slots whose entries set_gte changed and
    // write_tables has not written yet (gtes_per_gt <= 512).
    std::map<uint64_t, std::bitset<512>> dirty_;
    // Write h_'s capacity and directory offsets into the header on disk
    // (read-modify-write, then flush): the last step of grow, shrink and
    // a directory move, after the tables it points at are on disk.
    void write_layout(sdk::Context &ctx);
    // Byte ranges of the grain directories and tables, sorted.
    std::vector<std::pair<uint64_t, uint64_t>> metadata_ranges() const;
    void allocate(sdk::Context &ctx, uint64_t index, const unsigned char *grain);
    // Find the free grain-sized gaps of the file (free_) and the end of a
    // grain that the end of the file cuts (cut_end_, 0: none): one read of
    // every table, both copies.
    void scan_free(sdk::Context &ctx);
    // Forget what scan_free found (grains or metadata moved: compact,
    // shrink, grow, repair); grains given back are flushed first, so a
    // later scan may reuse them.
    void forget_free(sdk::Context &ctx);
    std::optional<uint64_t> cut_end_;
    std::optional<std::set<uint64_t>> free_; // byte offsets of free grain-sized gaps inside the file
    std::vector<uint64_t> released_;         // grains given back since the last flush (not reusable yet)
    // check, or (gate != nullptr) a silent pass that records the first
    // error a write could turn into data loss (a grain the end of the file
    // cuts is not one: writes handle it).
    // `plan` (when not null) gets, per grain directory index, the table
    // reads use where it is not the primary table as stored: the copy
    // check -r keeps and the entries it takes from the redundant table.
    void check_tables(sdk::Context &ctx, uint32_t flags, vdkit_check_result &r, std::string *gate,
                      std::unordered_map<uint64_t, std::vector<uint32_t>> *plan = nullptr);
    // Resolve the primary and redundant tables once as check does (rule 5
    // of docs/check.md) into resolved_.
    void resolve_tables(sdk::Context &ctx);
    std::optional<std::unordered_map<uint64_t, std::vector<uint32_t>>> resolved_;
    bool tables_sound_ = false;
    // check of a stream: what is wrong with the grain marker at `sector`
    // (grain UINT64_MAX: any grain of the disk), empty when it is sound.
    std::string stream_grain_problem(sdk::Context &ctx, uint32_t sector, uint64_t grain) const;
    // check of a stream: walk every marker from the overhead to the
    // end-of-stream marker; `referenced` holds the grain markers the tables name.
    template <class Report>
    void check_stream_markers(sdk::Context &ctx, const std::unordered_set<uint32_t> &referenced, Report &&report);
    Grain lookup(sdk::Context &ctx, uint64_t index, uint64_t *sector) override;
    // Compressed grains are inflated whole (and the last one kept).
    void read_grain(sdk::Context &ctx, uint64_t index, uint64_t sector, uint64_t within, void *buf,
                    uint64_t n) override;
    std::vector<uint32_t> &grain_table(sdk::Context &ctx, uint64_t gd_index);
    void read_compressed(sdk::Context &ctx, uint64_t index, uint64_t sector);
    // Compressed grain whose marker or data reach past the end of the file.
    bool cut_off(sdk::Context &ctx, uint32_t gte) const;
    // Count the cut-off grains of a truncated stream with front tables and
    // warn once (scan_report_ holds the summary).
    void count_cut_grains(sdk::Context &ctx);
    // No footer (a truncated stream): map grains from their markers.
    void scan_markers(sdk::Context &ctx, const std::string &why);
    // After a session that was not closed cleanly: bring redundant table
    // entries in line with sound primary ones (set_gte writes the two copies
    // one after the other, and may have been stopped in between).
    void refresh_redundant_tables(sdk::Context &ctx);

    SparseHeader h_;
    // Grain directory at the end (VDF50 "footer"): byte offset of the
    // footer marker; the footer and the end-of-stream marker follow it, up
    // to footer_at_ + 1536. 0 when the header has the directory's offset.
    uint64_t footer_at_ = 0;
    std::vector<uint32_t> gd_;
    std::vector<uint32_t> rgd_;   // redundant directory, when flags bit 1 is set
    bool opened_unclean_ = false; // uncleanShutdown was already set when opened
    std::unordered_map<uint64_t, std::vector<uint32_t>> gt_cache_;
    // Grain index → marker sector of the grains found, when the map was
    // rebuilt by scan_markers (set, possibly empty, only then).
    std::optional<std::unordered_map<uint64_t, uint32_t>> scanned_;
    std::string scan_report_;
    // The last decompressed grain (stream images are read grain by grain).
    uint64_t cached_grain_ = UINT64_MAX;
    std::vector<unsigned char> grain_buf_;
};

} // namespace vdkit::vmdk

#endif
