// The `vdi` format plugin: VirtualBox disk images. No published spec: the
// layout is VirtualBox's src/VBox/Storage/VDICore.h (VDIPREHEADER,
// VDIHEADER0/1) and the behaviour its backend src/VBox/Storage/VDI.cpp.
//
// Reads and writes header versions 0 and 1.1 (with or without LCHS), image
// types normal (dynamic), fixed, undo and diff, with VirtualBox's 1 MiB or
// qemu's 512-byte alignment. The block map is held in memory; every change
// to an entry is written to the file at once, so a zero block recorded in a
// differencing image keeps shadowing its parent after a crash or reopen
// (VirtualBox kept those in memory only: its issue #850).
//
// Space is kept dense the way VirtualBox does it: a block given back
// (discard, write_zeroes, compact) leaves a hole that the last data block
// is moved into, and the file is truncated. Moves copy data first, flush,
// then repoint the map, so a crash in between leaks a block but never
// exposes wrong data.
//
// Parent location: VDI has no field for it, so vdkit writes a small record
// at 0x200 (see layout.hpp); the parent is verified by UUID on open.
#include "layout.hpp"

#include "vdkit/endian.hpp"
#include "vdkit/plugin.hpp"
#include "vdkit/text.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <vector>

using namespace vdkit;
using namespace vdkit::vdi;
using sdk::Context;
using sdk::Error;
using sdk::StoreRef;

namespace {

constexpr uint64_t kSector = 512;
constexpr uint64_t kEntriesPerPage = 1024; // map entries per 4 KiB page

uint64_t align_up(uint64_t v, uint64_t a) {
    return (v + a - 1) / a * a;
}
bool is_nil(const std::array<uint8_t, 16> &u) {
    return sdk::is_zero(u.data(), u.size());
}

class VdiImage {
public:
    static uint32_t probe(Context &ctx, StoreRef main, std::string_view) {
        const uint64_t size = main.size(ctx.get());
        if (size < kPreHeaderSize) return VDKIT_PROBE_NO;
        unsigned char head[kPreHeaderSize];
        main.pread(ctx.get(), 0, head, sizeof head);
        return vdi::probe(head, sizeof head) ? VDKIT_PROBE_CERTAIN : VDKIT_PROBE_NO;
    }

    static std::unique_ptr<VdiImage> open(Context &ctx, StoreRef main, std::string_view name, uint32_t flags) {
        auto img = std::make_unique<VdiImage>();
        img->main_ = main;
        img->name_ = std::string(name);
        img->writable_ = flags & VDKIT_OPEN_WRITE;
        img->load(ctx);
        return img;
    }

    // The map area and the data blocks the ranges touch (a new image has no
    // block_extra).
    static void measure(Context &ctx, uint64_t size, const vdkit_extent *data, uint64_t count, vdkit_measure &out) {
        const NewLayout l = new_layout(ctx, size, "");
        out.required = l.off_data + sdk::units_touched(data, count, l.block, 0, size) * l.block;
        out.fully_allocated = l.off_data + l.blocks * l.block;
    }

    static std::unique_ptr<VdiImage> create(Context &ctx, StoreRef main, std::string_view name,
                                            const vdkit_create_params &p) {
        auto img = std::make_unique<VdiImage>();
        img->main_ = main;
        img->name_ = std::string(name);
        img->writable_ = true;
        img->build(ctx, p);
        return img;
    }

    void close(Context &ctx, bool) {
        if (writable_) flush(ctx);
    }

    void info(Context &, vdkit_image_info &out) {
        out.virtual_size = h_.disk_size;
        out.granularity = h_.block_size;
        if (h_.type == kTypeDiff)
            out.flags |= VDKIT_IMAGE_HAS_PARENT;
        else
            out.flags |= VDKIT_IMAGE_ZERO_INIT;
        if (h_.type == kTypeFixed) out.flags |= VDKIT_IMAGE_FIXED;
        std::memcpy(out.uuid, h_.uuid_create.data(), 16);
        std::memcpy(out.modification_uuid, h_.uuid_modify.data(), 16);
        std::memcpy(out.parent_uuid, h_.uuid_linkage.data(), 16);
        std::memcpy(out.parent_modification_uuid, h_.uuid_parent_modify.data(), 16);
        out.pchs_cylinders = h_.pchs[0];
        out.pchs_heads = h_.pchs[1];
        out.pchs_sectors = h_.pchs[2];
        if (h_.has_lchs()) {
            out.lchs_cylinders = h_.lchs[0];
            out.lchs_heads = h_.lchs[1];
            out.lchs_sectors = h_.lchs[2];
        }
        static constexpr const char *kNames[] = {"", "dynamic", "fixed", "undo", "diff"};
        out.subformat = sdk::str(kNames[h_.type]);
    }

    // The header's facts for `vdkit info --output=json` (format-specific;
    // qemu-img shows none for VDI, so every name is vdkit's): the image
    // type, header version, block size and blocks (VirtualBox VDICore.h,
    // VDIHEADER1: cbBlock, cBlocks, cBlocksAllocated) and the four UUIDs
    // (uuidCreate, uuidModify, uuidLinkage, uuidParentModify).
    std::string details(Context &) const {
        static constexpr const char *kNames[] = {"", "dynamic", "fixed", "undo", "diff"};
        const auto uuid = [](const std::array<uint8_t, 16> &u) {
            static const char digits[] = "0123456789abcdef";
            std::string t;
            for (size_t i = 0; i < 16; ++i) {
                if (i == 4 || i == 6 || i == 8 || i == 10) t += '-';
                t += digits[u[i] >> 4];
                t += digits[u[i] & 15];
            }
            return sdk::json_quote(t);
        };
        return std::string("{\"type\": ") + sdk::json_quote(h_.type < 5 ? kNames[h_.type] : "") +
               ", \"version\": " + sdk::json_quote(h_.legacy() ? "0.0" : "1.1") +
               ", \"block-size\": " + std::to_string(h_.block_size) + ", \"blocks\": " + std::to_string(h_.blocks) +
               ", \"blocks-allocated\": " + std::to_string(h_.blocks_allocated) +
               ", \"uuid\": " + uuid(h_.uuid_create) + ", \"modification-uuid\": " + uuid(h_.uuid_modify) +
               ", \"parent-uuid\": " + uuid(h_.uuid_linkage) +
               ", \"parent-modification-uuid\": " + uuid(h_.uuid_parent_modify) + "}";
    }

    std::string parent_hint(Context &) { return h_.type == kTypeDiff ? hint_ : std::string(); }

    std::string comment(Context &) { return std::string(h_.comment.data(), strnlen(h_.comment.data(), 256)); }

    void set_comment(Context &ctx, std::string_view text) {
        if (text.size() > 255) fail(VDKIT_E_INVALID_ARGUMENT, "a VDI comment holds at most 255 bytes");
        h_.comment.fill('\0');
        std::memcpy(h_.comment.data(), text.data(), text.size());
        write_header(ctx);
    }

