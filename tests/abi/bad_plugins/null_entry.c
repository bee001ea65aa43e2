/* The entry declines to load (returns NULL): must be refused. */
#include "vdkit/plugin.h"
VDKIT_PLUGIN_ENTRY {
    (void)host;
    return 0;
}
