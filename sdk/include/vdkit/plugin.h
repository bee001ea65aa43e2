/*
 * vdkit/plugin.h — the stable C ABI between the vdkit host and its plugins.
 *
 * A plugin library exports exactly one symbol, vdkit_plugin_entry (use
 * VDKIT_PLUGIN_ENTRY below or the C++ helper in plugin.hpp). The host calls
 * it once with a table of host functions and receives a list of plugin
 * descriptors: format backends, filters and transports. Plugins never link
 * against the core library: everything they need from the host comes through
 * vdkit_host_api.
 *
 * ABI rules (sdk/docs/abi-policy.md has the full text):
 *  - Every descriptor, vtable and parameter struct starts with struct_size.
 *    The receiver copies min(struct_size, sizeof its own struct) and zero
 *    fills the rest, so older and newer plugins both load.
 *  - Fields are only ever appended; a minor version bump adds fields, a
 *    change to an existing field is a major bump. A major mismatch is refused.
 *  - A NULL function pointer means "not provided": the host emulates the
 *    operation where that is safe and reports VDKIT_E_NOT_SUPPORTED otherwise.
 *  - Only fixed-width integers, uint8_t booleans and (data, size) strings
 *    cross the boundary. No C++ types, no exceptions: a plugin callback that
 *    lets an exception escape terminates the process (the C++ helper catches
 *    them all and turns them into status codes).
 *  - Strings passed to a plugin are valid only during the call; copy what you
 *    keep. Strings in descriptors must stay valid while the library is loaded.
 *
 * One call shape (ABI 2.0). Every callback and host function that acts on an
 * object takes, in this order:
 *     the object (image, transport/filter handle, or vdkit_store),
 *     the call context (vdkit_ctx *),
 *     the byte offset, the data buffer, the length in bytes,
 *     then any other inputs, then the out-parameters.
 * For example format read(image, ctx, offset, buf, len, &done), transport
 * pread(handle, ctx, offset, buf, len) and host store_pread(store, ctx,
 * offset, buf, len) — the public C API's vdkit_disk_read(disk, offset, buf,
 * len, err) has the same offset-buffer-length order. Calls with no object
 * yet (probe, open, create, measure, remove, rename, exists, store_open)
 * take the context first. Offsets and lengths are bytes.
 *
 * Threading: the host serialises calls on one plugin instance unless the
 * descriptor sets VDKIT_CAP_THREAD_SAFE. Different instances may be called
 * from different threads at once. The entry function is called once, under
 * the host's loader lock.
 */
#ifndef VDKIT_PLUGIN_H
#define VDKIT_PLUGIN_H

#include "vdkit/constants.h" /* kinds, block states, log levels, check flags, findings */
#include "vdkit/status.h"
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VDKIT_ABI_MAJOR 2u
#define VDKIT_ABI_MINOR 3u

#define VDKIT_PLUGIN_ENTRY_SYMBOL "vdkit_plugin_entry"

/* A string that is not necessarily NUL-terminated. data may be NULL when size is 0. */
typedef struct vdkit_str {
    const char *data;
    uint64_t size;
} vdkit_str;

/* Opaque host objects. */
typedef struct vdkit_ctx vdkit_ctx;     /* one call's context: options, errors, paths */
typedef struct vdkit_store vdkit_store; /* a host-owned byte store (a file through a transport) */

/* ---- plugin kinds (VDKIT_KIND_*): vdkit/constants.h ---------------------- */

/* ---- static capability bits (what the code can ever do) -------------------
 * Retired bits keep their number and are never reused (abi-ledger.md). */
