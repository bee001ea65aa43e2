// Target vmdk_descriptor: the VMDK descriptor text parser (VMDK 1.1 §4
// "The Descriptor File"), both as a separate descriptor and as a sparse
// extent's embedded one. A parsed descriptor must render to text that
// parses again to the same extents (the writer's round trip).
#include "descriptor.hpp"

#include <cstdlib>
#include <string>

using namespace vdkit::vmdk;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > kMaxDescriptorBytes) return 0; // callers never pass more (the plugin's bound)
    const std::string_view text(reinterpret_cast<const char *>(data), size);
    (void)looks_like_descriptor(text);
    for (bool embedded : {false, true}) {
        std::string error;
        auto d = parse_descriptor(text, &error, embedded);
        if (!d) continue;
        const std::string again = render_descriptor(*d);
        std::string error2;
        auto d2 = parse_descriptor(again, &error2, embedded);
        if (!d2 || d2->extents.size() != d->extents.size()) {
            fprintf(stderr, "vmdk_descriptor: rendered descriptor does not parse back: %s\n%s\n", error2.c_str(),
                    again.c_str());
            abort();
        }
    }
    return 0;
}
