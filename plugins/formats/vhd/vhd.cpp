// The `vhd` format plugin: Virtual PC / Virtual Server / Hyper-V / Azure
// VHD images (MS-VHD; formats.md §3 and §8.3, cited "§x" below), fixed,
// dynamic and differencing. qemu calls this format "vpc".
//
// Reading: the footer at the end of the file (a 511-byte pre-2004 one too),
// else its copy at offset 0 (dynamic and differencing images; §3.1, §8.3
// lesson 5), checksums verified unless ignore-checksums is set; the dynamic
// header, the BAT and, for differencing images only, the sector bitmaps
// (§3.3, §8.3 lesson 8). The disk size follows §8.3 lesson 1 (CHS geometry
// for Virtual PC and qemu's own images, current_size for everything else).
//
// Writing: a new block goes where the data ends: the footer is written past
// it first (the file always ends in a valid footer), then the bitmap (the
// data area is a fresh hole, zeros), then the data; BAT entries and changed
// bitmaps reach the file only at the next flush, after the data (the
// ARCHITECTURE.md crash rule: a crash leaks space, never exposes unwritten
// data).
//
// Parents: W2ru, then W2ku, MacX, Wi2r, Wi2k locators, then the header's
// parent name (§8.3 lesson 4); the host resolves the path under its path
// rule and compares the parent's UUID. The parent time stamp is compared
// (through the modification ids the host checks) when vdkit wrote the child:
// Windows writes 0 and VirtualBox the parent file's mtime there.
#include "layout.hpp"

#include "vdkit/plugin.hpp"
#include "vdkit/text.hpp"

#include <algorithm>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <set>
#include <vector>

using namespace vdkit;
using namespace vdkit::vhd;
using sdk::Context;
using sdk::Error;
using sdk::StoreRef;

namespace {

constexpr uint64_t kEntriesPerSector = kSector / 4;
constexpr uint64_t kLocatorSpace = 4096; // bytes reserved for the W2ru path of a new differencing image
constexpr char kVdkitCreator[4] = {'v', 'd', 'k', 't'};
constexpr char kExactCreator[4] = {'q', 'e', 'm', '2'}; // qemu's force_size marker: readers use current_size
constexpr uint32_t kCreatorVersion = 0x00010000u;
constexpr uint32_t kHostWi2k = 0x5769326Bu;

uint64_t align_up(uint64_t v, uint64_t a) {
    return (v + a - 1) / a * a;
}

// Modification ids carry the footer time stamp (the host compares them
// within one format): "VHDT", eight zero bytes, the time stamp big-endian.
// Time stamp 0 (Windows' parent time stamp) is the nil id: not compared.
void encode_stamp(uint32_t ts, uint8_t *out) {
    std::memset(out, 0, 16);
    if (!ts) return;
    std::memcpy(out, "VHDT", 4);
    store_be(out + 12, ts, 4);
}
std::optional<uint32_t> decode_stamp(const uint8_t *in) {
    if (std::memcmp(in, "VHDT", 4) != 0 || !sdk::is_zero(in + 4, 8)) return std::nullopt;
    return static_cast<uint32_t>(load_be(in + 12, 4));
}

// Windows paths from locators and the header name: separators become '/',
// ".\" is dropped; an absolute Windows path (drive letter or UNC) keeps its
// last component only, looked for next to the child.
std::string native_path(std::string p) {
    std::replace(p.begin(), p.end(), '\\', '/');
    const bool drive = p.size() >= 2 && p[1] == ':';
    const bool unc = p.rfind("//", 0) == 0;
    if (drive || unc) {
        const size_t slash = p.rfind('/');
        return slash == std::string::npos ? p.substr(2) : p.substr(slash + 1);
    }
    while (p.rfind("./", 0) == 0)
        p.erase(0, 2);
    return p;
}

class VhdImage {
public:
    static uint32_t probe(Context &ctx, StoreRef main, std::string_view) {
        const uint64_t size = main.size(ctx.get());
        if (size < kOldFooterSize) return VDKIT_PROBE_NO;
        unsigned char tail[kFooterSize]{};
        const uint64_t n = std::min<uint64_t>(size, kFooterSize);
        main.pread(ctx.get(), size - n, tail, n);
        // A footer at the end (512 or 511 bytes), or the copy at 0 of a
        // dynamic image whose end is damaged: the plugin then names the damage.
        if (has_cookie(tail, n) || (n == kFooterSize && has_cookie(tail + 1, kOldFooterSize)))
            return VDKIT_PROBE_CERTAIN;
        unsigned char head[8];
        main.pread(ctx.get(), 0, head, sizeof head);
        return has_cookie(head, sizeof head) ? VDKIT_PROBE_CERTAIN : VDKIT_PROBE_NO;
    }

    static std::unique_ptr<VhdImage> open(Context &ctx, StoreRef main, std::string_view name, uint32_t flags) {
        auto img = std::make_unique<VhdImage>();
        img->main_ = main;
        img->name_ = std::string(name);
        img->writable_ = flags & VDKIT_OPEN_WRITE;
        img->verify_ = !ctx.config_bool("ignore-checksums").value_or(false);
        img->load(ctx);
        return img;
    }

    static void measure(Context &ctx, uint64_t size, const vdkit_extent *data, uint64_t count, vdkit_measure &out) {
        const NewLayout l = new_layout(ctx, size, false, "");
        if (l.fixed) {
            out.required = out.fully_allocated = l.size + kFooterSize;
            return;
        }
        const uint64_t stride = l.stride();
        out.required = l.data_start + sdk::units_touched(data, count, l.block, 0, l.size) * stride + kFooterSize;
        out.fully_allocated = l.data_start + needed_entries(l.size, l.block) * stride + kFooterSize;
    }

    static std::unique_ptr<VhdImage> create(Context &ctx, StoreRef main, std::string_view name,
                                            const vdkit_create_params &p) {
        auto img = std::make_unique<VhdImage>();
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
        out.virtual_size = size_;
        out.granularity = fixed() ? 0 : d_.block_size;
        if (diff())
            out.flags |= VDKIT_IMAGE_HAS_PARENT;
        else if (!fixed() || created_)
            out.flags |= VDKIT_IMAGE_ZERO_INIT;
        if (fixed()) out.flags |= VDKIT_IMAGE_FIXED;
        std::memcpy(out.uuid, f_.uuid.data(), 16);
        encode_stamp(f_.timestamp, out.modification_uuid);
        if (diff()) {
            std::memcpy(out.parent_uuid, d_.parent_uuid.data(), 16);
            if (stamps_parent()) encode_stamp(d_.parent_timestamp, out.parent_modification_uuid);
        }
        out.pchs_cylinders = f_.geometry.cylinders;
        out.pchs_heads = f_.geometry.heads;
        out.pchs_sectors = f_.geometry.sectors;
        out.subformat = sdk::str(fixed() ? "fixed" : diff() ? "differencing" : "dynamic");
    }

    // Read-only facts about the writer (§3.1): the creator application,
    // version and host, which size the disk takes, the time stamp.
    std::vector<std::string> metadata_keys(Context &) {
        return {"vhd.creator", "vhd.size-source", "vhd.timestamp", "vhd.current-size", "vhd.block-size"};
    }
    std::optional<std::string> metadata_get(Context &, std::string_view key) {
        if (key == "vhd.creator") {
            std::string app(f_.creator());
            for (char &c : app)
                if (c < 0x20 || c > 0x7e) c = '?';
            std::string os = f_.creator_os == kHostWi2k     ? "Wi2k"
                             : f_.creator_os == 0x4D616320u ? "Mac"
                                                            : sdk::hex(f_.creator_os);
            return "'" + app + "' " + std::to_string(f_.creator_version >> 16) + "." +
                   std::to_string(f_.creator_version & 0xFFFF) + " on " + os;
        }
        if (key == "vhd.size-source")
            return f_.size_from_chs()
                       ? "chs " + std::to_string(f_.geometry.cylinders) + "/" + std::to_string(f_.geometry.heads) +
                             "/" + std::to_string(f_.geometry.sectors)
                       : std::string("current-size");
        if (key == "vhd.timestamp") return std::to_string(f_.timestamp);
        if (key == "vhd.current-size") return std::to_string(f_.current_size);
        if (key == "vhd.block-size" && !fixed()) return std::to_string(d_.block_size);
        return std::nullopt;
    }

