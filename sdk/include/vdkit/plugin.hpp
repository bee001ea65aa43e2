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
#include <vector>

namespace vdkit::sdk {

// ---- strings -----------------------------------------------------------------

constexpr vdkit_str str(std::string_view s) noexcept { return vdkit_str{s.data(), s.size()}; }
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

inline const vdkit_host_api &host() noexcept { return *detail::host_slot(); }

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

    void pread(vdkit_ctx *ctx, void *buf, uint64_t len, uint64_t off) const {
        check(host().store_pread(ctx, store_, buf, len, off));
    }
    void pwrite(vdkit_ctx *ctx, const void *buf, uint64_t len, uint64_t off) const {
        check(host().store_pwrite(ctx, store_, buf, len, off));
    }
    void flush(vdkit_ctx *ctx) const { check(host().store_flush(ctx, store_)); }
    uint64_t size(vdkit_ctx *ctx) const {
        uint64_t s = 0;
        check(host().store_get_size(ctx, store_, &s));
        return s;
    }
    void truncate(vdkit_ctx *ctx, uint64_t size) const { check(host().store_truncate(ctx, store_, size)); }
    void discard(vdkit_ctx *ctx, uint64_t off, uint64_t len) const {
        check(host().store_discard(ctx, store_, off, len));
    }
    void zero(vdkit_ctx *ctx, uint64_t off, uint64_t len) const { check(host().store_zero(ctx, store_, off, len)); }
    uint32_t extents(vdkit_ctx *ctx, uint64_t off, uint64_t len, vdkit_extent *out, uint32_t max) const {
        uint32_t n = 0;
        check(host().store_extents(ctx, store_, off, len, out, max, &n));
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
        if ((flags & VDKIT_OPEN_DEVICE) && host().abi_minor < 1)
            throw Error(VDKIT_E_PERMISSION, "'" + std::string(path) +
                                                "' holds raw device data and this host cannot be asked to allow it");
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
        if (severity == VDKIT_FINDING_ERROR) ++result_.errors;
        else if (severity == VDKIT_FINDING_LEAK) ++result_.leaks;
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
    bool block_free = false;  // true: write [fill_offset, fill_offset+fill_len) whole
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
template <class F>
uint32_t guard(vdkit_ctx *ctx, F &&body) noexcept {
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
template <class S>
void copy_sized(const S &src, S *dst) noexcept {
    uint32_t n = std::min<uint32_t>(dst->struct_size, static_cast<uint32_t>(sizeof(S)));
    uint32_t keep = dst->struct_size;
    std::memcpy(dst, &src, n);
    dst->struct_size = keep;
}

template <class T> T *as(void *p) noexcept { return static_cast<T *>(p); }

} // namespace detail

// ---- format plugins ---------------------------------------------------------------------

// Builds a vdkit_format_ops for image class T. Required members:
//   static uint32_t probe(Context&, StoreRef main, std::string_view name);
//   static std::unique_ptr<T> open(Context&, StoreRef main, std::string_view name, uint32_t flags);
//   void info(Context&, vdkit_image_info& out);
//   ReadResult read(Context&, uint64_t off, void* buf, uint64_t len);
// Optional members (slot stays NULL without them): create, close(Context&, bool delete_files)
// (needed only by formats with files besides main; without it the instance is just freed),
// write, block_status, flush, discard, write_zeroes, set_uuid, parent_hint, set_parent,
// comment, set_comment, set_geometry, metadata_get, metadata_set, metadata_keys,
// compact, resize, check, rename, and the static
//   static void measure(Context&, uint64_t size, const vdkit_extent* data, uint64_t count, vdkit_measure& out);
// See plugin-guide.md for the signatures.
template <class T>
const vdkit_format_ops *format_ops() noexcept {
    using detail::as;
    using detail::guard;
    static const vdkit_format_ops ops = [] {
        vdkit_format_ops o{};
        o.struct_size = sizeof(o);
        o.probe = [](vdkit_ctx *c, vdkit_store *m, vdkit_str n, uint32_t *score) noexcept {
            return guard(c, [&] {
                Context ctx(c);
                *score = T::probe(ctx, StoreRef(m), view(n));
                return VDKIT_OK;
            });
        };
        o.open = [](vdkit_ctx *c, vdkit_store *m, vdkit_str n, uint32_t flags, void **out) noexcept {
            return guard(c, [&] {
                Context ctx(c);
                *out = T::open(ctx, StoreRef(m), view(n), flags).release();
                return VDKIT_OK;
            });
        };
        if constexpr (requires(Context &c, StoreRef m, const vdkit_create_params &p) {
                          T::create(c, m, std::string_view(), p);
                      }) {
            o.create = [](vdkit_ctx *c, vdkit_store *m, vdkit_str n, const vdkit_create_params *p,
                          void **out) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    // Copy what the host sent; fields it does not know stay zero.
                    vdkit_create_params params{};
                    std::memcpy(&params, p, std::min<size_t>(p->struct_size, sizeof(params)));
                    params.struct_size = sizeof(params);
                    *out = T::create(ctx, StoreRef(m), view(n), params).release();
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(Context &ctx, vdkit_measure &m) {
                          T::measure(ctx, uint64_t(), (const vdkit_extent *)nullptr, uint64_t(), m);
                      }) {
            o.measure = [](vdkit_ctx *c, uint64_t size, const vdkit_extent *data, uint64_t count,
                           vdkit_measure *out) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    vdkit_measure m{};
                    m.struct_size = sizeof(m);
                    T::measure(ctx, size, data, count, m);
                    // Only as many bytes as the host's struct has.
                    std::memcpy(reinterpret_cast<unsigned char *>(out) + sizeof(uint32_t),
                                reinterpret_cast<const unsigned char *>(&m) + sizeof(uint32_t),
                                std::min<size_t>(std::max<size_t>(out->struct_size, sizeof(uint32_t)), sizeof(m)) -
                                    sizeof(uint32_t));
                    return VDKIT_OK;
                });
            };
        }
        o.close = [](void *img, vdkit_ctx *c, uint8_t del) noexcept {
            std::unique_ptr<T> owned(as<T>(img));
            return guard(c, [&] {
                // Without a close(ctx, delete_files) the image is one file
                // (main), which the host removes itself: nothing else to do.
                if constexpr (requires(T &t, Context &ctx) { t.close(ctx, true); }) {
                    Context ctx(c);
                    owned->close(ctx, del != 0);
                }
                (void)del;
                return VDKIT_OK;
            });
        };
        o.get_info = [](void *img, vdkit_ctx *c, vdkit_image_info *out) noexcept {
            return guard(c, [&] {
                Context ctx(c);
                vdkit_image_info info{};
                info.struct_size = sizeof(info);
                as<T>(img)->info(ctx, info);
                detail::copy_sized(info, out);
                return VDKIT_OK;
            });
        };
        o.read = [](void *img, vdkit_ctx *c, uint64_t off, void *buf, uint64_t len, uint64_t *done) noexcept {
            return guard(c, [&] {
                Context ctx(c);
                ReadResult r = as<T>(img)->read(ctx, off, buf, len);
                *done = r.done;
                return r.unallocated ? VDKIT_E_UNALLOCATED : VDKIT_OK;
            });
        };
        if constexpr (requires(T &t, Context &c) { t.write(c, uint64_t(), (const void *)nullptr, uint64_t()); }) {
            o.write = [](void *img, vdkit_ctx *c, uint64_t off, const void *buf, uint64_t len, uint64_t *done,
                         uint64_t *fo, uint64_t *fl) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    WriteResult r = as<T>(img)->write(ctx, off, buf, len);
                    *done = r.done;
                    *fo = r.fill_offset;
                    *fl = r.fill_len;
                    return r.block_free ? VDKIT_E_BLOCK_FREE : VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { t.block_status(c, uint64_t(), uint64_t()); }) {
            o.block_status = [](void *img, vdkit_ctx *c, uint64_t off, uint64_t len, uint32_t *st,
                                uint64_t *run) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    BlockStatus b = as<T>(img)->block_status(ctx, off, len);
                    *st = b.status;
                    *run = b.run;
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { t.flush(c); }) {
            o.flush = [](void *img, vdkit_ctx *c) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    as<T>(img)->flush(ctx);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { t.discard(c, uint64_t(), uint64_t()); }) {
            o.discard = [](void *img, vdkit_ctx *c, uint64_t off, uint64_t len) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    as<T>(img)->discard(ctx, off, len);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { t.write_zeroes(c, uint64_t(), uint64_t()); }) {
            o.write_zeroes = [](void *img, vdkit_ctx *c, uint64_t off, uint64_t len) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    as<T>(img)->write_zeroes(ctx, off, len);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { t.set_uuid(c, uint32_t(), (const uint8_t *)nullptr); }) {
            o.set_uuid = [](void *img, vdkit_ctx *c, uint32_t which, const uint8_t *u) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    as<T>(img)->set_uuid(ctx, which, u);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { std::string(t.parent_hint(c)); }) {
            o.get_parent_hint = [](void *img, vdkit_ctx *c, char *buf, uint64_t cap, uint64_t *needed) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    detail::copy_out(as<T>(img)->parent_hint(ctx), buf, cap, needed);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) {
                          t.set_parent(c, std::string_view(), std::string_view(), (const uint8_t *)nullptr,
                                       (const uint8_t *)nullptr);
                      }) {
            o.set_parent = [](void *img, vdkit_ctx *c, vdkit_str hint, vdkit_str fmt, const uint8_t *u,
                              const uint8_t *mu) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    as<T>(img)->set_parent(ctx, view(hint), view(fmt), u, mu);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { std::string(t.comment(c)); }) {
            o.get_comment = [](void *img, vdkit_ctx *c, char *buf, uint64_t cap, uint64_t *needed) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    detail::copy_out(as<T>(img)->comment(ctx), buf, cap, needed);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { t.set_comment(c, std::string_view()); }) {
            o.set_comment = [](void *img, vdkit_ctx *c, vdkit_str s) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    as<T>(img)->set_comment(ctx, view(s));
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) {
                          t.set_geometry(c, (const uint32_t *)nullptr, (const uint32_t *)nullptr);
                      }) {
            o.set_geometry = [](void *img, vdkit_ctx *c, const uint32_t *p, const uint32_t *l) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    as<T>(img)->set_geometry(ctx, p, l);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { std::optional<std::string>(t.metadata_get(c, std::string_view())); }) {
            o.metadata_get = [](void *img, vdkit_ctx *c, vdkit_str k, char *buf, uint64_t cap,
                                uint64_t *needed) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    std::optional<std::string> v = as<T>(img)->metadata_get(ctx, view(k));
                    if (!v) throw Error(VDKIT_E_NOT_FOUND, "no metadata key '" + std::string(view(k)) + "'");
                    detail::copy_out(*v, buf, cap, needed);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { t.metadata_set(c, std::string_view(), std::string_view()); }) {
            o.metadata_set = [](void *img, vdkit_ctx *c, vdkit_str k, vdkit_str v) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    as<T>(img)->metadata_set(ctx, view(k), view(v));
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { std::vector<std::string>(t.metadata_keys(c)); }) {
            o.metadata_list = [](void *img, vdkit_ctx *c, char *buf, uint64_t cap, uint64_t *needed) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    std::string joined;
                    for (const std::string &k : as<T>(img)->metadata_keys(ctx)) {
                        joined += k;
                        joined.push_back('\0');
                    }
                    detail::copy_out(joined, buf, cap, needed);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { t.compact(c); }) {
            o.compact = [](void *img, vdkit_ctx *c) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    as<T>(img)->compact(ctx);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { t.resize(c, uint64_t(), uint32_t()); }) {
            o.resize = [](void *img, vdkit_ctx *c, uint64_t size, uint32_t flags) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    as<T>(img)->resize(ctx, size, flags);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c, vdkit_check_result &r) { t.check(c, uint32_t(), r); }) {
            o.check = [](void *img, vdkit_ctx *c, uint32_t flags, vdkit_check_result *out) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    vdkit_check_result r{};
                    r.struct_size = sizeof(r);
                    as<T>(img)->check(ctx, flags, r);
                    detail::copy_sized(r, out);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { t.rename(c, std::string_view()); }) {
            o.rename = [](void *img, vdkit_ctx *c, vdkit_str n) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    as<T>(img)->rename(ctx, view(n));
                    return VDKIT_OK;
                });
            };
        }
        return o;
    }();
    return &ops;
}