    // Setting the modification UUID pins it for the session: the caller
    // chose it, so later changes do not replace it (Disk::compact keeps an
    // image's id this way: it changes nothing a reader sees). A value equal
    // to the one in the header is not written again.
    void set_uuid(Context &ctx, uint32_t which, const uint8_t *u) {
        std::array<uint8_t, 16> v;
        std::memcpy(v.data(), u, 16);
        switch (which) {
        case VDKIT_UUID_IMAGE:
            h_.uuid_create = v;
            break;
        case VDKIT_UUID_MODIFICATION:
            touched_ = true;
            if (h_.uuid_modify == v) return;
            h_.uuid_modify = v;
            break;
        case VDKIT_UUID_PARENT:
            h_.uuid_linkage = v;
            break;
        case VDKIT_UUID_PARENT_MODIFICATION:
            if (h_.legacy()) fail(VDKIT_E_NOT_SUPPORTED, "a version 0 header has no parent modification UUID");
            h_.uuid_parent_modify = v;
            break;
        default:
            fail(VDKIT_E_INVALID_ARGUMENT, "unknown UUID kind " + std::to_string(which));
        }
        write_header(ctx);
    }

    void set_parent(Context &ctx, std::string_view hint, std::string_view, const uint8_t *uuid,
                    const uint8_t *modification) {
        if (hint.empty() && !has_hint_room(hint)) {
            // No parent any more, and no parent location record to clear
            // (the block map starts too early for one): the header alone.
            h_.uuid_linkage.fill(0);
            h_.uuid_parent_modify.fill(0);
            if (h_.type == kTypeDiff) h_.type = kTypeNormal;
            write_header(ctx);
            return;
        }
        check_hint_room(hint);
        if (hint.empty()) {
            // No parent any more: a normal dynamic image (FREE blocks read
            // as zero, ZERO blocks stay zero).
            h_.uuid_linkage.fill(0);
            h_.uuid_parent_modify.fill(0);
            if (h_.type == kTypeDiff) h_.type = kTypeNormal;
        } else {
            if (h_.type == kTypeFixed) fail(VDKIT_E_NOT_SUPPORTED, "a fixed VDI cannot have a parent");
            if (uuid) std::memcpy(h_.uuid_linkage.data(), uuid, 16);
            if (modification && !h_.legacy()) std::memcpy(h_.uuid_parent_modify.data(), modification, 16);
            h_.type = kTypeDiff;
        }
        write_header_and_hint(ctx, hint);
    }

    void set_geometry(Context &ctx, const uint32_t *pchs, const uint32_t *lchs) {
        if (lchs && !h_.has_lchs()) fail(VDKIT_E_NOT_SUPPORTED, "this VDI header has no LCHS geometry field");
        if (pchs) h_.pchs = {pchs[0], pchs[1], pchs[2], kSector};
        if (lchs) h_.lchs = {lchs[0], lchs[1], lchs[2], kSector};
        write_header(ctx);
    }

    sdk::ReadResult read(Context &ctx, uint64_t off, void *buf, uint64_t len) {
        check_request(off, len);
        const uint64_t b = off / h_.block_size, within = off % h_.block_size;
        const uint32_t entry = map_[b];
        uint64_t n = std::min(len, h_.block_size - within);
        if (entry == kBlockFree) {
            // One answer for a whole run of free blocks.
            for (uint64_t next = b + 1; n < len && map_[next] == kBlockFree; ++next)
                n = std::min(len, n + h_.block_size);
            return {n, true};
        }
        if (entry == kBlockZero) {
            std::memset(buf, 0, static_cast<size_t>(n));
            return {n, false};
        }
        // A block whose data starts inside the file is data up to the end of
        // the file and zeros past it (a truncated file, read as qemu reads
        // it); one that starts past the end is an error. check agrees.
        if (!block_in_file(entry))
            fail(VDKIT_E_CORRUPT, "block " + std::to_string(b) + " points at data block " + std::to_string(entry) +
                                      " (byte " + std::to_string(h_.off_data + uint64_t(entry) * h_.stride()) +
                                      "), beyond the end of the file (" + std::to_string(file_size_) +
                                      " bytes); run 'vdkit check -r'");
        // Physically consecutive blocks (inside the file) are read in one call.
        uint64_t next = b + 1;
        while (n < len && map_[next] == entry + (next - b) && block_in_file(map_[next])) {
            n = std::min(len, n + h_.block_size);
            ++next;
        }
        pread_padded(ctx, buf, n, data_offset(entry) + within);
        return {n, false};
    }

    sdk::WriteResult write(Context &ctx, uint64_t off, const void *buf, uint64_t len) {
        require_writable_map();
        check_request(off, len);
        touch(ctx);
        const auto *in = static_cast<const unsigned char *>(buf);
        uint64_t done = 0;
        while (done < len) {
            const uint64_t pos = off + done;
            const uint64_t b = pos / h_.block_size, within = pos % h_.block_size;
            const uint64_t n = std::min(len - done, h_.block_size - within);
            pending_discards_.erase(static_cast<uint32_t>(b));
            const uint32_t entry = map_[b];
            if (is_allocated(entry)) {
                const uint64_t at = data_offset(entry) + within;
                main_.pwrite(ctx.get(), at, in + done, n);
                file_size_ = std::max(file_size_, at + n);
            } else if (within == 0 && n == block_span(b)) {
                // A whole block: an all-zero one is recorded in the map only.
                if (sdk::is_zero(in + done, n))
                    set_entry(ctx, b, kBlockZero);
                else
                    allocate(ctx, b, in + done, n);
            } else if (entry == kBlockZero) {
                // Part of a zero block: it is zero-filled here, not from the parent it shadows.
                std::vector<unsigned char> block(static_cast<size_t>(block_span(b)), 0);
                std::memcpy(block.data() + within, in + done, static_cast<size_t>(n));
                allocate(ctx, b, block.data(), block.size());
            } else {
                if (done > 0) break; // report what was written; the host comes back for the rest
                return {0, true, b * h_.block_size, block_span(b)};
            }
            done += n;
        }
        return {done, false, 0, 0};
    }

    sdk::BlockStatus block_status(Context &, uint64_t off, uint64_t len) {
        check_request(off, len);
        const uint64_t b = off / h_.block_size;
        const uint32_t status = state_of(map_[b]);
        uint64_t n = std::min(len, h_.block_size - off % h_.block_size);
        for (uint64_t next = b + 1; n < len && state_of(map_[next]) == status; ++next)
            n = std::min(len, n + h_.block_size);
        return {status, n};
    }

    // A host flush also forgets the parts of blocks discarded so far
    // (pending_discards_): what they read as now (their data, kept) is
    // durable from here on, and a later discard completing the block must
    // not turn those sectors into zeros (or the parent's data) — it would
    // change sectors outside its own range after they were flushed (the
    // kill -9 trials, tests/crash/crashsim.c, find it as flushed data read
    // back as zeros). A block discarded piece by piece between two flushes
    // is still freed.
    void flush(Context &ctx) {
        if (!writable_) return;
        flush_file(ctx);
        pending_discards_.clear();
    }

