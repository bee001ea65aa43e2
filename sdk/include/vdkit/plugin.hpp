// vdkit/plugin.hpp — header-only C++ helper for writing vdkit plugins.
//
// Language level: C++20 (it picks the slots a class implements with
// requires-expressions); build plugins with -std=c++20 or later
// (vdkit_add_plugin and the vdkit::sdk target ask for it). The C ABI it
// wraps (plugin.h, status.h, constants.h) is plain C99, for plugins written
// in C or any language with a C FFI.
//
// Write a plain C++ class; the helper builds the C vtables of plugin.h from
// the member functions the class actually has (a slot the class does not
// implement stays NULL, so the host knows it is "not provided"). Every
// trampoline is noexcept and turns exceptions into status codes:
//   sdk::Error        -> its code and message
//   std::bad_alloc    -> VDKIT_E_NO_MEMORY
//   std::exception    -> VDKIT_E_INTERNAL with what()
//   anything else     -> VDKIT_E_INTERNAL
// so nothing C++ ever crosses the ABI. sdk/docs/plugin-guide.md lists the
// member signatures for each plugin kind; sdk/examples/toysparse is a
// complete format plugin.
//
// Thread-safety: the helper keeps one process-wide pointer to the host table,
// set once by the entry function; everything else is per call.
#ifndef VDKIT_PLUGIN_HPP
#define VDKIT_PLUGIN_HPP

#include "vdkit/plugin.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace vdkit::sdk {

// ---- strings -----------------------------------------------------------------

constexpr vdkit_str str(std::string_view s) noexcept {
    return vdkit_str{s.data(), s.size()};
}
inline std::string_view view(vdkit_str s) noexcept {
    return s.data ? std::string_view(s.data, static_cast<size_t>(s.size)) : std::string_view();
}

// ---- errors --------------------------------------------------------------------

// Throw from plugin code to return `code` with `message`. An Error with an
// empty message keeps the message the host already recorded (e.g. by a
// failed store call).
class Error : public std::runtime_error {
public:
    Error(uint32_t code, std::string message) : std::runtime_error(std::move(message)), code_(code) {}
    uint32_t code() const noexcept { return code_; }

private:
    uint32_t code_;
};

namespace detail {
inline const vdkit_host_api *&host_slot() noexcept {
    static const vdkit_host_api *host = nullptr;
    return host;
}
} // namespace detail

inline const vdkit_host_api &host() noexcept {
    return *detail::host_slot();
}

// ---- byte stores ------------------------------------------------------------------

// A byte store reached through the host. StoreRef does not own; Store closes
// on destruction. Every method throws Error on failure with the host's
// message already recorded in the call context.
class StoreRef {
public:
    StoreRef() = default;
    explicit StoreRef(vdkit_store *s) noexcept : store_(s) {}
    vdkit_store *get() const noexcept { return store_; }
    explicit operator bool() const noexcept { return store_ != nullptr; }

    // The one I/O shape of plugin.h: offset, buffer, length.
    void pread(vdkit_ctx *ctx, uint64_t off, void *buf, uint64_t len) const {
        check(host().store_pread(store_, ctx, off, buf, len));
    }
    void pwrite(vdkit_ctx *ctx, uint64_t off, const void *buf, uint64_t len) const {
        check(host().store_pwrite(store_, ctx, off, buf, len));
    }
    void flush(vdkit_ctx *ctx) const { check(host().store_flush(store_, ctx)); }
    uint64_t size(vdkit_ctx *ctx) const {
        uint64_t s = 0;
        check(host().store_get_size(store_, ctx, &s));
        return s;
    }
    void truncate(vdkit_ctx *ctx, uint64_t size) const { check(host().store_truncate(store_, ctx, size)); }
    void discard(vdkit_ctx *ctx, uint64_t off, uint64_t len) const {
        check(host().store_discard(store_, ctx, off, len));
    }
    void zero(vdkit_ctx *ctx, uint64_t off, uint64_t len) const { check(host().store_zero(store_, ctx, off, len)); }
    uint32_t extents(vdkit_ctx *ctx, uint64_t off, uint64_t len, vdkit_extent *out, uint32_t max) const {
        uint32_t n = 0;
        check(host().store_extents(store_, ctx, off, len, out, max, &n));
        return n;
    }

protected:
    static void check(uint32_t rc) {
        if (rc != VDKIT_OK) throw Error(rc, std::string());
    }
    vdkit_store *store_ = nullptr;
};

