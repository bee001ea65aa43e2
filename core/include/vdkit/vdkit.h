/// @file vdkit/vdkit.h
/// @brief The C API of the vdkit library, for embedders (docs/api.md maps
/// VirtualBox VD and VixDiskLib calls to it).
///
/// Objects: a vdkit_library (plugins + configuration) and vdkit_disk handles
/// (an opened chain of images) created from it. Nothing here throws, aborts
/// or calls exit().
///
/// Units: offsets, lengths and sizes are bytes unless a name says otherwise
/// (no call counts sectors; vdkit_disk_image_info::sector_size is 512).
///
/// Errors: every function returning vdkit_status returns VDKIT_OK or a
/// VDKIT_E_* code (vdkit/status.h) and fills the optional vdkit_error the
/// caller passed with the code and a message naming what failed and where.
/// Besides the codes each function lists, any of them may return
/// VDKIT_E_NO_MEMORY (an allocation failed) and VDKIT_E_INTERNAL (a bug or a
/// plugin that broke its contract), and VDKIT_E_INVALID_ARGUMENT when a
/// required pointer is NULL or the disk was closed.
///
/// Ownership: handles returned through out-parameters belong to the caller
/// and are released with the matching _close function. Strings passed in are
/// copied; strings passed out are written into caller buffers, except the
/// image-info strings, which the disk handle owns until it is closed.
///
/// Thread-safety: a library handle may be shared by threads. A disk handle
/// may be used by several threads at once (reads run concurrently; writes
/// and metadata changes are serialised). Close a disk before its library.
/// Callbacks (progress, completion, findings, log) may run on threads the
/// library owns; none may close the handle it reports on.
#ifndef VDKIT_VDKIT_H
#define VDKIT_VDKIT_H

#include "vdkit/constants.h" /* VDKIT_KIND_*, VDKIT_BLOCK_*, VDKIT_CHECK_*, VDKIT_FINDING_* */
#include "vdkit/export.h"
#include "vdkit/status.h"
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vdkit_library vdkit_library;
typedef struct vdkit_disk vdkit_disk;

/// Error details; set struct_size = sizeof(vdkit_error) before passing it
/// (a smaller value: the struct is left alone). Owned by the caller.
typedef struct vdkit_error {
    uint32_t struct_size;
    vdkit_status code;
    char message[1024]; /* NUL-terminated, truncated if longer */
} vdkit_error;

/// Short stable text for a code, e.g. "I/O error" (VixDiskLib_GetErrorText).
/// @return a static string, never NULL ("unknown status" for a code this
///         library does not know); never freed. Thread-safe.
VDKIT_API const char *vdkit_status_text(vdkit_status code);

/* ---- library ---- */
/**
 * Receives the library's diagnostics (the warnings and errors it would
 * otherwise print on stderr, and what plugins log).
 *
 * @param opaque  vdkit_library_options::log_opaque, passed through.
 * @param level   VDKIT_LOG_ERROR (0), VDKIT_LOG_WARNING (1), VDKIT_LOG_INFO (2) or VDKIT_LOG_DEBUG (3).
 * @param message NUL-terminated, without a trailing newline; valid during the call only.
 *
 * Thread-safety: called from whichever thread logs (a caller's thread or a
 * disk's worker), possibly from several at once: make it thread-safe. It
 * must not call back into the library.
 */
typedef void (*vdkit_log_fn)(void *opaque, uint32_t level, const char *message);

#ifndef VDKIT_LOG_ERROR /* the same values as vdkit/plugin.h */
#define VDKIT_LOG_ERROR 0u
#define VDKIT_LOG_WARNING 1u
#define VDKIT_LOG_INFO 2u
#define VDKIT_LOG_DEBUG 3u
#endif

/** Options of vdkit_library_open. Size-stamped and append-only: set
 *  struct_size = sizeof(vdkit_library_options); fields an older caller's
 *  struct lacks take their defaults (zero). */
typedef struct vdkit_library_options {
    uint32_t struct_size;
    uint32_t flags;          /* VDKIT_LIB_* */
    const char *config_file; /* NULL: $VDKIT_CONFIG or built-in defaults */
    /* ':'-separated directories searched first; an entry naming a plugin
     * library file (*.so) loads that file; may be NULL */
    const char *plugin_path;
    /* ---- appended (log callback) ---- */
    vdkit_log_fn log;   /* NULL: diagnostics go to stderr (unless VDKIT_LIB_QUIET) */
    void *log_opaque;   /* passed to log */
    uint32_t log_level; /* with VDKIT_LIB_LOG_LEVEL: the most verbose VDKIT_LOG_* delivered */
    uint32_t _reserved; /* zero */
} vdkit_library_options;

#define VDKIT_LIB_NO_ENV_PATH (1u << 0)    /* ignore VDKIT_PLUGIN_PATH */
#define VDKIT_LIB_NO_INSTALL_DIR (1u << 1) /* do not search the install directory */
#define VDKIT_LIB_QUIET (1u << 2)          /* no diagnostics on stderr (ignored when log is set) */
#define VDKIT_LIB_LOG_LEVEL (1u << 3)      /* log_level is set; else the config's level (default: warning) */

/// Open a library: read the configuration and load the plugins of every
/// plugin directory (VDInit + VDCreate, VixDiskLib_InitEx). Plugins that
/// fail to load are skipped with a warning (to the log callback).
///
/// @param options may be NULL (defaults); copied, not kept, except the log
///        callback and its opaque pointer, used until vdkit_library_close.
/// @param out gets the new handle, owned by the caller (vdkit_library_close).
///
/// Thread-safety: any number of libraries may be opened concurrently.
/// @return VDKIT_OK; VDKIT_E_CONFIG when the configuration file cannot be
///         read or is invalid (the message names file, line and key);
///         VDKIT_E_INVALID_ARGUMENT when out is NULL or log_level is not a
///         VDKIT_LOG_* level.
VDKIT_API vdkit_status vdkit_library_open(const vdkit_library_options *options, vdkit_library **out, vdkit_error *err);
/// Free a library (VDShutdown, VixDiskLib_Exit). Close its disks first; NULL
/// is ignored. Plugin files are unloaded once nothing uses them. Not to be
/// called while another thread uses lib.
VDKIT_API void vdkit_library_close(vdkit_library *lib);

/// One loaded plugin (vdkit_plugin_get). kind is VDKIT_KIND_* from
/// vdkit/plugin.h (1 format, 2 filter, 3 transport). Size-stamped.
typedef struct vdkit_plugin_summary {
    uint32_t struct_size;
    uint32_t kind;
    uint64_t capabilities;
    char name[64];
    char version[64];
} vdkit_plugin_summary;
/// How many plugins are registered now (VDBackendInfo); 0 for NULL. The
/// number changes with vdkit_plugin_load / vdkit_plugin_unload. Thread-safe.
VDKIT_API uint32_t vdkit_plugin_count(const vdkit_library *lib);
/// Describe plugin `index` (0 .. vdkit_plugin_count-1) into *out, which the
/// caller owns; set out->struct_size first (at most that much is written).
/// Thread-safe.
/// @return VDKIT_OK; VDKIT_E_INVALID_ARGUMENT when lib or out is NULL;
///         VDKIT_E_OUT_OF_RANGE when index is not below the count.
VDKIT_API vdkit_status vdkit_plugin_get(const vdkit_library *lib, uint32_t index, vdkit_plugin_summary *out,
                                        vdkit_error *err);