    std::string parent_hint(Context &ctx) {
        if (!diff()) return {};
        // §8.3 lesson 4: W2ru, then W2ku, then the others, then the header name.
        for (uint32_t code : {kPlatW2ru, kPlatW2ku, kPlatMacX, kPlatWi2r, kPlatWi2k}) {
            for (const Locator &l : d_.locators) {
                if (l.code != code) continue;
                auto text = read_locator(ctx, l);
                if (text) return native_path(*text);
            }
        }
        return native_path(parent_name(d_));
    }

    void set_uuid(Context &ctx, uint32_t which, const uint8_t *u) {
        switch (which) {
        case VDKIT_UUID_IMAGE:
            std::memcpy(f_.uuid.data(), u, 16);
            write_footers(ctx);
            return;
        case VDKIT_UUID_MODIFICATION:
            if (auto ts = decode_stamp(u)) {
                f_.timestamp = *ts;
                write_footers(ctx);
            }
            return;
        case VDKIT_UUID_PARENT:
            require_dynamic("a parent UUID");
            std::memcpy(d_.parent_uuid.data(), u, 16);
            write_dyn_header(ctx);
            return;
        case VDKIT_UUID_PARENT_MODIFICATION:
            require_dynamic("a parent time stamp");
            d_.parent_timestamp = decode_stamp(u).value_or(0);
            write_dyn_header(ctx);
            return;
        default:
            fail(VDKIT_E_INVALID_ARGUMENT, "unknown UUID kind " + std::to_string(which));
        }
    }

    void set_parent(Context &ctx, std::string_view hint, std::string_view format, const uint8_t *uuid,
                    const uint8_t *modification) {
        require_writable();
        require_dynamic("a parent");
        if (hint.empty()) {
            make_standalone(ctx);
            return;
        }
        auto data = utf16le(std::string(hint));
        if (!data) fail(VDKIT_E_INVALID_ARGUMENT, "the parent location is not valid UTF-8");
        // The W2ru slot vdkit reserved (or any W2ru/W2ku slot with room).
        Locator *slot = nullptr;
        for (Locator &l : d_.locators)
            if ((l.code == kPlatW2ru || l.code == kPlatW2ku || l.code == 0) && l.space >= data->size() &&
                l.space <= kMaxLocatorBytes && l.offset >= bat_end_ && l.offset + l.space <= meta_end_ &&
                l.offset + l.space <= lowest_block_) {
                slot = &l;
                break;
            }
        if (!slot)
            fail(VDKIT_E_NOT_SUPPORTED, "no parent locator with room for '" + std::string(hint) +
                                            "' in this VHD (vdkit reserves " + std::to_string(kLocatorSpace) +
                                            " bytes in the differencing images it makes)");
        std::vector<unsigned char> buf(slot->space, 0);
        std::memcpy(buf.data(), data->data(), data->size());
        main_.pwrite(ctx.get(), slot->offset, buf.data(), buf.size());
        for (Locator &l : d_.locators) // the old path is no longer true anywhere
            if (&l != slot && l.code != 0) l = Locator{};
        slot->code = kPlatW2ru;
        slot->length = static_cast<uint32_t>(data->size());
        const std::string base = native_path(std::string(hint));
        const size_t slash = base.rfind('/');
        set_parent_name(d_, slash == std::string::npos ? base : base.substr(slash + 1));
        if (uuid) std::memcpy(d_.parent_uuid.data(), uuid, 16);
        d_.parent_timestamp = 0;
        if (modification && format == "vhd") d_.parent_timestamp = decode_stamp(modification).value_or(0);
        main_.flush(ctx.get()); // the path, then the header that points at it
        write_dyn_header(ctx);
        if (f_.type != kTypeDiff) {
            f_.type = kTypeDiff;
            write_footers(ctx);
        }
    }

    sdk::ReadResult read(Context &ctx, uint64_t off, void *buf, uint64_t len) {
        check_request(off, len);
        if (fixed()) {
            main_.pread(ctx.get(), off, buf, len);
            return {len, false};
        }
        const uint64_t bs = d_.block_size;
        const uint64_t b = off / bs, within = off % bs;
        uint64_t n = std::min(len, bs - within);
        const uint32_t entry = bat_[b];
        if (entry == kBatFree) {
            for (uint64_t next = b + 1; n < len && bat_[next] == kBatFree; ++next)
                n = std::min(len, n + bs);
            return {n, true};
        }
        require_sound(b);
        if (diff()) {
            // §3.3: bit set: this file; clear: the parent. One run of equal bits.
            const std::vector<uint8_t> &bits = bitmap(ctx, b);
            const uint64_t s = within / kSector;
            const bool mine = bit(bits, s);
            uint64_t end = (s + 1) * kSector;
            while (end < within + n && bit(bits, end / kSector) == mine)
                end += kSector;
            n = std::min(n, end - within);
            if (!mine) return {n, true};
        }
        const uint64_t at = data_offset(entry) + within;
        const uint64_t lim = std::max(limit_, footer_at_);           // the data area grows with each new block
        const uint64_t avail = at < lim ? std::min(n, lim - at) : 0; // a cut block reads zeros past the data area
        if (avail) main_.pread(ctx.get(), at, buf, avail);
        if (avail < n) std::memset(static_cast<unsigned char *>(buf) + avail, 0, static_cast<size_t>(n - avail));
        return {n, false};
    }

    sdk::WriteResult write(Context &ctx, uint64_t off, const void *buf, uint64_t len) {
        require_writable();
        check_request(off, len);
        const auto *in = static_cast<const unsigned char *>(buf);
        if (fixed()) {
            main_.pwrite(ctx.get(), off, in, len);
            return {len, false, 0, 0};
        }
        require_sound_bat();
        const uint64_t bs = d_.block_size;
        uint64_t done = 0;
        while (done < len) {
            const uint64_t pos = off + done;
            const uint64_t b = pos / bs, within = pos % bs;
            uint64_t n = std::min(len - done, bs - within);
            if (bat_[b] == kBatFree) allocate(ctx, b);
            if (diff()) {
                // Sectors whose bit is clear hold nothing yet: a write that
                // covers only part of one needs the rest from the parent
                // (the host's copy-on-write fill, one sector).
                std::vector<uint8_t> &bits = dirty_bitmap(ctx, b);
                const uint64_t s = within / kSector;
                if (within % kSector && !bit(bits, s)) {
                    if (done) break;
                    return {0, true, b * bs + s * kSector, kSector};
                }
                const uint64_t end = within + n;
                if (end % kSector && !bit(bits, end / kSector)) {
                    const uint64_t whole = end / kSector * kSector - within; // up to the ragged last sector
                    if (whole == 0) {
                        if (done) break;
                        return {0, true, b * bs + (end / kSector) * kSector, kSector};
                    }
                    n = whole;
                }
                for (uint64_t k = s; k * kSector < within + n; ++k)
                    set_bit(bits, k);
            }
            main_.pwrite(ctx.get(), data_offset(bat_[b]) + within, in + done, n);
            done += n;
        }
        return {done, false, 0, 0};
    }

