// The C API: thin wrappers over the C++ API. Every entry point is noexcept
// and converts failures (including std::bad_alloc) into a status code.
#include "vdkit/vdkit.h"
#include "vdkit/vdkit.hpp"
#include "vdkit/volumes.hpp"

#include "util/util.hpp"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <set>

struct vdkit_library {
    std::shared_ptr<vdkit::Library> lib;
};
struct vdkit_disk {
    explicit vdkit_disk(std::unique_ptr<vdkit::Disk> d) : disk(std::move(d)) {}
    std::unique_ptr<vdkit::Disk> disk;
    // Strings handed out by vdkit_disk_get_image_info: one copy per distinct
    // text, stable until the handle is freed (std::set nodes do not move).
    std::mutex strings_mu;
    std::set<std::string, std::less<>> strings;
    const char *keep(const std::string &text) {
        std::lock_guard guard(strings_mu);
        return strings.insert(text).first->c_str();
    }
};

namespace {

vdkit::ProgressFunction c_progress(vdkit_progress_fn progress, void *opaque) {
    if (!progress) return {};
    return [progress, opaque](uint64_t d, uint64_t t) { return progress(opaque, d, t) == 0; };
}

vdkit_status fail(vdkit_error *err, const vdkit::Status &st) {
    if (err && err->struct_size >= sizeof(vdkit_error)) {
        err->code = st.code();
        std::string msg = st.message().empty() ? vdkit::status_text(st.code()) : st.message();
        size_t n = std::min(msg.size(), sizeof(err->message) - 1);
        std::memcpy(err->message, msg.data(), n);
        err->message[n] = '\0';
    }
    return st.code();
}

vdkit_status ok(vdkit_error *err) {
    if (err && err->struct_size >= sizeof(vdkit_error)) {
        err->code = VDKIT_OK;
        err->message[0] = '\0';
    }
    return VDKIT_OK;
}

template <class Fn> vdkit_status guarded(vdkit_error *err, Fn &&fn) noexcept {
    try {
        vdkit::Status st = fn();
        return st.is_ok() ? ok(err) : fail(err, st);
    } catch (const std::bad_alloc &) {
        return fail(err, vdkit::Status(VDKIT_E_NO_MEMORY, "out of memory"));
    } catch (const std::exception &e) {
        return fail(err, vdkit::Status(VDKIT_E_INTERNAL, e.what()));
    } catch (...) {
        return fail(err, vdkit::Status(VDKIT_E_INTERNAL, "unexpected exception"));
    }
}

vdkit::Status null_arg(const char *what) {
    return vdkit::Status(VDKIT_E_INVALID_ARGUMENT, std::string(what) + " must not be NULL");
}

vdkit::Result<vdkit::Options> parse_options(const char *text) {
    vdkit::Options out;
    if (!text || !*text) return out;
    auto kv = vdkit::util::parse_key_values(text);
    if (!kv) return vdkit::Status(VDKIT_E_CONFIG, std::string("cannot parse options '") + text + "'");
    for (auto &[k, v] : *kv)
        out[k] = v;
    return out;
}

// A NULL-terminated array of filter specs (a stack of at most 64 layers).
vdkit::Result<std::vector<vdkit::FilterSpec>> parse_filters(const char *const *specs) {
    std::vector<vdkit::FilterSpec> out;
    for (size_t i = 0; specs && specs[i]; ++i) {
        if (i == 64)
            return vdkit::Status(VDKIT_E_INVALID_ARGUMENT, "more than 64 filters (is the list NULL-terminated?)");
        VDKIT_ASSIGN_OR_RETURN(vdkit::FilterSpec spec, vdkit::parse_filter_spec(specs[i]));
        out.push_back(std::move(spec));
    }
    return out;
}

void copy_field(char *dst, size_t cap, const std::string &s) {
    size_t n = std::min(s.size(), cap - 1);
    std::memcpy(dst, s.data(), n);
    dst[n] = '\0';
}

} // namespace

namespace {
// Outside the extern "C" block: it returns a C++ type (clang's
// -Wreturn-type-c-linkage).
vdkit::Completion c_completion(vdkit_completion_fn done, void *opaque) {
    if (!done) return {};
    return [done, opaque](const vdkit::Status &st) {
        const std::string msg = st.is_ok() ? std::string() : st.message();
        done(opaque, st.code(), msg.c_str());
    };
}
} // namespace

