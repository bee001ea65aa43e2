/* Built against a newer minor: descriptor and ops are longer than this host
 * knows (fields appended). Must load, with the extra fields ignored. */
#include "common.h"
struct future_ops {
    vdkit_format_ops v1;
    void *added_in_1_1[4];
};
struct future_desc {
    vdkit_plugin_descriptor v1;
    uint64_t added_in_1_1[3];
};
static struct future_ops ops = {{sizeof(struct future_ops), 0, t_probe, t_open, 0, t_close, t_info, t_read},
                                {0, 0, 0, 0}};
static const struct future_desc desc = {{sizeof(struct future_desc), VDKIT_ABI_MAJOR, VDKIT_ABI_MINOR + 1,
                                         VDKIT_KIND_FORMAT, 0, STR("longstruct"), STR("1"), STR("newer minor"), 0, 0, 0,
                                         0, 0, 0, 0, &ops},
                                        {7, 8, 9}};
static const vdkit_plugin_descriptor *const list_items[] = {&desc.v1};
static const vdkit_plugin_list list = {
    sizeof(vdkit_plugin_list), VDKIT_ABI_MAJOR, VDKIT_ABI_MINOR + 1, 1, 0, list_items};
VDKIT_PLUGIN_ENTRY {
    (void)host;
    return &list;
}