#define VDKIT_CAP_CREATE_FIXED (1ull << 0)   /* format: create fully allocated images */
#define VDKIT_CAP_CREATE_DYNAMIC (1ull << 1) /* format: create sparse/growing images */
#define VDKIT_CAP_CREATE_SPLIT (1ull << 2)   /* format: images split over several files */
#define VDKIT_CAP_DIFF (1ull << 3)           /* format: differencing images over a parent */
#define VDKIT_CAP_DISCARD (1ull << 4)        /* discard/unmap of ranges */
#define VDKIT_CAP_OBSOLETE_5 (1ull << 5)     /* retired in 2.0 (was ASYNC); never reused */
#define VDKIT_CAP_UUID (1ull << 6)           /* format: image and parent UUIDs */
#define VDKIT_CAP_FILE_BASED (1ull << 7)     /* format: the image lives in files */
#define VDKIT_CAP_OBSOLETE_8 (1ull << 8)     /* retired in 2.0 (was NEEDS_CONFIG); never reused */
#define VDKIT_CAP_OBSOLETE_9 (1ull << 9)     /* retired in 2.0 (was STREAMING_ONLY); never reused */
#define VDKIT_CAP_COMPACT (1ull << 10)       /* format: compact() */
#define VDKIT_CAP_RESIZE (1ull << 11)        /* format: resize() */
#define VDKIT_CAP_CHECK (1ull << 12)         /* format: check()/repair */
#define VDKIT_CAP_METADATA (1ull << 13)      /* format: key/value metadata */
#define VDKIT_CAP_COMMENT (1ull << 14)       /* format: comment */
#define VDKIT_CAP_GEOMETRY (1ull << 15)      /* format: PCHS/LCHS geometry */
#define VDKIT_CAP_ZERO_STATE (1ull << 16)    /* format: records zero ranges persistently */
#define VDKIT_CAP_THREAD_SAFE (1ull << 17)   /* calls on one instance may run concurrently */
#define VDKIT_CAP_EXTENTS (1ull << 18)       /* transport: reports data/hole extents */
#define VDKIT_CAP_LOCKING (1ull << 19)       /* transport: enforces writer exclusion */
#define VDKIT_CAP_OBSOLETE_20 (1ull << 20)   /* retired in 2.0 (was FILTER_DISK); never reused */
#define VDKIT_CAP_FILTER_FILE (1ull << 21)   /* filter: may sit between a format and its file */
#define VDKIT_CAP_RENAME (1ull << 22)        /* format: rename() */
/* Added in 2.2: filter: may sit between the disk (its whole chain) and the
 * user, same size, transforming virtual-disk data (encryption). Its `next`
 * store is the chain's virtual disk; open flags may carry VDKIT_OPEN_CREATE
 * (a new base image: set up, e.g. make a key store) and VDKIT_OPEN_INFO
 * (metadata only: no data I/O, no secrets needed). */
#define VDKIT_CAP_FILTER_DISK (1ull << 23)

/* ---- config keys ------------------------------------------------------------ */
#define VDKIT_KEY_STRING 1u
#define VDKIT_KEY_BOOL 2u /* true/false, yes/no, on/off, 1/0 */
#define VDKIT_KEY_INT 3u  /* signed 64-bit */
#define VDKIT_KEY_UINT 4u /* unsigned 64-bit */
#define VDKIT_KEY_SIZE 5u /* unsigned byte count, accepts k/M/G/T suffixes */
#define VDKIT_KEY_ENUM 6u /* one of enum_values, '|' separated */

#define VDKIT_KEY_MANDATORY (1u << 0)   /* must be given */
#define VDKIT_KEY_EXPERT (1u << 1)      /* hidden from short listings */
#define VDKIT_KEY_CREATE_ONLY (1u << 2) /* only meaningful when creating */
#define VDKIT_KEY_SECRET (1u << 3)      /* never logged or printed */

typedef struct vdkit_config_key {
    uint32_t struct_size;
    uint32_t type;  /* VDKIT_KEY_* */
    uint32_t flags; /* VDKIT_KEY_* flags */
    uint32_t _reserved;
    vdkit_str name;          /* [a-z][a-z0-9_-]* */
    vdkit_str default_value; /* textual default; size 0 = no default */
    vdkit_str help;
    vdkit_str enum_values; /* VDKIT_KEY_ENUM: "a|b|c" */
    int64_t min_value;     /* INT/UINT/SIZE range, used when min_value < max_value */
    int64_t max_value;
} vdkit_config_key;

/* ---- extents and allocation status ------------------------------------------- */
#define VDKIT_EXTENT_DATA 0u /* transport: bytes stored */
#define VDKIT_EXTENT_HOLE 1u /* transport: reads as zero, nothing stored */