/* ---- disks ---- */
#define VDKIT_DISK_WRITE (1u << 0)       /* open read-write */
#define VDKIT_DISK_NOLOCK (1u << 1)      /* do not take the advisory lock */
#define VDKIT_DISK_NO_PARENTS (1u << 2)  /* open only the named image, not its chain */
#define VDKIT_DISK_FIXED (1u << 3)       /* create: preallocate */
#define VDKIT_DISK_OVERWRITE (1u << 4)   /* create: replace an existing file */
#define VDKIT_DISK_WRITE_CHAIN (1u << 5) /* with WRITE: every image of the chain writable (merge, commit) */
#define VDKIT_DISK_FORCE_SHARE                                                                                         \
    (1u << 6) /* read an image in use (qemu-img -U): no image lock taken or tested                                     \
                 on any file of the chain; refused with WRITE (OpenOptions::force_share) */
/* ---- open flags VirtualBox (VD_OPEN_FLAGS_*) and VixDiskLib (VIXDISKLIB_FLAG_OPEN_*) offer ----
 * (The VDKIT_OPEN_* names belong to the plugin ABI in vdkit/plugin.h, with
 * other values; vdkit_disk_open takes these VDKIT_DISK_* bits.) */
/* The default: no WRITE bit (VD_OPEN_FLAGS_READONLY, VIXDISKLIB_FLAG_OPEN_READ_ONLY). */
#define VDKIT_DISK_READ_ONLY 0u
#define VDKIT_DISK_SINGLE_LINK VDKIT_DISK_NO_PARENTS /* only the named image (VIXDISKLIB_FLAG_OPEN_SINGLE_LINK) */
/* Bypass the host page cache (VIXDISKLIB_FLAG_OPEN_UNBUFFERED, qemu cache=none): every
 * image's transport opens with its `direct` option (the file transport: O_DIRECT); VDKIT_E_NOT_SUPPORTED
 * when the transport has none or the file system refuses O_DIRECT (OpenOptions::direct). */
#define VDKIT_DISK_DIRECT (1u << 7)
/* Metadata only (VD_OPEN_FLAGS_INFO): vdkit_disk_get_image_info, metadata and comments work; read,
 * block status, copy and aio reads fail with VDKIT_E_NOT_SUPPORTED; refused with WRITE
 * (OpenOptions::info_only). */
#define VDKIT_DISK_INFO (1u << 8)

/// Open the image at location and, unless VDKIT_DISK_NO_PARENTS, its chain
/// of parents (VDOpen, VixDiskLib_Open).
///
/// @param location a path or a "scheme://" URL of a loaded transport; copied.
/// @param format NULL or "": probe; else a format plugin's name.
/// @param flags VDKIT_DISK_* (WRITE, NOLOCK, NO_PARENTS/SINGLE_LINK,
///        WRITE_CHAIN, FORCE_SHARE, DIRECT, INFO).
/// @param options "key=value,key=value" for the format, or NULL.
/// @param out gets the disk, owned by the caller (vdkit_disk_close).
///
/// Thread-safety: safe with other opens and with any call on lib.
/// @return VDKIT_OK; VDKIT_E_NOT_FOUND (no such file, parent or format);
///         VDKIT_E_BUSY (an image is locked by another writer);
///         VDKIT_E_CORRUPT (a damaged image); VDKIT_E_PARENT_MISMATCH (a
///         chain link does not verify); VDKIT_E_PERMISSION (a parent or
///         extent path breaks the path rule); VDKIT_E_AMBIGUOUS (probing tied);
///         VDKIT_E_CONFIG (bad options); VDKIT_E_NOT_SUPPORTED (DIRECT on a
///         transport or file system without it); VDKIT_E_INVALID_ARGUMENT
///         (FORCE_SHARE or INFO with WRITE, NULL arguments); VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_disk_open(vdkit_library *lib, const char *location, const char *format, uint32_t flags,
                                       const char *options, vdkit_disk **out, vdkit_error *err);
/// Create an image and open it for writing (VDCreateBase, VDCreateDiff,
/// VixDiskLib_Create, VixDiskLib_CreateChild).
///
/// @param format a format plugin's name (required).
/// @param size virtual size in bytes; with a parent, 0 means the parent's.
/// @param flags VDKIT_DISK_FIXED (preallocate), VDKIT_DISK_OVERWRITE.
/// @param options the format's create options "key=value,…", or NULL.
/// @param parent NULL, or the location of the image to build a
///        differencing image over (opened read-only with its chain).
/// @param out gets the disk (writable), owned by the caller.
///
/// Thread-safety: as vdkit_disk_open.
/// @return VDKIT_OK; VDKIT_E_EXISTS (location exists, without OVERWRITE);
///         VDKIT_E_NOT_FOUND (format or parent); VDKIT_E_NOT_SUPPORTED (the
///         format cannot create this kind of image); VDKIT_E_CONFIG;
///         VDKIT_E_PERMISSION (path rule); VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_disk_create(vdkit_library *lib, const char *location, const char *format, uint64_t size,
                                         uint32_t flags, const char *options, const char *parent, vdkit_disk **out,
                                         vdkit_error *err);
/// As vdkit_disk_open, with a filter stack (VDFilterAdd, chosen at open):
/// file-level filters (capability file-filter) over every file of the image
/// and of its parent chain, the first nearest the file; disk-level filters
/// (capability disk-filter, e.g. crypt) between the whole chain and the
/// caller, the first nearest the chain. One list holds both kinds.
/// @param filters a NULL-terminated array of "NAME" or
///        "NAME:key=value,key=value" specs (at most 64); NULL or an empty
///        array: none. Copied.
/// @return as vdkit_disk_open; also VDKIT_E_NOT_FOUND for a filter that is
///         not loaded and VDKIT_E_INVALID_ARGUMENT for a malformed spec.
VDKIT_API vdkit_status vdkit_disk_open_filtered(vdkit_library *lib, const char *location, const char *format,
                                                uint32_t flags, const char *options, const char *const *filters,
                                                vdkit_disk **out, vdkit_error *err);
/// As vdkit_disk_create, the new image's files written through `filters`
/// (and its parent chain read through them); see vdkit_disk_open_filtered.
/// @return as vdkit_disk_create and vdkit_disk_open_filtered.
VDKIT_API vdkit_status vdkit_disk_create_filtered(vdkit_library *lib, const char *location, const char *format,
                                                  uint64_t size, uint32_t flags, const char *options,
                                                  const char *parent, const char *const *filters, vdkit_disk **out,
                                                  vdkit_error *err);
