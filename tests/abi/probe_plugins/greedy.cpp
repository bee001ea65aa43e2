// A format that claims every file with certainty: next to toysparse it makes
// probing a tie, which must be an error naming both candidates.
#include "vdkit/plugin.hpp"
using namespace vdkit;
namespace {
struct Greedy {
    static uint32_t probe(sdk::Context &, sdk::StoreRef, std::string_view) { return VDKIT_PROBE_CERTAIN; }
    static std::unique_ptr<Greedy> open(sdk::Context &, sdk::StoreRef, std::string_view, uint32_t) {
        return std::make_unique<Greedy>();
    }
    void info(sdk::Context &, vdkit_image_info &out) { out.virtual_size = 4096; }
    sdk::ReadResult read(sdk::Context &, uint64_t, void *buf, uint64_t len) {
        std::memset(buf, 0, static_cast<size_t>(len));
        return {len, false};
    }
};
const vdkit_plugin_descriptor *greedy() {
    static const vdkit_plugin_descriptor d = sdk::describe(
        VDKIT_KIND_FORMAT, sdk::DescriptorSpec{"greedy", "1", "claims everything"}, sdk::format_ops<Greedy>());
    return &d;
}
} // namespace
VDKIT_SDK_ENTRY(greedy())
