// Library::copy — the convert pipeline (VDCopyEx, VixDiskLib_Clone,
// qemu-img convert).
//
// 1. The source's allocation map is walked once, whole-disk queries, into a
//    list of runs; the bytes of data in it are the progress total. Nothing
//    here grows with the virtual size: a 1 TiB disk holding 8 MiB costs a
//    handful of map queries and 8 MiB of reads.
// 2. Workers (CopyOptions::threads) take jobs from that list — a piece of a
//    data run up to the next buffer boundary, or a whole zero run — read the
//    data and split it into target units that are all zero and units that
//    are not. Reads run in parallel (Disk reads are concurrent).
// 3. Writes happen in job order by default: a worker whose job is next writes
//    and hands the turn on, so the target file's layout is the same as a
//    single-threaded copy's. With out_of_order each worker writes as soon as
//    it has read (the Disk serialises the writes themselves). A sequential
//    target (a stream) is always written in order.
// The first error stops every worker and is returned; progress is reported
// after each job (a zero job reports no bytes, but the callback can cancel
// there too), from one thread at a time.
#include "disk/disk_state.hpp"
#include "host/host.hpp"
#include "util/util.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace vdkit {

namespace {

struct Run {
    uint64_t offset = 0, length = 0;
    bool data = false; // false: reads as zero (zero record or unallocated)
};

struct Job {
    uint64_t seq = 0, offset = 0, length = 0;
    bool data = false;
};

// What the copy must do, from the maps alone: `data` runs to read and
// write, and `zero` runs to make read as zero in the target. A zero target
// needs no zero runs; otherwise only where the target holds data now.
std::vector<Run> plan_runs(const Ranges &data, const Ranges &zero, uint64_t &data_bytes) {
    std::vector<Run> runs;
    data_bytes = 0;
    size_t j = 0;
    for (const auto &[a, b] : data) {
        for (; j < zero.size() && zero[j].first < a; ++j) runs.push_back(Run{zero[j].first, zero[j].second - zero[j].first, false});
        runs.push_back(Run{a, b - a, true});
        data_bytes += b - a;
    }
    for (; j < zero.size(); ++j) runs.push_back(Run{zero[j].first, zero[j].second - zero[j].first, false});
    return runs;
}

// The most a zero job covers: a zero run is split at multiples of it (a
// multiple of every target unit).
constexpr uint64_t kZeroJob = 1ull << 30;

class Pipeline {
public:
    Pipeline(const Disk &src, Disk &dst, const CopyOptions &o, std::vector<Run> runs, uint64_t total, uint64_t unit,
             uint64_t buffer, bool in_order, bool skip_zero_units)
        : src_(src), dst_(dst), options_(o), runs_(std::move(runs)), total_(total), unit_(unit), buffer_(buffer),
          in_order_(in_order), skip_zero_units_(skip_zero_units) {}

    Status run(unsigned threads) {
        VDKIT_TRY(report(0));
        std::vector<std::thread> workers;
        // Threads beyond the first are a speed-up: if one cannot start, the
        // others (at least this one) still finish the copy.
        for (unsigned i = 1; i < threads; ++i) {
            try {
                workers.emplace_back([this] { work(); });
            } catch (const std::exception &) {
                break;
            }
        }
        work();
        for (auto &t : workers) t.join();
        if (options_.wrote) *options_.wrote = wrote_.load();
        return first_error_;
    }

private:
    // The next job, or false when there is none or the copy failed.
    bool take(Job &job) {
        std::lock_guard lock(mu_);
        if (!first_error_ || run_index_ >= runs_.size()) return false;
        const Run &r = runs_[run_index_];
        const uint64_t pos = r.offset + run_pos_;
        uint64_t len = r.length - run_pos_;
        // A data job fills at most one buffer and ends on a target unit
        // boundary (or the run's end), so a unit is never split between two
        // jobs, whatever the alignment of the run it came from.
        if (r.data) len = std::min(len, buffer_ - pos % unit_);
        // A zero run is zeroed a bounded piece at a time, so that a copy
        // into a large device that holds data (it must be zeroed) still
        // notices a cancel between pieces.
        else len = std::min(len, kZeroJob - pos % kZeroJob);
        job = Job{next_seq_++, pos, len, r.data};
        run_pos_ += len;
        if (run_pos_ == r.length) ++run_index_, run_pos_ = 0;
        return true;
    }

