// The `vmdk` format plugin: VMware virtual disks (VMware "Virtual Disk Format
// 5.0" technote, VDF50 below; section names are cited where implemented).
//
// Reads descriptor-based disks (text descriptor or embedded in a sparse
// extent) with FLAT, VMFS, ZERO and hosted SPARSE extents, including
// compressed stream-optimized grains in all three layouts, ESX redo logs
// (VMFSSPARSE) and seSparse extents (read-only), and device-backed disks
// (fullDevice, partitionedDevice, VMFSRDM/VMFSRAW) when the user allows
// unsafe paths; creates every
// hosted subformat (streamOptimized through stream_writer.hpp) and
// differencing disks; writes sparse and flat extents. Differencing disks
// expose parentFileNameHint so the core walks the chain. Extent files are
// opened through the host, so they are confined to the descriptor's
// directory unless the user allows otherwise.
#include "descriptor.hpp"
#include "esx_extents.hpp"
#include "sparse_extent.hpp"
#include "stream_writer.hpp"

#include "vdkit/endian.hpp"
#include "vdkit/plugin.hpp"
#include "vdkit/text.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <vector>

using namespace vdkit;
using namespace vdkit::vmdk;
using sdk::Context;
using sdk::Error;
using sdk::StoreRef;

namespace {

struct Extent {
    ExtentLine line;
    uint64_t start = 0;                  // byte offset in the virtual disk
    uint64_t length = 0;                 // bytes
    sdk::Store owned;                    // a file other than the main one
    StoreRef store;                      // owned or the main file
    uint64_t file_size = 0;              // FLAT/VMFS: bytes in the file (kept current on writes)
    bool device = false;                 // raw device data: never created, never removed
    std::unique_ptr<GrainExtent> mapped; // grain-mapped extents: SPARSE, VMFSSPARSE, SESPARSE
    SparseExtent *sparse = nullptr;      // mapped, when it is a hosted sparse extent (writable)
};

std::string read_text(Context &ctx, StoreRef store, uint64_t offset, uint64_t len) {
    std::string text(static_cast<size_t>(len), '\0');
    store.pread(ctx.get(), offset, text.data(), len);
    size_t nul = text.find('\0');
    if (nul != std::string::npos) text.resize(nul);
    return text;
}

class VmdkImage {
public:
    static uint32_t probe(Context &ctx, StoreRef main, std::string_view) {
        uint64_t size = main.size(ctx.get());
        if (size < 4) return VDKIT_PROBE_NO;
        unsigned char head[4];
        main.pread(ctx.get(), 0, head, 4);
        uint32_t magic = static_cast<uint32_t>(sdk::load_le(head, 4));
        if (magic == kSparseMagic || magic == kTemporaryMagic || magic == kCowdMagic) return VDKIT_PROBE_CERTAIN;
        if (size >= 512) {
            unsigned char se[8];
            main.pread(ctx.get(), 0, se, 8);
            if (sdk::load_le(se, 8) == kSeSparseMagic) return VDKIT_PROBE_CERTAIN;
        }
        std::string text = read_text(ctx, main, 0, std::min<uint64_t>(size, 4096));
        if (looks_like_descriptor(text) && text.find("createType") != std::string::npos) return VDKIT_PROBE_CERTAIN;
        return VDKIT_PROBE_NO;
    }

    static std::unique_ptr<VmdkImage> open(Context &ctx, StoreRef main, std::string_view name, uint32_t flags) {
        auto img = std::make_unique<VmdkImage>();
        img->name_ = std::string(name);
        img->writable_ = flags & VDKIT_OPEN_WRITE;
        img->main_ = main;
        img->load(ctx, main);
        return img;
    }

    // The create options that shape the files (subformat, grain-size,
    // zeroed-grain), validated once for create and measure. Every subformat
    // of the `subformat` key is created; the monolithic ones hold < 2 TiB.
    struct Shape {
        uint64_t grain = 0, capacity = 0; // bytes, sectors
        bool zeroed = false, monolithic = false;
        std::string subformat;
    };
    static Shape shape(Context &ctx, uint64_t size, const std::string &who) {
        Shape s;
        if (size % 512) throw Error(VDKIT_E_INVALID_ARGUMENT, who + "VMDK sizes are whole 512-byte sectors");
        s.grain = ctx.config_uint("grain-size").value_or(65536);
        // VDF50 requires grainSize > 8 sectors; libvmdk enforces it.
        if (s.grain < 8192 || (s.grain & (s.grain - 1)))
            throw Error(VDKIT_E_INVALID_ARGUMENT, who + "grain-size must be a power of two of at least 8k");
        s.zeroed = ctx.config_bool("zeroed-grain").value_or(false);
        s.capacity = size / 512;
        s.subformat = ctx.config("subformat").value_or("monolithicSparse");
        s.monolithic = s.subformat == "monolithicSparse" || s.subformat == "streamOptimized";
        if (s.monolithic && s.capacity >= (1ull << 32))
            throw Error(VDKIT_E_INVALID_ARGUMENT, who + "a " + s.subformat +
                                                      " disk holds less than 2 TiB; use "
                                                      "twoGbMaxExtentSparse or a flat subformat");
        return s;
    }

    // Sectors per extent file of a split subformat: `given`, else split-size.
    static uint64_t split_chunk(Context &ctx, const std::string &who, uint64_t grain_sectors, bool sparse,
                                uint64_t given = 0) {
        uint64_t chunk = given ? given : ctx.config_uint("split-size").value_or(2ull << 30) / 512;
        if (sparse) chunk = chunk / grain_sectors * grain_sectors; // whole grains per extent
        if (chunk == 0) throw Error(VDKIT_E_INVALID_ARGUMENT, who + ": split-size is smaller than a grain");
        return chunk;
    }

    // qemu-img measure for VMDK (qemu cannot): sparse extents count their
    // planned overhead plus the grains the data touches; flat extents their
    // whole size; a stream the worst case of every touched grain compressed
    // (deflate can grow incompressible data slightly) plus its tables.
    static void measure(Context &ctx, uint64_t size, const vdkit_extent *data, uint64_t count, vdkit_measure &out) {
        const Shape s = shape(ctx, size, "");
        const uint64_t g = s.grain, gs = g / 512;
        const uint64_t all_grains = (size + g - 1) / g;
        constexpr uint64_t kDescriptorBound = 4096; // a descriptor file's text, generously
        auto sparse_extent = [&](uint64_t start, uint64_t sectors, uint64_t descriptor_sectors, bool full) {
            const SparseHeader h = plan_sparse_layout(sectors, gs, s.zeroed, descriptor_sectors);
            const uint64_t lo = start * 512, hi = (start + sectors) * 512;
            const uint64_t grains = full ? (hi - lo + g - 1) / g : sdk::units_touched(data, count, g, lo, hi);
            return h.overhead * 512 + grains * g;
        };
        if (s.subformat == "monolithicSparse") {
            out.required = sparse_extent(0, s.capacity, 20, false);
            out.fully_allocated = sparse_extent(0, s.capacity, 20, true);
        } else if (s.subformat == "twoGbMaxExtentSparse") {
            const uint64_t chunk = split_chunk(ctx, "", gs, true);
            out.required = out.fully_allocated = kDescriptorBound;
            for (uint64_t start = 0; start < s.capacity; start += chunk) {
                const uint64_t n = std::min(chunk, s.capacity - start);
                out.required += sparse_extent(start, n, 0, false);
                out.fully_allocated += sparse_extent(start, n, 0, true);
            }
        } else if (s.subformat == "streamOptimized") {
            const uint64_t grain_bound = (12 + g + g / 64 + 64 + 511) / 512 * 512; // marker + deflate worst case
            const uint64_t tables = (s.capacity + 512 * gs - 1) / (512 * gs);
            const uint64_t meta = (1 + 20 + tables * 5 + 1 + (tables * 4 + 511) / 512 + 3) * 512;
            out.required = meta + sdk::units_touched(data, count, g, 0, size) * grain_bound;
            out.fully_allocated = meta + all_grains * grain_bound;
        } else {
            out.required = out.fully_allocated = size + kDescriptorBound; // flat extents
        }
    }

