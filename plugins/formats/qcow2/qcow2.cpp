// The `qcow2` format plugin: QEMU copy-on-write images, versions 2 and 3
// (QEMU docs/interop/qcow2.txt; "qcow2.txt §X" below names its sections).
//
// This round reads: every cluster size qemu accepts (512 B to 2 MiB),
// standard and extended L2 entries (subclusters), zero clusters and zero
// subclusters, compressed clusters (zlib/raw deflate, and zstd when the
// compression type says so), a backing file (the core resolves it through
// its path policy and probes it, as for VMDK and VDI parents). Block status
// is reported per (sub)cluster: data, zero, or unallocated here.
//
// Refused by name: encryption (until the crypt filter can serve it),
// external data files, unknown incompatible feature bits (named from the
// feature name table when the image has one). A set dirty bit needs no
// refcount repair for reading (reads never consult refcounts).
//
// Writing (create, write, zero, discard, flush): images of either version
// with standard L2 entries and no internal snapshots. New clusters are
// appended at the end of the file; refcounts are kept consistent at every
// flush by ordering (qcow2.txt §Host cluster management; ARCHITECTURE.md
// crash rules): data, then the refcount blocks and refcount table that
// count the new clusters, then the L2 tables, then the L1 table and the
// header; references dropped by a rewrite or discard are uncounted only
// after the tables that dropped them are durable. A crash leaks clusters,
// never leaves an entry pointing at an uncounted one.
//
// Untrusted input: the header is validated by layout.cpp before any table
// is sized from it; the L1 table is bounded (32 MiB, and by the file);
// L2 tables are read one at a time into a bounded cache; every host offset
// an entry gives is checked against the file's end and the metadata it
// must not overlap (header cluster, L1 table, refcount table) before it is
// read; compressed clusters inflate into a one-cluster buffer.
#include "layout.hpp"

#include "vdkit/plugin.hpp"
#include "vdkit/text.hpp"

#include <libdeflate.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>
#include <vector>

using namespace vdkit;

namespace {
// The backing format extension holds QEMU's driver name (qcow2.txt: "backing
// file format name"), which is vdkit's format name except for VHD: QEMU calls
// it "vpc". Written in QEMU's spelling, answered in vdkit's.
std::string format_for_qemu(std::string_view vdkit_name) {
    return vdkit_name == "vhd" ? std::string("vpc") : std::string(vdkit_name);
}
std::string format_from_qemu(std::string_view qemu_name) {
    return qemu_name == "vpc" ? std::string("vhd") : std::string(qemu_name);
}
} // namespace
using namespace vdkit::qcow2;
using sdk::Context;
using sdk::Error;
using sdk::StoreRef;

namespace {

// Bytes of L2 tables kept in memory (at least a few tables whatever the
// cluster size).
constexpr uint64_t kL2CacheBytes = 32ull << 20;
constexpr size_t kMinL2Tables = 4;

class Qcow2Image {
public:
    ~Qcow2Image() {
        if (deflate_) libdeflate_free_decompressor(deflate_);
        if (zstd_) ZSTD_freeDCtx(zstd_);
    }

    static uint32_t probe(Context &ctx, StoreRef main, std::string_view) {
        const uint64_t size = main.size(ctx.get());
        if (size < 8) return VDKIT_PROBE_NO;
        unsigned char head[8];
        main.pread(ctx.get(), 0, head, sizeof head);
        return qcow2::probe(head, sizeof head) ? VDKIT_PROBE_CERTAIN : VDKIT_PROBE_NO;
    }

    static std::unique_ptr<Qcow2Image> open(Context &ctx, StoreRef main, std::string_view name, uint32_t flags) {
        auto img = std::make_unique<Qcow2Image>();
        img->main_ = main;
        img->name_ = std::string(name);
        img->load(ctx, flags & VDKIT_OPEN_WRITE);
        return img;
    }

    // New image (qcow2.txt §Header): cluster 0 the header, its extensions
    // and the backing name; then the refcount table, sized for the largest
    // file this disk can need, the refcount blocks counting the metadata,
    // and the L1 table. Options: compat (0.10: version 2, 1.1: version 3),
    // cluster-size.
    static std::unique_ptr<Qcow2Image> create(Context &ctx, StoreRef main, std::string_view name,
                                              const vdkit_create_params &p) {
        auto img = std::make_unique<Qcow2Image>();
        img->main_ = main;
        img->name_ = std::string(name);
        img->build(ctx, p);
        img->load(ctx, true);
        return img;
    }