extern "C" {

const char *vdkit_status_text(vdkit_status code) {
    return vdkit::status_text(code);
}

vdkit_status vdkit_library_open(const vdkit_library_options *options, vdkit_library **out, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!out) return null_arg("out");
        *out = nullptr;
        vdkit_library_options o{};
        if (options) std::memcpy(&o, options, std::min<size_t>(options->struct_size, sizeof(o)));
        vdkit::LibraryOptions lo;
        if (o.config_file) lo.config_file = o.config_file;
        if (o.plugin_path) lo.plugin_paths = vdkit::util::split_path_list(o.plugin_path);
        lo.search_environment = !(o.flags & VDKIT_LIB_NO_ENV_PATH);
        lo.search_install_dir = !(o.flags & VDKIT_LIB_NO_INSTALL_DIR);
        if (o.flags & VDKIT_LIB_QUIET) lo.log = [](vdkit::LogLevel, std::string_view) {};
        if (o.log) {
            lo.log = [fn = o.log, opaque = o.log_opaque](vdkit::LogLevel level, std::string_view message) {
                const std::string text(message);
                fn(opaque, static_cast<uint32_t>(level), text.c_str());
            };
        }
        if (o.flags & VDKIT_LIB_LOG_LEVEL) {
            if (o.log_level > VDKIT_LOG_DEBUG)
                return vdkit::Status(VDKIT_E_INVALID_ARGUMENT,
                                     "log_level " + std::to_string(o.log_level) + " is not a VDKIT_LOG_* level (0..3)");
            lo.log_level = static_cast<vdkit::LogLevel>(o.log_level);
        }
        VDKIT_ASSIGN_OR_RETURN(auto lib, vdkit::Library::create(lo));
        *out = new vdkit_library{std::move(lib)};
        return vdkit::Status::ok();
    });
}

void vdkit_library_close(vdkit_library *lib) {
    delete lib;
}

uint32_t vdkit_plugin_count(const vdkit_library *lib) {
    try {
        return lib ? static_cast<uint32_t>(lib->lib->plugins().size()) : 0;
    } catch (...) {
        return 0;
    }
}

vdkit_status vdkit_plugin_get(const vdkit_library *lib, uint32_t index, vdkit_plugin_summary *out, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!lib || !out) return null_arg("lib and out");
        auto all = lib->lib->plugins();
        if (index >= all.size()) return vdkit::Status(VDKIT_E_OUT_OF_RANGE, "plugin index out of range");
        vdkit_plugin_summary s{};
        s.struct_size = sizeof(s);
        s.kind = static_cast<uint32_t>(all[index].kind);
        s.capabilities = all[index].capabilities;
        copy_field(s.name, sizeof(s.name), all[index].name);
        copy_field(s.version, sizeof(s.version), all[index].version);
        uint32_t keep = out->struct_size;
        std::memcpy(out, &s, std::min<size_t>(keep, sizeof(s)));
        out->struct_size = keep;
        return vdkit::Status::ok();
    });
}

vdkit_status vdkit_disk_open(vdkit_library *lib, const char *location, const char *format, uint32_t flags,
                             const char *options, vdkit_disk **out, vdkit_error *err) {
    return vdkit_disk_open_filtered(lib, location, format, flags, options, nullptr, out, err);
}

vdkit_status vdkit_disk_open_filtered(vdkit_library *lib, const char *location, const char *format, uint32_t flags,
                                      const char *options, const char *const *filters, vdkit_disk **out,
                                      vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!lib || !location || !out) return null_arg("lib, location and out");
        *out = nullptr;
        vdkit::OpenOptions o;
        if (format) o.format = format;
        o.writable = flags & VDKIT_DISK_WRITE;
        o.lock = !(flags & VDKIT_DISK_NOLOCK);
        o.follow_parents = !(flags & VDKIT_DISK_NO_PARENTS);
        o.writable_chain = flags & VDKIT_DISK_WRITE_CHAIN;
        o.force_share = flags & VDKIT_DISK_FORCE_SHARE;
        o.direct = flags & VDKIT_DISK_DIRECT;
        o.info_only = flags & VDKIT_DISK_INFO;
        VDKIT_ASSIGN_OR_RETURN(o.format_options, parse_options(options));
        VDKIT_ASSIGN_OR_RETURN(o.filters, parse_filters(filters));
        VDKIT_ASSIGN_OR_RETURN(auto disk, lib->lib->open(location, o));
        *out = new vdkit_disk{std::move(disk)};
        return vdkit::Status::ok();
    });
}

vdkit_status vdkit_disk_create(vdkit_library *lib, const char *location, const char *format, uint64_t size,
                               uint32_t flags, const char *options, const char *parent, vdkit_disk **out,
                               vdkit_error *err) {
    return vdkit_disk_create_filtered(lib, location, format, size, flags, options, parent, nullptr, out, err);
}

