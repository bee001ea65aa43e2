/*
 * vdkit/vdkit.h — the C API of the vdkit library, for embedders.
 *
 * Objects: a vdkit_library (plugins + configuration) and vdkit_disk handles
 * (an opened chain of images) created from it. Every function returns a
 * vdkit_status (vdkit/status.h); on failure it fills the optional
 * vdkit_error the caller passed with the code and a message naming what
 * failed and where. Nothing here throws, aborts or calls exit().
 *
 * Ownership: handles returned through out-parameters belong to the caller
 * and are released with the matching _close function. Strings passed in are
 * copied; strings passed out are written into caller buffers.
 *
 * Thread-safety: a library handle may be shared by threads. A disk handle
 * may be used by several threads at once (reads run concurrently; writes
 * are serialised). Close a disk before its library.
 */
#ifndef VDKIT_VDKIT_H
#define VDKIT_VDKIT_H

#include <stdint.h>
#include "vdkit/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vdkit_library vdkit_library;
typedef struct vdkit_disk vdkit_disk;

/* Error details; set struct_size = sizeof(vdkit_error) before passing it. */
typedef struct vdkit_error {
    uint32_t struct_size;
    vdkit_status code;
    char message[1024]; /* NUL-terminated, truncated if longer */
} vdkit_error;

/* Short stable text for a code, e.g. "I/O error". Never NULL. */
const char *vdkit_status_text(vdkit_status code);

/* ---- library ---- */
typedef struct vdkit_library_options {
    uint32_t struct_size;
    uint32_t flags;                 /* VDKIT_LIB_* */
    const char *config_file;        /* NULL: $VDKIT_CONFIG or built-in defaults */
    const char *plugin_path;        /* ':'-separated directories searched first; may be NULL */
} vdkit_library_options;

#define VDKIT_LIB_NO_ENV_PATH    (1u << 0) /* ignore VDKIT_PLUGIN_PATH */
#define VDKIT_LIB_NO_INSTALL_DIR (1u << 1) /* do not search the install directory */
#define VDKIT_LIB_QUIET          (1u << 2) /* no diagnostics on stderr */

/* options may be NULL. */
vdkit_status vdkit_library_open(const vdkit_library_options *options, vdkit_library **out, vdkit_error *err);
void vdkit_library_close(vdkit_library *lib);

/* Loaded plugins. kind is VDKIT_KIND_* from vdkit/plugin.h. */
typedef struct vdkit_plugin_summary {
    uint32_t struct_size;
    uint32_t kind;
    uint64_t capabilities;
    char name[64];
    char version[64];
} vdkit_plugin_summary;
uint32_t vdkit_plugin_count(const vdkit_library *lib);
vdkit_status vdkit_plugin_get(const vdkit_library *lib, uint32_t index, vdkit_plugin_summary *out, vdkit_error *err);

/* ---- disks ---- */
#define VDKIT_DISK_WRITE      (1u << 0) /* open read-write */
#define VDKIT_DISK_NOLOCK     (1u << 1) /* do not take the advisory lock */
#define VDKIT_DISK_NO_PARENTS (1u << 2) /* open only the named image, not its chain */
#define VDKIT_DISK_FIXED      (1u << 3) /* create: preallocate */
#define VDKIT_DISK_OVERWRITE  (1u << 4) /* create: replace an existing file */
#define VDKIT_DISK_WRITE_CHAIN (1u << 5) /* with WRITE: every image of the chain writable (merge, commit) */
#define VDKIT_DISK_FORCE_SHARE (1u << 6) /* read an image in use (qemu-img -U): no image lock taken or tested
                                            on any file of the chain; refused with WRITE (OpenOptions::force_share) */

/* format NULL or "": probe. options: "key=value,key=value" for the format, or NULL. */
vdkit_status vdkit_disk_open(vdkit_library *lib, const char *location, const char *format, uint32_t flags,
                             const char *options, vdkit_disk **out, vdkit_error *err);