    sdk::BlockStatus block_status(Context &ctx, uint64_t off, uint64_t len) {
        check_request(off, len);
        if (fixed()) return {VDKIT_BLOCK_DATA, len};
        const uint64_t bs = d_.block_size;
        const uint64_t b = off / bs, within = off % bs;
        uint64_t n = std::min(len, bs - within);
        if (bat_[b] == kBatFree) {
            for (uint64_t next = b + 1; n < len && bat_[next] == kBatFree; ++next)
                n = std::min(len, n + bs);
            return {VDKIT_BLOCK_UNALLOCATED, n};
        }
        if (diff() && sound(b)) {
            const std::vector<uint8_t> &bits = bitmap(ctx, b);
            const uint64_t s = within / kSector;
            const bool mine = bit(bits, s);
            uint64_t end = (s + 1) * kSector;
            while (end < within + n && bit(bits, end / kSector) == mine)
                end += kSector;
            return {mine ? VDKIT_BLOCK_DATA : VDKIT_BLOCK_UNALLOCATED, std::min(n, end - within)};
        }
        return {VDKIT_BLOCK_DATA, n};
    }

    // The data and bitmaps written since the last flush are made durable
    // first, then the bitmaps and BAT sectors that name them, then a flush
    // (data before metadata).
    void flush(Context &ctx) {
        if (!writable_) return;
        main_.flush(ctx.get());
        if (dirty_bitmaps_.empty() && dirty_bat_.empty()) return;
        for (auto &[b, bits] : dirty_bitmaps_)
            if (bat_[b] != kBatFree) main_.pwrite(ctx.get(), uint64_t(bat_[b]) * kSector, bits.data(), bits.size());
        dirty_bitmaps_.clear();
        for (uint64_t sector : dirty_bat_)
            write_bat_range(ctx, sector * kEntriesPerSector, (sector + 1) * kEntriesPerSector);
        dirty_bat_.clear();
        main_.flush(ctx.get());
    }

    // Whole blocks become unallocated (zeros in a dynamic image, the parent
    // in a differencing one); their space stays in the file (VHD keeps no
    // free list; check reports it). Fixed images stay as they are.
    void discard(Context &ctx, uint64_t off, uint64_t len) {
        (void)ctx;
        if (fixed() || len == 0) return;
        require_writable();
        require_sound_bat();
        const uint64_t bs = d_.block_size;
        for (uint64_t b = (off + bs - 1) / bs; b * bs < off + len; ++b) {
            const uint64_t span = std::min<uint64_t>(bs, size_ - b * bs);
            if (b * bs + span > off + len) break;
            free_block(b);
        }
    }

    // Whole blocks (the granularity): a dynamic image frees them; a
    // differencing one must shadow its parent, so the block holds zeros
    // with every bit set.
    void write_zeroes(Context &ctx, uint64_t off, uint64_t len) {
        require_writable();
        if (fixed()) {
            main_.zero(ctx.get(), off, len);
            return;
        }
        require_sound_bat();
        const uint64_t bs = d_.block_size;
        if (off % bs || (len % bs && off + len != size_))
            fail(VDKIT_E_INVALID_ARGUMENT, "write_zeroes needs whole blocks");
        for (uint64_t b = off / bs; b * bs < off + len; ++b) {
            if (!diff()) {
                free_block(b);
                continue;
            }
            if (bat_[b] == kBatFree)
                allocate(ctx, b);
            else
                main_.zero(ctx.get(), data_offset(bat_[b]), bs);
            std::vector<uint8_t> &bits = dirty_bitmap(ctx, b);
            std::fill(bits.begin(), bits.end(), 0xFF);
        }
    }

    void resize(Context &ctx, uint64_t new_size, uint32_t flags) {
        require_writable();
        // The size asked for, exactly: when the geometry cannot express it
        // the creator becomes 'qem2', whose size readers take from
        // current_size (§3.4).
        if (new_size % kSector) fail(VDKIT_E_INVALID_ARGUMENT, "a VHD's size is a whole number of 512-byte sectors");
        const Sized s = sized(new_size, true);
        if (s.bytes < size_ && !(flags & VDKIT_RESIZE_SHRINK))
            fail(VDKIT_E_INVALID_ARGUMENT, "shrinking needs the shrink flag");
        if (s.bytes < size_) require_zero_tail(ctx, s.bytes);
        if (fixed()) {
            // The new footer first (the file always ends in one), then the
            // old footer's place becomes data (zeros) or the tail goes.
            const uint64_t old_at = footer_at_;
            Footer next = f_;
            next.current_size = s.bytes;
            next.geometry = s.chs;
            unsigned char buf[kFooterSize];
            serialise_footer(next, buf);
            main_.pwrite(ctx.get(), s.bytes, buf, kFooterSize);
            if (s.bytes > old_at) main_.zero(ctx.get(), old_at, std::min<uint64_t>(kFooterSize, s.bytes - old_at));
            main_.flush(ctx.get());
            main_.truncate(ctx.get(), s.bytes + kFooterSize);
            file_size_ = s.bytes + kFooterSize;
            footer_at_ = s.bytes;
        } else {
            require_sound_bat();
            const uint64_t need = needed_entries(s.bytes, d_.block_size);
            if (d_.table_offset + need * 4 > bat_end_) {
                const uint64_t bat_end = d_.table_offset + need * 4;
                bool room = need <= kMaxBatEntries && bat_end <= lowest_block_;
                for (const Locator &l : d_.locators)
                    if (l.offset && l.offset < bat_end && l.offset + std::max(l.space, l.length) > d_.table_offset)
                        room = false;
                if (!room)
                    fail(VDKIT_E_NOT_SUPPORTED, "the BAT has no room for " + std::to_string(need) +
                                                    " entries (data starts at byte " +
                                                    std::to_string(std::min(lowest_block_, meta_end_)) +
                                                    "); convert to a new image of the size wanted");
                const uint64_t old = bat_.size();
                bat_.resize(need, kBatFree);
                write_bat_range(ctx, old, need);
                const uint64_t pad = align_up(bat_end, kSector) - bat_end;
                if (pad) {
                    std::vector<unsigned char> ff(static_cast<size_t>(pad), 0xFF);
                    main_.pwrite(ctx.get(), bat_end, ff.data(), ff.size());
                }
                d_.max_entries = std::max<uint32_t>(d_.max_entries, static_cast<uint32_t>(need));
                bat_end_ = align_up(bat_end, kSector);
                declared_bat_end_ = std::max(declared_bat_end_, bat_end_);
                meta_end_ = std::max(meta_end_, bat_end_);
                core_end_ = std::max(core_end_, bat_end_);
                data_end_ = std::max(data_end_, meta_end_);
                footer_at_ = std::max(footer_at_, data_end_);
            } else if (need < bat_.size()) {
                for (uint64_t b = need; b < bat_.size(); ++b)
                    free_block(b);
                flush(ctx);
                bat_.resize(std::max<uint64_t>(need, 1));
            } else {
                // Inside the BAT's sectors: the new entries are written free
                // (a larger max table entries may have left anything there).
                const uint64_t old = bat_.size();
                bat_.resize(need, kBatFree);
                write_bat_range(ctx, old, need);
                d_.max_entries = std::max<uint32_t>(d_.max_entries, static_cast<uint32_t>(need));
            }
            state_.resize(bat_.size(), kSound);
            main_.flush(ctx.get());
            write_dyn_header(ctx);
        }
        f_.current_size = s.bytes;
        f_.geometry = s.chs;
        if (s.exact && (f_.size_from_chs() || f_.creator() == std::string_view(kVdkitCreator, 4)))
            std::memcpy(f_.creator_app.data(), kExactCreator, 4);
        size_ = f_.disk_size();
        write_footers(ctx);
        main_.flush(ctx.get());
    }

