#include "config/config_file.hpp"

#include "util/util.hpp"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>

namespace vdkit {

namespace {

// Schema errors carry the line; thrown only inside this file.
struct SchemaError {
    std::string message;
};

std::string at(const std::string &source, const YAML::Node &n) {
    return source + ":" + std::to_string(n.Mark().line + 1);
}

std::string scalar(const YAML::Node &n, const std::string &source, const std::string &what) {
    if (!n.IsScalar()) throw SchemaError{at(source, n) + ": " + what + " must be a single value"};
    return n.Scalar();
}

void check_known(const YAML::Node &map, const std::vector<std::string> &known, const std::string &source,
                 const std::string &section) {
    for (const auto &kv : map) {
        std::string k = kv.first.Scalar();
        bool ok = false;
        for (const auto &n : known)
            ok = ok || n == k;
        if (!ok) {
            std::string msg = at(source, kv.first) + ": unknown key '" + k + "'" + section;
            if (auto guess = util::closest_match(k, known)) msg += " — did you mean '" + *guess + "'?";
            throw SchemaError{msg};
        }
    }
}

} // namespace

Config default_config() {
    return Config{};
}

Result<Config> parse_config_text(const std::string &text, const std::string &source) {
    Config cfg;
    cfg.source = source;
    try {
        YAML::Node root = YAML::Load(text);
        if (root.IsNull()) return cfg;
        if (!root.IsMap()) return Status(VDKIT_E_CONFIG, source + ": the top level must be a mapping");
        check_known(root, {"plugin_paths", "log_level", "allow_unsafe_paths", "max_chain_depth", "defaults"}, source,
                    "");
        if (auto n = root["plugin_paths"]) {
            if (!n.IsSequence()) throw SchemaError{at(source, n) + ": plugin_paths must be a list of directories"};
            for (const auto &p : n)
                cfg.plugin_paths.push_back(scalar(p, source, "a plugin path"));
        }
        if (auto n = root["log_level"]) {
            std::string v = util::to_lower(scalar(n, source, "log_level"));
            if (v == "error")
                cfg.log_level = LogLevel::error;
            else if (v == "warning")
                cfg.log_level = LogLevel::warning;
            else if (v == "info")
                cfg.log_level = LogLevel::info;
            else if (v == "debug")
                cfg.log_level = LogLevel::debug;
            else
                throw SchemaError{at(source, n) + ": log_level must be error, warning, info or debug"};
        }
        if (auto n = root["allow_unsafe_paths"]) {
            auto b = util::parse_bool(scalar(n, source, "allow_unsafe_paths"));
            if (!b) throw SchemaError{at(source, n) + ": allow_unsafe_paths must be true or false"};
            cfg.allow_unsafe_paths = *b;
        }
        if (auto n = root["max_chain_depth"]) {
            auto v = util::parse_uint(scalar(n, source, "max_chain_depth"));
            if (!v || *v < 1 || *v > 1024)
                throw SchemaError{at(source, n) + ": max_chain_depth must be a whole number from 1 to 1024"};
            cfg.max_chain_depth = static_cast<uint32_t>(*v);
        }
        if (auto n = root["defaults"]) {
            if (!n.IsMap()) throw SchemaError{at(source, n) + ": defaults must map plugin kinds to plugins"};
            check_known(n, {"format", "filter", "transport"}, source, " under defaults");
            for (const auto &kind : n) {
                if (!kind.second.IsMap())
                    throw SchemaError{at(source, kind.second) + ": defaults." + kind.first.Scalar() +
                                      " must map plugin names to options"};
                for (const auto &plugin : kind.second) {
                    if (!plugin.second.IsMap())
                        throw SchemaError{at(source, plugin.second) + ": options of " + plugin.first.Scalar() +
                                          " must be a mapping"};
                    PluginDefaults &d = cfg.defaults[kind.first.Scalar() + "/" + util::to_lower(plugin.first.Scalar())];
                    for (const auto &kv : plugin.second) {
                        std::string key = kv.first.Scalar();
                        d.options[key] = scalar(kv.second, source, "option '" + key + "'");
                        d.lines[key] = kv.first.Mark().line + 1;
                    }
                }
            }
        }
    } catch (const SchemaError &e) {
        return Status(VDKIT_E_CONFIG, e.message);
    } catch (const YAML::Exception &e) {
        return Status(VDKIT_E_CONFIG, source + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
    }
    return cfg;
}

Result<Config> load_config_file(const std::string &path) {
    std::ifstream in(path);
    if (!in) return Status(VDKIT_E_NOT_FOUND, path + ": cannot open configuration file");
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_config_text(ss.str(), path);
}

Result<Options> plugin_options(const Config &config, const PluginInfo &plugin, const Options &given, OptionUse use) {
    Options merged;
    const char *kind = to_string(plugin.kind);
    auto it = config.defaults.find(std::string(kind) + "/" + plugin.name);
    if (it != config.defaults.end()) {
        for (const auto &[k, v] : it->second.options) {
            // Create-only defaults do not apply to opens.
            const ConfigKey *key = plugin.key(k);
            if (use == OptionUse::create || !(key && key->create_only)) merged[k] = v;
        }
    }
    for (const auto &[k, v] : given) {
        // A given key replaces a default spelled differently in case.
        for (auto m = merged.begin(); m != merged.end();)
            m = util::iequals(m->first, k) ? merged.erase(m) : std::next(m);
        merged[k] = v;
    }
    return resolve_options(plugin, merged, use, std::string(kind) + " '" + plugin.name + "'");
}

} // namespace vdkit