/* VDKIT_BLOCK_* (a format's block_status): vdkit/constants.h */

/* Fixed layout (not size-stamped): changing it is a major ABI bump. */
typedef struct vdkit_extent {
    uint64_t offset;
    uint64_t length;
    uint32_t type; /* VDKIT_EXTENT_* */
    uint32_t _reserved;
} vdkit_extent;

/* ---- probe scores ------------------------------------------------------------ */
#define VDKIT_PROBE_NO 0u /* not this format */
#define VDKIT_PROBE_FALLBACK                                                                                           \
    1u                           /* readable as this, but no evidence (raw): the                                       \
                                    host accepts it only for read-only opens */
#define VDKIT_PROBE_CERTAIN 100u /* magic and header checks pass */

/* ---- open flags (stores, transports, formats) ------------------------------- */
#define VDKIT_OPEN_WRITE (1u << 0)  /* read-write; default is read-only */
#define VDKIT_OPEN_CREATE (1u << 1) /* create; fails with VDKIT_E_EXISTS if present */
#define VDKIT_OPEN_NOLOCK (1u << 2) /* take no image lock and test none (force-share) */
#define VDKIT_OPEN_INFO (1u << 3)   /* format: metadata only, no data I/O expected */
/* store_open (added in 1.1): the path holds raw device data (a host disk, a
 * raw device mapping). The host refuses it with VDKIT_E_PERMISSION unless
 * the user allowed unsafe paths, wherever the path points. */
#define VDKIT_OPEN_DEVICE (1u << 4)

/* ---- log levels (VDKIT_LOG_*) and check findings (VDKIT_FINDING_*): vdkit/constants.h */

/*
 * The host function table, passed to vdkit_plugin_entry and valid until the
 * library is unloaded. Functions taking a vdkit_ctx report failures into it,
 * so a plugin may return the code it got without writing its own message.
 * Check struct_size before using a field added after ABI 2.0
 * (VDKIT_HOST_HAS(host, field)).
 */