/// Wait for submitted asynchronous operations, flush and close every image,
/// and free the handle (VDClose, VixDiskLib_Close). The handle is gone even
/// when an error is returned; NULL is OK. Strings from
/// vdkit_disk_get_image_info die with it. No other call on disk may run.
/// @return VDKIT_OK; the first error of a flush or close (VDKIT_E_IO, ...).
VDKIT_API vdkit_status vdkit_disk_close(vdkit_disk *disk, vdkit_error *err);

/// Virtual size in bytes (VDGetSize); 0 for NULL. Thread-safe.
VDKIT_API uint64_t vdkit_disk_size(const vdkit_disk *disk);
/// Images in the chain, the base and its descendants (VDGetCount); 0 for NULL. Thread-safe.
VDKIT_API uint32_t vdkit_disk_image_count(const vdkit_disk *disk);
/// Read len bytes at byte offset into buf (caller-owned, len bytes) through
/// the chain (VDRead, VixDiskLib_Read). Runs concurrently with other reads.
/// @return VDKIT_OK; VDKIT_E_OUT_OF_RANGE when [offset, offset+len) passes
///         the end; VDKIT_E_NOT_SUPPORTED on a disk opened VDKIT_DISK_INFO;
///         VDKIT_E_CORRUPT; VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_disk_read(vdkit_disk *disk, uint64_t offset, void *buf, uint64_t len, vdkit_error *err);
/// Write len bytes from buf at byte offset into the top image (VDWrite,
/// VixDiskLib_Write); the copy-on-write fill of partial blocks is done here.
/// Serialised with other writes.
/// @return VDKIT_OK; VDKIT_E_READ_ONLY (opened without VDKIT_DISK_WRITE);
///         VDKIT_E_OUT_OF_RANGE; VDKIT_E_NO_MEMORY (the image is full);
///         VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_disk_write(vdkit_disk *disk, uint64_t offset, const void *buf, uint64_t len,
                                        vdkit_error *err);
/// Make [offset, offset+len) (bytes) read as zero, persistently where the
/// format records zero ranges. Errors as vdkit_disk_write.
VDKIT_API vdkit_status vdkit_disk_write_zeroes(vdkit_disk *disk, uint64_t offset, uint64_t len, vdkit_error *err);
/// Give [offset, offset+len) (bytes) of the top image back (VDDiscardRanges);
/// afterwards it reads as zero or as the parent's data (a format without
/// discard keeps the data). Errors as vdkit_disk_write.
VDKIT_API vdkit_status vdkit_disk_discard(vdkit_disk *disk, uint64_t offset, uint64_t len, vdkit_error *err);
/// Make what was written durable (VDFlush). Serialised with writes.
/// @return VDKIT_OK; VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_disk_flush(vdkit_disk *disk, vdkit_error *err);

/// Allocation of the run starting at byte offset (VDQueryRegions,
/// VixDiskLib QueryAllocatedBlocks): *state gets VDKIT_BLOCK_DATA, _ZERO or
/// _UNALLOCATED (vdkit/plugin.h), resolved through the chain, and *run its
/// length in bytes (1..len). Runs concurrently with reads.
/// @return VDKIT_OK; VDKIT_E_INVALID_ARGUMENT for len 0 or NULL outputs;
///         VDKIT_E_OUT_OF_RANGE; VDKIT_E_NOT_SUPPORTED (VDKIT_DISK_INFO);
///         VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_disk_block_status(vdkit_disk *disk, uint64_t offset, uint64_t len, uint32_t *state,
                                               uint64_t *run, vdkit_error *err);

/// Read a metadata value of the top image (VixDiskLib_ReadMetadata): written
/// NUL-terminated into buf (cap bytes, caller-owned; truncated when longer);
/// *needed (may be NULL) gets the full length in bytes without the NUL.
/// @return VDKIT_OK; VDKIT_E_NOT_FOUND (no such key); VDKIT_E_NOT_SUPPORTED
///         (the format has no key/value metadata); VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_disk_metadata_get(vdkit_disk *disk, const char *key, char *buf, uint64_t cap,
                                               uint64_t *needed, vdkit_error *err);
/// Set a metadata value of the top image (VixDiskLib_WriteMetadata); key and
/// value are copied. Serialised with writes.
/// @return VDKIT_OK; VDKIT_E_READ_ONLY; VDKIT_E_INVALID_ARGUMENT (a key or
///         value the format cannot hold, e.g. VMDK keys are "ddb.NAME");
///         VDKIT_E_NOT_SUPPORTED; VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_disk_metadata_set(vdkit_disk *disk, const char *key, const char *value, vdkit_error *err);

/// Progress of a long operation: done and total in bytes (of source data for
/// copies). Return non-zero to cancel (the call fails with
/// VDKIT_E_CANCELLED). Called from one thread at a time, not always the
/// caller's (a copy's workers report).
typedef int (*vdkit_progress_fn)(void *opaque, uint64_t done, uint64_t total);
/// Copy src's virtual content into dst, which is at least as large (VDCopy,
/// VixDiskLib_Clone), driven by src's allocation: unallocated and zero
/// ranges are not read. progress may be NULL. src and dst must not be used
/// by other threads meanwhile.
/// @return VDKIT_OK; VDKIT_E_INVALID_ARGUMENT (dst smaller, NULL handles);
///         VDKIT_E_READ_ONLY (dst not writable); VDKIT_E_CANCELLED;
///         VDKIT_E_NOT_SUPPORTED (src opened VDKIT_DISK_INFO); VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_disk_copy(vdkit_library *lib, vdkit_disk *src, vdkit_disk *dst, vdkit_progress_fn progress,
                                       void *opaque, vdkit_error *err);

/// The copy pipeline's settings (CopyOptions in vdkit.hpp). Size-stamped:
/// set struct_size = sizeof(vdkit_copy_options); fields a caller's older
/// struct lacks take their defaults.
typedef struct vdkit_copy_options {
    uint32_t struct_size;
    uint32_t threads;           /* CopyOptions::threads: 0: one per processor, 2..4; else 1..64, all run */
    uint32_t flags;             /* VDKIT_COPY_* */
    uint32_t same_up_to;        /* with VDKIT_COPY_SAME_UP_TO: CopyOptions::same_up_to */
    vdkit_progress_fn progress; /* may be NULL */
    void *opaque;
} vdkit_copy_options;
#define VDKIT_COPY_OUT_OF_ORDER (1u << 0) /* writes may land in any order (qemu-img convert -W) */
#define VDKIT_COPY_TARGET_DIRTY (1u << 1) /* the target may hold data: write zero ranges too */
#define VDKIT_COPY_SAME_UP_TO (1u << 2)   /* dst's parent chain reads as src's images 0..same_up_to */
/// For copying into an existing chain (VDCopyEx): *index gets the index of
/// src's image whose UUID is that of the image just below dst's top (what
/// VDKIT_COPY_SAME_UP_TO takes). Thread-safe with reads.
/// @return VDKIT_OK; VDKIT_E_NOT_FOUND when no image of src matches.
VDKIT_API vdkit_status vdkit_disk_common_image(vdkit_disk *src, vdkit_disk *dst, uint32_t *index, vdkit_error *err);
/// vdkit_disk_copy with settings (VDCopyEx); options may be NULL (defaults)
/// and is read during the call only.
/// @return as vdkit_disk_copy; VDKIT_E_INVALID_ARGUMENT also when
///         options->struct_size is too small.
VDKIT_API vdkit_status vdkit_disk_copy_ex(vdkit_library *lib, vdkit_disk *src, vdkit_disk *dst,
                                          const vdkit_copy_options *options, vdkit_error *err);