    static std::unique_ptr<VmdkImage> create(Context &ctx, StoreRef main, std::string_view name,
                                             const vdkit_create_params &p) {
        const std::string who(name);
        const Shape shaped = shape(ctx, p.size, who + ": ");
        const uint64_t grain = shaped.grain, capacity = shaped.capacity;
        const bool zeroed = shaped.zeroed, monolithic = shaped.monolithic;
        const std::string &subformat = shaped.subformat;
        const std::string adapter = ctx.config("adapter-type").value_or("ide");

        uint8_t image_uuid[16];
        std::memcpy(image_uuid, p.uuid, 16);
        if (sdk::is_zero(image_uuid, 16)) sdk::host().generate_uuid(image_uuid);
        Descriptor d;
        d.version = "1";
        d.cid = new_cid();
        d.parent_cid = "ffffffff";
        d.create_type = "monolithicSparse";
        const bool diff = p.flags & VDKIT_CREATE_DIFF;
        if (diff) {
            // parentCID: a VMDK parent's CID (the host passes it as the
            // modification UUID, see cid_to_uuid); for a parent of another
            // format the first four bytes of its modification UUID serve as
            // a tag (the host compares modification ids within one format only).
            d.parent_cid = cid_text(p.parent_modification_uuid);
            if (d.parent_cid == "ffffffff") d.parent_cid = "fffffffe"; // ffffffff means "no parent"
            d.parent_hint = std::string(sdk::view(p.parent_hint));
            if (d.parent_hint.empty() || d.parent_hint.find('"') != std::string::npos)
                throw Error(VDKIT_E_INVALID_ARGUMENT,
                            who + ": the parent location cannot be written into a descriptor");
        }
        // Monolithic disks are their own single extent (other subformats: create_extent_files).
        if (monolithic)
            d.extents.push_back(
                ExtentLine{Access::rw, capacity, ExtentType::sparse, who.substr(who.find_last_of('/') + 1), 0, 0});
        const uint64_t heads = adapter == "ide" ? 16 : 255, sectors = 63;
        const uint64_t cylinders = std::min<uint64_t>(capacity / (heads * sectors), 65535);
        d.ddb = {{"ddb.virtualHWVersion", std::to_string(ctx.config_uint("hw-version").value_or(4))},
                 {"ddb.geometry.cylinders", std::to_string(cylinders)},
                 {"ddb.geometry.heads", std::to_string(heads)},
                 {"ddb.geometry.sectors", std::to_string(sectors)},
                 {"ddb.adapterType", adapter},
                 {"ddb.toolsVersion", ctx.config("tools-version").value_or("2147483647")},
                 {"ddb.uuid.image", uuid_text(image_uuid)}};
        if (diff && !sdk::is_zero(p.parent_uuid, 16)) d.ddb.emplace_back("ddb.uuid.parent", uuid_text(p.parent_uuid));
        if (subformat == "streamOptimized") {
            if (diff)
                throw Error(VDKIT_E_NOT_SUPPORTED, who + ": a streamOptimized disk cannot be a differencing disk");
            d.create_type = "streamOptimized";
            const uint64_t threads = ctx.config_uint("threads").value_or(0);
            const uint64_t level = ctx.config_uint("compression-level").value_or(6);
            auto img = std::make_unique<VmdkImage>();
            img->name_ = who;
            img->main_ = main;
            img->writable_ = true;
            img->created_ = true;
            img->cid_updated_ = true;
            img->size_ = capacity * 512;
            img->granularity_ = grain;
            img->desc_ = d;
            img->stream_ = std::make_unique<StreamWriter>(main, who, capacity, grain / 512,
                                                          static_cast<unsigned>(threads), static_cast<int>(level));
            img->stream_->begin(ctx, render_descriptor(d));
            return img;
        }
        const std::string prealloc =
            (p.flags & VDKIT_CREATE_FIXED) ? "full" : ctx.config("preallocation").value_or("off");
        const bool flat = subformat == "monolithicFlat" || subformat == "twoGbMaxExtentFlat" || subformat == "vmfs" ||
                          subformat == "vmfsThin";
        if (prealloc == "full" && !flat)
            throw Error(VDKIT_E_NOT_SUPPORTED, who + ": preallocation=full applies to flat subformats (monolithicFlat, "
                                                     "twoGbMaxExtentFlat, vmfs); sparse ones preallocate their tables");
        if (subformat != "monolithicSparse") {
            if (diff && flat) throw Error(VDKIT_E_NOT_SUPPORTED, who + ": a flat disk cannot be a differencing disk");
            d.create_type = subformat;
            create_extent_files(ctx, d, who, capacity, grain / 512, zeroed, prealloc == "full" || subformat == "vmfs");
            std::string text = render_descriptor(d);
            main.truncate(ctx.get(), 0);
            main.pwrite(ctx.get(), 0, text.data(), text.size());
            auto img = open(ctx, main, name, VDKIT_OPEN_WRITE);
            img->created_ = true;
            img->cid_updated_ = true;
            return img;
        }
        constexpr uint64_t kDescriptorSectors = 20;
        create_sparse_layout(ctx, main, capacity, grain / 512, zeroed, kDescriptorSectors);
        std::string text = render_descriptor(d);
        if (text.size() > kDescriptorSectors * 512)
            throw Error(VDKIT_E_INTERNAL, who + ": descriptor does not fit its 20 sectors");
        main.pwrite(ctx.get(), 512, text.data(), text.size());
        auto img = open(ctx, main, name, VDKIT_OPEN_WRITE);
        img->created_ = true;
        img->cid_updated_ = true; // a fresh CID already
        return img;
    }

    sdk::WriteResult write(Context &ctx, uint64_t off, const void *buf, uint64_t len) {
        if (stream_) return stream_->write(ctx, off, buf, len);
        Extent &e = writable_extent(ctx, off);
        uint64_t within = off - e.start;
        uint64_t n = std::min(len, e.length - within);
        if (e.sparse) {
            sdk::WriteResult r = e.sparse->write(ctx, within, buf, n);
            if (r.block_free) r.fill_offset += e.start;
            return r;
        }
        e.store.pwrite(ctx.get(), e.line.offset * 512 + within, buf, n);
        e.file_size = std::max(e.file_size, e.line.offset * 512 + within + n);
        return {n};
    }

    // Whole grains become zero grains, or unallocated in a disk without a
    // parent (where unallocated reads as zero); the host writes the rest.
    void write_zeroes(Context &ctx, uint64_t off, uint64_t len) {
        if (stream_) return stream_->zero(ctx, off, len);
        for_each_extent(ctx, off, len, [&](Extent &e, uint64_t within, uint64_t n) {
            if (!e.sparse || (!e.sparse->zeroed_grains() && desc_.has_parent()))
                throw Error(VDKIT_E_NOT_SUPPORTED, name_ + ": no zero-grain record here");
            e.sparse->set_whole_grains(ctx, within, n, !e.sparse->zeroed_grains());
        });
    }

    // Whole grains become unallocated; partial grains keep their data.
    void discard(Context &ctx, uint64_t off, uint64_t len) {
        if (stream_) return; // grains are written once; content stays as written
        for_each_extent(ctx, off, len, [&](Extent &e, uint64_t within, uint64_t n) {
            if (e.sparse)
                e.sparse->set_whole_grains(ctx, within, n, true);
            else
                e.store.discard(ctx.get(), e.line.offset * 512 + within, n);
        });
    }

    // Grain table entries written after a barrier (SparseExtent::write_tables),
    // durable, then free grains at the end of sparse extents are cut off
    // (SparseExtent::after_flush).
    void flush(Context &ctx) {
        if (stream_) return stream_->flush(ctx);
        if (writable_)
            for (auto &e : extents_)
                if (e->sparse && e->sparse->writable()) e->sparse->write_tables(ctx);
        for (auto &e : extents_)
            if (e->store && e->owned) e->store.flush(ctx.get());
        main_.flush(ctx.get());
        if (writable_)
            for (auto &e : extents_)
                if (e->sparse && e->sparse->writable()) e->sparse->after_flush(ctx);
    }

    void close(Context &ctx, bool delete_files) {
        if (stream_) {
            if (!delete_files) stream_->finish(ctx);
            return;
        }
        if (writable_) {
            // The data and tables are durable before uncleanShutdown is cleared.
            flush(ctx);
            bool cleared = false;
            for (auto &e : extents_)
                if (e->sparse && e->sparse->header().unclean_shutdown) {
                    e->sparse->set_unclean(ctx, false);
                    cleared = true;
                }
            if (cleared) flush(ctx);
        }
        if (delete_files)
            for (auto &e : extents_)
                if (e->owned && !e->device) ctx.remove(e->line.filename);
    }