    // qemu-img measure -O qcow2 (QEMU block/qcow2.c qcow2_measure and
    // qcow2_calc_prealloc_size, followed formula for formula so the two
    // tools agree): fully allocated = the header cluster, L2 tables for
    // every cluster (whole tables), the L1 table (whole clusters), the
    // refcount blocks and table for all of that (their fixed point), and the
    // data; required = the same less the data clusters no range touches.
    // vdkit's own images need less (create sizes its refcount table for the
    // largest file, but allocates L2 tables and refcount blocks as data
    // arrives), so both are upper bounds for vdkit's files.
    static void measure(Context &ctx, uint64_t size, const vdkit_extent *data, uint64_t count, vdkit_measure &out) {
        const uint64_t cs = ctx.config_uint("cluster-size").value_or(65536);
        if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1)))
            fail_static(VDKIT_E_INVALID_ARGUMENT, "cluster-size must be a power of two from 512 bytes to 2 MiB");
        if (size > UINT64_MAX - 2 * cs)
            fail_static(VDKIT_E_INVALID_ARGUMENT, "a disk of " + std::to_string(size) + " bytes is too large");
        const uint64_t virtual_size = (size + 511) / 512 * 512;
        const uint64_t aligned = (virtual_size + cs - 1) / cs * cs;
        uint64_t meta = cs; // header
        const uint64_t per_table = cs / 8;
        const uint64_t nl2e = (aligned / cs + per_table - 1) / per_table * per_table;
        meta += nl2e * 8;
        const uint64_t nl1e = (nl2e * 8 / cs + per_table - 1) / per_table * per_table;
        meta += nl1e * 8;
        // qcow2_refcount_metadata_size: 16-bit refcounts (what create writes).
        const uint64_t clusters = (meta + aligned) / cs, per_block = cs * 8 / 16;
        uint64_t table = 0, blocks = 0, n = 0, last = 0;
        do {
            last = n;
            blocks = (clusters + table + blocks + per_block - 1) / per_block;
            table = (blocks + per_table - 1) / per_table;
            n = clusters + blocks + table;
        } while (n != last);
        meta += (blocks + table) * cs;
        out.fully_allocated = meta + aligned;
        out.required = meta + sdk::units_touched(data, count, cs, 0, size) * cs;
    }

    void close(Context &ctx, bool) {
        if (writable_) flush(ctx);
    }

    void info(Context &, vdkit_image_info &out) {
        out.virtual_size = h_.size;
        out.granularity = h_.cluster_size();
        if (!writable_) out.flags |= VDKIT_IMAGE_READ_ONLY;
        if (has_backing())
            out.flags |= VDKIT_IMAGE_HAS_PARENT;
        else
            out.flags |= VDKIT_IMAGE_ZERO_INIT;
        subformat_ = h_.version == 2 ? "compat=0.10" : "compat=1.1";
        out.subformat = sdk::str(subformat_);
        if (h_.incompatible & kIncompatDirty) out.flags |= VDKIT_IMAGE_DIRTY;
    }

    // qemu-img info's "format-specific" data for qcow2 (qemu block/qcow2.c,
    // qcow2_get_specific_info), same names and meanings; the header fields
    // of qcow2.txt ("Header", incompatible and compatible feature bits,
    // refcount_order, compression type).
    std::string details(Context &) const {
        if (h_.version == 2)
            return "{\"compat\": \"0.10\", \"compression-type\": \"zlib\", \"refcount-bits\": " +
                   std::to_string(1u << h_.refcount_order) + "}";
        const auto flag = [](bool b) { return std::string(b ? "true" : "false"); };
        return std::string("{\"compat\": \"1.1\", \"compression-type\": ") +
               sdk::json_quote(h_.compression_type == kCompressionZlib ? "zlib" : "zstd") +
               ", \"lazy-refcounts\": " + flag(h_.compatible & kCompatLazyRefcounts) +
               ", \"refcount-bits\": " + std::to_string(1u << h_.refcount_order) +
               ", \"corrupt\": " + flag(h_.incompatible & kIncompatCorrupt) +
               ", \"extended-l2\": " + flag(h_.incompatible & kIncompatExtendedL2) + "}";
    }

    std::string parent_hint(Context &) { return has_backing() ? h_.backing_file : std::string(); }

    // The backing format extension (qcow2.txt §Header extensions, "Backing
    // file format name"): the core opens the backing file as this format
    // instead of probing it, so a raw backing file stays raw whatever its
    // guest wrote at its start (CVE-2008-2004), and a recorded format the
    // file does not carry is an error naming both. "" when none is recorded.
    std::string parent_format(Context &) { return has_backing() ? format_from_qemu(h_.backing_format) : std::string(); }

    // Header facts a user asks `qemu-img info` for (keys as qemu-img names
    // its create options).
    std::optional<std::string> metadata_get(Context &, std::string_view key) {
        for (const auto &[k, v] : metadata())
            if (k == key) return v;
        return std::nullopt;
    }
    std::vector<std::string> metadata_keys(Context &) {
        std::vector<std::string> keys;
        for (const auto &kv : metadata())
            keys.push_back(kv.first);
        return keys;
    }

    sdk::ReadResult read(Context &ctx, uint64_t off, void *buf, uint64_t len) {
        check_request(off, len);
        auto *out = static_cast<unsigned char *>(buf);
        const uint64_t unit = h_.subcluster_size();
        Mapping first = lookup(ctx, off);
        uint64_t n = std::min(len, unit - off % unit);
        // Extend the run while the next unit continues it (same kind; for
        // data, the next host bytes; compressed clusters one at a time).
        if (first.kind != Kind::compressed) {
            while (n < len) {
                const Mapping next = lookup(ctx, off + n);
                if (next.kind != first.kind) break;
                if (first.kind == Kind::data && next.host_offset != first.host_offset + (off % unit) + n) break;
                n += std::min(len - n, unit);
            }
        }
        switch (first.kind) {
        case Kind::unallocated:
            return {n, true};
        case Kind::zero:
            std::memset(out, 0, static_cast<size_t>(n));
            return {n, false};
        case Kind::data:
            pread_padded(ctx, out, n, first.host_offset + off % unit);
            return {n, false};
        case Kind::compressed: {
            const unsigned char *cluster = inflate_cluster(ctx, first, off);
            std::memcpy(out, cluster + off % h_.cluster_size(), static_cast<size_t>(n));
            return {n, false};
        }
        }
        return {n, true};
    }

    sdk::BlockStatus block_status(Context &ctx, uint64_t off, uint64_t len) {
        check_request(off, len);
        const uint64_t unit = h_.subcluster_size();
        const uint32_t status = state_of(lookup(ctx, off).kind);
        uint64_t n = std::min(len, unit - off % unit);
        // At most 4096 units per call (the caller asks again from where the
        // run ends), so a hostile virtual size over tiny (sub)clusters
        // cannot make one call walk billions of entries.
        for (uint64_t units = 1; n < len && units < (1u << 12) && state_of(lookup(ctx, off + n).kind) == status;
             ++units)
            n += std::min(len - n, unit);
        return {status, n};
    }

    sdk::WriteResult write(Context &ctx, uint64_t off, const void *buf, uint64_t len) {
        require_writable();
        check_request(off, len);
        touch(ctx);
        const auto *in = static_cast<const unsigned char *>(buf);
        const uint64_t cs = h_.cluster_size();
        uint64_t done = 0;
        while (done < len) {
            const uint64_t pos = off + done, c = pos >> h_.cluster_bits, within = pos % cs;
            const uint64_t span = cluster_span(c), n = std::min(len - done, span - within);
            const uint64_t entry = l2_entry(ctx, c);
            const Mapping m = lookup(ctx, pos);
            if (m.kind == Kind::data && (entry & kL2Copied)) {
                // Allocated here with refcount 1: in place.
                main_.pwrite(ctx.get(), m.host_offset + within, in + done, n);
            } else if (within == 0 && n == span) {
                // A whole cluster: an all-zero one is recorded, not written.
                if (sdk::is_zero(in + done, n) && (h_.version >= 3 || !has_backing()))
                    replace_entry(ctx, c, entry, h_.version >= 3 ? kL2ZeroFlag : 0);
                else
                    replace_entry(ctx, c, entry, allocate_data(ctx, in + done, n) | kL2Copied);
            } else if (m.kind == Kind::unallocated) {
                if (done > 0) break; // report what was written; the host comes back for the rest
                return {0, true, c * cs, span};
            } else {
                // Part of a zero, compressed or shared cluster: its content
                // (zeros, inflated, or read) with the new bytes, in a new cluster.
                std::vector<unsigned char> cluster(static_cast<size_t>(cs), 0);
                if (m.kind == Kind::compressed)
                    std::memcpy(cluster.data(), inflate_cluster(ctx, m, pos), cs);
                else if (m.kind == Kind::data)
                    pread_padded(ctx, cluster.data(), span, m.host_offset);
                std::memcpy(cluster.data() + within, in + done, static_cast<size_t>(n));
                replace_entry(ctx, c, entry, allocate_data(ctx, cluster.data(), span) | kL2Copied);
            }
            done += n;
        }
        return {done, false, 0, 0};
    }

    // Whole clusters (the host's granularity) read as zero from here on:
    // the zero flag in version 3; in version 2 an unallocated cluster
    // without a backing file, else zeros written as data.
    void write_zeroes(Context &ctx, uint64_t off, uint64_t len) {
        require_writable();
        check_request(off, len);
        touch(ctx);
        const uint64_t cs = h_.cluster_size();
        if (off % cs || (len % cs && off + len != h_.size))
            fail(VDKIT_E_INVALID_ARGUMENT, "write_zeroes needs whole clusters");
        std::vector<unsigned char> zeros;
        for (uint64_t c = off >> h_.cluster_bits; (c << h_.cluster_bits) < off + len; ++c) {
            const uint64_t entry = l2_entry(ctx, c);
            if (h_.version >= 3) {
                replace_entry(ctx, c, entry, kL2ZeroFlag);
            } else if (!has_backing()) {
                replace_entry(ctx, c, entry, 0);
            } else {
                zeros.assign(static_cast<size_t>(cs), 0);
                replace_entry(ctx, c, entry, allocate_data(ctx, zeros.data(), cluster_span(c)) | kL2Copied);
            }
        }
    }

    // Whole clusters become unallocated (the backing file shows through);
    // parts of clusters keep their data.
    void discard(Context &ctx, uint64_t off, uint64_t len) {
        require_writable();
        if (len == 0) return;
        check_request(off, len);
        touch(ctx);
        const uint64_t cs = h_.cluster_size();
        for (uint64_t c = (off + cs - 1) >> h_.cluster_bits; (c << h_.cluster_bits) < off + len; ++c) {
            if ((c << h_.cluster_bits) + cluster_span(c) > off + len) break;
            if (l1_[c / h_.l2_entries()] & kL1OffsetMask) replace_entry(ctx, c, l2_entry(ctx, c), 0);
        }
    }

    void flush(Context &ctx) {
        if (writable_) flush_metadata(ctx);
    }

    // Refcounts against references (qcow2.txt §Host cluster management):
    // every cluster the header, the L1/L2 tables, the refcount structures
    // and the data use, counted, is compared with its refcount. A refcount
    // above the references is a leak (a crash between the refcount update
    // and the table update leaves one); below them an error (a write could
    // reuse a cluster in use). Entries the reader would refuse are errors
    // too. Repair (-r) sets each mismatched refcount to the references,
    // which changes no data. Images with internal snapshots are checked
    // for their active tables only, without the refcount comparison.
    void check(Context &ctx, uint32_t flags, vdkit_check_result &r) {
        const sdk::CheckReporter report(ctx, flags, r);
        if (report.repairing()) require_writable();
        if (rt_.empty() && h_.refcount_table_clusters) {
            rt_.resize(static_cast<size_t>(uint64_t(h_.refcount_table_clusters) * h_.cluster_size() / 8));
            std::vector<unsigned char> raw(rt_.size() * 8);
            main_.pread(ctx.get(), h_.refcount_table_offset, raw.data(), raw.size());
            for (size_t i = 0; i < rt_.size(); ++i)
                rt_[i] = load_be(raw.data() + 8 * i, 8);
        }
        const uint64_t cs = h_.cluster_size();
        const uint64_t clusters = std::max<uint64_t>((file_size_ + cs - 1) / cs, next_free_);
        std::vector<uint32_t> refs(static_cast<size_t>(clusters), 0);
        auto use = [&](uint64_t off, uint64_t len) {
            for (uint64_t c = off / cs; c * cs < off + len && c < clusters; ++c)
                ++refs[static_cast<size_t>(c)];
        };
        use(0, cs);
        use(h_.l1_table_offset, uint64_t(h_.l1_size) * 8);
        use(h_.refcount_table_offset, uint64_t(h_.refcount_table_clusters) * cs);
        for (size_t ti = 0; ti < rt_.size(); ++ti)
            if (const uint64_t off = rt_[ti] & ~uint64_t(0x1ff)) use(off, cs);
        bool broken = false;
        for (uint64_t i = 0; i < h_.l1_size; ++i) {
            if (!(l1_[i] & kL1OffsetMask)) continue;
            std::vector<uint64_t> *t = nullptr;
            try {
                t = l2_table(ctx, i);
            } catch (const Error &e) {
                report(VDKIT_FINDING_ERROR, h_.l1_table_offset + 8 * i, e.what(), false);
                broken = true;
                continue;
            }
            use(l1_[i] & kL1OffsetMask, cs);
            const uint64_t step = h_.l2_entry_bytes() / 8;
            for (uint64_t j = 0; j < h_.l2_entries(); ++j) {
                const uint64_t entry = (*t)[static_cast<size_t>(j * step)];
                const uint64_t bitmap = step == 2 ? (*t)[static_cast<size_t>(j * 2 + 1)] : 0;
                const uint64_t at = (l1_[i] & kL1OffsetMask) + j * h_.l2_entry_bytes();
                Mapping m;
                if (auto err = decode_l2(h_, entry, bitmap, 0, m)) {
                    report(VDKIT_FINDING_ERROR, at, "L2 entry at byte " + std::to_string(at) + ": " + *err, false);
                    broken = true;
                    continue;
                }
                uint64_t off = 0, len = 0;
                if (m.kind == Kind::compressed) {
                    off = m.host_offset & ~uint64_t(511);
                    len = m.compressed_bytes + (m.host_offset & 511);
                } else if (entry & kL2OffsetMask) { // data, or zero/unallocated with a preallocated cluster
                    off = entry & kL2OffsetMask;
                    len = cs;
                }
                if (!len) continue;
                if (off >= file_size_) {
                    report(VDKIT_FINDING_ERROR, at,
                           "L2 entry at byte " + std::to_string(at) + " points at host offset " + std::to_string(off) +
                               ", past the end of the file",
                           false);
                    broken = true;
                    continue;
                }
                use(off, len);
            }
        }
        if (h_.nb_snapshots) {
            report(VDKIT_FINDING_NOTE, UINT64_MAX,
                   "the image has internal snapshots: their tables are not checked, nor the refcounts", false);
            return;
        }
        uint64_t fixed = 0;
        for (uint64_t c = 0; c < clusters; ++c) {
            const uint64_t rc = refcount(ctx, c), want = refs[static_cast<size_t>(c)];
            if (rc == want) continue;
            const bool leak = rc > want;
            if (!leak && broken) continue; // an entry already reported
            report(leak ? VDKIT_FINDING_LEAK : VDKIT_FINDING_ERROR, c * cs,
                   "cluster " + std::to_string(c) + " (offset " + std::to_string(c * cs) + ") has refcount " +
                       std::to_string(rc) + " but " + std::to_string(want) + " reference(s)" +
                       (leak ? " (leaked)" : "; a writer could reuse it") + "; repair sets the refcount",
                   true);
            if (report.repairing()) {
                if (!(rt_[static_cast<size_t>(c / refblock_entries())] & ~uint64_t(0x1ff)))
                    fail(VDKIT_E_NOT_SUPPORTED,
                         "cluster " + std::to_string(c) + " has no refcount block to repair it in");
                set_refcount(ctx, c, want);
                ++fixed;
            }
        }
        if (fixed) write_refcounts(ctx);
    }

    // A new virtual size (qcow2.txt §Header bytes 24-31, in whole 512-byte
    // sectors as qemu counts them). Growing: the L1 table grows when the
    // disk needs more entries than it has — a new table at the end of the
    // file, counted and written before the header names it (bytes 24-47 in
    // one write: size, crypt_method as it was, l1_size, l1_table_offset);
    // the old table's clusters are uncounted after. Shrinking (the host
    // passes VDKIT_RESIZE_SHRINK): every cluster past the new end is freed
    // first — data clusters and whole L2 tables, uncounted after the tables
    // that referenced them are durable — then the header; the L1 table
    // keeps its size (more entries than needed are allowed, qcow2.txt §Header
    // "l1_size"). Images with internal snapshots are refused by open.
    void resize(Context &ctx, uint64_t new_size, uint32_t flags) {
        require_writable();
        if (new_size == 0 || new_size % 512)
            fail(VDKIT_E_INVALID_ARGUMENT, "a qcow2 disk is a whole number of 512-byte sectors (qemu counts it so); " +
                                               std::to_string(new_size) + " bytes is not");
        if (new_size < h_.size && !(flags & VDKIT_RESIZE_SHRINK))
            fail(VDKIT_E_INVALID_ARGUMENT, "shrinking needs the shrink flag");
        touch(ctx);
        const uint64_t cs = h_.cluster_size(), span = h_.l2_span();
        if (new_size / span + (new_size % span != 0) > kMaxL1Bytes / 8)
            fail(VDKIT_E_INVALID_ARGUMENT, "a disk of " + std::to_string(new_size) +
                                               " bytes needs an L1 table over 32 MiB with " + std::to_string(cs) +
                                               "-byte clusters");
        const uint64_t l1_need = std::max<uint64_t>(1, new_size / span + (new_size % span != 0));
        if (new_size < h_.size) {
            // Clusters wholly past the new end: freed (the last partial one keeps its data).
            const uint64_t first = (new_size + cs - 1) >> h_.cluster_bits, last = (h_.size + cs - 1) >> h_.cluster_bits;
            for (uint64_t c = first; c < last; ++c) {
                if (!(l1_[c / h_.l2_entries()] & kL1OffsetMask)) {
                    c = (c / h_.l2_entries() + 1) * h_.l2_entries() - 1; // the whole table is unallocated
                    continue;
                }
                if (const uint64_t e = l2_entry(ctx, c)) replace_entry(ctx, c, e, 0);
            }
            // L2 tables wholly past the new end.
            for (uint64_t i = l1_need; i < h_.l1_size; ++i) {
                const uint64_t off = l1_[i] & kL1OffsetMask;
                if (!off) continue;
                l1_[i] = 0;
                l1_dirty_.insert(i);
                dirty_l2_.erase(off);
                l2_cache_.erase(off);
                l2_order_.erase(std::remove(l2_order_.begin(), l2_order_.end(), off), l2_order_.end());
                pending_release_.emplace_back(off, cs);
            }
            flush_metadata(ctx); // the tables no longer reference them, then they are uncounted
            write_size_and_l1(ctx, new_size, h_.l1_size, h_.l1_table_offset);
            return;
        }
        if (l1_need <= h_.l1_size) {
            flush_metadata(ctx);
            write_size_and_l1(ctx, new_size, h_.l1_size, h_.l1_table_offset);
            return;
        }
        // A larger L1 table: qemu's growth (1.5 times, at least what is needed).
        uint64_t entries =
            std::min<uint64_t>(kMaxL1Bytes / 8, std::max<uint64_t>(l1_need, uint64_t(h_.l1_size) * 3 / 2));
        entries = std::max(entries, l1_need);
        const uint64_t clusters = (entries * 8 + cs - 1) / cs;
        flush_metadata(ctx); // l1_ is what the file says
        const uint64_t off = alloc_contiguous(ctx, clusters) << h_.cluster_bits;
        write_refcounts(ctx); // 1. the new table's clusters are counted
        l1_.resize(static_cast<size_t>(entries), 0);
        std::vector<unsigned char> raw(static_cast<size_t>(clusters * cs), 0);
        for (size_t i = 0; i < l1_.size(); ++i)
            store_be(raw.data() + 8 * i, l1_[i], 8);
        main_.pwrite(ctx.get(), off, raw.data(), raw.size()); // 2. the new table
        main_.flush(ctx.get());
        const uint64_t old_off = h_.l1_table_offset, old_bytes = uint64_t(h_.l1_size) * 8;
        write_size_and_l1(ctx, new_size, static_cast<uint32_t>(entries), off); // 3. the header names it
        if (old_bytes) {                                                       // 4. the old table, uncounted
            pending_release_.emplace_back(old_off, old_bytes);
            flush_metadata(ctx);
        }
    }

    // Relink (commit, rebase, attach): the backing name and the backing
    // format extension are rewritten in the header cluster in one write;
    // every other extension is kept as it is (qcow2.txt §Additional fields:
    // unknown ones are preserved). An empty hint removes the backing file.
    void set_parent(Context &ctx, std::string_view hint, std::string_view format, const uint8_t *, const uint8_t *) {
        require_writable();
        if (hint.size() > kMaxBackingNameLength)
            fail(VDKIT_E_INVALID_ARGUMENT, "the backing file name exceeds 1023 bytes");
        flush_metadata(ctx);
        const uint64_t cs = h_.cluster_size();
        std::vector<unsigned char> head(static_cast<size_t>(cs), 0);
        main_.pread(ctx.get(), 0, head.data(), std::min(cs, file_size_));
        const uint64_t start = h_.header_length, end = h_.backing_file_offset ? h_.backing_file_offset : cs;
        std::vector<unsigned char> exts;
        for (uint64_t off = start; off + 8 <= end;) {
            const uint32_t type = static_cast<uint32_t>(load_be(head.data() + off, 4));
            const uint64_t len = load_be(head.data() + off + 4, 4), whole = 8 + ((len + 7) & ~uint64_t(7));
            if (type == kExtEnd || whole > end - off) break; // parse_header checked the lengths
            if (type != kExtBackingFormat)
                exts.insert(exts.end(), head.begin() + static_cast<long>(off),
                            head.begin() + static_cast<long>(off + whole));
            off += whole;
        }
        const std::string qemu_format = format_for_qemu(format);
        if (!hint.empty() && !qemu_format.empty()) {
            std::vector<unsigned char> e(8 + ((qemu_format.size() + 7) & ~size_t(7)), 0);
            store_be(e.data(), kExtBackingFormat, 4);
            store_be(e.data() + 4, qemu_format.size(), 4);
            std::memcpy(e.data() + 8, qemu_format.data(), qemu_format.size());
            exts.insert(exts.begin(), e.begin(), e.end());
        }
        exts.resize(exts.size() + 8, 0); // end of the extension area
        if (start + exts.size() + hint.size() > cs)
            fail(VDKIT_E_NOT_SUPPORTED,
                 "the backing file name does not fit the header cluster (" + std::to_string(cs) + " bytes)");
        std::fill(head.begin() + static_cast<long>(start), head.end(), 0);
        std::copy(exts.begin(), exts.end(), head.begin() + static_cast<long>(start));
        const uint64_t name_at = hint.empty() ? 0 : start + exts.size();
        store_be(head.data() + 8, name_at, 8);
        store_be(head.data() + 16, hint.size(), 4);
        if (!hint.empty()) std::memcpy(head.data() + name_at, hint.data(), hint.size());
        main_.pwrite(ctx.get(), 0, head.data(), head.size());
        main_.flush(ctx.get());
        h_.backing_file = std::string(hint);
        h_.backing_format = hint.empty() ? std::string() : qemu_format;
        h_.backing_file_offset = name_at;
        h_.backing_file_size = static_cast<uint32_t>(hint.size());
    }