    void work() {
        std::vector<unsigned char> buf;
        try {
            buf.resize(static_cast<size_t>(buffer_));
        } catch (const std::bad_alloc &) {
            fail(Status(VDKIT_E_NO_MEMORY, "no memory for a copy buffer of " + std::to_string(buffer_) + " bytes"));
            return;
        }
        Job job;
        while (take(job)) {
            Status st = job.data ? src_.read(job.offset, buf.data(), job.length) : Status::ok();
            if (in_order_) {
                std::unique_lock lock(mu_);
                turn_.wait(lock, [&] { return next_write_ == job.seq || !first_error_; });
                if (!first_error_) return;
            }
            if (st) st = write(job, buf.data());
            if (in_order_) {
                std::lock_guard lock(mu_);
                ++next_write_;
            }
            turn_.notify_all();
            if (!st) return fail(st);
            // After a zero job too (0 bytes of data): the callback may cancel.
            Status reported = report(job.data ? job.length : 0);
            if (!reported) return fail(reported);
        }
    }

    // Write one job: a zero run is written as zeros (the plan has only those
    // the target needs); in a data run, units that read as zero are skipped
    // when the target reads zero there and written as zero ranges otherwise.
    Status write(const Job &job, const unsigned char *buf) {
        if (!job.data) return wrote(dst_.write_zeroes(job.offset, job.length));
        const uint64_t end = job.offset + job.length;
        uint64_t span_start = job.offset;
        bool span_zero = false;
        auto flush_span = [&](uint64_t span_end) -> Status {
            if (span_end == span_start) return Status::ok();
            const uint64_t n = span_end - span_start;
            if (!span_zero) return wrote(dst_.write(span_start, buf + (span_start - job.offset), n));
            return skip_zero_units_ ? Status::ok() : wrote(dst_.write_zeroes(span_start, n));
        };
        for (uint64_t p = job.offset; p < end;) {
            const uint64_t piece_end = std::min(end, (p / unit_ + 1) * unit_);
            const bool zero = util::is_zero(buf + (p - job.offset), static_cast<size_t>(piece_end - p));
            if (p == span_start) {
                span_zero = zero;
            } else if (zero != span_zero) {
                VDKIT_TRY(flush_span(p));
                span_start = p;
                span_zero = zero;
            }
            p = piece_end;
        }
        return flush_span(end);
    }

    // Notes a write to the target that succeeded (CopyOptions::wrote).
    Status wrote(Status st) {
        if (st) wrote_ = true;
        return st;
    }

    Status report(uint64_t bytes) {
        std::lock_guard lock(progress_mu_);
        done_ += bytes;
        if (options_.progress && !options_.progress(done_, total_))
            return Status(VDKIT_E_CANCELLED, "copy cancelled after " + std::to_string(done_) + " bytes");
        return Status::ok();
    }

    void fail(const Status &st) {
        {
            std::lock_guard lock(mu_);
            if (first_error_) first_error_ = st;
        }
        turn_.notify_all();
    }

    const Disk &src_;
    Disk &dst_;
    const CopyOptions &options_;
    const std::vector<Run> runs_;
    const uint64_t total_, unit_, buffer_;
    const bool in_order_, skip_zero_units_;

    std::mutex mu_; // guards the job cursor, the write turn and first_error_
    std::condition_variable turn_;
    size_t run_index_ = 0;
    uint64_t run_pos_ = 0, next_seq_ = 0, next_write_ = 0;
    Status first_error_ = Status::ok();

    std::mutex progress_mu_;
    uint64_t done_ = 0;
    std::atomic<bool> wrote_{false};
};

} // namespace

