// VixDiskLib's whole-image operations over vdkit: create, create child,
// clone, grow, shrink/defragment, rename, unlink, attach, space needed for
// clone, check and repair (docs/compat.md).
#include "vix_internal.hpp"

#include <algorithm>
#include <cctype>
#include <new>

using namespace vix;

namespace {

// The format a new image's name asks for: .vdi VDI, .img/.raw raw, else VMDK
// (VixDiskLib's own format).
std::string format_for(const std::string &path) {
    const auto dot = path.rfind('.');
    const auto slash = path.rfind('/');
    if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "vmdk";
    std::string ext = path.substr(dot + 1);
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (ext == "vdi") return "vdi";
    if (ext == "img" || ext == "raw") return "raw";
    return "vmdk";
}

bool flat(VixDiskLibDiskType t) {
    return t == VIXDISKLIB_DISK_MONOLITHIC_FLAT || t == VIXDISKLIB_DISK_SPLIT_FLAT || t == VIXDISKLIB_DISK_VMFS_FLAT;
}

// VixDiskLib's disk type as vdkit's VMDK subformat; nullptr when vdkit
// cannot create it.
const char *subformat(VixDiskLibDiskType t) {
    switch (t) {
    case VIXDISKLIB_DISK_MONOLITHIC_SPARSE:
        return "monolithicSparse";
    case VIXDISKLIB_DISK_MONOLITHIC_FLAT:
        return "monolithicFlat";
    case VIXDISKLIB_DISK_SPLIT_SPARSE:
        return "twoGbMaxExtentSparse";
    case VIXDISKLIB_DISK_SPLIT_FLAT:
        return "twoGbMaxExtentFlat";
    case VIXDISKLIB_DISK_VMFS_FLAT:
        return "vmfs";
    case VIXDISKLIB_DISK_STREAM_OPTIMIZED:
        return "streamOptimized";
    case VIXDISKLIB_DISK_VMFS_THIN:
        return "vmfsThin";
    default:
        return nullptr;
    }
}

// vdkit create options for a new image of `format` from VixDiskLib's create
// parameters; an error when they cannot be honoured.
VixError create_options(const std::string &format, const VixDiskLibCreateParams *p, std::string &options,
                        uint32_t &flags, const char *call) {
    options.clear();
    flags = 0;
    if (!p) return VIX_OK;
    if (format == "vmdk") {
        const char *sub = subformat(p->diskType);
        if (!sub)
            return fail(VIX_E_NOT_SUPPORTED,
                        std::string(call) + ": vdkit cannot create VMDK disk type " + std::to_string(p->diskType));
        options = std::string("subformat=") + sub;
        switch (p->adapterType) {
        case VIXDISKLIB_ADAPTER_IDE:
            options += ",adapter-type=ide";
            break;
        case VIXDISKLIB_ADAPTER_SCSI_BUSLOGIC:
            options += ",adapter-type=buslogic";
            break;
        case VIXDISKLIB_ADAPTER_SCSI_LSILOGIC:
            options += ",adapter-type=lsilogic";
            break;
        default:
            break;
        }
        if (p->hwVersion) options += ",hw-version=" + std::to_string(p->hwVersion);
    } else if (flat(p->diskType)) {
        flags |= VDKIT_DISK_FIXED;
    } else if (p->diskType != VIXDISKLIB_DISK_MONOLITHIC_SPARSE && p->diskType != VIXDISKLIB_DISK_SPLIT_SPARSE &&
               p->diskType != VIXDISKLIB_DISK_UNKNOWN) {
        return fail(VIX_E_NOT_SUPPORTED, std::string(call) + ": disk type " + std::to_string(p->diskType) + " has no " +
                                             format + " equivalent");
    }
    return VIX_OK;
}

VixError need_library(vdkit_library *&lib, const char *call) {
    lib = library();
    return lib ? VixError{VIX_OK} : fail(VIX_E_DISK_NOINIT, std::string(call) + " before VixDiskLib_Init");
}

VixError need_connection(const VixDiskLibConnection c, const char *path, const char *call) {
    if (!valid(c)) return fail(VIX_E_DISK_INVALID_CONNECTION, std::string(call) + ": not a connection");
    if (!path) return fail(VIX_E_INVALID_ARG, std::string(call) + ": path is NULL");
    const char *mode = mode_of(path);
    for (const auto &m : c->modes)
        if (mode && m == mode) return VIX_OK;
    return fail(VIX_E_NOT_SUPPORTED, std::string(call) + ": " + path + " needs transport mode '" + (mode ? mode : "?") +
                                         "', which this connection does not allow");
}

VixError need_disk(VixDiskLibHandle h, const char *call) {
    if (!valid(h) || !h->disk) return fail(VIX_E_INVALID_ARG, std::string(call) + ": not an open disk handle");
    return VIX_OK;
}

VixError compact(VixDiskLibHandle h, VixDiskLibProgressFunc fn, void *data, const char *call) {
    if (VixError e = need_disk(h, call)) return e;
    Progress progress{fn, data};
    vdkit_error e = make_error();
    if (vdkit_disk_compact(h->disk, Progress::call, &progress, &e) != VDKIT_OK) return fail(e);
    progress.finish();
    return VIX_OK;
}

void on_finding(void *, uint32_t severity, uint64_t offset, const char *message) {
    static const char *names[] = {"error", "leak", "repaired", "note"};
    std::string line = std::string("check: ") + (severity < 4 ? names[severity] : "finding");
    if (offset != UINT64_MAX) line += " at offset " + std::to_string(offset);
    log_info(line + ": " + message);
}

template <class F> VixError guarded(const char *call, F &&f) {
    try {
        return f();
    } catch (const std::bad_alloc &) {
        return fail(VIX_E_OUT_OF_MEMORY, std::string(call) + ": out of memory");
    } catch (...) {
        return fail(VIX_E_FAIL, std::string(call) + ": internal error");
    }
}

} // namespace

