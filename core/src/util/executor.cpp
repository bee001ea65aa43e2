// The core's one thread pool (see executor.hpp, docs/design/threads.md).
#include "util/executor.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <algorithm>
#include <mutex>
#include <system_error>
#include <thread>

namespace vdkit::util {

namespace {

unsigned initial_threads() noexcept {
    return std::clamp(2 * std::thread::hardware_concurrency(), 8u, kMaxPoolThreads);
}

// The pool's size and the threads live reservations want; guarded by size_mu().
struct Size {
    unsigned threads = 0;  // in the pool (0: not started)
    unsigned reserved = 0; // the sum over live ThreadReservations
};
std::mutex &size_mu() noexcept {
    static std::mutex mu;
    return mu;
}
Size &size() noexcept {
    static Size s;
    return s;
}

// Started on first use and never destroyed: a pool thread may still be
// finishing a task while static destructors run at exit, and an embedder
// may unload nothing before exit anyway. Null when it could not start.
boost::asio::thread_pool *pool() noexcept {
    static boost::asio::thread_pool *const p = []() noexcept -> boost::asio::thread_pool * {
        try {
            auto *made = new boost::asio::thread_pool(initial_threads());
            std::lock_guard lock(size_mu());
            size().threads = initial_threads();
            return made;
        } catch (...) {
            return nullptr;
        }
    }();
    return p;
}

// Starts threads that join the pool (Asio's attach: each runs the pool's
// tasks until exit) until it has `want` threads or one cannot be started.
// size_mu() held.
void grow(boost::asio::thread_pool &p, unsigned want) noexcept {
    while (size().threads < std::min(want, kMaxPoolThreads)) {
        try {
            std::thread([&p] { p.attach(); }).detach();
        } catch (const std::system_error &) {
            return; // no more threads for now: the pool keeps what it has
        }
        ++size().threads;
    }
}

} // namespace

bool post(std::function<void()> task) noexcept {
    boost::asio::thread_pool *p = pool();
    if (!p || !task) return false;
    try {
        boost::asio::post(*p, [t = std::move(task)]() noexcept {
            try {
                t();
            } catch (...) {
                // A task must not throw; the pool thread keeps going regardless.
            }
        });
        return true;
    } catch (...) {
        return false;
    }
}

unsigned pool_threads() noexcept {
    if (!pool()) return 0;
    std::lock_guard lock(size_mu());
    return size().threads;
}

ThreadReservation::ThreadReservation(unsigned n) noexcept : n_(n) {
    boost::asio::thread_pool *p = pool();
    std::lock_guard lock(size_mu());
    size().reserved += n_;
    if (p) grow(*p, size().reserved);
}

ThreadReservation::~ThreadReservation() {
    std::lock_guard lock(size_mu());
    size().reserved -= n_;
}

} // namespace vdkit::util
