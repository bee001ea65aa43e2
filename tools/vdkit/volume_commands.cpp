// vdkit volumes, mount and umount (docs/cli.md): VixMntapi's volume listing
// and mounting over any disk vdkit opens.
//
// mount: a daemon process (forked before any library thread exists) opens
// the image, serves the chosen volume's bytes as one file through FUSE
// (fuse.cpp) and stays until umount. The command then mounts the filesystem
// on that file: as root through a loop device and mount(8); otherwise with a
// FUSE filesystem driver (fuse2fs for ext2/3/4, ntfs-3g for NTFS). What was
// mounted is recorded in a state file (runtime directory, keyed by the
// mount directory) that umount reads.
#include "commands.hpp"
#include "fuse.hpp"

#include "vdkit/volumes.hpp"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace vdkit::cli {
namespace {

// Exit codes of volumes (docs/cli.md): 0 listed, 3 listed but a table is
// damaged (error findings); mount/umount: 4 busy or already mounted.
constexpr int kExitDamaged = 3;
constexpr int kExitBusy = 4;

std::string size_text(uint64_t n) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(n);
    int u = 0;
    while (v >= 1024 && u < 4)
        v /= 1024, ++u;
    std::ostringstream o;
    o.precision(u ? 3 : 0);
    o << std::fixed << v << " " << units[u];
    std::string s = o.str();
    return s;
}

std::string type_text(const Volume &v) {
    if (!v.type_guid.empty()) return v.type_guid + (v.type_name.empty() ? "" : " (" + v.type_name + ")");
    if (v.kind == VolumeKind::primary || v.kind == VolumeKind::extended || v.kind == VolumeKind::logical) {
        char b[8];
        std::snprintf(b, sizeof b, "0x%02x", v.mbr_type);
        return std::string(b) + (v.type_name.empty() ? "" : " (" + v.type_name + ")");
    }
    return v.type_name;
}

json to_json(const Volume &v) {
    json j = {{"index", v.index}, {"kind", to_string(v.kind)}, {"start", v.offset}, {"size", v.length}};
    if (v.parent) j["parent"] = v.parent;
    if (v.kind == VolumeKind::primary || v.kind == VolumeKind::extended || v.kind == VolumeKind::logical) {
        j["mbr-type"] = v.mbr_type;
        j["bootable"] = v.bootable;
    }
    if (!v.type_guid.empty()) j["type-guid"] = v.type_guid;
    if (!v.type_name.empty()) j["type-name"] = v.type_name;
    if (!v.part_uuid.empty()) j[v.kind == VolumeKind::lvm ? "lv-uuid" : "part-uuid"] = v.part_uuid;
    if (!v.name.empty()) j["name"] = v.name;
    if (v.attributes) j["attributes"] = v.attributes;
    if (!v.lvm_segment_type.empty()) j["segment-type"] = v.lvm_segment_type;
    if (v.extents.size() > 1) {
        json e = json::array();
        for (const VolumeExtent &x : v.extents)
            e.push_back({{"start", x.offset}, {"size", x.length}});
        j["extents"] = e;
    }
    j["filesystem"] = v.filesystem;
    if (!v.fs_version.empty()) j["fs-version"] = v.fs_version;
    j["label"] = v.label;
    j["uuid"] = v.uuid;
    if (!v.not_mountable.empty()) j["not-mountable"] = v.not_mountable;
    return j;
}

// IMAGE[:N] or IMAGE:VG/LV. The whole text wins when it names an existing
// file (a path may contain ':'); a URL keeps its colons.
struct Target {
    std::string image, selector; // selector: "" (the only volume), a number, or VG/LV
};
Target split_target(const std::string &text) {
    std::error_code ec;
    if (fs::exists(text, ec)) return {text, ""};
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon + 1 == text.size()) return {text, ""};
    const std::string tail = text.substr(colon + 1);
    const bool number = tail.find_first_not_of("0123456789") == std::string::npos;
    const bool lv = tail.find('/') != std::string::npos && tail.find("//") == std::string::npos && tail[0] != '/';
    if (!number && !lv) return {text, ""};
    return {text.substr(0, colon), tail};
}