    // Whole blocks become free (the chain below shows through a diff); parts
    // of blocks are remembered until the rest of the block is discarded too.
    void discard(Context &ctx, uint64_t off, uint64_t len) {
        if (h_.type == kTypeFixed || len == 0) return; // fixed images stay fully allocated
        require_writable_map();
        touch(ctx);
        const uint64_t end = off + len;
        for (uint64_t pos = off; pos < end;) {
            const uint64_t b = pos / h_.block_size, start = b * h_.block_size;
            const uint64_t span = block_span(b), stop = std::min(end, start + span);
            if (pos == start && stop == start + span) {
                pending_discards_.erase(static_cast<uint32_t>(b));
                release(ctx, b, kBlockFree);
            } else if (map_[b] != kBlockFree && note_partial_discard(b, pos - start, stop - pos)) {
                release(ctx, b, kBlockFree);
            }
            pos = stop;
        }
        fill_holes(ctx);
    }

    void write_zeroes(Context &ctx, uint64_t off, uint64_t len) {
        if (h_.type == kTypeFixed) fail(VDKIT_E_NOT_SUPPORTED, "fixed images write zeros as data");
        require_writable_map();
        touch(ctx);
        // The host passes whole blocks only (granularity = block size).
        if (off % h_.block_size || (len % h_.block_size && off + len != h_.disk_size))
            fail(VDKIT_E_INVALID_ARGUMENT, "write_zeroes needs whole blocks");
        for (uint64_t b = off / h_.block_size; b * h_.block_size < off + len; ++b) {
            pending_discards_.erase(static_cast<uint32_t>(b));
            release(ctx, b, kBlockZero);
        }
        fill_holes(ctx);
    }

    // Zero blocks leave the data area (free in a base image, zero entries
    // in a diff, where they must keep shadowing the parent); then the holes
    // are closed and the file truncated. Blocks equal to the parent were
    // already given back by the host. Nothing a reader sees changes, so the
    // modification UUID stays: differencing images made over this one
    // still open. The file never grows (a block the end of the file cuts
    // stays cut; check -r pads it).
    void compact(Context &ctx) {
        if (h_.type == kTypeFixed)
            fail(VDKIT_E_NOT_SUPPORTED, "a fixed image is fully allocated by design; convert it to a dynamic one");
        require_writable_map();
        std::vector<unsigned char> block(static_cast<size_t>(h_.block_size));
        for (uint64_t b = 0; b < h_.blocks; ++b) {
            const uint32_t entry = map_[b];
            if (is_allocated(entry)) {
                const uint64_t span = block_span(b);
                pread_padded(ctx, block.data(), span, data_offset(entry));
                if (sdk::is_zero(block.data(), span)) release(ctx, b, h_.type == kTypeDiff ? kBlockZero : kBlockFree);
            }
            ctx.progress(b + 1, uint64_t(h_.blocks) * 2);
        }
        // Always close holes: data blocks no entry references (left by an
        // interrupted move) are reclaimed too.
        holes_pending_ = true;
        fill_holes(ctx);
        ctx.progress(uint64_t(h_.blocks) * 2, uint64_t(h_.blocks) * 2);
    }

    void resize(Context &ctx, uint64_t new_size, uint32_t flags) {
        if (h_.legacy()) fail(VDKIT_E_NOT_SUPPORTED, "version 0 images cannot be resized; convert to a current VDI");
        if (new_size == 0 || new_size >= kMaxDiskSize)
            fail(VDKIT_E_INVALID_ARGUMENT, "size " + std::to_string(new_size) + " is out of the VDI range");
        require_writable_map();
        touch(ctx);
        const uint64_t new_blocks = (new_size + h_.block_size - 1) / h_.block_size;
        if (new_size < h_.disk_size) {
            if (!(flags & VDKIT_RESIZE_SHRINK)) fail(VDKIT_E_INVALID_ARGUMENT, "shrinking needs the shrink flag");
            shrink(ctx, new_size, new_blocks);
        } else if (new_blocks > h_.blocks) {
            grow_map(ctx, static_cast<uint32_t>(new_blocks));
        }
        h_.disk_size = new_size;
        write_header(ctx);
        flush_file(ctx);
    }

