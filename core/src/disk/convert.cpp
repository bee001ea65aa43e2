// Library::convert — one conversion, the whole job (qemu-img convert,
// VixDiskLib_Clone): check what the target is, open the source, stage the
// new image (disk/staging.hpp), copy it (Library::copy), verify it, publish
// it under its final name without replacing anything that appeared
// meanwhile (the transport's no-replace rename), and remove the staging on
// failure or cancel. With ConvertOptions::existing_target (-n) the data
// goes straight into an existing target instead. `vdkit convert`, every
// `vdkit batch` job and vdkit_convert (C API) run this.
//
// Only a regular file is ever replaced: a target that is a block or
// character device, a fifo, a socket or a directory (or a symlink to one)
// is refused by name, whatever `overwrite` says; existing_target writes into
// such a device, or into an existing file or image, in place.
#include "disk/containers.hpp"
#include "disk/disk_state.hpp"
#include "disk/open.hpp"
#include "disk/staging.hpp"
#include "host/host.hpp"
#include "io/stores.hpp"
#include "util/util.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <system_error>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace vdkit {
namespace {

using staging::OpenFiles;

bool is_url(const std::string &p) {
    return p.find("://") != std::string::npos;
}

std::string errno_text(int err) {
    return std::strerror(err);
}

// The files (regular files, block devices) an open disk holds, by identity:
// every image's main file and every file its plugin opened through the host
// (extents, mapped devices), as Image::files recorded them where they were
// opened. Only this disk's own opens count: files other threads open and
// close meanwhile (batch jobs) never do, and a descriptor number reused by
// another file cannot be taken for one of them (what a scan of the
// process's descriptors did). Looked up by path now, as the target is: a
// URL (another transport's object) has no local identity and is left out.
OpenFiles files_of(const Disk &disk) {
    OpenFiles out;
    for (const auto &img : DiskAccess::state(disk).images)
        for (const std::string &location : img->files()) {
            if (is_url(location)) continue;
            struct stat st {};
            if (::stat(location.c_str(), &st) == 0 && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
                out.emplace(std::make_pair(st.st_dev, st.st_ino), location);
        }
    return out;
}

// Refuse to replace a file another process holds open as an image (QEMU or
// vdkit: the QEMU-compatible image locks say): the VM would go on writing
// into the replaced file, and all it writes would be lost. Opening it as raw
// for writing takes the writer's lock, which conflicts with any holder;
// nothing is written. Only regular files are checked (the rest is refused
// before this, or is a symlink, which is replaced itself).
Status refuse_in_use(const Library &lib, const fs::path &file) {
    struct stat st {};
    if (::lstat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return Status::ok();
    OpenOptions probe;
    probe.format = "raw";
    probe.writable = true;
    auto held = lib.open(file.string(), probe);
    if (!held && held.status().code() == VDKIT_E_BUSY)
        return Status(VDKIT_E_BUSY, held.status().message() + " (convert --overwrite never replaces an image in use)");
    return Status::ok();
}

// Refuse a target that is a file of the source's chain, or an existing
// image one of whose files is: writing into it (-n) or replacing it would
// destroy what the convert reads. Returns the existing target image's files.
// With `in_place` (-n) the target is opened as `format`, as it will be
// written; else the image being replaced is probed first (it may be of
// another format than the new one).
Result<OpenFiles> refuse_source_files(const Library &lib, const std::string &target, const std::string &format,
                                      bool in_place, const OpenFiles &chain) {
    struct stat st {};
    if (::stat(target.c_str(), &st) != 0) return OpenFiles();
    if (auto hit = chain.find({st.st_dev, st.st_ino}); hit != chain.end())
        return Status(VDKIT_E_INVALID_ARGUMENT, target + " is part of the source's chain (" + hit->second +
                                                    "); convert never writes into or replaces an image it reads from");
    if (!S_ISREG(st.st_mode)) return OpenFiles();
    // The files opening the image opens (recorded by the open itself, so a
    // batch job reading the same source meanwhile adds none).
    OpenOptions o;
    o.format = in_place ? format : std::string();
    o.lock = false;
    o.follow_parents = false;
    auto old = lib.open(target, o);
    if (!old && !format.empty()) {
        o.format = in_place ? std::string() : format;
        old = lib.open(target, o);
    }
    if (!old) return OpenFiles(); // not an image: only the file itself
    const OpenFiles mine = files_of(**old);
    (*old)->close().ignore();
    for (const auto &f : mine)
        if (auto hit = chain.find(f.first); hit != chain.end())
            return Status(VDKIT_E_INVALID_ARGUMENT, target + " uses " + f.second + ", a file of the source's chain (" +
                                                        hit->second +
                                                        "); convert never writes into or replaces an "
                                                        "image it reads from");
    return mine;
}

// The kind of thing `t` names (following a symlink), checked against what
// the convert will do with it; returns the path to write: for a new image
// through a symlink, the file the link points to (the link is kept).
Result<std::string> check_target(const std::string &t, const ConvertOptions &o) {
    if (t.empty())
        return Status(VDKIT_E_INVALID_ARGUMENT, "the target is an empty name; name the image file to create");
    if (t.back() == '/')
        return Status(VDKIT_E_INVALID_ARGUMENT, t +
                                                    ": the target ends in '/', naming a directory; name the image "
                                                    "file to create (e.g. " +
                                                    t + "disk.img)");
    struct stat lst {};
    if (::lstat(t.c_str(), &lst) != 0) {
        const int err = errno;
        if (err != ENOENT && err != ENOTDIR)
            return Status(VDKIT_E_IO, t + ": cannot look at the target: " + errno_text(err));
        if (o.existing_target)
            return Status(VDKIT_E_NOT_FOUND, t + ": does not exist; -n writes into an existing target (a block "
                                                 "device, a preallocated file, an image); without -n convert "
                                                 "creates it");
        const fs::path dir = fs::path(t).parent_path();
        struct stat dst {};
        if (!dir.empty() && ::stat(dir.c_str(), &dst) != 0)
            return Status(VDKIT_E_NOT_FOUND, t + ": the directory " + dir.string() + " does not exist (" +
                                                 errno_text(errno) +
                                                 "); convert creates the image file, not its "
                                                 "directory");
        if (!dir.empty() && !S_ISDIR(dst.st_mode))
            return Status(VDKIT_E_NOT_FOUND,
                          t + ": " + dir.string() + " is " + file_type_name(dst.st_mode) + ", not a directory");
        return t;
    }
    const bool link = S_ISLNK(lst.st_mode);
    struct stat st = lst;
    std::string what = t;
    if (link) {
        std::error_code ec;
        const fs::path to = fs::read_symlink(t, ec);
        if (::stat(t.c_str(), &st) != 0)
            return Status(VDKIT_E_NOT_FOUND, t + " is a symlink to " + to.string() + ", which cannot be reached (" +
                                                 errno_text(errno) + "); name the file itself");
        what = t + " (a symlink to " + fs::canonical(t, ec).string() + ")";
    }
    if (o.existing_target) {
        if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
            return Status(VDKIT_E_PERMISSION, what + " is " + file_type_name(st.st_mode) +
                                                  "; -n writes into a regular file or a block device");
        if (S_ISBLK(st.st_mode)) {
            // O_EXCL on a block device fails while it is mounted or claimed
            // (device-mapper, RAID, another exclusive opener): never write under a file system.
            const int fd = ::open(t.c_str(), O_RDONLY | O_EXCL | O_CLOEXEC);
            if (fd < 0 && errno == EBUSY)
                return Status(VDKIT_E_BUSY, what + " is in use (mounted, or held by device-mapper, RAID or another "
                                                   "program); -n does not write into it");
            if (fd >= 0) ::close(fd);
        }
        // A read-only device (losetup -r, a write-protected disk) or file:
        // refused before anything is opened or written.
        const int wfd = ::open(t.c_str(), O_WRONLY | O_CLOEXEC);
        if (wfd < 0)
            return Status(VDKIT_E_READ_ONLY, what + " cannot be opened for writing (" + errno_text(errno) +
                                                 "); -n writes into it in place (nothing was written)");
        int ro = 0;
        const bool read_only = S_ISBLK(st.st_mode) && ::ioctl(wfd, BLKROGET, &ro) == 0 && ro;
        ::close(wfd);
        if (read_only)
            return Status(VDKIT_E_READ_ONLY,
                          what + " is a read-only block device; -n writes into it in place (nothing was written)");
        return t;
    }
    if (!S_ISREG(st.st_mode)) {
        std::string hint;
        if (S_ISBLK(st.st_mode))
            hint = "; pass -n to write into it (it must hold at least the source's virtual size)";
        else if (S_ISDIR(st.st_mode))
            hint = "; name the image file to create in it";
        return Status(VDKIT_E_PERMISSION, what + " is " + file_type_name(st.st_mode) +
                                              "; convert never replaces one, even with --overwrite" + hint);
    }
    if (!o.overwrite) return Status(VDKIT_E_EXISTS, t + ": already exists; pass --overwrite to replace it");
    if (!link) return t;
    std::error_code ec;
    const fs::path real = fs::canonical(t, ec);
    if (ec) return Status(VDKIT_E_IO, t + ": cannot resolve the symlink: " + ec.message());
    return real.string();
}

// The foreign container (or VDI/VMDK) whose signature the regular file at
// `path` carries, if any; unreadable: none.
std::optional<containers::Match> container_of_file(const std::string &path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    struct stat st {};
    std::optional<containers::Match> out;
    if (::fstat(fd, &st) == 0) {
        auto read = [fd](uint64_t offset, void *buf, size_t len) -> Status {
            if (::pread(fd, buf, len, static_cast<off_t>(offset)) != static_cast<ssize_t>(len))
                return Status(VDKIT_E_IO, "short read");
            return Status::ok();
        };
        auto found = containers::detect(static_cast<uint64_t>(st.st_size), read);
        if (found) out = *found;
    }
    ::close(fd);
    return out;
}

// convert -n into an existing regular file: one that is an image of another
// format than the target format (by the probe, or by a foreign container's
// signature) is refused naming both; a raw or unrecognised file (a
// preallocated one) and a device are written into as they are.
Status existing_format_problem(const Library &lib, const std::string &target, const std::string &format) {
    struct stat st {};
    if (::stat(target.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return Status::ok();
    std::string is;
    if (auto probed = lib.probe(target); probed) {
        if (util::iequals(*probed, format) || util::iequals(*probed, "raw")) return Status::ok();
        is = "a " + *probed + " image (its probe)";
    } else {
        const auto found = container_of_file(target);
        if (!found) return Status::ok();
        const containers::Container &c = *found->container;
        if (std::any_of(c.aliases.begin(), c.aliases.end(),
                        [&](std::string_view a) { return util::iequals(a, format); }))
            return Status::ok();
        is = "a " + std::string(c.title) + " image (" + found->evidence + ")";
    }
    return Status(VDKIT_E_INVALID_ARGUMENT,
                  target + " is " + is + ", but -n -O " + format + " would write " + format +
                      " data into it, destroying it; nothing was written (name a target of the -O format, a raw "
                      "file or a device, or convert without -n into a new file)");
}

// The naming rule (Library::written_name_problem) for the file convert
// creates, and for a source cache it would create.
Status name_problems(const Library &lib, const std::string &target, const ConvertOptions &o) {
    if (!o.existing_target)
        if (const std::string problem = lib.written_name_problem(target, o.target_format); !problem.empty())
            return Status(VDKIT_E_INVALID_ARGUMENT, problem + "; nothing was written");
    if (std::error_code ec; !o.source_cache.empty() && !fs::exists(o.source_cache, ec))
        if (const std::string problem = lib.new_name_problem(o.source_cache, o.cache_format); !problem.empty())
            return Status(VDKIT_E_INVALID_ARGUMENT, "the source cache " + problem + " (cache_format)");
    return Status::ok();
}

// The image cannot be a chain's parent: the probe refused it (neutral
// wording; the advice to open it as raw does not help a parent).
Status as_parent(const Status &st) {
    std::string msg = st.message();
    const size_t at = msg.find("; open it with format 'raw'");
    if (at == std::string::npos) return st;
    msg.erase(at);
    msg += "; it cannot be a chain's parent (a parent is probed each time the chain opens, and no option names "
           "its format then)";
    return Status(st.code(), msg);
}

// The progress of one convert: the copy's numbers, and the checkpoints
// between the job's steps where the callback may cancel too.
class Progress {
public:
    explicit Progress(const ProgressFunction &f) : f_(f) {}
    // For CopyOptions::progress.
    ProgressFunction for_copy() {
        return [this](uint64_t done, uint64_t total) {
            std::lock_guard lock(mu_);
            done_ = done, total_ = total;
            return !f_ || f_(done, total);
        };
    }
    // CANCELLED saying `what` when the callback asks to stop here.
    Status checkpoint(const std::string &what) {
        std::lock_guard lock(mu_);
        if (f_ && !f_(done_, total_)) return Status(VDKIT_E_CANCELLED, what);
        return Status::ok();
    }
    // The same, reporting other numbers (a verify pass).
    Status checkpoint(const std::string &what, uint64_t done, uint64_t total) {
        std::lock_guard lock(mu_);
        if (f_ && !f_(done, total)) return Status(VDKIT_E_CANCELLED, what);
        return Status::ok();
    }
    uint64_t done() {
        std::lock_guard lock(mu_);
        return done_;
    }

private:
    const ProgressFunction &f_;
    std::mutex mu_;
    uint64_t done_ = 0, total_ = 0;
};

// For verifying a -n target: the first offset below src's size where dst
// reads differently (a larger dst's excess is not compared), or nullopt.
// `between` is asked before each piece, with its offset (a cancel point).
Result<std::optional<uint64_t>> target_difference(const Disk &src, const Disk &dst,
                                                  const std::function<Status(uint64_t)> &between) {
    if (dst.size() == src.size()) return Library::compare(src, dst);
    constexpr uint64_t kChunk = 4u << 20;
    std::vector<unsigned char> a(kChunk), b(kChunk);
    for (uint64_t pos = 0; pos < src.size(); pos += kChunk) {
        VDKIT_TRY(between(pos));
        const uint64_t n = std::min(kChunk, src.size() - pos);
        VDKIT_TRY(src.read(pos, a.data(), n));
        VDKIT_TRY(dst.read(pos, b.data(), n));
        if (std::memcmp(a.data(), b.data(), static_cast<size_t>(n)) != 0)
            for (uint64_t i = 0; i < n; ++i)
                if (a[i] != b[i]) return std::optional<uint64_t>(pos + i);
    }
    return std::optional<uint64_t>();
}

// -n: the data goes straight into the existing target.
Result<ConvertResult> convert_into(const Library &lib, const std::string &source, const std::string &target,
                                   const ConvertOptions &o, const Disk &src, Progress &progress) {
    OpenOptions oo;
    oo.format = o.target_format;
    oo.writable = true;
    oo.filters = o.target_filters;
    VDKIT_ASSIGN_OR_RETURN(auto dst, lib.open(target, oo));
    // A streamOptimized VMDK's grains are compressed and written once, in
    // order, when it is made (VMDK spec, "Stream-Optimized Compressed
    // Sparse Extents"): there is nothing to write in place.
    if (auto info = dst->image_info(dst->image_count() - 1);
        info && (info->sequential || info->subformat == "streamOptimized"))
        return Status(VDKIT_E_NOT_SUPPORTED,
                      target + " is a " + (info->subformat.empty() ? info->format : info->subformat) +
                          " image, which takes writes only in order as it is made: it cannot be written in place "
                          "(-n); convert without -n creates a new one (nothing was written)");
    if (dst->size() < src.size())
        return Status(VDKIT_E_OUT_OF_RANGE, target + " holds " + std::to_string(dst->size()) +
                                                " bytes, less than the virtual size of " + source + " (" +
                                                std::to_string(src.size()) +
                                                " bytes); -n needs a target at least that large (nothing was written)");
    VDKIT_TRY(progress.checkpoint(target + " was not written"));
    CopyOptions copy;
    copy.progress = progress.for_copy();
    copy.target_is_zero = o.target_is_zero; // else zero ranges are written where it holds data
    copy.threads = o.threads;
    copy.out_of_order = o.out_of_order;
    bool wrote = false;
    copy.wrote = &wrote;
    Status copied = lib.copy(src, *dst, copy);
    if (copied && o.verify) {
        auto diff =
            target_difference(src, *dst, [&](uint64_t) { return progress.checkpoint("while verifying " + target); });
        if (!diff)
            copied = diff.status();
        else if (*diff)
            copied = Status(VDKIT_E_CORRUPT, target + ": verification failed: it reads differently from " + source +
                                                 " at offset " + std::to_string(**diff));
    }
    Status closed = dst->close();
    if (copied) copied = closed;
    if (!copied) {
        // Only a write that happened makes the target partly written (a
        // target that refuses its first write, e.g. a damaged map, is not).
        // A failure that is a refusal (damaged, read-only) before any write
        // succeeded wrote nothing; other failures may have written part of
        // the request that failed.
        const auto code = copied.code();
        const bool refused = code == VDKIT_E_CORRUPT || code == VDKIT_E_READ_ONLY || code == VDKIT_E_PERMISSION ||
                             code == VDKIT_E_NOT_SUPPORTED || code == VDKIT_E_CANCELLED;
        const std::string partial = wrote     ? target + " was partly written (-n writes in place)"
                                    : refused ? "nothing was written to " + target
                                              : target + " may have been partly written (-n writes in place)";
        if (code == VDKIT_E_CANCELLED) return Status(VDKIT_E_CANCELLED, partial);
        return Status(code, (copied.message().empty() ? copied.to_string() : copied.message()) + "; " + partial);
    }
    return ConvertResult{src.size(), progress.done(), {}};
}

} // namespace

inline namespace v1 {

Result<std::optional<uint64_t>> Library::compare_prefix(const Disk &a, const Disk &b,
                                                        const ProgressFunction &progress) {
    if (b.size() < a.size())
        return Status(VDKIT_E_OUT_OF_RANGE, "the second disk (" + std::to_string(b.size()) +
                                                " bytes) is smaller than the first (" + std::to_string(a.size()) + ")");
    Progress checks(progress);
    return target_difference(a, b,
                             [&](uint64_t pos) { return checks.checkpoint("comparing cancelled", pos, a.size()); });
}

std::vector<ConvertOptionProblem>
Library::convert_option_problems(const ConvertOptions &o,
                                 const std::function<std::string(std::string_view member)> &spell) {
    // vdkit convert's flags, the default spelling.
    auto flag = [](std::string_view m) -> std::string {
        if (m == "target_is_zero") return "--target-is-zero";
        if (m == "existing_target") return "-n";
        if (m == "target_options") return "-o (target format options)";
        if (m == "preallocate") return "--preallocate";
        if (m == "backing") return "-B";
        if (m == "keep_uuid") return "--keep-uuid";
        if (m == "overwrite") return "--overwrite";
        return std::string(m);
    };
    auto name = [&](std::string_view m) { return spell ? spell(m) : flag(m); };
    std::vector<ConvertOptionProblem> out;
    auto problem = [&out](std::string_view member, std::string message) {
        out.push_back(ConvertOptionProblem{std::string(member), std::move(message)});
    };
    if (o.target_format.empty()) problem("target_format", "convert needs a target format");
    if (o.threads > 64)
        problem("threads", "copy threads must be 1..64 (0: automatic), not " + std::to_string(o.threads));
    if (o.target_is_zero && !o.existing_target)
        problem("target_is_zero", name("target_is_zero") + " needs " + name("existing_target") +
                                      " (a target convert creates is always zero)");
    if (!o.existing_target) return out;
    const std::string why =
        " only applies when convert creates the target; with " + name("existing_target") + " it is written in place";
    if (!o.target_options.empty()) problem("target_options", name("target_options") + why);
    if (o.preallocate) problem("preallocate", name("preallocate") + why + " (it is as allocated as it already is)");
    if (!o.backing.empty()) problem("backing", name("backing") + why);
    if (o.keep_uuid) problem("keep_uuid", name("keep_uuid") + why + " (it keeps its own UUID)");
    if (o.overwrite)
        problem("overwrite", name("overwrite") + " does not apply with " + name("existing_target") +
                                 ": the target is written in place, never replaced");
    return out;
}

Status Library::check_convert_options(const ConvertOptions &o) {
    const auto problems = convert_option_problems(o);
    if (problems.empty()) return Status::ok();
    return Status(VDKIT_E_INVALID_ARGUMENT, problems.front().message);
}

Status Library::check_convert(const std::string &source, const std::string &target, const ConvertOptions &o) const {
    VDKIT_TRY(check_convert_options(o));
    std::error_code ec;
    if (fs::equivalent(source, target, ec))
        return Status(VDKIT_E_INVALID_ARGUMENT, "source and target are the same file (" + target + ")");
    VDKIT_TRY(name_problems(*this, target, o));
    if (is_url(target)) return Status::ok();
    // Other refusals of the target (missing, busy, existing without
    // overwrite...) are the job's failures, which convert reports.
    auto final_target = check_target(target, o);
    if (!final_target)
        return final_target.status().code() == VDKIT_E_INVALID_ARGUMENT ? final_target.status() : Status::ok();
    if (o.existing_target) VDKIT_TRY(existing_format_problem(*this, target, o.target_format));
    OpenOptions oo;
    oo.format = o.source_format;
    oo.filters = o.source_filters;
    oo.force_share = true; // only to learn its files: never disturbs, or waits for, a writer
    oo.lock = false;
    auto opened = open(source, oo);
    if (!opened) return Status::ok(); // convert reports it, as the job's failure
    const OpenFiles source_files = files_of(**opened);
    auto refused = refuse_source_files(*this, *final_target, o.target_format, o.existing_target, source_files);
    (*opened)->close().ignore();
    if (!refused && refused.status().code() == VDKIT_E_INVALID_ARGUMENT) return refused.status();
    return Status::ok();
}

Result<ConvertResult> Library::convert(const std::string &source, const std::string &target,
                                       const ConvertOptions &o) const {
    VDKIT_TRY(check_convert_options(o));
    std::error_code ec;
    if (fs::equivalent(source, target, ec))
        return Status(VDKIT_E_INVALID_ARGUMENT, "source and target are the same file (" + target + ")");
    VDKIT_TRY(name_problems(*this, target, o));
    Progress progress(o.progress);
    // Before anything is opened: what the target is decides what may be done to it.
    std::string final_target = target;
    if (!is_url(target)) {
        VDKIT_ASSIGN_OR_RETURN(final_target, check_target(target, o));
    }
    if (o.existing_target && !is_url(target)) VDKIT_TRY(existing_format_problem(*this, target, o.target_format));
    // A new target is built in a staging directory beside it and moved in:
    // a URL (an NBD export, an object) has no such directory beside it.
    if (!o.existing_target && is_url(target))
        return Status(VDKIT_E_NOT_SUPPORTED, target + " is a URL: convert builds a new image in a local staging "
                                                      "directory and moves it into place, which a URL target has not; "
                                                      "to write into an existing remote disk (an NBD export) use "
                                                      "convert -n (nothing was written)");
    OpenOptions oo;
    oo.format = o.source_format;
    oo.filters = o.source_filters;
    oo.force_share = o.source_force_share;
    auto opened = open(source, oo);
    if (!opened) return opened.status();
    std::unique_ptr<Disk> src = std::move(opened).value();
    const OpenFiles source_files = files_of(*src);
    OpenFiles old_files;
    if (!is_url(target)) {
        VDKIT_ASSIGN_OR_RETURN(
            old_files, refuse_source_files(*this, final_target, o.target_format, o.existing_target, source_files));
    }
    if (o.overwrite && !is_url(target))
        VDKIT_TRY(refuse_in_use(*this, final_target)); // before any work; again at publish
    if (!o.source_cache.empty()) {
        CacheOptions cache;
        cache.format = o.cache_format;
        VDKIT_TRY(src->attach_cache(o.source_cache, cache));
    }
    if (o.existing_target) return convert_into(*this, source, target, o, *src, progress);
    VDKIT_TRY(progress.checkpoint(target + " was not written"));

    VDKIT_ASSIGN_OR_RETURN(std::unique_ptr<staging::Dir> staged, staging::Dir::make(final_target));
    CreateOptions co;
    co.format = o.target_format;
    co.size = src->size();
    co.options = o.target_options;
    co.fixed = o.preallocate;
    co.filters = o.target_filters;
    if (!o.backing.empty()) {
        fs::path backing = o.backing;
        if (backing.is_relative()) backing = fs::path(target).parent_path() / backing;
        co.parent = backing.string();
        co.parent_format = o.backing_format;
    }
    if (o.keep_uuid) {
        VDKIT_ASSIGN_OR_RETURN(ImageInfo top, src->image_info(src->image_count() - 1));
        co.uuid = top.uuid;
    }
    auto created = create_disk(*host_, staged->main().string(), co, final_target);
    if (!created) return as_parent(created.status());
    std::unique_ptr<Disk> dst = std::move(created).value();
    const std::string not_written = target + " was not written (its staging directory is removed)";
    if (Status st = progress.checkpoint(not_written); !st) {
        dst->close_and_delete().ignore();
        return st;
    }

    CopyOptions plan;
    plan.progress = progress.for_copy();
    plan.target_is_zero = true; // a new image, sparse or preallocated with zeros
    plan.threads = o.threads;
    plan.out_of_order = o.out_of_order;
    if (!o.backing.empty()) {
        auto same = common_image(*src, *dst);
        if (same && *same)
            plan.same_up_to = **same;
        else
            plan.target_is_zero = false; // the backing image may show data anywhere
    }
    Status copied = copy(*src, *dst, plan);
    if (copied && o.verify && !o.backing.empty()) {
        // The staged image names its backing from its final place, so it is
        // verified through the open chain rather than reopened.
        auto diff = compare(*src, *dst);
        if (!diff)
            copied = diff.status();
        else if (*diff)
            copied = Status(VDKIT_E_CORRUPT, target + ": verification failed: the new image reads differently from " +
                                                 source + " at offset " + std::to_string(**diff));
    }
    if (!copied) {
        dst->close_and_delete().ignore();
        if (copied.code() == VDKIT_E_CANCELLED) return Status(VDKIT_E_CANCELLED, not_written);
        return copied;
    }
    VDKIT_TRY(dst->close());
    VDKIT_TRY(progress.checkpoint(not_written));
    if (o.verify && o.backing.empty()) {
        OpenOptions ro;
        ro.format = o.target_format;
        ro.filters = o.target_filters;
        VDKIT_ASSIGN_OR_RETURN(auto back, open(staged->main().string(), ro));
        VDKIT_ASSIGN_OR_RETURN(auto diff, compare(*src, *back));
        if (diff)
            return Status(VDKIT_E_CORRUPT, target + ": verification failed: the new image reads differently from " +
                                               source + " at offset " + std::to_string(*diff));
    }
    VDKIT_TRY(progress.checkpoint(not_written));
    VDKIT_TRY(staged->publish(
        o.overwrite, source_files, [this](const fs::path &p) { return refuse_in_use(*this, p); },
        [this](const std::string &from, const std::string &to) { return host_->stores().rename_location(from, to); }));
    ConvertResult result{src->size(), progress.done(), {}};
    // The replaced image's files that the new one did not replace (another
    // name: an old descriptor's extents) are left where they are.
    for (const auto &[id, path] : old_files) {
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0 && st.st_dev == id.first && st.st_ino == id.second)
            result.left_in_place.push_back(path);
    }
    return result;
}

} // namespace v1
} // namespace vdkit