namespace detail {
// Fills the byte-I/O slots shared by transports and filters (same names in
// both vtables) from the members T has.
template <class T, class Ops>
void fill_io_ops(Ops &o) noexcept {
        if constexpr (requires(T &t, Context &c) { t.pread(c, (void *)nullptr, uint64_t(), uint64_t()); }) {
            o.pread = [](void *h, vdkit_ctx *c, void *buf, uint64_t len, uint64_t off) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    as<T>(h)->pread(ctx, buf, len, off);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { uint64_t(t.size(c)); }) {
            o.get_size = [](void *h, vdkit_ctx *c, uint64_t *size) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    *size = as<T>(h)->size(ctx);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { t.pwrite(c, (const void *)nullptr, uint64_t(), uint64_t()); }) {
            o.pwrite = [](void *h, vdkit_ctx *c, const void *buf, uint64_t len, uint64_t off) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    as<T>(h)->pwrite(ctx, buf, len, off);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { t.flush(c); }) {
            o.flush = [](void *h, vdkit_ctx *c) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    as<T>(h)->flush(ctx);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { t.truncate(c, uint64_t()); }) {
            o.truncate = [](void *h, vdkit_ctx *c, uint64_t size) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    as<T>(h)->truncate(ctx, size);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { t.discard(c, uint64_t(), uint64_t()); }) {
            o.discard = [](void *h, vdkit_ctx *c, uint64_t off, uint64_t len) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    as<T>(h)->discard(ctx, off, len);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) { t.zero(c, uint64_t(), uint64_t()); }) {
            o.zero = [](void *h, vdkit_ctx *c, uint64_t off, uint64_t len) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    as<T>(h)->zero(ctx, off, len);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(T &t, Context &c) {
                          uint32_t(t.extents(c, uint64_t(), uint64_t(), (vdkit_extent *)nullptr, uint32_t()));
                      }) {
            o.extents = [](void *h, vdkit_ctx *c, uint64_t off, uint64_t len, vdkit_extent *out, uint32_t max,
                           uint32_t *count) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    *count = as<T>(h)->extents(ctx, off, len, out, max);
                    return VDKIT_OK;
                });
            };
        }
}
} // namespace detail

