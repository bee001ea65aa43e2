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
// feature name table when the image has one). Opening for writing is
// refused: writing qcow2 is not implemented yet (README.md). A set dirty
// bit needs no refcount repair for reading (reads never consult refcounts).
//
// Untrusted input: the header is validated by layout.cpp before any table
// is sized from it; the L1 table is bounded (32 MiB, and by the file);
// L2 tables are read one at a time into a bounded cache; every host offset
// an entry gives is checked against the file's end and the metadata it
// must not overlap (header cluster, L1 table, refcount table) before it is
// read; compressed clusters inflate into a one-cluster buffer.
#include "layout.hpp"

#include "vdkit/plugin.hpp"

#include <libdeflate.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <unordered_map>
#include <vector>

using namespace vdkit;
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

    void info(Context &, vdkit_image_info &out) {
        out.virtual_size = h_.size;
        out.granularity = h_.cluster_size();
        out.flags |= VDKIT_IMAGE_READ_ONLY;
        if (has_backing()) out.flags |= VDKIT_IMAGE_HAS_PARENT;
        else out.flags |= VDKIT_IMAGE_ZERO_INIT;
        subformat_ = h_.version == 2 ? "compat=0.10" : "compat=1.1";
        out.subformat = sdk::str(subformat_);
    }

    std::string parent_hint(Context &) { return has_backing() ? h_.backing_file : std::string(); }

    // Header facts a user asks `qemu-img info` for (keys as qemu-img names
    // its create options).
    std::optional<std::string> metadata_get(Context &, std::string_view key) {
        for (const auto &[k, v] : metadata())
            if (k == key) return v;
        return std::nullopt;
    }
    std::vector<std::string> metadata_keys(Context &) {
        std::vector<std::string> keys;
        for (const auto &kv : metadata()) keys.push_back(kv.first);
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
        case Kind::unallocated: return {n, true};
        case Kind::zero: std::memset(out, 0, static_cast<size_t>(n)); return {n, false};
        case Kind::data: pread_padded(ctx, out, n, first.host_offset + off % unit); return {n, false};
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
        while (n < len && state_of(lookup(ctx, off + n).kind) == status) n += std::min(len - n, unit);
        return {status, n};
    }