/// qemu-img measure / VixDiskLib_SpaceNeededForClone: the bytes a new image
/// of `format` (create options "key=value,…" or NULL) would take on its
/// medium holding src's data, from src's allocation map (nothing is read);
/// src NULL: an empty image of `size` bytes. *required gets the sparse
/// size, *fully_allocated the preallocated one; either may be NULL.
/// Thread-safe.
/// @return VDKIT_OK; VDKIT_E_NOT_FOUND (format); VDKIT_E_NOT_SUPPORTED (the
///         format cannot tell); VDKIT_E_CONFIG (options).
VDKIT_API vdkit_status vdkit_library_measure(vdkit_library *lib, const char *format, const char *options,
                                             vdkit_disk *src, uint64_t size, uint64_t *required,
                                             uint64_t *fully_allocated, vdkit_error *err);

/// Compact the top image (VDCompact, VixDiskLib_Shrink + Defragment): blocks
/// that read as the chain below or as zero are given back and the file is
/// shortened; content is unchanged. Serialised with writes.
/// @return VDKIT_OK; VDKIT_E_READ_ONLY; VDKIT_E_NOT_SUPPORTED (the format
///         cannot compact); VDKIT_E_CANCELLED; VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_disk_compact(vdkit_disk *disk, vdkit_progress_fn progress, void *opaque, vdkit_error *err);

#define VDKIT_DISK_RESIZE_SHRINK (1u << 0) /* allow making the disk smaller */
/// Change the virtual size of the top image to new_size bytes (VDResize,
/// VixDiskLib_Grow); smaller only with VDKIT_DISK_RESIZE_SHRINK. Serialised
/// with writes.
/// @return VDKIT_OK; VDKIT_E_READ_ONLY; VDKIT_E_INVALID_ARGUMENT (shrinking
///         without the flag, a size the format cannot hold);
///         VDKIT_E_NOT_SUPPORTED; VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_disk_resize(vdkit_disk *disk, uint64_t new_size, uint32_t flags, vdkit_error *err);

/// One finding of vdkit_disk_check: severity is VDKIT_FINDING_* (0 error,
/// 1 leak, 2 repaired, 3 note), offset the byte offset in the image file or
/// UINT64_MAX when none applies; message valid during the call only.
typedef void (*vdkit_finding_fn)(void *opaque, uint32_t severity, uint64_t offset, const char *message);
/// Merge images[from..to] into one (VDMerge; Disk::merge in vdkit.hpp).
/// Indexes count from the base (0). Needs VDKIT_DISK_WRITE_CHAIN.
/// @return VDKIT_OK; VDKIT_E_READ_ONLY; VDKIT_E_INVALID_ARGUMENT (indexes);
///         VDKIT_E_CANCELLED; VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_disk_merge(vdkit_disk *disk, uint32_t from, uint32_t to, vdkit_progress_fn progress,
                                        void *opaque, vdkit_error *err);
#define VDKIT_COMMIT_KEEP_TOP (1u << 0) /* do not empty the top image */
/// qemu-img commit into images[base] (Disk::commit); VDKIT_COMMIT_KEEP_TOP
/// keeps the top's data. Needs VDKIT_DISK_WRITE_CHAIN.
/// @return as vdkit_disk_merge.
VDKIT_API vdkit_status vdkit_disk_commit(vdkit_disk *disk, uint32_t base, uint32_t flags, vdkit_progress_fn progress,
                                         void *opaque, vdkit_error *err);
#define VDKIT_REBASE_UNSAFE (1u << 0) /* change the link only */
/// qemu-img rebase of the top (Disk::rebase): new_parent NULL or "": no
/// parent; format (of the new parent) NULL or "": probe.
/// @return VDKIT_OK; VDKIT_E_READ_ONLY; VDKIT_E_NOT_FOUND (new parent);
///         VDKIT_E_PERMISSION (path rule); VDKIT_E_NOT_SUPPORTED (the format
///         cannot record that parent); VDKIT_E_CANCELLED; VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_disk_rebase(vdkit_disk *disk, const char *new_parent, const char *format, uint32_t flags,
                                         vdkit_progress_fn progress, void *opaque, vdkit_error *err);

/// Counts of a vdkit_disk_check run. Size-stamped (set by the caller).
typedef struct vdkit_check_summary {
    uint32_t struct_size; /* set by the caller */
    uint32_t _reserved;
    uint64_t errors, leaks, repaired;
} vdkit_check_summary;
/// Check the top image's metadata (VDRepair, VixDiskLib_CheckRepair); flags
/// VDKIT_CHECK_REPAIR (needs VDKIT_DISK_WRITE), VDKIT_CHECK_DRY_RUN. finding
/// (may be NULL) is called once per finding, on the caller's thread;
/// summary (may be NULL) gets the counts.
/// @return VDKIT_OK whatever was found (see summary); VDKIT_E_READ_ONLY
///         (repair on a read-only disk); VDKIT_E_NOT_SUPPORTED (no check in
///         the format); VDKIT_E_INVALID_ARGUMENT (summary->struct_size unset);
///         VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_disk_check(vdkit_disk *disk, uint32_t flags, vdkit_finding_fn finding, void *opaque,
                                        vdkit_check_summary *summary, vdkit_error *err);

/// Called once when an asynchronous operation ends, from a thread of the
/// library's pool, with its result and a message ("" on success; valid
/// during the call only). It must not close the disk or drain it, nor wait
/// for another queued operation.
typedef void (*vdkit_completion_fn)(void *opaque, vdkit_status status, const char *message);
/// Asynchronous read (VDAsyncRead; Disk::submit_read): queued for the disk's
/// workers; buf (caller-owned, len bytes) must live until done runs.
/// Overlapping writes must not be in flight together.
/// @return VDKIT_OK when queued (the result goes to done);
///         VDKIT_E_INVALID_ARGUMENT when the disk is closed or closing.
VDKIT_API vdkit_status vdkit_disk_aio_read(vdkit_disk *disk, uint64_t offset, void *buf, uint64_t len,
                                           vdkit_completion_fn done, void *opaque, vdkit_error *err);