    // Findings with the file offset they concern; with repair (and no dry
    // run) each is fixed without making readable data unreadable: a data
    // block two entries share is copied so each has its own; an entry past
    // the possible block count whose data is in the file moves into a free
    // data block; an entry whose data starts at or past the end of the file
    // (unreadable) reads as zeros afterwards; the count is corrected,
    // unused data blocks are closed up and the file ends after the last
    // data block (padded when the end of the file cuts one).
    //
    // Ranking: whatever makes later writes go wrong is an error — an entry
    // that is out of range or shared, a count that disagrees with the map,
    // and data blocks no entry uses below the count (VirtualBox and qemu
    // append at the count and never reuse them, so the file outgrows its
    // block count; qemu-img check calls both "allocated blocks mismatch").
    // Bytes after the last data block are a leak.
    void check(Context &ctx, uint32_t flags, vdkit_check_result &r) {
        const sdk::CheckReporter reporter(ctx, flags, r);
        const bool repair = reporter.repairing();
        if (repair && !writable_) fail(VDKIT_E_READ_ONLY, "repair needs the image open for writing");
        // Every VDI finding is one repair fixes.
        auto report = [&](bool error, uint64_t offset, const std::string &msg) {
            reporter(error ? VDKIT_FINDING_ERROR : VDKIT_FINDING_LEAK, offset, msg, true);
        };

        if (is_nil(h_.uuid_create) || is_nil(h_.uuid_modify)) {
            report(true, 0x188, "the image or modification UUID is null (VirtualBox refuses such images)");
            if (repair) {
                if (is_nil(h_.uuid_create)) sdk::host().generate_uuid(h_.uuid_create.data());
                if (is_nil(h_.uuid_modify)) sdk::host().generate_uuid(h_.uuid_modify.data());
            }
        }
        // Map entries: out of range, beyond the file, or shared with another block.
        const uint64_t limit = data_blocks_in_file();
        const uint64_t file_slots = // data blocks that start inside the file, unbounded by the block count
            file_size_ > h_.off_data ? (file_size_ - h_.off_data + h_.stride() - 1) / h_.stride() : 0;
        std::vector<uint32_t> owner(static_cast<size_t>(limit), kBlockFree);
        struct Copy {
            uint32_t block;  // the virtual block that gets its own data block
            uint32_t source; // the data block it reads now
        };
        std::vector<Copy> copies;
        // Every block whose data block the end of the file cuts loses its
        // bytes past it (also one that shares the data block or points past
        // the block count): each names its own lost range.
        auto report_cut = [&](uint32_t b, uint32_t e) {
            if (data_offset(e) + block_span(b) <= file_size_) return;
            // Cut by the end of the file: data up to it, zeros after.
            const uint64_t kept = file_size_ > data_offset(e) ? file_size_ - data_offset(e) : 0;
            report(true, file_size_,
                   "block " + std::to_string(b) + " (data block " + std::to_string(e) + " at byte " +
                       std::to_string(data_offset(e)) + ") is cut off by the end of the file at byte " +
                       std::to_string(file_size_) + ": its first " + std::to_string(kept) +
                       " bytes are intact, the rest reads as zeros (" + lost_range(b, kept, h_.block_size) +
                       ": the file was truncated); repair pads the file with zeros");
        };
        uint32_t highest = 0; // one past the highest data block in use
        uint32_t in_use = 0;  // data blocks entries use
        for (uint32_t b = 0; b < h_.blocks; ++b) {
            const uint32_t e = map_[b];
            if (!is_allocated(e)) continue;
            const uint64_t at = h_.off_data + uint64_t(e) * h_.stride();
            const std::string where = "block " + std::to_string(b) + " (map entry at byte " +
                                      std::to_string(h_.off_blocks + uint64_t(b) * 4) + ")";
            if (e >= h_.blocks && e < file_slots) {
                // Readable (qemu reads it too), but past the data blocks a
                // disk this size can have: a writer trusting the entries
                // could run past the block count.
                report(true, h_.off_blocks + uint64_t(b) * 4,
                       where + " points at data block " + std::to_string(e) + " (byte " + std::to_string(at) +
                           "), beyond the " + std::to_string(h_.blocks) +
                           " a disk of this size can have; repair copies its data into a data block in range "
                           "(the disk reads the same)");
                report_cut(b, e);
                copies.push_back({b, e});
                continue;
            }
            if (e >= limit) {
                report(true, h_.off_blocks + uint64_t(b) * 4,
                       where + " points at data block " + std::to_string(e) + " (byte " + std::to_string(at) +
                           "), at or beyond the end of the file (" + std::to_string(file_size_) +
                           " bytes): it cannot be read; repair makes it read as zeros (" +
                           lost_range(b, 0, h_.block_size) + ": the data never reached the file)");
                if (repair) set_entry(ctx, b, h_.type == kTypeDiff ? kBlockZero : kBlockFree);
                continue;
            }
            if (owner[e] != kBlockFree) {
                report(true, h_.off_blocks + uint64_t(b) * 4,
                       where + " shares data block " + std::to_string(e) + " (byte " + std::to_string(at) +
                           ") with block " + std::to_string(owner[e]) +
                           ": a write to either would change both; repair copies the data block so each has its "
                           "own (both read the same as now)");
                report_cut(b, e);
                copies.push_back({b, e});
                continue;
            }
            owner[e] = b;
            ++in_use;
            highest = std::max(highest, e + 1);
            report_cut(b, e);
        }
        const uint32_t count = h_.blocks_allocated;
        // Data blocks inside the counted area (and the file) that no entry uses.
        const uint32_t counted = static_cast<uint32_t>(std::min<uint64_t>(std::max(count, highest), limit));
        std::vector<uint32_t> orphans;
        for (uint32_t i = 0; i < counted; ++i)
            if (owner[i] == kBlockFree) orphans.push_back(i);
        if (count != highest) {
            std::string why;
            if (count < highest)
                why = "a writer that trusts the count (VirtualBox, qemu) would put new data over blocks in use";
            else if (count > h_.blocks)
                why = "more than the " + std::to_string(h_.blocks) +
                      " blocks the disk has (VirtualBox refuses the image)";
            else
                why = "the " + std::to_string(count - highest) +
                      " data blocks past the last one in use are used by no block (a crash between the header and "
                      "the map leaves this); a writer that trusts the count never reuses them and runs out of blocks";
            report(true, 0x184,
                   "the header counts " + std::to_string(count) + " allocated blocks, the map uses " +
                       std::to_string(in_use) + " up to data block " +
                       (highest ? std::to_string(highest - 1) : std::string("none")) + ": " + why +
                       "; repair sets the count");
        }
        const uint64_t inner = static_cast<uint64_t>(
            std::count_if(orphans.begin(), orphans.end(), [&](uint32_t i) { return i < highest; }));
        if (inner)
            report(true, h_.off_data + uint64_t(orphans.front()) * h_.stride(),
                   std::to_string(inner) + " data blocks among those in use (first: data block " +
                       std::to_string(orphans.front()) + " at byte " +
                       std::to_string(h_.off_data + uint64_t(orphans.front()) * h_.stride()) +
                       ") are used by no block: writers that append at the count never reuse them, so the file "
                       "outgrows the disk's blocks (qemu-img check: allocated blocks mismatch); repair moves the last "
                       "data blocks into them");
        const uint64_t data_end = h_.off_data + uint64_t(std::max<uint64_t>(counted, highest)) * h_.stride();
        if (file_size_ > data_end) {
            const bool ragged = (file_size_ - h_.off_data) % h_.stride() != 0;
            report(false, data_end,
                   std::to_string(file_size_ - data_end) + " bytes follow the last data block" +
                       (ragged ? " (the data area is not a whole number of blocks)" : ""));
        }
        if (repair) {
            // Copies first (into data blocks no entry uses, lowest first),
            // flushed, then the entries: a crash in between leaves unused
            // copies, never an entry pointing at data that is not there.
            std::vector<bool> used(h_.blocks, false);
            for (uint32_t b = 0; b < h_.blocks; ++b)
                if (is_allocated(map_[b]) && map_[b] < h_.blocks && owner.size() > map_[b] && owner[map_[b]] == b)
                    used[map_[b]] = true;
            std::vector<std::pair<uint32_t, uint32_t>> moved; // block, new data block
            std::vector<unsigned char> buf(static_cast<size_t>(h_.stride()));
            uint32_t next = 0;
            // A copy that fails (no space left) leaves the file as it was:
            // no entry names a copy yet, so what the copies added to the
            // end of the file is cut off again before the error goes up.
            const uint64_t size_before = file_size_;
            try {
                for (const Copy &c : copies) {
                    while (next < h_.blocks && used[next])
                        ++next;
                    if (next >= h_.blocks)
                        fail(VDKIT_E_INTERNAL, "no data block left to copy block " + std::to_string(c.block) + " into");
                    used[next] = true;
                    pread_padded(ctx, buf.data(), buf.size(), h_.off_data + uint64_t(c.source) * h_.stride());
                    const uint64_t to = h_.off_data + uint64_t(next) * h_.stride();
                    main_.pwrite(ctx.get(), to, buf.data(), buf.size());
                    file_size_ = std::max(file_size_, to + h_.stride());
                    moved.emplace_back(c.block, next);
                }
                if (!moved.empty()) main_.flush(ctx.get());
            } catch (...) {
                file_size_ = size_before;
                try {
                    main_.truncate(ctx.get(), size_before);
                } catch (...) { // the first error is the one to report
                }
                throw;
            }
            for (const auto &[b, e] : moved)
                set_entry(ctx, b, e);
            next_block_ = 0;
            for (uint32_t e : map_)
                if (is_allocated(e)) next_block_ = std::max(next_block_, e + 1);
            h_.blocks_allocated = next_block_;
            map_damaged_ = false;
            write_header(ctx);
            holes_pending_ = true; // closes unused data blocks, sets the count, truncates
            fill_holes(ctx);
            // Short of the last data block (a block cut by the end of the
            // file): padded with the zeros it reads as.
            if (file_size_ != h_.off_data + uint64_t(h_.blocks_allocated) * h_.stride()) {
                file_size_ = h_.off_data + uint64_t(h_.blocks_allocated) * h_.stride();
                main_.truncate(ctx.get(), file_size_);
            }
            flush_file(ctx);
        }
    }

private:
    [[noreturn]] void fail(uint32_t code, const std::string &why) const { throw Error(code, name_ + ": " + why); }