const Volume &choose(const VolumeList &list, const Target &t) {
    if (t.selector.empty()) {
        std::vector<const Volume *> usable;
        for (const Volume &v : list.volumes)
            if (v.kind != VolumeKind::extended) usable.push_back(&v);
        if (usable.size() == 1) return *usable.front();
        if (usable.empty()) throw CliError(t.image + " has no volume to mount (see 'vdkit volumes " + t.image + "')");
        // Counted as 'vdkit volumes' lists them; the mountable ones named.
        std::string names;
        const Volume *first = nullptr;
        for (const Volume &v : list.volumes) {
            if (!v.not_mountable.empty()) continue;
            if (!first) first = &v;
            names += (names.empty() ? "" : ", ") + std::to_string(v.index) + " (" +
                     (v.kind == VolumeKind::lvm ? v.name + ", " : "") +
                     (v.filesystem.empty() ? "no filesystem found" : v.filesystem) +
                     (v.label.empty() ? "" : " \"" + v.label + "\"") + ", " + size_text(v.length) + ")";
        }
        const std::string n = std::to_string(list.volumes.size());
        if (!first)
            throw CliError(t.image + " has " + n + " volumes and none can be mounted (see 'vdkit volumes " + t.image +
                               "')",
                           kExitUsage);
        throw CliError(t.image + " has " + n + " volumes; mountable: " + names +
                           ". Name one as IMAGE:N, e.g. 'vdkit mount " + t.image + ":" + std::to_string(first->index) +
                           " DIR' (see 'vdkit volumes " + t.image + "')",
                       kExitUsage);
    }
    for (const Volume &v : list.volumes) {
        if (t.selector.find('/') != std::string::npos ? v.kind == VolumeKind::lvm && v.name == t.selector
                                                      : std::to_string(v.index) == t.selector)
            return v;
    }
    throw CliError(t.image + " has no volume " + t.selector + " (see 'vdkit volumes " + t.image + "')", kExitUsage);
}

// ---- volumes ----------------------------------------------------------------------

class VolumesCommand : public Command {
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand("volumes", "List the volumes of IMAGE: partitions (MBR, GPT), LVM logical "
                                                  "volumes, and the filesystem, label and UUID of each");
        sub->add_option("image", image_, "Image (a path or a URL of a loaded transport)")->required();
        sub->add_option("-f,--format", format_, "Image format (default: probe)");
        sub->add_option("--sector-size", sector_size_, "Logical sector size of the tables (default: detect)")
            ->check(CLI::IsMember({0u, 512u, 4096u}));
        add_output_option(sub, output_);
        add_filter_option(sub, filters_);
        add_force_share_option(sub, force_share_, "Read the image even while another process has it open for writing");
        return sub;
    }
    int run() override {
        auto lib = open_library(globals());
        OpenOptions o;
        o.format = format_;
        o.filters = parse_filters(filters_);
        o.force_share = force_share_;
        auto disk = take(raw_by(lib->open(image_, o), "-f raw"));
        VolumeOptions vo;
        vo.sector_size = sector_size_;
        const VolumeList list = take(list_volumes(*disk, vo));
        if (output_ == "json") {
            json vols = json::array(), findings = json::array();
            for (const Volume &v : list.volumes)
                vols.push_back(to_json(v));
            for (const VolumeFinding &f : list.findings) {
                json jf = {{"severity", to_string(f.severity)}, {"message", f.message}};
                if (f.offset) jf["offset"] = *f.offset;
                findings.push_back(jf);
            }
            json j = {{"filename", image_},
                      {"size", disk->size()},
                      {"sector-size", list.sector_size},
                      {"table", list.table.empty() ? "none" : list.table}};
            if (!list.disk_id.empty()) j["disk-id"] = list.disk_id;
            j["volumes"] = vols;
            j["findings"] = findings;
            std::cout << j.dump(2) << "\n";
        } else {
            std::cout << "table: " << (list.table.empty() ? "none" : list.table);
            if (!list.disk_id.empty()) std::cout << " (disk id " << list.disk_id << ")";
            std::cout << ", sector size " << list.sector_size << "\n";
            for (const Volume &v : list.volumes) {
                std::cout << v.index << ": " << to_string(v.kind) << ", start " << v.offset << ", size " << v.length
                          << " (" << size_text(v.length) << ")";
                const std::string t = type_text(v);
                if (!t.empty()) std::cout << ", type " << t;
                if (!v.name.empty()) std::cout << ", name \"" << v.name << "\"";
                if (!v.lvm_segment_type.empty()) std::cout << ", " << v.lvm_segment_type;
                std::cout << "\n";
                if (!v.filesystem.empty())
                    std::cout << "   filesystem " << v.filesystem
                              << (v.label.empty() ? "" : ", label \"" + v.label + "\"")
                              << (v.uuid.empty() ? "" : ", uuid " + v.uuid) << "\n";
                if (!v.not_mountable.empty()) std::cout << "   not mountable: " << v.not_mountable << "\n";
            }
            for (const VolumeFinding &f : list.findings) {
                std::cout << to_string(f.severity);
                if (f.offset) std::cout << " at " << hex(*f.offset);
                std::cout << ": " << f.message << "\n";
            }
        }
        check(disk->close());
        return list.damaged() ? kExitDamaged : kExitOk;
    }

    std::string image_, format_, output_;
    uint32_t sector_size_ = 0;
    std::vector<std::string> filters_;
    bool force_share_ = false;
};