class Store : public StoreRef {
public:
    Store() = default;
    explicit Store(vdkit_store *s) noexcept : StoreRef(s) {}
    Store(Store &&o) noexcept : StoreRef(o.store_) { o.store_ = nullptr; }
    Store &operator=(Store &&o) noexcept {
        if (this != &o) {
            reset();
            store_ = o.store_;
            o.store_ = nullptr;
        }
        return *this;
    }
    Store(const Store &) = delete;
    Store &operator=(const Store &) = delete;
    ~Store() { reset(); }
    void reset() noexcept {
        if (store_) host().store_close(store_);
        store_ = nullptr;
    }
};

// ---- the call context --------------------------------------------------------------

class Context {
public:
    explicit Context(vdkit_ctx *c) noexcept : ctx_(c) {}
    vdkit_ctx *get() const noexcept { return ctx_; }

    void log(uint32_t level, std::string_view msg) const noexcept { host().log(ctx_, level, str(msg)); }

    // Option values, validated by the host against the plugin's key table.
    std::optional<std::string> config(std::string_view key) const {
        vdkit_str v{};
        uint32_t rc = host().config_get(ctx_, str(key), &v);
        if (rc == VDKIT_E_NOT_FOUND) return std::nullopt;
        if (rc != VDKIT_OK) throw Error(rc, std::string());
        return std::string(view(v));
    }
    std::optional<uint64_t> config_uint(std::string_view key) const {
        uint64_t v = 0;
        uint32_t rc = host().config_get_uint(ctx_, str(key), &v);
        if (rc == VDKIT_E_NOT_FOUND) return std::nullopt;
        if (rc != VDKIT_OK) throw Error(rc, std::string());
        return v;
    }
    std::optional<bool> config_bool(std::string_view key) const {
        uint8_t v = 0;
        uint32_t rc = host().config_get_bool(ctx_, str(key), &v);
        if (rc == VDKIT_E_NOT_FOUND) return std::nullopt;
        if (rc != VDKIT_OK) throw Error(rc, std::string());
        return v != 0;
    }

    // Open a file next to the image, through the image's transport.
    Store open(std::string_view path, uint32_t flags) const {
        vdkit_store *s = nullptr;
        uint32_t rc = host().store_open(ctx_, str(path), flags, &s);
        if (rc != VDKIT_OK) throw Error(rc, std::string());
        return Store(s);
    }
    void remove(std::string_view path) const {
        uint32_t rc = host().store_remove(ctx_, str(path));
        if (rc != VDKIT_OK) throw Error(rc, std::string());
    }
    // Move a file; both paths are resolved against the image's location.
    void rename(std::string_view from, std::string_view to) const {
        uint32_t rc = host().store_rename(ctx_, str(from), str(to));
        if (rc != VDKIT_OK) throw Error(rc, std::string());
    }

    // Disk-level filters (VDKIT_CAP_FILTER_DISK, ABI 2.2): the chain's base
    // image's key/value metadata (nullopt: unset) and location. Throw
    // Error(VDKIT_E_NOT_SUPPORTED) when the base image's format has no
    // metadata, the caller is not a disk-level filter, or the host is older.
    std::optional<std::string> disk_metadata(std::string_view key) const {
        if (!VDKIT_HOST_HAS(&host(), disk_metadata_get))
            throw Error(VDKIT_E_NOT_SUPPORTED, "the host has no disk metadata (ABI < 2.2)");
        std::string buf(256, '\0');
        for (;;) {
            uint64_t needed = 0;
            uint32_t rc = host().disk_metadata_get(ctx_, str(key), buf.data(), buf.size(), &needed);
            if (rc == VDKIT_E_NOT_FOUND) return std::nullopt;
            if (rc != VDKIT_OK) throw Error(rc, std::string());
            if (needed <= buf.size()) return buf.substr(0, static_cast<size_t>(needed));
            buf.assign(static_cast<size_t>(needed), '\0');
        }
    }
    void set_disk_metadata(std::string_view key, std::string_view value) const {
        if (!VDKIT_HOST_HAS(&host(), disk_metadata_set))
            throw Error(VDKIT_E_NOT_SUPPORTED, "the host has no disk metadata (ABI < 2.2)");
        uint32_t rc = host().disk_metadata_set(ctx_, str(key), str(value));
        if (rc != VDKIT_OK) throw Error(rc, std::string());
    }
    std::string disk_location() const {
        if (!VDKIT_HOST_HAS(&host(), disk_location))
            throw Error(VDKIT_E_NOT_SUPPORTED, "the host has no disk location (ABI < 2.2)");
        std::string buf(256, '\0');
        for (;;) {
            uint64_t needed = 0;
            uint32_t rc = host().disk_location(ctx_, buf.data(), buf.size(), &needed);
            if (rc != VDKIT_OK) throw Error(rc, std::string());
            if (needed <= buf.size()) return buf.substr(0, static_cast<size_t>(needed));
            buf.assign(static_cast<size_t>(needed), '\0');
        }
    }