/// Asynchronous write (VDAsyncWrite); as vdkit_disk_aio_read.
VDKIT_API vdkit_status vdkit_disk_aio_write(vdkit_disk *disk, uint64_t offset, const void *buf, uint64_t len,
                                            vdkit_completion_fn done, void *opaque, vdkit_error *err);
/// Asynchronous vdkit_disk_write_zeroes; as vdkit_disk_aio_read.
VDKIT_API vdkit_status vdkit_disk_aio_write_zeroes(vdkit_disk *disk, uint64_t offset, uint64_t len,
                                                   vdkit_completion_fn done, void *opaque, vdkit_error *err);
/// Asynchronous discard (VDAsyncDiscardRanges, one range); as vdkit_disk_aio_read.
VDKIT_API vdkit_status vdkit_disk_aio_discard(vdkit_disk *disk, uint64_t offset, uint64_t len, vdkit_completion_fn done,
                                              void *opaque, vdkit_error *err);
/// Asynchronous flush (VDAsyncFlush): a barrier, run after everything
/// submitted before it completed; as vdkit_disk_aio_read.
VDKIT_API vdkit_status vdkit_disk_aio_flush(vdkit_disk *disk, vdkit_completion_fn done, void *opaque, vdkit_error *err);
/// Wait until every submitted operation has completed (their done ran).
/// Not from a completion callback.
/// @return VDKIT_OK; VDKIT_E_INVALID_ARGUMENT for NULL.
VDKIT_API vdkit_status vdkit_disk_aio_drain(vdkit_disk *disk, vdkit_error *err);

/* VixDiskLib_IsAttachPossible / VixDiskLib_Attach flags. */
#define VDKIT_ATTACH_RELINK (1u << 0) /* also record the link in the child's bottom image */
#define VDKIT_ATTACH_VERIFY (1u << 1) /* with RELINK: the parent must still be the one the child records */
/// Whether child (opened VDKIT_DISK_NO_PARENTS) can go on top of parent
/// (VixDiskLib_IsAttachPossible; Disk::can_attach): the same checks
/// vdkit_disk_attach runs first. Nothing is written.
/// @return VDKIT_OK when it can; VDKIT_E_PARENT_MISMATCH (the parent is not
///         the one the child records); VDKIT_E_INVALID_ARGUMENT (no parent
///         link, a larger parent, a shared image); VDKIT_E_PERMISSION (the
///         path rule, with VDKIT_ATTACH_RELINK); VDKIT_E_READ_ONLY.
VDKIT_API vdkit_status vdkit_disk_is_attach_possible(vdkit_disk *parent, vdkit_disk *child, uint32_t flags,
                                                     vdkit_error *err);
/// Put child on top of parent (VixDiskLib_Attach; Disk::attach): child
/// becomes the combined chain and parent is closed (still call
/// vdkit_disk_close on it to free the handle). Neither may be in use by
/// other threads.
/// @return as vdkit_disk_is_attach_possible; VDKIT_E_IO (relinking).
VDKIT_API vdkit_status vdkit_disk_attach(vdkit_disk *parent, vdkit_disk *child, uint32_t flags, vdkit_error *err);

/// A local cache image in front of the chain (VDCreateCache, VDCacheOpen;
/// Disk::attach_cache): an existing matching cache is reused, a stale one
/// emptied. format NULL: "vdi"; options "key=value,…" or NULL (for a new
/// cache). Serialised with writes.
/// @return VDKIT_OK; VDKIT_E_EXISTS (location holds something else);
///         VDKIT_E_NOT_SUPPORTED (the format cannot hold a cache); VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_disk_attach_cache(vdkit_disk *disk, const char *location, const char *format,
                                               const char *options, vdkit_error *err);
#define VDKIT_CACHE_DELETE (1u << 0) /* detach: also delete the cache file */
/// Record that the cache matches the disk and close it (VDCacheClose);
/// VDKIT_CACHE_DELETE also deletes it.
/// @return VDKIT_OK; VDKIT_E_NOT_FOUND (no cache); VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_disk_detach_cache(vdkit_disk *disk, uint32_t flags, vdkit_error *err);
/// Cache counters in bytes (vdkit_disk_cache_stats). Size-stamped.
typedef struct vdkit_cache_stats {
    uint32_t struct_size; /* set by the caller */
    uint32_t bypassed;    /* 1: a cache operation failed; reads go to the chain */
    uint64_t hit_bytes, miss_bytes;
} vdkit_cache_stats;
/// Bytes read from the cache and from the chain so far. Thread-safe.
/// @return VDKIT_OK; VDKIT_E_NOT_FOUND when the disk has no cache;
///         VDKIT_E_INVALID_ARGUMENT (out->struct_size unset).
VDKIT_API vdkit_status vdkit_disk_cache_stats(vdkit_disk *disk, vdkit_cache_stats *out, vdkit_error *err);

/* vdkit_image_rename flags. */
#define VDKIT_RENAME_NO_RELINK (1u << 0)    /* leave children naming the old path */
#define VDKIT_RENAME_UNSAFE_PATHS (1u << 1) /* allow parent paths leaving an image's directory */
/// Rename or move an image with all its files (VixDiskLib_Rename;
/// Library::rename_image); children found beside it are relinked unless
/// VDKIT_RENAME_NO_RELINK. The image must not be open anywhere.
/// @return VDKIT_OK; VDKIT_E_EXISTS (a target file exists; nothing moved);
///         VDKIT_E_NOT_FOUND; VDKIT_E_BUSY (in use); VDKIT_E_PERMISSION
///         (path rule); VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_image_rename(vdkit_library *lib, const char *from, const char *to, uint32_t flags,
                                          vdkit_error *err);
/* vdkit_image_delete flags. */
#define VDKIT_DELETE_FORCE (1u << 0)
/// Delete an image with all its files (VixDiskLib_Unlink; Library::delete_image).
/// @return VDKIT_OK; VDKIT_E_PERMISSION while images beside it are built on
///         it (unless VDKIT_DELETE_FORCE); VDKIT_E_NOT_FOUND; VDKIT_E_BUSY;
///         VDKIT_E_IO.
VDKIT_API vdkit_status vdkit_image_delete(vdkit_library *lib, const char *location, uint32_t flags, vdkit_error *err);

/* ==== image info and identity (VDGetFormat, VDGetUuid, VDSetUuid, VDGetPCHSGeometry, ...) ==== */

/** A disk geometry in cylinders, heads and sectors per track (each 0 when
 *  the image records none). */
typedef struct vdkit_geometry {
    uint32_t cylinders, heads, sectors;
} vdkit_geometry;