private:
    [[noreturn]] void fail(uint32_t code, const std::string &why) const { throw Error(code, name_ + ": " + why); }
    [[noreturn]] void corrupt(const std::string &why) const { fail(VDKIT_E_CORRUPT, why); }

    bool has_backing() const { return !h_.backing_file.empty(); }

    void check_request(uint64_t off, uint64_t len) const {
        if (off >= h_.size || len > h_.size - off) fail(VDKIT_E_OUT_OF_RANGE, "request beyond the end of the disk");
    }

    static uint32_t state_of(Kind k) {
        switch (k) {
        case Kind::unallocated: return VDKIT_BLOCK_UNALLOCATED;
        case Kind::zero: return VDKIT_BLOCK_ZERO;
        default: return VDKIT_BLOCK_DATA;
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
        if (writable) {
            if (h_.incompatible & kIncompatCorrupt)
                fail(VDKIT_E_READ_ONLY, "the image is marked corrupt (incompatible feature bit 1): it opens read-only "
                                        "only; run 'qemu-img check -r all' on it");
            fail(VDKIT_E_READ_ONLY, "vdkit reads qcow2 images; writing them is not implemented yet "
                                    "(plugins/formats/qcow2/README.md)");
        }
        // The active L1 table, bounded by parse_header (32 MiB, inside the file).
        l1_.resize(h_.l1_size);
        if (h_.l1_size) {
            std::vector<unsigned char> raw(static_cast<size_t>(uint64_t(h_.l1_size) * 8));
            main_.pread(ctx.get(), h_.l1_table_offset, raw.data(), raw.size());
            for (uint32_t i = 0; i < h_.l1_size; ++i) l1_[i] = load_be(raw.data() + 8 * uint64_t(i), 8);
        }
        l2_cache_max_ = std::max<size_t>(kMinL2Tables, static_cast<size_t>(kL2CacheBytes / h_.cluster_size()));
        cluster_buf_.resize(static_cast<size_t>(h_.cluster_size()));
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
    const std::vector<uint64_t> *l2_table(Context &ctx, uint64_t index) {
        const uint64_t e = l1_[index];
        const uint64_t where = h_.l1_table_offset + index * 8;
        const std::string entry = "L1 entry " + std::to_string(index) + " (at byte " + std::to_string(where) + ")";
        if (e & kL1ReservedMask) corrupt(entry + " has reserved bits set");
        const uint64_t off = e & kL1OffsetMask;
        if (off == 0) return nullptr;
        if (off % h_.cluster_size()) corrupt(entry + " points at L2 table offset " + std::to_string(off) + ", not aligned to a cluster");
        if (auto what = overlaps_metadata(off, h_.cluster_size()))
            corrupt(entry + " points at an L2 table at offset " + std::to_string(off) + ", over " + *what);
        if (off >= file_size_ || h_.cluster_size() > file_size_ - off)
            corrupt(entry + " points at an L2 table at offset " + std::to_string(off) + ", past the end of the file (" +
                    std::to_string(file_size_) + " bytes)");
        if (auto it = l2_cache_.find(off); it != l2_cache_.end()) return &it->second;
        if (l2_cache_.size() >= l2_cache_max_) {
            l2_cache_.erase(l2_order_.front());
            l2_order_.pop_front();
        }
        main_.pread(ctx.get(), off, cluster_buf_.data(), cluster_buf_.size());
        std::vector<uint64_t> table(static_cast<size_t>(h_.cluster_size() / 8));
        for (size_t i = 0; i < table.size(); ++i) table[i] = load_be(cluster_buf_.data() + 8 * i, 8);
        l2_order_.push_back(off);
        return &(l2_cache_[off] = std::move(table));
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
        const uint32_t sc = h_.extended_l2() ? static_cast<uint32_t>((off % h_.cluster_size()) / h_.subcluster_size()) : 0;
        auto where = [&] {
            return "the L2 entry of guest offset " + std::to_string(cluster << h_.cluster_bits) + " (L2 table at byte " +
                   std::to_string(l1_[l1_index] & kL1OffsetMask) + ", entry " + std::to_string(l2_index) + ")";
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
        const std::string where = "the compressed cluster of guest offset " + std::to_string(off / cs * cs) +
                                  " (" + std::to_string(in_len) + " bytes at host offset " +
                                  std::to_string(m.host_offset) + ")";
        if (h_.compression_type == kCompressionZstd) inflate_zstd(where);
        else inflate_zlib(where);
        inflated_host_ = m.host_offset;
        inflated_bytes_ = m.compressed_bytes;
        inflated_valid_ = true;
        return inflated_.data();
    }

    // Raw deflate (qemu writes window bits -12). libdeflate first; a stream
    // longer than a cluster (valid: decoding stops at a full cluster) is
    // decoded by zlib, which can stop there.
    void inflate_zlib(const std::string &where) {
        if (!deflate_ && !(deflate_ = libdeflate_alloc_decompressor())) fail(VDKIT_E_NO_MEMORY, "no memory for a decompressor");
        size_t out = 0;
        const auto rc = libdeflate_deflate_decompress_ex(deflate_, compressed_.data(), compressed_.size(), inflated_.data(),
                                                         inflated_.size(), nullptr, &out);
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
};

constexpr vdkit_str kExtensions[] = {sdk::str("qcow2")};

const vdkit_plugin_descriptor *qcow2_format() {
    static const vdkit_plugin_descriptor d = sdk::describe(
        VDKIT_KIND_FORMAT,
        sdk::DescriptorSpec{"qcow2", "0.1.0", "QEMU copy-on-write images, versions 2 and 3 (read-only)",
                            VDKIT_CAP_DIFF | VDKIT_CAP_FILE_BASED | VDKIT_CAP_METADATA | VDKIT_CAP_ZERO_STATE, nullptr,
                            0, kExtensions, static_cast<uint32_t>(std::size(kExtensions))},
        sdk::format_ops<Qcow2Image>());
    return &d;
}

} // namespace

VDKIT_SDK_ENTRY(qcow2_format())