    void info(Context &, vdkit_image_info &out) {
        out.virtual_size = size_;
        out.flags = (writable_ ? 0 : VDKIT_IMAGE_READ_ONLY) | (desc_.has_parent() ? VDKIT_IMAGE_HAS_PARENT : 0) |
                    (created_ && !desc_.has_parent() ? VDKIT_IMAGE_ZERO_INIT : 0) |
                    (stream_ ? VDKIT_IMAGE_SEQUENTIAL : 0);
        // ddb.uuid.image / ddb.uuid.parent (VMware writes them; qemu does not).
        if (auto u = desc_.ddb_get("ddb.uuid.image")) parse_ddb_uuid(*u, out.uuid);
        if (desc_.has_parent())
            if (auto u = desc_.ddb_get("ddb.uuid.parent")) parse_ddb_uuid(*u, out.parent_uuid);
        out.granularity = granularity_;
        out.subformat = sdk::str(desc_.create_type);
        // CIDs are the chain link (VDF50): reported as modification ids.
        cid_to_uuid(desc_.cid, out.modification_uuid);
        // parentCID fffffffe: the parent's CID is not known
        // (kUncheckedParentCid): reported as no id, which the core does not verify.
        if (desc_.has_parent() && parse_cid(desc_.parent_cid) != kUncheckedParentCid)
            cid_to_uuid(desc_.parent_cid, out.parent_modification_uuid);
        auto geo = [&](const char *key) -> uint32_t {
            auto v = desc_.ddb_get(key);
            if (!v) return 0;
            try {
                unsigned long n = std::stoul(*v);
                return n > UINT32_MAX ? 0 : static_cast<uint32_t>(n);
            } catch (...) {
                return 0;
            }
        };
        out.pchs_cylinders = geo("ddb.geometry.cylinders");
        out.pchs_heads = geo("ddb.geometry.heads");
        out.pchs_sectors = geo("ddb.geometry.sectors");
        out.lchs_cylinders = geo("ddb.geometry.biosCylinders");
        out.lchs_heads = geo("ddb.geometry.biosHeads");
        out.lchs_sectors = geo("ddb.geometry.biosSectors");
    }

    // qemu-img info's "format-specific" data for VMDK (qemu block/vmdk.c,
    // vmdk_get_specific_info / vmdk_get_extent_info), same names and
    // meanings: the CIDs as numbers (VMDK spec "The Descriptor File":
    // CID, parentCID; ffffffff for a base), the createType, and per extent
    // its file (as opened: the descriptor's directory joined to the name it
    // gives), virtual-size, cluster-size (grain-mapped extents only),
    // compressed (streamOptimized only) and format — the extent line's type
    // ("SPARSE", "FLAT", ...), or "" for a sparse file opened directly
    // (monolithicSparse, streamOptimized), as qemu prints them.
    std::string details(Context &) const {
        const auto cid = [](const std::string &text) { return std::to_string(parse_cid(text).value_or(0)); };
        std::string j = "{\"cid\": " + cid(desc_.cid) + ", \"parent-cid\": " +
                        (desc_.parent_cid.empty() ? std::string("4294967295") : cid(desc_.parent_cid)) +
                        ", \"create-type\": " + sdk::json_quote(desc_.create_type) + ", \"extents\": [";
        const size_t slash = name_.find_last_of('/');
        const std::string dir = slash == std::string::npos ? std::string() : name_.substr(0, slash + 1);
        for (size_t i = 0; i < extents_.size(); ++i) {
            const Extent &e = *extents_[i];
            const bool direct = !e.owned && e.line.type != ExtentType::flat && e.line.type != ExtentType::vmfs &&
                                e.line.type != ExtentType::zero;
            std::string file;
            if (direct)
                file = name_;
            else if (!e.line.filename.empty())
                file = e.line.filename.front() == '/' ? e.line.filename : dir + e.line.filename;
            j += i ? ", {" : "{";
            if (e.sparse && e.sparse->compressed()) j += "\"compressed\": true, ";
            j += "\"virtual-size\": " + std::to_string(e.length);
            if (!file.empty()) j += ", \"filename\": " + sdk::json_quote(file);
            if (e.mapped) j += ", \"cluster-size\": " + std::to_string(e.mapped->grain_bytes());
            j += ", \"format\": " + sdk::json_quote(direct ? "" : to_string(e.line.type)) + "}";
        }
        return j + "]}";
    }

    // Grow, or with the shrink flag shrink, a disk of sparse and flat
    // extents. The last extent grows; a twoGbMaxExtent* disk fills its last
    // extent up to the split size and then gains new extent files named like
    // the others. Shrinking drops whole extents past the new end and cuts
    // the last one (a sparse one is compacted afterwards). New files are
    // made before the descriptor names them; dropped files are removed after
    // it no longer does. The descriptor's geometry follows; the CID changes.
    void resize(Context &ctx, uint64_t new_size, uint32_t flags) {
        if (stream_ || !writable_) fail(VDKIT_E_READ_ONLY, "the disk cannot be resized now");
        if (new_size % 512) fail(VDKIT_E_INVALID_ARGUMENT, "VMDK sizes are whole 512-byte sectors");
        if (new_size < size_ && !(flags & VDKIT_RESIZE_SHRINK))
            fail(VDKIT_E_INVALID_ARGUMENT, "shrinking needs the shrink flag");
        if (new_size == 0) fail(VDKIT_E_INVALID_ARGUMENT, "a disk keeps at least one sector");
        for (const auto &e : extents_) {
            if (e->line.access != Access::rw || e->device ||
                (e->line.type != ExtentType::sparse && e->line.type != ExtentType::flat &&
                 e->line.type != ExtentType::vmfs))
                fail(VDKIT_E_NOT_SUPPORTED, "resizing works on disks of writable SPARSE, FLAT and VMFS extents; "
                                            "convert this one first");
            if (e->sparse && !e->sparse->writable())
                fail(VDKIT_E_NOT_SUPPORTED, "a streamOptimized disk is written once; convert it to resize it");
        }
        if (new_size == size_) return;
        for (auto &e : extents_)
            if (e->sparse) e->sparse->require_sound_tables(ctx);
        touch(ctx);
        if (new_size > size_)
            grow_extents(ctx, new_size);
        else
            shrink_extents(ctx, new_size);
        size_ = new_size;
        const uint64_t heads = desc_.ddb_get("ddb.geometry.heads").value_or("16") == "16" ? 16 : 255;
        for (auto &kv : desc_.ddb)
            if (kv.first == "ddb.geometry.cylinders")
                kv.second = std::to_string(std::min<uint64_t>(new_size / 512 / (heads * 63), 65535));
        write_descriptor(ctx);
        main_.flush(ctx.get());
        // Files of dropped extents go only once the descriptor no longer names them.
        for (const auto &f : dropped_files_)
            ctx.remove(f);
        dropped_files_.clear();
    }

    // Shrink + Defragment every sparse extent (flat extents have nothing to
    // give back). Nothing a reader sees changes, so the CID stays (VDF50:
    // the CID changes when the content does): children made over this disk,
    // by vdkit, qemu-img or VMware, still open. Compact only moves grains
    // down and truncates; the file never grows.
    void compact(Context &ctx) {
        if (stream_ || !writable_) fail(VDKIT_E_READ_ONLY, "the disk cannot be compacted now");
        bool any = false;
        for (auto &e : extents_) {
            if (!e->sparse) continue;
            if (e->line.access != Access::rw) fail(VDKIT_E_READ_ONLY, e->line.filename + " is not writable");
            e->sparse->require_sound_tables(ctx);
            e->sparse->compact(ctx, desc_.has_parent());
            e->sparse->set_unclean(ctx, false);
            any = true;
        }
        if (!any) fail(VDKIT_E_NOT_SUPPORTED, "a flat disk has nothing to compact");
    }

    // Every extent: sparse ones check their tables; flat files must hold
    // what the descriptor says (a short one reads as zeros past its end).
    void check(Context &ctx, uint32_t flags, vdkit_check_result &r) {
        if (stream_) fail(VDKIT_E_NOT_SUPPORTED, "a stream being written cannot be checked");
        const sdk::CheckReporter report(ctx, flags, r);
        if (report.repairing() && !writable_) fail(VDKIT_E_READ_ONLY, "repair needs the disk open for writing");
        for (auto &e : extents_) {
            if (e->mapped) {
                e->mapped->check(ctx, flags, r);
                continue;
            }
            if (e->line.type == ExtentType::zero || e->device || e->line.access == Access::noaccess) continue;
            const uint64_t need = e->line.offset * 512 + e->length;
            if (e->file_size >= need) continue;
            // The extent's data starts line.offset sectors into the file: what
            // the file lacks is the disk range from its end to the extent's end.
            const uint64_t have = e->file_size > e->line.offset * 512 ? e->file_size - e->line.offset * 512 : 0;
            report(VDKIT_FINDING_ERROR, e->file_size,
                   e->line.filename + " is " + std::to_string(need - e->file_size) +
                       " bytes shorter than the descriptor's extent (lost disk bytes [" +
                       std::to_string(e->start + have) + ", " + std::to_string(e->start + e->length) +
                       "): the file was truncated; they read as zeros); repair extends it with those zeros",
                   true);
            if (report.repairing()) {
                e->store.truncate(ctx.get(), need);
                e->file_size = need;
            }
        }
    }