    // The virtual bytes block b covers (the last one may be short).
    uint64_t block_span(uint64_t b) const {
        return std::min<uint64_t>(h_.block_size, h_.disk_size - b * h_.block_size);
    }
    // File offset of the data of the block a map entry points at.
    uint64_t data_offset(uint32_t entry) const { return h_.off_data + uint64_t(entry) * h_.stride() + h_.block_extra; }
    // Data blocks that start inside the file (the last may be cut short by
    // the end of the file: it reads as zeros past it), bounded by the block
    // count.
    uint64_t data_blocks_in_file() const {
        if (file_size_ <= h_.off_data) return 0;
        return std::min<uint64_t>((file_size_ - h_.off_data + h_.stride() - 1) / h_.stride(), h_.blocks);
    }
    bool block_in_file(uint32_t entry) const { return h_.off_data + uint64_t(entry) * h_.stride() < file_size_; }
    // Read n bytes at `at`; the bytes past the end of the file read as zeros.
    void pread_padded(Context &ctx, void *buf, uint64_t n, uint64_t at) {
        const uint64_t avail = at < file_size_ ? std::min(n, file_size_ - at) : 0;
        if (avail) main_.pread(ctx.get(), at, buf, avail);
        if (avail < n) std::memset(static_cast<unsigned char *>(buf) + avail, 0, static_cast<size_t>(n - avail));
    }
    // "lost disk bytes [A, B)" for bytes [from, to) of block b (the form of
    // every finding that loses readable data, docs/check.md).
    std::string lost_range(uint64_t b, uint64_t from, uint64_t to) const {
        const uint64_t base = b * h_.block_size;
        const uint64_t a = std::min(base + from, h_.disk_size), e = std::min(base + to, h_.disk_size);
        return "lost disk bytes [" + std::to_string(a) + ", " + std::to_string(e) + ")";
    }
    // The host keeps requests within the disk; scans below rely on it.
    void check_request(uint64_t off, uint64_t len) const {
        if (off >= h_.disk_size || len > h_.disk_size - off)
            fail(VDKIT_E_OUT_OF_RANGE, "request beyond the end of the disk");
    }
    uint32_t state_of(uint32_t entry) const {
        if (entry == kBlockFree) return VDKIT_BLOCK_UNALLOCATED;
        if (entry == kBlockZero) return VDKIT_BLOCK_ZERO;
        return VDKIT_BLOCK_DATA;
    }
    void require_writable_map() const {
        if (!writable_) fail(VDKIT_E_READ_ONLY, "the image is open read-only");
        if (map_damaged_)
            fail(VDKIT_E_CORRUPT, "the block map has entries that are out of range or shared; writing could destroy "
                                  "data, run 'vdkit check -r' first");
    }

    void load(Context &ctx) {
        file_size_ = main_.size(ctx.get());
        unsigned char buf[kHeaderReadSize]{};
        const uint64_t n = std::min<uint64_t>(file_size_, sizeof buf);
        main_.pread(ctx.get(), 0, buf, n);
        if (auto err = parse(buf, n, file_size_, h_)) fail(VDKIT_E_CORRUPT, *err);
        if (h_.type == kTypeDiff && h_.legacy())
            fail(VDKIT_E_CORRUPT, "a version 0 header cannot describe a differencing image");
        // The map is bounded by the file size (checked in parse).
        std::vector<unsigned char> raw(static_cast<size_t>(uint64_t(h_.blocks) * 4));
        if (!raw.empty()) main_.pread(ctx.get(), h_.off_blocks, raw.data(), raw.size());
        map_.resize(h_.blocks);
        for (uint32_t i = 0; i < h_.blocks; ++i)
            map_[i] = static_cast<uint32_t>(sdk::load_le(raw.data() + 4 * i, 4));
        disk_count_ = h_.blocks_allocated;
        // Entries beyond the file or shared by two blocks would let a write
        // destroy other data: writing is refused until check -r fixes them.
        // The allocation point comes from the map, never from the header's
        // allocated count: a crash between the count and the map leaves the
        // count too high (data blocks no entry uses), and trusting it would
        // leave those blocks unused for good and run out of blocks before
        // every virtual block is written. Unused data blocks below the
        // allocation point are reused (find_free_slots).
        const uint64_t limit = data_blocks_in_file();
        std::vector<bool> used(static_cast<size_t>(limit), false);
        next_block_ = 0;
        for (uint32_t i = 0; i < h_.blocks; ++i) {
            const uint32_t e = map_[i];
            if (!is_allocated(e)) continue;
            if (e >= limit || used[e]) {
                map_damaged_ = true;
                continue;
            }
            used[e] = true;
            next_block_ = std::max(next_block_, e + 1);
        }
        if (h_.off_blocks >= kHintOffset + kHintHeader && h_.end() <= kHintOffset) read_hint(ctx);
    }

    void read_hint(Context &ctx) {
        unsigned char head[kHintHeader];
        main_.pread(ctx.get(), kHintOffset, head, sizeof head);
        if (std::memcmp(head, kHintMagic, 8) != 0 || sdk::load_le(head + 8, 4) != 1) return;
        const uint64_t len = sdk::load_le(head + 12, 4);
        if (len > h_.off_blocks - kHintOffset - kHintHeader)
            fail(VDKIT_E_CORRUPT, "the parent location record at 0x200 is longer than its area");
        hint_.assign(static_cast<size_t>(len), '\0');
        main_.pread(ctx.get(), kHintOffset + kHintHeader, hint_.data(), len);
    }

    bool has_hint_room(std::string_view hint) const {
        return h_.end() <= kHintOffset && h_.off_blocks >= kHintOffset + kHintHeader + hint.size();
    }

    void check_hint_room(std::string_view hint) const {
        if (!has_hint_room(hint))
            fail(VDKIT_E_NOT_SUPPORTED, "no room for a parent location in this VDI (its block map starts at " +
                                            std::to_string(h_.off_blocks) + ")");
    }

    // The parent location record (vdkit's, at 0x200; VirtualBox keeps
    // parents in its media registry instead).
    void write_hint(Context &ctx, std::string_view hint) {
        check_hint_room(hint);
        std::vector<unsigned char> rec(static_cast<size_t>(kHintHeader + hint.size()));
        fill_hint_record(rec.data(), hint);
        main_.pwrite(ctx.get(), kHintOffset, rec.data(), rec.size());
        hint_ = std::string(hint);
    }

    static void fill_hint_record(unsigned char *rec, std::string_view hint) {
        std::memcpy(rec, kHintMagic, 8);
        sdk::store_le(rec + 8, 1, 4);
        sdk::store_le(rec + 12, hint.size(), 4);
        std::memcpy(rec + kHintHeader, hint.data(), hint.size());
    }

    // The header and the parent location record in one write, so the link
    // (type, parent UUIDs) and the location never disagree whichever write
    // fails. The bytes between the header's end and 0x200 are kept.
    void write_header_and_hint(Context &ctx, std::string_view hint) {
        check_hint_room(hint);
        const uint64_t end = kHintOffset + kHintHeader + hint.size();
        std::vector<unsigned char> buf(static_cast<size_t>(end), 0);
        if (kHintOffset > h_.end()) main_.pread(ctx.get(), h_.end(), buf.data() + h_.end(), kHintOffset - h_.end());
        unsigned char head[kHeaderReadSize];
        serialise(h_, head);
        std::memcpy(buf.data() + 0x40, head + 0x40, static_cast<size_t>(h_.end() - 0x40));
        fill_hint_record(buf.data() + kHintOffset, hint);
        main_.pwrite(ctx.get(), 0x40, buf.data() + 0x40, end - 0x40);
        hint_ = std::string(hint);
        header_dirty_ = false;
    }