    // Throws Error(VDKIT_E_CANCELLED) when the user cancelled.
    void progress(uint64_t done, uint64_t total) const {
        if (host().progress(ctx_, done, total) != 0) throw Error(VDKIT_E_CANCELLED, "cancelled by the caller");
    }
    void finding(uint32_t severity, uint64_t offset, std::string_view msg) const {
        host().report_finding(ctx_, severity, offset, str(msg));
    }

private:
    vdkit_ctx *ctx_;
};

// ---- check() findings ------------------------------------------------------------

// Reports findings of a format's check() and counts them into the result
// the way the host reads it: with VDKIT_CHECK_REPAIR (and no dry run) a
// fixable finding is reported as VDKIT_FINDING_REPAIRED and counted as
// repaired — the caller fixes it when repairing() is true; otherwise errors
// and leaks are counted, and a dry run marks fixable ones "(would be
// repaired)". Notes are never counted.
class CheckReporter {
public:
    CheckReporter(Context &ctx, uint32_t flags, vdkit_check_result &result) noexcept
        : ctx_(ctx), result_(result), repair_((flags & VDKIT_CHECK_REPAIR) && !(flags & VDKIT_CHECK_DRY_RUN)),
          dry_run_((flags & VDKIT_CHECK_REPAIR) && (flags & VDKIT_CHECK_DRY_RUN)) {}

    bool repairing() const noexcept { return repair_; }

    // offset: the file offset the finding concerns (UINT64_MAX: none).
    void operator()(uint32_t severity, uint64_t offset, const std::string &message, bool fixable) const {
        if (fixable && repair_) {
            ++result_.repaired;
            ctx_.finding(VDKIT_FINDING_REPAIRED, offset, message);
            return;
        }
        if (severity == VDKIT_FINDING_ERROR)
            ++result_.errors;
        else if (severity == VDKIT_FINDING_LEAK)
            ++result_.leaks;
        ctx_.finding(severity, offset, fixable && dry_run_ ? message + " (would be repaired)" : message);
    }

private:
    Context &ctx_;
    vdkit_check_result &result_;
    bool repair_, dry_run_;
};

// ---- measure helper ----------------------------------------------------------------

// For measure(): how many allocation units of `unit` bytes (aligned to
// multiples of unit from offset 0) inside [lo, hi) the sorted, disjoint
// ranges touch; a unit two ranges share counts once.
inline uint64_t units_touched(const vdkit_extent *data, uint64_t count, uint64_t unit, uint64_t lo,
                              uint64_t hi) noexcept {
    uint64_t n = 0, last = UINT64_MAX; // last unit counted
    for (uint64_t i = 0; i < count; ++i) {
        const uint64_t a = std::max(data[i].offset, lo);
        const uint64_t b = std::min(data[i].offset + data[i].length, hi);
        if (a >= b) continue;
        uint64_t first = a / unit;
        const uint64_t end = (b - 1) / unit + 1;
        if (first == last) ++first;
        if (first < end) n += end - first;
        last = end - 1;
    }
    return n;
}

// ---- byte helpers ------------------------------------------------------------------

// True when all n bytes at p are zero (all-zero blocks are left unallocated).
inline bool is_zero(const void *p, size_t n) noexcept {
    const auto *b = static_cast<const unsigned char *>(p);
    return n == 0 || (b[0] == 0 && std::memcmp(b, b + 1, n - 1) == 0);
}

// ---- results of format calls --------------------------------------------------------

struct ReadResult {
    uint64_t done = 0;        // bytes read, or the length of the unallocated run
    bool unallocated = false; // true: [offset, offset+done) is not present here
};
struct WriteResult {
    uint64_t done = 0;
    bool block_free = false; // true: write [fill_offset, fill_offset+fill_len) whole
    uint64_t fill_offset = 0;
    uint64_t fill_len = 0;
};
struct BlockStatus {
    uint32_t status = VDKIT_BLOCK_DATA;
    uint64_t run = 0;
};

