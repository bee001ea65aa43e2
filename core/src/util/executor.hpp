// The core's one thread pool: a process-wide Boost.Asio thread_pool that
// runs the asynchronous disk I/O (disk/async.cpp) and the convert pipeline's
// extra workers (disk/copy.cpp). docs/design/threads.md gives the rules a
// task must keep so that sharing it cannot deadlock; in short, a task never
// waits for another task of the pool, and whoever needs a job done (a
// Library::copy caller) can make progress on its own thread as well.
//
// Asio stays out of every other translation unit: this header is the whole
// interface.
#ifndef VDKIT_CORE_UTIL_EXECUTOR_HPP
#define VDKIT_CORE_UTIL_EXECUTOR_HPP

#include <functional>

namespace vdkit::util {

// Queues `task` to run once on a pool thread. False (the task is dropped)
// only when the pool cannot be started or the task cannot be queued (no
// memory); the caller then does the work itself or reports the error.
// Thread-safe; never blocks. `task` must not throw (an exception it lets
// out is caught and dropped) and must not wait for another pool task.
bool post(std::function<void()> task) noexcept;

// The most threads the pool ever has (CopyOptions::threads' maximum).
inline constexpr unsigned kMaxPoolThreads = 64;

// How many threads the pool has now. It starts (on first use) with twice
// the processors, at least 8, at most kMaxPoolThreads — tasks block on disk
// I/O — and grows while reservations ask for more (ThreadReservation).
unsigned pool_threads() noexcept;

// While it lives, `n` pool threads are counted as wanted by its owner (a
// copy's helpers): the pool grows, up to kMaxPoolThreads, until it has at
// least as many threads as all live reservations together, so a copy that
// asks for n helpers gets n threads to run them on when nothing else
// occupies the pool. It does not set threads aside: tasks are still run in
// the order they are posted. Threads added stay in the pool, idle, until the
// process exits (the pool is never destroyed). If a thread cannot be
// started the pool stays smaller; tasks still run, only with less
// parallelism. Thread-safe; blocks only while starting threads.
class ThreadReservation {
public:
    explicit ThreadReservation(unsigned n) noexcept;
    ~ThreadReservation();
    ThreadReservation(const ThreadReservation &) = delete;
    ThreadReservation &operator=(const ThreadReservation &) = delete;

private:
    unsigned n_;
};

} // namespace vdkit::util

#endif
