// Internals of vdkit's VixDiskLib-compatible library: the process state
// (one vdkit_library between Init and Exit), connections, disk handles and
// the per-thread last error GetErrorText reports.
#pragma once

#include "vixDiskLib.h"

#include <vdkit/vdkit.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#define VIX_EXPORT __attribute__((visibility("default")))

// VixDiskLib_Open: the disk handle's struct (declared opaque in vixDiskLib.h).
struct VixDiskLibHandleStruct {
    static constexpr uint32_t kMagic = 0x7664584bu; // "vdXK"
    uint32_t magic = kMagic;
    vdkit_disk *disk = nullptr; // nullptr once Attach gave it to the child
    VixDiskLibConnection connection = nullptr;
    std::string location;      // as opened
    const char *mode = "file"; // static transport mode name
    std::string format;        // the top image's format plugin
    bool single_link = false;
    uint32_t open_flags = 0; // the VDKIT_DISK_* flags it was opened with
};

// VixDiskLib_Connect: the connection's struct.
struct VixDiskLibConnectParam {
    static constexpr uint32_t kMagic = 0x7664584eu; // "vdXN"
    uint32_t magic = kMagic;
    bool read_only = false;
    std::vector<std::string> modes; // allowed transport modes, in order
    std::atomic<int> open_disks{0};
};

namespace vix {

// Process state between Init and Exit.
struct State {
    std::mutex mutex;
    int init_count = 0;
    vdkit_library *lib = nullptr;
    VixDiskLibGenericLogFunc *log = nullptr;
    VixDiskLibGenericLogFunc *warn = nullptr;
};
State &state();

// The library handle, or nullptr before Init (callers report VIX_E_DISK_NOINIT).
vdkit_library *library();

// Send a line to the client's log (info) or warn callback; nothing when unset.
void log_info(const std::string &line);
void log_warn(const std::string &line);

// Record err with vdkit's message as the calling thread's last error and
// return it (GetErrorText shows the message for that code).
VixError fail(VixError err, const std::string &message);
// fail(from_status(e.code), e.message) for a vdkit failure.
VixError fail(const vdkit_error &e);
VixError from_status(uint32_t status);
const char *code_text(VixError err);
// The last error recorded on this thread, and its message.
bool last_message(VixError err, std::string &message);

// A vdkit_error ready to be filled.
inline vdkit_error make_error() {
    vdkit_error e{};
    e.struct_size = sizeof e;
    return e;
}

// Sectors to bytes, false on overflow.
inline bool sectors_to_bytes(uint64_t sectors, uint64_t &bytes) {
    if (sectors > UINT64_MAX / VIXDISKLIB_SECTOR_SIZE) return false;
    bytes = sectors * VIXDISKLIB_SECTOR_SIZE;
    return true;
}

// The transport mode a location needs: "file" for a path, else by scheme
// ("nbd", "nbdssl", "http", "https", "s3"); nullptr for an unknown scheme.
const char *mode_of(const std::string &location);
// The modes vdkit offers, in VixDiskLib's default order.
const char *all_modes();

// Live handles and connections: a pointer the library did not hand out (or
// already freed) is refused without being dereferenced.
void remember(const void *object);
void forget(const void *object);
bool is_live(const void *object);
inline bool valid(const VixDiskLibHandleStruct *h) {
    return h && is_live(h) && h->magic == VixDiskLibHandleStruct::kMagic;
}
inline bool valid(const VixDiskLibConnectParam *c) {
    return c && is_live(c) && c->magic == VixDiskLibConnectParam::kMagic;
}

// VixDiskLibProgressFunc as a vdkit_progress_fn: percent of done/total;
// FALSE from the client cancels.
struct Progress {
    VixDiskLibProgressFunc fn = nullptr;
    void *data = nullptr;
    int last = -1;
    static int call(void *opaque, uint64_t done, uint64_t total);
    void finish();
};

} // namespace vix