vdkit_status vdkit_disk_create_filtered(vdkit_library *lib, const char *location, const char *format, uint64_t size,
                                        uint32_t flags, const char *options, const char *parent,
                                        const char *const *filters, vdkit_disk **out, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!lib || !location || !format || !out) return null_arg("lib, location, format and out");
        *out = nullptr;
        vdkit::CreateOptions o;
        o.format = format;
        o.size = size;
        o.fixed = flags & VDKIT_DISK_FIXED;
        o.overwrite = flags & VDKIT_DISK_OVERWRITE;
        if (parent) o.parent = parent;
        VDKIT_ASSIGN_OR_RETURN(o.options, parse_options(options));
        VDKIT_ASSIGN_OR_RETURN(o.filters, parse_filters(filters));
        VDKIT_ASSIGN_OR_RETURN(auto disk, lib->lib->create_image(location, o));
        *out = new vdkit_disk{std::move(disk)};
        return vdkit::Status::ok();
    });
}

vdkit_status vdkit_disk_close(vdkit_disk *disk, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk) return vdkit::Status::ok();
        std::unique_ptr<vdkit_disk> owned(disk);
        return owned->disk->close();
    });
}

uint64_t vdkit_disk_size(const vdkit_disk *disk) {
    return disk ? disk->disk->size() : 0;
}
uint32_t vdkit_disk_image_count(const vdkit_disk *disk) {
    return disk ? static_cast<uint32_t>(disk->disk->image_count()) : 0;
}

vdkit_status vdkit_disk_read(vdkit_disk *disk, uint64_t offset, void *buf, uint64_t len, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk || (!buf && len)) return null_arg("disk and buf");
        return disk->disk->read(offset, buf, len);
    });
}

vdkit_status vdkit_disk_write(vdkit_disk *disk, uint64_t offset, const void *buf, uint64_t len, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk || (!buf && len)) return null_arg("disk and buf");
        return disk->disk->write(offset, buf, len);
    });
}

vdkit_status vdkit_disk_write_zeroes(vdkit_disk *disk, uint64_t offset, uint64_t len, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk) return null_arg("disk");
        return disk->disk->write_zeroes(offset, len);
    });
}

vdkit_status vdkit_disk_discard(vdkit_disk *disk, uint64_t offset, uint64_t len, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk) return null_arg("disk");
        return disk->disk->discard(offset, len);
    });
}

vdkit_status vdkit_disk_flush(vdkit_disk *disk, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk) return null_arg("disk");
        return disk->disk->flush();
    });
}

vdkit_status vdkit_disk_block_status(vdkit_disk *disk, uint64_t offset, uint64_t len, uint32_t *state, uint64_t *run,
                                     vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk || !state || !run) return null_arg("disk, state and run");
        VDKIT_ASSIGN_OR_RETURN(vdkit::BlockRun r, disk->disk->block_status(offset, len));
        *state = static_cast<uint32_t>(r.state);
        *run = r.length;
        return vdkit::Status::ok();
    });
}

vdkit_status vdkit_disk_metadata_get(vdkit_disk *disk, const char *key, char *buf, uint64_t cap, uint64_t *needed,
                                     vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk || !key) return null_arg("disk and key");
        VDKIT_ASSIGN_OR_RETURN(std::string v, disk->disk->metadata_get(key));
        if (needed) *needed = v.size();
        if (buf && cap) copy_field(buf, static_cast<size_t>(std::min<uint64_t>(cap, SIZE_MAX)), v);
        return vdkit::Status::ok();
    });
}

vdkit_status vdkit_disk_metadata_set(vdkit_disk *disk, const char *key, const char *value, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk || !key || !value) return null_arg("disk, key and value");
        return disk->disk->metadata_set(key, value);
    });
}

vdkit_status vdkit_disk_copy_ex(vdkit_library *lib, vdkit_disk *src, vdkit_disk *dst, const vdkit_copy_options *options,
                                vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!lib || !src || !dst) return null_arg("lib, src and dst");
        vdkit_copy_options c{};
        if (options) {
            if (options->struct_size < offsetof(vdkit_copy_options, same_up_to))
                return vdkit::Status(VDKIT_E_INVALID_ARGUMENT, "vdkit_copy_options.struct_size is too small");
            std::memcpy(&c, options, std::min<size_t>(options->struct_size, sizeof(c)));
        }
        vdkit::CopyOptions o;
        o.threads = c.threads;
        o.out_of_order = c.flags & VDKIT_COPY_OUT_OF_ORDER;
        o.target_is_zero = !(c.flags & VDKIT_COPY_TARGET_DIRTY);
        if (c.flags & VDKIT_COPY_SAME_UP_TO) o.same_up_to = c.same_up_to;
        if (c.progress) o.progress = [&](uint64_t d, uint64_t t) { return c.progress(c.opaque, d, t) == 0; };
        return lib->lib->copy(*src->disk, *dst->disk, o);
    });
}