typedef struct vdkit_host_api {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;

    /* Diagnostics. ctx may be NULL (e.g. inside the entry function). */
    void (*log)(vdkit_ctx *ctx, uint32_t level, vdkit_str message);
    /* Record the error the current call returns; the last one wins. */
    void (*set_error)(vdkit_ctx *ctx, uint32_t code, vdkit_str message);

    /* Options for this plugin in this call, already validated against the
     * plugin's key table. Values live until the call returns. An unset key
     * with no default gives VDKIT_E_NOT_FOUND (no error is recorded). */
    uint32_t (*config_get)(vdkit_ctx *ctx, vdkit_str key, vdkit_str *value);
    uint32_t (*config_get_uint)(vdkit_ctx *ctx, vdkit_str key, uint64_t *value);
    uint32_t (*config_get_int)(vdkit_ctx *ctx, vdkit_str key, int64_t *value);
    uint32_t (*config_get_bool)(vdkit_ctx *ctx, vdkit_str key, uint8_t *value);

    /* Byte stores: files reached through the transport that holds the image.
     * path is resolved against the directory of the image being opened;
     * absolute paths and ".." that leave that directory are refused with
     * VDKIT_E_PERMISSION unless the user allowed them. The store is owned by
     * the plugin that opened it and must be closed with store_close. */
    uint32_t (*store_open)(vdkit_ctx *ctx, vdkit_str path, uint32_t flags, vdkit_store **out);
    void (*store_close)(vdkit_store *store);
    uint32_t (*store_pread)(vdkit_store *store, vdkit_ctx *ctx, uint64_t offset, void *buf, uint64_t len);
    uint32_t (*store_pwrite)(vdkit_store *store, vdkit_ctx *ctx, uint64_t offset, const void *buf, uint64_t len);
    uint32_t (*store_flush)(vdkit_store *store, vdkit_ctx *ctx);
    uint32_t (*store_get_size)(vdkit_store *store, vdkit_ctx *ctx, uint64_t *size);
    uint32_t (*store_truncate)(vdkit_store *store, vdkit_ctx *ctx, uint64_t size);
    uint32_t (*store_discard)(vdkit_store *store, vdkit_ctx *ctx, uint64_t offset, uint64_t len);
    uint32_t (*store_zero)(vdkit_store *store, vdkit_ctx *ctx, uint64_t offset, uint64_t len);
    /* Up to max extents covering [offset, offset+len) in order, contiguous. */
    uint32_t (*store_extents)(vdkit_store *store, vdkit_ctx *ctx, uint64_t offset, uint64_t len, vdkit_extent *out,
                              uint32_t max, uint32_t *count);
    uint32_t (*store_remove)(vdkit_ctx *ctx, vdkit_str path);
    /* Move a file; VDKIT_E_EXISTS when `to` exists (nothing is replaced). */
    uint32_t (*store_rename)(vdkit_ctx *ctx, vdkit_str from, vdkit_str to);

    /* Long operations: report progress; a non-zero return asks the plugin to
     * stop and return VDKIT_E_CANCELLED, leaving the image consistent. */
    uint32_t (*progress)(vdkit_ctx *ctx, uint64_t done, uint64_t total);
    /* check(): one finding, with the byte offset it concerns (UINT64_MAX: none). */
    void (*report_finding)(vdkit_ctx *ctx, uint32_t severity, uint64_t offset, vdkit_str message);
    /* 16 random bytes formatted as an RFC 4122 version 4 UUID. */
    void (*generate_uuid)(uint8_t out[16]);

    /* ---- added in 2.2: for disk-level filters (VDKIT_CAP_FILTER_DISK) ----
     * The key/value metadata of the chain's base image (a VMDK's ddb), the
     * place a filter keeps what it needs to reopen the disk (a key store).
     * VDKIT_E_NOT_SUPPORTED when the base image's format has no metadata or
     * the call does not come from a disk-level filter; get: VDKIT_E_NOT_FOUND
     * when the key is unset; (buf, cap, needed) as the format string outputs. */
    uint32_t (*disk_metadata_get)(vdkit_ctx *ctx, vdkit_str key, char *buf, uint64_t cap, uint64_t *needed);
    uint32_t (*disk_metadata_set)(vdkit_ctx *ctx, vdkit_str key, vdkit_str value);
    /* The base image's location (path or URL) as opened, so a filter can
     * name a sidecar next to it; store_open resolves sibling paths against
     * its directory. */
    uint32_t (*disk_location)(vdkit_ctx *ctx, char *buf, uint64_t cap, uint64_t *needed);
} vdkit_host_api;

#define VDKIT_HOST_HAS(host, field)                                                                                    \
    ((host)->struct_size >= (uint32_t)(offsetof(vdkit_host_api, field) + sizeof((host)->field)) && (host)->field)

/* ---- transports ---------------------------------------------------------------- */

/* A transport turns a location string (a path, later a URL) into bytes.
 * Required: open, close, pread, get_size. */
typedef struct vdkit_transport_ops {
    uint32_t struct_size;
    uint32_t _reserved;
    uint32_t (*open)(vdkit_ctx *ctx, vdkit_str location, uint32_t flags, void **handle);
    void (*close)(void *handle);
    uint32_t (*pread)(void *handle, vdkit_ctx *ctx, uint64_t offset, void *buf, uint64_t len);
    uint32_t (*pwrite)(void *handle, vdkit_ctx *ctx, uint64_t offset, const void *buf, uint64_t len);
    uint32_t (*flush)(void *handle, vdkit_ctx *ctx);
    uint32_t (*get_size)(void *handle, vdkit_ctx *ctx, uint64_t *size);
    uint32_t (*truncate)(void *handle, vdkit_ctx *ctx, uint64_t size);
    uint32_t (*discard)(void *handle, vdkit_ctx *ctx, uint64_t offset, uint64_t len);
    uint32_t (*zero)(void *handle, vdkit_ctx *ctx, uint64_t offset, uint64_t len);
    uint32_t (*extents)(void *handle, vdkit_ctx *ctx, uint64_t offset, uint64_t len, vdkit_extent *out, uint32_t max,
                        uint32_t *count);
    /* Bytes the location occupies on its medium (st_blocks for files). */
    uint32_t (*allocated_size)(void *handle, vdkit_ctx *ctx, uint64_t *bytes);
    uint32_t (*remove)(vdkit_ctx *ctx, vdkit_str location);
    uint32_t (*rename)(vdkit_ctx *ctx, vdkit_str from, vdkit_str to);
    uint32_t (*exists)(vdkit_ctx *ctx, vdkit_str location, uint8_t *exists);
} vdkit_transport_ops;

