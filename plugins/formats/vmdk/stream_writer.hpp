// Writing streamOptimized extents (VMware "Virtual Disk Format 5.0" technote,
// "Stream-Optimized Compressed Sparse Extents"), in the layout ovftool and
// ESXi use: a version-3 header with the grain directory at the end,
// compressed grains with markers, then grain tables, the grain directory,
// a footer and the end-of-stream marker.
//
// Grains are compressed (zlib streams, by libdeflate) on worker threads and
// appended in the order they were submitted, so the output is identical
// whatever the thread count. Worker threads only compress: every call into
// the host (store writes) happens on the thread that called write(),
// flush() or finish(), with that call's context.
//
// The extent is written once, front to back: a grain can be written while
// it is the grain being filled or a later one; writing an earlier grain
// again fails with VDKIT_E_NOT_SUPPORTED. All-zero grains are left out.
#ifndef VDKIT_VMDK_STREAM_WRITER_HPP
#define VDKIT_VMDK_STREAM_WRITER_HPP

#include "vdkit/plugin.hpp"

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vdkit::vmdk {

class StreamWriter {
public:
    // threads: compression workers (0 = one per CPU); level: 1..12 (libdeflate).
    StreamWriter(sdk::StoreRef store, std::string name, uint64_t capacity_sectors, uint64_t grain_sectors,
                 unsigned threads, int level);
    ~StreamWriter();
    StreamWriter(const StreamWriter &) = delete;
    StreamWriter &operator=(const StreamWriter &) = delete;

    // Header and embedded descriptor (at most 20 sectors).
    void begin(sdk::Context &ctx, const std::string &descriptor);
    sdk::WriteResult write(sdk::Context &ctx, uint64_t offset, const void *buf, uint64_t len);
    // Zeros over grains not written yet cost nothing (they stay absent).
    void zero(sdk::Context &ctx, uint64_t offset, uint64_t len);
    // Write out every grain compressed so far (not the one being filled).
    void flush(sdk::Context &ctx);
    // The last grain, the tables, footer and end-of-stream marker.
    void finish(sdk::Context &ctx);
    bool finished() const { return finished_; }

private:
    struct Job {
        uint64_t grain = 0;
        std::vector<unsigned char> data;   // the grain, uncompressed
        std::vector<unsigned char> output; // marker + zlib stream, padded to 512
        bool done = false;
        std::string error;
    };

    uint64_t grain_bytes(uint64_t grain) const;
    void submit(sdk::Context &ctx, uint64_t grain, const unsigned char *data, uint64_t len);
    void flush_pending(sdk::Context &ctx);
    // Append finished jobs in order; wait for the oldest while more than
    // `keep` are in flight.
    void collect(sdk::Context &ctx, size_t keep);
    void append(sdk::Context &ctx, const unsigned char *p, size_t n);
    void write_staged(sdk::Context &ctx);
    void worker();
    [[noreturn]] void fail(uint32_t code, const std::string &why) const;

    sdk::StoreRef store_;
    std::string name_;
    uint64_t capacity_ = 0; // sectors
    uint64_t grain_ = 0;    // sectors per grain
    uint64_t grains_ = 0;
    int level_ = 6;
    std::vector<uint32_t> gte_; // sector of each grain's marker, 0 = absent

    // The grain being filled by partial writes.
    uint64_t pending_grain_ = UINT64_MAX;
    std::vector<unsigned char> pending_;
    uint64_t next_grain_ = 0; // grains before this one are final

    // Output: bytes staged for one large write at staged_at_.
    std::vector<unsigned char> staged_;
    uint64_t staged_at_ = 0;
    uint64_t end_ = 0; // file offset after everything appended
    bool finished_ = false;

    // Worker pool.
    std::mutex mu_;
    std::condition_variable work_cv_, done_cv_;
    std::deque<Job *> queue_;
    std::deque<std::unique_ptr<Job>> inflight_; // submission order; owned here
    std::vector<std::thread> workers_;
    size_t max_inflight_ = 0;
    bool stop_ = false;
};

} // namespace vdkit::vmdk

#endif
