// A format whose read callback lets a C++ exception escape (written without
// the SDK helper's firewall): the host must turn it into VDKIT_E_INTERNAL.
#include "vdkit/plugin.h"
#include <stdexcept>
namespace {
int instance;
const vdkit_format_ops *ops() {
    static vdkit_format_ops o{};
    o.struct_size = sizeof(o);
    o.probe = [](vdkit_ctx *, vdkit_store *, vdkit_str, uint32_t *s) -> uint32_t {
        *s = 0;
        return VDKIT_OK;
    };
    o.open = [](vdkit_ctx *, vdkit_store *, vdkit_str, uint32_t, void **i) -> uint32_t {
        *i = &instance;
        return VDKIT_OK;
    };
    o.close = [](void *, vdkit_ctx *, uint8_t) -> uint32_t { return VDKIT_OK; };
    o.get_info = [](void *, vdkit_ctx *, vdkit_image_info *info) -> uint32_t {
        info->virtual_size = 1 << 20;
        return VDKIT_OK;
    };
    o.read = [](void *, vdkit_ctx *, uint64_t, void *, uint64_t, uint64_t *) -> uint32_t {
        throw std::runtime_error("read exploded");
    };
    return &o;
}
} // namespace
extern "C" VDKIT_PLUGIN_EXPORT const vdkit_plugin_list *vdkit_plugin_entry(const vdkit_host_api *) {
    static vdkit_plugin_descriptor d{};
    d.struct_size = sizeof(d);
    d.abi_major = VDKIT_ABI_MAJOR;
    d.abi_minor = VDKIT_ABI_MINOR;
    d.kind = VDKIT_KIND_FORMAT;
    d.name = {"throwingread", 12};
    d.version = {"1", 1};
    d.ops = ops();
    static const vdkit_plugin_descriptor *items[] = {&d};
    static vdkit_plugin_list list{sizeof(vdkit_plugin_list), VDKIT_ABI_MAJOR, VDKIT_ABI_MINOR, 1, 0, items};
    return &list;
}
