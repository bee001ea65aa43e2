// VixDiskLib_Init/InitEx/Exit, connections, errors and logging: the process
// state of vdkit's VixDiskLib-compatible library (docs/compat.md).
#include "vix_internal.hpp"

#include <algorithm>
#include <cctype>
#include <cstdarg>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <set>
#include <unordered_set>

namespace vix {

State &state() {
    static State s;
    return s;
}

vdkit_library *library() {
    std::lock_guard lock(state().mutex);
    return state().lib;
}

namespace {

void emit(VixDiskLibGenericLogFunc *fn, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fn(fmt, ap);
    va_end(ap);
}

void send(bool warning, const std::string &line) {
    VixDiskLibGenericLogFunc *fn;
    {
        std::lock_guard lock(state().mutex);
        fn = warning ? state().warn : state().log;
    }
    if (fn) emit(fn, "%s\n", line.c_str());
}

struct LastError {
    VixError code = VIX_OK;
    std::string message;
};
thread_local LastError last_error;

// vdkit's diagnostics: errors and warnings to warn, the rest to log.
void on_vdkit_log(void *, uint32_t level, const char *message) {
    send(level <= VDKIT_LOG_WARNING, std::string("vdkit: ") + message);
}

std::string trim(const std::string &s) {
    size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b])))
        ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1])))
        --e;
    return s.substr(b, e - b);
}

// VixDiskLib's configuration file: `name = "value"` per line, '#' comments.
// vdkit understands vdkit.config and vdkit.pluginPath; other keys (VMware's
// tmpDirectory, vixDiskLib.transport.* ...) are logged as ignored.
VixError read_config_file(const char *path, std::string &config, std::string &plugin_path) {
    std::ifstream in(path);
    if (!in) return fail(VIX_E_FILE_NOT_FOUND, std::string("cannot read the configuration file ") + path);
    std::string line;
    unsigned number = 0;
    while (std::getline(in, line)) {
        ++number;
        line = trim(line);
        if (line.empty() || line[0] == '#') continue;
        const auto eq = line.find('=');
        if (eq == std::string::npos)
            return fail(VIX_E_INVALID_ARG,
                        std::string(path) + ":" + std::to_string(number) + ": expected name = \"value\"");
        const std::string name = trim(line.substr(0, eq));
        std::string value = trim(line.substr(eq + 1));
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
        if (name == "vdkit.config")
            config = value;
        else if (name == "vdkit.pluginPath")
            plugin_path = value;
        else
            log_info(std::string("configuration key ") + name + " (" + path + ":" + std::to_string(number) +
                     ") is not used by vdkit; ignored");
    }
    return VIX_OK;
}

// Strings of GetConnectParams results, freed by FreeConnectParams (a struct
// from AllocateConnectParams holds the caller's strings: only it is freed).
std::mutex copies_mutex;
std::set<const void *> &copies() {
    static std::set<const void *> s;
    return s;
}

char *dup(const char *s) {
    return s ? strdup(s) : nullptr;
}

// A vSphere connection cannot be made: say so, naming the server.
VixError refuse_remote(const VixDiskLibConnectParams *p) {
    std::string what = p->serverName ? std::string("server '") + p->serverName + "'" : std::string("a vSphere server");
    if (p->vmxSpec) what += std::string(" (vmxSpec '") + p->vmxSpec + "')";
    return fail(VIX_E_CANNOT_CONNECT_TO_HOST,
                "vdkit's VixDiskLib cannot log in to " + what +
                    ": it opens local disks and nbd://, nbds://, http(s):// and s3:// locations through a local "
                    "connection (connectParams NULL or without vmxSpec and serverName)");
}

bool remote(const VixDiskLibConnectParams *p) {
    return p && (p->vmxSpec || p->serverName);
}

VixError init(uint32 major, uint32 minor, VixDiskLibGenericLogFunc *log, VixDiskLibGenericLogFunc *warn,
              const char *config_file) {
    if (major > VIXDISKLIB_VERSION_MAJOR)
        return fail(VIX_E_NOT_SUPPORTED, "this library implements VixDiskLib " +
                                             std::to_string(VIXDISKLIB_VERSION_MAJOR) + ".x; version " +
                                             std::to_string(major) + "." + std::to_string(minor) + " was asked for");
    {
        std::lock_guard lock(state().mutex);
        if (state().init_count > 0) {
            ++state().init_count;
            return VIX_OK;
        }
        state().log = log;
        state().warn = warn;
    }
    auto forget_callbacks = [] {
        std::lock_guard lock(state().mutex);
        if (state().init_count == 0) state().log = state().warn = nullptr;
    };
    std::string config, plugin_path;
    if (config_file && *config_file) {
        const VixError e = read_config_file(config_file, config, plugin_path);
        if (e != VIX_OK) {
            forget_callbacks();
            return e;
        }
    }
    vdkit_library_options options{};
    options.struct_size = sizeof options;
    options.config_file = config.empty() ? nullptr : config.c_str();
    options.plugin_path = plugin_path.empty() ? nullptr : plugin_path.c_str();
    options.log = on_vdkit_log;
    vdkit_error e = make_error();
    vdkit_library *lib = nullptr;
    if (vdkit_library_open(&options, &lib, &e) != VDKIT_OK) {
        forget_callbacks();
        return fail(e);
    }
    vdkit_library *extra = nullptr;
    {
        std::lock_guard lock(state().mutex);
        if (state().init_count > 0) { // another thread's Init won the race
            ++state().init_count;
            extra = lib;
        } else {
            state().lib = lib;
            state().init_count = 1;
        }
    }
    vdkit_library_close(extra); // outside the lock: closing may log
    return VIX_OK;
}

} // namespace