// ---- transport plugins --------------------------------------------------------------------

// Builds a vdkit_transport_ops for handle class T. Required:
//   static std::unique_ptr<T> open(Context&, std::string_view location, uint32_t flags);
//   void pread(Context&, void* buf, uint64_t len, uint64_t off);
//   uint64_t size(Context&);
// Optional: pwrite, flush, truncate, discard, zero, extents (returns the count
// written to out), allocated_size, and the statics remove, rename, exists.
template <class T>
const vdkit_transport_ops *transport_ops() noexcept {
    using detail::as;
    using detail::guard;
    static const vdkit_transport_ops ops = [] {
        vdkit_transport_ops o{};
        o.struct_size = sizeof(o);
        o.open = [](vdkit_ctx *c, vdkit_str loc, uint32_t flags, void **out) noexcept {
            return guard(c, [&] {
                Context ctx(c);
                *out = T::open(ctx, view(loc), flags).release();
                return VDKIT_OK;
            });
        };
        o.close = [](void *h) noexcept { delete as<T>(h); };
        detail::fill_io_ops<T>(o);
        static_assert(requires(T &t, Context &c) { t.pread(c, (void *)nullptr, uint64_t(), uint64_t()); },
                      "a transport must implement pread");
        static_assert(requires(T &t, Context &c) { uint64_t(t.size(c)); }, "a transport must implement size");
        if constexpr (requires(T &t, Context &c) { uint64_t(t.allocated_size(c)); }) {
            o.allocated_size = [](void *h, vdkit_ctx *c, uint64_t *bytes) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    *bytes = as<T>(h)->allocated_size(ctx);
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(Context &c) { T::remove(c, std::string_view()); }) {
            o.remove = [](vdkit_ctx *c, vdkit_str loc) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    T::remove(ctx, view(loc));
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(Context &c) { T::rename(c, std::string_view(), std::string_view()); }) {
            o.rename = [](vdkit_ctx *c, vdkit_str from, vdkit_str to) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    T::rename(ctx, view(from), view(to));
                    return VDKIT_OK;
                });
            };
        }
        if constexpr (requires(Context &c) { bool(T::exists(c, std::string_view())); }) {
            o.exists = [](vdkit_ctx *c, vdkit_str loc, uint8_t *yes) noexcept {
                return guard(c, [&] {
                    Context ctx(c);
                    *yes = T::exists(ctx, view(loc)) ? 1 : 0;
                    return VDKIT_OK;
                });
            };
        }
        return o;
    }();
    return &ops;
}

