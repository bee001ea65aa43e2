// The core's one thread pool (see executor.hpp, docs/design/threads.md).
#include "util/executor.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <algorithm>
#include <thread>

namespace vdkit::util {

namespace {

unsigned wanted_threads() noexcept {
    return std::clamp(2 * std::thread::hardware_concurrency(), 8u, 64u);
}

// Started on first use and never destroyed: a pool thread may still be
// finishing a task while static destructors run at exit, and an embedder
// may unload nothing before exit anyway. Null when it could not start.
boost::asio::thread_pool *pool() noexcept {
    static boost::asio::thread_pool *const p = []() noexcept -> boost::asio::thread_pool * {
        try {
            return new boost::asio::thread_pool(wanted_threads());
        } catch (...) {
            return nullptr;
        }
    }();
    return p;
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

unsigned pool_threads() noexcept { return pool() ? wanted_threads() : 0; }

} // namespace vdkit::util