namespace detail {

inline void set_error(vdkit_ctx *ctx, uint32_t code, std::string_view msg) noexcept {
    if (host_slot() && !msg.empty()) host().set_error(ctx, code, str(msg));
}

// The exception firewall: every trampoline runs its body through this.
template <class F> uint32_t guard(vdkit_ctx *ctx, F &&body) noexcept {
    try {
        return body();
    } catch (const Error &e) {
        set_error(ctx, e.code(), e.what());
        return e.code() == VDKIT_OK ? VDKIT_E_INTERNAL : e.code();
    } catch (const std::bad_alloc &) {
        set_error(ctx, VDKIT_E_NO_MEMORY, "out of memory in plugin");
        return VDKIT_E_NO_MEMORY;
    } catch (const std::exception &e) {
        set_error(ctx, VDKIT_E_INTERNAL, std::string("plugin error: ") + e.what());
        return VDKIT_E_INTERNAL;
    } catch (...) {
        set_error(ctx, VDKIT_E_INTERNAL, "plugin threw an unknown exception");
        return VDKIT_E_INTERNAL;
    }
}

// Copy a string into a (buf, cap, needed) output.
inline void copy_out(std::string_view s, char *buf, uint64_t cap, uint64_t *needed) noexcept {
    if (buf && cap) std::memcpy(buf, s.data(), static_cast<size_t>(std::min<uint64_t>(cap, s.size())));
    *needed = s.size();
}

// Copy a filled struct into the host's, writing at most its struct_size.
template <class S> void copy_sized(const S &src, S *dst) noexcept {
    uint32_t n = std::min<uint32_t>(dst->struct_size, static_cast<uint32_t>(sizeof(S)));
    uint32_t keep = dst->struct_size;
    std::memcpy(dst, &src, n);
    dst->struct_size = keep;
}

template <class T> T *as(void *p) noexcept {
    return static_cast<T *>(p);
}

// ---- the generic trampoline -------------------------------------------------------------
//
// Every C callback is one of two thunks: on an object, (void *self, vdkit_ctx
// *ctx, args...), or without one, (vdkit_ctx *ctx, args...). The thunk runs a
// C++ body through guard() with a Context and the C arguments converted by
// cxx() (vdkit_str -> std::string_view, vdkit_store * -> StoreRef, the rest
// as they are). A body returning void means VDKIT_OK; one returning uint32_t
// returns that status. bind_*() set a slot only when the body accepts the
// slot's arguments, so a member the class lacks leaves its slot NULL.

inline std::string_view cxx(vdkit_str s) noexcept {
    return view(s);
}
inline StoreRef cxx(vdkit_store *s) noexcept {
    return StoreRef(s);
}
template <class A> A cxx(A a) noexcept {
    return a;
}
template <class A> using cxx_t = decltype(cxx(std::declval<A>()));

template <class F> uint32_t status_of(F &&f) {
    if constexpr (std::is_void_v<decltype(f())>) {
        f();
        return VDKIT_OK;
    } else {
        return f();
    }
}

template <class T, auto Body, class... A> uint32_t object_thunk(void *self, vdkit_ctx *c, A... a) noexcept {
    return guard(c, [&] {
        Context ctx(c);
        return status_of([&] { return Body(*as<T>(self), ctx, cxx(a)...); });
    });
}

template <auto Body, class... A> uint32_t static_thunk(vdkit_ctx *c, A... a) noexcept {
    return guard(c, [&] {
        Context ctx(c);
        return status_of([&] { return Body(ctx, cxx(a)...); });
    });
}

template <class T, auto Body, class... A> void bind_object(uint32_t (*&slot)(void *, vdkit_ctx *, A...)) noexcept {
    if constexpr (std::is_invocable_v<decltype(Body), T &, Context &, cxx_t<A>...>) slot = &object_thunk<T, Body, A...>;
}

template <auto Body, class... A> void bind_static(uint32_t (*&slot)(vdkit_ctx *, A...)) noexcept {
    if constexpr (std::is_invocable_v<decltype(Body), Context &, cxx_t<A>...>) slot = &static_thunk<Body, A...>;
}

} // namespace detail

// A body that forwards the slot's (converted) arguments to member `name`;
// not callable (so the slot stays NULL) when the class lacks it.
#define VDKIT_SDK_MEMBER(name)                                                                                         \
    [](auto &t, ::vdkit::sdk::Context &c, auto... a) -> decltype(t.name(c, a...), void()) { t.name(c, a...); }

// ---- format plugins ---------------------------------------------------------------------

