/* Pins the ABI 1.0 layout: any change to an existing field's offset or to a
 * fixed struct's size fails here and must be a major version bump
 * (sdk/docs/abi-policy.md). New fields go at the end and are added below. */
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
PIN(vdkit_plugin_list, plugins, 16);
PIN(vdkit_config_key, name, 16);
PIN(vdkit_config_key, max_value, 88);
PIN(vdkit_host_api, log, 8);
PIN(vdkit_host_api, set_error, 16);
PIN(vdkit_host_api, store_open, 56);
PIN(vdkit_host_api, generate_uuid, 168);
PIN(vdkit_transport_ops, open, 8);
PIN(vdkit_transport_ops, exists, 112);
PIN(vdkit_filter_ops, handled_ops, 8);
PIN(vdkit_filter_ops, extents, 88);
PIN(vdkit_format_ops, probe, 8);
PIN(vdkit_format_ops, read, 48);
PIN(vdkit_format_ops, rename, 192);
PIN(vdkit_format_ops, measure, 200); /* 1.2 */
PIN(vdkit_measure, required, 8);     /* 1.2 */
PIN(vdkit_measure, fully_allocated, 16);
PIN(vdkit_image_info, uuid, 24);
PIN(vdkit_image_info, subformat, 120);
PIN(vdkit_create_params, parent_hint, 64);
PIN(vdkit_check_result, repaired, 24);
_Static_assert(sizeof(vdkit_extent) == 24, "vdkit_extent is fixed");

int main(void) {
    /* Status codes are never renumbered. */
    if (VDKIT_E_IO != 4 || VDKIT_E_BLOCK_FREE != 19 || VDKIT_STATUS_COUNT != 20) {
        fprintf(stderr, "status codes were renumbered\n");
        return 1;
    }
    printf("ABI %u.%u layout pinned\n", VDKIT_ABI_MAJOR, VDKIT_ABI_MINOR);
    return 0;
}