/** One image of an open chain (vdkit_disk_get_image_info). Size-stamped:
 *  the caller sets struct_size = sizeof(vdkit_disk_image_info); the library
 *  fills at most that many bytes (fields a newer library appends are left
 *  out for an older caller) and sets struct_size to what it filled.
 *
 *  Strings are NUL-terminated, never NULL ("" when absent), owned by the
 *  disk handle and valid until vdkit_disk_close: the same text is handed
 *  out at the same address, so repeated calls do not use more memory. */
typedef struct vdkit_disk_image_info {
    uint32_t struct_size;
    uint32_t flags;                /* VDKIT_IMAGE_INFO_* */
    const char *location;          /* path or URL the image was opened from */
    const char *format;            /* format plugin name, e.g. "vmdk" */
    const char *subformat;         /* e.g. "monolithicSparse", "" when the format has none */
    const char *parent_location;   /* the parent as the image records it (relative for files), "" when none */
    const char *comment;           /* "" when none or the format has no comment */
    uint64_t virtual_size;         /* bytes */
    uint64_t file_size;            /* bytes the image's files use on their medium; UINT64_MAX when unknown */
    uint64_t sector_size;          /* bytes per sector of the virtual disk (512) */
    uint64_t granularity;          /* bytes of the format's allocation unit; 0 or 1: byte granular */
    uint8_t uuid[16];              /* all zero: none */
    uint8_t modification_uuid[16]; /* VMDK: the CID big-endian in bytes 0..3 */
    uint8_t parent_uuid[16];
    uint8_t parent_modification_uuid[16];
    vdkit_geometry pchs; /* physical CHS */
    vdkit_geometry lchs; /* logical (BIOS) CHS */
    /* ---- added in library ABI 2.3 ---- */
    const char *format_specific; /* the format's own facts as one JSON object's text (qemu-img info's
                                    "format-specific" data: VMDK cid, parent-cid, create-type, extents;
                                    VDI type, block-size, UUIDs), "" when the format gives none */
} vdkit_disk_image_info;

#define VDKIT_IMAGE_INFO_READ_ONLY (1u << 0)  /* open read-only here, or the format allows no writes */
#define VDKIT_IMAGE_INFO_HAS_PARENT (1u << 1) /* a differencing image */
#define VDKIT_IMAGE_INFO_FIXED (1u << 2)      /* preallocated */
#define VDKIT_IMAGE_INFO_DIRTY (1u << 3)      /* 2.3: records an unclean close (qcow2's dirty bit) */

#ifndef VDKIT_UUID_IMAGE /* the same values as vdkit/plugin.h */
#define VDKIT_UUID_IMAGE 0u
#define VDKIT_UUID_MODIFICATION 1u
#define VDKIT_UUID_PARENT 2u
#define VDKIT_UUID_PARENT_MODIFICATION 3u
#endif

/**
 * Describe images[image] of the disk's chain (0 = the base, image_count-1 =
 * the top): VDGetFormat, VDGetSize, VDGetFileSize, VDIsReadOnly, VDGetUuid,
 * VDGetModificationUuid, VDGetParentUuid, VDGetParentModificationUuid,
 * VDGetPCHSGeometry, VDGetLCHSGeometry, VDGetComment, VDGetSectorSize,
 * VDGetImageFlags; VixDiskLib_GetInfo.
 *
 * Ownership: *out is the caller's; the strings it points to belong to the
 * disk (see vdkit_disk_image_info). Thread-safety: may run concurrently with
 * any call on the same disk but vdkit_disk_close.
 *
 * @return VDKIT_OK; VDKIT_E_INVALID_ARGUMENT when disk or out is NULL,
 *         out->struct_size is smaller than 8, image is beyond the chain or
 *         the disk is closed; VDKIT_E_IO when the image's files cannot be
 *         read; VDKIT_E_NO_MEMORY.
 */
VDKIT_API vdkit_status vdkit_disk_get_image_info(vdkit_disk *disk, uint32_t image, vdkit_disk_image_info *out,
                                                 vdkit_error *err);

/**
 * Write one identifier of images[image] (VDSetUuid, VDSetModificationUuid,
 * VDSetParentUuid, VDSetParentModificationUuid). which is VDKIT_UUID_*; for
 * VMDK a modification id is the CID (bytes 0..3 big-endian). The image must
 * be open for writing: the top with VDKIT_DISK_WRITE, a lower image also
 * with VDKIT_DISK_WRITE_CHAIN. Only that field changes: a child recording
 * the old id no longer verifies against the image.
 *
 * Thread-safety: serialised with the disk's other writes.
 *
 * @return VDKIT_OK; VDKIT_E_INVALID_ARGUMENT for a NULL disk or uuid, an
 *         unknown kind, an image beyond the chain, a kind the image cannot
 *         hold (a parent id of an image without parent, for VMDK) or a
 *         closed disk; VDKIT_E_READ_ONLY when the image is not open for
 *         writing; VDKIT_E_NOT_SUPPORTED when the format records no such id;
 *         VDKIT_E_IO when writing the header fails.
 */
VDKIT_API vdkit_status vdkit_disk_set_uuid(vdkit_disk *disk, uint32_t image, uint32_t which, const uint8_t uuid[16],
                                           vdkit_error *err);

/**
 * Write the geometry of images[image] (VDSetPCHSGeometry,
 * VDSetLCHSGeometry). pchs or lchs NULL leaves that one unchanged. Rules on
 * writability as vdkit_disk_set_uuid.
 *
 * @return VDKIT_OK; VDKIT_E_INVALID_ARGUMENT for a NULL disk, an image
 *         beyond the chain, values the format cannot record (VMDK: heads
 *         1..255, sectors 1..63, cylinders >= 1) or a closed disk;
 *         VDKIT_E_READ_ONLY; VDKIT_E_NOT_SUPPORTED when the format records
 *         no geometry (or, VDI version 0, no LCHS); VDKIT_E_IO.
 */
VDKIT_API vdkit_status vdkit_disk_set_geometry(vdkit_disk *disk, uint32_t image, const vdkit_geometry *pchs,
                                               const vdkit_geometry *lchs, vdkit_error *err);

/**
 * Write the comment of images[image] (VDSetComment). comment is
 * NUL-terminated UTF-8 and copied. Rules on writability as
 * vdkit_disk_set_uuid.
 *
 * @return VDKIT_OK; VDKIT_E_INVALID_ARGUMENT for NULL disk or comment, an
 *         image beyond the chain, text the format cannot hold (VDI: at most
 *         255 bytes; VMDK: no '"' or CR, at most 1024 bytes) or a closed
 *         disk; VDKIT_E_READ_ONLY; VDKIT_E_NOT_SUPPORTED when the format has
 *         no comment; VDKIT_E_IO.
 */
VDKIT_API vdkit_status vdkit_disk_set_comment(vdkit_disk *disk, uint32_t image, const char *comment, vdkit_error *err);