vdkit_status vdkit_disk_common_image(vdkit_disk *src, vdkit_disk *dst, uint32_t *index, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!src || !dst || !index) return null_arg("src, dst and index");
        VDKIT_ASSIGN_OR_RETURN(std::optional<size_t> n, vdkit::Library::common_image(*src->disk, *dst->disk));
        if (!n)
            return vdkit::Status(VDKIT_E_NOT_FOUND,
                                 "no image of the source has the UUID of the image below the target's top");
        *index = static_cast<uint32_t>(*n);
        return vdkit::Status::ok();
    });
}

vdkit_status vdkit_library_measure(vdkit_library *lib, const char *format, const char *options, vdkit_disk *src,
                                   uint64_t size, uint64_t *required, uint64_t *fully_allocated, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!lib || !format) return null_arg("lib and format");
        VDKIT_ASSIGN_OR_RETURN(vdkit::Options o, parse_options(options));
        VDKIT_ASSIGN_OR_RETURN(vdkit::MeasureResult m,
                               lib->lib->measure(format, o, src ? src->disk.get() : nullptr, size));
        if (required) *required = m.required;
        if (fully_allocated) *fully_allocated = m.fully_allocated;
        return vdkit::Status::ok();
    });
}

vdkit_status vdkit_disk_aio_read(vdkit_disk *disk, uint64_t offset, void *buf, uint64_t len, vdkit_completion_fn done,
                                 void *opaque, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk || (!buf && len)) return null_arg("disk and buf");
        return disk->disk->submit_read(offset, buf, len, c_completion(done, opaque));
    });
}

vdkit_status vdkit_disk_aio_write(vdkit_disk *disk, uint64_t offset, const void *buf, uint64_t len,
                                  vdkit_completion_fn done, void *opaque, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk || (!buf && len)) return null_arg("disk and buf");
        return disk->disk->submit_write(offset, buf, len, c_completion(done, opaque));
    });
}

vdkit_status vdkit_disk_aio_write_zeroes(vdkit_disk *disk, uint64_t offset, uint64_t len, vdkit_completion_fn done,
                                         void *opaque, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk) return null_arg("disk");
        return disk->disk->submit_write_zeroes(offset, len, c_completion(done, opaque));
    });
}

vdkit_status vdkit_disk_aio_discard(vdkit_disk *disk, uint64_t offset, uint64_t len, vdkit_completion_fn done,
                                    void *opaque, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk) return null_arg("disk");
        return disk->disk->submit_discard(offset, len, c_completion(done, opaque));
    });
}

vdkit_status vdkit_disk_aio_flush(vdkit_disk *disk, vdkit_completion_fn done, void *opaque, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk) return null_arg("disk");
        return disk->disk->submit_flush(c_completion(done, opaque));
    });
}

vdkit_status vdkit_disk_aio_drain(vdkit_disk *disk, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk) return null_arg("disk");
        disk->disk->drain();
        return vdkit::Status::ok();
    });
}

vdkit_status vdkit_disk_is_attach_possible(vdkit_disk *parent, vdkit_disk *child, uint32_t flags, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!parent || !child) return null_arg("parent and child");
        vdkit::AttachOptions o;
        o.relink = flags & VDKIT_ATTACH_RELINK;
        o.verify_identity = flags & VDKIT_ATTACH_VERIFY;
        return child->disk->can_attach(*parent->disk, o);
    });
}

vdkit_status vdkit_disk_attach(vdkit_disk *parent, vdkit_disk *child, uint32_t flags, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!parent || !child) return null_arg("parent and child");
        vdkit::AttachOptions o;
        o.relink = flags & VDKIT_ATTACH_RELINK;
        o.verify_identity = flags & VDKIT_ATTACH_VERIFY;
        return child->disk->attach(*parent->disk, o);
    });
}

vdkit_status vdkit_disk_attach_cache(vdkit_disk *disk, const char *location, const char *format, const char *options,
                                     vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk || !location) return null_arg("disk and location");
        vdkit::CacheOptions o;
        if (format && *format) o.format = format;
        VDKIT_ASSIGN_OR_RETURN(o.options, parse_options(options));
        return disk->disk->attach_cache(location, o);
    });
}