extern "C" {

VIX_EXPORT VixError VixDiskLib_Create(const VixDiskLibConnection connection, const char *path,
                                      const VixDiskLibCreateParams *createParams, VixDiskLibProgressFunc progressFunc,
                                      void *progressCallbackData) {
    return guarded("Create", [&]() -> VixError {
        vdkit_library *lib;
        if (VixError e = need_library(lib, "Create")) return e;
        if (VixError e = need_connection(connection, path, "Create")) return e;
        if (!createParams) return fail(VIX_E_INVALID_ARG, "Create: createParams is NULL");
        uint64_t bytes;
        if (!createParams->capacity || !sectors_to_bytes(createParams->capacity, bytes))
            return fail(VIX_E_INVALID_ARG,
                        "Create: capacity " + std::to_string(createParams->capacity) + " sectors is not a disk size");
        const std::string format = format_for(path);
        std::string options;
        uint32_t flags;
        if (VixError e = create_options(format, createParams, options, flags, "Create")) return e;
        Progress progress{progressFunc, progressCallbackData};
        if (Progress::call(&progress, 0, 1)) return fail(VIX_E_CANCELLED, "Create: cancelled");
        vdkit_disk *disk = nullptr;
        vdkit_error e = make_error();
        if (vdkit_disk_create(lib, path, format.c_str(), bytes, flags, options.empty() ? nullptr : options.c_str(),
                              nullptr, &disk, &e) != VDKIT_OK)
            return fail(e);
        if (vdkit_disk_close(disk, &e) != VDKIT_OK) return fail(e);
        progress.finish();
        return VIX_OK;
    });
}

VIX_EXPORT VixError VixDiskLib_CreateChild(VixDiskLibHandle h, const char *childPath, VixDiskLibDiskType diskType,
                                           VixDiskLibProgressFunc progressFunc, void *progressCallbackData) {
    return guarded("CreateChild", [&]() -> VixError {
        vdkit_library *lib;
        if (VixError e = need_library(lib, "CreateChild")) return e;
        if (VixError e = need_disk(h, "CreateChild")) return e;
        if (VixError e = need_connection(h->connection, childPath, "CreateChild")) return e;
        const std::string format = format_for(childPath);
        std::string options;
        if (format == "vmdk") {
            if (diskType != VIXDISKLIB_DISK_MONOLITHIC_SPARSE && diskType != VIXDISKLIB_DISK_SPLIT_SPARSE)
                return fail(VIX_E_INVALID_ARG, "CreateChild: a child is VIXDISKLIB_DISK_MONOLITHIC_SPARSE or "
                                               "VIXDISKLIB_DISK_SPLIT_SPARSE, not type " +
                                                   std::to_string(diskType));
            options = std::string("subformat=") + subformat(diskType);
            // A child keeps its parent's adapter type, as VixDiskLib's do.
            char adapter[64];
            if (h->format == "vmdk" && vdkit_disk_metadata_get(h->disk, "ddb.adapterType", adapter, sizeof adapter,
                                                               nullptr, nullptr) == VDKIT_OK)
                options += std::string(",adapter-type=") + adapter;
        }
        vdkit_disk_image_info info{};
        info.struct_size = sizeof info;
        vdkit_error e = make_error();
        if (vdkit_disk_get_image_info(h->disk, vdkit_disk_image_count(h->disk) - 1, &info, &e) != VDKIT_OK)
            return fail(e);
        // The create opens the parent again, read-only: what this handle
        // wrote must be on the medium, and a handle open for writing holds
        // the image's write lock, so it steps aside for the create and is
        // opened again as it was (VixDiskLib allows a child of a disk open
        // read-write).
        if (vdkit_disk_aio_drain(h->disk, &e) != VDKIT_OK || vdkit_disk_flush(h->disk, &e) != VDKIT_OK) return fail(e);
        Progress progress{progressFunc, progressCallbackData};
        if (Progress::call(&progress, 0, 1)) return fail(VIX_E_CANCELLED, "CreateChild: cancelled");
        const bool step_aside = (h->open_flags & VDKIT_DISK_WRITE) != 0;
        const std::string parent = info.location; // owned by the disk handle: copy before closing it
        if (step_aside) {
            if (vdkit_disk_close(h->disk, &e) != VDKIT_OK) {
                h->disk = nullptr;
                return fail(e);
            }
            h->disk = nullptr;
        }
        vdkit_disk *child = nullptr;
        VixError result = VIX_OK;
        if (vdkit_disk_create(lib, childPath, format.c_str(), 0, 0, options.empty() ? nullptr : options.c_str(),
                              parent.c_str(), &child, &e) != VDKIT_OK ||
            vdkit_disk_close(child, &e) != VDKIT_OK)
            result = fail(e);
        if (step_aside) {
            vdkit_error oe = make_error();
            // With the format it was open with: a raw image is never guessed
            // for writing.
            if (vdkit_disk_open(lib, h->location.c_str(), h->format.c_str(), h->open_flags, nullptr, &h->disk, &oe) !=
                VDKIT_OK) {
                h->disk = nullptr;
                return fail(from_status(oe.code), std::string("CreateChild: ") + h->location +
                                                      " could not be opened again (only Close works on its "
                                                      "handle now): " +
                                                      oe.message);
            }
        }
        if (result != VIX_OK) return result;
        progress.finish();
        return VIX_OK;
    });
}

VIX_EXPORT VixError VixDiskLib_Clone(const VixDiskLibConnection dstConnection, const char *dstPath,
                                     const VixDiskLibConnection srcConnection, const char *srcPath,
                                     const VixDiskLibCreateParams *vixCreateParams, VixDiskLibProgressFunc progressFunc,
                                     void *progressCallbackData, Bool overWrite) {
    return guarded("Clone", [&]() -> VixError {
        vdkit_library *lib;
        if (VixError e = need_library(lib, "Clone")) return e;
        if (VixError e = need_connection(srcConnection, srcPath, "Clone (source)")) return e;
        if (VixError e = need_connection(dstConnection, dstPath, "Clone (target)")) return e;
        const std::string format = format_for(dstPath);
        std::string options;
        uint32_t create_flags;
        if (VixError e = create_options(format, vixCreateParams, options, create_flags, "Clone")) return e;
        Progress progress{progressFunc, progressCallbackData};
        vdkit_convert_options o{};
        o.struct_size = sizeof o;
        o.target_format = format.c_str();
        o.target_options = options.empty() ? nullptr : options.c_str();
        if (overWrite) o.flags |= VDKIT_CONVERT_OVERWRITE;
        if (create_flags & VDKIT_DISK_FIXED) o.flags |= VDKIT_CONVERT_PREALLOCATE;
        o.progress = Progress::call;
        o.opaque = &progress;
        vdkit_error e = make_error();
        if (vdkit_convert(lib, srcPath, dstPath, &o, nullptr, &e) != VDKIT_OK) return fail(e);
        progress.finish();
        return VIX_OK;
    });
}

VIX_EXPORT VixError VixDiskLib_Grow(VixDiskLibConnection connection, const char *path, VixDiskLibSectorType capacity,
                                    Bool /*updateGeometry*/, VixDiskLibProgressFunc progressFunc,
                                    void *progressCallbackData) {
    return guarded("Grow", [&]() -> VixError {
        vdkit_library *lib;
        if (VixError e = need_library(lib, "Grow")) return e;
        if (VixError e = need_connection(connection, path, "Grow")) return e;
        uint64_t bytes;
        if (!sectors_to_bytes(capacity, bytes))
            return fail(VIX_E_INVALID_ARG, "Grow: capacity " + std::to_string(capacity) + " sectors is too large");
        vdkit_disk *disk = nullptr;
        vdkit_error e = make_error();
        if (vdkit_disk_open(lib, path, nullptr, VDKIT_DISK_WRITE, nullptr, &disk, &e) != VDKIT_OK) return fail(e);
        const uint64_t now = vdkit_disk_size(disk);
        VixError result = VIX_OK;
        Progress progress{progressFunc, progressCallbackData};
        if (bytes < now)
            result = fail(VIX_E_INVALID_ARG, std::string("Grow: ") + path + " has " +
                                                 std::to_string(now / VIXDISKLIB_SECTOR_SIZE) +
                                                 " sectors; Grow never shrinks a disk");
        else if (bytes > now && vdkit_disk_resize(disk, bytes, 0, &e) != VDKIT_OK)
            result = fail(e);
        vdkit_error ce = make_error();
        if (vdkit_disk_close(disk, &ce) != VDKIT_OK && result == VIX_OK) result = fail(ce);
        if (result == VIX_OK) progress.finish();
        return result;
    });
}

VIX_EXPORT VixError VixDiskLib_Shrink(VixDiskLibHandle h, VixDiskLibProgressFunc progressFunc,
                                      void *progressCallbackData) {
    return guarded("Shrink", [&] { return compact(h, progressFunc, progressCallbackData, "Shrink"); });
}

VIX_EXPORT VixError VixDiskLib_Defragment(VixDiskLibHandle h, VixDiskLibProgressFunc progressFunc,
                                          void *progressCallbackData) {
    return guarded("Defragment", [&] { return compact(h, progressFunc, progressCallbackData, "Defragment"); });
}

VIX_EXPORT VixError VixDiskLib_Rename(const char *srcFileName, const char *dstFileName) {
    return guarded("Rename", [&]() -> VixError {
        vdkit_library *lib;
        if (VixError e = need_library(lib, "Rename")) return e;
        if (!srcFileName || !dstFileName) return fail(VIX_E_INVALID_ARG, "Rename: a file name is NULL");
        vdkit_error e = make_error();
        return vdkit_image_rename(lib, srcFileName, dstFileName, 0, &e) == VDKIT_OK ? VixError{VIX_OK} : fail(e);
    });
}

VIX_EXPORT VixError VixDiskLib_Unlink(VixDiskLibConnection connection, const char *path) {
    return guarded("Unlink", [&]() -> VixError {
        vdkit_library *lib;
        if (VixError e = need_library(lib, "Unlink")) return e;
        if (VixError e = need_connection(connection, path, "Unlink")) return e;
        vdkit_error e = make_error();
        return vdkit_image_delete(lib, path, 0, &e) == VDKIT_OK ? VixError{VIX_OK} : fail(e);
    });
}

VIX_EXPORT VixError VixDiskLib_IsAttachPossible(VixDiskLibHandle parent, VixDiskLibHandle child) {
    if (VixError e = need_disk(parent, "IsAttachPossible")) return e;
    if (VixError e = need_disk(child, "IsAttachPossible")) return e;
    vdkit_error e = make_error();
    return vdkit_disk_is_attach_possible(parent->disk, child->disk, 0, &e) == VDKIT_OK ? VixError{VIX_OK} : fail(e);
}

VIX_EXPORT VixError VixDiskLib_Attach(VixDiskLibHandle parent, VixDiskLibHandle child) {
    if (VixError e = need_disk(parent, "Attach")) return e;
    if (VixError e = need_disk(child, "Attach")) return e;
    vdkit_error e = make_error();
    if (vdkit_disk_attach(parent->disk, child->disk, 0, &e) != VDKIT_OK) return fail(e);
    // The parent's images now belong to the child's chain; its handle only
    // waits for Close.
    vdkit_disk_close(parent->disk, nullptr);
    parent->disk = nullptr;
    child->single_link = false;
    return VIX_OK;
}

VIX_EXPORT VixError VixDiskLib_SpaceNeededForClone(VixDiskLibHandle h, VixDiskLibDiskType cloneDiskType,
                                                   uint64 *spaceNeeded) {
    return guarded("SpaceNeededForClone", [&]() -> VixError {
        vdkit_library *lib;
        if (VixError e = need_library(lib, "SpaceNeededForClone")) return e;
        if (VixError e = need_disk(h, "SpaceNeededForClone")) return e;
        if (!spaceNeeded) return fail(VIX_E_INVALID_ARG, "SpaceNeededForClone: spaceNeeded is NULL");
        std::string format = "vmdk", options;
        bool full = flat(cloneDiskType);
        vdkit_error e = make_error();
        if (cloneDiskType == VIXDISKLIB_DISK_UNKNOWN) {
            vdkit_disk_image_info info{};
            info.struct_size = sizeof info;
            if (vdkit_disk_get_image_info(h->disk, vdkit_disk_image_count(h->disk) - 1, &info, &e) != VDKIT_OK)
                return fail(e);
            format = info.format;
            if (*info.subformat && format == "vmdk") options = std::string("subformat=") + info.subformat;
            full = (info.flags & VDKIT_IMAGE_INFO_FIXED) != 0;
        } else {
            const char *sub = subformat(cloneDiskType);
            if (!sub)
                return fail(VIX_E_NOT_SUPPORTED,
                            "SpaceNeededForClone: vdkit cannot create disk type " + std::to_string(cloneDiskType));
            options = std::string("subformat=") + sub;
        }
        uint64_t required = 0, fully = 0;
        if (vdkit_library_measure(lib, format.c_str(), options.empty() ? nullptr : options.c_str(), h->disk, 0,
                                  &required, &fully, &e) != VDKIT_OK)
            return fail(e);
        *spaceNeeded = full ? fully : required;
        return VIX_OK;
    });
}

VIX_EXPORT VixError VixDiskLib_CheckRepair(const VixDiskLibConnection connection, const char *filename, Bool repair) {
    return guarded("CheckRepair", [&]() -> VixError {
        vdkit_library *lib;
        if (VixError e = need_library(lib, "CheckRepair")) return e;
        if (VixError e = need_connection(connection, filename, "CheckRepair")) return e;
        vdkit_disk *disk = nullptr;
        vdkit_error e = make_error();
        const uint32_t open_flags = VDKIT_DISK_SINGLE_LINK | (repair ? VDKIT_DISK_WRITE : 0u);
        if (vdkit_disk_open(lib, filename, nullptr, open_flags, nullptr, &disk, &e) != VDKIT_OK) return fail(e);
        vdkit_check_summary summary{};
        summary.struct_size = sizeof summary;
        VixError result = VIX_OK;
        if (vdkit_disk_check(disk, repair ? VDKIT_CHECK_REPAIR : 0u, on_finding, nullptr, &summary, &e) != VDKIT_OK)
            result = fail(e);
        vdkit_error ce = make_error();
        if (vdkit_disk_close(disk, &ce) != VDKIT_OK && result == VIX_OK) result = fail(ce);
        if (result == VIX_OK && summary.errors > 0)
            result = fail(VIX_E_DISK_NEEDSREPAIR,
                          std::string("CheckRepair: ") + filename + " has " + std::to_string(summary.errors) +
                              " error(s)" + (repair ? " left after repair" : "; repair = TRUE fixes what it can") +
                              " (the findings went to the log callback)");
        return result;
    });
}

} // extern "C"
