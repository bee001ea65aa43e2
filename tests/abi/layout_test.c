/* Pins the ABI 2.0 layout and call shapes: any change to an existing field's
 * offset, a fixed struct's size or a data callback's argument order fails
 * here and must be a major version bump (sdk/docs/abi-policy.md,
 * sdk/docs/abi-ledger.md). New fields go at the end and are added below. */
#include "vdkit/plugin.h"
#include <stddef.h>
#include <stdio.h>

#define PIN(type, field, off) _Static_assert(offsetof(type, field) == (off), #type "." #field " moved")

PIN(vdkit_str, size, 8);
PIN(vdkit_plugin_descriptor, abi_major, 4);
PIN(vdkit_plugin_descriptor, kind, 8);
PIN(vdkit_plugin_descriptor, name, 16);
PIN(vdkit_plugin_descriptor, capabilities, 64);
PIN(vdkit_plugin_descriptor, config_keys, 72);
PIN(vdkit_plugin_descriptor, ops, 104);
PIN(vdkit_plugin_descriptor, schemes, 112);      /* 2.1 */
PIN(vdkit_plugin_descriptor, scheme_count, 120); /* 2.1 */
PIN(vdkit_plugin_list, plugins, 16);
PIN(vdkit_config_key, name, 16);
PIN(vdkit_config_key, max_value, 88);
PIN(vdkit_host_api, log, 8);
PIN(vdkit_host_api, set_error, 16);
PIN(vdkit_host_api, store_open, 56);
PIN(vdkit_host_api, generate_uuid, 168);
PIN(vdkit_host_api, disk_metadata_get, 176); /* 2.2 */
PIN(vdkit_host_api, disk_metadata_set, 184); /* 2.2 */
PIN(vdkit_host_api, disk_location, 192);     /* 2.2 */
PIN(vdkit_transport_ops, open, 8);
PIN(vdkit_transport_ops, exists, 112);
PIN(vdkit_filter_ops, handled_ops, 8);
PIN(vdkit_filter_ops, extents, 88);
PIN(vdkit_format_ops, probe, 8);
PIN(vdkit_format_ops, read, 48);
PIN(vdkit_format_ops, rename, 192);
PIN(vdkit_format_ops, measure, 200);           /* 1.2 */
PIN(vdkit_format_ops, get_details, 208);       /* 2.3 */
PIN(vdkit_format_ops, get_parent_format, 216); /* 2.3 */
PIN(vdkit_measure, required, 8);               /* 1.2 */
PIN(vdkit_measure, fully_allocated, 16);
PIN(vdkit_image_info, uuid, 24);
PIN(vdkit_image_info, subformat, 120);
PIN(vdkit_create_params, parent_hint, 64);
PIN(vdkit_check_result, repaired, 24);
_Static_assert(sizeof(vdkit_extent) == 24, "vdkit_extent is fixed");

_Static_assert(VDKIT_ABI_MAJOR == 2 && VDKIT_ABI_MINOR == 3, "ABI version changed: update the ledger and this pin");

/* The one I/O shape (plugin.h): object, ctx, offset, buffer, length, out-params.
 * SHAPE fails to compile when a slot's function type differs. */
#define SHAPE(type, field, fn_type)                                                                                    \
    _Static_assert(_Generic(((type *)0)->field, fn_type : 1, default : 0), #type "." #field " changed shape")
SHAPE(vdkit_format_ops, read, uint32_t (*)(void *, vdkit_ctx *, uint64_t, void *, uint64_t, uint64_t *));
SHAPE(vdkit_format_ops, write,
      uint32_t (*)(void *, vdkit_ctx *, uint64_t, const void *, uint64_t, uint64_t *, uint64_t *, uint64_t *));
SHAPE(vdkit_format_ops, block_status, uint32_t (*)(void *, vdkit_ctx *, uint64_t, uint64_t, uint32_t *, uint64_t *));
SHAPE(vdkit_format_ops, discard, uint32_t (*)(void *, vdkit_ctx *, uint64_t, uint64_t));
SHAPE(vdkit_format_ops, write_zeroes, uint32_t (*)(void *, vdkit_ctx *, uint64_t, uint64_t));
SHAPE(vdkit_transport_ops, pread, uint32_t (*)(void *, vdkit_ctx *, uint64_t, void *, uint64_t));
SHAPE(vdkit_transport_ops, pwrite, uint32_t (*)(void *, vdkit_ctx *, uint64_t, const void *, uint64_t));
SHAPE(vdkit_transport_ops, discard, uint32_t (*)(void *, vdkit_ctx *, uint64_t, uint64_t));
SHAPE(vdkit_transport_ops, zero, uint32_t (*)(void *, vdkit_ctx *, uint64_t, uint64_t));
SHAPE(vdkit_transport_ops, extents,
      uint32_t (*)(void *, vdkit_ctx *, uint64_t, uint64_t, vdkit_extent *, uint32_t, uint32_t *));
SHAPE(vdkit_filter_ops, pread, uint32_t (*)(void *, vdkit_ctx *, uint64_t, void *, uint64_t));
SHAPE(vdkit_filter_ops, pwrite, uint32_t (*)(void *, vdkit_ctx *, uint64_t, const void *, uint64_t));
SHAPE(vdkit_filter_ops, extents,
      uint32_t (*)(void *, vdkit_ctx *, uint64_t, uint64_t, vdkit_extent *, uint32_t, uint32_t *));
SHAPE(vdkit_host_api, store_pread, uint32_t (*)(vdkit_store *, vdkit_ctx *, uint64_t, void *, uint64_t));
SHAPE(vdkit_host_api, store_pwrite, uint32_t (*)(vdkit_store *, vdkit_ctx *, uint64_t, const void *, uint64_t));
SHAPE(vdkit_host_api, store_flush, uint32_t (*)(vdkit_store *, vdkit_ctx *));
SHAPE(vdkit_host_api, store_get_size, uint32_t (*)(vdkit_store *, vdkit_ctx *, uint64_t *));
SHAPE(vdkit_host_api, store_discard, uint32_t (*)(vdkit_store *, vdkit_ctx *, uint64_t, uint64_t));
SHAPE(vdkit_host_api, store_zero, uint32_t (*)(vdkit_store *, vdkit_ctx *, uint64_t, uint64_t));
SHAPE(vdkit_host_api, store_extents,
      uint32_t (*)(vdkit_store *, vdkit_ctx *, uint64_t, uint64_t, vdkit_extent *, uint32_t, uint32_t *));

/* Capability bits keep their numbers; retired ones stay reserved. */
_Static_assert(VDKIT_CAP_OBSOLETE_5 == (1ull << 5) && VDKIT_CAP_OBSOLETE_8 == (1ull << 8) &&
                   VDKIT_CAP_OBSOLETE_9 == (1ull << 9) && VDKIT_CAP_OBSOLETE_20 == (1ull << 20),
               "retired capability bits keep their numbers");
_Static_assert(VDKIT_CAP_THREAD_SAFE == (1ull << 17) && VDKIT_CAP_FILTER_FILE == (1ull << 21) &&
                   VDKIT_CAP_RENAME == (1ull << 22),
               "capability bits are never renumbered");

int main(void) {
    /* Status codes are never renumbered. */
    if (VDKIT_E_IO != 4 || VDKIT_E_BLOCK_FREE != 19 || VDKIT_STATUS_COUNT != 20) {
        fprintf(stderr, "status codes were renumbered\n");
        return 1;
    }
    printf("ABI %u.%u layout pinned\n", VDKIT_ABI_MAJOR, VDKIT_ABI_MINOR);
    return 0;
}
