// The library configuration file (config/vdkit.yaml documents every key).
// This module is the only user of yaml-cpp in vdkit; YAML nodes never leave
// it. Parse errors and schema errors name the file and line.
#ifndef VDKIT_CORE_CONFIG_CONFIG_FILE_HPP
#define VDKIT_CORE_CONFIG_CONFIG_FILE_HPP

#include "config/options.hpp"
#include "vdkit/vdkit.hpp"

#include <map>
#include <string>
#include <vector>

namespace vdkit {

struct PluginDefaults {
    Options options;
    std::map<std::string, int> lines; // key -> line in the file, for messages
};

struct Config {
    std::string source; // file it came from; empty: built-in
    std::vector<std::string> plugin_paths;
    LogLevel log_level = LogLevel::warning;
    bool allow_unsafe_paths = false;
    uint32_t max_chain_depth = 32;
    // Option defaults per plugin: key is "<kind>/<name>" (e.g. "format/raw").
    std::map<std::string, PluginDefaults> defaults;
};

// Built-in defaults (what an empty file means).
Config default_config();
Result<Config> load_config_file(const std::string &path);
Result<Config> parse_config_text(const std::string &text, const std::string &source_name);

// Options for a plugin: the config file's defaults for it overlaid by
// `given` (a given key replaces a default spelled differently in case;
// create-only defaults do not apply to opens), then validated against the
// plugin's key table. Errors (VDKIT_E_CONFIG, VDKIT_E_INVALID_ARGUMENT)
// name the plugin.
Result<Options> plugin_options(const Config &config, const PluginInfo &plugin, const Options &given, OptionUse use);

} // namespace vdkit

#endif
