// VixDiskLib disk handles over vdkit_disk: open, info, sector I/O (sync and
// async), allocated blocks and metadata (docs/compat.md).
#include "vix_internal.hpp"

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

using namespace vix;

namespace {

// VMDK metadata is its disk database; VixDiskLib names the keys without the
// "ddb." prefix vdkit's VMDK plugin uses.
std::string to_vdkit_key(const VixDiskLibHandleStruct *h, const char *key) {
    return h->format == "vmdk" ? std::string("ddb.") + key : std::string(key);
}

bool names_raw(const std::string &path) {
    const auto dot = path.rfind('.');
    if (dot == std::string::npos || path.find('/', dot) != std::string::npos) return false;
    std::string ext = path.substr(dot + 1);
    for (auto &c : ext)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return ext == "img" || ext == "raw";
}

VixError check_handle(const VixDiskLibHandleStruct *h, const char *call) {
    if (!valid(h)) return fail(VIX_E_INVALID_ARG, std::string(call) + ": not an open disk handle");
    if (!h->disk)
        return fail(VIX_E_INVALID_ARG,
                    std::string(call) + ": this handle was attached below another disk; only Close is allowed");
    return VIX_OK;
}

// The disk's capacity in sectors: a size that is not a whole number of
// sectors ends in a partial sector, counted as GetInfo counts it.
uint64_t capacity_of(vdkit_disk *disk) {
    const uint64_t size = vdkit_disk_size(disk);
    return size / VIXDISKLIB_SECTOR_SIZE + (size % VIXDISKLIB_SECTOR_SIZE ? 1 : 0);
}

// [start, start+count) sectors as bytes, or an error when they pass the
// capacity. *inside gets how many of the bytes lie within the disk: all of
// them, except in a final partial sector, whose bytes past the disk's end
// read as zero and are not stored (as qemu treats an image whose size is not
// a whole number of sectors).
VixError byte_range(const VixDiskLibHandleStruct *h, uint64_t start, uint64_t count, uint64_t &offset, uint64_t &length,
                    uint64_t &inside, const char *call) {
    const uint64_t capacity = capacity_of(h->disk);
    const uint64_t end_sector = start + count;
    if (end_sector < start || end_sector > capacity || !sectors_to_bytes(start, offset) ||
        !sectors_to_bytes(count, length))
        return fail(VIX_E_DISK_OUTOFRANGE, std::string(call) + ": sectors " + std::to_string(start) + "+" +
                                               std::to_string(count) + " pass the end of " + h->location + " (" +
                                               std::to_string(capacity) + " sectors)");
    const uint64_t size = vdkit_disk_size(h->disk);
    inside = offset >= size ? 0 : std::min(length, size - offset);
    return VIX_OK;
}

// A VMware-style UUID text "xx xx xx xx xx xx xx xx-xx xx xx xx xx xx xx xx".
std::string vmware_uuid(const uint8_t *u) {
    static const char hex[] = "0123456789abcdef";
    std::string s;
    for (int i = 0; i < 16; ++i) {
        if (i) s += i == 8 ? '-' : ' ';
        s += hex[u[i] >> 4];
        s += hex[u[i] & 15];
    }
    return s;
}

bool all_zero(const uint8_t *u) {
    for (int i = 0; i < 16; ++i)
        if (u[i]) return false;
    return true;
}

struct AsyncOp {
    VixDiskLibCompletionCB cb;
    void *data;
    std::string what;
};

void async_done(void *opaque, vdkit_status status, const char *message) {
    std::unique_ptr<AsyncOp> op(static_cast<AsyncOp *>(opaque));
    const VixError err = from_status(status);
    if (err != VIX_OK) log_warn(op->what + ": " + message);
    if (op->cb) op->cb(op->data, err);
}

VixError submit(VixDiskLibHandle h, uint64_t start, uint64_t count, void *buf, const void *cbuf,
                VixDiskLibCompletionCB cb, void *data, const char *call) {
    if (VixError e = check_handle(h, call)) return e;
    uint64_t offset, length, inside;
    if (VixError e = byte_range(h, start, count, offset, length, inside, call)) return e;
    if (buf && inside < length) memset(static_cast<uint8_t *>(buf) + inside, 0, length - inside);
    length = inside;
    auto op = std::make_unique<AsyncOp>(AsyncOp{cb, data, std::string(call) + " of " + h->location});
    vdkit_error e = make_error();
    const vdkit_status st = buf ? vdkit_disk_aio_read(h->disk, offset, buf, length, async_done, op.get(), &e)
                                : vdkit_disk_aio_write(h->disk, offset, cbuf, length, async_done, op.get(), &e);
    if (st != VDKIT_OK) return fail(e);
    op.release(); // async_done owns it now
    return VIX_ASYNC;
}

} // namespace