    // Findings, each with the file offset it concerns. Repair (fixable
    // ones): the footer at the end rewritten from the copy at 0 or the copy
    // at 0 from the end; BAT entries that cannot be read (past the end of
    // the file, over the metadata) set free — they read as an error now, so
    // nothing readable is lost; bytes after the last block (a footer left
    // in the middle) cut off. Two entries sharing a block and space no
    // entry uses are reported, not changed.
    void check(Context &ctx, uint32_t flags, vdkit_check_result &r) {
        const sdk::CheckReporter reporter(ctx, flags, r);
        const bool repair = reporter.repairing();
        if (repair && !writable_) fail(VDKIT_E_READ_ONLY, "repair needs the image open for writing");
        auto report = [&](uint32_t sev, uint64_t at, const std::string &msg, bool fixable) {
            reporter(sev, at, msg, fixable);
        };
        bool rewrite_end = false, rewrite_copy = false;
        if (!end_note_.empty()) {
            report(VDKIT_FINDING_ERROR, file_size_ >= kFooterSize ? file_size_ - kFooterSize : 0,
                   end_note_ + "; the copy at offset 0 is used; repair writes the footer at the end again", true);
            rewrite_end = true;
        }
        if (!copy_note_.empty()) {
            report(VDKIT_FINDING_ERROR, 0, copy_note_ + "; repair writes the copy again from the footer at the end",
                   true);
            rewrite_copy = true;
        }
        // Checksums are always judged (ignore-checksums only lets the image open).
        for (const std::string &n : sum_notes_) {
            report(VDKIT_FINDING_ERROR, 0, n + "; repair writes it again with the computed checksum", true);
            rewrite_end = rewrite_copy = true;
        }
        if (!fixed()) {
            // One finding per entry, at most kMaxFindings of each kind, then a count.
            constexpr uint64_t kMaxFindings = 100;
            uint64_t bad = 0, shared = 0;
            for (uint64_t b = 0; b < bat_.size(); ++b) {
                if (state_[b] == kShared) {
                    if (++shared <= kMaxFindings)
                        report(
                            VDKIT_FINDING_ERROR, d_.table_offset + b * 4,
                            "block " + std::to_string(b) + " (BAT entry at byte " +
                                std::to_string(d_.table_offset + b * 4) + ") shares its data block (byte " +
                                std::to_string(uint64_t(bat_[b]) * kSector) +
                                ") with a block before it: a write to either changes both (not repaired: copy the disk "
                                "with vdkit convert)",
                            false);
                } else if (state_[b] == kCut) {
                    report(VDKIT_FINDING_ERROR, limit_,
                           "block " + std::to_string(b) + " (BAT entry at byte " +
                               std::to_string(d_.table_offset + b * 4) + ") " + why_unsound(b) +
                               "; repair pads the file with the zeros those bytes read as",
                           true);
                } else if (state_[b] != kSound) {
                    if (++bad <= kMaxFindings || repair)
                        report(VDKIT_FINDING_ERROR, d_.table_offset + b * 4,
                               "block " + std::to_string(b) + " (BAT entry at byte " +
                                   std::to_string(d_.table_offset + b * 4) + ") " + why_unsound(b) +
                                   "; it cannot be read (" + lost_range(b, 0) +
                                   "); repair frees the entry (it then reads as " + (diff() ? "the parent" : "zeros") +
                                   ")",
                               true);
                }
            }
            if (bad > kMaxFindings && !repair)
                report(VDKIT_FINDING_ERROR, d_.table_offset,
                       std::to_string(bad - kMaxFindings) + " more BAT entries cannot be read", true);
            if (shared > kMaxFindings)
                report(VDKIT_FINDING_ERROR, d_.table_offset,
                       std::to_string(shared - kMaxFindings) + " more BAT entries share a data block", false);
            // A max table entries larger than the disk needs: only the
            // needed entries are used; the declared extent over block data
            // is a header fault, reported (blocks there read as they are).
            if (declared_bat_end_ > bat_end_ && lowest_block_ < declared_bat_end_)
                report(VDKIT_FINDING_ERROR, f_.data_offset + 28,
                       "the dynamic header's max table entries " + std::to_string(d_.max_entries) + " (byte " +
                           std::to_string(f_.data_offset + 28) + ") declares a BAT up to byte " +
                           std::to_string(declared_bat_end_) + ", over block data from byte " +
                           std::to_string(lowest_block_) + "; only the " + std::to_string(bat_.size()) +
                           " entries the disk needs are used (not repaired: qemu reads it the same way)",
                       false);
            // Space inside the data area no entry uses.
            std::vector<std::pair<uint64_t, uint64_t>> used;
            for (uint64_t b = 0; b < bat_.size(); ++b)
                if (bat_[b] != kBatFree && (sound(b) || state_[b] == kCut))
                    used.emplace_back(uint64_t(bat_[b]) * kSector, uint64_t(bat_[b]) * kSector + d_.block_stride());
            std::sort(used.begin(), used.end());
            uint64_t at = meta_end_, unused = 0;
            for (auto [a, e] : used) {
                if (a > at) unused += a - at;
                at = std::max(at, e);
            }
            if (unused)
                report(VDKIT_FINDING_LEAK, meta_end_,
                       std::to_string(unused) + " bytes of the data area are used by no BAT entry (freed blocks, or "
                                                "blocks a crash left before their entry was written)",
                       false);
        }
        if (footer_at_ > data_end()) {
            report(VDKIT_FINDING_LEAK, data_end(),
                   std::to_string(footer_at_ - data_end()) + " bytes lie between the last block and the footer; repair "
                                                             "moves the footer up and shortens the file",
                   !fixed());
        }
        if (!repair) return;
        if (!fixed()) {
            // A repair never frees a block whose data may be readable: one
            // that overlaps only a locator area (an implausible locator
            // offset or size) is refused, not freed.
            for (uint64_t b = 0; b < bat_.size(); ++b)
                if (state_[b] == kInMeta && uint64_t(bat_[b]) * kSector >= core_end_)
                    fail(VDKIT_E_CORRUPT, "block " + std::to_string(b) + " (BAT entry at byte " +
                                              std::to_string(d_.table_offset + b * 4) +
                                              ") lies in a parent locator area (" + "the locators end at byte " +
                                              std::to_string(meta_end_) +
                                              "), past the header and BAT; its data may be intact, so repair refuses "
                                              "to free it (check the locator fields of the dynamic header)");
            bool padded = false;
            for (uint64_t b = 0; b < bat_.size(); ++b) {
                if (state_[b] == kCut) {
                    state_[b] = kSound; // the footer moves past it below; the file is padded
                    padded = true;
                }
                if (state_[b] != kInMeta && state_[b] != kPastEnd) continue;
                bat_[b] = kBatFree;
                state_[b] = kSound;
                dirty_bat_.insert(b / kEntriesPerSector);
            }
            unsound_ = static_cast<uint64_t>(std::count(state_.begin(), state_.end(), uint8_t(kShared)));
            if (padded) {
                // Past the data area everything read as zeros: the bytes
                // there (an old footer) become zeros, the footer goes after
                // the last block.
                const uint64_t old_size = file_size_;
                footer_at_ = data_end();
                write_footers(ctx);
                if (limit_ < std::min(old_size, data_end()))
                    main_.zero(ctx.get(), limit_, std::min(old_size, data_end()) - limit_);
                rewrite_end = true;
            }
            flush(ctx);
            if (footer_at_ > data_end() || rewrite_end) {
                footer_at_ = data_end();
                rewrite_end = true;
            }
        }
        if (header_sum_bad_) {
            write_dyn_header(ctx); // serialise_dynamic computes the checksum
            header_sum_bad_ = false;
        }
        if (rewrite_end || rewrite_copy) {
            write_footers(ctx);
            sum_notes_.clear();
            if (file_size_ != footer_at_ + kFooterSize) {
                main_.truncate(ctx.get(), footer_at_ + kFooterSize);
                file_size_ = footer_at_ + kFooterSize;
            }
            end_note_.clear();
            copy_note_.clear();
            limit_ = footer_at_;
        }
        main_.flush(ctx.get());
    }

private:
    [[noreturn]] void fail(uint32_t code, const std::string &why) const { throw Error(code, name_ + ": " + why); }
    bool fixed() const { return f_.type == kTypeFixed; }
    bool diff() const { return f_.type == kTypeDiff; }
    // vdkit's own children record the parent's footer time stamp.
    bool stamps_parent() const {
        return f_.creator() == std::string_view(kVdkitCreator, 4) || f_.creator() == std::string_view(kExactCreator, 4);
    }
    uint64_t data_offset(uint32_t entry) const { return uint64_t(entry) * kSector + d_.bitmap_bytes(); }
    static bool bit(const std::vector<uint8_t> &bits, uint64_t s) {
        return bits[s / 8] & (0x80 >> (s % 8));
    } // MSB first (§3.3)
    static void set_bit(std::vector<uint8_t> &bits, uint64_t s) {
        bits[s / 8] |= static_cast<uint8_t>(0x80 >> (s % 8));
    }
    bool sound(uint64_t b) const { return state_.empty() || state_[b] == kSound; }
    std::string why_unsound(uint64_t b) const {
        const uint64_t start = uint64_t(bat_[b]) * kSector;
        if (state_[b] == kInMeta)
            return "points at byte " + std::to_string(start) +
                   ", inside the headers, BAT and locators (which end at byte " + std::to_string(meta_end_) + ")";
        if (state_[b] == kPastEnd)
            return "points at byte " + std::to_string(start) + ": its bitmap and data (" +
                   std::to_string(d_.block_stride()) + " bytes) run past the data area, which ends at byte " +
                   std::to_string(footer_at_) + " (a cut-off file, or a damaged entry)";
        if (state_[b] == kCut) {
            const uint64_t kept = limit_ - (start + d_.bitmap_bytes());
            return "points at byte " + std::to_string(start) +
                   ", a block cut off by the end of the data area at byte " + std::to_string(limit_) + ": its first " +
                   std::to_string(kept) + " bytes are intact, the rest reads as zeros (" + lost_range(b, kept) +
                   ": the file was truncated)";
        }
        return "shares its data block with another block";
    }
    // "lost disk bytes [A, B)" for block b from byte `from` of the block on (docs/check.md rule 4).
    std::string lost_range(uint64_t b, uint64_t from) const {
        const uint64_t base = b * d_.block_size;
        const uint64_t a = std::min(base + from, size_), e = std::min(base + d_.block_size, size_);
        return "lost disk bytes [" + std::to_string(a) + ", " + std::to_string(e) + ")";
    }

