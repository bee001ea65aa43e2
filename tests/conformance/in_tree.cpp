// Conformance harness for vdkit_conformance_tests: every format plugin built
// in this tree, plus the directories in VDKIT_TEST_PLUGIN_PATH
// (':'-separated).
#include "conformance.hpp"
#include "test_support.hpp"

#include <cstdlib>
#include <sstream>

namespace vdkit::conformance {

std::shared_ptr<Library> library() {
    std::vector<std::string> extra;
    if (const char *env = std::getenv("VDKIT_TEST_PLUGIN_PATH")) {
        std::istringstream in(env);
        for (std::string dir; std::getline(in, dir, ':');)
            if (!dir.empty()) extra.push_back(dir);
    }
    return test::make_library(extra);
}

bool under_test(const PluginInfo &) {
    return true;
}

std::size_t minimum_formats() {
    return 2;
} // raw and the SDK example at least

} // namespace vdkit::conformance