// Builds a vdkit_format_ops for image class T. Required members:
//   static uint32_t probe(Context&, StoreRef main, std::string_view name);
//   static std::unique_ptr<T> open(Context&, StoreRef main, std::string_view name, uint32_t flags);
//   void info(Context&, vdkit_image_info& out);
//   ReadResult read(Context&, uint64_t off, void* buf, uint64_t len);
// Optional members (slot stays NULL without them): create, close(Context&, bool delete_files)
// (needed only by formats with files besides main; without it the instance is just freed),
// write, block_status, flush, discard, write_zeroes, set_uuid, parent_hint, parent_format (2.3),
// set_parent, comment, set_comment, set_geometry, metadata_get, metadata_set, metadata_keys, details
// (2.3: std::string details(Context&): get_details' JSON object, vdkit/text.hpp's json_quote helps),
// compact, resize, check, rename, and the static
//   static void measure(Context&, uint64_t size, const vdkit_extent* data, uint64_t count, vdkit_measure& out);
// See plugin-guide.md for the signatures.
template <class T> const vdkit_format_ops *format_ops() noexcept {
    using detail::bind_object;
    using detail::bind_static;
    static_assert(
        requires(Context & c, StoreRef m) { uint32_t(T::probe(c, m, std::string_view())); },
        "a format must implement static probe(Context&, StoreRef, std::string_view)");
    static_assert(
        requires(Context & c, StoreRef m) { T::open(c, m, std::string_view(), uint32_t()).release(); },
        "a format must implement static open(Context&, StoreRef, std::string_view, uint32_t)");
    static_assert(
        requires(T & t, Context & c, vdkit_image_info & i) { t.info(c, i); },
        "a format must implement info(Context&, vdkit_image_info&)");
    static_assert(
        requires(T & t, Context & c) { ReadResult(t.read(c, uint64_t(), (void *)nullptr, uint64_t())); },
        "a format must implement read(Context&, uint64_t offset, void *buf, uint64_t len)");
    static const vdkit_format_ops ops = [] {
        vdkit_format_ops o{};
        o.struct_size = sizeof(o);
        bind_static<[](Context &c, StoreRef m, std::string_view n, uint32_t *score) { *score = T::probe(c, m, n); }>(
            o.probe);
        bind_static<[](Context &c, StoreRef m, std::string_view n, uint32_t flags, void **out) {
            *out = T::open(c, m, n, flags).release();
        }>(o.open);
        if constexpr (requires(Context & c, StoreRef m, const vdkit_create_params &p) {
                          T::create(c, m, std::string_view(), p);
                      }) {
            bind_static<[](Context &c, StoreRef m, std::string_view n, const vdkit_create_params *p, void **out) {
                // Copy what the host sent; fields it does not know stay zero.
                vdkit_create_params params{};
                std::memcpy(&params, p, std::min<size_t>(p->struct_size, sizeof(params)));
                params.struct_size = sizeof(params);
                *out = T::create(c, m, n, params).release();
            }>(o.create);
        }
        if constexpr (requires(Context & ctx, vdkit_measure & m) {
                          T::measure(ctx, uint64_t(), (const vdkit_extent *)nullptr, uint64_t(), m);
                      }) {
            bind_static<[](Context &c, uint64_t size, const vdkit_extent *data, uint64_t count, vdkit_measure *out) {
                vdkit_measure m{};
                m.struct_size = sizeof(m);
                T::measure(c, size, data, count, m);
                // Only as many bytes as the host's struct has.
                std::memcpy(reinterpret_cast<unsigned char *>(out) + sizeof(uint32_t),
                            reinterpret_cast<const unsigned char *>(&m) + sizeof(uint32_t),
                            std::min<size_t>(std::max<size_t>(out->struct_size, sizeof(uint32_t)), sizeof(m)) -
                                sizeof(uint32_t));
            }>(o.measure);
        }
        // close frees the instance even when the plugin's close fails.
        o.close = [](void *img, vdkit_ctx *c, uint8_t del) noexcept {
            std::unique_ptr<T> owned(detail::as<T>(img));
            return detail::guard(c, [&] {
                // Without a close(ctx, delete_files) the image is one file
                // (main), which the host removes itself: nothing else to do.
                if constexpr (requires(T & t, Context & ctx) { t.close(ctx, true); }) {
                    Context ctx(c);
                    owned->close(ctx, del != 0);
                }
                (void)del;
                return VDKIT_OK;
            });
        };
        bind_object<T, [](T &t, Context &c, vdkit_image_info *out) {
            vdkit_image_info info{};
            info.struct_size = sizeof(info);
            t.info(c, info);
            detail::copy_sized(info, out);
        }>(o.get_info);
        bind_object<T, [](T &t, Context &c, uint64_t off, void *buf, uint64_t len, uint64_t *done) {
            ReadResult r = t.read(c, off, buf, len);
            *done = r.done;
            return r.unallocated ? VDKIT_E_UNALLOCATED : VDKIT_OK;
        }>(o.read);
        if constexpr (requires(T & t, Context & c) { t.write(c, uint64_t(), (const void *)nullptr, uint64_t()); }) {
            bind_object<T, [](T &t, Context &c, uint64_t off, const void *buf, uint64_t len, uint64_t *done,
                              uint64_t *fill_offset, uint64_t *fill_len) {
                WriteResult r = t.write(c, off, buf, len);
                *done = r.done;
                *fill_offset = r.fill_offset;
                *fill_len = r.fill_len;
                return r.block_free ? VDKIT_E_BLOCK_FREE : VDKIT_OK;
            }>(o.write);
        }
        if constexpr (requires(T & t, Context & c) { t.block_status(c, uint64_t(), uint64_t()); }) {
            bind_object<T, [](T &t, Context &c, uint64_t off, uint64_t len, uint32_t *status, uint64_t *run) {
                BlockStatus b = t.block_status(c, off, len);
                *status = b.status;
                *run = b.run;
            }>(o.block_status);
        }
        if constexpr (requires(T & t, Context & c) { std::string(t.parent_hint(c)); }) {
            bind_object<T, [](T &t, Context &c, char *buf, uint64_t cap, uint64_t *needed) {
                detail::copy_out(t.parent_hint(c), buf, cap, needed);
            }>(o.get_parent_hint);
        }
        if constexpr (requires(T & t, Context & c) { std::string(t.details(c)); }) { // 2.3
            bind_object<T, [](T &t, Context &c, char *buf, uint64_t cap, uint64_t *needed) {
                detail::copy_out(t.details(c), buf, cap, needed);
            }>(o.get_details);
        }
        if constexpr (requires(T & t, Context & c) { std::string(t.parent_format(c)); }) {
            bind_object<T, [](T &t, Context &c, char *buf, uint64_t cap, uint64_t *needed) {
                detail::copy_out(t.parent_format(c), buf, cap, needed);
            }>(o.get_parent_format);
        }
        if constexpr (requires(T & t, Context & c) { std::string(t.comment(c)); }) {
            bind_object<T, [](T &t, Context &c, char *buf, uint64_t cap, uint64_t *needed) {
                detail::copy_out(t.comment(c), buf, cap, needed);
            }>(o.get_comment);
        }
        if constexpr (requires(T & t, Context & c) {
                          std::optional<std::string>(t.metadata_get(c, std::string_view()));
                      }) {
            bind_object<T, [](T &t, Context &c, std::string_view k, char *buf, uint64_t cap, uint64_t *needed) {
                std::optional<std::string> v = t.metadata_get(c, k);
                if (!v) throw Error(VDKIT_E_NOT_FOUND, "no metadata key '" + std::string(k) + "'");
                detail::copy_out(*v, buf, cap, needed);
            }>(o.metadata_get);
        }
        if constexpr (requires(T & t, Context & c) { std::vector<std::string>(t.metadata_keys(c)); }) {
            bind_object<T, [](T &t, Context &c, char *buf, uint64_t cap, uint64_t *needed) {
                std::string joined;
                for (const std::string &k : t.metadata_keys(c)) {
                    joined += k;
                    joined.push_back('\0');
                }
                detail::copy_out(joined, buf, cap, needed);
            }>(o.metadata_list);
        }
        if constexpr (requires(T & t, Context & c, vdkit_check_result & r) { t.check(c, uint32_t(), r); }) {
            bind_object<T, [](T &t, Context &c, uint32_t flags, vdkit_check_result *out) {
                vdkit_check_result r{};
                r.struct_size = sizeof(r);
                t.check(c, flags, r);
                detail::copy_sized(r, out);
            }>(o.check);
        }
        // Plain forwards: the member takes the slot's arguments as they are.
        bind_object<T, VDKIT_SDK_MEMBER(flush)>(o.flush);
        bind_object<T, VDKIT_SDK_MEMBER(discard)>(o.discard);
        bind_object<T, VDKIT_SDK_MEMBER(write_zeroes)>(o.write_zeroes);
        bind_object<T, VDKIT_SDK_MEMBER(set_uuid)>(o.set_uuid);
        bind_object<T, VDKIT_SDK_MEMBER(set_parent)>(o.set_parent);
        bind_object<T, VDKIT_SDK_MEMBER(set_comment)>(o.set_comment);
        bind_object<T, VDKIT_SDK_MEMBER(set_geometry)>(o.set_geometry);
        bind_object<T, VDKIT_SDK_MEMBER(metadata_set)>(o.metadata_set);
        bind_object<T, VDKIT_SDK_MEMBER(compact)>(o.compact);
        bind_object<T, VDKIT_SDK_MEMBER(resize)>(o.resize);
        bind_object<T, VDKIT_SDK_MEMBER(rename)>(o.rename);
        return o;
    }();
    return &ops;
}

