// The `nbd` transport: disks exported by an NBD server (qemu-nbd, nbdkit,
// nbd-server), through libnbd.
//
// Locations are NBD URIs as libnbd parses them (the NBD URI specification,
// https://github.com/NetworkBlockDevice/nbd/blob/master/doc/uri.md):
//   nbd://host[:port]/export            plain TCP
//   nbds://host[:port]/export           TLS required (libnbd's GnuTLS)
//   nbd+unix:///export?socket=PATH      a Unix domain socket
//   nbds+unix:///export?socket=PATH     the same with TLS
//
// What it does (README.md has the user's view):
//  * pread/pwrite split into requests of at most the server's maximum block
//    size (32 MiB when it names none), sent together and then awaited;
//  * flush (NBD_CMD_FLUSH) when the server offers it;
//  * zero: NBD_CMD_WRITE_ZEROES (the server may punch holes; reads give
//    zeros), written zeros when the server lacks it;
//  * discard: NBD_CMD_TRIM, then block status confirms that the range reads
//    as zero; what does not (TRIM promises nothing about contents) is zeroed
//    with WRITE_ZEROES — vdkit's discard leaves ranges reading as zero, as
//    the file transport's punched holes do;
//  * extents from NBD block status, context "base:allocation": a range with
//    the zero bit reads as zero (VDKIT_EXTENT_HOLE), anything else is data;
//  * several connections when the server advertises multi-conn (flush on
//    one covers writes on all, NBD protocol "Multi-conn"); one otherwise.
//    Each connection serves one call at a time (a mutex), so concurrent
//    calls are safe either way (VDKIT_CAP_THREAD_SAFE);
//  * every wait is bounded: the handshake by `connect_timeout`, each request
//    by `timeout`. A connection whose request timed out is shut down (the
//    reply could still arrive into a buffer the caller reused), and later
//    calls on it fail naming the URL;
//  * with `reconnect_timeout` > 0, a connection that is lost (the server
//    restarted, the network dropped it, a request timed out) is opened again
//    for up to that many seconds and the call is sent again — reads, writes,
//    zeroing and trims are idempotent. The export must keep its size. Writes
//    the server acknowledged but was not asked to flush may have died with
//    it, so a reconnect while such writes exist makes every later flush fail
//    (the caller learns that the data is not safe, as with fsync's EIO).
// remove, rename and truncate are refused (an export's size and name belong
// to the server); exists() connects and asks for the export.
#include "vdkit/plugin.hpp"
#include "vdkit/text.hpp"

#include <libnbd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

using namespace vdkit;
using sdk::Context;
using sdk::Error;
using sdk::hex;

namespace {

constexpr uint64_t kDefaultMaxRequest = 32u << 20; // the NBD protocol's usual cap on a payload
constexpr uint64_t kMaxEffectLength = 1u << 30;    // zero/trim/block-status length per request (32-bit field)

// The errno libnbd recorded for the last failed call on this thread, as a
// vdkit status code.
uint32_t code_for(int err) {
    switch (err) {
    case EROFS:
    case EPERM:
        return VDKIT_E_READ_ONLY;
    case ENOENT:
        return VDKIT_E_NOT_FOUND;
    case EACCES:
        return VDKIT_E_PERMISSION;
    case ENOMEM:
        return VDKIT_E_NO_MEMORY;
    case ENOTSUP:
        return VDKIT_E_NOT_SUPPORTED;
    default:
        return VDKIT_E_IO;
    }
}

// Whether libnbd's errno for a failed command says that the connection is
// gone (the command was retired unsent or unanswered), not that the server
// refused the command: such a connection is lost even before libnbd's
// state machine has noticed.
bool connection_errno(int err) {
    return err == ESHUTDOWN || err == ENOTCONN || err == ECONNRESET || err == EPIPE || err == ECONNABORTED;
}

// libnbd's message for the last failure on this thread ("recv: Connection
// reset by peer", "server reported: export 'x' not present", ...).
std::string nbd_error_text() {
    const char *m = nbd_get_error();
    return m && *m ? m : "unknown libnbd error";
}

struct Settings {
    uint64_t connect_timeout_ms = 10'000;
    uint64_t timeout_ms = 60'000; // 0: wait for ever
    uint64_t connections = 4;
    uint64_t reconnect_timeout_ms = 0; // 0: a lost connection fails the call
    std::string tls_certificates;
    std::string tls_psk_file;
    std::string tls_username;
    bool tls_verify_peer = true;

