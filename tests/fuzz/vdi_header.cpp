// Target vdi_header: the VDI pre-header and header (formats.md §2,
// VirtualBox VDICore.h VDIHEADER0/1/1PLUS), as the plugin reads them: the
// first kHeaderReadSize bytes and the file size. A header that validates
// must serialise and parse back.
#include "layout.hpp"

#include <cstdlib>
#include <cstring>
#include <vector>

using namespace vdkit::vdi;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)probe(data, size);
    std::vector<unsigned char> buf(kHeaderReadSize, 0);
    if (size != 0) std::memcpy(buf.data(), data, std::min<size_t>(size, buf.size())); // data may be null when empty
    // The file size is the input's, or a claimed larger one taken from the
    // input's tail, so offsets beyond a short input are reachable too.
    uint64_t file_size = size;
    if (size >= kHeaderReadSize + 8) std::memcpy(&file_size, data + size - 8, 8);
    Header h;
    if (parse(buf.data(), std::min<uint64_t>(size, buf.size()), file_size, h)) return 0;
    std::vector<unsigned char> out(kHeaderReadSize, 0);
    serialise(h, out.data());
    Header again;
    if (auto err = parse(out.data(), out.size(), file_size, again)) {
        fprintf(stderr, "vdi_header: a valid header serialises to one that does not parse: %s\n", err->c_str());
        abort();
    }
    return 0;
}