namespace detail {
// Fills the byte-I/O slots shared by transports and filters (same names in
// both vtables) from the members T has.
template <class T, class Ops> void fill_io_ops(Ops &o) noexcept {
    // ABI 2.0 moved the offset before the buffer; say so instead of silently
    // leaving the slot NULL for a class written against 1.x.
    static_assert(
        !requires(T & t, Context & c) { t.pread(c, (void *)nullptr, uint64_t(), uint64_t()); },
        "ABI 2.0: pread takes (Context&, uint64_t offset, void *buf, uint64_t len)");
    static_assert(
        !requires(T & t, Context & c) { t.pwrite(c, (const void *)nullptr, uint64_t(), uint64_t()); },
        "ABI 2.0: pwrite takes (Context&, uint64_t offset, const void *buf, uint64_t len)");
    bind_object<T, VDKIT_SDK_MEMBER(pread)>(o.pread);
    bind_object<T, VDKIT_SDK_MEMBER(pwrite)>(o.pwrite);
    bind_object<T, VDKIT_SDK_MEMBER(flush)>(o.flush);
    bind_object<T, VDKIT_SDK_MEMBER(truncate)>(o.truncate);
    bind_object<T, VDKIT_SDK_MEMBER(discard)>(o.discard);
    bind_object<T, VDKIT_SDK_MEMBER(zero)>(o.zero);
    if constexpr (requires(T & t, Context & c) { uint64_t(t.size(c)); })
        bind_object<T, [](T &t, Context &c, uint64_t *size) { *size = t.size(c); }>(o.get_size);
    if constexpr (requires(T & t, Context & c) {
                      uint32_t(t.extents(c, uint64_t(), uint64_t(), (vdkit_extent *)nullptr, uint32_t()));
                  }) {
        bind_object<T, [](T &t, Context &c, uint64_t off, uint64_t len, vdkit_extent *out, uint32_t max,
                          uint32_t *count) { *count = t.extents(c, off, len, out, max); }>(o.extents);
    }
}
} // namespace detail