    static Settings from(Context &ctx) {
        Settings s;
        s.connect_timeout_ms = ctx.config_uint("connect_timeout").value_or(10) * 1000;
        s.timeout_ms = ctx.config_uint("timeout").value_or(60) * 1000;
        s.connections = std::clamp<uint64_t>(ctx.config_uint("connections").value_or(4), 1, 16);
        s.reconnect_timeout_ms = ctx.config_uint("reconnect_timeout").value_or(0) * 1000;
        s.tls_certificates = ctx.config("tls_certificates").value_or("");
        s.tls_psk_file = ctx.config("tls_psk_file").value_or("");
        s.tls_username = ctx.config("tls_username").value_or("");
        s.tls_verify_peer = ctx.config_bool("tls_verify_peer").value_or(true);
        return s;
    }
};

using Clock = std::chrono::steady_clock;

// Milliseconds left until `deadline` for nbd_poll: -1 when there is no
// deadline, 0 when it has passed.
int poll_ms(const std::optional<Clock::time_point> &deadline) {
    if (!deadline) return -1;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now()).count();
    return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1000));
}

std::optional<Clock::time_point> deadline_after(uint64_t ms) {
    if (ms == 0) return std::nullopt;
    return Clock::now() + std::chrono::milliseconds(ms);
}

// One NBD connection. Used by one call at a time (mu).
class Connection {
public:
    Connection(const std::string &url, const Settings &s) : url_(url) {
        h_ = nbd_create();
        if (!h_) throw Error(VDKIT_E_NO_MEMORY, url_ + ": cannot create a libnbd handle: " + nbd_error_text());
        try {
            connect(s);
        } catch (...) {
            nbd_close(h_);
            throw;
        }
    }
    ~Connection() {
        if (!h_) return;
        if (!broken_ && nbd_aio_is_ready(h_) == 1 && nbd_aio_disconnect(h_, 0) == 0) {
            // A polite NBD_CMD_DISC, waited for briefly.
            const auto deadline = deadline_after(1000);
            while (nbd_aio_is_closed(h_) != 1 && nbd_aio_is_dead(h_) != 1 && poll_ms(deadline) > 0)
                if (nbd_poll(h_, poll_ms(deadline)) < 0) break;
        }
        nbd_close(h_);
    }
    Connection(const Connection &) = delete;
    Connection &operator=(const Connection &) = delete;

    nbd_handle *get() const noexcept { return h_; }
    std::mutex &mutex() noexcept { return mu_; }

    // Whether the connection is lost: closed after a timeout, or dead (the
    // server closed it or the transport failed). Such a connection can only
    // be replaced (reconnect).
    bool lost() const noexcept { return broken_ || !h_ || nbd_aio_is_dead(h_) == 1 || nbd_aio_is_closed(h_) == 1; }

