// The host function table (vdkit_host_api) that every plugin receives.
#include "host/host_api.hpp"

#include "io/dry_run_store.hpp"
#include "io/paths.hpp"
#include "io/stores.hpp"
#include "registry/registry.hpp"
#include "util/util.hpp"

#include <cstring>

namespace vdkit {

namespace {

std::string_view sv(vdkit_str s) {
    return s.data ? std::string_view(s.data, static_cast<size_t>(s.size)) : "";
}

const std::string *find_option(vdkit_ctx *ctx, vdkit_str key) {
    if (!ctx || !ctx->options) return nullptr;
    for (const auto &[k, v] : *ctx->options)
        if (util::iequals(k, sv(key))) return &v;
    return nullptr;
}

LogLevel to_level(uint32_t l) {
    return l > VDKIT_LOG_DEBUG ? LogLevel::debug : static_cast<LogLevel>(l);
}

// ---- the table's functions ----

void h_log(vdkit_ctx *ctx, uint32_t level, vdkit_str message) {
    const Stores *stores = ctx ? ctx->stores : current_loading_stores();
    if (!stores) return;
    std::string who = ctx && ctx->plugin ? ctx->plugin->info.name + ": " : "";
    stores->log(to_level(level), who + std::string(sv(message)));
}

void h_set_error(vdkit_ctx *ctx, uint32_t code, vdkit_str message) {
    if (!ctx) return;
    ctx->error_code = code;
    ctx->error_message = std::string(sv(message));
}

uint32_t h_config_get(vdkit_ctx *ctx, vdkit_str key, vdkit_str *value) {
    const std::string *v = find_option(ctx, key);
    if (!v) return VDKIT_E_NOT_FOUND;
    *value = vdkit_str{v->data(), v->size()};
    return VDKIT_OK;
}

template <class T, class Parse>
uint32_t typed_get(vdkit_ctx *ctx, vdkit_str key, T *out, Parse parse, const char *type) {
    const std::string *v = find_option(ctx, key);
    if (!v) return VDKIT_E_NOT_FOUND;
    auto parsed = parse(*v);
    if (!parsed) {
        return report_to_ctx(ctx, Status(VDKIT_E_CONFIG, "option '" + std::string(sv(key)) + "' is not " + type +
                                                             " (the plugin declared another type)"));
    }
    *out = static_cast<T>(*parsed);
    return VDKIT_OK;
}

uint32_t h_config_get_uint(vdkit_ctx *ctx, vdkit_str key, uint64_t *value) {
    return typed_get(
        ctx, key, value, [](const std::string &s) { return util::parse_uint(s); }, "a whole number");
}
uint32_t h_config_get_int(vdkit_ctx *ctx, vdkit_str key, int64_t *value) {
    return typed_get(
        ctx, key, value, [](const std::string &s) { return util::parse_int(s); }, "an integer");
}
uint32_t h_config_get_bool(vdkit_ctx *ctx, vdkit_str key, uint8_t *value) {
    return typed_get(
        ctx, key, value, [](const std::string &s) { return util::parse_bool(s); }, "a boolean");
}

uint32_t h_store_open(vdkit_ctx *ctx, vdkit_str path, uint32_t flags, vdkit_store **out) {
    if (!ctx || !ctx->stores || !out) return VDKIT_E_INVALID_ARGUMENT;
    if ((flags & VDKIT_OPEN_DEVICE) && !ctx->allow_unsafe_paths)
        return report_to_ctx(
            ctx, Status(VDKIT_E_PERMISSION, ctx->base_location + ": extent '" + std::string(sv(path)) +
                                                "' is raw device data (a host disk or a raw device mapping); set "
                                                "allow_unsafe_paths to read it"));
    auto resolved = resolve_sibling(ctx->base_location, sv(path), ctx->allow_unsafe_paths);
    if (!resolved) return report_to_ctx(ctx, resolved.status());
    static const Options none;
    static const FilterStack no_filters;
    // A device's data is mapped as it is, never stored through the image's
    // file filters.
    const bool device = flags & VDKIT_OPEN_DEVICE;
    const FilterStack &filters = ctx->filters && !device ? *ctx->filters : no_filters;
    flags &= ~VDKIT_OPEN_DEVICE;                // a host matter; transports never see it
    if (!ctx->lock) flags |= VDKIT_OPEN_NOLOCK; // an image opened unlocked (force-share) locks none of its files
    if (ctx->dry_run) {
        if (flags & VDKIT_OPEN_CREATE)
            return report_to_ctx(ctx, Status(VDKIT_E_NOT_SUPPORTED,
                                             ctx->base_location + ": a dry run creates no files (" + *resolved + ")"));
        flags = (flags & ~VDKIT_OPEN_WRITE) | VDKIT_OPEN_NOLOCK;
    }
    auto store =
        ctx->stores->open_store(*resolved, flags, ctx->transport_options ? *ctx->transport_options : none, filters);
    // The file was named by the image: say which image (a missing extent
    // file is otherwise only "cannot open X").
    if (!store)
        return report_to_ctx(ctx,
                             Status(store.status().code(), ctx->base_location + ": its file '" + std::string(sv(path)) +
                                                               "': " + store.status().message()));
    if (ctx->dry_run) *store = make_dry_run_store(std::move(*store));
    *out = new (std::nothrow) vdkit_store{std::move(*store), nullptr};
    if (!*out) return report_to_ctx(ctx, Status(VDKIT_E_NO_MEMORY, "out of memory"));
    if (ctx->opened) {
        std::lock_guard lock(ctx->opened->mu);
        (device ? ctx->opened->devices : ctx->opened->live).push_back((*out)->store.get());
        (*out)->listed_in = ctx->opened;
    }
    return VDKIT_OK;
}

void h_store_close(vdkit_store *store) {
    delete store;
}

uint32_t h_store_pread(vdkit_store *s, vdkit_ctx *ctx, uint64_t off, void *buf, uint64_t len) {
    return report_to_ctx(ctx, s->store->pread(buf, len, off));
}
uint32_t h_store_pwrite(vdkit_store *s, vdkit_ctx *ctx, uint64_t off, const void *buf, uint64_t len) {
    return report_to_ctx(ctx, s->store->pwrite(buf, len, off));
}
uint32_t h_store_flush(vdkit_store *s, vdkit_ctx *ctx) {
    return report_to_ctx(ctx, s->store->flush());
}
uint32_t h_store_get_size(vdkit_store *s, vdkit_ctx *ctx, uint64_t *size) {
    auto r = s->store->size();
    if (!r) return report_to_ctx(ctx, r.status());
    *size = *r;
    return VDKIT_OK;
}
uint32_t h_store_truncate(vdkit_store *s, vdkit_ctx *ctx, uint64_t size) {
    return report_to_ctx(ctx, s->store->truncate(size));
}
uint32_t h_store_discard(vdkit_store *s, vdkit_ctx *ctx, uint64_t off, uint64_t len) {
    return report_to_ctx(ctx, s->store->discard(off, len));
}
uint32_t h_store_zero(vdkit_store *s, vdkit_ctx *ctx, uint64_t off, uint64_t len) {
    return report_to_ctx(ctx, s->store->zero(off, len));
}
uint32_t h_store_extents(vdkit_store *s, vdkit_ctx *ctx, uint64_t off, uint64_t len, vdkit_extent *out, uint32_t max,
                         uint32_t *count) {
    std::vector<Extent> ext;
    Status st = s->store->extents(off, len, max, ext);
    if (!st) return report_to_ctx(ctx, st);
    uint32_t n = 0;
    for (const Extent &e : ext) {
        if (n >= max) break;
        out[n++] = vdkit_extent{e.offset, e.length, e.hole ? VDKIT_EXTENT_HOLE : VDKIT_EXTENT_DATA, 0};
    }
    *count = n;
    return VDKIT_OK;
}
uint32_t h_store_remove(vdkit_ctx *ctx, vdkit_str path) {
    if (!ctx || !ctx->stores) return VDKIT_E_INVALID_ARGUMENT;
    if (ctx->dry_run)
        return report_to_ctx(ctx, Status(VDKIT_E_NOT_SUPPORTED, ctx->base_location + ": a dry run removes no files"));
    auto resolved = resolve_sibling(ctx->base_location, sv(path), ctx->allow_unsafe_paths);
    if (!resolved) return report_to_ctx(ctx, resolved.status());
    return report_to_ctx(ctx, ctx->stores->remove_location(*resolved));
}
uint32_t h_store_rename(vdkit_ctx *ctx, vdkit_str from, vdkit_str to) {
    if (!ctx || !ctx->stores) return VDKIT_E_INVALID_ARGUMENT;
    if (ctx->dry_run)
        return report_to_ctx(ctx, Status(VDKIT_E_NOT_SUPPORTED, ctx->base_location + ": a dry run renames no files"));
    auto a = resolve_sibling(ctx->base_location, sv(from), ctx->allow_unsafe_paths);
    if (!a) return report_to_ctx(ctx, a.status());
    auto b = resolve_sibling(ctx->base_location, sv(to), ctx->allow_unsafe_paths);
    if (!b) return report_to_ctx(ctx, b.status());
    return report_to_ctx(ctx, ctx->stores->rename_location(*a, *b));
}

uint32_t h_progress(vdkit_ctx *ctx, uint64_t done, uint64_t total) {
    if (!ctx || !ctx->progress) return 0;
    return ctx->progress(done, total) ? 0 : 1;
}

void h_report_finding(vdkit_ctx *ctx, uint32_t severity, uint64_t offset, vdkit_str message) {
    if (ctx && ctx->finding) ctx->finding(severity, offset, sv(message));
}

void h_generate_uuid(uint8_t out[16]) {
    util::generate_uuid(out);
}

// (buf, cap, needed) string output, as the format callbacks use it.
uint32_t put_string(const std::string &value, char *buf, uint64_t cap, uint64_t *needed) {
    if (!needed || (cap && !buf)) return VDKIT_E_INVALID_ARGUMENT;
    *needed = value.size();
    if (cap) std::memcpy(buf, value.data(), static_cast<size_t>(std::min<uint64_t>(cap, value.size())));
    return VDKIT_OK;
}

uint32_t not_a_disk_filter(vdkit_ctx *ctx) {
    return report_to_ctx(ctx, Status(VDKIT_E_NOT_SUPPORTED, "disk metadata is only for disk-level filters"));
}

uint32_t h_disk_metadata_get(vdkit_ctx *ctx, vdkit_str key, char *buf, uint64_t cap, uint64_t *needed) {
    if (!ctx) return VDKIT_E_INVALID_ARGUMENT;
    if (!ctx->disk || !ctx->disk->metadata_get) return not_a_disk_filter(ctx);
    auto value = ctx->disk->metadata_get(sv(key));
    if (!value) {
        // An unset key is an answer, not an error worth a message.
        if (value.status().code() == VDKIT_E_NOT_FOUND) return VDKIT_E_NOT_FOUND;
        return report_to_ctx(ctx, value.status());
    }
    return put_string(*value, buf, cap, needed);
}

uint32_t h_disk_metadata_set(vdkit_ctx *ctx, vdkit_str key, vdkit_str value) {
    if (!ctx) return VDKIT_E_INVALID_ARGUMENT;
    if (!ctx->disk || !ctx->disk->metadata_set) return not_a_disk_filter(ctx);
    return report_to_ctx(ctx, ctx->disk->metadata_set(sv(key), sv(value)));
}

uint32_t h_disk_location(vdkit_ctx *ctx, char *buf, uint64_t cap, uint64_t *needed) {
    if (!ctx) return VDKIT_E_INVALID_ARGUMENT;
    if (!ctx->disk) return not_a_disk_filter(ctx);
    return put_string(ctx->disk->base_location, buf, cap, needed);
}

// Plain C function pointers; wrap each in a noexcept shim so nothing the
// host does can unwind into a plugin's C frames.
template <auto F, class R, class... A> R shim(A... a) noexcept {
    try {
        return F(a...);
    } catch (...) {
        if constexpr (std::is_same_v<R, void>)
            return;
        else
            return VDKIT_E_NO_MEMORY;
    }
}

const vdkit_host_api kHostApi = [] {
    vdkit_host_api h{};
    h.struct_size = sizeof(h);
    h.abi_major = VDKIT_ABI_MAJOR;
    h.abi_minor = VDKIT_ABI_MINOR;
    h.log = shim<h_log, void, vdkit_ctx *, uint32_t, vdkit_str>;
    h.set_error = shim<h_set_error, void, vdkit_ctx *, uint32_t, vdkit_str>;
    h.config_get = shim<h_config_get, uint32_t, vdkit_ctx *, vdkit_str, vdkit_str *>;
    h.config_get_uint = shim<h_config_get_uint, uint32_t, vdkit_ctx *, vdkit_str, uint64_t *>;
    h.config_get_int = shim<h_config_get_int, uint32_t, vdkit_ctx *, vdkit_str, int64_t *>;
    h.config_get_bool = shim<h_config_get_bool, uint32_t, vdkit_ctx *, vdkit_str, uint8_t *>;
    h.store_open = shim<h_store_open, uint32_t, vdkit_ctx *, vdkit_str, uint32_t, vdkit_store **>;
    h.store_close = shim<h_store_close, void, vdkit_store *>;
    h.store_pread = shim<h_store_pread, uint32_t, vdkit_store *, vdkit_ctx *, uint64_t, void *, uint64_t>;
    h.store_pwrite = shim<h_store_pwrite, uint32_t, vdkit_store *, vdkit_ctx *, uint64_t, const void *, uint64_t>;
    h.store_flush = shim<h_store_flush, uint32_t, vdkit_store *, vdkit_ctx *>;
    h.store_get_size = shim<h_store_get_size, uint32_t, vdkit_store *, vdkit_ctx *, uint64_t *>;
    h.store_truncate = shim<h_store_truncate, uint32_t, vdkit_store *, vdkit_ctx *, uint64_t>;
    h.store_discard = shim<h_store_discard, uint32_t, vdkit_store *, vdkit_ctx *, uint64_t, uint64_t>;
    h.store_zero = shim<h_store_zero, uint32_t, vdkit_store *, vdkit_ctx *, uint64_t, uint64_t>;
    h.store_extents = shim<h_store_extents, uint32_t, vdkit_store *, vdkit_ctx *, uint64_t, uint64_t, vdkit_extent *,
                           uint32_t, uint32_t *>;
    h.store_remove = shim<h_store_remove, uint32_t, vdkit_ctx *, vdkit_str>;
    h.store_rename = shim<h_store_rename, uint32_t, vdkit_ctx *, vdkit_str, vdkit_str>;
    h.progress = shim<h_progress, uint32_t, vdkit_ctx *, uint64_t, uint64_t>;
    h.report_finding = shim<h_report_finding, void, vdkit_ctx *, uint32_t, uint64_t, vdkit_str>;
    h.generate_uuid = shim<h_generate_uuid, void, uint8_t *>;
    h.disk_metadata_get = shim<h_disk_metadata_get, uint32_t, vdkit_ctx *, vdkit_str, char *, uint64_t, uint64_t *>;
    h.disk_metadata_set = shim<h_disk_metadata_set, uint32_t, vdkit_ctx *, vdkit_str, vdkit_str>;
    h.disk_location = shim<h_disk_location, uint32_t, vdkit_ctx *, char *, uint64_t, uint64_t *>;
    return h;
}();

} // namespace

const vdkit_host_api *host_api_table() {
    return &kHostApi;
}

} // namespace vdkit