// ---- transport plugins --------------------------------------------------------------------

// Builds a vdkit_transport_ops for handle class T. Required:
//   static std::unique_ptr<T> open(Context&, std::string_view location, uint32_t flags);
//   void pread(Context&, uint64_t off, void* buf, uint64_t len);
//   uint64_t size(Context&);
// Optional: pwrite(Context&, uint64_t off, const void* buf, uint64_t len), flush, truncate,
// discard, zero, extents (returns the count written to out), allocated_size, and the
// statics remove, rename, exists.
template <class T> const vdkit_transport_ops *transport_ops() noexcept {
    using detail::bind_object;
    using detail::bind_static;
    static const vdkit_transport_ops ops = [] {
        vdkit_transport_ops o{};
        o.struct_size = sizeof(o);
        bind_static<[](Context &c, std::string_view loc, uint32_t flags, void **out) {
            *out = T::open(c, loc, flags).release();
        }>(o.open);
        o.close = [](void *h) noexcept { delete detail::as<T>(h); };
        detail::fill_io_ops<T>(o);
        static_assert(
            requires(T & t, Context & c) { t.pread(c, uint64_t(), (void *)nullptr, uint64_t()); },
            "a transport must implement pread(Context&, uint64_t offset, void *buf, uint64_t len)");
        static_assert(
            requires(T & t, Context & c) { uint64_t(t.size(c)); }, "a transport must implement size");
        if constexpr (requires(T & t, Context & c) { uint64_t(t.allocated_size(c)); })
            bind_object<T, [](T &t, Context &c, uint64_t *bytes) { *bytes = t.allocated_size(c); }>(o.allocated_size);
        if constexpr (requires(Context & c) { bool(T::exists(c, std::string_view())); })
            bind_static<[](Context &c, std::string_view loc, uint8_t *yes) { *yes = T::exists(c, loc) ? 1 : 0; }>(
                o.exists);
        if constexpr (requires(Context & c) { T::remove(c, std::string_view()); })
            bind_static<[](Context &c, std::string_view loc) { T::remove(c, loc); }>(o.remove);
        if constexpr (requires(Context & c) { T::rename(c, std::string_view(), std::string_view()); })
            bind_static<[](Context &c, std::string_view from, std::string_view to) { T::rename(c, from, to); }>(
                o.rename);
        return o;
    }();
    return &ops;
}

// ---- filter plugins ------------------------------------------------------------------------

