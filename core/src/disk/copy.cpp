// Library::copy — the convert pipeline (VDCopyEx, VixDiskLib_Clone,
// qemu-img convert).
//
// 1. The source's allocation map is walked once, whole-disk queries, into a
//    list of runs; the bytes of data in it are the progress total. Nothing
//    here grows with the virtual size: a 1 TiB disk holding 8 MiB costs a
//    handful of map queries and 8 MiB of reads.
// 2. Workers (CopyOptions::threads: the calling thread and helpers on the
//    core's thread pool, util/executor.hpp, which grows to hold them while
//    the copy runs) take jobs from that list — a piece of a data run up to
//    the next buffer boundary, or a whole zero run — each into one of
//    `threads` buffers, read the data and split it into target units that
//    are all zero and units that are not. Reads run in parallel (Disk reads
//    are concurrent).
// 3. Writes happen in job order by default, without anyone waiting for a
//    turn: a worker leaves what it read with the pipeline and goes on; the
//    one worker that finds the next job in order there becomes the writer
//    and writes every job that is next in turn, freeing their buffers. The
//    target file's layout is the same as a single-threaded copy's. With
//    out_of_order each worker writes as soon as it has read (the Disk
//    serialises the writes themselves). A sequential target (a stream) is
//    always written in order.
//    No pool task blocks, and the calling thread is a worker too: a copy
//    finishes even when every pool thread is busy with other work (several
//    batch jobs converting at once); docs/design/threads.md.
// The first error stops every worker and is returned; progress is reported
// after each job (a zero job reports no bytes, but the callback can cancel
// there too), from one thread at a time.
#include "disk/disk_state.hpp"
#include "host/host.hpp"
#include "util/executor.hpp"
#include "util/util.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
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
        for (; j < zero.size() && zero[j].first < a; ++j)
            runs.push_back(Run{zero[j].first, zero[j].second - zero[j].first, false});
        runs.push_back(Run{a, b - a, true});
        data_bytes += b - a;
    }
    for (; j < zero.size(); ++j)
        runs.push_back(Run{zero[j].first, zero[j].second - zero[j].first, false});
    return runs;
}

// The most a zero job covers: a zero run is split at multiples of it (a
// multiple of every target unit).
constexpr uint64_t kZeroJob = 1ull << 30;

class Pipeline : public std::enable_shared_from_this<Pipeline> {
public:
    Pipeline(const Disk &src, Disk &dst, const CopyOptions &o, std::vector<Run> runs, uint64_t total, uint64_t unit,
             uint64_t buffer, bool in_order, bool skip_zero_units)
        : src_(src), dst_(dst), options_(o), runs_(std::move(runs)), total_(total), unit_(unit), buffer_(buffer),
          in_order_(in_order), skip_zero_units_(skip_zero_units) {}

    // Runs the copy with up to `threads` workers, this thread one of them.
    // Returns once no worker touches the disks or the options any more.
    Status run(unsigned threads) {
        VDKIT_TRY(report(0));
        // The pool grows to hold this copy's helpers (beside those of other
        // copies running now, up to util::kMaxPoolThreads), so a copy gets
        // the workers it asks for even when that is more than the pool had.
        const util::ThreadReservation reserved(threads - 1);
        std::unique_lock lock(mu_);
        buffers_.resize(threads);
        for (size_t i = threads; i-- > 0;)
            free_.push_back(i);
        // Helpers are a speed-up: if one cannot be queued, the others (at
        // least this thread) still finish the copy.
        add_helpers(threads - 1);
        for (;;) {
            lock.unlock();
            pump();
            lock.lock();
            cv_.wait(lock, [&] { return finished() || can_take(); });
            if (finished()) break;
        }
        closed_ = true; // helpers that start from now on do nothing
        cv_.wait(lock, [&] { return pumping_ == 0; });
        if (options_.wrote) *options_.wrote = wrote_.load();
        return first_error_;
    }

private:
    struct Ready {
        Job job;
        size_t buffer = 0;
        Status read = Status::ok();
    };

    // Each below with mu_ held.
    bool can_take() const { return first_error_ && !free_.empty() && run_index_ < runs_.size(); }
    bool finished() const { return !first_error_ || (run_index_ >= runs_.size() && completed_ == next_seq_); }
    void add_helpers(size_t n) {
        for (; n > 0 && helpers_ + 1 < buffers_.size(); --n) {
            if (!util::post([self = shared_from_this()] { self->help(); })) return;
            ++helpers_;
        }
    }

    // A pool task: works while there is work for it, then ends.
    void help() {
        {
            std::lock_guard lock(mu_);
            if (closed_) {
                --helpers_;
                return;
            }
            ++pumping_;
        }
        pump();
        std::lock_guard lock(mu_);
        --pumping_;
        --helpers_;
        cv_.notify_all();
    }