/* ---- filters --------------------------------------------------------------------- */

/* Operations a filter declares it handles (vdkit_filter_ops.handled_ops).
 * The host never passes an operation a filter did not declare: data-changing
 * operations are refused; read-only queries marked pass-through-safe in
 * abi-policy.md are forwarded to the layer below. */
#define VDKIT_OP_PREAD (1ull << 0)
#define VDKIT_OP_PWRITE (1ull << 1)
#define VDKIT_OP_FLUSH (1ull << 2)
#define VDKIT_OP_GET_SIZE (1ull << 3)
#define VDKIT_OP_TRUNCATE (1ull << 4)
#define VDKIT_OP_DISCARD (1ull << 5)
#define VDKIT_OP_ZERO (1ull << 6)
#define VDKIT_OP_EXTENTS (1ull << 7)

typedef struct vdkit_filter_ops {
    uint32_t struct_size;
    uint32_t _reserved;
    uint64_t handled_ops; /* VDKIT_OP_* this filter implements */
    /* next is the layer below; it stays valid until close. */
    uint32_t (*open)(vdkit_ctx *ctx, vdkit_store *next, uint32_t flags, void **handle);
    void (*close)(void *handle);
    uint32_t (*pread)(void *handle, vdkit_ctx *ctx, uint64_t offset, void *buf, uint64_t len);
    uint32_t (*pwrite)(void *handle, vdkit_ctx *ctx, uint64_t offset, const void *buf, uint64_t len);
    uint32_t (*flush)(void *handle, vdkit_ctx *ctx);
    uint32_t (*get_size)(void *handle, vdkit_ctx *ctx, uint64_t *size);
    uint32_t (*truncate)(void *handle, vdkit_ctx *ctx, uint64_t size);
    uint32_t (*discard)(void *handle, vdkit_ctx *ctx, uint64_t offset, uint64_t len);
    uint32_t (*zero)(void *handle, vdkit_ctx *ctx, uint64_t offset, uint64_t len);
    uint32_t (*extents)(void *handle, vdkit_ctx *ctx, uint64_t offset, uint64_t len, vdkit_extent *out, uint32_t max,
                        uint32_t *count);
} vdkit_filter_ops;

/* ---- formats --------------------------------------------------------------------- */

#define VDKIT_IMAGE_READ_ONLY (1u << 0)  /* opened or only openable read-only */
#define VDKIT_IMAGE_HAS_PARENT (1u << 1) /* a differencing image */
#define VDKIT_IMAGE_FIXED (1u << 2)      /* fully allocated */
#define VDKIT_IMAGE_ZERO_INIT (1u << 3)  /* unwritten ranges read as zero (no parent) */
/* Added in 1.2: writes must come at increasing offsets (a stream being written);
 * the host's copy then writes in order whatever the caller allowed. */
#define VDKIT_IMAGE_SEQUENTIAL (1u << 4)
/* Added in 2.3: the image records that it was not closed cleanly (qcow2's
 * dirty bit, a VHDX log to replay): qemu-img info's "dirty-flag". Formats
 * without such a mark never set it. */
#define VDKIT_IMAGE_DIRTY (1u << 5)

/* Filled by get_info. The host zero-fills it and sets struct_size; the plugin
 * writes at most struct_size bytes. An all-zero UUID means "none".
 * Chain links are verified on open: the child's parent_uuid must equal the
 * parent's uuid, and its parent_modification_uuid the parent's
 * modification_uuid (each check skipped when either side is all zero; the
 * modification check only between images of the same format).
 * Formats with 32-bit content ids (VMDK CID) report them as a modification
 * UUID whose first four bytes hold the id big-endian, the rest zero. */