vdkit_status vdkit_disk_detach_cache(vdkit_disk *disk, uint32_t flags, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk) return null_arg("disk");
        return disk->disk->detach_cache(flags & VDKIT_CACHE_DELETE);
    });
}

vdkit_status vdkit_disk_cache_stats(vdkit_disk *disk, vdkit_cache_stats *out, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk || !out) return null_arg("disk and out");
        if (out->struct_size < sizeof(uint32_t) * 2)
            return vdkit::Status(VDKIT_E_INVALID_ARGUMENT, "vdkit_cache_stats.struct_size is too small");
        VDKIT_ASSIGN_OR_RETURN(vdkit::CacheStats s, disk->disk->cache_stats());
        vdkit_cache_stats c{};
        c.struct_size = std::min<uint32_t>(out->struct_size, sizeof(c));
        c.bypassed = s.bypassed ? 1 : 0;
        c.hit_bytes = s.hit_bytes;
        c.miss_bytes = s.miss_bytes;
        std::memcpy(out, &c, c.struct_size);
        return vdkit::Status::ok();
    });
}

vdkit_status vdkit_image_rename(vdkit_library *lib, const char *from, const char *to, uint32_t flags,
                                vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!lib || !from || !to) return null_arg("lib, from and to");
        vdkit::RenameOptions o;
        o.relink_children = !(flags & VDKIT_RENAME_NO_RELINK);
        if (flags & VDKIT_RENAME_UNSAFE_PATHS) o.allow_unsafe_paths = true;
        return lib->lib->rename_image(from, to, o).status();
    });
}

vdkit_status vdkit_image_delete(vdkit_library *lib, const char *location, uint32_t flags, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!lib || !location) return null_arg("lib and location");
        vdkit::DeleteOptions o;
        o.force = flags & VDKIT_DELETE_FORCE;
        return lib->lib->delete_image(location, o).status();
    });
}

vdkit_status vdkit_disk_copy(vdkit_library *lib, vdkit_disk *src, vdkit_disk *dst, vdkit_progress_fn progress,
                             void *opaque, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!lib || !src || !dst) return null_arg("lib, src and dst");
        vdkit::CopyOptions o;
        if (progress) o.progress = [&](uint64_t d, uint64_t t) { return progress(opaque, d, t) == 0; };
        return lib->lib->copy(*src->disk, *dst->disk, o);
    });
}

vdkit_status vdkit_disk_compact(vdkit_disk *disk, vdkit_progress_fn progress, void *opaque, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk) return null_arg("disk");
        return disk->disk->compact(c_progress(progress, opaque));
    });
}

vdkit_status vdkit_disk_resize(vdkit_disk *disk, uint64_t new_size, uint32_t flags, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk) return null_arg("disk");
        return disk->disk->resize(new_size, flags & VDKIT_DISK_RESIZE_SHRINK);
    });
}

vdkit_status vdkit_disk_merge(vdkit_disk *disk, uint32_t from, uint32_t to, vdkit_progress_fn progress, void *opaque,
                              vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk) return null_arg("disk");
        return disk->disk->merge(from, to, c_progress(progress, opaque));
    });
}

vdkit_status vdkit_disk_commit(vdkit_disk *disk, uint32_t base, uint32_t flags, vdkit_progress_fn progress,
                               void *opaque, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk) return null_arg("disk");
        return disk->disk->commit(base, !(flags & VDKIT_COMMIT_KEEP_TOP), c_progress(progress, opaque));
    });
}

vdkit_status vdkit_disk_rebase(vdkit_disk *disk, const char *new_parent, const char *format, uint32_t flags,
                               vdkit_progress_fn progress, void *opaque, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk) return null_arg("disk");
        vdkit::RebaseOptions o;
        o.format = format ? format : "";
        o.unsafe = flags & VDKIT_REBASE_UNSAFE;
        o.progress = c_progress(progress, opaque);
        return disk->disk->rebase(new_parent ? new_parent : "", o);
    });
}

