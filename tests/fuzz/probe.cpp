// Target probe: format probing of untrusted bytes — every loaded format
// plugin's probe (vmdk, vdi, raw), the core's scoring, and the foreign
// container signatures of core/src/disk/containers.cpp (qcow2, VHD, VHDX,
// ...) that the raw rule refuses (docs/design/probing.md).
#include "disk/containers.hpp"
#include "fuzz_support.hpp"

#include <cstring>

using namespace vdkit;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    auto read = [&](uint64_t offset, void *buf, size_t len) -> Status {
        if (offset > size || len > size - offset) {
            fprintf(stderr, "probe: containers::detect read [%llu, +%zu) beyond the %zu-byte file\n",
                    static_cast<unsigned long long>(offset), len, size);
            abort();
        }
        std::memcpy(buf, data + offset, len);
        return Status::ok();
    };
    (void)containers::detect(size, read);
    fuzz::set_files(data, size, "image");
    (void)fuzz::library().probe("fuzzmem://image");
    return 0;
}