namespace {
std::mutex live_mutex;
std::unordered_set<const void *> &live() {
    static std::unordered_set<const void *> s;
    return s;
}
} // namespace

void remember(const void *object) {
    std::lock_guard lock(live_mutex);
    live().insert(object);
}
void forget(const void *object) {
    std::lock_guard lock(live_mutex);
    live().erase(object);
}
bool is_live(const void *object) {
    std::lock_guard lock(live_mutex);
    return live().count(object) > 0;
}

void log_info(const std::string &line) {
    send(false, line);
}
void log_warn(const std::string &line) {
    send(true, line);
}

VixError fail(VixError err, const std::string &message) {
    last_error.code = err;
    last_error.message = message;
    log_info(std::string("error ") + std::to_string(err) + ": " + message);
    return err;
}

VixError fail(const vdkit_error &e) {
    return fail(from_status(e.code), e.message);
}

bool last_message(VixError err, std::string &message) {
    if (last_error.code != err || last_error.message.empty()) return false;
    message = last_error.message;
    return true;
}

const char *all_modes() {
    return "file:nbd:nbdssl:http:https:s3";
}

const char *mode_of(const std::string &location) {
    const auto colon = location.find("://");
    if (colon == std::string::npos) return "file";
    std::string scheme = location.substr(0, colon);
    std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
    if (scheme == "file") return "file";
    if (scheme == "nbd" || scheme == "nbd+unix") return "nbd";
    if (scheme == "nbds" || scheme == "nbds+unix") return "nbdssl";
    if (scheme == "http") return "http";
    if (scheme == "https") return "https";
    if (scheme == "s3") return "s3";
    return nullptr;
}

int Progress::call(void *opaque, uint64_t done, uint64_t total) {
    auto *p = static_cast<Progress *>(opaque);
    if (!p->fn) return 0;
    int percent = total ? static_cast<int>(done >= total ? 100 : done * 100 / total) : 0;
    if (percent == p->last) return 0;
    p->last = percent;
    return p->fn(p->data, percent) ? 0 : 1;
}

void Progress::finish() {
    if (fn && last != 100) fn(data, 100);
}

} // namespace vix

using namespace vix;