// ---- mount state ----------------------------------------------------------------

fs::path state_root() {
    if (geteuid() == 0) return "/run/vdkit/mounts";
    if (const char *x = std::getenv("XDG_RUNTIME_DIR"); x && *x) return fs::path(x) / "vdkit" / "mounts";
    return fs::path("/tmp") / ("vdkit-" + std::to_string(getuid())) / "mounts";
}

// The state directory of a mount directory: its path's hash (the path
// itself is recorded inside and compared).
fs::path state_dir(const fs::path &dir) {
    char b[20];
    std::snprintf(b, sizeof b, "%016zx", std::hash<std::string>{}(dir.string()));
    return state_root() / b;
}

using State = std::map<std::string, std::string>;
State read_state(const fs::path &dir) {
    State s;
    std::ifstream in(dir / "state");
    std::string line;
    while (std::getline(in, line)) {
        const size_t eq = line.find('=');
        if (eq != std::string::npos) s[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return s;
}
void write_state(const fs::path &dir, const State &s) {
    std::ofstream out(dir / "state.tmp");
    for (const auto &[k, v] : s)
        out << k << "=" << v << "\n";
    out.close();
    fs::rename(dir / "state.tmp", dir / "state");
}

// Whether pid runs: a killed daemon stays a zombie until its new parent
// reaps it, which counts as gone (/proc/PID/stat's state field is Z or X).
bool alive(pid_t pid) {
    if (pid <= 0 || (::kill(pid, 0) != 0 && errno != EPERM)) return false;
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    std::getline(in, stat);
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 2 >= stat.size()) return true;
    return stat[paren + 2] != 'Z' && stat[paren + 2] != 'X';
}

// Whether `dir` is a mount point (/proc/self/mountinfo's fifth field).
bool is_mount_point(const fs::path &dir) {
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream f(line);
        std::string id, parent, devno, root, point;
        f >> id >> parent >> devno >> root >> point;
        // mountinfo escapes space, tab, newline and backslash as \ooo.
        std::string un;
        for (size_t i = 0; i < point.size(); ++i) {
            if (point[i] == '\\' && i + 3 < point.size()) {
                un += static_cast<char>(std::stoi(point.substr(i + 1, 3), nullptr, 8));
                i += 3;
            } else
                un += point[i];
        }
        if (un == dir.string()) return true;
    }
    return false;
}

