// Asynchronous disk I/O (VirtualBox VDAsyncRead/Write/Flush/Discard) for
// embedders: operations are queued on the disk and run on the core's thread
// pool (util/executor.hpp), at most four of one disk at a time, each
// completing through its callback.
//
// Ordering, as for a block device's queue: operations in flight at the same
// time may run in any order (reads in parallel; writes are serialised by the
// disk itself), so a caller must not have overlapping writes in flight. A
// flush is a barrier: it starts only after every operation submitted before
// it has completed, and nothing submitted after it starts until it is done.
//
// No pool task ever waits: the queue hands an operation to the pool only
// when it may run now (docs/design/threads.md), and a barrier is held in the
// queue, not in a blocked thread, until what came before it has ended.
#include "disk/disk_state.hpp"
#include "host/host.hpp"
#include "util/executor.hpp"

#include <condition_variable>
#include <deque>

namespace vdkit {

class AsyncQueue : public std::enable_shared_from_this<AsyncQueue> {
public:
    // `host` (for logging) outlives the queue's last completion: the disk
    // stops the queue before it lets its host go.
    AsyncQueue(const Host *host, unsigned in_flight) : host_(host), max_(in_flight) {}

    Status submit(std::function<Status()> run, Completion done, bool barrier) {
        std::vector<Op> failed;
        {
            std::lock_guard lock(mu_);
            if (stopping_) return Status(VDKIT_E_INVALID_ARGUMENT, "the disk is closing; no more operations are taken");
            try {
                queue_.push_back(Op{std::move(run), std::move(done), barrier});
            } catch (const std::bad_alloc &) {
                return Status(VDKIT_E_NO_MEMORY, "no memory to queue an I/O operation");
            }
            dispatch(failed);
        }
        complete_unposted(failed);
        return Status::ok();
    }

    // Until nothing is queued or running.
    void drain() {
        std::unique_lock lock(mu_);
        idle_.wait(lock, [&] { return queue_.empty() && running_ == 0; });
    }

    // Finish what was submitted, then take no more. Idempotent.
    void stop() {
        std::unique_lock lock(mu_);
        idle_.wait(lock, [&] { return queue_.empty() && running_ == 0; });
        stopping_ = true;
    }

private:
    struct Op {
        std::function<Status()> run;
        Completion done;
        bool barrier = false;
    };

    // Hands the pool what may run now (mu_ held): operations up to the
    // in-flight limit, a barrier alone once nothing runs. An operation the
    // pool does not take goes to `failed`, completed by the caller.
    void dispatch(std::vector<Op> &failed) {
        while (!barrier_ && !queue_.empty() && running_ < max_) {
            if (queue_.front().barrier && running_ > 0) return; // after what runs now
            Op op = std::move(queue_.front());
            queue_.pop_front();
            const bool barrier = op.barrier;
            auto shared = std::make_shared<Op>(std::move(op));
            ++running_;
            barrier_ = barrier;
            if (!util::post([self = shared_from_this(), shared] { self->execute(*shared); })) {
                --running_;
                barrier_ = false;
                failed.push_back(std::move(*shared));
            }
        }
    }

    void complete_unposted(std::vector<Op> &failed) {
        for (auto &op : failed)
            finish(op, Status(VDKIT_E_NO_MEMORY, "cannot start an I/O operation on the thread pool"));
        if (failed.empty()) return;
        std::lock_guard lock(mu_);
        idle_.notify_all();
    }

    void finish(Op &op, const Status &st) {
        if (!op.done) return;
        try {
            op.done(st);
        } catch (...) {
            // A callback must not throw; the queue keeps going regardless.
            if (host_) host_->log(LogLevel::error, "an I/O completion callback threw");
        }
    }

    void execute(Op &op) {
        finish(op, op.run());
        std::vector<Op> failed;
        {
            std::lock_guard lock(mu_);
            --running_;
            if (op.barrier) barrier_ = false;
            dispatch(failed);
            idle_.notify_all();
        }
        complete_unposted(failed);
    }

    const Host *const host_;
    const unsigned max_;
    std::mutex mu_;
    std::condition_variable idle_;
    std::deque<Op> queue_;
    unsigned running_ = 0; // handed to the pool and not yet completed
    bool barrier_ = false; // a flush is running
    bool stopping_ = false;
};

namespace {
constexpr unsigned kAsyncWorkers = 4;
}

Status Disk::State::submit(std::function<Status()> run, Completion done, bool barrier) {
    std::lock_guard lock(async_mu);
    if (async_closed) return closed_error();
    if (!async) {
        try {
            async = std::make_shared<AsyncQueue>(host.get(), kAsyncWorkers);
        } catch (const std::bad_alloc &) {
            return Status(VDKIT_E_NO_MEMORY, "no memory for the I/O queue");
        }
    }
    return async->submit(std::move(run), std::move(done), barrier);
}

void Disk::State::stop_async() {
    std::shared_ptr<AsyncQueue> q;
    {
        std::lock_guard lock(async_mu);
        async_closed = true;
        q = std::move(async);
    }
    if (q) q->stop();
}

Disk::State::State() = default;
Disk::State::~State() = default;

Status Disk::submit_read(uint64_t offset, void *buf, uint64_t len, Completion done) {
    return state_->submit([this, offset, buf, len] { return read(offset, buf, len); }, std::move(done), false);
}

Status Disk::submit_write(uint64_t offset, const void *buf, uint64_t len, Completion done) {
    return state_->submit([this, offset, buf, len] { return write(offset, buf, len); }, std::move(done), false);
}

Status Disk::submit_write_zeroes(uint64_t offset, uint64_t len, Completion done) {
    return state_->submit([this, offset, len] { return write_zeroes(offset, len); }, std::move(done), false);
}

Status Disk::submit_discard(uint64_t offset, uint64_t len, Completion done) {
    return state_->submit([this, offset, len] { return discard(offset, len); }, std::move(done), false);
}

Status Disk::submit_flush(Completion done) {
    return state_->submit([this] { return flush(); }, std::move(done), true);
}

void Disk::drain() {
    AsyncQueue *q = nullptr;
    {
        std::lock_guard lock(state_->async_mu);
        q = state_->async.get();
    }
    // The queue lives until close(), which must not run concurrently with drain().
    if (q) q->drain();
}

} // namespace vdkit