// ---- filter plugins ------------------------------------------------------------------------

// Builds a vdkit_filter_ops for handle class T; handled_ops is derived from
// the members T has, so a filter never claims an operation it lacks.
//   static std::unique_ptr<T> open(Context&, StoreRef next, uint32_t flags);   (required)
//   pread, pwrite, flush, size, truncate, discard, zero, extents: as for transports.
template <class T>
const vdkit_filter_ops *filter_ops() noexcept {
    using detail::as;
    using detail::guard;
    static const vdkit_filter_ops ops = [] {
        vdkit_filter_ops o{};
        o.struct_size = sizeof(o);
        o.open = [](vdkit_ctx *c, vdkit_store *next, uint32_t flags, void **out) noexcept {
            return guard(c, [&] {
                Context ctx(c);
                *out = T::open(ctx, StoreRef(next), flags).release();
                return VDKIT_OK;
            });
        };
        o.close = [](void *h) noexcept { delete as<T>(h); };
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
#define VDKIT_SDK_ENTRY(...)                                                                          \
    extern "C" VDKIT_PLUGIN_EXPORT const vdkit_plugin_list *vdkit_plugin_entry(const vdkit_host_api *host) { \
        try {                                                                                         \
            static const vdkit_plugin_descriptor *const plugins[] = {__VA_ARGS__};                    \
            return ::vdkit::sdk::detail::entry(host, plugins,                                         \
                                               static_cast<uint32_t>(sizeof(plugins) / sizeof(plugins[0]))); \
        } catch (...) {                                                                               \
            return nullptr;                                                                           \
        }                                                                                             \
    }

#endif // VDKIT_PLUGIN_HPP
