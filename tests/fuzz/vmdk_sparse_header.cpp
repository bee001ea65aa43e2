// Target vmdk_sparse_header: the hosted sparse extent header (VMDK 1.1 §3
// "SparseExtentHeader"). A header that parses must re-encode without
// tripping anything; bad headers are sdk::Error (VDKIT_E_CORRUPT) only.
#include "sparse_extent.hpp"

#include <cstring>

using namespace vdkit;
using namespace vdkit::vmdk;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    unsigned char header[512] = {};
    if (size != 0) std::memcpy(header, data, std::min<size_t>(size, sizeof header)); // data may be null when empty
    try {
        const SparseHeader h = parse_sparse_header(header, "fuzz.vmdk");
        unsigned char out[512] = {};
        encode_sparse_header(h, out);
    } catch (const sdk::Error &) {
    }
    return 0;
}