typedef struct vdkit_image_info {
    uint32_t struct_size;
    uint32_t flags;        /* VDKIT_IMAGE_* */
    uint64_t virtual_size; /* bytes */
    /* Allocation unit: partial writes into an unallocated unit are completed
     * by the host (copy-on-write fill). 0 or 1: byte granular. */
    uint64_t granularity;
    uint8_t uuid[16];
    uint8_t modification_uuid[16];
    uint8_t parent_uuid[16];
    uint8_t parent_modification_uuid[16];
    uint32_t pchs_cylinders, pchs_heads, pchs_sectors, _reserved0;
    uint32_t lchs_cylinders, lchs_heads, lchs_sectors, _reserved1;
    vdkit_str subformat; /* e.g. "monolithicSparse"; valid until the next call */
} vdkit_image_info;

#define VDKIT_CREATE_FIXED (1u << 0) /* preallocate every block */
#define VDKIT_CREATE_DIFF (1u << 1)  /* differencing image; parent_* are set */

typedef struct vdkit_create_params {
    uint32_t struct_size;
    uint32_t flags;   /* VDKIT_CREATE_* */
    uint64_t size;    /* virtual size in bytes */
    uint8_t uuid[16]; /* all zero: let the plugin generate one */
    uint8_t parent_uuid[16];
    uint8_t parent_modification_uuid[16];
    vdkit_str parent_hint;   /* parent location relative to the new image */
    vdkit_str parent_format; /* the parent's format name */
    uint32_t pchs_cylinders, pchs_heads, pchs_sectors, _reserved0;
    uint32_t lchs_cylinders, lchs_heads, lchs_sectors, _reserved1;
} vdkit_create_params;

#define VDKIT_UUID_IMAGE 0u
#define VDKIT_UUID_MODIFICATION 1u
#define VDKIT_UUID_PARENT 2u
#define VDKIT_UUID_PARENT_MODIFICATION 3u

/* VDKIT_CHECK_REPAIR, VDKIT_CHECK_DRY_RUN (check flags): vdkit/constants.h */

typedef struct vdkit_check_result {
    uint32_t struct_size;
    uint32_t _reserved;
    uint64_t errors;   /* findings that affect data */
    uint64_t leaks;    /* wasted space */
    uint64_t repaired; /* fixed in this run */
} vdkit_check_result;

#define VDKIT_RESIZE_SHRINK (1u << 0) /* allow making the disk smaller */

/*
 * A format backend. Required: probe, open, close, read, get_info. Every
 * other NULL slot is "not supported" (the host emulates zero via write,
 * block_status as "all data", flush as no-op for read-only images).
 *
 * Buffers are host-owned; string outputs use (buf, cap, needed): the plugin
 * writes up to cap bytes, sets *needed to the full length, and returns
 * VDKIT_OK even when truncated; the host retries with a larger buffer.
 */
/* Filled by measure (added in 1.2). The host zero-fills it and sets struct_size. */
typedef struct vdkit_measure {
    uint32_t struct_size;
    uint32_t _reserved;
    uint64_t required;        /* bytes on the medium for the given data */
    uint64_t fully_allocated; /* bytes with every block allocated (preallocated) */
} vdkit_measure;