    void check_request(uint64_t off, uint64_t len) const {
        if (off >= size_ || len > size_ - off) fail(VDKIT_E_OUT_OF_RANGE, "request beyond the end of the disk");
    }
    void require_writable() const {
        if (!writable_) fail(VDKIT_E_READ_ONLY, "the image is open read-only");
    }
    void require_dynamic(const std::string &what) const {
        if (fixed()) fail(VDKIT_E_NOT_SUPPORTED, "a fixed VHD has no dynamic header to record " + what);
    }
    void require_sound(uint64_t b) const {
        if (!state_.empty() && (state_[b] == kInMeta || state_[b] == kPastEnd))
            fail(VDKIT_E_CORRUPT, "block " + std::to_string(b) + " (BAT entry at byte " +
                                      std::to_string(d_.table_offset + b * 4) + ") " + why_unsound(b) +
                                      "; run 'vdkit check -r'");
    }
    void require_sound_bat() const {
        if (unsound_)
            fail(VDKIT_E_CORRUPT, "the BAT has entries past the end of the file, over the metadata or shared by two "
                                  "blocks; writing could destroy data, run 'vdkit check' (and -r) first");
    }
    // Where the data ends: the next block goes here (the footer follows).
    uint64_t data_end() const { return data_end_; }

    // ---- opening ----------------------------------------------------------------
    void load(Context &ctx) {
        file_size_ = main_.size(ctx.get());
        if (file_size_ < kOldFooterSize)
            fail(VDKIT_E_CORRUPT, "the file (" + std::to_string(file_size_) + " bytes) is too short for a VHD footer");
        // §3.1: the footer at the end (512 bytes, or 511 before Virtual PC 2004).
        unsigned char tail[kFooterSize]{};
        const uint64_t tn = std::min<uint64_t>(file_size_, kFooterSize);
        main_.pread(ctx.get(), file_size_ - tn, tail, tn);
        Footer end;
        std::optional<std::string> end_err;
        uint64_t end_len = kFooterSize;
        if (tn == kFooterSize && has_cookie(tail, kFooterSize)) {
            end_err = parse_footer(tail, kFooterSize, "the footer at byte " + std::to_string(file_size_ - kFooterSize),
                                   verify_, end);
        } else if (has_cookie(tail + (tn - kOldFooterSize), kOldFooterSize)) {
            end_len = kOldFooterSize;
            end_err = parse_footer(tail + (tn - kOldFooterSize), kOldFooterSize,
                                   "the 511-byte footer at byte " + std::to_string(file_size_ - kOldFooterSize),
                                   verify_, end);
        } else {
            end_err = "no footer (\"conectix\") in the last 512 bytes of the file";
        }
        // The copy at 0 (dynamic and differencing images).
        unsigned char head[kFooterSize]{};
        Footer copy;
        std::optional<std::string> copy_err = std::string("none");
        if (file_size_ >= kFooterSize) {
            main_.pread(ctx.get(), 0, head, kFooterSize);
            if (has_cookie(head, kFooterSize))
                copy_err = parse_footer(head, kFooterSize, "the footer copy at byte 0", verify_, copy);
        }
        // ignore-checksums opens the image, but a wrong checksum is still
        // remembered: check reports it and check -r writes it again.
        auto sum_note = [&](const unsigned char *b, uint64_t len, const std::string &where) {
            Footer tmp;
            auto e = verify_ ? std::nullopt : parse_footer(b, len, where, true, tmp);
            return e && e->find("checksum") != std::string::npos ? *e : std::string();
        };
        if (!end_err) {
            if (auto n = sum_note(tail + (tn - end_len), end_len,
                                  "the footer at byte " + std::to_string(file_size_ - end_len));
                !n.empty())
                sum_notes_.push_back(n);
        }
        if (!copy_err && (end_err || end.type != kTypeFixed)) {
            if (auto n = sum_note(head, kFooterSize, "the footer copy at byte 0"); !n.empty()) sum_notes_.push_back(n);
        }
        if (!end_err) {
            f_ = end;
            footer_at_ = file_size_ - end_len;
            if (!fixed()) {
                if (copy_err)
                    copy_note_ = *copy_err == "none" ? "the footer copy at byte 0 is missing" : *copy_err;
                else if (end_len != kFooterSize || std::memcmp(head, tail, kFooterSize) != 0)
                    copy_note_ = "the footer copy at byte 0 differs from the footer at the end";
            }
        } else if (!copy_err && copy.type != kTypeFixed) {
            f_ = copy;
            end_note_ = *end_err;
            footer_at_ = file_size_ >= kFooterSize ? file_size_ - kFooterSize : 0;
        } else {
            {
                std::string msg = *end_err + (copy_err && *copy_err != "none" ? "; " + *copy_err : std::string());
                if (msg.find("checksum") != std::string::npos)
                    msg += " (to read it anyway, set defaults.format.vhd.ignore-checksums: true in a --config file)";
                fail(VDKIT_E_CORRUPT, msg);
            }
        }
        size_ = f_.disk_size();
        if (fixed()) {
            if (size_ > footer_at_)
                fail(VDKIT_E_CORRUPT, "the fixed disk of " + std::to_string(size_) + " bytes needs a file of " +
                                          std::to_string(size_ + kFooterSize) + " bytes; this one has " +
                                          std::to_string(file_size_) + " (cut off?)");
            data_end_ = footer_at_;
            return;
        }
        load_dynamic(ctx);
    }

