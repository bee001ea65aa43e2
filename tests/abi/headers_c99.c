/* The public headers compile as strict C99 (-std=c99 -pedantic -Werror). */
#include "vdkit/plugin.h"
#include "vdkit/status.h"
#include "vdkit/vdkit.h"

int vdkit_abi_c99_probe(void);
int vdkit_abi_c99_probe(void) {
    vdkit_host_api host = {0};
    host.struct_size = (uint32_t)sizeof host;
    return (int)VDKIT_HOST_HAS(&host, log);
}
