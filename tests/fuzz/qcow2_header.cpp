// Target qcow2_header: the qcow2 header cluster, its extensions and the
// L2 entry decoding (qcow2.txt §Header, §Header extensions, §Cluster
// mapping, §Extended L2 Entries), as plugins/formats/qcow2 reads them. The
// input is the header cluster; the file size it is judged against is the
// input's, or a larger one claimed by its last 8 bytes, so table offsets
// beyond a short input are reachable. A header that parses also has its
// refusal judged and every 16-byte pair of its tail decoded as an L2 entry
// and bitmap, for every subcluster; decoded offsets must keep their bounds.
#include "layout.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

using namespace vdkit::qcow2;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)probe(data, size);
    (void)claimed_cluster_size(data, size);
    uint64_t file_size = size;
    if (size >= kV3HeaderLength + 8) {
        uint64_t claimed = 0;
        std::memcpy(&claimed, data + size - 8, 8);
        if (claimed > file_size) file_size = claimed;
    }
    Header h;
    if (parse_header(data, size, file_size, h)) return 0;
    (void)refusal(h);
    // Invariants parse_header promises the plugin.
    if (h.cluster_bits < kMinClusterBits || h.cluster_bits > kMaxClusterBits || uint64_t(h.l1_size) * 8 > kMaxL1Bytes ||
        h.l1_needed() > h.l1_size || h.backing_file.size() > kMaxBackingNameLength) {
        std::fprintf(stderr, "qcow2_header: a header that parses breaks a bound\n");
        std::abort();
    }
    const uint32_t subclusters = h.extended_l2() ? kSubclusters : 1;
    for (size_t i = kV3HeaderLength; i + 16 <= size; i += 16) {
        const uint64_t entry = load_be(data + i, 8), bitmap = load_be(data + i + 8, 8);
        for (uint32_t sc = 0; sc < subclusters; ++sc) {
            Mapping m;
            if (decode_l2(h, entry, bitmap, sc, m)) break;
            if (m.kind == Kind::data && m.host_offset >> 57) std::abort();
            if (m.kind == Kind::compressed && m.compressed_bytes > (2 * h.cluster_size()) + 512) std::abort();
        }
    }
    return 0;
}
