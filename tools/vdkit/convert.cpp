#include "convert.hpp"

#include "commands.hpp"
#include "signals.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;

namespace vdkit::cli {

std::filesystem::path staging_dir_for(const fs::path &target) {
    fs::path dir = target.parent_path();
    if (dir.empty()) dir = ".";
    return dir / ("." + target.filename().string() + ".vdkit-partial");
}

const char *to_string(StagingDir::State state) {
    switch (state) {
    case StagingDir::State::stale: return "stale";
    case StagingDir::State::in_use: return "in-use";
    case StagingDir::State::unknown: return "unknown";
    case StagingDir::State::removed: return "removed";
    case StagingDir::State::foreign: break;
    }
    return "foreign";
}

std::string file_type_name(unsigned m) {
    if (S_ISREG(m)) return "a regular file";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISFIFO(m)) return "a fifo (named pipe)";
    if (S_ISDIR(m)) return "a directory";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISLNK(m)) return "a symlink";
    return "a special file";
}

namespace {

constexpr const char *kMarkerMagic = "vdkit staging directory";

bool is_url(const std::string &p) { return p.find("://") != std::string::npos; }

std::string errno_text(int err) { return std::strerror(err); }

std::string type_name(mode_t m) { return file_type_name(m); }

struct Fd {
    int fd = -1;
    Fd() = default;
    explicit Fd(int f) : fd(f) {}
    Fd(Fd &&o) noexcept : fd(std::exchange(o.fd, -1)) {}
    Fd &operator=(Fd &&o) noexcept {
        if (this != &o) {
            reset();
            fd = std::exchange(o.fd, -1);
        }
        return *this;
    }
    ~Fd() { reset(); }
    void reset() {
        if (fd >= 0) ::close(fd);
        fd = -1;
    }
};

enum class Lock { taken, held_elsewhere, unsupported };

// The whole marker file, locked (F_WRLCK) through an open file description
// lock: it belongs to this open file, not to the process, so threads and
// other opens of the file (in this process too) do not share or release it.
Lock try_lock(int fd) {
    struct flock l {};
    l.l_type = F_WRLCK;
    l.l_whence = SEEK_SET;
    if (fcntl(fd, F_OFD_SETLK, &l) == 0) return Lock::taken;
    return errno == EAGAIN || errno == EACCES ? Lock::held_elsewhere : Lock::unsupported;
}

// Whether a lock is held on the file, for a read-only look.
Lock lock_held(int fd) {
    struct flock l {};
    l.l_type = F_WRLCK;
    l.l_whence = SEEK_SET;
    if (fcntl(fd, F_OFD_GETLK, &l) != 0) return Lock::unsupported;
    return l.l_type != F_UNLCK ? Lock::held_elsewhere : Lock::taken;
}

StagingDir::State state_of(Lock l) {
    switch (l) {
    case Lock::taken: return StagingDir::State::stale;
    case Lock::held_elsewhere: return StagingDir::State::in_use;
    case Lock::unsupported: break;
    }
    return StagingDir::State::unknown;
}

// Bytes allocated on disk under `p` (not following symlinks).
uint64_t allocated_under(const fs::path &p) {
    uint64_t total = 0;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(p, fs::directory_options::skip_permission_denied, ec), end;
         !ec && it != end; it.increment(ec)) {
        struct stat st {};
        if (::lstat(it->path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512u;
    }
    return total;
}

// Read the marker of staging directory `d.path`, fill in what it says and
// whether a running convert holds it. With `lock_it`, the returned fd holds
// the lock when the state is stale.
Fd inspect(StagingDir &d, bool lock_it) {
    d.state = StagingDir::State::foreign;
    struct stat st {};
    if (::lstat(d.path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return Fd();
    const fs::path marker = d.path / kStagingMarker;
    Fd fd(::open(marker.c_str(), (lock_it ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    if (fd.fd < 0 && !lock_it) return Fd();
    if (fd.fd < 0 && lock_it) {
        fd = Fd(::open(marker.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
        if (fd.fd < 0) return Fd();
        lock_it = false; // readable but not writable here: report only
    }
    if (fstat(fd.fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > 65536) return Fd();
    std::string text(static_cast<size_t>(st.st_size), '\0');
    if (::pread(fd.fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) return Fd();
    if (text.rfind(kMarkerMagic, 0) != 0) return Fd();
    auto field = [&](const std::string &key) {
        const auto at = text.find("\n" + key + ": ");
        if (at == std::string::npos) return std::string();
        const auto from = at + key.size() + 3;
        return text.substr(from, text.find('\n', from) - from);
    };
    d.pid = std::strtol(field("pid").c_str(), nullptr, 10);
    d.target = field("target");
    d.started = field("started");
    d.bytes = allocated_under(d.path);
    d.state = state_of(lock_it ? try_lock(fd.fd) : lock_held(fd.fd));
    if (!lock_it || d.state != StagingDir::State::stale) fd.reset();
    return fd;
}

std::string now_utc() {
    char buf[32];
    const std::time_t t = std::time(nullptr);
    struct tm tm {};
    gmtime_r(&t, &tm);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string mib(uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
    return buf;
}

// rename(2) of a directory that never replaces an existing one: 0 or errno.
int rename_dir_noreplace(const fs::path &from, const fs::path &to) {
    if (renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL) return errno;
    // No RENAME_NOREPLACE here (NFS): rename(2) still refuses a non-empty
    // directory, and the target was checked to be absent just before.
    return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

// The staging directory; removed with whatever is in it unless published.
// It appears under its name with its marker already written and locked
// (made under a temporary name, then renamed), so a visible staging
// directory without a held marker is never one a running convert uses.
class Staging {
public:
    Staging(fs::path target, bool overwrite, std::vector<FilterSpec> filters)
        : target_(std::move(target)), overwrite_(overwrite), filters_(std::move(filters)) {
        dir_ = staging_dir_for(target_);
        remove_leftover();
        std::string tmpl = dir_.string() + ".XXXXXX";
        if (!::mkdtemp(tmpl.data()))
            throw CliError(dir_.parent_path().string() + ": cannot create the staging directory for " +
                           target_.string() + ": " + errno_text(errno));
        const fs::path tmp = tmpl;
        try {
            const fs::path marker = tmp / kStagingMarker;
            marker_ = Fd(::open(marker.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
            if (marker_.fd < 0) throw CliError(marker.string() + ": cannot create: " + errno_text(errno));
            // Where the file system cannot lock, the convert still runs;
            // cleanup then cannot tell whether it does and leaves it alone.
            if (try_lock(marker_.fd) == Lock::held_elsewhere)
                throw CliError(marker.string() + ": locked by another process as soon as it was made");
            char host[256] = "";
            ::gethostname(host, sizeof host - 1);
            std::error_code ec;
            const fs::path abs = fs::absolute(target_, ec);
            const std::string text = std::string(kMarkerMagic) + " (vdkit convert builds " + target_.filename().string() +
                                     " here; `vdkit cleanup` removes it once no vdkit process holds this file)\n" +
                                     "pid: " + std::to_string(::getpid()) + "\nhost: " + host +
                                     "\ntarget: " + (ec ? target_ : abs).string() + "\nstarted: " + now_utc() + "\n";
            if (::pwrite(marker_.fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
                throw CliError(marker.string() + ": cannot write: " + errno_text(errno));
            if (const int err = rename_dir_noreplace(tmp, dir_); err != 0) {
                if (err == EEXIST || err == ENOTEMPTY)
                    throw CliError(target_.string() + ": another vdkit convert into it started at the same time (" +
                                   dir_.string() + " appeared)");
                throw CliError("cannot rename " + tmp.string() + " to " + dir_.string() + ": " + errno_text(err));
            }
        } catch (...) {
            std::error_code ec;
            fs::remove_all(tmp, ec);
            throw;
        }
    }
    ~Staging() {
        std::error_code ec;
        fs::remove_all(dir_, ec); // the marker goes with it, still locked
    }
    Staging(const Staging &) = delete;
    Staging &operator=(const Staging &) = delete;

    fs::path main() const { return dir_ / target_.filename(); }

    // Move the finished image's files beside the final name, the main file
    // last. A single-file image replaces an old one atomically (rename); a
    // multi-file one first removes the image it replaces (all its files).
    // Only regular files (or symlinks) are ever replaced: anything else that
    // appeared under one of the names meanwhile stops the publish.
    void publish(Library &lib) {
        std::vector<fs::path> others;
        for (const auto &entry : fs::directory_iterator(dir_)) {
            const fs::path name = entry.path().filename();
            if (name != target_.filename() && name != kStagingMarker) others.push_back(entry.path());
        }
        const fs::path final_dir = target_.parent_path().empty() ? fs::path(".") : target_.parent_path();
        std::error_code ec;
        refuse_special(target_);
        for (const auto &p : others) refuse_special(final_dir / p.filename());
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
    // A leftover staging directory of this target: removed when it is vdkit's
    // and no process holds it (a convert that was killed), or when it has no
    // marker at all (made by a vdkit before markers; the name is this
    // target's). One in use means another convert into this target runs now.
    void remove_leftover() {
        struct stat st {};
        if (::lstat(dir_.c_str(), &st) != 0) {
            if (errno == ENOENT) return;
            throw CliError(dir_.string() + ": cannot look at the staging directory: " + errno_text(errno));
        }
        if (!S_ISDIR(st.st_mode))
            throw CliError(dir_.string() + " is " + type_name(st.st_mode) +
                           ", not a staging directory; convert stages the new image under this name: move it away");
        StagingDir d;
        d.path = dir_;
        Fd lock = inspect(d, true);
        if (d.state == StagingDir::State::in_use)
            throw CliError(target_.string() + ": another vdkit process (pid " + std::to_string(d.pid) +
                           ") is converting into it now (it holds " + dir_.string() + ")");
        std::error_code ec;
        fs::remove_all(dir_, ec);
        if (ec) throw CliError(dir_.string() + ": cannot remove a leftover staging directory: " + ec.message());
    }
    static void refuse_special(const fs::path &p) {
        struct stat st {};
        if (::lstat(p.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
            throw CliError(p.string() + " is " + type_name(st.st_mode) +
                           " (it appeared while converting); convert never replaces one");
    }
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
    Fd marker_;
};

// Usage errors: options that cannot go together.
void check_spec(const ConvertSpec &spec) {
    auto usage = [](const std::string &m) { throw CliError(m, kExitUsage); };
    if (spec.target_is_zero && !spec.existing_target)
        usage("--target-is-zero needs -n (a target convert creates is always zero)");
    if (!spec.existing_target) return;
    const std::string why = " only applies when convert creates the target; with -n it is written in place";
    if (!spec.target_options.empty()) usage("-o (target format options)" + why);
    if (spec.preallocate) usage("--preallocate" + why + " (it is as allocated as it already is)");
    if (!spec.backing.empty()) usage("-B" + why);
    if (spec.keep_uuid) usage("--keep-uuid" + why + " (it keeps its own UUID)");
    if (spec.overwrite) usage("--overwrite does not apply with -n: the target is written in place, never replaced");
}

// The kind of thing spec.target names (following a symlink), checked
// against what the convert will do with it; returns the path to write: for
// a new image through a symlink, the file the link points to (the link is
// kept). Throws CliError naming the path and what it is.
std::string check_target(const ConvertSpec &spec) {
    const std::string &t = spec.target;
    struct stat lst {};
    if (::lstat(t.c_str(), &lst) != 0) {
        const int err = errno;
        if (err != ENOENT && err != ENOTDIR) throw CliError(t + ": cannot look at the target: " + errno_text(err));
        if (spec.existing_target)
            throw CliError(t + ": does not exist; -n writes into an existing target (a block device, a preallocated "
                               "file, an image); without -n convert creates it");
        return t;
    }
    const bool link = S_ISLNK(lst.st_mode);
    struct stat st = lst;
    std::string what = t;
    if (link) {
        std::error_code ec;
        const fs::path to = fs::read_symlink(t, ec);
        if (::stat(t.c_str(), &st) != 0)
            throw CliError(t + " is a symlink to " + to.string() + ", which cannot be reached (" + errno_text(errno) +
                           "); name the file itself");
        what = t + " (a symlink to " + fs::canonical(t, ec).string() + ")";
    }
    if (spec.existing_target) {
        if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
            throw CliError(what + " is " + type_name(st.st_mode) + "; -n writes into a regular file or a block device");
        if (S_ISBLK(st.st_mode)) {
            // O_EXCL on a block device fails while it is mounted or claimed
            // (device-mapper, RAID, another exclusive opener): never write under a file system.
            const int fd = ::open(t.c_str(), O_RDONLY | O_EXCL | O_CLOEXEC);
            if (fd < 0 && errno == EBUSY)
                throw CliError(what + " is in use (mounted, or held by device-mapper, RAID or another program); "
                                      "-n does not write into it");
            if (fd >= 0) ::close(fd);
        }
        return t;
    }
    if (!S_ISREG(st.st_mode)) {
        std::string hint;
        if (S_ISBLK(st.st_mode))
            hint = "; pass -n to write into it (it must hold at least the source's virtual size)";
        else if (S_ISDIR(st.st_mode))
            hint = "; name the image file to create in it";
        throw CliError(what + " is " + type_name(st.st_mode) + "; convert never replaces one, even with --overwrite" +
                       hint);
    }
    if (!spec.overwrite) throw CliError(t + ": already exists; pass --overwrite to replace it");
    if (!link) return t;
    std::error_code ec;
    const fs::path real = fs::canonical(t, ec);
    if (ec) throw CliError(t + ": cannot resolve the symlink: " + ec.message());
    return real.string();
}

} // namespace

std::optional<uint64_t> target_difference(const Disk &src, const Disk &dst, const std::string &target) {
    if (dst.size() == src.size()) return take(Library::compare(src, dst));
    constexpr uint64_t kChunk = 4u << 20;
    std::vector<unsigned char> a(kChunk), b(kChunk);
    for (uint64_t pos = 0; pos < src.size(); pos += kChunk) {
        throw_if_cancelled("while verifying " + target);
        const uint64_t n = std::min(kChunk, src.size() - pos);
        check(src.read(pos, a.data(), n));
        check(dst.read(pos, b.data(), n));
        if (std::memcmp(a.data(), b.data(), static_cast<size_t>(n)) != 0)
            for (uint64_t i = 0; i < n; ++i)
                if (a[i] != b[i]) return pos + i;
    }
    return std::nullopt;
}

namespace {

// The progress callback the copy sees: it also stops the copy on a signal.
ProgressFunction copy_progress(ConvertResult &result, const ProgressFunction &progress) {
    return [&result, &progress](uint64_t done, uint64_t total) {
        result.data_bytes = done;
        if (cancel_requested()) return false;
        return !progress || progress(done, total);
    };
}

// -n: the data goes straight into the existing target.
ConvertResult convert_into(Library &lib, const ConvertSpec &spec, const Disk &src, const ProgressFunction &progress) {
    OpenOptions o;
    o.format = spec.target_format;
    o.writable = true;
    o.filters = spec.target_filters;
    auto dst = take(lib.open(spec.target, o));
    if (dst->size() < src.size())
        throw CliError(spec.target + " holds " + std::to_string(dst->size()) + " bytes, less than the virtual size of " +
                       spec.source + " (" + std::to_string(src.size()) +
                       " bytes); -n needs a target at least that large (nothing was written)");
    throw_if_cancelled(spec.target + " was not written");
    ConvertResult result{src.size(), 0};
    CopyOptions copy;
    copy.progress = copy_progress(result, progress);
    copy.target_is_zero = spec.target_is_zero; // else zero ranges are written where it holds data
    copy.threads = spec.threads;
    copy.out_of_order = spec.out_of_order;
    Status copied = lib.copy(src, *dst, copy);
    if (copied && spec.verify) {
        auto diff = target_difference(src, *dst, spec.target);
        if (diff)
            copied = Status(VDKIT_E_CORRUPT, spec.target + ": verification failed: it reads differently from " +
                                                 spec.source + " at offset " + std::to_string(*diff));
    }
    Status closed = dst->close();
    if (copied) copied = closed;
    if (!copied) {
        const std::string partial = spec.target + " was partly written (-n writes in place)";
        throw_if_cancelled(partial);
        throw CliError((copied.message().empty() ? copied.to_string() : copied.message()) + "; " + partial);
    }
    return result;
}

} // namespace

ConvertResult convert_image(Library &lib, const ConvertSpec &spec_in, const ProgressFunction &progress) {
    check_spec(spec_in);
    ConvertSpec spec = spec_in;
    std::error_code ec;
    if (fs::equivalent(spec.source, spec.target, ec))
        throw CliError("source and target are the same file (" + spec.target + ")", kExitUsage);
    // Before anything is opened: what the target is decides what may be done to it.
    const std::string final_target = is_url(spec.target) ? spec.target : check_target(spec);
    OpenOptions oo;
    oo.format = spec.source_format;
    oo.filters = spec.source_filters;
    oo.force_share = spec.source_force_share;
    auto src = take(lib.open(spec.source, oo));
    if (!spec.source_cache.empty()) {
        CacheOptions cache;
        cache.format = spec.cache_format;
        check(src->attach_cache(spec.source_cache, cache));
    }
    if (spec.existing_target) return convert_into(lib, spec, *src, progress);
    throw_if_cancelled(spec.target + " was not written");

    Staging staging(final_target, spec.overwrite, spec.target_filters);
    CreateOptions co;
    co.format = spec.target_format;
    co.size = src->size();
    co.options = spec.target_options;
    co.fixed = spec.preallocate;
    co.final_location = final_target;
    co.filters = spec.target_filters;
    if (!spec.backing.empty()) {
        fs::path backing = spec.backing;
        if (backing.is_relative()) backing = fs::path(spec.target).parent_path() / backing;
        co.parent = backing.string();
        co.parent_format = spec.backing_format;
    }
    if (spec.keep_uuid) co.uuid = take(src->image_info(src->image_count() - 1)).uuid;
    auto dst = take(lib.create_image(staging.main().string(), co));
    const std::string not_written = spec.target + " was not written (its staging directory is removed)";
    throw_if_cancelled(not_written);

    CopyOptions copy;
    ConvertResult result{src->size(), 0};
    copy.progress = copy_progress(result, progress);
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
        throw_if_cancelled(not_written);
        check(copied);
    }
    check(dst->close());
    throw_if_cancelled(not_written);
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
    throw_if_cancelled(not_written);
    staging.publish(lib);
    return result;
}

// ---- stale staging directories --------------------------------------------------------

std::vector<StagingDir> find_staging_dirs(const fs::path &dir) {
    std::vector<StagingDir> out;
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    if (ec) throw CliError(dir.string() + ": cannot list the directory: " + ec.message());
    for (fs::directory_iterator end; it != end; it.increment(ec)) {
        if (ec) throw CliError(dir.string() + ": cannot list the directory: " + ec.message());
        const std::string name = it->path().filename().string();
        // ".NAME.vdkit-partial", or ".NAME.vdkit-partial.XXXXXX" while it is made.
        if (name.size() < 2 || name[0] != '.' || name.find(".vdkit-partial", 1) == std::string::npos) continue;
        if (!it->is_directory(ec) || it->is_symlink(ec)) continue;
        StagingDir d;
        d.path = it->path();
        inspect(d, false);
        out.push_back(std::move(d));
    }
    std::sort(out.begin(), out.end(), [](const StagingDir &a, const StagingDir &b) { return a.path < b.path; });
    return out;
}

StagingDir::State remove_stale_staging(StagingDir &d) {
    Fd lock = inspect(d, true);
    if (d.state != StagingDir::State::stale) return d.state;
    if (lock.fd < 0)
        throw CliError(d.path.string() + ": cannot lock its marker to remove it (no write permission?)");
    std::error_code ec;
    fs::remove_all(d.path, ec); // while holding the marker's lock
    if (ec) throw CliError(d.path.string() + ": cannot remove: " + ec.message());
    d.state = StagingDir::State::removed;
    return d.state;
}

void note_stale_staging(const fs::path &dir) {
    std::vector<StagingDir> found;
    try {
        found = find_staging_dirs(dir.empty() ? fs::path(".") : dir);
    } catch (const CliError &) {
        return; // the convert itself reports what is wrong with the directory
    }
    size_t n = 0;
    uint64_t bytes = 0;
    for (const auto &d : found)
        if (d.state == StagingDir::State::stale) ++n, bytes += d.bytes;
    if (n == 0) return;
    const std::string where = dir.empty() ? "." : dir.string();
    std::cerr << "vdkit: note: " << where << " holds " << n << " staging director" << (n == 1 ? "y" : "ies")
              << " left by interrupted converts (" << mib(bytes) << "); `vdkit cleanup --remove " << where
              << "` removes them\n";
}

namespace {

class CleanupCommand : public Command {
    std::vector<std::string> dirs_;
    bool remove_ = false;
    std::string output_;
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand(
            "cleanup", "List (and with --remove delete) staging directories interrupted converts left in DIRs");
        sub->add_flag("--remove", remove_,
                      "Remove the stale ones (vdkit's marker inside, no running vdkit holding it)");
        add_output_option(sub, output_);
        sub->add_option("dirs", dirs_, "Directories to look in (where the converts' targets were)")->required();
        return sub;
    }
    int run() override {
        nlohmann::ordered_json all = nlohmann::ordered_json::array();
        int rc = kExitOk;
        size_t stale = 0, removed = 0;
        uint64_t stale_bytes = 0, removed_bytes = 0;
        for (const auto &dir : dirs_) {
            for (auto &d : find_staging_dirs(dir)) {
                if (remove_ && d.state == StagingDir::State::stale) {
                    try {
                        remove_stale_staging(d);
                    } catch (const CliError &e) {
                        std::cerr << "vdkit: " << e.what() << "\n";
                        rc = kExitError;
                    }
                }
                if (d.state == StagingDir::State::stale) ++stale, stale_bytes += d.bytes;
                if (d.state == StagingDir::State::removed) ++removed, removed_bytes += d.bytes;
                if (output_ == "json") {
                    nlohmann::ordered_json j = {{"path", d.path.string()}, {"state", to_string(d.state)}};
                    if (d.state != StagingDir::State::foreign) {
                        j["pid"] = d.pid;
                        j["target"] = d.target;
                        j["started"] = d.started;
                        j["bytes"] = d.bytes;
                    }
                    all.push_back(j);
                    continue;
                }
                std::cout << d.path.string() << ": ";
                switch (d.state) {
                case StagingDir::State::stale:
                    std::cout << "stale, " << mib(d.bytes) << " (a convert into " << d.target << " by pid " << d.pid
                              << " started " << d.started << " and was interrupted)";
                    break;
                case StagingDir::State::removed:
                    std::cout << "removed, " << mib(d.bytes) << " (left by a convert into " << d.target << ")";
                    break;
                case StagingDir::State::in_use:
                    std::cout << "in use by pid " << d.pid << " (converting into " << d.target << "); left alone";
                    break;
                case StagingDir::State::foreign:
                    std::cout << "no vdkit marker (not made by this vdkit, or an older one); left alone";
                    break;
                case StagingDir::State::unknown:
                    std::cout << "made by pid " << d.pid << " converting into " << d.target
                              << ", but its file system cannot lock files, so whether that convert still runs "
                                 "cannot be told; left alone";
                    break;
                }
                std::cout << "\n";
            }
        }
        if (output_ == "json") {
            std::cout << all.dump(2) << "\n";
        } else if (!globals().quiet) {
            if (remove_) std::cout << "removed " << removed << " stale staging director" << (removed == 1 ? "y" : "ies")
                                   << ", " << mib(removed_bytes) << "\n";
            if (!remove_ || stale)
                std::cout << stale << " stale staging director" << (stale == 1 ? "y" : "ies") << ", " << mib(stale_bytes)
                          << (stale && !remove_ ? "; pass --remove to remove them" : "") << "\n";
        }
        return rc;
    }
};

} // namespace

void add_cleanup_command(std::vector<std::unique_ptr<Command>> &commands) {
    commands.push_back(std::make_unique<CleanupCommand>());
}

} // namespace vdkit::cli