    // Where a new image's map and data start (create and measure agree).
    struct NewLayout {
        uint64_t block, blocks, off_blocks, off_data;
    };
    static NewLayout new_layout(Context &ctx, uint64_t size, const std::string &who) {
        auto fail = [&](uint32_t code, const std::string &why) { throw Error(code, who + why); };
        if (size == 0 || size >= kMaxDiskSize)
            fail(VDKIT_E_INVALID_ARGUMENT,
                 "size " + std::to_string(size) + " is out of the VDI range (1 byte to 4 PiB - 3 MiB)");
        const uint64_t block = ctx.config_uint("block-size").value_or(1u << 20);
        const uint64_t align = ctx.config_uint("alignment").value_or(1u << 20);
        if ((block & (block - 1)) || block < kMinBlockSize || block > kMaxBlockSize)
            fail(VDKIT_E_INVALID_ARGUMENT, "block-size must be a power of two from 512 bytes to 256 MiB");
        if ((align & (align - 1)) || align < kSector || align > (64u << 20))
            fail(VDKIT_E_INVALID_ARGUMENT, "alignment must be a power of two from 512 bytes to 64 MiB");
        const uint64_t blocks = (size + block - 1) / block;
        if (blocks >= kBlockZero) fail(VDKIT_E_INVALID_ARGUMENT, "too many blocks; use a larger block-size");
        const uint64_t off_blocks = align_up(kHintAreaEnd, align);
        const uint64_t off_data = align_up(off_blocks + blocks * 4, align);
        if (off_data > UINT32_MAX) fail(VDKIT_E_INVALID_ARGUMENT, "the block map does not fit a 32-bit data offset");
        return {block, blocks, off_blocks, off_data};
    }

    void build(Context &ctx, const vdkit_create_params &p) {
        const NewLayout l = new_layout(ctx, p.size, name_ + ": ");
        const uint64_t block = l.block, blocks = l.blocks, off_blocks = l.off_blocks, off_data = l.off_data;
        const bool diff = p.flags & VDKIT_CREATE_DIFF;
        const bool fixed = (p.flags & VDKIT_CREATE_FIXED) && !diff;
        h_ = Header{};
        h_.type = diff ? kTypeDiff : fixed ? kTypeFixed : kTypeNormal;
        h_.disk_size = p.size;
        h_.block_size = static_cast<uint32_t>(block);
        h_.blocks = static_cast<uint32_t>(blocks);
        h_.off_blocks = static_cast<uint32_t>(off_blocks);
        h_.off_data = static_cast<uint32_t>(off_data);
        h_.pchs = {p.pchs_cylinders, p.pchs_heads, p.pchs_sectors, static_cast<uint32_t>(kSector)};
        h_.lchs = {p.lchs_cylinders, p.lchs_heads, p.lchs_sectors, static_cast<uint32_t>(kSector)};
        std::memcpy(h_.uuid_create.data(), p.uuid, 16);
        if (is_nil(h_.uuid_create)) sdk::host().generate_uuid(h_.uuid_create.data());
        sdk::host().generate_uuid(h_.uuid_modify.data());
        if (diff) {
            std::memcpy(h_.uuid_linkage.data(), p.parent_uuid, 16);
            std::memcpy(h_.uuid_parent_modify.data(), p.parent_modification_uuid, 16);
        }
        map_.assign(blocks, kBlockFree);
        if (fixed) {
            for (uint32_t i = 0; i < h_.blocks; ++i)
                map_[i] = i;
            h_.blocks_allocated = h_.blocks;
        }
        next_block_ = h_.blocks_allocated;
        file_size_ = off_data + uint64_t(h_.blocks_allocated) * h_.stride();

        unsigned char buf[kHeaderReadSize];
        serialise(h_, buf);
        main_.truncate(ctx.get(), file_size_);
        main_.pwrite(ctx.get(), 0, buf, h_.end());
        disk_count_ = h_.blocks_allocated;
        if (diff) write_hint(ctx, sdk::view(p.parent_hint));
        write_map_range(ctx, 0, h_.blocks);
        if (fixed) main_.zero(ctx.get(), off_data, file_size_ - off_data); // allocate the data area
        // No flush here: the new image is durable at its first flush or
        // close, like every later change (a convert stages it and flushes
        // once at the end; a flush per create cost a disk round trip).
    }

    // Write map entries [first, last) to the file.
    void write_map_range(Context &ctx, uint64_t first, uint64_t last) {
        constexpr uint64_t kChunk = 1u << 18; // entries per write (1 MiB)
        std::vector<unsigned char> raw(static_cast<size_t>(std::min(kChunk, last - first) * 4));
        for (uint64_t i = first; i < last;) {
            const uint64_t n = std::min(kChunk, last - i);
            for (uint64_t j = 0; j < n; ++j)
                sdk::store_le(raw.data() + 4 * j, map_[i + j], 4);
            main_.pwrite(ctx.get(), h_.off_blocks + i * 4, raw.data(), n * 4);
            i += n;
        }
    }

    // New allocations reach the file at the next flush: their map entries
    // (by 4 KiB page of the map) and the header's allocated count. Until
    // then they live in map_ and h_ only.
    void defer_entry(uint64_t b, uint32_t entry) {
        map_[b] = entry;
        dirty_map_pages_.insert(b / kEntriesPerPage);
        header_dirty_ = true;
    }

    // Make the file durable. With deferred metadata: the data first (a
    // flush), then the header and the map pages in the order below, then a
    // flush, so no entry on disk ever points at data that did not reach it.
    // Without: one flush.
    // The count on disk always covers every map entry on disk (VDI 1.1
    // header "cBlocksAllocated"; writers that trust it append there): a
    // count that grows is written before the entries that use it, one that
    // shrinks (fill_holes moved blocks down) after the entries that stopped
    // using the blocks past it, with a flush between them. A power cut can
    // leave a count ahead of the map (orphan blocks: check calls it an
    // error, check -r and vdkit's writer cope), never one behind it.
    void flush_file(Context &ctx) {
        main_.flush(ctx.get());
        if (dirty_map_pages_.empty() && !header_dirty_) return;
        const bool count_first = h_.blocks_allocated >= disk_count_;
        if (header_dirty_ && count_first) {
            write_header(ctx);
            if (!dirty_map_pages_.empty()) main_.flush(ctx.get());
        }
        const bool wrote_map = !dirty_map_pages_.empty();
        for (auto it = dirty_map_pages_.begin(); it != dirty_map_pages_.end();) {
            const uint64_t first = *it;
            uint64_t last = first + 1;
            for (++it; it != dirty_map_pages_.end() && *it == last; ++it)
                ++last;
            const uint64_t end = std::min<uint64_t>(last * kEntriesPerPage, h_.blocks);
            if (first * kEntriesPerPage < end) write_map_range(ctx, first * kEntriesPerPage, end);
        }
        dirty_map_pages_.clear();
        if (header_dirty_) { // a count that shrinks, after the entries
            if (wrote_map) main_.flush(ctx.get());
            write_header(ctx);
        }
        main_.flush(ctx.get());
        if (count_lowered_) {
            // The count was ahead of the map (a crash): the data blocks past
            // the last one in use are used by nothing, now that the header
            // and map on disk say so.
            count_lowered_ = false;
            const uint64_t data_end = h_.off_data + uint64_t(next_block_) * h_.stride();
            if (data_end < file_size_) {
                main_.truncate(ctx.get(), data_end);
                file_size_ = data_end;
            }
        }
    }