/**
 * The metadata keys of the top image (VixDiskLib_GetMetadataKeys), in the
 * format's order: each key NUL-terminated, one after the other, and one more
 * NUL after the last (an empty list is a single NUL).
 *
 * @param buf     where the list is written, cap bytes; may be NULL with cap 0.
 * @param needed  gets the bytes the whole list takes, both kinds of NUL
 *                included; may be NULL.
 *
 * When cap is smaller than the list, nothing of it is written (buf[0] is set
 * to NUL when cap >= 1) and the call still returns VDKIT_OK: compare
 * *needed with cap and call again with a larger buffer.
 *
 * @return VDKIT_OK; VDKIT_E_INVALID_ARGUMENT for a NULL disk or a closed
 *         disk; VDKIT_E_NOT_SUPPORTED when the format has no key/value
 *         metadata; VDKIT_E_IO.
 */
VDKIT_API vdkit_status vdkit_disk_metadata_keys(vdkit_disk *disk, char *buf, uint64_t cap, uint64_t *needed,
                                                vdkit_error *err);

/* ==== plugins at run time (VDPluginLoadFromFilename, VDPluginUnloadFile) ==== */

/**
 * Load the plugin library file at path (copied) and register every plugin
 * in it; *count (may be NULL) gets how many. All or nothing.
 *
 * Thread-safety: safe while other threads use the library and its disks.
 *
 * @return VDKIT_OK; VDKIT_E_INVALID_ARGUMENT for NULL lib or path;
 *         VDKIT_E_NOT_FOUND when no such file exists; VDKIT_E_EXISTS when
 *         that file is loaded already or a plugin of the same kind and name
 *         is; VDKIT_E_ABI when it is not a loadable vdkit plugin library
 *         (the message carries the loader's error).
 */
VDKIT_API vdkit_status vdkit_plugin_load(vdkit_library *lib, const char *path, uint32_t *count, vdkit_error *err);

/**
 * Unregister the plugins that came from the library file at path (as given
 * to vdkit_plugin_load or found in a plugin directory; the same file by
 * another path matches) and unload it once nothing refers to it.
 *
 * Thread-safety: as vdkit_plugin_load.
 *
 * @return VDKIT_OK; VDKIT_E_INVALID_ARGUMENT for NULL lib or path;
 *         VDKIT_E_BUSY, changing nothing, while one of its plugins is in use
 *         (an open disk, a store, a call in progress); VDKIT_E_NOT_FOUND
 *         when no library of that file is loaded.
 */
VDKIT_API vdkit_status vdkit_plugin_unload(vdkit_library *lib, const char *path, vdkit_error *err);

/* ---- convert (one call: stage, copy, verify, publish, clean up) ---- */

/** Settings of vdkit_convert; Library::convert / ConvertOptions in
 * vdkit.hpp describe each. Size-stamped (sdk/docs/abi-policy.md): set
 * struct_size = sizeof(vdkit_convert_options) and zero what you do not set;
 * fields a caller's older struct lacks take their defaults. Strings are
 * copied during the call (the caller keeps ownership); NULL or "" means
 * "not given". */
typedef struct vdkit_convert_options {
    uint32_t struct_size;
    uint32_t flags;                    /* VDKIT_CONVERT_* */
    const char *target_format;         /* required, e.g. "vmdk" */
    const char *source_format;         /* NULL: probe */
    const char *target_options;        /* "key=value,key=value" create options of target_format, or NULL */
    const char *const *source_filters; /* NULL-terminated "NAME[:k=v,...]" specs, nearest the file first; or NULL */
    const char *const *target_filters; /* as source_filters, for the target's files */
    const char *backing;               /* the target is a differencing image over this (relative to the
                                          target's directory); NULL: none */
    const char *backing_format;        /* NULL: probe the backing image */
    const char *source_cache;          /* read the source through this cache image; NULL: none */
    const char *cache_format;          /* of a new cache image; NULL: "vdi" */
    uint32_t threads;                  /* copy workers 1..64 (CopyOptions::threads); 0: one per processor, 2..4 */
    uint32_t _reserved;                /* zero */
    /* Bytes of source data done/total; called from one thread at a time, not
     * always the caller's, during the copy and between the job's steps. A
     * non-zero return cancels: VDKIT_E_CANCELLED, nothing is published and
     * the staging directory is removed. NULL: none. */
    vdkit_progress_fn progress;
    void *opaque; /* passed to progress */
} vdkit_convert_options;
#define VDKIT_CONVERT_OVERWRITE (1u << 0)          /* replace an existing regular file once the new one is complete */
#define VDKIT_CONVERT_PREALLOCATE (1u << 1)        /* allocate the whole target */
#define VDKIT_CONVERT_KEEP_UUID (1u << 2)          /* the target gets the source top image's UUID */
#define VDKIT_CONVERT_EXISTING_TARGET (1u << 3)    /* write into the existing target in place (qemu-img -n) */
#define VDKIT_CONVERT_TARGET_IS_ZERO (1u << 4)     /* with EXISTING_TARGET: it reads as zero already */
#define VDKIT_CONVERT_VERIFY (1u << 5)             /* compare the result with the source before publishing */
#define VDKIT_CONVERT_OUT_OF_ORDER (1u << 6)       /* writes may land in any order (qemu-img -W) */
#define VDKIT_CONVERT_SOURCE_FORCE_SHARE (1u << 7) /* read a source another process holds (qemu-img -U) */

/** What a convert did. Set struct_size = sizeof(vdkit_convert_result). */
typedef struct vdkit_convert_result {
    uint32_t struct_size;
    uint32_t _reserved;
    uint64_t virtual_size; /* bytes, of the source */
    uint64_t data_bytes;   /* bytes of source data copied */
} vdkit_convert_result;

/** Convert `source` (its whole chain) into a new image `target` (qemu-img
 * convert, VixDiskLib_Clone). The image is built in a staging directory
 * ".NAME.vdkit-partial" beside target, copied, verified (VERIFY), flushed
 * and moved to its final name with the transport's no-replace rename; on
 * failure or cancel the staging directory is removed and target is
 * untouched. With EXISTING_TARGET the data is written into target in place.
 * result may be NULL; it is filled on success only.
 * Units: bytes. Ownership: nothing is kept after the call. Thread safety:
 * converts into different targets may run at once on one library.
 * Returns VDKIT_OK, or:
 *   VDKIT_E_INVALID_ARGUMENT  NULL lib/source/target/options, struct_size too
 *                             small, no target_format, options that cannot go
 *                             together (e.g. EXISTING_TARGET with
 *                             KEEP_UUID), source and target the same file, a
 *                             target naming a directory or a file of the
 *                             source's chain;
 *   VDKIT_E_EXISTS            target exists (without OVERWRITE), also when it
 *                             appears while converting; it is left untouched;
 *   VDKIT_E_PERMISSION        target is a device, fifo or directory (never
 *                             replaced);
 *   VDKIT_E_BUSY              target (with OVERWRITE) or source is in use by
 *                             another process, or another convert into
 *                             target is running;
 *   VDKIT_E_CANCELLED         progress returned non-zero;
 *   VDKIT_E_CORRUPT           VERIFY found a difference;
 *   VDKIT_E_NOT_FOUND, VDKIT_E_IO, ... from opening, creating, copying or
 *                             renaming; err's message names the file. */