/* parent non-NULL: a differencing image over parent (size 0 = the parent's). */
vdkit_status vdkit_disk_create(vdkit_library *lib, const char *location, const char *format, uint64_t size,
                               uint32_t flags, const char *options, const char *parent, vdkit_disk **out,
                               vdkit_error *err);
/* As vdkit_disk_open / vdkit_disk_create, with a file-level filter stack
 * over every file of the image (and of its parent chain): filters is a
 * NULL-terminated array of "NAME" or "NAME:key=value,key=value" specs, the
 * first nearest the file; NULL or an empty array: none. */
vdkit_status vdkit_disk_open_filtered(vdkit_library *lib, const char *location, const char *format, uint32_t flags,
                                      const char *options, const char *const *filters, vdkit_disk **out,
                                      vdkit_error *err);
vdkit_status vdkit_disk_create_filtered(vdkit_library *lib, const char *location, const char *format, uint64_t size,
                                        uint32_t flags, const char *options, const char *parent,
                                        const char *const *filters, vdkit_disk **out, vdkit_error *err);
/* Flushes and frees; the handle is gone even when an error is returned. */
vdkit_status vdkit_disk_close(vdkit_disk *disk, vdkit_error *err);

uint64_t vdkit_disk_size(const vdkit_disk *disk);
uint32_t vdkit_disk_image_count(const vdkit_disk *disk);
vdkit_status vdkit_disk_read(vdkit_disk *disk, uint64_t offset, void *buf, uint64_t len, vdkit_error *err);
vdkit_status vdkit_disk_write(vdkit_disk *disk, uint64_t offset, const void *buf, uint64_t len, vdkit_error *err);
vdkit_status vdkit_disk_write_zeroes(vdkit_disk *disk, uint64_t offset, uint64_t len, vdkit_error *err);
vdkit_status vdkit_disk_discard(vdkit_disk *disk, uint64_t offset, uint64_t len, vdkit_error *err);
vdkit_status vdkit_disk_flush(vdkit_disk *disk, vdkit_error *err);

/* Allocation of the run starting at offset: state is VDKIT_BLOCK_* from
 * vdkit/plugin.h, resolved through the chain; *run is its length. */
vdkit_status vdkit_disk_block_status(vdkit_disk *disk, uint64_t offset, uint64_t len, uint32_t *state,
                                     uint64_t *run, vdkit_error *err);

/* Metadata of the top image; value written NUL-terminated into buf (cap
 * bytes); *needed (may be NULL) gets the full length without the NUL. */
vdkit_status vdkit_disk_metadata_get(vdkit_disk *disk, const char *key, char *buf, uint64_t cap, uint64_t *needed,
                                     vdkit_error *err);
vdkit_status vdkit_disk_metadata_set(vdkit_disk *disk, const char *key, const char *value, vdkit_error *err);

/* Copy src's content into dst (dst at least as large). progress may be NULL;
 * a non-zero return from it cancels with VDKIT_E_CANCELLED. It is called
 * from one thread at a time, not always the caller's (the pipeline's
 * workers report). */
typedef int (*vdkit_progress_fn)(void *opaque, uint64_t done, uint64_t total);
vdkit_status vdkit_disk_copy(vdkit_library *lib, vdkit_disk *src, vdkit_disk *dst, vdkit_progress_fn progress,
                             void *opaque, vdkit_error *err);

/* The convert pipeline's settings (CopyOptions in vdkit.hpp). Size-stamped:
 * set struct_size = sizeof(vdkit_copy_options); fields a caller's older
 * struct lacks take their defaults. */