    // Replace a lost connection by a new one to the same URL, trying until
    // `give_up` (a refused or missing socket while the server restarts is
    // tried again after a pause of 100 ms, doubling to 1 s). `why` is the
    // failure that lost it, named in the error when time runs out.
    void reconnect(const Settings &s, Clock::time_point give_up, const std::string &why) {
        auto pause = std::chrono::milliseconds(100);
        std::string last = why;
        for (;;) {
            if (h_) nbd_close(h_);
            broken_ = false;
            h_ = nbd_create();
            if (!h_) throw Error(VDKIT_E_NO_MEMORY, url_ + ": cannot create a libnbd handle: " + nbd_error_text());
            try {
                Settings once = s;
                const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - Clock::now()).count();
                once.connect_timeout_ms =
                    static_cast<uint64_t>(std::clamp<long long>(left, 1, static_cast<long long>(s.connect_timeout_ms)));
                connect(once);
                return;
            } catch (const Error &e) {
                last = e.what();
                broken_ = true;
            }
            if (Clock::now() + pause >= give_up)
                throw Error(VDKIT_E_IO, url_ + ": the connection to the NBD server was lost (" + why +
                                            ") and could not be opened again within " +
                                            std::to_string(s.reconnect_timeout_ms / 1000) +
                                            " s (transport key `reconnect_timeout`): " + last);
            std::this_thread::sleep_for(pause);
            pause = std::min(pause * 2, std::chrono::milliseconds(1000));
        }
    }

    // Wait for the commands `cookies` (all sent on this connection);
    // `what` names the request in errors. Every cookie is awaited even
    // after a failure, so no reply lands in a buffer the caller has reused.
    void wait(const std::vector<int64_t> &cookies, const std::string &what, uint64_t timeout_ms) {
        const auto deadline = deadline_after(timeout_ms);
        std::string failure;
        int failure_errno = 0;
        for (int64_t cookie : cookies) {
            for (;;) {
                const int r = nbd_aio_command_completed(h_, static_cast<uint64_t>(cookie));
                if (r == 1) break;
                if (r == -1) {
                    if (failure.empty()) {
                        failure = nbd_error_text();
                        failure_errno = nbd_get_errno();
                    }
                    if (nbd_aio_is_dead(h_) == 1 || nbd_aio_is_closed(h_) == 1) {
                        broken_ = true;
                        break; // every command in flight is retired with an error
                    }
                    break;
                }
                const int ms = poll_ms(deadline);
                if (ms == 0) {
                    // No reply in time: the command cannot be withdrawn, so
                    // the connection goes (its replies could still land in
                    // the caller's buffer otherwise).
                    abandon();
                    throw Error(VDKIT_E_IO, url_ + ": " + what + ": the NBD server did not answer within " +
                                                std::to_string(timeout_ms / 1000) +
                                                " s (transport key `timeout`); the connection is closed");
                }
                if (nbd_poll(h_, ms) == -1) {
                    if (nbd_aio_is_dead(h_) == 1 || nbd_aio_is_closed(h_) == 1) {
                        broken_ = true;
                        // Commands in flight are now retired with errors.
                        continue;
                    }
                    throw Error(VDKIT_E_IO, url_ + ": " + what + ": " + nbd_error_text());
                }
            }
        }
        if (!failure.empty()) {
            if (connection_errno(failure_errno)) broken_ = true; // retired because the connection went
            throw Error(code_for(failure_errno), url_ + ": " + what + " failed: " + failure);
        }
    }

    void check_usable(const std::string &what) const {
        if (broken_ || !h_ || nbd_aio_is_ready(h_) != 1)
            throw Error(VDKIT_E_IO, url_ + ": " + what + ": the connection to the NBD server is gone (" +
                                        (h_ && !broken_ ? std::string(nbd_connection_state(h_)) : "closed") +
                                        "); reopen the image");
    }

    // A failed submission (nbd_aio_*): the connection may have died.
    [[noreturn]] void submit_failed(const std::string &what) {
        const std::string m = nbd_error_text();
        const int err = nbd_get_errno();
        if (nbd_aio_is_dead(h_) == 1 || nbd_aio_is_closed(h_) == 1 || connection_errno(err)) broken_ = true;
        throw Error(code_for(err), url_ + ": " + what + " failed: " + m);
    }