private:
    [[noreturn]] void fail(uint32_t code, const std::string &why) const { throw Error(code, name_ + ": " + why); }
    [[noreturn]] static void fail_static(uint32_t code, const std::string &why) { throw Error(code, why); }
    [[noreturn]] void corrupt(const std::string &why) const { fail(VDKIT_E_CORRUPT, why); }

    bool has_backing() const { return !h_.backing_file.empty(); }

    void check_request(uint64_t off, uint64_t len) const {
        if (off >= h_.size || len > h_.size - off) fail(VDKIT_E_OUT_OF_RANGE, "request beyond the end of the disk");
    }

    static uint32_t state_of(Kind k) {
        switch (k) {
        case Kind::unallocated:
            return VDKIT_BLOCK_UNALLOCATED;
        case Kind::zero:
            return VDKIT_BLOCK_ZERO;
        default:
            return VDKIT_BLOCK_DATA;
        }
    }

    std::vector<std::pair<std::string, std::string>> metadata() const {
        std::vector<std::pair<std::string, std::string>> m;
        m.emplace_back("compat", h_.version == 2 ? "0.10" : "1.1");
        m.emplace_back("cluster-size", std::to_string(h_.cluster_size()));
        m.emplace_back("refcount-bits", std::to_string(1u << h_.refcount_order));
        m.emplace_back("compression-type", h_.compression_type == kCompressionZstd ? "zstd" : "zlib");
        m.emplace_back("extended-l2", h_.extended_l2() ? "on" : "off");
        m.emplace_back("lazy-refcounts", h_.compatible & kCompatLazyRefcounts ? "on" : "off");
        if (!h_.backing_format.empty()) m.emplace_back("backing-format", h_.backing_format);
        if (h_.incompatible & kIncompatDirty) m.emplace_back("dirty", "on");
        if (h_.incompatible & kIncompatCorrupt) m.emplace_back("corrupt", "on");
        if (h_.nb_snapshots) m.emplace_back("snapshots", std::to_string(h_.nb_snapshots));
        return m;
    }

    void load(Context &ctx, bool writable) {
        file_size_ = main_.size(ctx.get());
        // The header cluster: the fixed header first, to learn the cluster
        // size, then the whole cluster (extensions and backing name).
        unsigned char head[kV3HeaderLength]{};
        const uint64_t n = std::min<uint64_t>(file_size_, sizeof head);
        main_.pread(ctx.get(), 0, head, n);
        uint64_t cs = claimed_cluster_size(head, n);
        std::vector<unsigned char> cluster;
        if (cs) {
            cluster.resize(static_cast<size_t>(std::min(cs, file_size_)));
            main_.pread(ctx.get(), 0, cluster.data(), cluster.size());
        } else {
            cluster.assign(head, head + n); // parse_header names what is wrong
        }
        if (auto err = parse_header(cluster.data(), cluster.size(), file_size_, h_)) corrupt(*err);
        if (auto why = refusal(h_)) fail(VDKIT_E_NOT_SUPPORTED, *why);
        if (writable) require_writable_image();
        // The active L1 table, bounded by parse_header (32 MiB, inside the file).
        l1_.resize(h_.l1_size);
        if (h_.l1_size) {
            std::vector<unsigned char> raw(static_cast<size_t>(uint64_t(h_.l1_size) * 8));
            main_.pread(ctx.get(), h_.l1_table_offset, raw.data(), raw.size());
            for (uint32_t i = 0; i < h_.l1_size; ++i)
                l1_[i] = load_be(raw.data() + 8 * uint64_t(i), 8);
        }
        l2_cache_max_ = std::max<size_t>(kMinL2Tables, static_cast<size_t>(kL2CacheBytes / h_.cluster_size()));
        cluster_buf_.resize(static_cast<size_t>(h_.cluster_size()));
        if (!writable) return;
        // The refcount table (bounded to 8 MiB and the file by parse_header).
        rt_.resize(static_cast<size_t>(uint64_t(h_.refcount_table_clusters) * h_.cluster_size() / 8));
        std::vector<unsigned char> raw(rt_.size() * 8);
        main_.pread(ctx.get(), h_.refcount_table_offset, raw.data(), raw.size());
        for (size_t i = 0; i < rt_.size(); ++i)
            rt_[i] = load_be(raw.data() + 8 * i, 8);
        // New clusters go after everything in the file.
        next_free_ = (file_size_ + h_.cluster_size() - 1) >> h_.cluster_bits;
        writable_ = true;
    }

    // What writing needs (README.md "Writing"): refused by name otherwise.
    void require_writable_image() const {
        if (h_.incompatible & kIncompatCorrupt)
            fail(VDKIT_E_READ_ONLY, "the image is marked corrupt (incompatible feature bit 1): it opens read-only "
                                    "only; run 'qemu-img check -r all' on it");
        auto no = [&](const std::string &why) {
            fail(VDKIT_E_NOT_SUPPORTED, "vdkit cannot write this qcow2 image yet: " + why + " (it reads it)");
        };
        if (h_.incompatible & kIncompatDirty)
            no("the dirty bit is set (lazy refcounts: the refcounts must be rebuilt first; 'qemu-img check -r all')");
        if (h_.extended_l2()) no("it has extended L2 entries");
        if (h_.nb_snapshots) no("it has internal snapshots (shared clusters)");
        if (h_.refcount_table_clusters == 0) no("it has no refcount table");
    }

    // Metadata a host cluster of `bytes` at `offset` must not overlap.
    std::optional<std::string> overlaps_metadata(uint64_t offset, uint64_t bytes) const {
        auto hits = [&](uint64_t start, uint64_t len) { return len && offset < start + len && start < offset + bytes; };
        if (hits(0, h_.cluster_size())) return std::string("the header cluster");
        if (hits(h_.l1_table_offset, uint64_t(h_.l1_size) * 8)) return std::string("the L1 table");
        if (hits(h_.refcount_table_offset, uint64_t(h_.refcount_table_clusters) * h_.cluster_size()))
            return std::string("the refcount table");
        return std::nullopt;
    }

    // The L2 table L1 entry `index` points at, or null when unallocated.
    std::vector<uint64_t> *l2_table(Context &ctx, uint64_t index) {
        const uint64_t e = l1_[index];
        const uint64_t where = h_.l1_table_offset + index * 8;
        const std::string entry = "L1 entry " + std::to_string(index) + " (at byte " + std::to_string(where) + ")";
        if (e & kL1ReservedMask) corrupt(entry + " has reserved bits set");
        const uint64_t off = e & kL1OffsetMask;
        if (off == 0) return nullptr;
        if (off % h_.cluster_size())
            corrupt(entry + " points at L2 table offset " + std::to_string(off) + ", not aligned to a cluster");
        if (auto what = overlaps_metadata(off, h_.cluster_size()))
            corrupt(entry + " points at an L2 table at offset " + std::to_string(off) + ", over " + *what);
        if (off >= file_size_ || h_.cluster_size() > file_size_ - off)
            corrupt(entry + " points at an L2 table at offset " + std::to_string(off) + ", past the end of the file (" +
                    std::to_string(file_size_) + " bytes)");
        if (auto it = l2_cache_.find(off); it != l2_cache_.end()) return &it->second;
        make_room_in_l2_cache(ctx);
        main_.pread(ctx.get(), off, cluster_buf_.data(), cluster_buf_.size());
        std::vector<uint64_t> table(static_cast<size_t>(h_.cluster_size() / 8));
        for (size_t i = 0; i < table.size(); ++i)
            table[i] = load_be(cluster_buf_.data() + 8 * i, 8);
        l2_order_.push_back(off);
        return &(l2_cache_[off] = std::move(table));
    }

    // Evict the oldest clean L2 table when the cache is full; dirty ones
    // stay until a flush wrote them (made here when every table is dirty).
    void make_room_in_l2_cache(Context &ctx) {
        if (l2_cache_.size() < l2_cache_max_) return;
        if (dirty_l2_.size() >= l2_order_.size()) flush_metadata(ctx);
        for (auto it = l2_order_.begin(); it != l2_order_.end(); ++it)
            if (!dirty_l2_.count(*it)) {
                l2_cache_.erase(*it);
                l2_order_.erase(it);
                return;
            }
    }

    // What guest byte `off` (inside the disk) maps to, checked against the file.
    Mapping lookup(Context &ctx, uint64_t off) {
        const uint64_t cluster = off >> h_.cluster_bits;
        const uint64_t l1_index = cluster / h_.l2_entries();
        const uint64_t l2_index = cluster % h_.l2_entries();
        Mapping m;
        const std::vector<uint64_t> *table = l2_table(ctx, l1_index);
        if (!table) return m;
        const uint64_t entry = (*table)[static_cast<size_t>(l2_index * (h_.l2_entry_bytes() / 8))];
        const uint64_t bitmap = h_.extended_l2() ? (*table)[static_cast<size_t>(l2_index * 2 + 1)] : 0;
        const uint32_t sc =
            h_.extended_l2() ? static_cast<uint32_t>((off % h_.cluster_size()) / h_.subcluster_size()) : 0;
        auto where = [&] {
            return "the L2 entry of guest offset " + std::to_string(cluster << h_.cluster_bits) +
                   " (L2 table at byte " + std::to_string(l1_[l1_index] & kL1OffsetMask) + ", entry " +
                   std::to_string(l2_index) + ")";
        };
        if (auto err = decode_l2(h_, entry, bitmap, sc, m)) corrupt(where() + ": " + *err);
        if (m.kind == Kind::data || m.kind == Kind::compressed) {
            const uint64_t bytes = m.kind == Kind::data ? h_.subcluster_size() : 1;
            if (auto what = overlaps_metadata(m.host_offset, bytes))
                corrupt(where() + " points at host offset " + std::to_string(m.host_offset) + ", over " + *what);
            if (m.host_offset >= file_size_)
                corrupt(where() + " points at host offset " + std::to_string(m.host_offset) +
                        ", past the end of the file (" + std::to_string(file_size_) + " bytes)");
        }
        return m;
    }

    // ---- writing ------------------------------------------------------------

    void require_writable() const {
        if (!writable_) fail(VDKIT_E_READ_ONLY, "the image is open read-only");
    }

    // Guest bytes cluster c covers (the last one may be short).
    uint64_t cluster_span(uint64_t c) const {
        return std::min<uint64_t>(h_.cluster_size(), h_.size - (c << h_.cluster_bits));
    }

    // The raw L2 entry of guest cluster c (0 when its L2 table is unallocated).
    uint64_t l2_entry(Context &ctx, uint64_t c) {
        const std::vector<uint64_t> *t = l2_table(ctx, c / h_.l2_entries());
        return t ? (*t)[static_cast<size_t>(c % h_.l2_entries())] : 0;
    }

    // The first write after open clears the auto-clear bits (qcow2.txt
    // §Header bytes 88-95: an implementation that does not maintain what
    // they stand for, such as bitmaps, clears them before writing).
    void touch(Context &ctx) {
        if (touched_) return;
        touched_ = true;
        if (h_.version < 3 || h_.autoclear == 0) return;
        h_.autoclear = 0;
        unsigned char zero[8] = {};
        main_.pwrite(ctx.get(), 88, zero, 8);
        main_.flush(ctx.get());
    }

    // Point guest cluster c at `entry` (its L2 table allocated if need be);
    // what `old` referenced is uncounted at the next flush, after the
    // tables no longer reference it.
    void replace_entry(Context &ctx, uint64_t c, uint64_t old, uint64_t entry) {
        if (old == entry) return;
        const uint64_t i = c / h_.l2_entries();
        std::vector<uint64_t> *t = l2_table(ctx, i);
        if (!t) {
            if (entry == 0) return; // already unallocated
            const uint64_t off = alloc_cluster(ctx) << h_.cluster_bits;
            make_room_in_l2_cache(ctx);
            l2_order_.push_back(off);
            t = &(l2_cache_[off] = std::vector<uint64_t>(static_cast<size_t>(h_.l2_entries()), 0));
            l1_[i] = off | kL2Copied;
            l1_dirty_.insert(i);
        } else if (!(l1_[i] & kL2Copied)) {
            fail(VDKIT_E_NOT_SUPPORTED, "the L2 table of L1 entry " + std::to_string(i) +
                                            " is shared (no copied flag); writing shared tables is not implemented");
        }
        (*t)[static_cast<size_t>(c % h_.l2_entries())] = entry;
        dirty_l2_.insert(l1_[i] & kL1OffsetMask);
        Mapping m;
        if (!decode_l2(h_, old, 0, 0, m)) {
            if (m.kind == Kind::data) pending_release_.emplace_back(m.host_offset, h_.cluster_size());
            if (m.kind == Kind::compressed) // every cluster its sectors touch (qcow2.txt: "nb_csectors")
                pending_release_.emplace_back(m.host_offset & ~uint64_t(511),
                                              m.compressed_bytes + (m.host_offset & 511));
        }
    }

    // A new data cluster holding n bytes of data (zeros after them).
    uint64_t allocate_data(Context &ctx, const unsigned char *data, uint64_t n) {
        const uint64_t off = alloc_cluster(ctx) << h_.cluster_bits;
        main_.pwrite(ctx.get(), off, data, n);
        if (n < h_.cluster_size()) {
            std::vector<unsigned char> pad(static_cast<size_t>(h_.cluster_size() - n), 0);
            main_.pwrite(ctx.get(), off + n, pad.data(), pad.size());
        }
        return off;
    }

    // Refcount blocks (qcow2.txt §Host cluster management).
    uint64_t refblock_entries() const { return (h_.cluster_size() * 8) >> h_.refcount_order; }

    std::vector<unsigned char> &refblock(Context &ctx, uint64_t ti) {
        const uint64_t off = rt_[static_cast<size_t>(ti)] & ~uint64_t(0x1ff);
        if (auto it = rb_.find(off); it != rb_.end()) return it->second;
        if (off % h_.cluster_size() || off < h_.cluster_size() || off >= file_size_ ||
            h_.cluster_size() > file_size_ - off)
            corrupt("refcount table entry " + std::to_string(ti) + " points at offset " + std::to_string(off) +
                    ", not a cluster inside the file after the header");
        std::vector<unsigned char> b(static_cast<size_t>(h_.cluster_size()));
        main_.pread(ctx.get(), off, b.data(), b.size());
        return rb_[off] = std::move(b);
    }

    uint64_t refcount(Context &ctx, uint64_t idx) {
        const uint64_t ti = idx / refblock_entries();
        if (ti >= rt_.size() || !(rt_[static_cast<size_t>(ti)] & ~uint64_t(0x1ff))) return 0;
        const auto &b = refblock(ctx, ti);
        const uint64_t i = idx % refblock_entries(), bits = 1ull << h_.refcount_order;
        if (bits >= 8) return load_be(b.data() + i * bits / 8, static_cast<int>(bits / 8));
        return (b[static_cast<size_t>(i * bits / 8)] >> (i * bits % 8)) & ((1u << bits) - 1);
    }

    void set_refcount(Context &ctx, uint64_t idx, uint64_t v) {
        const uint64_t ti = idx / refblock_entries();
        auto &b = refblock(ctx, ti);
        const uint64_t i = idx % refblock_entries(), bits = 1ull << h_.refcount_order;
        if (bits < 64 && v >> bits) fail(VDKIT_E_NOT_SUPPORTED, "refcount overflow at cluster " + std::to_string(idx));
        if (bits >= 8) {
            store_be(b.data() + i * bits / 8, v, static_cast<int>(bits / 8));
        } else {
            unsigned char &byte = b[static_cast<size_t>(i * bits / 8)];
            const unsigned shift = static_cast<unsigned>(i * bits % 8), mask = ((1u << bits) - 1) << shift;
            byte = static_cast<unsigned char>((byte & ~mask) | ((v << shift) & mask));
        }
        rb_dirty_.insert(rt_[static_cast<size_t>(ti)] & ~uint64_t(0x1ff));
    }

    // The next free cluster at the end of the file, counted (a refcount
    // block that counts it is created first when none does: it is placed
    // in the range it counts, so it counts itself).
    uint64_t alloc_cluster(Context &ctx) {
        for (;;) {
            const uint64_t idx = next_free_, ti = idx / refblock_entries();
            if (ti >= rt_.size()) {
                grow_refcount_table(ctx);
                continue;
            }
            ++next_free_;
            file_size_ = std::max(file_size_, next_free_ << h_.cluster_bits);
            if (!(rt_[static_cast<size_t>(ti)] & ~uint64_t(0x1ff))) {
                const uint64_t off = idx << h_.cluster_bits;
                rb_[off] = std::vector<unsigned char>(static_cast<size_t>(h_.cluster_size()), 0);
                rt_[static_cast<size_t>(ti)] = off;
                rt_dirty_.insert(ti);
                set_refcount(ctx, idx, 1);
                continue;
            }
            if (refcount(ctx, idx) != 0) continue; // counted past the end of the file: leave it
            set_refcount(ctx, idx, 1);
            return idx;
        }
    }

    // A larger refcount table (qcow2.txt §Host cluster management: "the
    // refcount table [...] may be reallocated and grow"), placed at the end
    // of the file with the refcount blocks that count it, so it describes
    // itself. Crash order: data; every refcount block (the new ones count
    // the new table and themselves); the new table; then the header's
    // refcount_table_offset and refcount_table_clusters (bytes 48-59) in one
    // write. Until that write lands the old table is the image's, and it
    // still counts everything it did: a crash leaks the new clusters at
    // worst. The old table's clusters are uncounted at the next flush,
    // after the header no longer names them.
    void grow_refcount_table(Context &ctx) {
        const uint64_t cs = h_.cluster_size(), per_cluster = cs / 8, rbe = refblock_entries();
        const uint64_t old_clusters = rt_.size() / per_cluster;
        const uint64_t max_clusters = kMaxRefcountTableBytes / cs;
        // The clusters the new table and its refcount blocks take, placed at
        // next_free_: a table of `t` clusters and the blocks for whatever
        // in [start, end) no block counts yet.
        uint64_t t = std::max<uint64_t>(old_clusters + 1, old_clusters * 2);
        uint64_t start = next_free_, end = 0;
        for (;;) {
            if (old_clusters >= max_clusters || t > max_clusters) t = max_clusters;
            if (t <= old_clusters)
                fail(VDKIT_E_NOT_SUPPORTED, "the refcount table cannot grow past 8 MiB (" + std::to_string(rt_.size()) +
                                                " entries) to count a cluster at offset " +
                                                std::to_string(next_free_ * cs) + "; the image is as large as " +
                                                std::to_string(cs) + "-byte clusters allow");
            // Skip clusters already counted past the end of the file (a leak
            // a crash left): the table must be contiguous and free.
            for (uint64_t c = start; c < start + t; ++c)
                if (c / rbe < rt_.size() && refcount(ctx, c) != 0) start = c + 1;
            end = start + t;
            // New refcount blocks go after the table, one for each block
            // range [start, end) reaches that none counts; each may extend end.
            for (uint64_t ti = start / rbe; ti * rbe < end; ++ti)
                if (ti >= rt_.size() || !(rt_[static_cast<size_t>(ti)] & ~uint64_t(0x1ff))) ++end;
            if ((end - 1) / rbe < t * per_cluster) break; // the new table reaches its own end
            t = std::max(t + 1, t * 2);
        }
        // The new table in memory; on disk nothing names it before step 4.
        std::vector<uint64_t> nrt(static_cast<size_t>(t * per_cluster), 0);
        std::copy(rt_.begin(), rt_.end(), nrt.begin());
        rt_ = std::move(nrt);
        uint64_t next_block = start + t;
        for (uint64_t ti = start / rbe; ti * rbe < end; ++ti) {
            if (rt_[static_cast<size_t>(ti)] & ~uint64_t(0x1ff)) continue;
            const uint64_t off = next_block++ << h_.cluster_bits;
            rb_[off] = std::vector<unsigned char>(static_cast<size_t>(cs), 0);
            rt_[static_cast<size_t>(ti)] = off;
        }
        for (uint64_t c = start; c < end; ++c)
            set_refcount(ctx, c, 1);
        next_free_ = end;
        file_size_ = std::max(file_size_, end << h_.cluster_bits);
        // 1. data; 2. refcount blocks (old ones with pending counts, new ones).
        main_.flush(ctx.get());
        for (uint64_t off : rb_dirty_)
            main_.pwrite(ctx.get(), off, rb_.at(off).data(), cs);
        rb_dirty_.clear();
        main_.flush(ctx.get());
        // 3. the new table, whole.
        std::vector<unsigned char> raw(static_cast<size_t>(t * cs), 0);
        for (size_t i = 0; i < rt_.size(); ++i)
            store_be(raw.data() + 8 * i, rt_[i], 8);
        main_.pwrite(ctx.get(), start * cs, raw.data(), raw.size());
        main_.flush(ctx.get());
        // 4. the header names it (refcount_table_offset, refcount_table_clusters).
        unsigned char head[12];
        store_be(head, start * cs, 8);
        store_be(head + 8, t, 4);
        main_.pwrite(ctx.get(), 48, head, sizeof head);
        main_.flush(ctx.get());
        rt_dirty_.clear();
        const uint64_t old_off = h_.refcount_table_offset, old_bytes = uint64_t(h_.refcount_table_clusters) * cs;
        h_.refcount_table_offset = start * cs;
        h_.refcount_table_clusters = static_cast<uint32_t>(t);
        // 5. the old table's clusters, uncounted at the next flush.
        if (old_bytes) pending_release_.emplace_back(old_off, old_bytes);
    }

    // The header's size, l1_size and l1_table_offset (bytes 24-47, with
    // crypt_method between them as it is) in one write, flushed.
    void write_size_and_l1(Context &ctx, uint64_t size, uint32_t l1_size, uint64_t l1_off) {
        unsigned char head[24];
        store_be(head, size, 8);
        store_be(head + 8, h_.crypt_method, 4);
        store_be(head + 12, l1_size, 4);
        store_be(head + 16, l1_off, 8);
        main_.pwrite(ctx.get(), 24, head, sizeof head);
        main_.flush(ctx.get());
        h_.size = size;
        h_.l1_size = l1_size;
        h_.l1_table_offset = l1_off;
        l1_.resize(l1_size, 0);
    }

    // `n` contiguous new clusters at the end of the file, counted. The
    // refcount blocks the range needs go right after it (with small
    // clusters a range spans many blocks, so they cannot sit inside it);
    // the refcount table grows first when it cannot reach them. Returns the
    // first cluster's index.
    uint64_t alloc_contiguous(Context &ctx, uint64_t n) {
        const uint64_t rbe = refblock_entries();
        for (;;) {
            uint64_t start = next_free_;
            // Skip clusters counted past the end of the file (a leak a crash left).
            for (uint64_t c = start; c < start + n; ++c)
                if (c / rbe < rt_.size() && refcount(ctx, c) != 0) start = c + 1;
            uint64_t end = start + n;
            for (uint64_t ti = start / rbe; ti * rbe < end; ++ti)
                if (ti >= rt_.size() || !(rt_[static_cast<size_t>(ti)] & ~uint64_t(0x1ff))) ++end;
            if ((end - 1) / rbe >= rt_.size()) {
                next_free_ = std::max(next_free_, start);
                grow_refcount_table(ctx);
                continue;
            }
            uint64_t next_block = start + n;
            for (uint64_t ti = start / rbe; ti * rbe < end; ++ti) {
                if (rt_[static_cast<size_t>(ti)] & ~uint64_t(0x1ff)) continue;
                const uint64_t off = next_block++ << h_.cluster_bits;
                rb_[off] = std::vector<unsigned char>(static_cast<size_t>(h_.cluster_size()), 0);
                rt_[static_cast<size_t>(ti)] = off;
                rt_dirty_.insert(ti);
            }
            for (uint64_t c = start; c < end; ++c)
                set_refcount(ctx, c, 1);
            next_free_ = end;
            file_size_ = std::max(file_size_, end << h_.cluster_bits);
            return start;
        }
    }

    // Make everything written so far durable, in the order that keeps the
    // refcounts consistent at every step (file header comment).
    void flush_metadata(Context &ctx) {
        main_.flush(ctx.get()); // 1. data
        if (!rb_dirty_.empty() || !rt_dirty_.empty()) {
            write_refcounts(ctx); // 2. the new clusters are counted
        }
        if (!dirty_l2_.empty()) { // 3. L2 tables
            std::vector<unsigned char> raw(static_cast<size_t>(h_.cluster_size()));
            for (uint64_t off : dirty_l2_) {
                const auto &t = l2_cache_.at(off);
                for (size_t i = 0; i < t.size(); ++i)
                    store_be(raw.data() + 8 * i, t[i], 8);
                main_.pwrite(ctx.get(), off, raw.data(), raw.size());
            }
            dirty_l2_.clear();
            main_.flush(ctx.get());
        }
        if (!l1_dirty_.empty()) { // 4. the L1 table
            for (auto it = l1_dirty_.begin(); it != l1_dirty_.end();) {
                const uint64_t first = *it;
                uint64_t last = first;
                for (++it; it != l1_dirty_.end() && *it == last + 1; ++it)
                    ++last;
                std::vector<unsigned char> raw(static_cast<size_t>((last - first + 1) * 8));
                for (uint64_t i = first; i <= last; ++i)
                    store_be(raw.data() + 8 * (i - first), l1_[i], 8);
                main_.pwrite(ctx.get(), h_.l1_table_offset + first * 8, raw.data(), raw.size());
            }
            l1_dirty_.clear();
            main_.flush(ctx.get());
        }
        if (!pending_release_.empty()) { // 5. what no table references any more
            for (const auto &[off, len] : pending_release_)
                for (uint64_t c = off >> h_.cluster_bits; (c << h_.cluster_bits) < off + len; ++c)
                    if (const uint64_t rc = refcount(ctx, c)) set_refcount(ctx, c, rc - 1);
            pending_release_.clear();
            write_refcounts(ctx);
        }
    }

    void write_refcounts(Context &ctx) {
        for (uint64_t off : rb_dirty_)
            main_.pwrite(ctx.get(), off, rb_.at(off).data(), h_.cluster_size());
        rb_dirty_.clear();
        main_.flush(ctx.get());
        if (rt_dirty_.empty()) return;
        for (uint64_t ti : rt_dirty_) {
            unsigned char raw[8];
            store_be(raw, rt_[static_cast<size_t>(ti)], 8);
            main_.pwrite(ctx.get(), h_.refcount_table_offset + ti * 8, raw, 8);
        }
        rt_dirty_.clear();
        main_.flush(ctx.get());
    }

    // The file of a new image (create()).
    void build(Context &ctx, const vdkit_create_params &p) {
        const std::string compat = ctx.config("compat").value_or("1.1");
        const uint64_t cs = ctx.config_uint("cluster-size").value_or(65536);
        if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1)))
            fail(VDKIT_E_INVALID_ARGUMENT, "cluster-size must be a power of two from 512 bytes to 2 MiB");
        // Preallocation (qemu-img's option of the same name): metadata gives
        // every guest cluster its L2 entry and data cluster now (the file
        // reads as zero there); falloc also allocates the data on the file
        // system, full writes its zeros. --preallocate (VDKIT_CREATE_FIXED)
        // means full unless the option names a mode.
        std::string prealloc = ctx.config("preallocation").value_or("off");
        if ((p.flags & VDKIT_CREATE_FIXED) && prealloc == "off") prealloc = "full";
        if (prealloc != "off" && prealloc != "metadata" && prealloc != "falloc" && prealloc != "full")
            fail(VDKIT_E_INVALID_ARGUMENT,
                 "preallocation must be off, metadata, falloc or full, not '" + prealloc + "'");
        if (prealloc != "off" && (p.flags & VDKIT_CREATE_DIFF))
            fail(VDKIT_E_INVALID_ARGUMENT, "a differencing qcow2 cannot be preallocated (its clusters would hide the "
                                           "backing file; qemu-img refuses it too)");
        const uint32_t bits = static_cast<uint32_t>(__builtin_ctzll(cs));
        const uint32_t version = compat == "0.10" ? 2 : 3;
        // qemu counts a qcow2 disk in whole 512-byte sectors (it rounds the
        // header's size down): a size that is not one is rounded up, as
        // qemu-img create does, so no byte of the disk is out of qemu's sight.
        if (p.size > UINT64_MAX - 511)
            fail(VDKIT_E_INVALID_ARGUMENT, "a disk of " + std::to_string(p.size) + " bytes is too large");
        const uint64_t size = (p.size + 511) / 512 * 512;
        const uint64_t l2_span = (cs / 8) * cs;
        const uint64_t l1_size = std::max<uint64_t>(1, size / l2_span + (size % l2_span != 0));
        if (l1_size * 8 > kMaxL1Bytes)
            fail(VDKIT_E_INVALID_ARGUMENT, "a disk of " + std::to_string(size) +
                                               " bytes needs an L1 table over 32 MiB with " + std::to_string(cs) +
                                               "-byte clusters; choose a larger cluster-size");
        const uint64_t l1_clusters = (l1_size * 8 + cs - 1) / cs;
        // The refcount table counts the largest file the disk can need:
        // every data cluster, L2 table and refcount block, with room to spare.
        const uint64_t rbe = cs * 8 / 16; // 16-bit refcounts (refcount_order 4)
        const uint64_t data_clusters = size / cs + 1;
        uint64_t rt_clusters = 1, total = 0;
        for (int round = 0; round < 8; ++round) {
            total = 1 + rt_clusters + l1_clusters + data_clusters + l1_size;
            total += total / rbe + 2; // the refcount blocks themselves
            total += total / 8 + 16;  // slack
            const uint64_t need = ((total + rbe - 1) / rbe * 8 + cs - 1) / cs;
            if (need <= rt_clusters) break;
            rt_clusters = need;
        }
        if (rt_clusters * cs > kMaxRefcountTableBytes)
            fail(VDKIT_E_INVALID_ARGUMENT, "a disk of " + std::to_string(size) +
                                               " bytes needs a refcount table over 8 MiB with " + std::to_string(cs) +
                                               "-byte clusters; choose a larger cluster-size");
        // Layout: header, refcount table, refcount blocks for the metadata,
        // L1; preallocated: every L2 table and then every data cluster.
        const uint64_t pre_l2 = prealloc == "off" ? 0 : l1_size;
        const uint64_t pre_data = prealloc == "off" ? 0 : (size + cs - 1) / cs;
        uint64_t meta_rbs = 1;
        while ((1 + rt_clusters + meta_rbs + l1_clusters + pre_l2 + pre_data + rbe - 1) / rbe > meta_rbs)
            ++meta_rbs;
        if (meta_rbs > rt_clusters * cs / 8)
            fail(VDKIT_E_INTERNAL, "the refcount table is too small for the preallocation");
        const uint64_t rt_off = cs, rb_off = rt_off + rt_clusters * cs, l1_off = rb_off + meta_rbs * cs;
        const uint64_t meta = 1 + rt_clusters + meta_rbs + l1_clusters; // clusters
        const uint64_t l2_off = meta * cs, data_off = l2_off + pre_l2 * cs;
        const uint64_t used = meta + pre_l2 + pre_data; // clusters counted
        // Cluster 0: header, extensions, backing name.
        std::vector<unsigned char> head(static_cast<size_t>(cs), 0);
        const uint32_t hlen = version == 2 ? kV2HeaderLength : kV3HeaderLength;
        store_be(head.data(), kMagic, 4);
        store_be(head.data() + 4, version, 4);
        store_be(head.data() + 20, bits, 4);
        store_be(head.data() + 24, size, 8);
        store_be(head.data() + 36, l1_size, 4);
        store_be(head.data() + 40, l1_off, 8);
        store_be(head.data() + 48, rt_off, 8);
        store_be(head.data() + 56, rt_clusters, 4);
        if (version == 3) {
            store_be(head.data() + 96, 4, 4);
            store_be(head.data() + 100, hlen, 4);
        }
        uint64_t pos = hlen;
        const std::string hint(sdk::view(p.parent_hint)), fmt = format_for_qemu(sdk::view(p.parent_format));
        const bool diff = (p.flags & VDKIT_CREATE_DIFF) && !hint.empty();
        auto room = [&](uint64_t n) {
            if (pos + n > cs)
                fail(VDKIT_E_INVALID_ARGUMENT, "the backing file name and format do not fit the " + std::to_string(cs) +
                                                   "-byte header cluster; choose a larger cluster-size");
        };
        if (diff && !fmt.empty()) { // qcow2.txt §Header extensions: backing file format name
            room(8 + ((fmt.size() + 7) & ~size_t(7)));
            store_be(head.data() + pos, kExtBackingFormat, 4);
            store_be(head.data() + pos + 4, fmt.size(), 4);
            std::memcpy(head.data() + pos + 8, fmt.data(), fmt.size());
            pos += 8 + ((fmt.size() + 7) & ~size_t(7));
        }
        room(8);
        pos += 8; // end of the extension area (type 0)
        if (diff) {
            if (hint.size() > kMaxBackingNameLength)
                fail(VDKIT_E_INVALID_ARGUMENT, "the backing file name exceeds 1023 bytes");
            room(hint.size());
            store_be(head.data() + 8, pos, 8);
            store_be(head.data() + 16, hint.size(), 4);
            std::memcpy(head.data() + pos, hint.data(), hint.size());
        }
        // Refcounts of every cluster in use, in the first refcount blocks
        // (written one block at a time: a preallocated terabyte has many).
        std::vector<unsigned char> rt(static_cast<size_t>(rt_clusters * cs), 0), block(static_cast<size_t>(cs));
        for (uint64_t i = 0; i < meta_rbs; ++i)
            store_be(rt.data() + 8 * i, rb_off + i * cs, 8);
        main_.truncate(ctx.get(), used * cs);
        main_.pwrite(ctx.get(), rt_off, rt.data(), rt.size());
        for (uint64_t i = 0; i < meta_rbs; ++i) {
            std::fill(block.begin(), block.end(), 0);
            for (uint64_t c = i * rbe; c < std::min(used, (i + 1) * rbe); ++c)
                store_be(block.data() + 2 * (c - i * rbe), 1, 2);
            main_.pwrite(ctx.get(), rb_off + i * cs, block.data(), block.size());
        }
        if (pre_l2) {
            // The L1 table names every L2 table, each entry every data cluster.
            std::vector<unsigned char> l1(static_cast<size_t>(l1_clusters * cs), 0);
            for (uint64_t i = 0; i < l1_size; ++i)
                store_be(l1.data() + 8 * i, (l2_off + i * cs) | kL2Copied, 8);
            main_.pwrite(ctx.get(), l1_off, l1.data(), l1.size());
            const uint64_t per = cs / 8;
            for (uint64_t i = 0; i < pre_l2; ++i) {
                std::fill(block.begin(), block.end(), 0);
                for (uint64_t j = 0; j < per && i * per + j < pre_data; ++j)
                    store_be(block.data() + 8 * j, (data_off + (i * per + j) * cs) | kL2Copied, 8);
                main_.pwrite(ctx.get(), l2_off + i * cs, block.data(), block.size());
            }
            if (prealloc == "falloc") {
                main_.zero(ctx.get(), data_off, pre_data * cs);
            } else if (prealloc == "full") {
                std::vector<unsigned char> zeros(static_cast<size_t>(std::min<uint64_t>(pre_data * cs, 4u << 20)), 0);
                for (uint64_t at = 0; at < pre_data * cs; at += zeros.size())
                    main_.pwrite(ctx.get(), data_off + at, zeros.data(),
                                 std::min<uint64_t>(zeros.size(), pre_data * cs - at));
            }
        }
        main_.flush(ctx.get());
        main_.pwrite(ctx.get(), 0, head.data(), head.size()); // the header last: a cut create is no image
        main_.flush(ctx.get());
    }

    // Read n bytes at `at`; bytes past the end of the file read as zeros
    // (a last cluster the file's end cuts, as qemu reads it).
    void pread_padded(Context &ctx, unsigned char *buf, uint64_t n, uint64_t at) {
        const uint64_t avail = at < file_size_ ? std::min(n, file_size_ - at) : 0;
        if (avail) main_.pread(ctx.get(), at, buf, avail);
        if (avail < n) std::memset(buf + avail, 0, static_cast<size_t>(n - avail));
    }

    // The guest cluster holding `off`, inflated from the compressed stream
    // m describes (qcow2.txt §Cluster mapping: "decompression stops when it
    // has produced a cluster of data"). Cached: the last cluster only.
    const unsigned char *inflate_cluster(Context &ctx, const Mapping &m, uint64_t off) {
        const uint64_t cs = h_.cluster_size();
        if (inflated_valid_ && inflated_host_ == m.host_offset && inflated_bytes_ == m.compressed_bytes)
            return inflated_.data();
        const uint64_t in_len = std::min(m.compressed_bytes, file_size_ - m.host_offset);
        compressed_.resize(static_cast<size_t>(in_len));
        main_.pread(ctx.get(), m.host_offset, compressed_.data(), in_len);
        inflated_.resize(static_cast<size_t>(cs));
        inflated_valid_ = false;
        const std::string where = "the compressed cluster of guest offset " + std::to_string(off / cs * cs) + " (" +
                                  std::to_string(in_len) + " bytes at host offset " + std::to_string(m.host_offset) +
                                  ")";
        if (h_.compression_type == kCompressionZstd)
            inflate_zstd(where);
        else
            inflate_zlib(where);
        inflated_host_ = m.host_offset;
        inflated_bytes_ = m.compressed_bytes;
        inflated_valid_ = true;
        return inflated_.data();
    }

    // Raw deflate (qemu writes window bits -12). libdeflate first; a stream
    // longer than a cluster (valid: decoding stops at a full cluster) is
    // decoded by zlib, which can stop there.
    void inflate_zlib(const std::string &where) {
        if (!deflate_ && !(deflate_ = libdeflate_alloc_decompressor()))
            fail(VDKIT_E_NO_MEMORY, "no memory for a decompressor");
        size_t out = 0;
        const auto rc = libdeflate_deflate_decompress_ex(deflate_, compressed_.data(), compressed_.size(),
                                                         inflated_.data(), inflated_.size(), nullptr, &out);
        if (rc == LIBDEFLATE_SUCCESS && out == inflated_.size()) return;
        if (rc == LIBDEFLATE_SUCCESS)
            corrupt(where + " inflates to " + std::to_string(out) + " bytes, less than a cluster");
        if (rc != LIBDEFLATE_INSUFFICIENT_SPACE) corrupt(where + " is not a valid deflate stream");
        z_stream z{};
        if (inflateInit2(&z, -15) != Z_OK) fail(VDKIT_E_NO_MEMORY, "zlib inflateInit2 failed");
        z.next_in = compressed_.data();
        z.avail_in = static_cast<uInt>(compressed_.size());
        z.next_out = inflated_.data();
        z.avail_out = static_cast<uInt>(inflated_.size());
        const int zr = inflate(&z, Z_FINISH);
        const bool full = z.avail_out == 0;
        inflateEnd(&z);
        if (!full || (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR))
            corrupt(where + " does not inflate to a cluster (zlib " + std::to_string(zr) + ")");
    }

    // zstd (compression_type 1): streaming, so decoding stops at a full
    // cluster as the spec says; the window is bounded so a hostile frame
    // cannot make the decoder allocate more than a few MiB.
    void inflate_zstd(const std::string &where) {
        if (!zstd_) {
            if (!(zstd_ = ZSTD_createDCtx())) fail(VDKIT_E_NO_MEMORY, "no memory for a zstd decompressor");
            ZSTD_DCtx_setParameter(zstd_, ZSTD_d_windowLogMax, 22);
        }
        ZSTD_DCtx_reset(zstd_, ZSTD_reset_session_only);
        ZSTD_inBuffer in{compressed_.data(), compressed_.size(), 0};
        ZSTD_outBuffer out{inflated_.data(), inflated_.size(), 0};
        while (out.pos < out.size) {
            const size_t in_before = in.pos, out_before = out.pos;
            const size_t rc = ZSTD_decompressStream(zstd_, &out, &in);
            if (ZSTD_isError(rc)) corrupt(where + " is not a valid zstd stream (" + ZSTD_getErrorName(rc) + ")");
            if (in.pos == in_before && out.pos == out_before)
                corrupt(where + " ends after " + std::to_string(out.pos) + " bytes of a cluster");
        }
    }

    StoreRef main_;
    std::string name_;
    Header h_;
    uint64_t file_size_ = 0;
    std::string subformat_;
    std::vector<uint64_t> l1_;
    std::unordered_map<uint64_t, std::vector<uint64_t>> l2_cache_; // by host offset
    std::deque<uint64_t> l2_order_;                                // oldest first
    size_t l2_cache_max_ = kMinL2Tables;
    std::vector<unsigned char> cluster_buf_;
    std::vector<unsigned char> compressed_, inflated_;
    uint64_t inflated_host_ = 0, inflated_bytes_ = 0;
    bool inflated_valid_ = false;
    libdeflate_decompressor *deflate_ = nullptr;
    ZSTD_DCtx *zstd_ = nullptr;
    // Writing.
    bool writable_ = false;
    bool touched_ = false;
    uint64_t next_free_ = 0;                                       // cluster index of the next allocation
    std::vector<uint64_t> rt_;                                     // the refcount table
    std::unordered_map<uint64_t, std::vector<unsigned char>> rb_;  // refcount blocks by offset
    std::set<uint64_t> rb_dirty_, rt_dirty_, dirty_l2_, l1_dirty_; // not yet written
    std::vector<std::pair<uint64_t, uint64_t>> pending_release_;   // host ranges to uncount after the tables
};