    void set_entry(Context &ctx, uint64_t b, uint32_t entry) {
        map_[b] = entry;
        unsigned char raw[4];
        sdk::store_le(raw, entry, 4);
        main_.pwrite(ctx.get(), h_.off_blocks + b * 4, raw, 4);
    }

    void write_header(Context &ctx) {
        unsigned char buf[kHeaderReadSize];
        serialise(h_, buf);
        // From the signature on: the banner text of the image's creator stays.
        main_.pwrite(ctx.get(), 0x40, buf + 0x40, h_.end() - 0x40);
        header_dirty_ = false;
        disk_count_ = h_.blocks_allocated;
    }

    // The first change after open gets a new modification UUID, written at
    // once so a child made later records the right one.
    void touch(Context &ctx) {
        if (touched_) return;
        touched_ = true;
        sdk::host().generate_uuid(h_.uuid_modify.data());
        write_header(ctx);
    }

    // The data blocks below the allocation point that no map entry uses
    // (left by a crash between the header and the map, or by a write cut
    // off before its entry reached the file), lowest last.
    void find_free_slots() {
        std::vector<bool> used(next_block_, false);
        for (uint32_t e : map_)
            if (is_allocated(e) && e < next_block_) used[e] = true;
        free_slots_.clear();
        for (uint32_t i = next_block_; i-- > 0;)
            if (!used[i]) free_slots_.push_back(i);
        free_known_ = true;
    }

    // Give virtual block b a data block holding data (n bytes, the rest
    // zero): an unused one below the allocation point, else a new one at it.
    void allocate(Context &ctx, uint64_t b, const unsigned char *data, uint64_t n) {
        if (!free_known_) find_free_slots();
        uint32_t index;
        if (!free_slots_.empty()) {
            index = free_slots_.back();
            free_slots_.pop_back();
        } else {
            // Every block below next_block_ is in use and each virtual block
            // has at most one: only a damaged map (refused for writing) gets here.
            if (next_block_ >= h_.blocks)
                fail(VDKIT_E_INTERNAL, "no free data block left with " + std::to_string(h_.blocks) + " in use");
            index = next_block_++;
        }
        const uint64_t at = h_.off_data + uint64_t(index) * h_.stride();
        if (h_.block_extra) {
            std::vector<unsigned char> extra(h_.block_extra, 0);
            main_.pwrite(ctx.get(), at, extra.data(), extra.size());
        }
        main_.pwrite(ctx.get(), at + h_.block_extra, data, n);
        if (n < h_.block_size) {
            std::vector<unsigned char> pad(static_cast<size_t>(h_.block_size - n), 0);
            main_.pwrite(ctx.get(), at + h_.block_extra + n, pad.data(), pad.size());
        }
        file_size_ = std::max(file_size_, at + h_.stride());
        // The map entry and the allocated count follow at the next flush,
        // after the data is durable (flush_file): a failure or crash before
        // then leaves a data block no entry uses — reused by a later
        // allocation, or reclaimed by check -r — never an entry pointing at
        // data that is not there. The count becomes the allocation point
        // (it covers every entry; a count left too high by a crash is
        // corrected here).
        if (h_.blocks_allocated > next_block_) count_lowered_ = true;
        h_.blocks_allocated = next_block_;
        defer_entry(b, index);
    }

    // Point block b at entry (free or zero); its data block becomes a hole.
    void release(Context &ctx, uint64_t b, uint32_t entry) {
        const uint32_t old = map_[b];
        if (old == entry) return;
        set_entry(ctx, b, entry);
        if (is_allocated(old)) holes_pending_ = true;
    }

    // Returns true when a partial discard completes block b.
    bool note_partial_discard(uint64_t b, uint64_t within, uint64_t len) {
        const uint64_t sectors = (block_span(b) + kSector - 1) / kSector;
        auto &bits = pending_discards_[static_cast<uint32_t>(b)];
        bits.resize(static_cast<size_t>(sectors), false);
        // Only whole sectors count; a partial sector keeps its data.
        const uint64_t first = (within + kSector - 1) / kSector;
        const uint64_t end = within + len == block_span(b) ? sectors : (within + len) / kSector;
        for (uint64_t s = first; s < end; ++s)
            bits[static_cast<size_t>(s)] = true;
        if (std::find(bits.begin(), bits.end(), false) != bits.end()) return false;
        pending_discards_.erase(static_cast<uint32_t>(b));
        return true;
    }

    // When a block was given back: move the last data blocks into the
    // holes (every data block no entry references) and truncate. Map
    // entries change only after the copies are flushed.
    // The file only shrinks here: a block the end of the file cuts keeps
    // reading as zeros past it (check -r pads it).
    void fill_holes(Context &ctx) {
        if (!holes_pending_) return;
        holes_pending_ = false;
        flush_file(ctx);  // the map no longer references the holes
        uint32_t end = 0; // one past the highest data block in use (the map was checked on open)
        for (uint32_t b = 0; b < h_.blocks; ++b)
            if (is_allocated(map_[b])) end = std::max(end, map_[b] + 1);
        std::vector<uint32_t> owner(end, kBlockFree);
        for (uint32_t b = 0; b < h_.blocks; ++b)
            if (is_allocated(map_[b])) owner[map_[b]] = b;
        auto trim = [&] {
            while (end > 0 && owner[end - 1] == kBlockFree)
                --end;
        };
        trim();
        std::vector<std::pair<uint32_t, uint32_t>> moves; // from, to
        for (uint32_t hole = 0; hole < end; ++hole) {
            if (owner[hole] != kBlockFree) continue;
            // end - 1 is in use and lies beyond the hole.
            moves.emplace_back(end - 1, hole);
            owner[hole] = owner[end - 1];
            owner[end - 1] = kBlockFree;
            trim();
        }
        std::vector<unsigned char> buf(static_cast<size_t>(h_.stride()));
        for (auto [from, to] : moves) {
            pread_padded(ctx, buf.data(), buf.size(), h_.off_data + uint64_t(from) * h_.stride());
            main_.pwrite(ctx.get(), h_.off_data + uint64_t(to) * h_.stride(), buf.data(), buf.size());
        }
        if (!moves.empty()) flush_file(ctx);
        // The entries naming the copies, then the lower count (flush_file's order).
        for (auto [from, to] : moves)
            defer_entry(owner[to], to);
        h_.blocks_allocated = end;
        header_dirty_ = true;
        next_block_ = end;
        free_slots_.clear(); // no holes below `end` now
        free_known_ = true;
        flush_file(ctx);
        const uint64_t data_end = h_.off_data + uint64_t(end) * h_.stride();
        if (data_end < file_size_) {
            main_.truncate(ctx.get(), data_end);
            file_size_ = data_end;
        }
    }