    void load_dynamic(Context &ctx) {
        const uint64_t at = f_.data_offset;
        if (at < kFooterSize || at > file_size_ || file_size_ - at < kDynHeaderSize)
            fail(VDKIT_E_CORRUPT,
                 "the footer's data offset " + sdk::hex(at) + " (byte 16) puts the dynamic header outside the file");
        unsigned char buf[kDynHeaderSize];
        main_.pread(ctx.get(), at, buf, sizeof buf);
        if (auto err = parse_dynamic(buf, at, size_, file_size_, verify_, d_)) fail(VDKIT_E_CORRUPT, *err);
        if (!verify_) {
            DynHeader tmp;
            auto e = parse_dynamic(buf, at, size_, file_size_, true, tmp);
            if (e && e->find("checksum") != std::string::npos) {
                sum_notes_.push_back(*e);
                header_sum_bad_ = true;
            }
        }
        const uint64_t need = needed_entries(size_, d_.block_size);
        std::vector<unsigned char> raw(static_cast<size_t>(need * 4)); // bounded by the file (parse_dynamic)
        main_.pread(ctx.get(), d_.table_offset, raw.data(), raw.size());
        bat_.resize(need);
        for (uint64_t i = 0; i < need; ++i)
            bat_[i] = static_cast<uint32_t>(load_be(raw.data() + 4 * i, 4));
        // The metadata: the header, the BAT entries the disk needs (only
        // those matter, as qemu reads them; a larger max table entries is
        // reported by check, its extent bounded by parse_dynamic) and the
        // locator areas inside the file.
        bat_end_ = align_up(d_.table_offset + need * 4, kSector);
        declared_bat_end_ = align_up(d_.table_offset + uint64_t(d_.max_entries) * 4, kSector);
        meta_end_ = std::max(at + kDynHeaderSize, bat_end_);
        core_end_ = meta_end_; // header and BAT: a block starting below this holds no data of its own
        for (const Locator &l : d_.locators) {
            const uint64_t span = std::max<uint64_t>(l.length, l.space);
            if (l.offset && l.offset < file_size_ && span <= kMaxLocatorBytes && span <= file_size_ - l.offset)
                meta_end_ = std::max(meta_end_, align_up(l.offset + span, kSector));
        }
        // §3.3 / §8.3 lesson 7: each block inside the file, clear of the
        // metadata, used once.
        const uint64_t stride = d_.block_stride();
        uint64_t end = meta_end_;
        state_.assign(need, kSound);
        limit_ = end_note_.empty() ? footer_at_ : file_size_; // a damaged end footer may be data of a cut file
        std::vector<std::pair<uint32_t, uint32_t>> used;      // entry, block: at most 16 Mi pairs (kMaxBatEntries)
        for (uint64_t b = 0; b < need; ++b) {
            const uint32_t e = bat_[b];
            if (e == kBatFree) continue;
            const uint64_t start = uint64_t(e) * kSector;
            // formats.md §8.3 lesson 7 and docs/check.md rule 2: a block
            // whose data starts inside the data area is data up to its end
            // (zeros past it); one whose data starts past it cannot be read.
            if (start < meta_end_) {
                state_[b] = kInMeta;
                continue;
            }
            if (start + d_.bitmap_bytes() >= limit_) {
                state_[b] = kPastEnd;
                continue;
            }
            if (start + stride > limit_) state_[b] = kCut;
            used.emplace_back(e, static_cast<uint32_t>(b));
        }
        std::sort(used.begin(), used.end());
        for (size_t i = 1; i < used.size(); ++i)
            if (used[i].first == used[i - 1].first) state_[used[i].second] = kShared;
        lowest_block_ = used.empty() ? UINT64_MAX : uint64_t(used.front().first) * kSector;
        for (const auto &[e, b] : used)
            if (state_[b] != kShared) end = std::max(end, uint64_t(e) * kSector + stride);
        unsound_ =
            static_cast<uint64_t>(std::count_if(state_.begin(), state_.end(), [](uint8_t v) { return v != kSound; }));
        data_end_ = align_up(end, kSector);
    }

    std::optional<std::string> read_locator(Context &ctx, const Locator &l) {
        const std::string where = "the parent locator (" + sdk::hex(l.code) + ") at byte " + std::to_string(l.offset);
        if (l.length == 0) return std::nullopt;
        if (l.length > kMaxLocatorBytes)
            fail(VDKIT_E_CORRUPT, where + " claims " + std::to_string(l.length) + " bytes of path; at most " +
                                      std::to_string(kMaxLocatorBytes) + " are accepted");
        if (l.offset > file_size_ || l.length > file_size_ - l.offset)
            fail(VDKIT_E_CORRUPT, where + " (" + std::to_string(l.length) + " bytes) lies outside the file (" +
                                      std::to_string(file_size_) + " bytes)");
        std::vector<unsigned char> data(l.length);
        main_.pread(ctx.get(), l.offset, data.data(), data.size());
        return locator_text(l.code, data.data(), data.size());
    }

    // ---- bitmaps ----------------------------------------------------------------
    const std::vector<uint8_t> &bitmap(Context &ctx, uint64_t b) {
        if (auto it = dirty_bitmaps_.find(b); it != dirty_bitmaps_.end()) return it->second;
        if (cached_block_ != b) {
            cached_bits_.assign(static_cast<size_t>(d_.bitmap_bytes()), 0);
            main_.pread(ctx.get(), uint64_t(bat_[b]) * kSector, cached_bits_.data(), cached_bits_.size());
            cached_block_ = b;
        }
        return cached_bits_;
    }
    std::vector<uint8_t> &dirty_bitmap(Context &ctx, uint64_t b) {
        auto it = dirty_bitmaps_.find(b);
        if (it != dirty_bitmaps_.end()) return it->second;
        std::vector<uint8_t> bits = bitmap(ctx, b);
        cached_block_ = UINT64_MAX;
        return dirty_bitmaps_.emplace(b, std::move(bits)).first->second;
    }

    // ---- allocation -------------------------------------------------------------
    // §3.3 "Allocation": the block goes where the data ends. The footer is
    // written past it first, so the file always ends in a footer; the
    // block's area is zeros (a hole past the old end, zeroed where it lies
    // inside the file); a dynamic block gets every bit set (as qemu and
    // Hyper-V do), a differencing one none. The BAT entry follows at the
    // next flush.
    void allocate(Context &ctx, uint64_t b) {
        const uint64_t pos = data_end_, stride = d_.block_stride();
        const uint64_t end = pos + stride;
        if (pos / kSector >= kBatFree)
            fail(VDKIT_E_NOT_SUPPORTED, "the file is too large for another block (BAT entries are 32-bit sectors)");
        const uint64_t old_size = file_size_;
        footer_at_ = end;
        write_footer_at(ctx, end);
        if (old_size > end + kFooterSize) main_.truncate(ctx.get(), end + kFooterSize);
        file_size_ = end + kFooterSize;
        if (pos < old_size) main_.zero(ctx.get(), pos, std::min(old_size, end) - pos);
        std::vector<uint8_t> bits(static_cast<size_t>(d_.bitmap_bytes()), diff() ? 0x00 : 0xFF);
        if (!diff()) main_.pwrite(ctx.get(), pos, bits.data(), bits.size());
        bat_[b] = static_cast<uint32_t>(pos / kSector);
        dirty_bat_.insert(b / kEntriesPerSector);
        if (diff()) dirty_bitmaps_[b] = std::move(bits);
        if (cached_block_ == b) cached_block_ = UINT64_MAX;
        data_end_ = end;
    }

    void free_block(uint64_t b) {
        if (bat_[b] == kBatFree) return;
        bat_[b] = kBatFree;
        dirty_bat_.insert(b / kEntriesPerSector);
        dirty_bitmaps_.erase(b);
        if (cached_block_ == b) cached_block_ = UINT64_MAX;
    }