extern "C" {

VIX_EXPORT VixError VixDiskLib_Open(const VixDiskLibConnection connection, const char *path, uint32 flags,
                                    VixDiskLibHandle *diskHandle) {
    try {
        if (!diskHandle || !path) return fail(VIX_E_INVALID_ARG, "Open: path or diskHandle is NULL");
        *diskHandle = nullptr;
        vdkit_library *lib = library();
        if (!lib) return fail(VIX_E_DISK_NOINIT, "Open before VixDiskLib_Init");
        if (!valid(connection)) return fail(VIX_E_DISK_INVALID_CONNECTION, "Open: not a connection");
        const std::string location = path;
        const char *mode = mode_of(location);
        if (!mode) return fail(VIX_E_NOT_SUPPORTED, "Open: no transport mode serves " + location);
        bool allowed = false;
        for (const auto &m : connection->modes)
            allowed = allowed || m == mode;
        if (!allowed) {
            std::string list;
            for (const auto &m : connection->modes)
                list += (list.empty() ? "" : ":") + m;
            return fail(VIX_E_NOT_SUPPORTED, "Open: " + location + " needs transport mode '" + mode +
                                                 "', which this connection does not allow ('" + list + "')");
        }
        const uint32_t known =
            VIXDISKLIB_FLAG_OPEN_UNBUFFERED | VIXDISKLIB_FLAG_OPEN_SINGLE_LINK | VIXDISKLIB_FLAG_OPEN_READ_ONLY;
        if (flags & ~known)
            log_info("Open: flags 0x" + std::to_string(flags & ~known) + " are not used by vdkit; ignored");
        uint32_t vflags = 0;
        if (!(flags & VIXDISKLIB_FLAG_OPEN_READ_ONLY) && !connection->read_only) vflags |= VDKIT_DISK_WRITE;
        if (flags & VIXDISKLIB_FLAG_OPEN_SINGLE_LINK) vflags |= VDKIT_DISK_SINGLE_LINK;
        if (flags & VIXDISKLIB_FLAG_OPEN_UNBUFFERED) vflags |= VDKIT_DISK_DIRECT;
        auto h = std::make_unique<VixDiskLibHandleStruct>();
        vdkit_error e = make_error();
        vdkit_status st = vdkit_disk_open(lib, path, nullptr, vflags, nullptr, &h->disk, &e);
        // VixDiskLib has no format argument. vdkit refuses to guess raw for
        // writing (a guess could be a container's bytes); a name that says
        // raw (.img, .raw) is taken as the format a VixDiskLib caller meant.
        if (st == VDKIT_E_PERMISSION && names_raw(location))
            st = vdkit_disk_open(lib, path, "raw", vflags, nullptr, &h->disk, &e);
        if (st != VDKIT_OK) return fail(e);
        h->connection = connection;
        h->location = location;
        h->mode = mode;
        h->single_link = (flags & VIXDISKLIB_FLAG_OPEN_SINGLE_LINK) != 0;
        h->open_flags = vflags;
        vdkit_disk_image_info info{};
        info.struct_size = sizeof info;
        if (vdkit_disk_get_image_info(h->disk, vdkit_disk_image_count(h->disk) - 1, &info, &e) != VDKIT_OK) {
            vdkit_disk_close(h->disk, nullptr);
            return fail(e);
        }
        h->format = info.format;
        ++connection->open_disks;
        remember(h.get());
        *diskHandle = h.release();
        return VIX_OK;
    } catch (const std::bad_alloc &) {
        return fail(VIX_E_OUT_OF_MEMORY, "Open: out of memory");
    } catch (...) {
        return fail(VIX_E_FAIL, "Open: internal error");
    }
}

VIX_EXPORT VixError VixDiskLib_Close(VixDiskLibHandle diskHandle) {
    if (!valid(diskHandle)) return fail(VIX_E_INVALID_ARG, "Close: not an open disk handle");
    forget(diskHandle);
    std::unique_ptr<VixDiskLibHandleStruct> h(diskHandle);
    h->magic = 0;
    --h->connection->open_disks;
    if (!h->disk) return VIX_OK; // attached below another disk: vdkit closed it then
    vdkit_error e = make_error();
    return vdkit_disk_close(h->disk, &e) == VDKIT_OK ? VixError{VIX_OK} : fail(e);
}

VIX_EXPORT const char *VixDiskLib_GetTransportMode(VixDiskLibHandle diskHandle) {
    return valid(diskHandle) ? diskHandle->mode : nullptr;
}

VIX_EXPORT VixError VixDiskLib_GetInfo(VixDiskLibHandle h, VixDiskLibInfo **out) {
    try {
        if (VixError e = check_handle(h, "GetInfo")) return e;
        if (!out) return fail(VIX_E_INVALID_ARG, "GetInfo: info is NULL");
        *out = nullptr;
        vdkit_disk_image_info info{};
        info.struct_size = sizeof info;
        vdkit_error e = make_error();
        const uint32_t links = vdkit_disk_image_count(h->disk);
        if (vdkit_disk_get_image_info(h->disk, links - 1, &info, &e) != VDKIT_OK) return fail(e);
        auto *r = static_cast<VixDiskLibInfo *>(calloc(1, sizeof(VixDiskLibInfo)));
        if (!r) return fail(VIX_E_OUT_OF_MEMORY, "GetInfo: out of memory");
        r->physGeo = {info.pchs.cylinders, info.pchs.heads, info.pchs.sectors};
        r->biosGeo = info.lchs.cylinders ? VixDiskLibGeometry{info.lchs.cylinders, info.lchs.heads, info.lchs.sectors}
                                         : r->physGeo;
        r->capacity = capacity_of(h->disk);
        r->numLinks = static_cast<int>(links);
        r->adapterType = VIXDISKLIB_ADAPTER_UNKNOWN;
        char value[256];
        if (h->format == "vmdk" &&
            vdkit_disk_metadata_get(h->disk, "ddb.adapterType", value, sizeof value, nullptr, nullptr) == VDKIT_OK) {
            const std::string a = value;
            r->adapterType = a == "ide"        ? VIXDISKLIB_ADAPTER_IDE
                             : a == "buslogic" ? VIXDISKLIB_ADAPTER_SCSI_BUSLOGIC
                             : a == "lsilogic" ? VIXDISKLIB_ADAPTER_SCSI_LSILOGIC
                                               : VIXDISKLIB_ADAPTER_UNKNOWN;
        }
        if (*info.parent_location) r->parentFileNameHint = strdup(info.parent_location);
        if (h->format == "vmdk" &&
            vdkit_disk_metadata_get(h->disk, "ddb.uuid", value, sizeof value, nullptr, nullptr) == VDKIT_OK)
            r->uuid = strdup(value);
        else if (!all_zero(info.uuid))
            r->uuid = strdup(vmware_uuid(info.uuid).c_str());
        *out = r;
        return VIX_OK;
    } catch (const std::bad_alloc &) {
        return fail(VIX_E_OUT_OF_MEMORY, "GetInfo: out of memory");
    }
}

VIX_EXPORT void VixDiskLib_FreeInfo(VixDiskLibInfo *info) {
    if (!info) return;
    free(info->parentFileNameHint);
    free(info->uuid);
    free(info);
}

VIX_EXPORT VixError VixDiskLib_Read(VixDiskLibHandle h, VixDiskLibSectorType startSector,
                                    VixDiskLibSectorType numSectors, uint8 *readBuffer) {
    if (VixError e = check_handle(h, "Read")) return e;
    if (!readBuffer) return fail(VIX_E_INVALID_ARG, "Read: readBuffer is NULL");
    uint64_t offset, length, inside;
    if (VixError e = byte_range(h, startSector, numSectors, offset, length, inside, "Read")) return e;
    if (inside < length) memset(readBuffer + inside, 0, length - inside);
    vdkit_error e = make_error();
    return !inside || vdkit_disk_read(h->disk, offset, readBuffer, inside, &e) == VDKIT_OK ? VixError{VIX_OK} : fail(e);
}

VIX_EXPORT VixError VixDiskLib_Write(VixDiskLibHandle h, VixDiskLibSectorType startSector,
                                     VixDiskLibSectorType numSectors, const uint8 *writeBuffer) {
    if (VixError e = check_handle(h, "Write")) return e;
    if (!writeBuffer) return fail(VIX_E_INVALID_ARG, "Write: writeBuffer is NULL");
    uint64_t offset, length, inside;
    if (VixError e = byte_range(h, startSector, numSectors, offset, length, inside, "Write")) return e;
    vdkit_error e = make_error();
    return !inside || vdkit_disk_write(h->disk, offset, writeBuffer, inside, &e) == VDKIT_OK ? VixError{VIX_OK}
                                                                                             : fail(e);
}

VIX_EXPORT VixError VixDiskLib_ReadAsync(VixDiskLibHandle h, VixDiskLibSectorType startSector,
                                         VixDiskLibSectorType numSectors, uint8 *readBuffer,
                                         VixDiskLibCompletionCB callback, void *cbData) {
    try {
        if (!readBuffer) return fail(VIX_E_INVALID_ARG, "ReadAsync: readBuffer is NULL");
        return submit(h, startSector, numSectors, readBuffer, nullptr, callback, cbData, "ReadAsync");
    } catch (const std::bad_alloc &) {
        return fail(VIX_E_OUT_OF_MEMORY, "ReadAsync: out of memory");
    }
}

VIX_EXPORT VixError VixDiskLib_WriteAsync(VixDiskLibHandle h, VixDiskLibSectorType startSector,
                                          VixDiskLibSectorType numSectors, const uint8 *writeBuffer,
                                          VixDiskLibCompletionCB callback, void *cbData) {
    try {
        if (!writeBuffer) return fail(VIX_E_INVALID_ARG, "WriteAsync: writeBuffer is NULL");
        return submit(h, startSector, numSectors, nullptr, writeBuffer, callback, cbData, "WriteAsync");
    } catch (const std::bad_alloc &) {
        return fail(VIX_E_OUT_OF_MEMORY, "WriteAsync: out of memory");
    }
}

VIX_EXPORT VixError VixDiskLib_Wait(VixDiskLibHandle h) {
    if (VixError e = check_handle(h, "Wait")) return e;
    vdkit_error e = make_error();
    return vdkit_disk_aio_drain(h->disk, &e) == VDKIT_OK ? VixError{VIX_OK} : fail(e);
}

VIX_EXPORT VixError VixDiskLib_Flush(VixDiskLibHandle h) {
    if (VixError e = check_handle(h, "Flush")) return e;
    vdkit_error e = make_error();
    if (vdkit_disk_aio_drain(h->disk, &e) != VDKIT_OK) return fail(e);
    return vdkit_disk_flush(h->disk, &e) == VDKIT_OK ? VixError{VIX_OK} : fail(e);
}

VIX_EXPORT VixError VixDiskLib_QueryAllocatedBlocks(VixDiskLibHandle h, VixDiskLibSectorType startSector,
                                                    VixDiskLibSectorType numSectors, VixDiskLibSectorType chunkSize,
                                                    VixDiskLibBlockList **blockList) {
    try {
        if (VixError e = check_handle(h, "QueryAllocatedBlocks")) return e;
        if (!blockList) return fail(VIX_E_INVALID_ARG, "QueryAllocatedBlocks: blockList is NULL");
        *blockList = nullptr;
        if (chunkSize < VIXDISKLIB_MIN_CHUNK_SIZE || startSector % chunkSize || numSectors % chunkSize ||
            numSectors == 0 || numSectors / chunkSize > VIXDISKLIB_MAX_CHUNK_NUMBER)
            return fail(VIX_E_INVALID_ARG,
                        "QueryAllocatedBlocks: chunkSize must be at least " +
                            std::to_string(VIXDISKLIB_MIN_CHUNK_SIZE) +
                            " sectors, startSector and numSectors (not 0) multiples of it, and at most " +
                            std::to_string(VIXDISKLIB_MAX_CHUNK_NUMBER) + " chunks");
        // The last chunk may pass the end of a disk whose size is not a
        // multiple of the chunk; the query stops at the disk's end.
        const uint64_t size = vdkit_disk_size(h->disk);
        const uint64_t capacity = capacity_of(h->disk);
        const uint64_t end_sector = startSector + numSectors;
        if (end_sector < startSector || startSector >= capacity ||
            (end_sector > capacity && end_sector - capacity >= chunkSize))
            return fail(VIX_E_DISK_OUTOFRANGE, "QueryAllocatedBlocks: sectors " + std::to_string(startSector) + "+" +
                                                   std::to_string(numSectors) + " pass the end of " + h->location +
                                                   " (" + std::to_string(capacity) + " sectors)");
        std::vector<VixDiskLibBlock> blocks;
        uint64_t pos = startSector * VIXDISKLIB_SECTOR_SIZE;
        const uint64_t end = std::min(end_sector * VIXDISKLIB_SECTOR_SIZE, size);
        const uint64_t chunk = chunkSize * VIXDISKLIB_SECTOR_SIZE;
        vdkit_error e = make_error();
        while (pos < end) {
            uint32_t st = 0;
            uint64_t run = 0;
            if (vdkit_disk_block_status(h->disk, pos, end - pos, &st, &run, &e) != VDKIT_OK) return fail(e);
            // Data is allocated; a zeroed block of a single link shadows its
            // parent, so a backup of that link must see it too.
            if (st == VDKIT_BLOCK_DATA || (h->single_link && st == VDKIT_BLOCK_ZERO)) {
                const uint64_t first = pos / chunk * chunk / VIXDISKLIB_SECTOR_SIZE;
                const uint64_t last =
                    std::min(((pos + run + chunk - 1) / chunk * chunk) / VIXDISKLIB_SECTOR_SIZE, end_sector);
                if (!blocks.empty() && blocks.back().offset + blocks.back().length >= first) {
                    auto &b = blocks.back();
                    b.length = std::max(b.offset + b.length, last) - b.offset;
                } else {
                    blocks.push_back({first, last - first});
                }
            }
            pos += run;
        }
        const size_t bytes =
            offsetof(VixDiskLibBlockList, blocks) + std::max<size_t>(blocks.size(), 1) * sizeof(VixDiskLibBlock);
        auto *list = static_cast<VixDiskLibBlockList *>(calloc(1, bytes));
        if (!list) return fail(VIX_E_OUT_OF_MEMORY, "QueryAllocatedBlocks: out of memory");
        list->numBlocks = static_cast<uint32>(blocks.size());
        if (!blocks.empty()) memcpy(list->blocks, blocks.data(), blocks.size() * sizeof(VixDiskLibBlock));
        *blockList = list;
        return VIX_OK;
    } catch (const std::bad_alloc &) {
        return fail(VIX_E_OUT_OF_MEMORY, "QueryAllocatedBlocks: out of memory");
    }
}

VIX_EXPORT VixError VixDiskLib_FreeBlockList(VixDiskLibBlockList *blockList) {
    free(blockList);
    return VIX_OK;
}

VIX_EXPORT VixError VixDiskLib_ReadMetadata(VixDiskLibHandle h, const char *key, char *buf, size_t bufLen,
                                            size_t *requiredLen) {
    try {
        if (VixError e = check_handle(h, "ReadMetadata")) return e;
        if (!key) return fail(VIX_E_INVALID_ARG, "ReadMetadata: key is NULL");
        const std::string k = to_vdkit_key(h, key);
        uint64_t needed = 0;
        vdkit_error e = make_error();
        const vdkit_status st = vdkit_disk_metadata_get(h->disk, k.c_str(), nullptr, 0, &needed, &e);
        if (st == VDKIT_E_NOT_FOUND)
            return fail(VIX_E_DISK_KEY_NOTFOUND, std::string("ReadMetadata: no key '") + key + "' in " + h->location);
        if (st != VDKIT_OK) return fail(e);
        if (requiredLen) *requiredLen = needed + 1;
        if (!buf || bufLen < needed + 1)
            return fail(VIX_E_BUFFER_TOOSMALL, std::string("ReadMetadata: the value of '") + key + "' needs " +
                                                   std::to_string(needed + 1) + " bytes");
        return vdkit_disk_metadata_get(h->disk, k.c_str(), buf, bufLen, nullptr, &e) == VDKIT_OK ? VixError{VIX_OK}
                                                                                                 : fail(e);
    } catch (const std::bad_alloc &) {
        return fail(VIX_E_OUT_OF_MEMORY, "ReadMetadata: out of memory");
    }
}

VIX_EXPORT VixError VixDiskLib_WriteMetadata(VixDiskLibHandle h, const char *key, const char *val) {
    try {
        if (VixError e = check_handle(h, "WriteMetadata")) return e;
        if (!key || !val) return fail(VIX_E_INVALID_ARG, "WriteMetadata: key or value is NULL");
        vdkit_error e = make_error();
        return vdkit_disk_metadata_set(h->disk, to_vdkit_key(h, key).c_str(), val, &e) == VDKIT_OK ? VixError{VIX_OK}
                                                                                                   : fail(e);
    } catch (const std::bad_alloc &) {
        return fail(VIX_E_OUT_OF_MEMORY, "WriteMetadata: out of memory");
    }
}

VIX_EXPORT VixError VixDiskLib_GetMetadataKeys(VixDiskLibHandle h, char *keys, size_t maxLen, size_t *requiredLen) {
    try {
        if (VixError e = check_handle(h, "GetMetadataKeys")) return e;
        uint64_t needed = 0;
        vdkit_error e = make_error();
        if (vdkit_disk_metadata_keys(h->disk, nullptr, 0, &needed, &e) != VDKIT_OK) return fail(e);
        std::string list(needed, '\0');
        if (needed && vdkit_disk_metadata_keys(h->disk, list.data(), needed, &needed, &e) != VDKIT_OK) return fail(e);
        // Strip VMDK's "ddb." prefix from each key.
        std::string out;
        for (size_t at = 0; at < list.size() && list[at];) {
            std::string k = list.c_str() + at;
            at += k.size() + 1;
            if (h->format == "vmdk" && k.rfind("ddb.", 0) == 0) k = k.substr(4);
            out += k;
            out += '\0';
        }
        out += '\0';
        if (requiredLen) *requiredLen = out.size();
        if (!keys || maxLen < out.size())
            return fail(VIX_E_BUFFER_TOOSMALL,
                        "GetMetadataKeys: the list needs " + std::to_string(out.size()) + " bytes");
        memcpy(keys, out.data(), out.size());
        return VIX_OK;
    } catch (const std::bad_alloc &) {
        return fail(VIX_E_OUT_OF_MEMORY, "GetMetadataKeys: out of memory");
    }
}

} // extern "C"
