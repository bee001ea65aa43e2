#include "convert.hpp"

#include <cerrno>
#include <cstring>
#include <iostream>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;

namespace vdkit::cli {

std::filesystem::path staging_dir_for(const fs::path &target) {
    fs::path dir = target.parent_path();
    if (dir.empty()) dir = ".";
    return dir / ("." + target.filename().string() + ".vdkit-partial");
}

namespace {

// The staging directory; removed with whatever is in it unless published.
class Staging {
public:
    Staging(fs::path target, bool overwrite, std::vector<FilterSpec> filters)
        : target_(std::move(target)), overwrite_(overwrite), filters_(std::move(filters)) {
        std::error_code ec;
        if (!overwrite_ && fs::exists(target_, ec))
            throw CliError(target_.string() + ": already exists; pass --overwrite to replace it");
        dir_ = staging_dir_for(target_);
        if (fs::exists(dir_, ec)) {
            // Left by a convert that was killed; it never held a finished image.
            fs::remove_all(dir_, ec);
            if (ec) throw CliError(dir_.string() + ": cannot remove a leftover staging directory: " + ec.message());
        }
        if (!fs::create_directory(dir_, ec) || ec)
            throw CliError(dir_.string() + ": cannot create the staging directory: " + ec.message());
    }
    ~Staging() {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    Staging(const Staging &) = delete;
    Staging &operator=(const Staging &) = delete;

    fs::path main() const { return dir_ / target_.filename(); }

    // Move the finished image's files beside the final name, the main file
    // last. A single-file image replaces an old one atomically (rename); a
    // multi-file one first removes the image it replaces (all its files).
    void publish(Library &lib) {
        std::vector<fs::path> others;
        for (const auto &entry : fs::directory_iterator(dir_))
            if (entry.path().filename() != target_.filename()) others.push_back(entry.path());
        const fs::path final_dir = target_.parent_path().empty() ? fs::path(".") : target_.parent_path();
        std::error_code ec;
        if (!others.empty()) {
            if (fs::exists(target_, ec)) remove_old_image(lib);
            for (const auto &p : others) {
                const fs::path to = final_dir / p.filename();
                if (!overwrite_ && fs::exists(to, ec))
                    throw CliError(to.string() + ": already exists (a file of the new image would replace it); "
                                                 "pass --overwrite to replace it");
            }
            for (const auto &p : others) rename(p, final_dir / p.filename());
        } else if (!overwrite_ && fs::exists(target_, ec)) {
            throw CliError(target_.string() + ": appeared while converting; pass --overwrite to replace it");
        }
        rename(main(), target_);
        sync_directory(final_dir);
    }

private:
    // Make the renames durable: the directory entries are only on disk once
    // the directory itself is flushed (the files' data was flushed at close).
    static void sync_directory(const fs::path &dir) {
        const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) throw CliError(dir.string() + ": cannot open the directory to flush it: " + std::strerror(errno));
        const int rc = ::fsync(fd);
        const int err = errno;
        ::close(fd);
        if (rc != 0) throw CliError(dir.string() + ": cannot flush the directory: " + std::strerror(err));
    }
    static void rename(const fs::path &from, const fs::path &to) {
        std::error_code ec;
        fs::rename(from, to, ec);
        if (ec) throw CliError("cannot move " + from.string() + " to " + to.string() + ": " + ec.message());
    }
    void remove_old_image(Library &lib) {
        OpenOptions o;
        o.writable = true;
        o.follow_parents = false;
        o.filters = filters_; // the image it replaces is likely stored the same way
        auto old = lib.open(target_.string(), o);
        if (!old && !filters_.empty()) {
            o.filters.clear();
            old = lib.open(target_.string(), o);
        }
        Status removed = old ? (*old)->close_and_delete() : old.status();
        if (!removed) {
            std::error_code ec;
            fs::remove(target_, ec); // not an image we can open: the one file
        }
    }

    fs::path target_, dir_;
    bool overwrite_;
    std::vector<FilterSpec> filters_;
};

} // namespace

ConvertResult convert_image(Library &lib, const ConvertSpec &spec, const ProgressFunction &progress) {
    std::error_code ec;
    if (fs::equivalent(spec.source, spec.target, ec))
        throw CliError("source and target are the same file (" + spec.target + ")", kExitUsage);
    OpenOptions oo;
    oo.format = spec.source_format;
    oo.filters = spec.source_filters;
    auto src = take(raw_by(lib.open(spec.source, oo), spec.raw_advice));
    if (!spec.source_cache.empty()) {
        CacheOptions cache;
        cache.format = spec.cache_format;
        check(src->attach_cache(spec.source_cache, cache));
    }

    Staging staging(spec.target, spec.overwrite, spec.target_filters);
    CreateOptions co;
    co.format = spec.target_format;
    co.size = src->size();
    co.options = spec.target_options;
    co.fixed = spec.preallocate;
    co.final_location = spec.target;
    co.filters = spec.target_filters;
    if (!spec.backing.empty()) {
        fs::path backing = spec.backing;
        if (backing.is_relative()) backing = fs::path(spec.target).parent_path() / backing;
        co.parent = backing.string();
        co.parent_format = spec.backing_format;
    }
    if (spec.keep_uuid) co.uuid = take(src->image_info(src->image_count() - 1)).uuid;
    auto dst = take(as_parent(lib.create_image(staging.main().string(), co)));

    CopyOptions copy;
    ConvertResult result{src->size(), 0};
    copy.progress = [&](uint64_t done, uint64_t total) {
        result.data_bytes = done;
        return !progress || progress(done, total);
    };
    copy.target_is_zero = true; // a new image, sparse or preallocated with zeros
    copy.threads = spec.threads;
    copy.out_of_order = spec.out_of_order;
    if (!spec.backing.empty()) {
        auto same = lib.common_image(*src, *dst);
        if (same && *same) copy.same_up_to = **same;
        else copy.target_is_zero = false; // the backing image may show data anywhere
    }
    Status copied = lib.copy(*src, *dst, copy);
    if (copied && spec.verify && !spec.backing.empty()) {
        // The staged image names its backing from its final place, so it is
        // verified through the open chain rather than reopened.
        auto diff = Library::compare(*src, *dst);
        if (!diff) copied = diff.status();
        else if (*diff)
            copied = Status(VDKIT_E_CORRUPT, spec.target + ": verification failed: the new image reads differently "
                                                           "from " + spec.source + " at offset " + std::to_string(**diff));
    }
    if (!copied) {
        dst->close_and_delete().ignore();
        check(copied);
    }
    check(dst->close());
    if (spec.verify && spec.backing.empty()) {
        OpenOptions ro;
        ro.format = spec.target_format;
        ro.filters = spec.target_filters;
        auto back = take(lib.open(staging.main().string(), ro));
        auto diff = take(Library::compare(*src, *back));
        if (diff)
            throw CliError(spec.target + ": verification failed: the new image reads differently from " +
                           spec.source + " at offset " + std::to_string(*diff));
    }
    staging.publish(lib);
    return result;
}

} // namespace vdkit::cli
