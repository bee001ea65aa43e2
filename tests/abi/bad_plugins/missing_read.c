/* A format without the required read callback: refused. */
#include "common.h"
static vdkit_format_ops ops = {sizeof(vdkit_format_ops), 0, t_probe, t_open, 0, t_close, t_info, 0};
static const vdkit_plugin_descriptor desc = {sizeof(vdkit_plugin_descriptor),
                                             VDKIT_ABI_MAJOR,
                                             0,
                                             VDKIT_KIND_FORMAT,
                                             0,
                                             STR("missingread"),
                                             STR("1"),
                                             STR("bad"),
                                             0,
                                             0,
                                             0,
                                             0,
                                             0,
                                             0,
                                             0,
                                             &ops};
static const vdkit_plugin_descriptor *const list_items[] = {&desc};
static const vdkit_plugin_list list = {sizeof(vdkit_plugin_list), VDKIT_ABI_MAJOR, 0, 1, 0, list_items};
VDKIT_PLUGIN_ENTRY {
    (void)host;
    return &list;
}
