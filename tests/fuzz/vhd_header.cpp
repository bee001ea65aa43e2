// Target vhd_header: the VHD footer (511 and 512 bytes), the dynamic header
// with its BAT bounds, the parent name and the parent locator decoders
// (formats.md §3.1-§3.3; MS-VHD), as plugins/formats/vhd reads them. The
// input is a footer (512 bytes), then a dynamic header (1024), then locator
// data; the file size they are judged against is the input's, or a larger
// one claimed by the last 8 bytes, so BAT offsets beyond a short input are
// reachable. Whatever parses must keep the bounds parse promises and
// serialise to bytes that parse back the same.
#include "layout.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

using namespace vdkit::vhd;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    std::vector<unsigned char> in(kFooterSize + kDynHeaderSize, 0);
    if (size) std::memcpy(in.data(), data, std::min(size, in.size())); // data may be null when empty
    uint64_t file_size = size;
    if (size >= in.size() + 8) {
        uint64_t claimed = 0;
        std::memcpy(&claimed, data + size - 8, 8);
        if (claimed > file_size) file_size = claimed;
    }
    for (const bool verify : {true, false}) {
        Footer f;
        (void)parse_footer(in.data(), kOldFooterSize, "fuzz", verify, f);
        if (parse_footer(in.data(), kFooterSize, "fuzz", verify, f)) continue;
        const uint64_t disk = f.disk_size();
        if (disk == 0 || (disk > kMaxSize && !f.size_from_chs())) std::abort();
        unsigned char out[kFooterSize];
        Footer again = f;
        serialise_footer(again, out);
        Footer back;
        if (auto err = parse_footer(out, kFooterSize, "fuzz", true, back)) {
            std::fprintf(stderr, "vhd_header: a footer that parses serialises to one that does not: %s\n",
                         err->c_str());
            std::abort();
        }
        if (back.disk_size() != disk) std::abort();
        DynHeader h;
        if (parse_dynamic(in.data() + kFooterSize, kFooterSize, disk, file_size, verify, h)) continue;
        const uint64_t need = needed_entries(disk, h.block_size);
        if (need > kMaxBatEntries || need > h.max_entries || h.table_offset + need * 4 > file_size) std::abort();
        if (h.bitmap_bytes() < kSector || h.bitmap_bytes() % kSector) std::abort();
        (void)parent_name(h);
        unsigned char dyn[kDynHeaderSize];
        DynHeader copy = h;
        serialise_dynamic(copy, dyn);
        DynHeader back2;
        if (auto err = parse_dynamic(dyn, kFooterSize, disk, file_size, true, back2)) {
            std::fprintf(stderr, "vhd_header: a dynamic header that parses serialises to one that does not: %s\n",
                         err->c_str());
            std::abort();
        }
    }
    // The locator decoders over the bytes after the headers.
    if (size > in.size()) {
        const unsigned char *rest = data + in.size();
        const uint64_t n = std::min<uint64_t>(size - in.size(), kMaxLocatorBytes);
        for (uint32_t code : {kPlatW2ku, kPlatW2ru, kPlatWi2k, kPlatWi2r, kPlatMac, kPlatMacX})
            (void)locator_text(code, rest, n);
        (void)utf16le(std::string_view(reinterpret_cast<const char *>(rest), static_cast<size_t>(n)));
    }
    return 0;
}
