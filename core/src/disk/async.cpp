// Asynchronous disk I/O (VirtualBox VDAsyncRead/Write/Flush/Discard) for
// embedders: operations are queued on the disk and run by a small pool of
// worker threads, each completing through its callback.
//
// Ordering, as for a block device's queue: operations in flight at the same
// time may run in any order (reads in parallel; writes are serialised by the
// disk itself), so a caller must not have overlapping writes in flight. A
// flush is a barrier: it starts only after every operation submitted before
// it has completed, and nothing submitted after it starts until it is done.
#include "disk/disk_state.hpp"
#include "host/host.hpp"

#include <condition_variable>
#include <deque>
#include <thread>

namespace vdkit {

class AsyncQueue {
public:
    AsyncQueue(std::shared_ptr<const Host> host, unsigned workers) : host_(std::move(host)), workers_wanted_(workers) {}
    ~AsyncQueue() { stop(); }

    Status submit(std::function<Status()> run, Completion done, bool barrier) {
        std::lock_guard lock(mu_);
        if (stopping_) return Status(VDKIT_E_INVALID_ARGUMENT, "the disk is closing; no more operations are taken");
        if (workers_.size() < workers_wanted_) {
            try {
                workers_.emplace_back([this] { work(); });
            } catch (const std::exception &) {
                if (workers_.empty()) return Status(VDKIT_E_NO_MEMORY, "cannot start an I/O worker thread");
            }
        }
        queue_.push_back(Op{std::move(run), std::move(done), barrier});
        cv_.notify_all();
        return Status::ok();
    }

    // Until nothing is queued or running.
    void drain() {
        std::unique_lock lock(mu_);
        idle_.wait(lock, [&] { return queue_.empty() && running_ == 0 && !barrier_; });
    }

    // Finish what was submitted, then stop the workers. Idempotent.
    void stop() {
        {
            std::unique_lock lock(mu_);
            idle_.wait(lock, [&] { return queue_.empty() && running_ == 0 && !barrier_; });
            stopping_ = true;
        }
        cv_.notify_all();
        for (auto &t : workers_)
            if (t.joinable()) t.join();
        workers_.clear();
    }

private:
    struct Op {
        std::function<Status()> run;
        Completion done;
        bool barrier = false;
    };

    void work() {
        for (;;) {
            Op op;
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [&] { return stopping_ || (!queue_.empty() && !barrier_); });
                if (queue_.empty() || barrier_) return; // stopping
                op = std::move(queue_.front());
                queue_.pop_front();
                if (op.barrier) {
                    // Everything before it has been taken; wait for it to end,
                    // and hold back everything after it.
                    barrier_ = true;
                    idle_.wait(lock, [&] { return running_ == 0; });
                }
                ++running_;
            }
            Status st = op.run();
            if (op.done) {
                try {
                    op.done(st);
                } catch (...) {
                    // A callback must not throw; the queue keeps going regardless.
                    if (host_) host_->log(LogLevel::error, "an I/O completion callback threw");
                }
            }
            {
                std::lock_guard lock(mu_);
                --running_;
                if (op.barrier) barrier_ = false;
            }
            idle_.notify_all();
            cv_.notify_all();
        }
    }

    std::shared_ptr<const Host> host_;
    const unsigned workers_wanted_;
    std::mutex mu_;
    std::condition_variable cv_, idle_;
    std::deque<Op> queue_;
    std::vector<std::thread> workers_;
    unsigned running_ = 0;
    bool barrier_ = false;   // a flush is waiting or running
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
            async = std::make_unique<AsyncQueue>(host, kAsyncWorkers);
        } catch (const std::bad_alloc &) {
            return Status(VDKIT_E_NO_MEMORY, "no memory for the I/O queue");
        }
    }
    return async->submit(std::move(run), std::move(done), barrier);
}

void Disk::State::stop_async() {
    std::unique_ptr<AsyncQueue> q;
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