typedef struct vdkit_copy_options {
    uint32_t struct_size;
    uint32_t threads;        /* 0: one per processor, 2..4; else 1..64 */
    uint32_t flags;          /* VDKIT_COPY_* */
    uint32_t same_up_to;     /* with VDKIT_COPY_SAME_UP_TO: CopyOptions::same_up_to */
    vdkit_progress_fn progress; /* may be NULL */
    void *opaque;
} vdkit_copy_options;
#define VDKIT_COPY_OUT_OF_ORDER  (1u << 0) /* writes may land in any order (qemu-img convert -W) */
#define VDKIT_COPY_TARGET_DIRTY  (1u << 1) /* the target may hold data: write zero ranges too */
#define VDKIT_COPY_SAME_UP_TO    (1u << 2) /* dst's parent chain reads as src's images 0..same_up_to */
/* Into an existing chain (VDCopyEx): the index of src's image whose UUID is
 * that of the image below dst's top, in *index; VDKIT_E_NOT_FOUND if none. */
vdkit_status vdkit_disk_common_image(vdkit_disk *src, vdkit_disk *dst, uint32_t *index, vdkit_error *err);
/* options may be NULL (defaults). */
vdkit_status vdkit_disk_copy_ex(vdkit_library *lib, vdkit_disk *src, vdkit_disk *dst, const vdkit_copy_options *options,
                                vdkit_error *err);

/* qemu-img measure / VixDiskLib_SpaceNeededForClone: bytes a new image of
 * `format` (options "key=value,…" or NULL) would take holding src's data
 * (src NULL: an empty image of `size` bytes). Either out pointer may be NULL. */
vdkit_status vdkit_library_measure(vdkit_library *lib, const char *format, const char *options, vdkit_disk *src,
                           uint64_t size, uint64_t *required, uint64_t *fully_allocated, vdkit_error *err);

/* Maintenance of the top image; see Disk::compact/resize/check in vdkit.hpp. */
vdkit_status vdkit_disk_compact(vdkit_disk *disk, vdkit_progress_fn progress, void *opaque, vdkit_error *err);

#define VDKIT_DISK_RESIZE_SHRINK (1u << 0) /* allow making the disk smaller */
vdkit_status vdkit_disk_resize(vdkit_disk *disk, uint64_t new_size, uint32_t flags, vdkit_error *err);

/* flags: VDKIT_CHECK_REPAIR, VDKIT_CHECK_DRY_RUN from vdkit/plugin.h.
 * finding (may be NULL) is called once per finding; severity is
 * VDKIT_FINDING_*, offset UINT64_MAX when none applies. */
typedef void (*vdkit_finding_fn)(void *opaque, uint32_t severity, uint64_t offset, const char *message);
/* Chain operations; see Disk::merge/commit/rebase in vdkit.hpp. Indexes
 * count from the base (0). merge and commit need VDKIT_DISK_WRITE_CHAIN. */
vdkit_status vdkit_disk_merge(vdkit_disk *disk, uint32_t from, uint32_t to, vdkit_progress_fn progress, void *opaque,
                              vdkit_error *err);
#define VDKIT_COMMIT_KEEP_TOP (1u << 0) /* do not empty the top image */
vdkit_status vdkit_disk_commit(vdkit_disk *disk, uint32_t base, uint32_t flags, vdkit_progress_fn progress,
                               void *opaque, vdkit_error *err);
#define VDKIT_REBASE_UNSAFE (1u << 0) /* change the link only */
/* new_parent NULL or "": no parent; format NULL or "": probe. */
vdkit_status vdkit_disk_rebase(vdkit_disk *disk, const char *new_parent, const char *format, uint32_t flags,
                               vdkit_progress_fn progress, void *opaque, vdkit_error *err);

typedef struct vdkit_check_summary {
    uint32_t struct_size; /* set by the caller */
    uint32_t _reserved;
    uint64_t errors, leaks, repaired;
} vdkit_check_summary;
vdkit_status vdkit_disk_check(vdkit_disk *disk, uint32_t flags, vdkit_finding_fn finding, void *opaque,
                              vdkit_check_summary *summary, vdkit_error *err);