    std::string parent_hint(Context &) { return desc_.has_parent() ? desc_.parent_hint : std::string(); }

    // The comment lives in ddb.comment, with newlines and backslashes
    // escaped as VirtualBox writes it ("\\n", "\\\\").
    std::string comment(Context &) {
        const std::string raw = desc_.ddb_get("ddb.comment").value_or("");
        std::string out;
        for (size_t i = 0; i < raw.size(); ++i) {
            if (raw[i] == '\\' && i + 1 < raw.size() && (raw[i + 1] == 'n' || raw[i + 1] == '\\')) {
                out += raw[i + 1] == 'n' ? '\n' : '\\';
                ++i;
            } else {
                out += raw[i];
            }
        }
        return out;
    }
    void set_comment(Context &ctx, std::string_view text) {
        if (text.find_first_of("\"\r") != std::string_view::npos || text.size() > 1024)
            fail(VDKIT_E_INVALID_ARGUMENT, "a VMDK comment holds no quotes or carriage returns (at most 1024 bytes)");
        std::string enc;
        for (char c : text)
            enc += c == '\n' ? std::string("\\n") : c == '\\' ? std::string("\\\\") : std::string(1, c);
        change_descriptor(ctx, [&] { ddb_put("ddb.comment", enc); });
    }

    // UUIDs live in the descriptor: ddb.uuid.image / ddb.uuid.parent, and
    // the CIDs stand for modification ids (their first four bytes, see
    // cid_to_uuid). Setting the modification id pins the CID for the
    // session (later changes keep it: Disk::compact relies on this, since
    // it changes nothing a reader sees); a CID equal to the current one is
    // not written again.
    void set_uuid(Context &ctx, uint32_t which, const uint8_t *u) {
        if (which == VDKIT_UUID_MODIFICATION && parse_cid(desc_.cid) &&
            parse_cid(desc_.cid) == parse_cid(cid_text(u))) {
            if (!writable_) fail(VDKIT_E_READ_ONLY, "opened read-only");
            cid_updated_ = true;
            return;
        }
        change_descriptor(ctx, [&] {
            switch (which) {
            case VDKIT_UUID_IMAGE:
                ddb_put("ddb.uuid.image", uuid_text(u));
                break;
            case VDKIT_UUID_MODIFICATION:
                desc_.cid = cid_text(u);
                break;
            case VDKIT_UUID_PARENT:
                if (!desc_.has_parent()) fail(VDKIT_E_INVALID_ARGUMENT, "the disk has no parent");
                ddb_put("ddb.uuid.parent", uuid_text(u));
                break;
            case VDKIT_UUID_PARENT_MODIFICATION:
                if (!desc_.has_parent()) fail(VDKIT_E_INVALID_ARGUMENT, "the disk has no parent");
                desc_.parent_cid = parent_cid_text(u);
                break;
            default:
                fail(VDKIT_E_INVALID_ARGUMENT, "unknown UUID kind " + std::to_string(which));
            }
        });
        cid_updated_ = true; // the caller chose the ids
    }

    // Geometry lives in the disk database (VMware Virtual Disk Format 1.1,
    // "The Disk Database"): ddb.geometry.cylinders/heads/sectors (PCHS) and
    // ddb.geometry.biosCylinders/biosHeads/biosSectors (LCHS).
    void set_geometry(Context &ctx, const uint32_t *pchs, const uint32_t *lchs) {
        for (const uint32_t *g : {pchs, lchs})
            if (g && (g[0] == 0 || g[1] == 0 || g[1] > 255 || g[2] == 0 || g[2] > 63))
                fail(VDKIT_E_INVALID_ARGUMENT, "a geometry needs cylinders >= 1, heads 1..255 and sectors 1..63");
        change_descriptor(ctx, [&] {
            if (pchs) {
                ddb_put("ddb.geometry.cylinders", std::to_string(pchs[0]));
                ddb_put("ddb.geometry.heads", std::to_string(pchs[1]));
                ddb_put("ddb.geometry.sectors", std::to_string(pchs[2]));
            }
            if (lchs) {
                ddb_put("ddb.geometry.biosCylinders", std::to_string(lchs[0]));
                ddb_put("ddb.geometry.biosHeads", std::to_string(lchs[1]));
                ddb_put("ddb.geometry.biosSectors", std::to_string(lchs[2]));
            }
        });
    }

    // Rebase (header only): a new parentFileNameHint, parentCID and
    // ddb.uuid.parent, or, with an empty hint, no parent at all. Only sparse
    // extents can hold a child's data.
    void set_parent(Context &ctx, std::string_view hint, std::string_view, const uint8_t *uuid,
                    const uint8_t *modification) {
        if (!hint.empty()) {
            for (const auto &e : extents_)
                if (!e->sparse || (e->sparse->header().flags & kFlagCompressed))
                    fail(VDKIT_E_NOT_SUPPORTED, "only hosted sparse (uncompressed) disks can have a parent");
            if (hint.find_first_of("\"\r\n") != std::string_view::npos)
                fail(VDKIT_E_INVALID_ARGUMENT, "the parent location cannot be written into a descriptor");
        }
        change_descriptor(ctx, [&] {
            auto &ddb = desc_.ddb;
            ddb.erase(std::remove_if(ddb.begin(), ddb.end(),
                                     [](const auto &kv) { return iequal(kv.first, "ddb.uuid.parent"); }),
                      ddb.end());
            if (hint.empty()) {
                desc_.parent_cid = "ffffffff";
                desc_.parent_hint.clear();
                return;
            }
            desc_.parent_hint = std::string(hint);
            desc_.parent_cid = parent_cid_text(modification);
            if (uuid && !sdk::is_zero(uuid, 16)) ddb.emplace_back("ddb.uuid.parent", uuid_text(uuid));
        });
    }

    // Rename or move (VixDiskLib_Rename): main becomes new_name, a location
    // the host resolves. Extent files beside the descriptor move with it and
    // those named after the disk ("disk-s001.vmdk", "disk-flat.vmdk") take
    // the new name's stem; an absolute extent path stays as it is. A
    // relative extent in another directory, or a device extent, would be
    // left behind by a move to another directory: refused. Order: extents,
    // then the descriptor (rewritten in place), then main; a failure puts
    // back what was done. A crash in between can leave the descriptor
    // naming the old extent files (there is no atomic multi-file rename).
    void rename(Context &ctx, std::string_view new_name) {
        if (stream_) fail(VDKIT_E_NOT_SUPPORTED, "a stream being written cannot be renamed");
        if (!writable_) fail(VDKIT_E_READ_ONLY, "opened read-only");
        const std::string target(new_name);
        const size_t old_slash = name_.find_last_of('/'), new_slash = target.find_last_of('/');
        const std::string old_dir = name_.substr(0, old_slash + 1), new_dir = target.substr(0, new_slash + 1);
        auto stem = [](std::string base) {
            if (base.size() > 5 && base.compare(base.size() - 5, 5, ".vmdk") == 0) base.resize(base.size() - 5);
            return base;
        };
        const std::string old_stem = stem(name_.substr(old_slash + 1)), new_stem = stem(target.substr(new_slash + 1));
        Descriptor next = desc_;
        std::vector<std::pair<std::string, std::string>> moved; // (from, to), both host-resolvable
        for (size_t i = 0; i < extents_.size(); ++i) {
            const Extent &e = *extents_[i];
            const std::string file = next.extents[i].filename;
            if (file.empty() || file[0] == '/') continue;
            if (!e.owned && e.store) { // a monolithic disk's own file, named by its embedded descriptor
                next.extents[i].filename = target.substr(new_slash + 1);
                continue;
            }
            if ((e.device || file.find('/') != std::string::npos) && old_dir != new_dir)
                fail(VDKIT_E_NOT_SUPPORTED, "extent file '" + file +
                                                "' is not beside the descriptor; it would be left behind by a move to "
                                                "another directory (move it by hand, or rename within the directory)");
            if (e.device || file.find('/') != std::string::npos) continue;
            const bool named_after_disk = file.size() > old_stem.size() &&
                                          file.compare(0, old_stem.size(), old_stem) == 0 &&
                                          (file[old_stem.size()] == '-' || file[old_stem.size()] == '.');
            const std::string renamed = named_after_disk ? new_stem + file.substr(old_stem.size()) : file;
            next.extents[i].filename = renamed;
            moved.emplace_back(old_dir + file, new_dir + renamed);
        }
        size_t done = 0;
        const Descriptor before = desc_;
        bool rewritten = false;
        try {
            for (; done < moved.size(); ++done)
                ctx.rename(moved[done].first, moved[done].second);
            desc_ = next;
            write_descriptor(ctx);
            rewritten = true;
            ctx.rename(name_, target);
        } catch (...) {
            desc_ = before;
            try {
                if (rewritten) write_descriptor(ctx);
                while (done-- > 0)
                    ctx.rename(moved[done].second, moved[done].first);
            } catch (...) {
                // The first error is the one reported; what could not be put back is named by it.
            }
            throw;
        }
        name_ = target;
        for (size_t i = 0; i < extents_.size(); ++i)
            extents_[i]->line.filename = desc_.extents[i].filename;
    }