vdkit_status vdkit_disk_check(vdkit_disk *disk, uint32_t flags, vdkit_finding_fn finding, void *opaque,
                              vdkit_check_summary *summary, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk) return null_arg("disk");
        if (summary && summary->struct_size < 8)
            return vdkit::Status(VDKIT_E_INVALID_ARGUMENT, "summary.struct_size not set");
        vdkit::CheckOptions o;
        o.repair = flags & VDKIT_CHECK_REPAIR;
        o.dry_run = flags & VDKIT_CHECK_DRY_RUN;
        VDKIT_ASSIGN_OR_RETURN(vdkit::CheckReport r, disk->disk->check(o));
        if (finding)
            for (const auto &f : r.findings)
                finding(opaque, static_cast<uint32_t>(f.severity), f.offset.value_or(UINT64_MAX), f.message.c_str());
        if (summary) {
            vdkit_check_summary s{};
            s.struct_size = sizeof(s);
            s.errors = r.errors;
            s.leaks = r.leaks;
            s.repaired = r.repaired;
            const uint32_t n = std::min<uint32_t>(summary->struct_size, sizeof(s));
            std::memcpy(summary, &s, n);
            summary->struct_size = n;
        }
        return vdkit::Status::ok();
    });
}

// ---- image info and identity ----

vdkit_status vdkit_disk_get_image_info(vdkit_disk *disk, uint32_t image, vdkit_disk_image_info *out, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk || !out) return null_arg("disk and out");
        if (out->struct_size < 8)
            return vdkit::Status(VDKIT_E_INVALID_ARGUMENT, "vdkit_disk_image_info.struct_size is not set");
        VDKIT_ASSIGN_OR_RETURN(vdkit::ImageInfo i, disk->disk->image_info(image));
        vdkit_disk_image_info c{};
        c.struct_size = std::min<uint32_t>(out->struct_size, sizeof(c));
        c.flags = (i.read_only ? VDKIT_IMAGE_INFO_READ_ONLY : 0) | (i.has_parent ? VDKIT_IMAGE_INFO_HAS_PARENT : 0) |
                  (i.fixed ? VDKIT_IMAGE_INFO_FIXED : 0) | (i.dirty ? VDKIT_IMAGE_INFO_DIRTY : 0);
        c.location = disk->keep(i.location);
        c.format = disk->keep(i.format);
        c.subformat = disk->keep(i.subformat);
        c.parent_location = disk->keep(i.parent_hint);
        c.comment = disk->keep(i.comment);
        c.virtual_size = i.virtual_size;
        c.file_size = i.file_size.value_or(UINT64_MAX);
        c.sector_size = 512;
        c.granularity = i.granularity;
        std::memcpy(c.uuid, i.uuid.data(), 16);
        std::memcpy(c.modification_uuid, i.modification_uuid.data(), 16);
        std::memcpy(c.parent_uuid, i.parent_uuid.data(), 16);
        std::memcpy(c.parent_modification_uuid, i.parent_modification_uuid.data(), 16);
        c.pchs = {i.pchs.cylinders, i.pchs.heads, i.pchs.sectors};
        c.lchs = {i.lchs.cylinders, i.lchs.heads, i.lchs.sectors};
        c.format_specific = disk->keep(i.format_specific);
        std::memcpy(out, &c, c.struct_size);
        return vdkit::Status::ok();
    });
}

vdkit_status vdkit_disk_set_uuid(vdkit_disk *disk, uint32_t image, uint32_t which, const uint8_t uuid[16],
                                 vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk || !uuid) return null_arg("disk and uuid");
        vdkit::Uuid u;
        std::memcpy(u.data(), uuid, 16);
        return disk->disk->set_uuid(image, static_cast<vdkit::UuidKind>(which), u);
    });
}

vdkit_status vdkit_disk_set_geometry(vdkit_disk *disk, uint32_t image, const vdkit_geometry *pchs,
                                     const vdkit_geometry *lchs, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk) return null_arg("disk");
        auto conv = [](const vdkit_geometry *g) -> std::optional<vdkit::Geometry> {
            if (!g) return std::nullopt;
            return vdkit::Geometry{g->cylinders, g->heads, g->sectors};
        };
        return disk->disk->set_geometry(image, conv(pchs), conv(lchs));
    });
}

vdkit_status vdkit_disk_set_comment(vdkit_disk *disk, uint32_t image, const char *comment, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk || !comment) return null_arg("disk and comment");
        return disk->disk->set_comment(static_cast<size_t>(image), std::string_view(comment));
    });
}

vdkit_status vdkit_disk_metadata_keys(vdkit_disk *disk, char *buf, uint64_t cap, uint64_t *needed, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk || (!buf && cap)) return null_arg("disk and buf");
        VDKIT_ASSIGN_OR_RETURN(std::vector<std::string> keys, disk->disk->metadata_keys());
        std::string list;
        for (const auto &k : keys)
            list.append(k).push_back('\0');
        list.push_back('\0');
        if (needed) *needed = list.size();
        if (cap >= list.size())
            std::memcpy(buf, list.data(), list.size());
        else if (cap >= 1)
            buf[0] = '\0';
        return vdkit::Status::ok();
    });
}