/* Asynchronous I/O (VDAsync*); see Disk::submit_* in vdkit.hpp. done is
 * called once, from one of the disk's worker threads, with the result and a
 * message ("" on success; valid during the call only). Buffers stay the
 * caller's and must live until done runs. Overlapping writes must not be in
 * flight together; a flush waits for everything submitted before it. The
 * call itself fails only when the disk is closed; vdkit_disk_close waits for
 * submitted operations. done must not close the disk. */
typedef void (*vdkit_completion_fn)(void *opaque, vdkit_status status, const char *message);
vdkit_status vdkit_disk_aio_read(vdkit_disk *disk, uint64_t offset, void *buf, uint64_t len, vdkit_completion_fn done,
                                 void *opaque, vdkit_error *err);
vdkit_status vdkit_disk_aio_write(vdkit_disk *disk, uint64_t offset, const void *buf, uint64_t len,
                                  vdkit_completion_fn done, void *opaque, vdkit_error *err);
vdkit_status vdkit_disk_aio_write_zeroes(vdkit_disk *disk, uint64_t offset, uint64_t len, vdkit_completion_fn done,
                                         void *opaque, vdkit_error *err);
vdkit_status vdkit_disk_aio_discard(vdkit_disk *disk, uint64_t offset, uint64_t len, vdkit_completion_fn done,
                                    void *opaque, vdkit_error *err);
vdkit_status vdkit_disk_aio_flush(vdkit_disk *disk, vdkit_completion_fn done, void *opaque, vdkit_error *err);
/* Wait until every submitted operation has completed. */
vdkit_status vdkit_disk_aio_drain(vdkit_disk *disk, vdkit_error *err);

/* VixDiskLib_IsAttachPossible / VixDiskLib_Attach; see Disk::can_attach and
 * Disk::attach. After attaching, child is the combined chain and parent is
 * closed (still call vdkit_disk_close on it to free the handle). */
#define VDKIT_ATTACH_RELINK (1u << 0) /* also record the link in the child's bottom image */
#define VDKIT_ATTACH_VERIFY (1u << 1) /* with RELINK: the parent must still be the one the child records */
vdkit_status vdkit_disk_is_attach_possible(vdkit_disk *parent, vdkit_disk *child, uint32_t flags, vdkit_error *err);
vdkit_status vdkit_disk_attach(vdkit_disk *parent, vdkit_disk *child, uint32_t flags, vdkit_error *err);

/* Cache images (VDCreateCache / VDCacheOpen); see Disk::attach_cache.
 * format NULL: "vdi"; options "key=value,…" or NULL (for a new cache). */
vdkit_status vdkit_disk_attach_cache(vdkit_disk *disk, const char *location, const char *format, const char *options,
                                     vdkit_error *err);
#define VDKIT_CACHE_DELETE (1u << 0) /* detach: also delete the cache file */
vdkit_status vdkit_disk_detach_cache(vdkit_disk *disk, uint32_t flags, vdkit_error *err);
typedef struct vdkit_cache_stats {
    uint32_t struct_size; /* set by the caller */
    uint32_t bypassed;    /* 1: a cache operation failed; reads go to the chain */
    uint64_t hit_bytes, miss_bytes;
} vdkit_cache_stats;
/* VDKIT_E_NOT_FOUND when the disk has no cache. */
vdkit_status vdkit_disk_cache_stats(vdkit_disk *disk, vdkit_cache_stats *out, vdkit_error *err);

/* Rename or move an image with all its files (VixDiskLib_Rename); see
 * Library::rename_image. Children beside it are relinked unless
 * VDKIT_RENAME_NO_RELINK. */
#define VDKIT_RENAME_NO_RELINK   (1u << 0) /* leave children naming the old path */
#define VDKIT_RENAME_UNSAFE_PATHS (1u << 1) /* allow parent paths leaving an image's directory */
vdkit_status vdkit_image_rename(vdkit_library *lib, const char *from, const char *to, uint32_t flags,
                                vdkit_error *err);