    std::optional<std::string> metadata_get(Context &, std::string_view key) { return desc_.ddb_get(key); }

    // VixDiskLib WriteMetadata: ddb.* keys, kept in file order; a new key is appended.
    void metadata_set(Context &ctx, std::string_view key, std::string_view value) {
        if (key.size() < 5 || key.substr(0, 4) != "ddb." || key.find_first_of(" \t\r\n\"=#") != std::string_view::npos)
            fail(VDKIT_E_INVALID_ARGUMENT, "metadata keys are ddb.NAME without spaces, quotes, '=' or '#'");
        if (value.find_first_of("\"\r\n") != std::string_view::npos || value.size() > 4096)
            fail(VDKIT_E_INVALID_ARGUMENT, "a metadata value holds no quotes or line breaks (at most 4096 bytes)");
        change_descriptor(ctx, [&] { ddb_put(key, value); });
    }
    std::vector<std::string> metadata_keys(Context &) {
        std::vector<std::string> keys;
        for (const auto &kv : desc_.ddb)
            keys.push_back(kv.first);
        return keys;
    }

    sdk::ReadResult read(Context &ctx, uint64_t off, void *buf, uint64_t len) {
        if (stream_) fail(VDKIT_E_NOT_SUPPORTED, "a streamOptimized disk being written can be read once it is closed");
        Extent &e = accessible_extent(off);
        uint64_t within = off - e.start;
        uint64_t n = std::min(len, e.length - within);
        switch (e.line.type) {
        case ExtentType::zero:
            std::memset(buf, 0, static_cast<size_t>(n));
            return {n, false};
        default:
            break;
        }
        if (e.mapped) return e.mapped->read(ctx, within, buf, n);
        // FLAT / VMFS: plain bytes at OFFSET sectors; a short file reads as zeros.
        uint64_t at = e.line.offset * 512 + within;
        uint64_t avail = at < e.file_size ? std::min(n, e.file_size - at) : 0;
        if (avail) e.store.pread(ctx.get(), at, buf, avail);
        if (avail < n) std::memset(static_cast<unsigned char *>(buf) + avail, 0, static_cast<size_t>(n - avail));
        return {n, false};
    }

    sdk::BlockStatus block_status(Context &ctx, uint64_t off, uint64_t len) {
        if (stream_) fail(VDKIT_E_NOT_SUPPORTED, "a streamOptimized disk being written has no allocation map yet");
        Extent &e = accessible_extent(off);
        uint64_t within = off - e.start;
        uint64_t n = std::min(len, e.length - within);
        switch (e.line.type) {
        case ExtentType::zero:
            return {VDKIT_BLOCK_ZERO, n};
        default:
            break;
        }
        if (e.mapped) return e.mapped->status(ctx, within, n);
        // Flat extents: ask the file for holes.
        vdkit_extent x[1];
        uint64_t at = e.line.offset * 512 + within;
        uint32_t got = e.store.extents(ctx.get(), at, n, x, 1);
        if (got == 0 || x[0].length == 0) return {VDKIT_BLOCK_DATA, n};
        return {x[0].type == VDKIT_EXTENT_HOLE ? VDKIT_BLOCK_ZERO : VDKIT_BLOCK_DATA, std::min(n, x[0].length)};
    }

private:
    [[noreturn]] void fail(uint32_t code, const std::string &why) const { throw Error(code, name_ + ": " + why); }

    // Extent files of a descriptor-file subformat, named as qemu and VMware
    // name them next to the descriptor (NAME-flat.vmdk, NAME-f001.vmdk,
    // NAME-s001.vmdk), with their lines added to d. Files made before a
    // failure are removed again. A resize passes the disk's split size in
    // sectors and the number of the first new extent file.
    static void create_extent_files(Context &ctx, Descriptor &d, const std::string &who, uint64_t capacity,
                                    uint64_t grain_sectors, bool zeroed, bool allocate, uint64_t split_sectors = 0,
                                    unsigned first_index = 1) {
        std::string base = who.substr(who.find_last_of('/') + 1);
        if (base.size() > 5 && base.compare(base.size() - 5, 5, ".vmdk") == 0) base.resize(base.size() - 5);
        const std::string &type = d.create_type;
        const bool split = type == "twoGbMaxExtentFlat" || type == "twoGbMaxExtentSparse";
        const bool sparse = type == "twoGbMaxExtentSparse";
        uint64_t chunk = capacity;
        if (split) {
            chunk = split_chunk(ctx, who, grain_sectors, sparse, split_sectors);
            if (capacity / chunk + first_index >= 10000)
                throw Error(VDKIT_E_INVALID_ARGUMENT, who + ": more than 9999 extents; use a larger split-size");
        }
        std::vector<std::string> made;
        try {
            for (uint64_t start = 0, i = first_index; start < capacity; start += chunk, ++i) {
                const uint64_t n = std::min(chunk, capacity - start);
                char suffix[32];
                if (!split)
                    std::snprintf(suffix, sizeof suffix, "-flat.vmdk");
                else
                    std::snprintf(suffix, sizeof suffix, "-%c%03u.vmdk", sparse ? 's' : 'f', static_cast<unsigned>(i));
                const std::string file = base + suffix;
                sdk::Store store = ctx.open(file, VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE);
                made.push_back(file);
                if (sparse) {
                    create_sparse_layout(ctx, store, n, grain_sectors, zeroed, 0);
                } else {
                    store.truncate(ctx.get(), n * 512);
                    if (allocate) store.zero(ctx.get(), 0, n * 512);
                }
                store.flush(ctx.get());
                const bool vmfs = type == "vmfs" || type == "vmfsThin";
                d.extents.push_back(ExtentLine{Access::rw, n,
                                               sparse ? ExtentType::sparse
                                               : vmfs ? ExtentType::vmfs
                                                      : ExtentType::flat,
                                               file, 0, 0});
            }
        } catch (...) {
            for (const auto &f : made)
                ctx.remove(f);
            throw;
        }
    }

    // Set extent e (the last) to `bytes`, growing or cutting its file or tables.
    void set_extent_length(Context &ctx, Extent &e, uint64_t bytes) {
        if (e.sparse) {
            if (bytes > e.length)
                e.sparse->grow(ctx, bytes / 512);
            else
                e.sparse->shrink(ctx, bytes / 512, desc_.has_parent());
        } else {
            const uint64_t end = e.line.offset * 512 + bytes;
            e.store.truncate(ctx.get(), end);
            e.file_size = end;
        }
        e.length = bytes;
        e.line.sectors = bytes / 512;
        desc_.extents[index_of(e)].sectors = bytes / 512;
    }

    size_t index_of(const Extent &e) const {
        for (size_t i = 0; i < extents_.size(); ++i)
            if (extents_[i].get() == &e) return i;
        fail(VDKIT_E_INTERNAL, "extent not in the list");
    }

    void grow_extents(Context &ctx, uint64_t new_size) {
        const bool split = desc_.create_type == "twoGbMaxExtentSparse" || desc_.create_type == "twoGbMaxExtentFlat";
        Extent &last = *extents_.back();
        if (!split) {
            set_extent_length(ctx, last, last.length + (new_size - size_));
            return;
        }
        // The split size is the first extent's when there are several (all
        // but the last are full); a single extent may be short: 2 GiB then,
        // the size qemu and vdkit split at (VMware's 2047 MiB is smaller).
        const uint64_t chunk =
            extents_.size() > 1 ? extents_.front()->length : std::max<uint64_t>(extents_.front()->length, 2ull << 30);
        const uint64_t room = chunk > last.length ? chunk - last.length : 0;
        set_extent_length(ctx, last, last.length + std::min(room, new_size - size_));
        uint64_t pos = last.start + last.length;
        Descriptor d; // only for the new lines and the subformat
        d.create_type = desc_.create_type;
        const uint64_t grain = last.sparse ? last.sparse->header().grain_size : 128;
        const bool zeroed = last.sparse && last.sparse->zeroed_grains();
        if (pos < new_size) {
            create_extent_files(ctx, d, name_, (new_size - pos) / 512, grain, zeroed, false, chunk / 512,
                                static_cast<unsigned>(extents_.size() + 1));
            for (const auto &line : d.extents) {
                auto e = std::make_unique<Extent>();
                e->line = line;
                e->start = pos;
                e->length = line.sectors * 512;
                if (line.type == ExtentType::sparse) {
                    open_sparse_file(ctx, *e, VDKIT_OPEN_WRITE, "new extent");
                } else {
                    e->owned = ctx.open(line.filename, VDKIT_OPEN_WRITE);
                    e->store = e->owned;
                    e->file_size = e->store.size(ctx.get());
                }
                pos += e->length;
                desc_.extents.push_back(line);
                extents_.push_back(std::move(e));
            }
        }
    }