private:
    // Drop the connection at once: closing the handle retires the commands
    // in flight, so no late reply is written into a caller's buffer.
    void abandon() noexcept {
        broken_ = true;
        nbd_close(h_);
        h_ = nullptr;
    }

    void connect(const Settings &s) {
        nbd_set_handle_name(h_, "vdkit");
        if (nbd_add_meta_context(h_, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1) fail_connect();
        if (!s.tls_certificates.empty() && nbd_set_tls_certificates(h_, s.tls_certificates.c_str()) == -1)
            fail_connect();
        if (!s.tls_psk_file.empty() && nbd_set_tls_psk_file(h_, s.tls_psk_file.c_str()) == -1) fail_connect();
        if (!s.tls_username.empty() && nbd_set_tls_username(h_, s.tls_username.c_str()) == -1) fail_connect();
        if (nbd_set_tls_verify_peer(h_, s.tls_verify_peer) == -1) fail_connect();
        // Query parameters never make libnbd open local files (tls-psk-file=):
        // keys do that, where the user sees them.
        if (nbd_set_uri_allow_local_file(h_, false) == -1) fail_connect();
        if (nbd_aio_connect_uri(h_, url_.c_str()) == -1) fail_connect();
        const auto deadline = deadline_after(s.connect_timeout_ms);
        while (nbd_aio_is_ready(h_) != 1) {
            if (nbd_aio_is_dead(h_) == 1 || nbd_aio_is_closed(h_) == 1) fail_connect();
            const int ms = poll_ms(deadline);
            if (ms == 0)
                throw Error(VDKIT_E_IO, url_ + ": no NBD handshake within " +
                                            std::to_string(s.connect_timeout_ms / 1000) +
                                            " s (transport key `connect_timeout`); is the server running and "
                                            "answering?");
            if (nbd_poll(h_, ms) == -1) fail_connect();
        }
    }
    [[noreturn]] void fail_connect() {
        const std::string m = nbd_error_text();
        const int err = nbd_get_errno();
        uint32_t code = VDKIT_E_IO;
        if (err == ENOENT || m.find("not present") != std::string::npos ||
            m.find("unknown export") != std::string::npos)
            code = VDKIT_E_NOT_FOUND;
        else if (err == EINVAL && m.find("URI") != std::string::npos)
            code = VDKIT_E_INVALID_ARGUMENT;
        throw Error(code, url_ + ": cannot connect to the NBD server: " + m);
    }

    std::string url_;
    nbd_handle *h_ = nullptr;
    std::mutex mu_;
    bool broken_ = false;
};

