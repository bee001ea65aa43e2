/* Built for ABI 1.2, before the 2.0 change of argument order: must be refused
 * (its pread/pwrite would read the offset as the buffer). */
#include "common.h"
static vdkit_format_ops ops = {sizeof(vdkit_format_ops), 0, t_probe, t_open, 0, t_close, t_info, t_read};
static const vdkit_plugin_descriptor desc = {sizeof(vdkit_plugin_descriptor),
                                             1,
                                             2,
                                             VDKIT_KIND_FORMAT,
                                             0,
                                             STR("oldmajor"),
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
static const vdkit_plugin_list list = {sizeof(vdkit_plugin_list), 1, 2, 1, 0, list_items};
VDKIT_PLUGIN_ENTRY {
    (void)host;
    return &list;
}
