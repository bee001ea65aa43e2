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

// How many threads the pool has (started on first use): twice the
// processors, at least 8, at most 64 — tasks block on disk I/O.
unsigned pool_threads() noexcept;

} // namespace vdkit::util

#endif