// ---- plugins at run time ----

vdkit_status vdkit_plugin_load(vdkit_library *lib, const char *path, uint32_t *count, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!lib || !path) return null_arg("lib and path");
        VDKIT_ASSIGN_OR_RETURN(std::vector<vdkit::PluginInfo> added, lib->lib->load_plugin(path));
        if (count) *count = static_cast<uint32_t>(added.size());
        return vdkit::Status::ok();
    });
}

vdkit_status vdkit_plugin_unload(vdkit_library *lib, const char *path, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!lib || !path) return null_arg("lib and path");
        return lib->lib->unload_plugin(path);
    });
}

} // extern "C"

// ---- vdkit_convert ----------------------------------------------------------------

vdkit_status vdkit_convert(vdkit_library *lib, const char *source, const char *target,
                           const vdkit_convert_options *options, vdkit_convert_result *result, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!lib || !source || !target || !options) return null_arg("lib, source, target and options");
        // Every field up to and including `opaque` is ABI 1.0 of this struct.
        if (options->struct_size < sizeof(vdkit_convert_options))
            return vdkit::Status(VDKIT_E_INVALID_ARGUMENT, "vdkit_convert_options.struct_size is too small (" +
                                                               std::to_string(options->struct_size) + ", need " +
                                                               std::to_string(sizeof(vdkit_convert_options)) + ")");
        if (result && result->struct_size < sizeof(vdkit_convert_result))
            return vdkit::Status(VDKIT_E_INVALID_ARGUMENT, "vdkit_convert_result.struct_size is too small");
        vdkit_convert_options c{};
        std::memcpy(&c, options, sizeof(c));
        auto text = [](const char *p) { return std::string(p ? p : ""); };
        vdkit::ConvertOptions o;
        o.target_format = text(c.target_format);
        o.source_format = text(c.source_format);
        VDKIT_ASSIGN_OR_RETURN(o.target_options, parse_options(c.target_options));
        VDKIT_ASSIGN_OR_RETURN(o.source_filters, parse_filters(c.source_filters));
        VDKIT_ASSIGN_OR_RETURN(o.target_filters, parse_filters(c.target_filters));
        o.backing = text(c.backing);
        o.backing_format = text(c.backing_format);
        o.source_cache = text(c.source_cache);
        if (c.cache_format && *c.cache_format) o.cache_format = c.cache_format;
        o.threads = c.threads;
        o.overwrite = c.flags & VDKIT_CONVERT_OVERWRITE;
        o.preallocate = c.flags & VDKIT_CONVERT_PREALLOCATE;
        o.keep_uuid = c.flags & VDKIT_CONVERT_KEEP_UUID;
        o.existing_target = c.flags & VDKIT_CONVERT_EXISTING_TARGET;
        o.target_is_zero = c.flags & VDKIT_CONVERT_TARGET_IS_ZERO;
        o.verify = c.flags & VDKIT_CONVERT_VERIFY;
        o.out_of_order = c.flags & VDKIT_CONVERT_OUT_OF_ORDER;
        o.source_force_share = c.flags & VDKIT_CONVERT_SOURCE_FORCE_SHARE;
        if (c.flags >> 8)
            return vdkit::Status(VDKIT_E_INVALID_ARGUMENT, "vdkit_convert_options.flags has unknown bits set");
        o.progress = c_progress(c.progress, c.opaque);
        VDKIT_ASSIGN_OR_RETURN(vdkit::ConvertResult r, lib->lib->convert(source, target, o));
        if (result) {
            result->virtual_size = r.virtual_size;
            result->data_bytes = r.data_bytes;
        }
        return vdkit::Status::ok();
    });
}

// ---- volumes ----

struct vdkit_volume_list {
    vdkit::VolumeList list;
};

vdkit_status vdkit_disk_list_volumes(vdkit_disk *disk, uint32_t sector_size, uint32_t flags, vdkit_volume_list **out,
                                     vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!disk || !out) return null_arg("disk and out");
        *out = nullptr;
        vdkit::VolumeOptions o;
        o.sector_size = sector_size;
        o.identify = !(flags & VDKIT_VOLUMES_NO_IDENTIFY);
        o.lvm = !(flags & VDKIT_VOLUMES_NO_LVM);
        VDKIT_ASSIGN_OR_RETURN(vdkit::VolumeList l, vdkit::list_volumes(*disk->disk, o));
        *out = new vdkit_volume_list{std::move(l)};
        return vdkit::Status::ok();
    });
}

