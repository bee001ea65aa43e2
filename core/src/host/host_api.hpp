// The host function table (vdkit_host_api) handed to every plugin
// (host/host_api.cpp). Its store functions open, remove and rename files
// through io/ (Stores, the path policy); nothing else of the core is
// reachable from a plugin.
#ifndef VDKIT_CORE_HOST_HOST_API_HPP
#define VDKIT_CORE_HOST_HOST_API_HPP

#include "io/stores.hpp"
#include "vdkit/plugin.h"

namespace vdkit {

class Stores;

// The table; static, valid for the life of the process.
const vdkit_host_api *host_api_table();

// The stores of the Host whose plugins this thread is loading (the entry
// point may log with a null context), else null (host/host.cpp).
const Stores *current_loading_stores();

} // namespace vdkit

#endif