    void shrink_extents(Context &ctx, uint64_t new_size) {
        while (extents_.size() > 1 && extents_.back()->start >= new_size) {
            dropped_files_.push_back(extents_.back()->line.filename);
            extents_.pop_back();
            desc_.extents.pop_back();
        }
        Extent &last = *extents_.back();
        set_extent_length(ctx, last, new_size - last.start);
    }

    // The parentCID of a child whose parent's CID is not known: not verified
    // (parent_cid_text). VDF50 reserves ffffffff for "no parent"; vdkit's
    // CIDs are never fffffffe (descriptor.hpp new_cid).
    static constexpr uint32_t kUncheckedParentCid = 0xfffffffeu;

    // A CID is 1..8 hex digits (qemu writes them without zero padding).
    static std::optional<uint32_t> parse_cid(const std::string &cid) {
        uint32_t v = 0;
        if (cid.empty() || cid.size() > 8) return std::nullopt;
        auto [p, ec] = std::from_chars(cid.data(), cid.data() + cid.size(), v, 16);
        if (ec != std::errc() || p != cid.data() + cid.size()) return std::nullopt;
        return v;
    }

    // load() has checked both CIDs, so a link is never silently unverified.
    static void cid_to_uuid(const std::string &cid, uint8_t out[16]) {
        auto parsed = parse_cid(cid);
        if (!parsed) return; // no CID line at all: nothing to verify
        uint32_t v = *parsed;
        std::memset(out, 0, 16);
        out[0] = static_cast<uint8_t>(v >> 24);
        out[1] = static_cast<uint8_t>(v >> 16);
        out[2] = static_cast<uint8_t>(v >> 8);
        out[3] = static_cast<uint8_t>(v);
        out[4] = 1; // never all zero, even for CID 00000000
    }

    // "xx xx xx xx xx xx xx xx-xx xx xx xx xx xx xx xx"; anything else is ignored.
    static void parse_ddb_uuid(const std::string &text, uint8_t out[16]) {
        uint8_t v[16];
        size_t pos = 0;
        for (int i = 0; i < 16; ++i) {
            if (i > 0) {
                if (pos >= text.size() || (text[pos] != ' ' && text[pos] != '-')) return;
                ++pos;
            }
            if (pos + 2 > text.size()) return;
            auto [p, ec] = std::from_chars(text.data() + pos, text.data() + pos + 2, v[i], 16);
            if (ec != std::errc() || p != text.data() + pos + 2) return;
            pos += 2;
        }
        if (pos == text.size()) std::memcpy(out, v, 16);
    }

    static std::string uuid_text(const uint8_t u[16]) {
        char buf[64];
        std::snprintf(buf, sizeof buf,
                      "%02x %02x %02x %02x %02x %02x %02x %02x-%02x %02x %02x %02x %02x %02x %02x %02x", u[0], u[1],
                      u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
        return buf;
    }

    static bool iequal(std::string_view a, std::string_view b) {
        return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
                   return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
               });
    }

    // Set a ddb key (case-insensitive match), appending a new one.
    void ddb_put(std::string_view key, std::string_view value) {
        auto it =
            std::find_if(desc_.ddb.begin(), desc_.ddb.end(), [&](const auto &kv) { return iequal(kv.first, key); });
        if (it != desc_.ddb.end())
            it->second = std::string(value);
        else
            desc_.ddb.emplace_back(std::string(key), std::string(value));
    }

    // Apply `edit` to the descriptor and write it; on failure (e.g. no room
    // left in an embedded descriptor) the descriptor is restored.
    template <class Edit> void change_descriptor(Context &ctx, Edit edit) {
        if (!writable_) fail(VDKIT_E_READ_ONLY, "opened read-only");
        if (stream_) fail(VDKIT_E_NOT_SUPPORTED, "the descriptor of a stream being written is fixed");
        const Descriptor before = desc_;
        try {
            edit();
            write_descriptor(ctx);
        } catch (...) {
            desc_ = before;
            throw;
        }
    }

    // The parentCID a parent's modification id stands for: its CID, or, for
    // no id (null or nil: the core relinks with a nil id while a commit or
    // merge gives the parent a new one, chain_ops.cpp announce_change),
    // fffffffe, which no CID vdkit makes can equal (new_cid) and info()
    // reports as no id again; ffffffff would mean "no parent".
    static std::string parent_cid_text(const uint8_t *u) {
        if (!u || sdk::is_zero(u, 16)) return "fffffffe";
        std::string cid = cid_text(u);
        return cid == "ffffffff" ? std::string("fffffffe") : cid;
    }

    // The CID a modification id stands for: its first four bytes.
    static std::string cid_text(const uint8_t *u) {
        char cid[16];
        std::snprintf(cid, sizeof cid, "%08x",
                      (uint32_t(u[0]) << 24) | (uint32_t(u[1]) << 16) | (uint32_t(u[2]) << 8) | u[3]);
        return cid;
    }

    // The extent holding off, checked for writing (and the CID touched).
    Extent &writable_extent(Context &ctx, uint64_t off) {
        if (!writable_) fail(VDKIT_E_READ_ONLY, "opened read-only");
        Extent &e = extent_at(off);
        if (e.line.access != Access::rw)
            fail(VDKIT_E_READ_ONLY, "the extent at " + std::to_string(off) + " is " +
                                        (e.line.access == Access::rdonly ? "RDONLY" : "NOACCESS"));
        if (e.line.type == ExtentType::zero)
            fail(VDKIT_E_READ_ONLY, "the extent at " + std::to_string(off) + " is ZERO");
        if (e.mapped && !e.sparse) fail(VDKIT_E_READ_ONLY, "the extent at " + std::to_string(off) + " is read-only");
        if (e.sparse && !e.sparse->writable()) fail(VDKIT_E_NOT_SUPPORTED, e.sparse->read_only_reason());
        if (e.sparse) e.sparse->require_sound_tables(ctx); // before the CID changes
        touch(ctx);
        return e;
    }

    // The first change after open gives the disk a new CID (VDF50: children must see the change).
    void touch(Context &ctx) {
        if (cid_updated_) return;
        desc_.cid = new_cid();
        write_descriptor(ctx);
        cid_updated_ = true;
    }

    template <class Fn> void for_each_extent(Context &ctx, uint64_t off, uint64_t len, Fn fn) {
        while (len > 0) {
            Extent &e = writable_extent(ctx, off);
            uint64_t within = off - e.start;
            uint64_t n = std::min(len, e.length - within);
            fn(e, within, n);
            off += n;
            len -= n;
        }
    }

    // Two extent lines naming one file (VDF50 "Extent descriptions": each
    // extent is its own file, or a distinct sector range of a flat one):
    // a sparse file named twice, or flat ranges of one file that overlap,
    // would have each extent's writes land in the other's data. Refused
    // at open, for reading and writing, naming both descriptor lines.
    // Names are compared lexically normalised ("./a", "sub/../a" and "a"
    // are one file): "." and empty components dropped, "name/.." removed.
    // The host gives plugins no file identity (st_dev/st_ino), so hard links
    // and symlinks to one file are not seen here (docs/check.md).
    static std::string normalised_name(const std::string &name) {
        std::vector<std::string> parts;
        size_t i = 0;
        const bool absolute = !name.empty() && name[0] == '/';
        while (i <= name.size()) {
            const size_t j = std::min(name.find('/', i), name.size());
            const std::string part = name.substr(i, j - i);
            if (part == "..") {
                if (!parts.empty() && parts.back() != "..")
                    parts.pop_back();
                else if (!absolute)
                    parts.push_back(part);
            } else if (!part.empty() && part != ".") {
                parts.push_back(part);
            }
            i = j + 1;
        }
        std::string out = absolute ? "/" : "";
        for (size_t k = 0; k < parts.size(); ++k)
            out += (k ? "/" : "") + parts[k];
        return out;
    }