VDKIT_API vdkit_status vdkit_convert(vdkit_library *lib, const char *source, const char *target,
                                     const vdkit_convert_options *options, vdkit_convert_result *result,
                                     vdkit_error *err);

/* ---- volumes (vdkit/volumes.hpp; VixMntapi_GetVolumeHandles / GetVolumeInfo) ---- */
typedef struct vdkit_volume_list vdkit_volume_list;

/* vdkit_volume_info.kind */
#define VDKIT_VOLUME_WHOLE_DISK 0u /* no partition table: the disk itself */
#define VDKIT_VOLUME_PRIMARY 1u    /* MBR primary partition (1-4) */
#define VDKIT_VOLUME_EXTENDED 2u   /* MBR extended partition (never mounted) */
#define VDKIT_VOLUME_LOGICAL 3u    /* logical partition (from 5) */
#define VDKIT_VOLUME_GPT 4u        /* GPT partition (entry slot + 1) */
#define VDKIT_VOLUME_LVM 5u        /* LVM logical volume inside a PV on the disk */
/* vdkit_volume_info.flags */
#define VDKIT_VOLUME_BOOTABLE (1u << 0)  /* MBR status 0x80 */
#define VDKIT_VOLUME_MOUNTABLE (1u << 1) /* not_mountable is "" */
/* vdkit_disk_list_volumes flags */
#define VDKIT_VOLUMES_NO_IDENTIFY (1u << 0) /* do not probe filesystems (libblkid) */
#define VDKIT_VOLUMES_NO_LVM (1u << 1)      /* do not list LVM logical volumes */

/** One volume (vdkit_volume_list_get). Size-stamped as vdkit_disk_image_info.
 *  Offsets and lengths in bytes. Strings are NUL-terminated, never NULL
 *  ("" when absent), owned by the list and valid until vdkit_volume_list_free. */
typedef struct vdkit_volume_info {
    uint32_t struct_size;
    uint32_t index;        /* kernel numbering: primaries 1-4, logicals from 5, GPT slot + 1; LVs after */
    uint32_t kind;         /* VDKIT_VOLUME_* */
    uint32_t flags;        /* VDKIT_VOLUME_BOOTABLE, VDKIT_VOLUME_MOUNTABLE */
    uint64_t offset;       /* first byte on the disk */
    uint64_t length;       /* bytes */
    uint32_t parent;       /* index of the extended partition / PV holding it; 0: the disk */
    uint32_t mbr_type;     /* MBR type byte, 0 for others */
    uint64_t attributes;   /* GPT attribute bits */
    uint32_t extent_count; /* disk ranges making the volume (LVM: one per segment) */
    uint32_t reserved;
    const char *type_guid;  /* GPT type GUID */
    const char *type_name;  /* "Linux filesystem", "W95 FAT32"... */
    const char *part_uuid;  /* GPT partition GUID, LVM LV id */
    const char *name;       /* GPT name; LVM "VG/LV" */
    const char *filesystem; /* blkid TYPE: "ext4", "vfat", "ntfs", "swap", "LVM2_member"... */
    const char *fs_version;
    const char *label;
    const char *uuid;          /* filesystem UUID */
    const char *segment_type;  /* LVM: "linear", "striped"... */
    const char *not_mountable; /* why it cannot be mounted, or "" */
} vdkit_volume_info;

/**
 * List the volumes of disk: partition tables (MBR and its logical chain,
 * GPT with backup use), LVM logical volumes inside PVs, each volume's
 * filesystem. sector_size: 0 detects, else 512 or 4096. flags:
 * VDKIT_VOLUMES_*. *out (caller-owned) is freed with vdkit_volume_list_free;
 * it stays valid after the disk is closed (but vdkit_volume_read needs the
 * disk). A damaged table is not an error: see the list's findings.
 * @return VDKIT_OK; VDKIT_E_INVALID_ARGUMENT (sector size); VDKIT_E_IO and
 *         the disk's read errors. Thread-safe (reads only).
 */
VDKIT_API vdkit_status vdkit_disk_list_volumes(vdkit_disk *disk, uint32_t sector_size, uint32_t flags,
                                               vdkit_volume_list **out, vdkit_error *err);
/// Number of volumes in list (0 for NULL).
VDKIT_API uint32_t vdkit_volume_list_count(const vdkit_volume_list *list);
/// The table read ("mbr", "gpt" or "none") and its logical sector size
/// (may be NULL each). Strings owned by the list.
VDKIT_API void vdkit_volume_list_table(const vdkit_volume_list *list, const char **table, uint32_t *sector_size);
/// Volume i (0-based position, not its index) into *out.
/// @return VDKIT_E_OUT_OF_RANGE when i >= count.
VDKIT_API vdkit_status vdkit_volume_list_get(const vdkit_volume_list *list, uint32_t i, vdkit_volume_info *out,
                                             vdkit_error *err);
/// Number of findings (damaged tables, notes).
VDKIT_API uint32_t vdkit_volume_list_finding_count(const vdkit_volume_list *list);
/// Finding i: severity VDKIT_FINDING_* (error: a table is damaged; note),
/// offset on the disk (UINT64_MAX when none), message owned by the list.
/// @return VDKIT_E_OUT_OF_RANGE when i >= count.
VDKIT_API vdkit_status vdkit_volume_list_get_finding(const vdkit_volume_list *list, uint32_t i, uint32_t *severity,
                                                     uint64_t *offset, const char **message, vdkit_error *err);
/// Read len bytes at offset (bytes from the volume's start) of volume i
/// (position in list) of disk, through its extents.
/// @return VDKIT_E_OUT_OF_RANGE past the volume's end or i >= count;
///         VDKIT_E_NOT_SUPPORTED for a volume without extents (a non-linear LV).
VDKIT_API vdkit_status vdkit_volume_read(vdkit_disk *disk, const vdkit_volume_list *list, uint32_t i, uint64_t offset,
                                         void *buf, uint64_t len, vdkit_error *err);
/// Write into volume i (the disk's top image). VDKIT_E_READ_ONLY on a
/// read-only disk; otherwise as vdkit_volume_read.
VDKIT_API vdkit_status vdkit_volume_write(vdkit_disk *disk, const vdkit_volume_list *list, uint32_t i, uint64_t offset,
                                          const void *buf, uint64_t len, vdkit_error *err);
/// Free a list (NULL: nothing).
VDKIT_API void vdkit_volume_list_free(vdkit_volume_list *list);

#ifdef __cplusplus
}
#endif

#endif /* VDKIT_VDKIT_H */
