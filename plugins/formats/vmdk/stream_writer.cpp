#include "stream_writer.hpp"

#include "sparse_extent.hpp"

#include "vdkit/endian.hpp"

#include <libdeflate.h>

#include <algorithm>
#include <cstring>

namespace vdkit::vmdk {

namespace {

using sdk::store_le;

constexpr uint64_t kSector = 512;
constexpr uint64_t kGtEntries = 512;
constexpr uint64_t kGtSectors = kGtEntries * 4 / kSector;
constexpr uint64_t kDescriptorSectors = 20;
constexpr uint64_t kOverheadSectors = 128; // grains start at 64 KiB, as ovftool writes
constexpr size_t kStageBytes = 128u << 10; // one store write per this many bytes
constexpr uint32_t kMarkerEos = 0, kMarkerGt = 1, kMarkerGd = 2, kMarkerFooter = 3;

// A metadata marker sector: val = sectors that follow, size 0, type.
void metadata_marker(unsigned char *sector, uint64_t val, uint32_t type) {
    std::memset(sector, 0, kSector);
    store_le(sector, val, 8);
    store_le(sector + 12, type, 4);
}

SparseHeader stream_header(uint64_t capacity, uint64_t grain, uint64_t gd_offset) {
    SparseHeader h;
    h.version = 3; // ESXi refuses streamOptimized extents of older versions
    h.flags = kFlagNewlineTest | kFlagCompressed | kFlagMarkers;
    h.capacity = capacity;
    h.grain_size = grain;
    h.descriptor_offset = 1;
    h.descriptor_size = kDescriptorSectors;
    h.gtes_per_gt = kGtEntries;
    h.rgd_offset = 0;
    h.gd_offset = gd_offset;
    h.overhead = std::max(kOverheadSectors, grain);
    h.compress_algorithm = 1; // deflate (zlib streams in practice)
    return h;
}

} // namespace

StreamWriter::StreamWriter(sdk::StoreRef store, std::string name, uint64_t capacity, uint64_t grain, unsigned threads,
                           int level)
    : store_(store), name_(std::move(name)), capacity_(capacity), grain_(grain), level_(level) {
    grains_ = (capacity + grain - 1) / grain;
    if (grains_ > (64ull << 20))
        fail(VDKIT_E_INVALID_ARGUMENT, "too many grains for a stream; use a larger grain-size");
    gte_.assign(static_cast<size_t>(grains_), 0);
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    threads = std::min(threads, 64u);
    max_inflight_ = threads * 2; // enough to keep every compressor busy; each holds a grain and its output
    for (unsigned i = 0; i < threads; ++i)
        workers_.emplace_back([this] { worker(); });
}

StreamWriter::~StreamWriter() {
    {
        std::lock_guard<std::mutex> l(mu_);
        stop_ = true;
    }
    work_cv_.notify_all();
    for (auto &t : workers_)
        t.join();
}

void StreamWriter::fail(uint32_t code, const std::string &why) const {
    throw sdk::Error(code, name_ + ": " + why);
}

uint64_t StreamWriter::grain_bytes(uint64_t grain) const {
    return std::min(grain_, capacity_ - grain * grain_) * kSector;
}

void StreamWriter::worker() {
    libdeflate_compressor *c = libdeflate_alloc_compressor(level_);
    std::vector<unsigned char> scratch;
    for (;;) {
        Job *job = nullptr;
        {
            std::unique_lock<std::mutex> l(mu_);
            work_cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
            if (stop_) break;
            job = queue_.front();
            queue_.pop_front();
        }
        std::string error;
        if (!c) {
            error = "cannot allocate a compressor";
        } else {
            // Grain marker: LBA (u64), compressed size (u32), then the zlib
            // stream, padded to a sector. Compressed into this worker's
            // scratch buffer, so a waiting job holds only its real size.
            const size_t bound = libdeflate_zlib_compress_bound(c, job->data.size());
            if (scratch.size() < 12 + bound) scratch.resize(12 + bound);
            const size_t n =
                libdeflate_zlib_compress(c, job->data.data(), job->data.size(), scratch.data() + 12, bound);
            if (n == 0) {
                error = "compression failed";
            } else {
                store_le(scratch.data(), job->grain * grain_, 8);
                store_le(scratch.data() + 8, n, 4);
                job->output.assign(static_cast<size_t>((12 + n + kSector - 1) / kSector * kSector), 0);
                std::memcpy(job->output.data(), scratch.data(), 12 + n);
            }
        }
        job->data = {};
        {
            std::lock_guard<std::mutex> l(mu_);
            job->error = std::move(error);
            job->done = true;
        }
        done_cv_.notify_all();
    }
    if (c) libdeflate_free_compressor(c);
}

void StreamWriter::begin(sdk::Context &ctx, const std::string &descriptor) {
    if (descriptor.size() > kDescriptorSectors * kSector) fail(VDKIT_E_INTERNAL, "descriptor does not fit 20 sectors");
    const SparseHeader h = stream_header(capacity_, grain_, kGdAtEnd);
    std::vector<unsigned char> head(static_cast<size_t>(h.overhead * kSector), 0);
    encode_sparse_header(h, head.data());
    std::memcpy(head.data() + kSector, descriptor.data(), descriptor.size());
    store_.truncate(ctx.get(), 0);
    store_.pwrite(ctx.get(), 0, head.data(), head.size());
    end_ = staged_at_ = head.size();
}

void StreamWriter::submit(sdk::Context &ctx, uint64_t grain, const unsigned char *data, uint64_t len) {
    next_grain_ = grain + 1;
    if (sdk::is_zero(data, len)) return; // absent grains read as zero
    auto job = std::make_unique<Job>();
    job->grain = grain;
    job->data.assign(data, data + len);
    {
        std::lock_guard<std::mutex> l(mu_);
        queue_.push_back(job.get());
        inflight_.push_back(std::move(job));
    }
    work_cv_.notify_one();
    collect(ctx, max_inflight_);
}

void StreamWriter::collect(sdk::Context &ctx, size_t keep) {
    for (;;) {
        std::unique_ptr<Job> job;
        {
            std::unique_lock<std::mutex> l(mu_);
            if (inflight_.empty()) return;
            if (!inflight_.front()->done) {
                if (inflight_.size() <= keep) return;
                done_cv_.wait(l, [&] { return inflight_.front()->done; });
            }
            job = std::move(inflight_.front());
            inflight_.pop_front();
        }
        if (!job->error.empty()) fail(VDKIT_E_IO, "grain " + std::to_string(job->grain) + ": " + job->error);
        const uint64_t sector = end_ / kSector;
        if (sector > UINT32_MAX)
            fail(VDKIT_E_OUT_OF_RANGE, "a stream extent cannot grow beyond 2 TiB of compressed data");
        gte_[job->grain] = static_cast<uint32_t>(sector);
        append(ctx, job->output.data(), job->output.size());
    }
}

void StreamWriter::append(sdk::Context &ctx, const unsigned char *p, size_t n) {
    if (staged_.capacity() < kStageBytes) staged_.reserve(kStageBytes + n); // no doubling past the stage size
    staged_.insert(staged_.end(), p, p + n);
    end_ += n;
    if (staged_.size() >= kStageBytes) write_staged(ctx);
}

void StreamWriter::write_staged(sdk::Context &ctx) {
    if (staged_.empty()) return;
    store_.pwrite(ctx.get(), staged_at_, staged_.data(), staged_.size());
    staged_at_ += staged_.size();
    staged_.clear();
}

void StreamWriter::flush_pending(sdk::Context &ctx) {
    if (pending_grain_ == UINT64_MAX) return;
    const uint64_t g = pending_grain_;
    pending_grain_ = UINT64_MAX;
    submit(ctx, g, pending_.data(), grain_bytes(g));
}

sdk::WriteResult StreamWriter::write(sdk::Context &ctx, uint64_t offset, const void *buf, uint64_t len) {
    if (finished_) fail(VDKIT_E_READ_ONLY, "the stream is complete");
    const auto *in = static_cast<const unsigned char *>(buf);
    const uint64_t gb = grain_ * kSector;
    uint64_t done = 0;
    while (done < len) {
        const uint64_t pos = offset + done, g = pos / gb, within = pos % gb;
        const uint64_t n = std::min(len - done, grain_bytes(g) - within);
        if (g != pending_grain_) {
            if (g < next_grain_)
                fail(VDKIT_E_NOT_SUPPORTED, "streamOptimized images are written front to back once; grain " +
                                                std::to_string(g) + " is already written");
            flush_pending(ctx);
            if (within == 0 && n == grain_bytes(g)) { // a whole grain goes straight out
                submit(ctx, g, in + done, n);
                done += n;
                continue;
            }
            pending_grain_ = g;
            pending_.assign(static_cast<size_t>(grain_bytes(g)), 0);
            next_grain_ = g + 1;
        }
        std::memcpy(pending_.data() + within, in + done, static_cast<size_t>(n));
        if (within + n == grain_bytes(g)) flush_pending(ctx); // complete: no need to wait for more
        done += n;
    }
    return {len, false, 0, 0};
}

void StreamWriter::zero(sdk::Context &, uint64_t offset, uint64_t len) {
    if (finished_) fail(VDKIT_E_READ_ONLY, "the stream is complete");
    const uint64_t gb = grain_ * kSector;
    for (uint64_t pos = offset; pos < offset + len;) {
        const uint64_t g = pos / gb, within = pos % gb;
        const uint64_t n = std::min(offset + len - pos, grain_bytes(g) - within);
        if (g == pending_grain_)
            std::memset(pending_.data() + within, 0, static_cast<size_t>(n));
        else if (g < next_grain_ && gte_[g] != 0)
            fail(VDKIT_E_NOT_SUPPORTED, "grain " + std::to_string(g) + " of the stream is already written");
        pos += n;
    }
}

void StreamWriter::flush(sdk::Context &ctx) {
    if (finished_) return;
    collect(ctx, 0);
    write_staged(ctx);
}

void StreamWriter::finish(sdk::Context &ctx) {
    if (finished_) return;
    flush_pending(ctx);
    collect(ctx, 0);
    // Grain tables that hold a grain, each behind a GT marker; empty ones stay 0 in the directory.
    const uint64_t tables = (grains_ + kGtEntries - 1) / kGtEntries;
    std::vector<uint32_t> gd(static_cast<size_t>(tables), 0);
    std::vector<unsigned char> sector(kSector), table(kGtSectors * kSector);
    for (uint64_t t = 0; t < tables; ++t) {
        const uint64_t first = t * kGtEntries, last = std::min(grains_, first + kGtEntries);
        if (std::all_of(gte_.begin() + static_cast<long>(first), gte_.begin() + static_cast<long>(last),
                        [](uint32_t v) { return v == 0; }))
            continue;
        metadata_marker(sector.data(), kGtSectors, kMarkerGt);
        append(ctx, sector.data(), sector.size());
        std::fill(table.begin(), table.end(), 0);
        for (uint64_t i = first; i < last; ++i)
            store_le(table.data() + (i - first) * 4, gte_[i], 4);
        gd[t] = static_cast<uint32_t>(end_ / kSector);
        append(ctx, table.data(), table.size());
    }
    const uint64_t gd_sectors = (tables * 4 + kSector - 1) / kSector;
    metadata_marker(sector.data(), gd_sectors, kMarkerGd);
    append(ctx, sector.data(), sector.size());
    const uint64_t gd_offset = end_ / kSector;
    std::vector<unsigned char> gd_bytes(static_cast<size_t>(gd_sectors * kSector), 0);
    for (uint64_t t = 0; t < tables; ++t)
        store_le(gd_bytes.data() + t * 4, gd[t], 4);
    append(ctx, gd_bytes.data(), gd_bytes.size());
    // Footer: the header again with the real directory offset, then end of stream.
    metadata_marker(sector.data(), 1, kMarkerFooter);
    append(ctx, sector.data(), sector.size());
    encode_sparse_header(stream_header(capacity_, grain_, gd_offset), sector.data());
    append(ctx, sector.data(), sector.size());
    metadata_marker(sector.data(), 0, kMarkerEos);
    append(ctx, sector.data(), sector.size());
    write_staged(ctx);
    store_.truncate(ctx.get(), end_);
    store_.flush(ctx.get());
    finished_ = true;
}

} // namespace vdkit::vmdk
