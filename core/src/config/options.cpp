#include "config/options.hpp"

#include "util/util.hpp"

namespace vdkit {

namespace {
std::string range_text(const ConfigKey &k) {
    return "[" + std::to_string(k.min_value) + ", " + std::to_string(k.max_value) + "]";
}
} // namespace

Result<std::string> normalise_value(const ConfigKey &key, std::string_view value, std::string_view where) {
    const std::string who = std::string(where) + ": option '" + key.name + "'";
    auto bad = [&](const std::string &why) {
        return Status(VDKIT_E_CONFIG, who + " " + why + (key.secret ? "" : " (got '" + std::string(value) + "')"));
    };
    const bool ranged = key.min_value < key.max_value;
    switch (key.type) {
    case KeyType::string_:
        return std::string(value);
    case KeyType::boolean: {
        auto b = util::parse_bool(value);
        if (!b) return bad("expects a boolean (true/false, yes/no, on/off, 1/0)");
        return std::string(*b ? "true" : "false");
    }
    case KeyType::integer: {
        auto v = util::parse_int(value);
        if (!v) return bad("expects an integer");
        if (ranged && (*v < key.min_value || *v > key.max_value)) return bad("must be within " + range_text(key));
        return std::to_string(*v);
    }
    case KeyType::unsigned_:
    case KeyType::size: {
        auto v = key.type == KeyType::size ? util::parse_size(value) : util::parse_uint(value);
        if (!v)
            return bad(key.type == KeyType::size ? "expects a size (e.g. 4096, 64k, 2M)" : "expects a whole number");
        if (ranged && (key.min_value < 0 || *v < static_cast<uint64_t>(key.min_value) ||
                       *v > static_cast<uint64_t>(key.max_value)))
            return bad("must be within " + range_text(key));
        return std::to_string(*v);
    }
    case KeyType::enumeration: {
        for (const std::string &e : key.enum_values)
            if (util::iequals(e, value)) return e;
        std::string list;
        for (const std::string &e : key.enum_values)
            list += (list.empty() ? "" : ", ") + e;
        return bad("must be one of: " + list);
    }
    }
    return bad("has an unknown type");
}

Result<Options> resolve_options(const PluginInfo &plugin, const Options &given, OptionUse use, std::string_view where) {
    Options out;
    std::vector<std::string> names;
    for (const ConfigKey &k : plugin.keys)
        names.push_back(k.name);
    for (const auto &[name, value] : given) {
        const ConfigKey *key = nullptr;
        for (const ConfigKey &k : plugin.keys)
            if (util::iequals(k.name, name)) key = &k;
        if (!key) {
            std::string msg = std::string(where) + ": unknown option '" + name + "'";
            if (auto guess = util::closest_match(name, names))
                msg += " — did you mean '" + *guess + "'?";
            else if (names.empty())
                msg += " (this plugin takes no options)";
            else {
                msg += " (known:";
                for (const auto &n : names)
                    msg += " " + n;
                msg += ")";
            }
            return Status(VDKIT_E_CONFIG, msg);
        }
        if (key->create_only && use == OptionUse::open)
            return Status(VDKIT_E_CONFIG,
                          std::string(where) + ": option '" + key->name + "' only applies when creating an image");
        VDKIT_ASSIGN_OR_RETURN(std::string v, normalise_value(*key, value, where));
        out[key->name] = std::move(v);
    }
    for (const ConfigKey &k : plugin.keys) {
        if (out.count(k.name)) continue;
        if (k.mandatory && !(k.create_only && use == OptionUse::open))
            return Status(VDKIT_E_CONFIG, std::string(where) + ": option '" + k.name + "' is required");
        if (!k.default_value.empty()) {
            VDKIT_ASSIGN_OR_RETURN(std::string v, normalise_value(k, k.default_value, where));
            out[k.name] = std::move(v);
        }
    }
    return out;
}

} // namespace vdkit