// Builds a vdkit_filter_ops for handle class T; handled_ops is derived from
// the members T has, so a filter never claims an operation it lacks.
//   static std::unique_ptr<T> open(Context&, StoreRef next, uint32_t flags);   (required)
//   pread, pwrite, flush, size, truncate, discard, zero, extents: as for transports.
template <class T> const vdkit_filter_ops *filter_ops() noexcept {
    static const vdkit_filter_ops ops = [] {
        vdkit_filter_ops o{};
        o.struct_size = sizeof(o);
        detail::bind_static<[](Context &c, StoreRef next, uint32_t flags, void **out) {
            *out = T::open(c, next, flags).release();
        }>(o.open);
        o.close = [](void *h) noexcept { delete detail::as<T>(h); };
        detail::fill_io_ops<T>(o);
        o.handled_ops = (o.pread ? VDKIT_OP_PREAD : 0) | (o.pwrite ? VDKIT_OP_PWRITE : 0) |
                        (o.flush ? VDKIT_OP_FLUSH : 0) | (o.get_size ? VDKIT_OP_GET_SIZE : 0) |
                        (o.truncate ? VDKIT_OP_TRUNCATE : 0) | (o.discard ? VDKIT_OP_DISCARD : 0) |
                        (o.zero ? VDKIT_OP_ZERO : 0) | (o.extents ? VDKIT_OP_EXTENTS : 0);
        return o;
    }();
    return &ops;
}

// ---- descriptors ---------------------------------------------------------------------------

// Config key table entries.
constexpr vdkit_config_key key(std::string_view name, uint32_t type, std::string_view default_value,
                               std::string_view help, uint32_t flags = 0, std::string_view enum_values = {},
                               int64_t min_value = 0, int64_t max_value = 0) noexcept {
    vdkit_config_key k{};
    k.struct_size = sizeof(vdkit_config_key);
    k.type = type;
    k.flags = flags;
    k.name = str(name);
    k.default_value = str(default_value);
    k.help = str(help);
    k.enum_values = str(enum_values);
    k.min_value = min_value;
    k.max_value = max_value;
    return k;
}

struct DescriptorSpec {
    std::string_view name;
    std::string_view version;
    std::string_view description;
    uint64_t capabilities = 0;
    const vdkit_config_key *keys = nullptr;
    uint32_t key_count = 0;
    const vdkit_str *extensions = nullptr;
    uint32_t extension_count = 0;
    // Transports (ABI 2.1): URL schemes served besides the name.
    const vdkit_str *schemes = nullptr;
    uint32_t scheme_count = 0;
};

constexpr vdkit_plugin_descriptor describe(uint32_t kind, const DescriptorSpec &s, const void *ops) noexcept {
    vdkit_plugin_descriptor d{};
    d.struct_size = sizeof(d);
    d.abi_major = VDKIT_ABI_MAJOR;
    d.abi_minor = VDKIT_ABI_MINOR;
    d.kind = kind;
    d.name = str(s.name);
    d.version = str(s.version);
    d.description = str(s.description);
    d.capabilities = s.capabilities;
    d.config_keys = s.keys;
    d.config_key_count = s.key_count;
    d.config_key_size = sizeof(vdkit_config_key);
    d.extensions = s.extensions;
    d.extension_count = s.extension_count;
    d.ops = ops;
    d.schemes = s.schemes;
    d.scheme_count = s.scheme_count;
    return d;
}

namespace detail {
// Entry body shared by VDKIT_SDK_ENTRY: checks the host's ABI and returns the list.
inline const vdkit_plugin_list *entry(const vdkit_host_api *h, const vdkit_plugin_descriptor *const *plugins,
                                      uint32_t count) noexcept {
    if (!h || h->abi_major != VDKIT_ABI_MAJOR) return nullptr;
    host_slot() = h;
    static vdkit_plugin_list list{};
    list.struct_size = sizeof(list);
    list.abi_major = VDKIT_ABI_MAJOR;
    list.abi_minor = VDKIT_ABI_MINOR;
    list.count = count;
    list.plugins = plugins;
    return &list;
}
} // namespace detail

} // namespace vdkit::sdk

// Defines the library's entry symbol from a list of descriptor getters, each a
// function returning const vdkit_plugin_descriptor* (so descriptors are built
// on first use, after the host table is known).
#define VDKIT_SDK_ENTRY(...)                                                                                           \
    extern "C" VDKIT_PLUGIN_EXPORT const vdkit_plugin_list *vdkit_plugin_entry(const vdkit_host_api *host) {           \
        try {                                                                                                          \
            static const vdkit_plugin_descriptor *const plugins[] = {__VA_ARGS__};                                     \
            return ::vdkit::sdk::detail::entry(host, plugins,                                                          \
                                               static_cast<uint32_t>(sizeof(plugins) / sizeof(plugins[0])));           \
        } catch (...) {                                                                                                \
            return nullptr;                                                                                            \
        }                                                                                                              \
    }

#endif // VDKIT_PLUGIN_HPP