    // Shrinking never drops data: everything past the new end must read as zeros.
    void require_zero_tail(Context &ctx, uint64_t new_size) {
        std::vector<unsigned char> buf(1u << 20);
        for (uint64_t pos = new_size; pos < size_;) {
            const uint64_t n = std::min<uint64_t>(buf.size(), size_ - pos);
            uint64_t got = 0;
            while (got < n) {
                sdk::ReadResult r = read(ctx, pos + got, buf.data() + got, n - got);
                if (r.unallocated) std::memset(buf.data() + got, 0, static_cast<size_t>(r.done));
                got += r.done;
            }
            if (!sdk::is_zero(buf.data(), static_cast<size_t>(n)))
                fail(VDKIT_E_INVALID_ARGUMENT, "data lies past the new end (near byte " + std::to_string(pos) +
                                                   "); discard it first, shrinking never drops data");
            pos += n;
        }
    }

    // A standalone dynamic image from a differencing one (rebase -b "" and
    // commit into it): sectors whose bit is clear read as the parent, which
    // the host has copied in where it held data; the rest is zeros. Their
    // data is zeroed, every bit set, then the header forgets the parent.
    void make_standalone(Context &ctx) {
        require_sound_bat();
        if (diff()) {
            flush(ctx);
            std::vector<uint8_t> bits(static_cast<size_t>(d_.bitmap_bytes()));
            for (uint64_t b = 0; b < bat_.size(); ++b) {
                if (bat_[b] == kBatFree || !sound(b)) continue;
                main_.pread(ctx.get(), uint64_t(bat_[b]) * kSector, bits.data(), bits.size());
                const uint64_t sectors = d_.block_size / kSector;
                for (uint64_t s = 0; s < sectors;) {
                    if (bit(bits, s)) {
                        ++s;
                        continue;
                    }
                    uint64_t e = s + 1;
                    while (e < sectors && !bit(bits, e))
                        ++e;
                    main_.zero(ctx.get(), data_offset(bat_[b]) + s * kSector, (e - s) * kSector);
                    s = e;
                }
            }
            main_.flush(ctx.get());
            std::fill(bits.begin(), bits.end(), 0xFF);
            for (uint64_t b = 0; b < bat_.size(); ++b)
                if (bat_[b] != kBatFree && sound(b))
                    main_.pwrite(ctx.get(), uint64_t(bat_[b]) * kSector, bits.data(), bits.size());
            main_.flush(ctx.get());
            cached_block_ = UINT64_MAX;
        }
        d_.parent_uuid.fill(0);
        d_.parent_timestamp = 0;
        d_.parent_name.fill(0);
        for (Locator &l : d_.locators)
            if (l.code) {
                l.code = 0; // unused; its offset and space stay, so a later parent fits
                l.length = 0;
            }
        write_dyn_header(ctx);
        f_.type = kTypeDynamic;
        write_footers(ctx);
        main_.flush(ctx.get());
    }

    // ---- writing metadata -------------------------------------------------------
    void write_bat_range(Context &ctx, uint64_t first, uint64_t last) {
        last = std::min<uint64_t>(last, bat_.size());
        if (first >= last) return;
        constexpr uint64_t kChunk = 1u << 18;
        std::vector<unsigned char> raw(static_cast<size_t>(std::min(kChunk, last - first) * 4));
        for (uint64_t i = first; i < last;) {
            const uint64_t n = std::min(kChunk, last - i);
            for (uint64_t j = 0; j < n; ++j)
                store_be(raw.data() + 4 * j, bat_[i + j], 4);
            main_.pwrite(ctx.get(), d_.table_offset + i * 4, raw.data(), n * 4);
            i += n;
        }
    }
    void write_footer_at(Context &ctx, uint64_t at) {
        unsigned char buf[kFooterSize];
        serialise_footer(f_, buf);
        main_.pwrite(ctx.get(), at, buf, kFooterSize);
    }
    // The footer at the end and, for dynamic and differencing images, its copy at 0.
    void write_footers(Context &ctx) {
        require_writable();
        write_footer_at(ctx, footer_at_);
        file_size_ = std::max(file_size_, footer_at_ + kFooterSize);
        if (!fixed()) write_footer_at(ctx, 0);
    }
    void write_dyn_header(Context &ctx) {
        require_writable();
        unsigned char buf[kDynHeaderSize];
        serialise_dynamic(d_, buf);
        main_.pwrite(ctx.get(), f_.data_offset, buf, sizeof buf);
    }

    // ---- creating ---------------------------------------------------------------
    struct Sized {
        uint64_t bytes;
        Geometry chs;
        bool exact; // current_size is not the geometry's size
    };
    // §3.4 writer advice: round up until the geometry holds the size (qemu's
    // default), or keep the exact size (force_size, Hyper-V, Azure).
    static Sized sized(uint64_t size, bool exact) {
        const uint64_t sectors = (size + kSector - 1) / kSector;
        if (exact) {
            const Geometry g = chs_for(sectors);
            return {sectors * kSector, g, g.total() != sectors};
        }
        Geometry g = chs_for(sectors);
        for (uint64_t i = 1; g.total() < sectors && g.total() != kMaxChsSectors; ++i)
            g = chs_for(sectors + i);
        if (g.total() == kMaxChsSectors) return {sectors * kSector, g, false}; // readers take current_size there
        return {g.total() * kSector, g, false};
    }

    struct NewLayout {
        bool fixed;
        uint64_t size;
        Sized s;
        uint32_t block;
        uint64_t table_offset, data_start;
        uint64_t stride() const { return DynHeader{0, kVersion, 0, block}.block_stride(); }
    };
    static NewLayout new_layout(Context &ctx, uint64_t size, bool diff, const std::string &who) {
        auto bad = [&](const std::string &why) { throw Error(VDKIT_E_INVALID_ARGUMENT, who + why); };
        const bool azure = ctx.config_bool("azure").value_or(false);
        const std::string sub = ctx.config("subformat").value_or("dynamic");
        // vdkit's rule: a new disk has the size asked for (qemu-img's
        // force_size); force-size=off rounds up to the geometry as qemu-img's
        // default does. A child always has its parent's size.
        const bool force = ctx.config_bool("force-size").value_or(true) || azure || diff;
        const bool fixed = !diff && (sub == "fixed" || azure);
        if (azure && !fixed) bad("azure=on makes a fixed VHD; it cannot be differencing");
        if (azure && size % (1u << 20))
            bad("Azure takes whole MiB: " + std::to_string(size) + " bytes is not (resize the source to " +
                std::to_string(align_up(size, 1u << 20)) + " bytes first)");
        if (size == 0 || size > kMaxSize)
            bad("size " + std::to_string(size) + " is out of the VHD range (1 byte to 2040 GiB)");
        const uint64_t block = ctx.config_uint("block-size").value_or(2u << 20);
        if ((block & (block - 1)) || block < kMinBlockSize || block > kMaxBlockSize)
            bad("block-size must be a power of two from 512 bytes to 256 MiB");
        const Sized s = sized(size, force);
        if (s.bytes > kMaxSize) bad("size " + std::to_string(s.bytes) + " is out of the VHD range");
        const uint64_t entries = needed_entries(s.bytes, static_cast<uint32_t>(block));
        if (!fixed && entries > kMaxBatEntries) bad("too many blocks; use a larger block-size");
        const uint64_t table_offset = kFooterSize + kDynHeaderSize; // 1536, as qemu and VirtualBox (§3.2)
        uint64_t data_start = align_up(table_offset + entries * 4, kSector);
        if (diff) data_start += kLocatorSpace;
        return {fixed, s.bytes, s, static_cast<uint32_t>(block), table_offset, data_start};
    }