extern "C" {

VIX_EXPORT VixError VixDiskLib_InitEx(uint32 majorVersion, uint32 minorVersion, VixDiskLibGenericLogFunc *log,
                                      VixDiskLibGenericLogFunc *warn, VixDiskLibGenericLogFunc * /*panic*/,
                                      const char * /*libDir*/, const char *configFile) {
    try {
        return init(majorVersion, minorVersion, log, warn, configFile);
    } catch (const std::bad_alloc &) {
        return VIX_E_OUT_OF_MEMORY;
    } catch (...) {
        return VIX_E_FAIL;
    }
}

VIX_EXPORT VixError VixDiskLib_Init(uint32 majorVersion, uint32 minorVersion, VixDiskLibGenericLogFunc *log,
                                    VixDiskLibGenericLogFunc *warn, VixDiskLibGenericLogFunc *panic,
                                    const char *libDir) {
    return VixDiskLib_InitEx(majorVersion, minorVersion, log, warn, panic, libDir, nullptr);
}

VIX_EXPORT void VixDiskLib_Exit(void) {
    vdkit_library *lib = nullptr;
    {
        std::lock_guard lock(state().mutex);
        if (state().init_count == 0) return;
        if (--state().init_count > 0) return;
        lib = state().lib;
        state().lib = nullptr;
    }
    vdkit_library_close(lib);
    std::lock_guard lock(state().mutex);
    state().log = state().warn = nullptr;
}

VIX_EXPORT const char *VixDiskLib_ListTransportModes(void) {
    return all_modes();
}

VIX_EXPORT VixError VixDiskLib_Cleanup(const VixDiskLibConnectParams *connectParams, uint32 *numCleanedUp,
                                       uint32 *numRemaining) {
    if (numCleanedUp) *numCleanedUp = 0;
    if (numRemaining) *numRemaining = 0;
    return remote(connectParams) ? refuse_remote(connectParams) : VixError{VIX_OK};
}

VIX_EXPORT VixDiskLibConnectParams *VixDiskLib_AllocateConnectParams(void) {
    return static_cast<VixDiskLibConnectParams *>(calloc(1, sizeof(VixDiskLibConnectParams)));
}

VIX_EXPORT void VixDiskLib_FreeConnectParams(VixDiskLibConnectParams *p) {
    if (!p) return;
    bool ours = false;
    {
        std::lock_guard lock(copies_mutex);
        ours = copies().erase(p) > 0;
    }
    if (ours) {
        free(p->vmxSpec);
        free(p->serverName);
        free(p->thumbPrint);
        free(p->vimApiVer);
    }
    free(p);
}

VIX_EXPORT VixError VixDiskLib_ConnectEx(const VixDiskLibConnectParams *connectParams, Bool readOnly,
                                         const char *snapshotRef, const char *transportModes,
                                         VixDiskLibConnection *connection) {
    try {
        if (!connection) return fail(VIX_E_INVALID_ARG, "ConnectEx: connection is NULL");
        *connection = nullptr;
        if (!library()) return fail(VIX_E_DISK_NOINIT, "ConnectEx before VixDiskLib_Init");
        if (remote(connectParams)) return refuse_remote(connectParams);
        if (snapshotRef && *snapshotRef)
            log_info(std::string("snapshotRef '") + snapshotRef + "' needs a vSphere connection; ignored");
        auto c = std::make_unique<VixDiskLibConnectParam>();
        c->read_only = readOnly != 0;
        const std::string offered = std::string(":") + all_modes() + ":";
        const std::string list = transportModes && *transportModes ? transportModes : all_modes();
        size_t start = 0;
        while (start <= list.size()) {
            const auto end = std::min(list.find(':', start), list.size());
            const std::string mode = list.substr(start, end - start);
            start = end + 1;
            if (mode.empty()) continue;
            if (offered.find(":" + mode + ":") != std::string::npos)
                c->modes.push_back(mode);
            else if (mode == "san" || mode == "hotadd")
                log_info("transport mode '" + mode + "' needs vSphere; skipped");
            else
                return fail(VIX_E_INVALID_ARG, "unknown transport mode '" + mode + "' in '" + list +
                                                   "' (vdkit offers " + all_modes() + ")");
        }
        if (c->modes.empty())
            return fail(VIX_E_INVALID_ARG,
                        "no transport mode vdkit offers in '" + list + "' (vdkit offers " + all_modes() + ")");
        remember(c.get());
        *connection = c.release();
        return VIX_OK;
    } catch (const std::bad_alloc &) {
        return fail(VIX_E_OUT_OF_MEMORY, "ConnectEx: out of memory");
    } catch (...) {
        return fail(VIX_E_FAIL, "ConnectEx: internal error");
    }
}

VIX_EXPORT VixError VixDiskLib_Connect(const VixDiskLibConnectParams *connectParams, VixDiskLibConnection *connection) {
    return VixDiskLib_ConnectEx(connectParams, FALSE, nullptr, nullptr, connection);
}

VIX_EXPORT VixError VixDiskLib_Disconnect(VixDiskLibConnection connection) {
    if (!valid(connection)) return fail(VIX_E_DISK_INVALID_CONNECTION, "Disconnect: not a connection");
    if (connection->open_disks.load() > 0)
        return fail(VIX_E_OBJECT_IS_BUSY, "Disconnect: " + std::to_string(connection->open_disks.load()) +
                                              " disk(s) of this connection are still open");
    forget(connection);
    connection->magic = 0;
    delete connection;
    return VIX_OK;
}

VIX_EXPORT VixError VixDiskLib_GetConnectParams(const VixDiskLibConnection connection,
                                                VixDiskLibConnectParams **connectParams) {
    if (!connectParams) return fail(VIX_E_INVALID_ARG, "GetConnectParams: connectParams is NULL");
    *connectParams = nullptr;
    if (!valid(connection)) return fail(VIX_E_DISK_INVALID_CONNECTION, "GetConnectParams: not a connection");
    // A local connection: every field empty, as VixDiskLib reports it.
    auto *p = VixDiskLib_AllocateConnectParams();
    if (!p) return fail(VIX_E_OUT_OF_MEMORY, "GetConnectParams: out of memory");
    std::lock_guard lock(copies_mutex);
    copies().insert(p);
    *connectParams = p;
    return VIX_OK;
}

VIX_EXPORT VixError VixDiskLib_PrepareForAccess(const VixDiskLibConnectParams *connectParams, const char *) {
    return remote(connectParams) ? refuse_remote(connectParams) : VixError{VIX_OK};
}

VIX_EXPORT VixError VixDiskLib_EndAccess(const VixDiskLibConnectParams *connectParams, const char *) {
    return remote(connectParams) ? refuse_remote(connectParams) : VixError{VIX_OK};
}

VIX_EXPORT char *VixDiskLib_GetErrorText(VixError err, const char * /*locale*/) {
    std::string text = code_text(err);
    if (text == "VIX error") text += " " + std::to_string(err);
    std::string message;
    if (last_message(err, message)) text += ": " + message;
    return dup(text.c_str());
}

VIX_EXPORT void VixDiskLib_FreeErrorText(char *errMsg) {
    free(errMsg);
}

} // extern "C"