    // Sorted by normalised name (and FLAT offset), so a descriptor with
    // thousands of extents is judged in O(n log n), each name normalised once.
    void refuse_aliased_extents() const {
        const auto &x = desc_.extents;
        auto flat = [](const ExtentLine &e) { return e.type == ExtentType::flat || e.type == ExtentType::vmfs; };
        std::vector<std::pair<std::string, size_t>> named;
        for (size_t i = 0; i < x.size(); ++i)
            if (x[i].type != ExtentType::zero && !x[i].filename.empty())
                named.emplace_back(normalised_name(x[i].filename), i);
        std::sort(named.begin(), named.end(), [&](const auto &l, const auto &r) {
            return l.first != r.first ? l.first < r.first : x[l.second].offset < x[r.second].offset;
        });
        for (size_t k = 1; k < named.size(); ++k) {
            if (named[k - 1].first != named[k].first) continue;
            const ExtentLine &lo = x[named[k - 1].second], &hi = x[named[k].second]; // lo.offset <= hi.offset
            const bool both_flat = flat(lo) && flat(hi);
            if (both_flat && lo.sectors <= hi.offset - lo.offset) continue; // no overlap (no overflow either)
            const ExtentLine &a = lo.line < hi.line ? lo : hi, &b = lo.line < hi.line ? hi : lo;
            fail(VDKIT_E_CORRUPT, "descriptor lines " + std::to_string(a.line) + " and " + std::to_string(b.line) +
                                      " both name the extent file \"" + a.filename + "\"" +
                                      (a.filename != b.filename ? " (as \"" + b.filename + "\")" : "") +
                                      (both_flat ? " with overlapping sector ranges" : "") +
                                      ": two extents aliasing one file would overwrite each other's data; "
                                      "fix the descriptor");
        }
    }

    // Rewrite the descriptor in place: the embedded area if it fits, else the text file.
    void write_descriptor(Context &ctx) {
        std::string text = render_descriptor(desc_);
        if (main_header_) {
            // The embedded area must not reach over the grain directories
            // or tables (a wrong descriptorSize): check refuses it first.
            for (auto &e : extents_)
                if (e->sparse) e->sparse->require_sound_tables(ctx);
            uint64_t cap = main_header_->descriptor_size * 512;
            if (!main_header_->descriptor_offset || text.size() > cap)
                fail(VDKIT_E_NOT_SUPPORTED, "the embedded descriptor has no room for an update");
            text.resize(static_cast<size_t>(cap), '\0');
            main_.pwrite(ctx.get(), main_header_->descriptor_offset * 512, text.data(), text.size());
        } else {
            // Never truncate first: a crash between the truncate and the
            // write would leave an empty descriptor and a disk that no longer
            // opens (found by tests/crash). The new text goes over the old in
            // one write, padded with newlines (blank lines, which every
            // reader skips) to the old length; only then is the file cut to
            // the new length. Every moment leaves a descriptor that parses.
            const uint64_t old_size = main_.size(ctx.get());
            const size_t exact = text.size();
            if (old_size > exact) text.resize(static_cast<size_t>(old_size), '\n');
            main_.pwrite(ctx.get(), 0, text.data(), text.size());
            if (old_size > exact) main_.truncate(ctx.get(), exact);
        }
    }

    void load(Context &ctx, StoreRef main) {
        uint64_t size = main.size(ctx.get());
        unsigned char head[512] = {};
        if (size >= 4) main.pread(ctx.get(), 0, head, std::min<uint64_t>(size, 512));
        uint32_t magic = static_cast<uint32_t>(sdk::load_le(head, 4));
        std::optional<SparseHeader> &main_header = main_header_;
        std::string text;
        const bool cowd = magic == kCowdMagic, se = size >= 512 && sdk::load_le(head, 8) == kSeSparseMagic;
        if (cowd || se) {
            // An ESX sparse extent opened directly: it describes itself (no
            // parent; a redo log's parent is named by its descriptor).
            const ExtentType type = cowd ? ExtentType::vmfs_sparse : ExtentType::se_sparse;
            auto x = open_mapped(ctx, type, main, name_);
            desc_.version = "1";
            desc_.create_type = cowd ? "vmfsSparse" : "seSparse";
            desc_.parent_cid = "ffffffff";
            desc_.extents.push_back(ExtentLine{Access::rw, x->capacity_bytes() / 512, type, "", 0, 0});
        } else if (magic == kSparseMagic || magic == kTemporaryMagic) {
            if (size < 512) fail(VDKIT_E_CORRUPT, "file is shorter than a sparse header (512 bytes)");
            main_header = parse_sparse_header(head, name_);
            const SparseHeader &h = *main_header;
            if (h.descriptor_offset && h.descriptor_size) {
                // Sectors to bytes without wrapping (descriptorOffset at byte 28, 2^63 + 1 is not sector 1).
                const bool in_file = h.descriptor_offset <= size / 512;
                uint64_t off = in_file ? h.descriptor_offset * 512 : size, len = h.descriptor_size * 512;
                if (!in_file || h.descriptor_size > kMaxDescriptorBytes / 512 + 1 || off > size || size - off < len)
                    fail(VDKIT_E_CORRUPT, "embedded descriptor (sector " + std::to_string(h.descriptor_offset) + ", " +
                                              std::to_string(h.descriptor_size) + " sectors) lies outside the file");
                text = read_text(ctx, main, off, std::min<uint64_t>(len, kMaxDescriptorBytes));
            }
        } else {
            if (size > kMaxDescriptorBytes)
                fail(VDKIT_E_CORRUPT, "bad magic at offset 0, and too large to be a descriptor file");
            text = read_text(ctx, main, 0, size);
            if (!looks_like_descriptor(text))
                fail(VDKIT_E_CORRUPT, "bad magic at offset 0, and not a descriptor (no version= line first)");
        }
        std::string error;
        if (cowd || se) {
            // described above
        } else if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
            // A sparse extent without an embedded descriptor (a split part
            // opened directly): it describes itself.
            desc_.version = "1";
            desc_.create_type = "monolithicSparse";
            desc_.parent_cid = "ffffffff";
            desc_.extents.push_back(ExtentLine{Access::rw, main_header->capacity, ExtentType::sparse, "", 0, 0});
        } else {
            auto parsed = parse_descriptor(text, &error, main_header.has_value());
            if (!parsed) fail(VDKIT_E_CORRUPT, error);
            desc_ = std::move(*parsed);
        }
        // Device-backed disks (VDF50: host disks and partitions) and raw
        // device mappings read raw device data: the host asks the user.
        const bool device_disk = desc_.create_type == "fullDevice" || desc_.create_type == "partitionedDevice";
        refuse_aliased_extents();
        std::set<std::string> locked; // FLAT/VMFS files opened (and locked) so far
        uint64_t pos = 0;
        for (size_t i = 0; i < desc_.extents.size(); ++i) {
            const ExtentLine &line = desc_.extents[i];
            const std::string where = "extent " + std::to_string(i + 1) +
                                      (line.line ? " (descriptor line " + std::to_string(line.line) + ")" : "");
            auto e = std::make_unique<Extent>();
            e->line = line;
            e->start = pos;
            if (__builtin_mul_overflow(line.sectors, 512, &e->length) || __builtin_add_overflow(pos, e->length, &pos))
                fail(VDKIT_E_CORRUPT, where + ": size overflows");
            // NOACCESS (VDF50): the extent is listed but may not be touched;
            // its file is not opened and I/O in its range is refused.
            switch (line.access == Access::noaccess ? ExtentType::zero : line.type) {
            case ExtentType::zero:
                break;
            case ExtentType::flat:
            case ExtentType::vmfs:
            case ExtentType::vmfs_rdm: // the mapping file reads as the device it maps (VDF50)
            case ExtentType::vmfs_raw:
                e->device = device_disk || line.type == ExtentType::vmfs_rdm || line.type == ExtentType::vmfs_raw;
                // Extents sharing one file (at other offsets) lock it once:
                // every further lock on one inode costs the kernel a walk of
                // the ones before, quadratic in thousands of extents.
                e->owned = ctx.open(line.filename,
                                    extent_flags(line) | (e->device ? VDKIT_OPEN_DEVICE : 0) |
                                        (locked.insert(normalised_name(line.filename)).second ? 0 : VDKIT_OPEN_NOLOCK));
                e->store = e->owned;
                e->file_size = e->store.size(ctx.get());
                // (OFFSET + SECTORS) * 512 must not overflow: reads compute offsets from it.
                if (line.offset > UINT64_MAX / 512 - line.sectors)
                    fail(VDKIT_E_CORRUPT, where + ": offset " + std::to_string(line.offset) + " overflows");
                break;
            case ExtentType::sparse:
                if (main_header) {
                    // Monolithic: the single sparse extent is this file, whatever
                    // name the embedded descriptor gives (it goes stale on rename).
                    if (desc_.extents.size() != 1)
                        fail(VDKIT_E_CORRUPT,
                             "an embedded descriptor lists " + std::to_string(desc_.extents.size()) + " extents");
                    e->store = main;
                    auto sp = std::make_unique<SparseExtent>(ctx, main, name_, *main_header);
                    e->sparse = sp.get();
                    e->mapped = std::move(sp);
                } else {
                    open_sparse_file(ctx, *e, extent_flags(line), where);
                }
                break;
            case ExtentType::vmfs_sparse:
            case ExtentType::se_sparse:
                if (writable_)
                    fail(VDKIT_E_READ_ONLY,
                         where + ": " + to_string(line.type) +
                             " extents are read-only in vdkit; open the disk read-only or convert it");
                if (line.filename.empty()) {
                    e->store = main; // opened directly
                } else {
                    e->owned = ctx.open(line.filename, 0);
                    e->store = e->owned;
                }
                e->mapped = open_mapped(ctx, line.type, e->store, line.filename.empty() ? name_ : line.filename);
                break;
            }
            if (e->mapped) {
                e->mapped->set_disk_offset(e->start);
                if (e->mapped->capacity_bytes() < e->length)
                    fail(VDKIT_E_CORRUPT, where + " is larger in the descriptor than its header's capacity");
                granularity_ = std::max(granularity_, e->mapped->grain_bytes());
            }
            extents_.push_back(std::move(e));
        }
        size_ = pos;
        if (desc_.has_parent() && desc_.parent_hint.empty())
            fail(VDKIT_E_CORRUPT, "parentCID is set but there is no parentFileNameHint");
        if (!desc_.cid.empty() && !parse_cid(desc_.cid))
            fail(VDKIT_E_CORRUPT, "descriptor CID '" + desc_.cid + "' is not 1 to 8 hex digits");
        if (!desc_.parent_cid.empty() && !parse_cid(desc_.parent_cid))
            fail(VDKIT_E_CORRUPT, "descriptor parentCID '" + desc_.parent_cid + "' is not 1 to 8 hex digits");
    }

    // Open e.line's file as a hosted sparse extent (its own header, no
    // embedded descriptor): the split-sparse parts. `where` names it in errors.
    void open_sparse_file(Context &ctx, Extent &e, uint32_t flags, const std::string &where) {
        const std::string &file = e.line.filename;
        e.owned = ctx.open(file, flags);
        e.store = e.owned;
        unsigned char h[512];
        if (e.store.size(ctx.get()) < 512)
            fail(VDKIT_E_CORRUPT, where + " '" + file + "' is shorter than a sparse header");
        e.store.pread(ctx.get(), 0, h, 512);
        auto sp = std::make_unique<SparseExtent>(ctx, e.store, file, parse_sparse_header(h, file));
        e.sparse = sp.get();
        e.mapped = std::move(sp);
    }

    static std::unique_ptr<GrainExtent> open_mapped(Context &ctx, ExtentType type, StoreRef store,
                                                    const std::string &name) {
        if (type == ExtentType::vmfs_sparse) return std::make_unique<CowdExtent>(ctx, store, name);
        return std::make_unique<SeSparseExtent>(ctx, store, name);
    }

    uint32_t extent_flags(const ExtentLine &line) const {
        return writable_ && line.access == Access::rw ? VDKIT_OPEN_WRITE : 0;
    }

    // The extent holding off, refused when it is NOACCESS.
    Extent &accessible_extent(uint64_t off) {
        Extent &e = extent_at(off);
        if (e.line.access == Access::noaccess)
            fail(VDKIT_E_PERMISSION, "bytes " + std::to_string(e.start) + ".." + std::to_string(e.start + e.length) +
                                         " lie in a NOACCESS extent" +
                                         (e.line.line ? " (descriptor line " + std::to_string(e.line.line) + ")" : ""));
        return e;
    }

    Extent &extent_at(uint64_t off) {
        // Extents are few and sorted; binary search by start.
        auto it = std::upper_bound(extents_.begin(), extents_.end(), off,
                                   [](uint64_t o, const std::unique_ptr<Extent> &e) { return o < e->start; });
        if (it == extents_.begin()) fail(VDKIT_E_INTERNAL, "offset before the first extent");
        --it;
        while ((*it)->length == 0 && it + 1 != extents_.end())
            ++it;
        if (off - (*it)->start >= (*it)->length) fail(VDKIT_E_OUT_OF_RANGE, "offset beyond the last extent");
        return **it;
    }

    std::string name_;
    StoreRef main_;
    std::optional<SparseHeader> main_header_;
    bool writable_ = false;
    bool created_ = false;
    bool cid_updated_ = false;
    Descriptor desc_;
    std::vector<std::unique_ptr<Extent>> extents_;
    uint64_t size_ = 0;
    uint64_t granularity_ = 512;
    // Set while a new streamOptimized disk is being written (until close).
    std::unique_ptr<StreamWriter> stream_;
    // Extent files a shrink dropped, removed once the descriptor is written.
    std::vector<std::string> dropped_files_;
};

