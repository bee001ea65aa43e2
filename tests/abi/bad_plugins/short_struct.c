/* Descriptor claims a struct_size smaller than ABI 2.0 defines: refused. */
#include "common.h"
static vdkit_format_ops ops = {sizeof(vdkit_format_ops), 0, t_probe, t_open, 0, t_close, t_info, t_read};
static const vdkit_plugin_descriptor desc = {
    16, VDKIT_ABI_MAJOR, 0, VDKIT_KIND_FORMAT, 0, STR("shortstruct"), STR("1"), STR("bad"), 0, 0, 0, 0, 0, 0, 0, &ops};
static const vdkit_plugin_descriptor *const list_items[] = {&desc};
static const vdkit_plugin_list list = {sizeof(vdkit_plugin_list), VDKIT_ABI_MAJOR, 0, 1, 0, list_items};
VDKIT_PLUGIN_ENTRY {
    (void)host;
    return &list;
}