    void build(Context &ctx, const vdkit_create_params &p) {
        const bool is_diff = p.flags & VDKIT_CREATE_DIFF;
        NewLayout l = new_layout(ctx, p.size, is_diff, name_ + ": ");
        if (!is_diff && (p.flags & VDKIT_CREATE_FIXED)) l.fixed = true;
        if (is_diff && l.size != p.size)
            fail(VDKIT_E_INVALID_ARGUMENT, "the parent's size " + std::to_string(p.size) +
                                               " is no whole number of sectors; a VHD child cannot match it");
        created_ = true;
        f_ = Footer{};
        f_.timestamp = vhd_time(static_cast<int64_t>(std::time(nullptr)));
        std::memcpy(f_.creator_app.data(), l.s.exact ? kExactCreator : kVdkitCreator, 4);
        f_.creator_version = kCreatorVersion;
        f_.creator_os = kHostWi2k;
        f_.original_size = f_.current_size = l.size;
        f_.geometry = l.s.chs;
        f_.type = is_diff ? kTypeDiff : l.fixed ? kTypeFixed : kTypeDynamic;
        std::memcpy(f_.uuid.data(), p.uuid, 16);
        if (sdk::is_zero(f_.uuid.data(), 16)) sdk::host().generate_uuid(f_.uuid.data());
        size_ = f_.disk_size();
        if (l.fixed) {
            f_.data_offset = kNoDataOffset;
            footer_at_ = data_end_ = l.size;
            main_.truncate(ctx.get(), l.size + kFooterSize); // the data area reads as zeros
            file_size_ = l.size + kFooterSize;
            write_footers(ctx);
            return;
        }
        f_.data_offset = kFooterSize;
        d_ = DynHeader{};
        d_.table_offset = l.table_offset;
        d_.block_size = l.block;
        d_.max_entries = static_cast<uint32_t>(needed_entries(l.size, l.block));
        bat_.assign(d_.max_entries, kBatFree);
        state_.assign(d_.max_entries, kSound);
        if (is_diff) {
            std::memcpy(d_.parent_uuid.data(), p.parent_uuid, 16);
            if (sdk::view(p.parent_format) == "vhd")
                d_.parent_timestamp = decode_stamp(p.parent_modification_uuid).value_or(0);
            const std::string hint(sdk::view(p.parent_hint));
            auto data = utf16le(hint);
            if (!data || data->size() > kLocatorSpace)
                fail(VDKIT_E_INVALID_ARGUMENT, "the parent location '" + hint + "' does not fit a " +
                                                   std::to_string(kLocatorSpace) + "-byte W2ru locator");
            const uint64_t loc_at = l.data_start - kLocatorSpace;
            d_.locators[0] = {kPlatW2ru, static_cast<uint32_t>(kLocatorSpace), static_cast<uint32_t>(data->size()),
                              loc_at};
            const size_t slash = hint.rfind('/');
            set_parent_name(d_, slash == std::string::npos ? hint : hint.substr(slash + 1));
            main_.pwrite(ctx.get(), loc_at, data->data(), data->size());
        }
        meta_end_ = data_end_ = footer_at_ = l.data_start;
        bat_end_ = declared_bat_end_ = core_end_ = align_up(d_.table_offset + uint64_t(d_.max_entries) * 4, kSector);
        file_size_ = 0;
        unsigned char dyn[kDynHeaderSize];
        serialise_dynamic(d_, dyn);
        main_.pwrite(ctx.get(), kFooterSize, dyn, sizeof dyn);
        std::vector<unsigned char> table(static_cast<size_t>(align_up(uint64_t(d_.max_entries) * 4, kSector)), 0xFF);
        main_.pwrite(ctx.get(), d_.table_offset, table.data(), table.size());
        write_footers(ctx);
        // No flush: the new image is durable at its first flush or close.
    }

    StoreRef main_;
    std::string name_;
    bool writable_ = false;
    bool verify_ = true;
    bool created_ = false;
    Footer f_;
    DynHeader d_;
    uint64_t size_ = 0; // the disk size readers see (Footer::disk_size)
    uint64_t file_size_ = 0;
    uint64_t footer_at_ = 0;        // where the footer at the end is (or goes)
    uint64_t data_end_ = 0;         // end of the last block (or of the metadata): the next block goes here
    uint64_t meta_end_ = 0;         // end of the metadata (header, BAT, locator areas): blocks start at or after it
    uint64_t bat_end_ = 0;          // end of the BAT's sectors (the entries the disk needs)
    uint64_t declared_bat_end_ = 0; // end of the BAT as the header's max table entries declares it
    uint64_t core_end_ = 0;         // end of the header and the BAT (meta_end_ without the locator areas)
    uint64_t lowest_block_ = UINT64_MAX; // start of the first block in use
    std::vector<uint32_t> bat_;          // the entries the disk needs
    // Per block: kSound, or why its BAT entry cannot be used (load_dynamic).
    enum : uint8_t { kSound, kInMeta, kPastEnd, kShared, kCut };
    uint64_t limit_ = 0; // where the data area ends (the footer at the end, or the end of the file)
    std::vector<uint8_t> state_;
    uint64_t unsound_ = 0;               // blocks that are not kSound
    std::string end_note_;               // the footer at the end is damaged (the copy at 0 is used)
    std::string copy_note_;              // the copy at 0 is missing, damaged or different
    std::vector<std::string> sum_notes_; // checksums found wrong under ignore-checksums (check reports them)
    bool header_sum_bad_ = false;        // the dynamic header's checksum is one of them
    std::set<uint64_t> dirty_bat_;       // BAT sectors to write at the next flush
    std::map<uint64_t, std::vector<uint8_t>> dirty_bitmaps_;
    std::vector<uint8_t> cached_bits_;
    uint64_t cached_block_ = UINT64_MAX;
};

constexpr vdkit_config_key kKeys[] = {
    sdk::key("subformat", VDKIT_KEY_ENUM, "dynamic", "dynamic (grows as written) or fixed (raw data and a footer).",
             VDKIT_KEY_CREATE_ONLY, "dynamic|fixed"),
    sdk::key("block-size", VDKIT_KEY_SIZE, "2M",
             "Block size of a dynamic image, a power of two (Hyper-V and qemu use 2M).", VDKIT_KEY_CREATE_ONLY, {}, 512,
             256 << 20),
    sdk::key(
        "force-size", VDKIT_KEY_BOOL, "on",
        "Keep the exact size (qemu-img's force_size; creator 'qem2' unless the CHS geometry holds it exactly); off: "
        "round up to the CHS geometry as qemu-img and Virtual PC do (creator 'vdkt').",
        VDKIT_KEY_CREATE_ONLY),
    sdk::key("azure", VDKIT_KEY_BOOL, "off",
             "What Azure accepts for upload: a fixed VHD of a whole number of MiB with the exact size in the footer.",
             VDKIT_KEY_CREATE_ONLY),
    sdk::key("ignore-checksums", VDKIT_KEY_BOOL, "off",
             "Open images whose footer or header checksum is wrong (forensics); check still reports them.",
             VDKIT_KEY_EXPERT),
};
constexpr vdkit_str kExtensions[] = {sdk::str("vhd"), sdk::str("vpc")};

const vdkit_plugin_descriptor *vhd_format() {
    static const vdkit_plugin_descriptor d = sdk::describe(
        VDKIT_KIND_FORMAT,
        sdk::DescriptorSpec{
            "vhd", "1.0.0", "Virtual PC / Hyper-V / Azure VHD images (fixed, dynamic, differencing)",
            VDKIT_CAP_CREATE_FIXED | VDKIT_CAP_CREATE_DYNAMIC | VDKIT_CAP_DIFF | VDKIT_CAP_DISCARD |
                VDKIT_CAP_FILE_BASED | VDKIT_CAP_UUID | VDKIT_CAP_RESIZE | VDKIT_CAP_CHECK | VDKIT_CAP_METADATA,
            kKeys, static_cast<uint32_t>(std::size(kKeys)), kExtensions, static_cast<uint32_t>(std::size(kExtensions))},
        sdk::format_ops<VhdImage>());
    return &d;
}

} // namespace

VDKIT_SDK_ENTRY(vhd_format())