constexpr vdkit_config_key kKeys[] = {
    sdk::key("subformat", VDKIT_KEY_ENUM, "monolithicSparse",
             "VMDK layout to create; streamOptimized is written front to back once (convert), compressed in "
             "parallel.",
             VDKIT_KEY_CREATE_ONLY,
             "monolithicSparse|monolithicFlat|twoGbMaxExtentSparse|twoGbMaxExtentFlat|streamOptimized|vmfs|vmfsThin"),
    sdk::key("split-size", VDKIT_KEY_SIZE, "2G", "twoGbMaxExtent*: bytes per extent file.", VDKIT_KEY_CREATE_ONLY, {},
             1 << 20, int64_t(1) << 40),
    sdk::key("preallocation", VDKIT_KEY_ENUM, "off",
             "Flat subformats: off leaves the extent files sparse, full allocates them (vmfs always does); sparse "
             "subformats always preallocate their grain tables.",
             VDKIT_KEY_CREATE_ONLY, "off|metadata|full"),
    sdk::key("threads", VDKIT_KEY_UINT, "0", "streamOptimized: compression threads (0: one per CPU).",
             VDKIT_KEY_CREATE_ONLY, {}, 0, 64),
    sdk::key("compression-level", VDKIT_KEY_UINT, "6", "streamOptimized: deflate level, 1 (fast) to 12 (small).",
             VDKIT_KEY_CREATE_ONLY, {}, 1, 12),
    sdk::key("adapter-type", VDKIT_KEY_ENUM, "ide", "ddb.adapterType, and the geometry that goes with it.",
             VDKIT_KEY_CREATE_ONLY, "ide|buslogic|lsilogic|legacyESX|pvscsi"),
    sdk::key("hw-version", VDKIT_KEY_UINT, "4", "ddb.virtualHWVersion.", VDKIT_KEY_CREATE_ONLY, {}, 4, 21),
    sdk::key("tools-version", VDKIT_KEY_STRING, "2147483647", "ddb.toolsVersion.", VDKIT_KEY_CREATE_ONLY),
    sdk::key("grain-size", VDKIT_KEY_SIZE, "64k",
             "Grain (allocation unit), a power of two from 8k (VDF50: > 8 sectors).", VDKIT_KEY_CREATE_ONLY, {}, 8192,
             1 << 20),
    sdk::key("zeroed-grain", VDKIT_KEY_BOOL, "false",
             "Record zeroed grains in the grain table (version 2), so zeros shadow a parent.", VDKIT_KEY_CREATE_ONLY),
};
constexpr vdkit_str kExtensions[] = {sdk::str("vmdk")};

const vdkit_plugin_descriptor *vmdk_format() {
    static const vdkit_plugin_descriptor d = sdk::describe(
        VDKIT_KIND_FORMAT,
        sdk::DescriptorSpec{"vmdk", "0.2.0", "VMware virtual disks",
                            VDKIT_CAP_CREATE_DYNAMIC | VDKIT_CAP_DIFF | VDKIT_CAP_DISCARD | VDKIT_CAP_ZERO_STATE |
                                VDKIT_CAP_FILE_BASED | VDKIT_CAP_METADATA | VDKIT_CAP_GEOMETRY | VDKIT_CAP_CHECK |
                                VDKIT_CAP_RESIZE | VDKIT_CAP_COMPACT | VDKIT_CAP_CREATE_SPLIT | VDKIT_CAP_RENAME,
                            kKeys, static_cast<uint32_t>(std::size(kKeys)), kExtensions,
                            static_cast<uint32_t>(std::size(kExtensions))},
        sdk::format_ops<VmdkImage>());
    return &d;
}

} // namespace

VDKIT_SDK_ENTRY(vmdk_format())
