// Option validation against a plugin's config-key table: the core checks
// names, types, ranges and enum values before a plugin sees any option, and
// suggests the closest key for a typo ("did you mean 'preallocation'?").
#ifndef VDKIT_CORE_CONFIG_OPTIONS_HPP
#define VDKIT_CORE_CONFIG_OPTIONS_HPP

#include "vdkit/vdkit.hpp"

#include <string_view>

namespace vdkit {

enum class OptionUse { open, create };

// The effective options for one call: every given key under its canonical
// name with a normalised value (bool -> "true"/"false", size -> bytes,
// enum -> its declared spelling), plus the declared defaults of keys not
// given. `where` prefixes error messages (e.g. "format 'raw'").
Result<Options> resolve_options(const PluginInfo &plugin, const Options &given, OptionUse use, std::string_view where);

// Normalise one value for a key; an error message names the key and why.
Result<std::string> normalise_value(const ConfigKey &key, std::string_view value, std::string_view where);

} // namespace vdkit

#endif