uint32_t vdkit_volume_list_count(const vdkit_volume_list *list) {
    return list ? static_cast<uint32_t>(list->list.volumes.size()) : 0;
}

void vdkit_volume_list_table(const vdkit_volume_list *list, const char **table, uint32_t *sector_size) {
    if (table) *table = !list ? "" : list->list.table.empty() ? "none" : list->list.table.c_str();
    if (sector_size) *sector_size = list ? list->list.sector_size : 0;
}

namespace {
vdkit::Status volume_at(const vdkit_volume_list *list, uint32_t i, const vdkit::Volume *&v) {
    if (!list) return null_arg("list");
    if (i >= list->list.volumes.size())
        return vdkit::Status(VDKIT_E_OUT_OF_RANGE, "volume position " + std::to_string(i) + " of " +
                                                       std::to_string(list->list.volumes.size()));
    v = &list->list.volumes[i];
    return vdkit::Status::ok();
}
} // namespace

vdkit_status vdkit_volume_list_get(const vdkit_volume_list *list, uint32_t i, vdkit_volume_info *out,
                                   vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        const vdkit::Volume *v = nullptr;
        VDKIT_TRY(volume_at(list, i, v));
        if (!out) return null_arg("out");
        if (out->struct_size < 8)
            return vdkit::Status(VDKIT_E_INVALID_ARGUMENT, "vdkit_volume_info.struct_size is not set");
        vdkit_volume_info c{};
        c.struct_size = std::min<uint32_t>(out->struct_size, sizeof(c));
        c.index = v->index;
        c.kind = static_cast<uint32_t>(v->kind);
        c.flags = (v->bootable ? VDKIT_VOLUME_BOOTABLE : 0) | (v->not_mountable.empty() ? VDKIT_VOLUME_MOUNTABLE : 0);
        c.offset = v->offset;
        c.length = v->length;
        c.parent = v->parent;
        c.mbr_type = v->mbr_type;
        c.attributes = v->attributes;
        c.extent_count = static_cast<uint32_t>(v->extents.size());
        c.type_guid = v->type_guid.c_str();
        c.type_name = v->type_name.c_str();
        c.part_uuid = v->part_uuid.c_str();
        c.name = v->name.c_str();
        c.filesystem = v->filesystem.c_str();
        c.fs_version = v->fs_version.c_str();
        c.label = v->label.c_str();
        c.uuid = v->uuid.c_str();
        c.segment_type = v->lvm_segment_type.c_str();
        c.not_mountable = v->not_mountable.c_str();
        std::memcpy(out, &c, c.struct_size);
        return vdkit::Status::ok();
    });
}

uint32_t vdkit_volume_list_finding_count(const vdkit_volume_list *list) {
    return list ? static_cast<uint32_t>(list->list.findings.size()) : 0;
}

vdkit_status vdkit_volume_list_get_finding(const vdkit_volume_list *list, uint32_t i, uint32_t *severity,
                                           uint64_t *offset, const char **message, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        if (!list) return null_arg("list");
        if (i >= list->list.findings.size())
            return vdkit::Status(VDKIT_E_OUT_OF_RANGE,
                                 "finding " + std::to_string(i) + " of " + std::to_string(list->list.findings.size()));
        const vdkit::VolumeFinding &f = list->list.findings[i];
        if (severity) *severity = static_cast<uint32_t>(f.severity);
        if (offset) *offset = f.offset.value_or(UINT64_MAX);
        if (message) *message = f.message.c_str();
        return vdkit::Status::ok();
    });
}

vdkit_status vdkit_volume_read(vdkit_disk *disk, const vdkit_volume_list *list, uint32_t i, uint64_t offset, void *buf,
                               uint64_t len, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        const vdkit::Volume *v = nullptr;
        VDKIT_TRY(volume_at(list, i, v));
        if (!disk || (!buf && len)) return null_arg("disk and buf");
        return vdkit::read_volume(*disk->disk, *v, offset, buf, len);
    });
}

vdkit_status vdkit_volume_write(vdkit_disk *disk, const vdkit_volume_list *list, uint32_t i, uint64_t offset,
                                const void *buf, uint64_t len, vdkit_error *err) {
    return guarded(err, [&]() -> vdkit::Status {
        const vdkit::Volume *v = nullptr;
        VDKIT_TRY(volume_at(list, i, v));
        if (!disk || (!buf && len)) return null_arg("disk and buf");
        return vdkit::write_volume(*disk->disk, *v, offset, buf, len);
    });
}

void vdkit_volume_list_free(vdkit_volume_list *list) {
    delete list;
}
