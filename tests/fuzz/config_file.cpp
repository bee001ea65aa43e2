// Target config_file: the library configuration file (config/vdkit.yaml
// documents its keys; core/src/config/config_file.cpp). Errors are Result
// values: an exception escaping parse_config_text is a finding.
#include "config/config_file.hpp"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string text(reinterpret_cast<const char *>(data), size);
    (void)vdkit::parse_config_text(text, "fuzz.yaml");
    return 0;
}
