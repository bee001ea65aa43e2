// The entry lets a C++ exception escape (no SDK helper): must be refused
// without taking the host down.
#include "vdkit/plugin.h"
#include <stdexcept>
extern "C" VDKIT_PLUGIN_EXPORT const vdkit_plugin_list *vdkit_plugin_entry(const vdkit_host_api *) {
    throw std::runtime_error("entry exploded");
}