// Run a program; its exit status (127 when it could not run). Output goes
// to `out` when given, else the caller's stdout/stderr.
int run_program(const std::vector<std::string> &argv, std::string *out = nullptr) {
    int pipefd[2] = {-1, -1};
    if (out && ::pipe2(pipefd, O_CLOEXEC) != 0) return 127;
    const pid_t pid = ::fork();
    if (pid < 0) return 127;
    if (pid == 0) {
        if (out) {
            ::dup2(pipefd[1], 1);
            ::dup2(pipefd[1], 2);
        }
        std::vector<char *> a;
        for (const auto &s : argv)
            a.push_back(const_cast<char *>(s.c_str()));
        a.push_back(nullptr);
        ::execvp(a[0], a.data());
        _exit(127);
    }
    if (out) {
        ::close(pipefd[1]);
        char b[4096];
        ssize_t n;
        while ((n = ::read(pipefd[0], b, sizeof b)) > 0)
            out->append(b, static_cast<size_t>(n));
        ::close(pipefd[0]);
        while (!out->empty() && out->back() == '\n')
            out->pop_back();
    }
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

bool have_program(const std::string &name) {
    const char *path = std::getenv("PATH");
    std::string p = path ? path : "/usr/bin:/bin";
    p += ":/usr/sbin:/sbin";
    std::istringstream in(p);
    std::string d;
    while (std::getline(in, d, ':'))
        if (!d.empty() && ::access((fs::path(d) / name).c_str(), X_OK) == 0) return true;
    return false;
}

// Wait until pid is gone (the daemon closed the image); false on timeout.
bool wait_gone(pid_t pid, std::chrono::seconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (alive(pid)) {
        if (std::chrono::steady_clock::now() > end) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return true;
}

// Unmount the FUSE view at `file` (fusermount3 -u, or umount as root).
int unmount_view(const fs::path &file, bool lazy) {
    std::string out;
    if (geteuid() == 0) return run_program({"umount", lazy ? "-l" : "-q", file.string()}, &out);
    return run_program(lazy ? std::vector<std::string>{"fusermount3", "-u", "-z", file.string()}
                            : std::vector<std::string>{"fusermount3", "-u", file.string()},
                       &out);
}

// A loop device's backing file (/sys/block/loopN/loop/backing_file), so a
// loop device is only detached while it still serves our view.
std::string loop_backing(const std::string &loop) {
    std::ifstream in("/sys/block/" + fs::path(loop).filename().string() + "/loop/backing_file");
    std::string line;
    std::getline(in, line);
    return line;
}

// Clean up after a mount whose daemon is gone (killed, crashed): the
// filesystem on DIR, the loop device over the FUSE view, the dead FUSE view
// ("Transport endpoint is not connected") and the state directory. The
// image's lock went with the daemon. Returns what was cleaned, for the
// message ("the filesystem on DIR, loop device /dev/loop3, ...").
std::string clean_dead_mount(const fs::path &dir, const fs::path &sdir, const State &s) {
    std::vector<std::string> done;
    std::string out;
    const bool root = geteuid() == 0;
    if (s.count("dir") && s.at("dir") == dir.string() && is_mount_point(dir)) {
        // Its backing is gone: nothing to flush, so a lazy unmount when a plain one fails.
        if ((root ? run_program({"umount", dir.string()}, &out)
                  : run_program({"fusermount3", "-u", dir.string()}, &out)) == 0 ||
            (root ? run_program({"umount", "-l", dir.string()}, &out)
                  : run_program({"fusermount3", "-u", "-z", dir.string()}, &out)) == 0)
            done.push_back("the filesystem on " + dir.string());
        else
            throw CliError("cannot unmount " + dir.string() + ": " + out);
    }
    const fs::path view = s.count("view") ? fs::path(s.at("view")) : sdir / "volume";
    if (s.count("loop") && !s.at("loop").empty() && loop_backing(s.at("loop")).rfind(view.string(), 0) == 0) {
        if (run_program({"losetup", "-d", s.at("loop")}, &out) == 0) done.push_back("loop device " + s.at("loop"));
    }
    if (is_mount_point(view)) {
        if (unmount_view(view, true) != 0) throw CliError("cannot unmount the dead FUSE view " + view.string());
        done.push_back("the FUSE view " + view.string());
    }
    std::error_code ec;
    fs::remove_all(sdir, ec);
    if (ec) throw CliError("cannot remove the mount's state " + sdir.string() + ": " + ec.message());
    done.push_back("its state in " + sdir.string());
    std::string text;
    for (size_t i = 0; i < done.size(); ++i)
        text += (i ? (i + 1 == done.size() ? " and " : ", ") : "") + done[i];
    return text;
}

// Whether the state describes a mount whose daemon is gone, or is only a
// FUSE view left behind without state.
bool stale(const fs::path &sdir, const State &s) {
    if (s.empty()) return is_mount_point(sdir / "volume");
    return !s.count("pid") || !alive(std::atoi(s.at("pid").c_str()));
}

// A filesystem the kernel can mount: listed in /proc/filesystems, or a
// mount.TYPE helper (ntfs-3g installs mount.ntfs) mount(8) would run.
bool kernel_knows(const std::string &type) {
    std::ifstream in("/proc/filesystems");
    std::string line;
    while (std::getline(in, line)) {
        const size_t tab = line.rfind('\t');
        if (line.substr(tab == std::string::npos ? 0 : tab + 1) == type) return true;
    }
    return have_program("mount." + type);
}

// FUSE filesystem drivers used without root, or as root when the kernel
// has no driver: each takes IMAGE DIR -o OPTIONS and daemonises.
struct FuseDriver {
    const char *type, *program, *package, *ro, *rw, *user; // user: added to rw without root
};
const FuseDriver *fuse_driver(const std::string &type) {
    static const FuseDriver drivers[] = {
        {"ext2", "fuse2fs", "fuse2fs", "ro", "rw", ",fakeroot"},
        {"ext3", "fuse2fs", "fuse2fs", "ro", "rw", ",fakeroot"},
        {"ext4", "fuse2fs", "fuse2fs", "ro", "rw", ",fakeroot"},
        {"ntfs", "ntfs-3g", "ntfs-3g", "ro", "rw", ""},
        {"vfat", "fusefat", "fusefat", "ro", "rw+", ""},
        {"exfat", "mount.exfat-fuse", "exfat-fuse", "ro", "rw", ""},
    };
    for (const FuseDriver &d : drivers)
        if (type == d.type) return &d;
    return nullptr;
}

// ---- mount ----------------------------------------------------------------------

class MountCommand : public Command {
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand(
            "mount", "Mount volume N of IMAGE (IMAGE:N, or IMAGE:VG/LV; a disk of one volume needs no N) on DIR "
                     "until 'vdkit umount DIR'; read-write mounts write into the chain's top image only");
        sub->add_option("image", target_, "IMAGE[:N]")->required();
        sub->add_option("dir", dir_, "An existing directory to mount on")->required();
        sub->add_flag("-r,--read-only", read_only_, "Mount read-only (the image is opened read-only)");
        sub->add_option("-f,--format", format_, "Image format (default: probe)");
        sub->add_option("-t,--type", fstype_, "Filesystem type for mount(8) (default: the one blkid found)");
        sub->add_option("-o,--options", mount_options_, "Extra mount options (mount -o)");
        sub->add_option("--sector-size", sector_size_, "Logical sector size of the tables (default: detect)")
            ->check(CLI::IsMember({0u, 512u, 4096u}));
        add_filter_option(sub, filters_);
        return sub;
    }

    // The daemon (child) side: open, choose, serve. Messages for the parent
    // go through `report` as "ok LENGTH FS", or "err CODE MESSAGE".
    [[noreturn]] void daemon(int report, const Target &t, const fs::path &file) {
        auto say = [&](const std::string &m) {
            const std::string line = m + "\n";
            (void)!::write(report, line.data(), line.size());
        };
        int code = kExitError;
        try {
            auto lib = open_library(globals());
            OpenOptions o;
            o.format = format_;
            o.writable = !read_only_;
            o.filters = parse_filters(filters_);
            auto disk = take(raw_by(lib->open(t.image, o), "-f raw"));
            VolumeOptions vo;
            vo.sector_size = sector_size_;
            const VolumeList list = take(list_volumes(*disk, vo));
            const Volume &v = choose(list, t);
            if (!v.not_mountable.empty())
                throw CliError("volume " + std::to_string(v.index) + " of " + t.image +
                                   " cannot be mounted: " + v.not_mountable,
                               kExitUsage);
            if (v.filesystem.empty() && fstype_.empty())
                throw CliError("volume " + std::to_string(v.index) + " of " + t.image +
                                   " holds no filesystem blkid recognises (name one with -t)",
                               kExitUsage);
            FuseExport x;
            x.disk = std::move(disk);
            x.volume = v;
            x.writable = !read_only_;
            x.mountpoint = file.string();
            x.fsname = "vdkit:" + t.image + ":" + std::to_string(v.index);
            const std::string fs = fstype_.empty() ? v.filesystem : fstype_;
            x.on_mounted = [&, fs, len = v.length, index = v.index] {
                say("ok " + std::to_string(len) + " " + std::to_string(index) + " " + fs);
                ::close(report);
            };
            bool mounted = false;
            run_fuse_export(x, mounted);
            _exit(mounted ? 0 : 1);
        } catch (const CliError &e) {
            code = e.exit_code;
            say("err " + std::to_string(code) + " " + e.what());
        } catch (const std::exception &e) {
            say("err 1 " + std::string(e.what()));
        }
        _exit(code);
    }

    int run() override {
        const Target t = split_target(target_);
        std::error_code ec;
        if (!fs::is_directory(dir_, ec)) throw CliError(dir_ + ": not an existing directory to mount on", kExitUsage);
        const fs::path dir = fs::canonical(dir_);
        const fs::path sdir = state_dir(dir);
        State old = read_state(sdir);
        if ((old.empty() || old["dir"] == dir.string()) && stale(sdir, old)) {
            const std::string what = clean_dead_mount(dir, sdir, old);
            if (!globals().quiet)
                std::cerr << "vdkit: " << dir.string() << " had a stale mount"
                          << (old.count("image") ? " of " + old["image"] : std::string())
                          << (old.count("pid") ? " (its daemon, pid " + old["pid"] + ", is gone)" : std::string())
                          << "; cleaned up " << what << "\n";
            old.clear();
        }
        if (is_mount_point(dir)) {
            if (!old.empty() && old.count("dir") && old.at("dir") == dir.string())
                throw CliError(dir.string() + " already has " + old.at("image") + " volume " + old.at("volume") +
                                   " mounted by vdkit (vdkit umount " + dir.string() + " first)",
                               kExitBusy);
            throw CliError(dir.string() + " is already a mount point", kExitBusy);
        }
        if (!old.empty() && old.count("pid") && alive(std::stoi(old.at("pid"))))
            throw CliError(dir.string() + ": a vdkit mount daemon for it is still running (pid " + old.at("pid") +
                               "); run vdkit umount " + dir.string(),
                           kExitBusy);
        fs::create_directories(sdir);
        fs::permissions(sdir, fs::perms::owner_all, ec);
        const fs::path file = sdir / "volume";
        { std::ofstream(file).close(); }

        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) throw CliError(std::string("pipe: ") + std::strerror(errno));
        std::cout.flush();
        std::cerr.flush();
        const pid_t pid = ::fork();
        if (pid < 0) throw CliError(std::string("fork: ") + std::strerror(errno));
        if (pid == 0) {
            ::close(p[0]);
            ::setsid();
            std::signal(SIGHUP, SIG_IGN);
            const int null = ::open("/dev/null", O_RDWR);
            const int log = ::open((sdir / "log").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (null >= 0) ::dup2(null, 0), ::dup2(null, 1);
            if (log >= 0) ::dup2(log, 2);
            daemon(p[1], t, file);
        }
        ::close(p[1]);
        std::string msg;
        char b[4096];
        ssize_t n;
        while ((n = ::read(p[0], b, sizeof b)) > 0)
            msg.append(b, static_cast<size_t>(n));
        ::close(p[0]);
        while (!msg.empty() && msg.back() == '\n')
            msg.pop_back();
        if (msg.rfind("ok ", 0) != 0) {
            int st = 0;
            ::waitpid(pid, &st, 0);
            // libfuse's reason (e.g. no access to /dev/fuse) is in the daemon's log.
            std::string log;
            {
                std::ifstream in(sdir / "log");
                std::string line;
                while (std::getline(in, line))
                    if (!line.empty()) log = line;
            }
            std::error_code ignore;
            fs::remove_all(sdir, ignore);
            if (msg.empty() && !log.empty()) msg = log;
            if (msg.rfind("err ", 0) == 0) {
                const size_t sp = msg.find(' ', 4);
                throw CliError(msg.substr(sp + 1), std::atoi(msg.substr(4, sp - 4).c_str()));
            }
            throw CliError("the FUSE view of " + t.image + " could not be mounted" + (msg.empty() ? "" : ": " + msg));
        }
        std::istringstream in(msg.substr(3));
        std::string len, index, fstype;
        in >> len >> index >> fstype;
        State s{{"pid", std::to_string(pid)},
                {"dir", dir.string()},
                {"image", t.image},
                {"volume", index},
                {"view", file.string()},
                {"fstype", fstype},
                {"mode", read_only_ ? "ro" : "rw"}};
        write_state(sdir, s);
        const auto fail = [&](const std::string &why, int code = kExitError) {
            unmount_view(file, false);
            wait_gone(pid, std::chrono::seconds(30));
            std::error_code ignore;
            fs::remove_all(sdir, ignore);
            throw CliError(why, code);
        };
        std::string opts = read_only_ ? "ro" : "rw";
        if (!mount_options_.empty()) opts += "," + mount_options_;
        std::string out;
        const bool root = geteuid() == 0;
        const std::string type = fstype_.empty() ? fstype : fstype_;
        if (root && (!fstype_.empty() || kernel_knows(type))) {
            std::vector<std::string> ls{"losetup", "--find", "--show"};
            if (read_only_) ls.push_back("--read-only");
            ls.push_back(file.string());
            if (run_program(ls, &out) != 0) fail("losetup over the FUSE view failed: " + out);
            const std::string loop = out;
            s["loop"] = loop;
            write_state(sdir, s);
            out.clear();
            std::vector<std::string> m{"mount", "-o", opts};
            if (!fstype_.empty()) m.insert(m.end(), {"-t", fstype_});
            m.insert(m.end(), {loop, dir.string()});
            if (run_program(m, &out) != 0) {
                std::string ignore;
                run_program({"losetup", "-d", loop}, &ignore);
                fail("mount " + loop + " (volume " + index + ", " + fstype + ") on " + dir.string() +
                     " failed: " + out);
            }
            s["how"] = "loop";
        } else {
            const FuseDriver *d = fuse_driver(type);
            if (!d)
                fail(std::string(root ? "the kernel has no " + type + " driver (not in /proc/filesystems, no mount." +
                                            type + " helper)"
                                      : "mounting a " + type + " volume without root needs a FUSE driver") +
                         "; vdkit mounts ext2/3/4 with fuse2fs, NTFS with ntfs-3g, FAT with fusefat and exFAT with "
                         "exfat-fuse" +
                         (root ? "" : ", anything else as root"),
                     kExitUsage);
            if (!have_program(d->program))
                fail("mounting a " + type + " volume " + (root ? "" : "without root ") + "needs " + d->program +
                         " (Debian package " + d->package + ")" + (root ? "" : ", or run as root"),
                     kExitUsage);
            std::vector<std::string> m{d->program, file.string(), dir.string(), "-o",
                                       read_only_ ? d->ro : d->rw + (root ? "" : std::string(d->user))};
            if (!mount_options_.empty()) m.back() += "," + mount_options_;
            if (run_program(m, &out) != 0)
                fail(m[0] + " could not mount volume " + index + " on " + dir.string() + ": " + out);
            s["how"] = d->program;
        }
        write_state(sdir, s);
        if (!globals().quiet)
            std::cerr << "vdkit: " << t.image << " volume " << index << " (" << fstype << ") is mounted on "
                      << dir.string() << (read_only_ ? " read-only" : "") << " until vdkit umount " << dir.string()
                      << "\n";
        return kExitOk;
    }

    std::string target_, dir_, format_, fstype_, mount_options_;
    uint32_t sector_size_ = 0;
    std::vector<std::string> filters_;
    bool read_only_ = false;
};

// ---- umount ---------------------------------------------------------------------

class UmountCommand : public Command {
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand("umount", "Unmount what 'vdkit mount' mounted on DIR and release the image");
        sub->add_option("dir", dir_, "The mount directory")->required();
        sub->add_flag("--force", force_,
                      "Unmount even with files open (lazy unmount: the image is released when the "
                      "last open file is closed)");
        return sub;
    }
    int run() override {
        std::error_code ec;
        const fs::path dir = fs::weakly_canonical(dir_, ec);
        const fs::path sdir = state_dir(dir);
        State s = read_state(sdir);
        if ((s.empty() || s["dir"] == dir.string()) && stale(sdir, s)) {
            // The daemon was killed or crashed: its FUSE view is dead, so
            // everything the mount made is cleaned up without waiting.
            const std::string what = clean_dead_mount(dir, sdir, s);
            if (!globals().quiet)
                std::cerr << "vdkit: "
                          << (s.count("pid") ? "the mount's daemon (pid " + s["pid"] + ") is gone"
                                             : "a dead FUSE view was left for " + dir.string())
                          << "; cleaned up " << what << (s.count("image") ? "; " + s["image"] + " is closed" : "")
                          << "\n";
            return kExitOk;
        }
        if (s.empty() || s["dir"] != dir.string())
            throw CliError(dir.string() + " has nothing mounted by vdkit mount", kExitUsage);
        const pid_t pid = std::stoi(s["pid"]);
        std::string out;
        if (is_mount_point(dir)) {
            const int rc = s["how"] == "loop" || geteuid() == 0
                               ? run_program({"umount", dir.string()}, &out)
                               : run_program({"fusermount3", "-u", dir.string()}, &out);
            if (rc != 0) {
                if (!force_)
                    throw CliError("cannot unmount " + dir.string() + ": " + out +
                                       " (files are open on it: close them, see 'fuser -vm " + dir.string() +
                                       "', or use --force)",
                                   kExitBusy);
                out.clear();
                const int lazy = geteuid() == 0 ? run_program({"umount", "-l", dir.string()}, &out)
                                                : run_program({"fusermount3", "-u", "-z", dir.string()}, &out);
                if (lazy != 0) throw CliError("cannot unmount " + dir.string() + " even lazily: " + out);
            }
        }
        if (s.count("loop")) {
            std::string ignore;
            run_program({"losetup", "-d", s["loop"]}, &ignore); // busy after a lazy unmount: autoclear
        }
        // The FUSE view: unmounted once the loop device (or driver) let go of it.
        const fs::path view = s["view"];
        bool released = false;
        for (int i = 0; i < 100 && !released; ++i) {
            if (!is_mount_point(view) || !alive(pid))
                released = true;
            else if (unmount_view(view, false) == 0)
                released = true;
            else
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        if (!released) {
            if (!force_)
                throw CliError("the FUSE view " + view.string() + " stays busy; retry, or use --force", kExitBusy);
            unmount_view(view, true);
        }
        if (!wait_gone(pid, std::chrono::seconds(force_ ? 5 : 60))) {
            if (force_) {
                if (!globals().quiet)
                    std::cerr << "vdkit: " << dir.string()
                              << " is detached; the image is released when the last file "
                                 "open on it is closed (daemon pid "
                              << pid << ")\n";
                fs::remove_all(sdir, ec);
                return kExitOk;
            }
            throw CliError("the mount daemon (pid " + std::to_string(pid) +
                           ") did not exit; the image may still be open");
        }
        // The daemon exited (or died) with its view still mounted: unmount it.
        if (is_mount_point(view) && unmount_view(view, true) != 0)
            throw CliError("cannot unmount the FUSE view " + view.string());
        fs::remove_all(sdir, ec);
        if (ec) throw CliError("cannot remove the mount's state " + sdir.string() + ": " + ec.message());
        if (!globals().quiet) std::cerr << "vdkit: " << dir.string() << " unmounted; " << s["image"] << " is closed\n";
        return kExitOk;
    }
    std::string dir_;
    bool force_ = false;
};

} // namespace

void add_volume_commands(std::vector<std::unique_ptr<Command>> &commands) {
    commands.push_back(std::make_unique<VolumesCommand>());
    commands.push_back(std::make_unique<MountCommand>());
    commands.push_back(std::make_unique<UmountCommand>());
}

} // namespace vdkit::cli