typedef struct vdkit_format_ops {
    uint32_t struct_size;
    uint32_t _reserved;

    /* Score how well main matches: 0 = not this format, 100 = certain (magic
     * and header checks pass). Must not fail on garbage: return OK, score 0. */
    uint32_t (*probe)(vdkit_ctx *ctx, vdkit_store *main, vdkit_str name, uint32_t *score);
    /* main is owned by the host and outlives the instance. */
    uint32_t (*open)(vdkit_ctx *ctx, vdkit_store *main, vdkit_str name, uint32_t flags, void **image);
    /* main is empty and writable; plugin-specific options come from config_get. */
    uint32_t (*create)(vdkit_ctx *ctx, vdkit_store *main, vdkit_str name, const vdkit_create_params *params,
                       void **image);
    /* Flush and free. With delete_files, also remove every file but main
     * (the host removes main). The instance is gone even on failure. */
    uint32_t (*close)(void *image, vdkit_ctx *ctx, uint8_t delete_files);
    uint32_t (*get_info)(void *image, vdkit_ctx *ctx, vdkit_image_info *info);

    /* Read [offset, offset+len). Returns VDKIT_OK with *done bytes read
     * (1..len, the host loops), or VDKIT_E_UNALLOCATED with *done the length
     * of the unallocated run starting at offset (buf untouched). */
    uint32_t (*read)(void *image, vdkit_ctx *ctx, uint64_t offset, void *buf, uint64_t len, uint64_t *done);
    /* Write. Returns VDKIT_OK with *done bytes written (1..len), or
     * VDKIT_E_BLOCK_FREE when the range covers only part of an unallocated
     * block: [*fill_offset, *fill_offset + *fill_len) is that block; the host
     * reads it through the chain, merges the new data and writes it whole. */
    uint32_t (*write)(void *image, vdkit_ctx *ctx, uint64_t offset, const void *buf, uint64_t len, uint64_t *done,
                      uint64_t *fill_offset, uint64_t *fill_len);
    /* Status (VDKIT_BLOCK_*) of the run starting at offset; *run in 1..len. */
    uint32_t (*block_status)(void *image, vdkit_ctx *ctx, uint64_t offset, uint64_t len, uint32_t *status,
                             uint64_t *run);
    uint32_t (*flush)(void *image, vdkit_ctx *ctx);
    /* Make the range unallocated where whole blocks allow; the rest keeps its data. */
    uint32_t (*discard)(void *image, vdkit_ctx *ctx, uint64_t offset, uint64_t len);
    /* Make the range read as zero, persistently, shadowing any parent. */
    uint32_t (*write_zeroes)(void *image, vdkit_ctx *ctx, uint64_t offset, uint64_t len);

    uint32_t (*set_uuid)(void *image, vdkit_ctx *ctx, uint32_t which, const uint8_t uuid[16]);
    uint32_t (*get_parent_hint)(void *image, vdkit_ctx *ctx, char *buf, uint64_t cap, uint64_t *needed);
    uint32_t (*set_parent)(void *image, vdkit_ctx *ctx, vdkit_str hint, vdkit_str format, const uint8_t uuid[16],
                           const uint8_t modification_uuid[16]);
    uint32_t (*get_comment)(void *image, vdkit_ctx *ctx, char *buf, uint64_t cap, uint64_t *needed);
    uint32_t (*set_comment)(void *image, vdkit_ctx *ctx, vdkit_str comment);
    /* pchs and lchs: {cylinders, heads, sectors}; NULL leaves one unchanged. */
    uint32_t (*set_geometry)(void *image, vdkit_ctx *ctx, const uint32_t *pchs, const uint32_t *lchs);
    uint32_t (*metadata_get)(void *image, vdkit_ctx *ctx, vdkit_str key, char *buf, uint64_t cap, uint64_t *needed);
    uint32_t (*metadata_set)(void *image, vdkit_ctx *ctx, vdkit_str key, vdkit_str value);
    /* Keys separated by '\0'. */
    uint32_t (*metadata_list)(void *image, vdkit_ctx *ctx, char *buf, uint64_t cap, uint64_t *needed);

    uint32_t (*compact)(void *image, vdkit_ctx *ctx);
    uint32_t (*resize)(void *image, vdkit_ctx *ctx, uint64_t new_size, uint32_t flags);
    uint32_t (*check)(void *image, vdkit_ctx *ctx, uint32_t flags, vdkit_check_result *result);
    /* Rename every file of the image so that main becomes new_name. */
    uint32_t (*rename)(void *image, vdkit_ctx *ctx, vdkit_str new_name);

    /* ---- added in 1.2 (part of the 2.0 minimum) ---- */
    /* Bytes a new image would take (qemu-img measure, VixDiskLib
     * SpaceNeededForClone): virtual size `size`, create options from
     * config_get as for create, holding data in the `count` sorted, disjoint
     * ranges of `data` (their type is ignored). No image is opened. */
    uint32_t (*measure)(vdkit_ctx *ctx, uint64_t size, const vdkit_extent *data, uint64_t count, vdkit_measure *out);

    /* ---- added in 2.3 (the host zero-fills them for an older plugin) ---- */
    /* The format's own facts about the image as ONE JSON object (UTF-8,
     * (buf, cap, needed) as the string outputs above): where qemu-img info
     * shows "format-specific" for the format, its "data" members with
     * qemu's names and meanings (VMDK: cid, parent-cid, create-type,
     * extents[]); further members of the format's own. NULL or "": none.
     * The host hands the text on unparsed (ImageInfo::format_specific). */
    uint32_t (*get_details)(void *image, vdkit_ctx *ctx, char *buf, uint64_t cap, uint64_t *needed);
    /* The format this differencing image records for its parent (qcow2's
     * backing format extension), as a vdkit format name, or "" when it
     * records none. The host then opens the parent as that format instead
     * of probing it: a format whose probe only guesses (raw: the fallback)
     * is used whatever the parent's bytes look like; any other must be what
     * probing finds, else the open fails naming both. A format that fills
     * this slot records create's and set_parent's parent_format, so the
     * host lets its images link to a raw parent that looks like an image.
     * NULL: the image records no parent format (the parent is probed). */
    uint32_t (*get_parent_format)(void *image, vdkit_ctx *ctx, char *buf, uint64_t cap, uint64_t *needed);
} vdkit_format_ops;