    // Enlarge the map to new_blocks entries. When it would run into the
    // data, the leading data blocks move to the end of the file first.
    void grow_map(Context &ctx, uint32_t new_blocks) {
        if (new_blocks >= kBlockZero) fail(VDKIT_E_INVALID_ARGUMENT, "too many blocks for a VDI");
        const uint64_t map_end = uint64_t(h_.off_blocks) + uint64_t(new_blocks) * 4;
        if (map_end > h_.off_data) {
            const uint64_t shift_blocks = (map_end - h_.off_data + h_.stride() - 1) / h_.stride();
            const uint64_t new_off_data = h_.off_data + shift_blocks * h_.stride();
            if (new_off_data > UINT32_MAX)
                fail(VDKIT_E_NOT_SUPPORTED, "the grown map does not fit a 32-bit data offset");
            const uint32_t k = static_cast<uint32_t>(shift_blocks);
            // The data blocks in use are [0, next_block_) (from the map; the
            // header's count is not trusted).
            const uint32_t moved = std::min(next_block_, k);
            const uint32_t base = std::max(next_block_, k) - k; // new index of the first moved block
            std::vector<unsigned char> buf(static_cast<size_t>(h_.stride()));
            for (uint32_t i = 0; i < moved; ++i) {
                pread_padded(ctx, buf.data(), buf.size(), h_.off_data + uint64_t(i) * h_.stride());
                main_.pwrite(ctx.get(), new_off_data + uint64_t(base + i) * h_.stride(), buf.data(), buf.size());
            }
            flush_file(ctx);
            for (uint32_t b = 0; b < h_.blocks; ++b) {
                uint32_t &e = map_[b];
                if (is_allocated(e)) e = e < k ? base + e : e - k;
            }
            h_.off_data = static_cast<uint32_t>(new_off_data);
            h_.blocks_allocated = next_block_;
            file_size_ = std::max(file_size_, new_off_data + uint64_t(next_block_) * h_.stride());
            free_known_ = false; // the blocks moved
        }
        const uint32_t old_blocks = h_.blocks;
        map_.resize(new_blocks, kBlockFree);
        h_.blocks = new_blocks;
        if (h_.type == kTypeFixed) {
            for (uint32_t b = old_blocks; b < new_blocks; ++b)
                map_[b] = next_block_ + (b - old_blocks);
            h_.blocks_allocated = next_block_ + (new_blocks - old_blocks);
            const uint64_t from = h_.off_data + uint64_t(next_block_) * h_.stride();
            file_size_ = h_.off_data + uint64_t(h_.blocks_allocated) * h_.stride();
            main_.truncate(ctx.get(), file_size_);
            main_.zero(ctx.get(), from, file_size_ - from);
            next_block_ = h_.blocks_allocated;
        }
        // Data first, then the map, then the header (written by resize()).
        write_map_range(ctx, 0, new_blocks);
        flush_file(ctx);
    }

    // Shrinking is allowed when nothing but zeros lies past the new end.
    void shrink(Context &ctx, uint64_t new_size, uint64_t new_blocks) {
        std::vector<unsigned char> block(static_cast<size_t>(h_.block_size));
        for (uint64_t b = new_size / h_.block_size; b < h_.blocks; ++b) {
            const uint32_t e = map_[b];
            if (!is_allocated(e)) continue;
            const uint64_t from = std::max(new_size, b * h_.block_size) - b * h_.block_size;
            const uint64_t span = block_span(b);
            if (from >= span) continue;
            pread_padded(ctx, block.data(), span - from, data_offset(e) + from);
            if (!sdk::is_zero(block.data(), span - from))
                fail(VDKIT_E_INVALID_ARGUMENT, "data lies past the new end (at " +
                                                   std::to_string(b * h_.block_size + from) +
                                                   "); discard it first, shrinking never drops data");
        }
        // The tail of a kept partial block is already zero (checked above).
        for (uint64_t b = new_blocks; b < h_.blocks; ++b)
            release(ctx, b, kBlockFree);
        fill_holes(ctx);
        map_.resize(new_blocks);
        h_.blocks = static_cast<uint32_t>(new_blocks);
    }

    StoreRef main_;
    std::string name_;
    bool writable_ = false;
    Header h_;
    std::vector<uint32_t> map_; // h_.blocks entries
    std::string hint_;
    uint64_t file_size_ = 0;
    uint32_t next_block_ = 0;            // data block index the next allocation takes
    bool header_dirty_ = false;          // h_ differs from the file (flush_file writes it)
    uint32_t disk_count_ = 0;            // the allocated count the header in the file has (write_header)
    std::set<uint64_t> dirty_map_pages_; // map pages (kEntriesPerPage entries) not yet written
    bool touched_ = false;
    bool map_damaged_ = false;
    bool holes_pending_ = false;       // a data block was given back since the last fill_holes()
    std::vector<uint32_t> free_slots_; // unused data blocks below next_block_, lowest last
    bool free_known_ = false;          // free_slots_ is current
    bool count_lowered_ = false;       // the allocated count was ahead of the map (flush_file truncates after it)
    std::map<uint32_t, std::vector<bool>> pending_discards_;
};

constexpr vdkit_config_key kKeys[] = {
    sdk::key("block-size", VDKIT_KEY_SIZE, "1M",
             "Allocation block size, a power of two (VirtualBox AllocationBlockSize; qemu reads only 1M).",
             VDKIT_KEY_CREATE_ONLY, {}, 512, 256 << 20),
    sdk::key("alignment", VDKIT_KEY_SIZE, "1M",
             "Alignment of the block map and data area: 1M as VirtualBox writes, down to 512 for small files.",
             VDKIT_KEY_CREATE_ONLY | VDKIT_KEY_EXPERT, {}, 512, 64 << 20),
};
constexpr vdkit_str kExtensions[] = {sdk::str("vdi")};

const vdkit_plugin_descriptor *vdi_format() {
    static const vdkit_plugin_descriptor d = sdk::describe(
        VDKIT_KIND_FORMAT,
        sdk::DescriptorSpec{"vdi", "1.0.0", "VirtualBox disk images (dynamic, fixed, differencing)",
                            VDKIT_CAP_CREATE_FIXED | VDKIT_CAP_CREATE_DYNAMIC | VDKIT_CAP_DIFF | VDKIT_CAP_DISCARD |
                                VDKIT_CAP_FILE_BASED | VDKIT_CAP_UUID | VDKIT_CAP_COMMENT | VDKIT_CAP_COMPACT |
                                VDKIT_CAP_RESIZE | VDKIT_CAP_CHECK | VDKIT_CAP_ZERO_STATE,
                            kKeys, static_cast<uint32_t>(std::size(kKeys)), kExtensions,
                            static_cast<uint32_t>(std::size(kExtensions))},
        sdk::format_ops<VdiImage>());
    return &d;
}

} // namespace

VDKIT_SDK_ENTRY(vdi_format())