class NbdHandle {
public:
    static std::unique_ptr<NbdHandle> open(Context &ctx, std::string_view location, uint32_t flags) {
        std::string url(location);
        if (flags & VDKIT_OPEN_CREATE)
            throw Error(VDKIT_E_NOT_SUPPORTED,
                        url + ": an NBD export cannot be created through the nbd transport (the server owns it, at a "
                              "fixed size); write into the existing export instead (vdkit convert -n)");
        auto h = std::make_unique<NbdHandle>();
        h->url_ = url;
        h->settings_ = Settings::from(ctx);
        h->writable_ = flags & VDKIT_OPEN_WRITE;
        h->conns_.push_back(std::make_unique<Connection>(url, h->settings_));
        nbd_handle *first = h->conns_[0]->get();
        const int64_t size = nbd_get_size(first);
        if (size < 0) throw Error(VDKIT_E_IO, url + ": cannot get the export's size: " + nbd_error_text());
        h->size_ = static_cast<uint64_t>(size);
        if (h->writable_ && nbd_is_read_only(first) == 1)
            throw Error(VDKIT_E_READ_ONLY, url + ": the NBD server exports it read-only, so it cannot be opened for "
                                                 "writing");
        h->can_flush_ = nbd_can_flush(first) == 1;
        h->can_trim_ = nbd_can_trim(first) == 1;
        h->can_zero_ = nbd_can_zero(first) == 1;
        h->can_extents_ = nbd_can_meta_context(first, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
        const int64_t max = nbd_get_block_size(first, LIBNBD_SIZE_MAXIMUM);
        h->max_request_ =
            max > 0 ? std::min<uint64_t>(static_cast<uint64_t>(max), kDefaultMaxRequest) : kDefaultMaxRequest;
        const int64_t min = nbd_get_block_size(first, LIBNBD_SIZE_MINIMUM);
        h->min_block_ = min > 1 ? static_cast<uint64_t>(min) : 1;
        // More connections only where the server promises that they see
        // each other's writes once flushed (multi-conn).
        if (nbd_can_multi_conn(first) == 1)
            while (h->conns_.size() < h->settings_.connections)
                h->conns_.push_back(std::make_unique<Connection>(url, h->settings_));
        return h;
    }

    void pread(Context &, uint64_t off, void *buf, uint64_t len) {
        check_range("read", off, len);
        auto *p = static_cast<unsigned char *>(buf);
        transfer("read of " + std::to_string(len) + " bytes at offset " + hex(off), off, len, false,
                 [&](nbd_handle *h, uint64_t at, uint64_t n) {
                     return nbd_aio_pread(h, p + (at - off), n, at, NBD_NULL_COMPLETION, 0);
                 });
    }

    void pwrite(Context &, uint64_t off, const void *buf, uint64_t len) {
        require_writable();
        check_range("write", off, len);
        const auto *p = static_cast<const unsigned char *>(buf);
        transfer("write of " + std::to_string(len) + " bytes at offset " + hex(off), off, len, true,
                 [&](nbd_handle *h, uint64_t at, uint64_t n) {
                     return nbd_aio_pwrite(h, p + (at - off), n, at, NBD_NULL_COMPLETION, 0);
                 });
    }

    void flush(Context &) {
        if (!writable_ || !can_flush_) return;
        check_no_lost_writes();
        // With multi-conn a flush on one connection covers writes completed
        // on all (only then is there more than one).
        const std::string what = "flush";
        const bool unflushed = unflushed_.exchange(false);
        try {
            on_connection(what, unflushed, [&](Lease &c) {
                c->check_usable(what);
                const int64_t cookie = nbd_aio_flush(c->get(), NBD_NULL_COMPLETION, 0);
                if (cookie == -1) c->submit_failed(what);
                c->wait({cookie}, what, settings_.timeout_ms);
            });
        } catch (...) {
            if (unflushed) unflushed_ = true;
            throw;
        }
        check_no_lost_writes(); // a reconnect during this flush
    }

    uint64_t size(Context &) { return size_; }

    void zero(Context &ctx, uint64_t off, uint64_t len) {
        require_writable();
        check_range("zero", off, len);
        if (len == 0) return;
        if (!can_zero_) return write_zero_bytes(ctx, off, len);
        effect("zeroing of " + std::to_string(len) + " bytes at offset " + hex(off), off, len,
               [](nbd_handle *h, uint64_t at, uint64_t n) { return nbd_aio_zero(h, n, at, NBD_NULL_COMPLETION, 0); });
    }

    void discard(Context &ctx, uint64_t off, uint64_t len) {
        require_writable();
        check_range("discard", off, len);
        if (len == 0) return;
        if (!can_trim_ || !can_extents_) return zero(ctx, off, len);
        effect("trim of " + std::to_string(len) + " bytes at offset " + hex(off), off, len,
               [](nbd_handle *h, uint64_t at, uint64_t n) { return nbd_aio_trim(h, n, at, NBD_NULL_COMPLETION, 0); });
        // TRIM promises nothing about what the range reads afterwards: zero
        // what block status does not report as reading zero.
        std::vector<vdkit_extent> e(64);
        for (uint64_t pos = off, end = off + len; pos < end;) {
            const uint32_t n = extents(ctx, pos, end - pos, e.data(), static_cast<uint32_t>(e.size()));
            if (n == 0) break;
            for (uint32_t i = 0; i < n; ++i)
                if (e[i].type != VDKIT_EXTENT_HOLE) zero(ctx, e[i].offset, e[i].length);
            pos = e[n - 1].offset + e[n - 1].length;
        }
    }

    uint32_t extents(Context &, uint64_t off, uint64_t len, vdkit_extent *out, uint32_t max) {
        if (len == 0 || max == 0) return 0;
        check_range("block status", off, len);
        if (!can_extents_) {
            out[0] = vdkit_extent{off, len, VDKIT_EXTENT_DATA, 0};
            return 1;
        }
        uint32_t n = 0;
        const uint64_t end = off + len;
        on_connection("block status of " + std::to_string(len) + " bytes at offset " + hex(off), unflushed_.load(),
                      [&](Lease &c) {
                          n = 0;
                          uint64_t pos = off;
                          // Servers may answer with less than asked: ask again from
                          // where the answer stopped until the range or `out` is full.
                          while (pos < end && n < max) {
                              Sink sink{out, max, n, pos, end};
                              const std::string what =
                                  "block status of " + std::to_string(end - pos) + " bytes at offset " + hex(pos);
                              c->check_usable(what);
                              nbd_extent_callback cb{};
                              cb.callback = &Sink::on_extents;
                              cb.user_data = &sink;
                              const int64_t cookie =
                                  nbd_aio_block_status(c->get(), std::min<uint64_t>(end - pos, kMaxEffectLength), pos,
                                                       cb, NBD_NULL_COMPLETION, 0);
                              if (cookie == -1) c->submit_failed(what);
                              c->wait({cookie}, what, settings_.timeout_ms);
                              if (sink.next == pos) break; // no progress: a server bug; the caller asks again
                              pos = sink.next;
                              n = sink.count;
                          }
                      });
        return n;
    }

    static void remove(Context &, std::string_view location) {
        throw Error(VDKIT_E_NOT_SUPPORTED,
                    std::string(location) + ": the nbd transport cannot remove an NBD export (the server owns it)");
    }
    static void rename(Context &, std::string_view from, std::string_view) {
        throw Error(VDKIT_E_NOT_SUPPORTED,
                    std::string(from) + ": the nbd transport cannot rename an NBD export (the server owns it)");
    }
    // Whether the server has this export: a connection that the server
    // refuses for an unknown export says no; any other failure is an error.
    static bool exists(Context &ctx, std::string_view location) {
        try {
            Connection c{std::string(location), Settings::from(ctx)};
            return true;
        } catch (const Error &e) {
            if (e.code() == VDKIT_E_NOT_FOUND) return false;
            throw;
        }
    }
    void truncate(Context &, uint64_t) {
        throw Error(VDKIT_E_NOT_SUPPORTED, url_ + ": an NBD export has the fixed size its server gives it (" +
                                               std::to_string(size_) + " bytes); the nbd transport cannot resize it");
    }

private:
    // A connection held for one call.
    class Lease {
    public:
        Lease(Connection &c, std::unique_lock<std::mutex> lock) : c_(&c), lock_(std::move(lock)) {}
        Connection *operator->() const noexcept { return c_; }

    private:
        Connection *c_;
        std::unique_lock<std::mutex> lock_;
    };

    // A free connection if there is one, else wait for one in turn.
    Lease lease() {
        const size_t n = conns_.size();
        const size_t start = next_.fetch_add(1, std::memory_order_relaxed);
        for (size_t i = 0; i < n; ++i) {
            Connection &c = *conns_[(start + i) % n];
            std::unique_lock<std::mutex> lock(c.mutex(), std::try_to_lock);
            if (lock.owns_lock()) return Lease(c, std::move(lock));
        }
        Connection &c = *conns_[start % n];
        return Lease(c, std::unique_lock<std::mutex>(c.mutex()));
    }

    struct Sink {
        vdkit_extent *out;
        uint32_t max;
        uint32_t count; // entries of out in use
        uint64_t next;  // where the extents reported so far end
        uint64_t end;

        static int on_extents(void *user, const char *context, uint64_t offset, uint32_t *entries, size_t nr, int *) {
            auto *s = static_cast<Sink *>(user);
            if (std::strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0 || offset != s->next) return 0;
            for (size_t i = 0; i + 1 < nr && s->next < s->end; i += 2) {
                const uint64_t length = std::min<uint64_t>(entries[i], s->end - s->next);
                if (length == 0) break;
                // NBD_STATE_ZERO: reads as zero (hole or not). A hole
                // without it reads as something else (a backing file).
                const uint32_t type = (entries[i + 1] & LIBNBD_STATE_ZERO) ? VDKIT_EXTENT_HOLE : VDKIT_EXTENT_DATA;
                if (s->count > 0 && s->out[s->count - 1].type == type) {
                    s->out[s->count - 1].length += length;
                } else {
                    if (s->count == s->max) break;
                    s->out[s->count++] = vdkit_extent{s->next, length, type, 0};
                }
                s->next += length;
            }
            return 0;
        }
    };

    void check_range(const char *what, uint64_t off, uint64_t len) const {
        if (off > size_ || len > size_ - off)
            throw Error(VDKIT_E_OUT_OF_RANGE, url_ + ": " + what + " of " + std::to_string(len) + " bytes at offset " +
                                                  hex(off) + " is beyond the end of the export (" +
                                                  std::to_string(size_) + " bytes)");
    }

    void require_writable() const {
        if (!writable_) throw Error(VDKIT_E_READ_ONLY, url_ + " is open read-only");
    }

    // Data requests (read, write) of at most max_request_ bytes each, all
    // sent on one connection, then awaited.
    template <class Submit>
    void transfer(const std::string &what, uint64_t off, uint64_t len, bool changes, Submit submit) {
        send(what, off, len, max_request_, changes, submit);
    }

    // Requests without payload (zero, trim) of at most kMaxEffectLength
    // bytes each, aligned to the server's minimum block size.
    template <class Submit> void effect(const std::string &what, uint64_t off, uint64_t len, Submit submit) {
        send(what, off, len, std::max<uint64_t>(min_block_, kMaxEffectLength / min_block_ * min_block_), true, submit);
    }

    // Requests of at most `step` bytes covering [off, off+len), sent on one
    // connection, then awaited together. `changes`: they change the export
    // (write, zero, trim), which the next flush must cover.
    template <class Submit>
    void send(const std::string &what, uint64_t off, uint64_t len, uint64_t step, bool changes, Submit submit) {
        if (len == 0) return;
        const bool unflushed = changes ? unflushed_.exchange(true) : unflushed_.load();
        on_connection(what, unflushed, [&](Lease &c) {
            c->check_usable(what);
            std::vector<int64_t> cookies;
            for (uint64_t at = off, end = off + len; at < end;) {
                const uint64_t n = std::min(step, end - at);
                const int64_t cookie = submit(c->get(), at, n);
                if (cookie == -1) {
                    if (!cookies.empty()) c->wait(cookies, what, settings_.timeout_ms); // none may outlive the buffer
                    c->submit_failed(what);
                }
                cookies.push_back(cookie);
                at += n;
            }
            c->wait(cookies, what, settings_.timeout_ms);
        });
    }

    // Run `op` on a free connection. When it fails because the connection is
    // lost and `reconnect_timeout` is set, the connection is opened again
    // (until that many seconds after the first loss) and `op` runs again
    // from its start. `unflushed`: the server held acknowledged writes not
    // yet flushed when this call began; a reconnect then means they may be
    // gone, which every later flush reports (check_no_lost_writes).
    template <class Op> void on_connection(const std::string &what, bool unflushed, Op op) {
        std::optional<Clock::time_point> give_up;
        for (;;) {
            Lease c = lease();
            try {
                op(c);
                return;
            } catch (const Error &e) {
                if (settings_.reconnect_timeout_ms == 0 || !c->lost()) throw;
                if (!give_up)
                    give_up = Clock::now() + std::chrono::milliseconds(settings_.reconnect_timeout_ms);
                else if (Clock::now() >= *give_up)
                    throw;
                if (unflushed && can_flush_) lost_writes_ = true;
                c->reconnect(settings_, *give_up, e.what());
                const int64_t size = nbd_get_size(c->get());
                if (size < 0 || static_cast<uint64_t>(size) != size_)
                    throw Error(VDKIT_E_IO, url_ + ": " + what + ": after reconnecting, the export's size is " +
                                                (size < 0 ? std::string("unknown") : std::to_string(size)) +
                                                " bytes, not " + std::to_string(size_) +
                                                " as before: it is not the same disk");
            }
        }
    }

    // A reconnect happened while acknowledged writes were not flushed: a
    // restarted server may have dropped them, so no flush may claim them
    // durable (sticky, as a failed fsync: reopen and write again).
    void check_no_lost_writes() const {
        if (lost_writes_)
            throw Error(VDKIT_E_IO, url_ + ": the connection to the NBD server was lost and opened again while "
                                           "writes it had acknowledged were not yet flushed; a restarted server "
                                           "may have dropped them, so they cannot be made durable (reopen the "
                                           "image and write the data again)");
    }

    void write_zero_bytes(Context &ctx, uint64_t off, uint64_t len) {
        std::vector<unsigned char> z(static_cast<size_t>(std::min<uint64_t>(len, max_request_)), 0);
        for (uint64_t done = 0; done < len;) {
            const uint64_t n = std::min<uint64_t>(z.size(), len - done);
            pwrite(ctx, off + done, z.data(), n);
            done += n;
        }
    }

    std::string url_;
    Settings settings_;
    std::vector<std::unique_ptr<Connection>> conns_;
    std::atomic<size_t> next_{0};
    uint64_t size_ = 0;
    uint64_t max_request_ = kDefaultMaxRequest;
    uint64_t min_block_ = 1;
    std::atomic<bool> unflushed_{false};   // writes acknowledged since the last flush began
    std::atomic<bool> lost_writes_{false}; // see check_no_lost_writes
    bool writable_ = false;
    bool can_flush_ = false, can_trim_ = false, can_zero_ = false, can_extents_ = false;
};

constexpr vdkit_config_key kKeys[] = {
    sdk::key("connect_timeout", VDKIT_KEY_UINT, "10",
             "Seconds to wait for the connection and the NBD handshake before giving up with an error naming the URL.",
             0, {}, 1, 3600),
    sdk::key("timeout", VDKIT_KEY_UINT, "60",
             "Seconds to wait for the server's reply to one request; then the connection is closed and the call "
             "fails naming the URL. 0 waits for ever.",
             0, {}, 0, 86400),
    sdk::key("reconnect_timeout", VDKIT_KEY_UINT, "0",
             "Seconds to keep trying to open a lost connection again (a restarted server, a dropped network) and "
             "send the call again; 0 fails the call at once. A reconnect while acknowledged writes are not yet "
             "flushed makes the next flush fail: the server may have dropped them.",
             0, {}, 0, 3600),
    sdk::key("connections", VDKIT_KEY_UINT, "4",
             "Connections to open when the server advertises multi-conn (one otherwise); calls from several threads "
             "use them in parallel.",
             0, {}, 1, 16),
    sdk::key("tls_certificates", VDKIT_KEY_STRING, "",
             "nbds: directory of X.509 certificates (ca-cert.pem, client-cert.pem, client-key.pem); default: the "
             "system's trust store and ~/.pki/libnbd."),
    sdk::key("tls_verify_peer", VDKIT_KEY_BOOL, "true", "nbds: verify the server's certificate."),
    sdk::key("tls_psk_file", VDKIT_KEY_STRING, "",
             "nbds: use TLS with pre-shared keys from this file (psktool format).", VDKIT_KEY_SECRET),
    sdk::key("tls_username", VDKIT_KEY_STRING, "", "nbds: the user name for TLS-PSK (default: the login name)."),
};

constexpr vdkit_str kSchemes[] = {sdk::str("nbds"), sdk::str("nbd+unix"), sdk::str("nbds+unix")};

const vdkit_plugin_descriptor *nbd_transport() {
    static const vdkit_plugin_descriptor d = sdk::describe(
        VDKIT_KIND_TRANSPORT,
        sdk::DescriptorSpec{"nbd", "1.0.0", "Disks exported by an NBD server (libnbd): nbd://, nbds://, nbd+unix://",
                            VDKIT_CAP_EXTENTS | VDKIT_CAP_DISCARD | VDKIT_CAP_THREAD_SAFE, kKeys,
                            static_cast<uint32_t>(std::size(kKeys)), nullptr, 0, kSchemes,
                            static_cast<uint32_t>(std::size(kSchemes))},
        sdk::transport_ops<NbdHandle>());
    return &d;
}

} // namespace

VDKIT_SDK_ENTRY(nbd_transport())