Status Library::copy(const Disk &src, Disk &dst, const CopyOptions &options) const {
    if (!dst.writable()) return Status(VDKIT_E_READ_ONLY, "the copy target is open read-only");
    if (dst.size() < src.size())
        return Status(VDKIT_E_OUT_OF_RANGE, "the copy target (" + std::to_string(dst.size()) +
                                                " bytes) is smaller than the source (" + std::to_string(src.size()) +
                                                ")");
    if (options.threads > 64)
        return Status(VDKIT_E_INVALID_ARGUMENT,
                      "copy threads must be 1..64 (0: automatic), not " + std::to_string(options.threads));
    const unsigned threads = options.threads ? options.threads : std::clamp(std::thread::hardware_concurrency(), 2u, 4u);
    VDKIT_ASSIGN_OR_RETURN(ImageInfo target, dst.image_info(dst.image_count() - 1));
    // Zeros are found per target unit (at least 4 KiB, at most 64 MiB): a unit
    // left unwritten stays unallocated; a unit with any data is written whole,
    // so the format never has to fill it from zeros first (nor a worker hold a
    // second, copy-on-write buffer): data runs are widened to whole units,
    // the source's holes inside them read as zeros.
    constexpr uint64_t kMinUnit = 4096, kMaxUnit = 64ull << 20;
    const uint64_t unit = std::clamp<uint64_t>(target.granularity, kMinUnit, kMaxUnit);
    // A sequential target (a stream) compresses on its own threads and keeps
    // its own queue; its readers only stay ahead of it, with smaller buffers.
    constexpr uint64_t kSequentialBuffer = 128u << 10;
    const uint64_t asked = target.sequential ? std::min<uint64_t>(options.buffer_size, kSequentialBuffer)
                                             : options.buffer_size;
    const uint64_t want = std::max<uint64_t>(asked, unit);
    const uint64_t buffer = (want + unit - 1) / unit * unit;

    // The plan, from the maps alone (nothing grows with the virtual size).
    Ranges data, zero;
    if (options.same_up_to) {
        // VDCopyEx "same content up to image N": what src images 0..N show,
        // dst's chain already shows; only what the images above N hold (data
        // or zero records) is copied, and its zeros must be written.
        const size_t n = *options.same_up_to, top = src.image_count() - 1;
        if (n > top)
            return Status(VDKIT_E_INVALID_ARGUMENT, "same_up_to is image " + std::to_string(n) + ", but the source has " +
                                                        std::to_string(top + 1) + " images");
        if (dst.image_count() < 2)
            return Status(VDKIT_E_INVALID_ARGUMENT,
                          "same_up_to needs a differencing target whose parent reads as the source's images 0.." +
                              std::to_string(n));
        if (n < top) {
            std::shared_lock lock(DiskAccess::state(src).mu);
            VDKIT_ASSIGN_OR_RETURN(data, DiskAccess::state(src).held(n + 1, top, 0, src.size()));
        }
        data = widen(data, unit, src.size());
    } else {
        VDKIT_ASSIGN_OR_RETURN(data, data_ranges(src, 0, src.size()));
        data = widen(data, unit, src.size());
        if (!options.target_is_zero) {
            // Zeros only where the target holds data now (for a diff target
            // that includes what its parent shows).
            VDKIT_ASSIGN_OR_RETURN(Ranges held, data_ranges(dst, 0, src.size()));
            zero = subtract(held, data);
        }
    }
    uint64_t total = 0;
    std::vector<Run> runs = plan_runs(data, zero, total);
    Pipeline pipeline(src, dst, options, std::move(runs), total, unit, buffer,
                      !options.out_of_order || target.sequential, options.target_is_zero && !options.same_up_to);
    // A sequential target (a stream) takes one write at a time and does its
    // own parallel work (compression): more than two readers only hold
    // buffers waiting for their turn.
    VDKIT_TRY(pipeline.run(target.sequential ? std::min(threads, 2u) : threads));
    return dst.flush();
}

inline namespace v1 {

Result<std::optional<size_t>> Library::common_image(const Disk &src, const Disk &dst) {
    if (dst.image_count() < 2) return std::optional<size_t>();
    VDKIT_ASSIGN_OR_RETURN(ImageInfo below, dst.image_info(dst.image_count() - 2));
    if (util::uuid_is_nil(below.uuid.data())) return std::optional<size_t>();
    for (size_t i = src.image_count(); i-- > 0;) {
        VDKIT_ASSIGN_OR_RETURN(ImageInfo mine, src.image_info(i));
        if (mine.uuid == below.uuid) return std::optional<size_t>(i);
    }
    return std::optional<size_t>();
}

} // namespace v1
} // namespace vdkit