/* ---- descriptors ------------------------------------------------------------------ */

typedef struct vdkit_plugin_descriptor {
    uint32_t struct_size;
    uint16_t abi_major; /* VDKIT_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;
    uint32_t kind; /* VDKIT_KIND_* */
    uint32_t _reserved0;
    vdkit_str name; /* [a-z][a-z0-9_-]*, unique per kind */
    vdkit_str version;
    vdkit_str description;
    uint64_t capabilities; /* VDKIT_CAP_* */
    const vdkit_config_key *config_keys;
    uint32_t config_key_count;
    uint32_t config_key_size;    /* sizeof(vdkit_config_key) as compiled by the plugin */
    const vdkit_str *extensions; /* file extensions without the dot */
    uint32_t extension_count;
    uint32_t _reserved1;
    /* vdkit_format_ops, vdkit_filter_ops or vdkit_transport_ops by kind. */
    const void *ops;

    /* ---- added in 2.1 ---- */
    /* Transports only: further URL schemes (the part before "://") this
     * transport serves besides its name, lower case, RFC 3986 syntax
     * ([a-z][a-z0-9+.-]*), e.g. "nbds" and "nbd+unix" for the "nbd"
     * transport. A location's scheme picks the transport whose name or
     * scheme list holds it; a scheme claimed twice is refused at load. A
     * 2.0 host ignores these fields (the scheme then only reaches a
     * transport named after it). */
    const vdkit_str *schemes;
    uint32_t scheme_count;
    uint32_t _reserved2;
} vdkit_plugin_descriptor;

typedef struct vdkit_plugin_list {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t count;
    uint32_t _reserved;
    const vdkit_plugin_descriptor *const *plugins;
} vdkit_plugin_list;

/* The one exported symbol. Returns NULL on failure (after host->log). */
typedef const vdkit_plugin_list *(*vdkit_plugin_entry_fn)(const vdkit_host_api *host);

#if defined(_WIN32)
#define VDKIT_PLUGIN_EXPORT __declspec(dllexport)
#else
#define VDKIT_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* Declared here so a definition in C++ gets C linkage. Define it with
 * VDKIT_PLUGIN_ENTRY { ... } in C, or VDKIT_SDK_ENTRY(...) from plugin.hpp. */
VDKIT_PLUGIN_EXPORT const vdkit_plugin_list *vdkit_plugin_entry(const vdkit_host_api *host);

#define VDKIT_PLUGIN_ENTRY VDKIT_PLUGIN_EXPORT const vdkit_plugin_list *vdkit_plugin_entry(const vdkit_host_api *host)

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* VDKIT_PLUGIN_H */