/* Delete an image with all its files (VixDiskLib_Unlink); refused with
 * VDKIT_E_PERMISSION while images beside it are built on it, unless
 * VDKIT_DELETE_FORCE. */
#define VDKIT_DELETE_FORCE (1u << 0)
vdkit_status vdkit_image_delete(vdkit_library *lib, const char *location, uint32_t flags, vdkit_error *err);


/* ---- convert (one call: stage, copy, verify, publish, clean up) ---- */

/* Settings of vdkit_convert; Library::convert / ConvertOptions in
 * vdkit.hpp describe each. Size-stamped (sdk/docs/abi-policy.md): set
 * struct_size = sizeof(vdkit_convert_options) and zero what you do not set;
 * fields a caller's older struct lacks take their defaults. Strings are
 * copied during the call (the caller keeps ownership); NULL or "" means
 * "not given". */
typedef struct vdkit_convert_options {
    uint32_t struct_size;
    uint32_t flags;                      /* VDKIT_CONVERT_* */
    const char *target_format;           /* required, e.g. "vmdk" */
    const char *source_format;           /* NULL: probe */
    const char *target_options;          /* "key=value,key=value" create options of target_format, or NULL */
    const char *const *source_filters;   /* NULL-terminated "NAME[:k=v,...]" specs, nearest the file first; or NULL */
    const char *const *target_filters;   /* as source_filters, for the target's files */
    const char *backing;                 /* the target is a differencing image over this (relative to the
                                            target's directory); NULL: none */
    const char *backing_format;          /* NULL: probe the backing image */
    const char *source_cache;            /* read the source through this cache image; NULL: none */
    const char *cache_format;            /* of a new cache image; NULL: "vdi" */
    uint32_t threads;                    /* copy workers 1..64; 0: one per processor, 2..4 */
    uint32_t _reserved;                  /* zero */
    /* Bytes of source data done/total; called from one thread at a time, not
     * always the caller's, during the copy and between the job's steps. A
     * non-zero return cancels: VDKIT_E_CANCELLED, nothing is published and
     * the staging directory is removed. NULL: none. */
    vdkit_progress_fn progress;
    void *opaque;                        /* passed to progress */
} vdkit_convert_options;
#define VDKIT_CONVERT_OVERWRITE          (1u << 0) /* replace an existing regular file once the new one is complete */
#define VDKIT_CONVERT_PREALLOCATE        (1u << 1) /* allocate the whole target */
#define VDKIT_CONVERT_KEEP_UUID          (1u << 2) /* the target gets the source top image's UUID */
#define VDKIT_CONVERT_EXISTING_TARGET    (1u << 3) /* write into the existing target in place (qemu-img -n) */
#define VDKIT_CONVERT_TARGET_IS_ZERO     (1u << 4) /* with EXISTING_TARGET: it reads as zero already */
#define VDKIT_CONVERT_VERIFY             (1u << 5) /* compare the result with the source before publishing */
#define VDKIT_CONVERT_OUT_OF_ORDER       (1u << 6) /* writes may land in any order (qemu-img -W) */
#define VDKIT_CONVERT_SOURCE_FORCE_SHARE (1u << 7) /* read a source another process holds (qemu-img -U) */

/* What a convert did. Set struct_size = sizeof(vdkit_convert_result). */
typedef struct vdkit_convert_result {
    uint32_t struct_size;
    uint32_t _reserved;
    uint64_t virtual_size; /* bytes, of the source */
    uint64_t data_bytes;   /* bytes of source data copied */
} vdkit_convert_result;

/* Convert `source` (its whole chain) into a new image `target` (qemu-img
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
vdkit_status vdkit_convert(vdkit_library *lib, const char *source, const char *target,
                           const vdkit_convert_options *options, vdkit_convert_result *result, vdkit_error *err);

#ifdef __cplusplus
}
#endif

#endif /* VDKIT_VDKIT_H */
