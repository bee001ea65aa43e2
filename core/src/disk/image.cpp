#include "disk/image.hpp"

#include "io/dry_run_store.hpp"
#include "io/stores.hpp"
#include "util/util.hpp"

#include <algorithm>
#include <cstring>
#include <iterator>

namespace vdkit {

namespace {
vdkit_str to_str(std::string_view s) {
    return vdkit_str{s.data(), s.size()};
}
constexpr uint64_t kMaxString = 16u << 20; // strings from plugins are bounded
} // namespace

Image::Image(const Stores &stores, PluginEntryPtr format, ByteStorePtr main, ImageSetup setup)
    : stores_(stores), format_(std::move(format)), main_{std::move(main)}, setup_(std::move(setup)),
      serialise_(!(format_->info.capabilities & VDKIT_CAP_THREAD_SAFE)) {}

Image::~Image() {
    if (instance_) {
        Status st = close(false);
        if (!st) stores_.log(LogLevel::error, "closing " + setup_.location + ": " + st.message());
    }
}

vdkit_ctx Image::ctx() const {
    vdkit_ctx c = stores_.make_ctx(format_.get(), &setup_.format_options);
    c.base_location = setup_.location;
    c.allow_unsafe_paths = setup_.allow_unsafe_paths;
    c.lock = setup_.lock;
    c.transport_options = &setup_.transport_options;
    c.filters = &setup_.filters;
    c.opened = opened_;
    c.dry_run = setup_.dry_run;
    return c;
}

Result<std::unique_ptr<Image>> Image::open_dry_run() const {
    VDKIT_ASSIGN_OR_RETURN(ByteStorePtr real, stores_.open_store(setup_.location, VDKIT_OPEN_NOLOCK,
                                                                 setup_.transport_options, setup_.filters));
    ImageSetup setup = setup_;
    setup.dry_run = true;
    setup.writable = true;
    return Image::open(stores_, format_, make_dry_run_store(std::move(real)), std::move(setup),
                       VDKIT_OPEN_WRITE | VDKIT_OPEN_NOLOCK);
}

Status Image::done(vdkit_ctx &c, uint32_t rc, std::string_view op) const {
    if (rc == VDKIT_OK) return Status::ok();
    return status_from_plugin(c, rc, std::string(op) + " " + setup_.location);
}

std::unique_lock<std::mutex> Image::lock() {
    return serialise_ ? std::unique_lock<std::mutex>(mu_) : std::unique_lock<std::mutex>();
}

Result<std::unique_ptr<Image>> Image::open(const Stores &stores, PluginEntryPtr format, ByteStorePtr main,
                                           ImageSetup setup, uint32_t flags) {
    std::unique_ptr<Image> img(new Image(stores, std::move(format), std::move(main), std::move(setup)));
    vdkit_ctx c = img->ctx();
    uint32_t rc = call_plugin(c, img->format_->format.open, &c, &img->main_, to_str(img->setup_.location), flags,
                              &img->instance_);
    if (rc != VDKIT_OK) {
        img->instance_ = nullptr;
        return img->done(c, rc, "open");
    }
    if (!img->instance_)
        return Status(VDKIT_E_INTERNAL,
                      img->setup_.location + ": format '" + img->format_->info.name + "' opened no instance");
    VDKIT_TRY(img->refresh_size());
    return img;
}

Result<std::unique_ptr<Image>> Image::create(const Stores &stores, PluginEntryPtr format, ByteStorePtr main,
                                             ImageSetup setup, const vdkit_create_params &params) {
    std::unique_ptr<Image> img(new Image(stores, std::move(format), std::move(main), std::move(setup)));
    if (!img->format_->format.create)
        return Status(VDKIT_E_NOT_SUPPORTED, "format '" + img->format_->info.name + "' cannot create images");
    vdkit_ctx c = img->ctx();
    uint32_t rc = call_plugin(c, img->format_->format.create, &c, &img->main_, to_str(img->setup_.location), &params,
                              &img->instance_);
    if (rc != VDKIT_OK) {
        img->instance_ = nullptr;
        return img->done(c, rc, "create");
    }
    if (!img->instance_)
        return Status(VDKIT_E_INTERNAL,
                      img->setup_.location + ": format '" + img->format_->info.name + "' created no instance");
    VDKIT_TRY(img->refresh_size());
    return img;
}

Status Image::close(bool delete_files) {
    if (!instance_) return Status::ok();
    auto l = lock();
    vdkit_ctx c = ctx();
    void *inst = instance_;
    instance_ = nullptr;
    uint32_t rc = call_plugin(c, format_->format.close, inst, &c, static_cast<uint8_t>(delete_files));
    Status st = done(c, rc, "close");
    if (st && setup_.writable) st = main_.store->flush();
    return st;
}

Result<vdkit_image_info> Image::raw_info() {
    auto l = lock();
    vdkit_ctx c = ctx();
    vdkit_image_info info{};
    info.struct_size = sizeof(info);
    uint32_t rc = call_plugin(c, format_->format.get_info, instance_, &c, &info);
    if (rc != VDKIT_OK) return done(c, rc, "get info of");
    info.struct_size = sizeof(info);
    return info;
}

Status Image::refresh_size() {
    VDKIT_ASSIGN_OR_RETURN(vdkit_image_info info, raw_info());
    size_ = info.virtual_size;
    return Status::ok();
}

template <class Fn> Result<std::string> Image::get_string(Fn fn, std::string_view op) {
    std::string buf(256, '\0');
    for (int attempt = 0; attempt < 4; ++attempt) {
        vdkit_ctx c = ctx();
        uint64_t needed = 0;
        uint32_t rc = fn(c, buf.data(), static_cast<uint64_t>(buf.size()), &needed);
        if (rc != VDKIT_OK) return done(c, rc, op);
        if (needed > kMaxString)
            return Status(VDKIT_E_CORRUPT, setup_.location + ": " + std::string(op) + " is longer than " +
                                               util::format_size(kMaxString));
        if (needed <= buf.size()) {
            buf.resize(static_cast<size_t>(needed));
            return buf;
        }
        buf.assign(static_cast<size_t>(needed), '\0');
    }
    return Status(VDKIT_E_INTERNAL, setup_.location + ": " + std::string(op) + ": plugin keeps changing the length");
}

Result<std::string> Image::parent_hint() {
    if (!format_->format.get_parent_hint) return std::string();
    auto l = lock();
    return get_string(
        [&](vdkit_ctx &c, char *b, uint64_t cap, uint64_t *n) {
            return call_plugin(c, format_->format.get_parent_hint, instance_, &c, b, cap, n);
        },
        "parent location");
}

Result<std::string> Image::parent_format() {
    if (!format_->format.get_parent_format) return std::string();
    auto l = lock();
    return get_string(
        [&](vdkit_ctx &c, char *b, uint64_t cap, uint64_t *n) {
            return call_plugin(c, format_->format.get_parent_format, instance_, &c, b, cap, n);
        },
        "parent format");
}

Result<std::string> Image::comment() {
    if (!format_->format.get_comment) return std::string();
    auto l = lock();
    return get_string(
        [&](vdkit_ctx &c, char *b, uint64_t cap, uint64_t *n) {
            return call_plugin(c, format_->format.get_comment, instance_, &c, b, cap, n);
        },
        "comment");
}

Result<std::string> Image::details() {
    if (!format_->format.get_details) return std::string();
    auto l = lock();
    return get_string(
        [&](vdkit_ctx &c, char *b, uint64_t cap, uint64_t *n) {
            return call_plugin(c, format_->format.get_details, instance_, &c, b, cap, n);
        },
        "format details");
}

Status Image::set_comment(std::string_view comment) {
    if (!format_->format.set_comment)
        return Status(VDKIT_E_NOT_SUPPORTED, "format '" + format_->info.name + "' has no comment field");
    auto l = lock();
    vdkit_ctx c = ctx();
    return done(c, call_plugin(c, format_->format.set_comment, instance_, &c, to_str(comment)), "set comment of");
}

Status Image::set_uuid(uint32_t which, const Uuid &uuid) {
    if (!setup_.writable) return Status(VDKIT_E_READ_ONLY, setup_.location + " is open read-only");
    if (!format_->format.set_uuid)
        return Status(VDKIT_E_NOT_SUPPORTED, "format '" + format_->info.name + "' records no UUIDs");
    auto l = lock();
    vdkit_ctx c = ctx();
    return done(c, call_plugin(c, format_->format.set_uuid, instance_, &c, which, uuid.data()), "set a UUID of");
}

Status Image::set_geometry(const uint32_t *pchs, const uint32_t *lchs) {
    if (!setup_.writable) return Status(VDKIT_E_READ_ONLY, setup_.location + " is open read-only");
    if (!format_->format.set_geometry)
        return Status(VDKIT_E_NOT_SUPPORTED, "format '" + format_->info.name + "' records no disk geometry");
    auto l = lock();
    vdkit_ctx c = ctx();
    return done(c, call_plugin(c, format_->format.set_geometry, instance_, &c, pchs, lchs), "set the geometry of");
}

Result<std::string> Image::metadata_get(std::string_view key) {
    if (!format_->format.metadata_get)
        return Status(VDKIT_E_NOT_SUPPORTED, "format '" + format_->info.name + "' has no key/value metadata");
    auto l = lock();
    return get_string(
        [&](vdkit_ctx &c, char *b, uint64_t cap, uint64_t *n) {
            return call_plugin(c, format_->format.metadata_get, instance_, &c, to_str(key), b, cap, n);
        },
        "metadata key");
}

Status Image::metadata_set(std::string_view key, std::string_view value) {
    if (!format_->format.metadata_set)
        return Status(VDKIT_E_NOT_SUPPORTED, "format '" + format_->info.name + "' has no key/value metadata");
    auto l = lock();
    vdkit_ctx c = ctx();
    return done(c, call_plugin(c, format_->format.metadata_set, instance_, &c, to_str(key), to_str(value)),
                "set metadata of");
}

Result<std::vector<std::string>> Image::metadata_keys() {
    if (!format_->format.metadata_list)
        return Status(VDKIT_E_NOT_SUPPORTED, "format '" + format_->info.name + "' has no key/value metadata");
    auto l = lock();
    VDKIT_ASSIGN_OR_RETURN(
        std::string joined,
        get_string([&](vdkit_ctx &c, char *b, uint64_t cap,
                       uint64_t *n) { return call_plugin(c, format_->format.metadata_list, instance_, &c, b, cap, n); },
                   "metadata keys"));
    std::vector<std::string> keys;
    size_t start = 0;
    while (start < joined.size()) {
        size_t end = joined.find('\0', start);
        if (end == std::string::npos) end = joined.size();
        if (end > start) keys.push_back(joined.substr(start, end - start));
        start = end + 1;
    }
    return keys;
}

template <class Measure> std::optional<uint64_t> Image::sum_over_files(Measure measure, bool every_file) const {
    auto main = measure(*main_.store);
    if (!main) return std::nullopt;
    uint64_t total = *main;
    std::vector<std::string> seen{main_.store->location()};
    std::lock_guard lock(opened_->mu);
    for (ByteStore *s : opened_->live) {
        if (std::find(seen.begin(), seen.end(), s->location()) != seen.end()) continue; // opened twice
        seen.push_back(s->location());
        auto value = measure(*s);
        if (value)
            total += *value;
        else if (every_file)
            return std::nullopt;
    }
    return total;
}

std::vector<std::string> Image::files() const {
    std::vector<std::string> out{main_.store->location()};
    std::lock_guard lock(opened_->mu);
    for (const auto *list : {&opened_->live, &opened_->devices})
        for (const ByteStore *s : *list)
            out.push_back(s->location());
    return out;
}

std::optional<uint64_t> Image::disk_usage() const {
    return sum_over_files([](ByteStore &s) { return s.allocated_size(); }, false);
}

std::optional<uint64_t> Image::files_length() const {
    return sum_over_files([](ByteStore &s) { return s.size(); }, true);
}

Result<ImageInfo> Image::info() {
    VDKIT_ASSIGN_OR_RETURN(vdkit_image_info raw, raw_info());
    ImageInfo out;
    out.location = setup_.location;
    out.format = format_->info.name;
    for (const FilterLayer &layer : setup_.filters)
        if (!is_disk_layer(layer)) out.filters.push_back(layer.plugin->info.name);
    if (raw.subformat.data && raw.subformat.size <= 256)
        out.subformat.assign(raw.subformat.data, static_cast<size_t>(raw.subformat.size));
    out.virtual_size = raw.virtual_size;
    out.granularity = raw.granularity;
    out.read_only = !setup_.writable || (raw.flags & VDKIT_IMAGE_READ_ONLY);
    out.has_parent = raw.flags & VDKIT_IMAGE_HAS_PARENT;
    out.fixed = raw.flags & VDKIT_IMAGE_FIXED;
    out.zero_init = raw.flags & VDKIT_IMAGE_ZERO_INIT;
    out.sequential = raw.flags & VDKIT_IMAGE_SEQUENTIAL;
    std::memcpy(out.uuid.data(), raw.uuid, 16);
    std::memcpy(out.modification_uuid.data(), raw.modification_uuid, 16);
    std::memcpy(out.parent_uuid.data(), raw.parent_uuid, 16);
    std::memcpy(out.parent_modification_uuid.data(), raw.parent_modification_uuid, 16);
    out.pchs = {raw.pchs_cylinders, raw.pchs_heads, raw.pchs_sectors};
    out.lchs = {raw.lchs_cylinders, raw.lchs_heads, raw.lchs_sectors};
    out.file_size = disk_usage();
    out.file_length = files_length();
    if (out.has_parent) {
        VDKIT_ASSIGN_OR_RETURN(out.parent_hint, parent_hint());
    }
    VDKIT_ASSIGN_OR_RETURN(out.comment, comment());
    out.dirty = raw.flags & VDKIT_IMAGE_DIRTY;
    VDKIT_ASSIGN_OR_RETURN(out.format_specific, details());
    return out;
}

Status Image::read(uint64_t offset, void *buf, uint64_t len, uint64_t &n, bool &unallocated) {
    auto l = lock();
    vdkit_ctx c = ctx();
    n = 0;
    uint32_t rc = call_plugin(c, format_->format.read, instance_, &c, offset, buf, len, &n);
    unallocated = rc == VDKIT_E_UNALLOCATED;
    if (rc != VDKIT_OK && !unallocated) return done(c, rc, "read from");
    if (n == 0 || n > len)
        return Status(VDKIT_E_INTERNAL, setup_.location + ": format '" + format_->info.name + "' answered a read of " +
                                            std::to_string(len) + " bytes at " + util::hex(offset) + " with length " +
                                            std::to_string(n));
    return Status::ok();
}

Status Image::write(uint64_t offset, const void *buf, uint64_t len, uint64_t &n, bool &block_free,
                    uint64_t &fill_offset, uint64_t &fill_len) {
    if (!setup_.writable) return Status(VDKIT_E_READ_ONLY, setup_.location + " is open read-only");
    if (!format_->format.write)
        return Status(VDKIT_E_NOT_SUPPORTED, "format '" + format_->info.name + "' cannot write");
    auto l = lock();
    vdkit_ctx c = ctx();
    n = fill_offset = fill_len = 0;
    uint32_t rc = call_plugin(c, format_->format.write, instance_, &c, offset, buf, len, &n, &fill_offset, &fill_len);
    block_free = rc == VDKIT_E_BLOCK_FREE;
    if (rc != VDKIT_OK && !block_free) return done(c, rc, "write to");
    if (block_free) {
        auto fill_end = util::checked_add(fill_offset, fill_len);
        if (fill_len == 0 || !fill_end || fill_offset > offset || *fill_end <= offset || fill_len > (256u << 20))
            return Status(VDKIT_E_INTERNAL, setup_.location + ": format '" + format_->info.name +
                                                "' asked for a copy-on-write fill that does not contain the write");
        return Status::ok();
    }
    if (n == 0 || n > len)
        return Status(VDKIT_E_INTERNAL, setup_.location + ": format '" + format_->info.name +
                                            "' answered a write with length " + std::to_string(n));
    return Status::ok();
}

Status Image::block_status(uint64_t offset, uint64_t len, uint32_t &status, uint64_t &run) {
    if (!format_->format.block_status) {
        status = VDKIT_BLOCK_DATA;
        run = len;
        return Status::ok();
    }
    auto l = lock();
    vdkit_ctx c = ctx();
    uint32_t rc = call_plugin(c, format_->format.block_status, instance_, &c, offset, len, &status, &run);
    if (rc != VDKIT_OK) return done(c, rc, "block status of");
    if (run == 0 || run > len || status > VDKIT_BLOCK_UNALLOCATED)
        return Status(VDKIT_E_INTERNAL,
                      setup_.location + ": format '" + format_->info.name + "' returned a bad block status");
    return Status::ok();
}

Status Image::flush() {
    if (!setup_.writable) return Status::ok();
    {
        auto l = lock();
        if (format_->format.flush) {
            vdkit_ctx c = ctx();
            VDKIT_TRY(done(c, call_plugin(c, format_->format.flush, instance_, &c), "flush"));
        }
    }
    return main_.store->flush();
}

Status Image::set_parent(std::string_view hint, std::string_view format, const vdkit_image_info *parent) {
    if (!setup_.writable) return Status(VDKIT_E_READ_ONLY, setup_.location + " is open read-only");
    if (!format_->format.set_parent)
        return Status(VDKIT_E_NOT_SUPPORTED, "format '" + format_->info.name + "' cannot change an image's parent");
    auto l = lock();
    vdkit_ctx c = ctx();
    Status st = done(c,
                     call_plugin(c, format_->format.set_parent, instance_, &c, to_str(hint), to_str(format),
                                 parent ? parent->uuid : nullptr, parent ? parent->modification_uuid : nullptr),
                     "set the parent of");
    l.unlock();
    if (st) VDKIT_TRY(refresh_size());
    return st;
}

Status Image::rename(const std::string &to) {
    if (!setup_.writable) return Status(VDKIT_E_READ_ONLY, setup_.location + " is open read-only");
    auto l = lock();
    if (format_->format.rename) {
        vdkit_ctx c = ctx();
        c.allow_unsafe_paths = true; // the destination is the caller's choice, not a field read from a file
        VDKIT_TRY(done(c, call_plugin(c, format_->format.rename, instance_, &c, to_str(to)), "rename"));
    } else if (!format_->info.has(VDKIT_CAP_CREATE_SPLIT)) {
        // A format that never spans several files: main is the whole image.
        VDKIT_TRY(stores_.rename_location(setup_.location, to));
    } else {
        return Status(VDKIT_E_NOT_SUPPORTED,
                      "format '" + format_->info.name + "' cannot rename its images (they may span several files)");
    }
    setup_.location = to;
    return Status::ok();
}

Status Image::discard(uint64_t offset, uint64_t len) {
    if (!setup_.writable) return Status(VDKIT_E_READ_ONLY, setup_.location + " is open read-only");
    if (!format_->format.discard)
        return Status(VDKIT_E_NOT_SUPPORTED, "format '" + format_->info.name + "' cannot discard");
    auto l = lock();
    vdkit_ctx c = ctx();
    return done(c, call_plugin(c, format_->format.discard, instance_, &c, offset, len), "discard in");
}

Status Image::write_zeroes(uint64_t offset, uint64_t len) {
    if (!setup_.writable) return Status(VDKIT_E_READ_ONLY, setup_.location + " is open read-only");
    if (!format_->format.write_zeroes) return Status(VDKIT_E_NOT_SUPPORTED, "no write_zeroes");
    auto l = lock();
    vdkit_ctx c = ctx();
    return done(c, call_plugin(c, format_->format.write_zeroes, instance_, &c, offset, len), "write zeroes to");
}

Status Image::compact(const ProgressFunction &progress) {
    if (!setup_.writable) return Status(VDKIT_E_READ_ONLY, setup_.location + " is open read-only");
    if (!format_->format.compact)
        return Status(VDKIT_E_NOT_SUPPORTED, "format '" + format_->info.name + "' cannot compact images");
    auto l = lock();
    vdkit_ctx c = ctx();
    c.progress = progress;
    return done(c, call_plugin(c, format_->format.compact, instance_, &c), "compact");
}

Status Image::keep_modification_id() {
    if (!setup_.writable) return Status(VDKIT_E_READ_ONLY, setup_.location + " is open read-only");
    if (!format_->format.set_uuid) return Status::ok();
    VDKIT_ASSIGN_OR_RETURN(vdkit_image_info info, raw_info());
    if (std::all_of(std::begin(info.modification_uuid), std::end(info.modification_uuid),
                    [](uint8_t b) { return b == 0; }))
        return Status::ok(); // no modification id to keep
    auto l = lock();
    vdkit_ctx c = ctx();
    const uint32_t rc =
        call_plugin(c, format_->format.set_uuid, instance_, &c, VDKIT_UUID_MODIFICATION, info.modification_uuid);
    if (rc == VDKIT_E_NOT_SUPPORTED) return Status::ok();
    return done(c, rc, "keep the modification id of");
}

Status Image::resize(uint64_t new_size, uint32_t flags) {
    if (!setup_.writable) return Status(VDKIT_E_READ_ONLY, setup_.location + " is open read-only");
    if (!format_->format.resize)
        return Status(VDKIT_E_NOT_SUPPORTED, "format '" + format_->info.name + "' cannot resize images");
    {
        auto l = lock();
        vdkit_ctx c = ctx();
        VDKIT_TRY(done(c, call_plugin(c, format_->format.resize, instance_, &c, new_size, flags), "resize"));
    }
    VDKIT_TRY(refresh_size());
    if (size_ != new_size)
        return Status(VDKIT_E_INTERNAL, setup_.location + ": format '" + format_->info.name + "' resized to " +
                                            std::to_string(size_) + " bytes instead of " + std::to_string(new_size));
    return Status::ok();
}

Status Image::check(uint32_t flags, CheckReport &report) {
    if ((flags & VDKIT_CHECK_REPAIR) && !(flags & VDKIT_CHECK_DRY_RUN) && !setup_.writable)
        return Status(VDKIT_E_READ_ONLY, setup_.location + " is open read-only; repair needs it writable");
    if (!format_->format.check)
        return Status(VDKIT_E_NOT_SUPPORTED, "format '" + format_->info.name + "' cannot check images");
    auto l = lock();
    vdkit_ctx c = ctx();
    constexpr size_t kMaxFindings = 100000; // a hostile image cannot exhaust memory through findings
    uint64_t dropped = 0;
    c.finding = [&](uint32_t severity, uint64_t offset, std::string_view message) {
        if (report.findings.size() >= kMaxFindings) {
            ++dropped;
            return;
        }
        CheckFinding f;
        f.severity = severity <= VDKIT_FINDING_NOTE ? static_cast<FindingSeverity>(severity) : FindingSeverity::note;
        if (offset != UINT64_MAX) f.offset = offset;
        f.message.assign(message.substr(0, 4096));
        report.findings.push_back(std::move(f));
    };
    vdkit_check_result result{};
    result.struct_size = sizeof(result);
    VDKIT_TRY(done(c, call_plugin(c, format_->format.check, instance_, &c, flags, &result), "check"));
    report.errors = result.errors;
    report.leaks = result.leaks;
    report.repaired = result.repaired;
    if (dropped)
        report.findings.push_back(
            {FindingSeverity::note, std::nullopt, std::to_string(dropped) + " more findings were not listed"});
    return Status::ok();
}

} // namespace vdkit