    // Takes jobs while a buffer is free, reads each, and writes it (in
    // order: whatever is next in turn, if no one else is writing). Never
    // waits for another worker.
    void pump() {
        for (;;) {
            Job job;
            size_t b = 0;
            {
                std::lock_guard lock(mu_);
                if (closed_ || !can_take()) return;
                b = free_.back();
                free_.pop_back();
                take(job);
            }
            Status st = Status::ok();
            if (buffers_[b].empty()) {
                try {
                    buffers_[b].resize(static_cast<size_t>(buffer_));
                } catch (const std::bad_alloc &) {
                    st = Status(VDKIT_E_NO_MEMORY,
                                "no memory for a copy buffer of " + std::to_string(buffer_) + " bytes");
                }
            }
            if (st && job.data) st = src_.read(job.offset, buffers_[b].data(), job.length);
            if (!in_order_) {
                if (st) st = write(job, buffers_[b].data());
                if (st) st = report(job.data ? job.length : 0);
                done(b, st);
                continue;
            }
            std::unique_lock lock(mu_);
            ready_.emplace(job.seq, Ready{job, b, st});
            if (writing_) continue; // the writer takes it when its turn comes
            writing_ = true;
            for (auto it = ready_.find(next_seq_written_); it != ready_.end() && first_error_;
                 it = ready_.find(next_seq_written_)) {
                Ready r = it->second;
                ready_.erase(it);
                ++next_seq_written_;
                lock.unlock();
                Status w = r.read;
                if (w) w = write(r.job, buffers_[r.buffer].data());
                // After a zero job too (0 bytes of data): the callback may cancel.
                if (w) w = report(r.job.data ? r.job.length : 0);
                lock.lock();
                release(r.buffer, w);
            }
            writing_ = false;
            // Buffers the writer freed beyond the one this worker takes next
            // go to helpers.
            if (free_.size() > 1 && can_take()) add_helpers(free_.size() - 1);
        }
    }

    void done(size_t buffer, const Status &st) {
        std::lock_guard lock(mu_);
        release(buffer, st);
    }

    // A job has ended (mu_ held): its buffer is free again.
    void release(size_t buffer, const Status &st) {
        free_.push_back(buffer);
        ++completed_;
        if (!st && first_error_) first_error_ = st;
        cv_.notify_all();
    }

    // The next job (mu_ held, a job left).
    void take(Job &job) {
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
        else
            len = std::min(len, kZeroJob - pos % kZeroJob);
        job = Job{next_seq_++, pos, len, r.data};
        run_pos_ += len;
        if (run_pos_ == r.length) ++run_index_, run_pos_ = 0;
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

    const Disk &src_;
    Disk &dst_;
    const CopyOptions &options_;
    const std::vector<Run> runs_;
    const uint64_t total_, unit_, buffer_;
    const bool in_order_, skip_zero_units_;

    std::mutex mu_;                                   // guards everything below up to first_error_
    std::condition_variable cv_;                      // a job ended, or a helper stopped
    std::vector<std::vector<unsigned char>> buffers_; // one per worker, allocated on first use
    std::vector<size_t> free_;                        // buffers no job holds
    std::map<uint64_t, Ready> ready_;                 // read, waiting for their turn to be written
    size_t run_index_ = 0;
    uint64_t run_pos_ = 0, next_seq_ = 0, next_seq_written_ = 0, completed_ = 0;
    bool writing_ = false; // a worker is writing the jobs that are next in turn
    bool closed_ = false;  // run() is returning
    size_t helpers_ = 0;   // pool tasks queued or running
    unsigned pumping_ = 0; // of them, those in pump()
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
    if (options.threads > util::kMaxPoolThreads)
        return Status(VDKIT_E_INVALID_ARGUMENT,
                      "copy threads must be 1..64 (0: automatic), not " + std::to_string(options.threads));
    const unsigned threads =
        options.threads ? options.threads : std::clamp(std::thread::hardware_concurrency(), 2u, 4u);
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
    const uint64_t asked =
        target.sequential ? std::min<uint64_t>(options.buffer_size, kSequentialBuffer) : options.buffer_size;
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
            return Status(VDKIT_E_INVALID_ARGUMENT, "same_up_to is image " + std::to_string(n) +
                                                        ", but the source has " + std::to_string(top + 1) + " images");
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
    auto pipeline = std::make_shared<Pipeline>(src, dst, options, std::move(runs), total, unit, buffer,
                                               !options.out_of_order || target.sequential,
                                               options.target_is_zero && !options.same_up_to);
    // A sequential target (a stream) takes one write at a time and does its
    // own parallel work (compression): more than two readers only hold
    // buffers waiting for their turn.
    VDKIT_TRY(pipeline->run(target.sequential ? std::min(threads, 2u) : threads));
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
