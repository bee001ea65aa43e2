// The public text and container helpers of vdkit.hpp: the library's own
// parsers (util/) and container table (disk/containers), exported as they
// are so tools read the same syntax and name the same containers.
#include "disk/containers.hpp"
#include "util/util.hpp"
#include "vdkit/vdkit.hpp"

#include <cstring>

namespace vdkit {
inline namespace v1 {

std::optional<uint64_t> parse_size(std::string_view text) {
    return util::parse_size(text);
}
std::string format_size(uint64_t bytes) {
    return util::format_size(bytes);
}
std::optional<bool> parse_bool(std::string_view text) {
    return util::parse_bool(text);
}
std::optional<uint64_t> parse_uint(std::string_view text) {
    return util::parse_uint(text);
}
std::optional<std::vector<std::pair<std::string, std::string>>> parse_key_values(std::string_view text) {
    return util::parse_key_values(text);
}
std::optional<std::string> closest_match(std::string_view name, const std::vector<std::string> &candidates) {
    return util::closest_match(name, candidates);
}
std::string to_string(const Uuid &uuid) {
    return util::uuid_to_string(uuid.data());
}

namespace {

// known_containers(), in the order of containers::all(): entry i is all()[i].
const std::vector<ContainerKind> &kinds() {
    static const std::vector<ContainerKind> table = [] {
        std::vector<ContainerKind> out;
        for (const containers::Container &c : containers::all()) {
            ContainerKind k;
            k.name = std::string(c.name);
            k.title = std::string(c.title);
            for (std::string_view a : c.aliases)
                k.aliases.emplace_back(a);
            for (std::string_view e : c.extensions)
                k.extensions.emplace_back(e);
            out.push_back(std::move(k));
        }
        return out;
    }();
    return table;
}

const ContainerKind *kind_of(const containers::Container *c) {
    if (!c) return nullptr;
    const auto all = containers::all();
    return &kinds()[static_cast<size_t>(c - all.data())];
}

} // namespace

const std::vector<ContainerKind> &known_containers() {
    return kinds();
}
const ContainerKind *container_by_extension(std::string_view extension) {
    return kind_of(containers::by_extension(extension));
}
bool is_generic_extension(std::string_view extension) {
    return containers::is_generic_extension(extension);
}
std::string extension_of(std::string_view location) {
    return containers::extension_of(location);
}

Result<std::optional<ContainerMatch>> detect_container(uint64_t file_size, const ContainerRead &read) {
    auto found = containers::detect(file_size, read);
    if (!found) return found.status();
    if (!*found) return std::optional<ContainerMatch>();
    ContainerMatch m;
    m.container = kind_of((*found)->container);
    m.evidence = std::move((*found)->evidence);
    m.condition = std::string((*found)->condition);
    return std::optional<ContainerMatch>(std::move(m));
}

} // namespace v1
} // namespace vdkit