constexpr vdkit_config_key kKeys[] = {
    sdk::key("compat", VDKIT_KEY_ENUM, "1.1", "qcow2 version: 0.10 (version 2) or 1.1 (version 3, zero clusters).",
             VDKIT_KEY_CREATE_ONLY, "0.10|1.1"),
    sdk::key("cluster-size", VDKIT_KEY_SIZE, "64k", "Cluster size, a power of two from 512 bytes to 2 MiB.",
             VDKIT_KEY_CREATE_ONLY, {}, 512, 2 << 20),
    sdk::key("preallocation", VDKIT_KEY_ENUM, "off",
             "off; metadata (every L2 entry and data cluster allocated now); falloc (and the data allocated on the "
             "file system); full (and written with zeros). --preallocate means full.",
             VDKIT_KEY_CREATE_ONLY, "off|metadata|falloc|full"),
};
constexpr vdkit_str kExtensions[] = {sdk::str("qcow2")};

const vdkit_plugin_descriptor *qcow2_format() {
    static const vdkit_plugin_descriptor d = sdk::describe(
        VDKIT_KIND_FORMAT,
        sdk::DescriptorSpec{"qcow2", "0.2.0", "QEMU copy-on-write images, versions 2 and 3",
                            VDKIT_CAP_CREATE_DYNAMIC | VDKIT_CAP_CREATE_FIXED | VDKIT_CAP_DIFF | VDKIT_CAP_DISCARD |
                                VDKIT_CAP_FILE_BASED | VDKIT_CAP_METADATA | VDKIT_CAP_ZERO_STATE | VDKIT_CAP_CHECK,
                            kKeys, static_cast<uint32_t>(std::size(kKeys)), kExtensions,
                            static_cast<uint32_t>(std::size(kExtensions))},
        sdk::format_ops<Qcow2Image>());
    return &d;
}

} // namespace

VDKIT_SDK_ENTRY(qcow2_format())
