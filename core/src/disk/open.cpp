// Opening and creating disks: format probing, chain assembly with parent
// verification, and image creation (base or differencing).
#include "disk/open.hpp"
#include "disk/containers.hpp"
#include "disk/disk_state.hpp"
#include "host/host.hpp"
#include "io/paths.hpp"
#include "io/stores.hpp"
#include "util/util.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>

namespace fs = std::filesystem;

namespace vdkit {

namespace {

std::string canonical_key(const std::string &location) {
    if (location.find("://") != std::string::npos) return location;
    std::error_code ec;
    auto p = fs::weakly_canonical(location, ec);
    return ec ? location : p.string();
}

} // namespace

Status refuse_unrecognised(const Host &host, ByteStore &main, const std::string &location,
                           const PluginEntry *fallback) {
    // 1. A container signature (core/src/disk/containers.cpp).
    VDKIT_ASSIGN_OR_RETURN(uint64_t size, main.size());
    auto read = [&main](uint64_t offset, void *buf, size_t len) { return main.pread(buf, len, offset); };
    auto detected = containers::detect(size, read);
    if (!detected) return detected.status().with_context("probe " + location);
    if (const auto &m = *detected) {
        const containers::Container &c = *m->container;
        // A plugin that reads the format but declined this file (a variant it
        // does not know, or damage) is named: installing another is no answer.
        for (auto alias : c.aliases)
            if (auto plugin = host.registry().find(PluginKind::format, alias))
                return Status(VDKIT_E_NOT_SUPPORTED,
                              location + " carries a " + std::string(c.title) + " signature (" + m->evidence +
                                  ") but the installed '" + plugin->info.name +
                                  "' plugin does not recognise it (damaged, or a variant it cannot read); open it "
                                  "with format 'raw' to read the container bytes");
        const std::string how = m->condition.empty() ? "a " : "a " + std::string(m->condition) + " ";
        return Status(VDKIT_E_NOT_SUPPORTED, location + " is " + how + std::string(c.title) + " image (" + m->evidence +
                                                 ") and no installed plugin reads " + std::string(c.name) +
                                                 "; open it with format 'raw' to read the container bytes");
    }
    // 2. A name that promises a format the file does not carry. The fallback
    // format's own extensions (raw: .img, .raw, ...) and unknown ones pass.
    const std::string ext = containers::extension_of(location);
    if (ext.empty()) return Status::ok();
    auto claims = [&ext](const PluginEntry &p) {
        return std::any_of(p.info.extensions.begin(), p.info.extensions.end(),
                           [&ext](const std::string &e) { return util::iequals(e, ext); });
    };
    if (fallback && claims(*fallback)) return Status::ok();
    // A VMDK flat extent ("disk-flat.vmdk") is raw data that a descriptor names.
    if (util::iequals(ext, "vmdk")) {
        const std::string stem = fs::path(location).stem().string();
        if (stem.size() > 5 && util::iequals(stem.substr(stem.size() - 5), "-flat"))
            return Status(VDKIT_E_PERMISSION, location + ": this looks like a VMDK flat extent (the raw data a "
                                                         "descriptor names); open the descriptor, or open it with "
                                                         "format 'raw' to read it as raw bytes");
    }
    for (const auto &fmt : host.registry().list(PluginKind::format))
        if (fmt.get() != fallback && claims(*fmt))
            return Status(VDKIT_E_PERMISSION,
                          location + ": named like a " + fmt->info.name + " image but it is not one (the " +
                              fmt->info.name +
                              " probe found no header); open it with format 'raw' to read it as raw bytes");
    if (const containers::Container *c = containers::by_extension(ext)) {
        std::string why = "no installed plugin reads " + std::string(c->name);
        for (auto alias : c->aliases)
            if (auto plugin = host.registry().find(PluginKind::format, alias))
                why = "the installed '" + plugin->info.name + "' plugin does not recognise it";
        return Status(VDKIT_E_PERMISSION, location + ": named like a " + std::string(c->title) +
                                              " image but it carries no " + std::string(c->name) + " signature, and " +
                                              why + "; open it with format 'raw' to read it as raw bytes");
    }
    return Status::ok();
}

Result<uint32_t> probe_score(const Host &host, const PluginEntry &fmt, ByteStore &main, const std::string &location) {
    vdkit_store borrowed{nullptr};
    struct Release {
        vdkit_store &s;
        ~Release() { (void)s.store.release(); }
    };
    borrowed.store.reset(&main);
    Release release{borrowed};
    Options none;
    vdkit_ctx ctx = host.stores().make_ctx(&fmt, &none);
    ctx.base_location = location;
    uint32_t score = 0;
    uint32_t rc =
        call_plugin(ctx, fmt.format.probe, &ctx, &borrowed, vdkit_str{location.data(), location.size()}, &score);
    if (rc == VDKIT_E_IO) return status_from_plugin(ctx, rc, "probe " + location);
    return rc == VDKIT_OK ? score : 0u;
}

Result<PluginEntryPtr> recorded_parent_format(const Host &host, ByteStore &main, const std::string &location,
                                              const std::string &recorded, const std::string &child) {
    const std::string who = child + " records the format of its backing file " + location + " as '" + recorded + "'";
    PluginEntryPtr fmt = host.registry().find(PluginKind::format, recorded);
    if (!fmt) return Status(VDKIT_E_NOT_SUPPORTED, who + ", and no installed format plugin has that name");
    VDKIT_ASSIGN_OR_RETURN(uint32_t score, probe_score(host, *fmt, main, location));
    // A format that can only guess (raw) is taken as recorded: its bytes are
    // guest data, and whatever header they show is not the image's.
    if (score > VDKIT_PROBE_NO && score <= VDKIT_PROBE_FALLBACK) return fmt;
    auto found = probe(host, main, location, true);
    if (!found && found.status().code() == VDKIT_E_IO) return found.status();
    if (score > VDKIT_PROBE_NO && found && (*found).get() == fmt.get()) return fmt;
    std::string seen;
    if (found) {
        seen = "probing finds a '" + (*found)->info.name + "' image there";
    } else {
        seen = "probing finds no '" + recorded + "' image there (" + found.status().message();
        if (auto cut = seen.find("; open it with format"); cut != std::string::npos) seen.erase(cut);
        if (auto cut = seen.find("; name the format with -f"); cut != std::string::npos) seen.erase(cut);
        seen += ")";
    }
    return Status(VDKIT_E_PARENT_MISMATCH, who + " but " + seen +
                                               "; the recorded format and the file disagree (rebase -u -F with the "
                                               "right format if the record is wrong)");
}

Status check_parent_link(const Host &host, Image &parent, const std::string &child, const std::string &child_format) {
    const std::string &where = parent.location();
    // A child whose format records its parent's format is opened through
    // that record, not by probing (recorded_parent_format).
    if (PluginEntryPtr cf = host.registry().find(PluginKind::format, child_format);
        cf && cf->format.get_parent_format) {
        auto found = recorded_parent_format(host, parent.main(), where, parent.format().info.name, child);
        if (!found)
            return Status(found.status().code(),
                          "cannot make " + where + " the parent of " + child + ": " + found.status().message());
        return Status::ok();
    }
    const std::string why = "; a parent is probed each time the chain opens and " + child_format +
                            " images cannot record their parent's format, so " + child + " could never be opened again";
    auto found = probe(host, parent.main(), where, true);
    if (!found) {
        if (found.status().code() == VDKIT_E_IO) return found.status();
        std::string msg = found.status().message();
        if (auto cut = msg.find("; open it with format"); cut != std::string::npos) msg.erase(cut);
        return Status(found.status().code(), "cannot make " + where + " the parent of " + child + ": " + msg + why);
    }
    if ((*found).get() != &parent.format())
        return Status(VDKIT_E_INVALID_ARGUMENT, "cannot make " + where + " the parent of " + child + " as '" +
                                                    parent.format().info.name + "': probing finds a " +
                                                    (*found)->info.name + " image there" + why);
    return Status::ok();
}

Result<PluginEntryPtr> probe(const Host &host, ByteStore &main, const std::string &location, bool fallback_ok) {
    vdkit_store borrowed{nullptr};
    struct Release { // the store stays owned by the caller
        vdkit_store &s;
        ~Release() { (void)s.store.release(); }
    };
    borrowed.store.reset(&main);
    Release release{borrowed};

    struct Candidate {
        PluginEntryPtr plugin;
        uint32_t score;
    };
    std::vector<Candidate> scored;
    Options none;
    for (const auto &fmt : host.registry().list(PluginKind::format)) {
        vdkit_ctx ctx = host.stores().make_ctx(fmt.get(), &none);
        ctx.base_location = location;
        uint32_t score = 0;
        uint32_t rc =
            call_plugin(ctx, fmt->format.probe, &ctx, &borrowed, vdkit_str{location.data(), location.size()}, &score);
        if (rc != VDKIT_OK) {
            // A probe must not fail on foreign data; an I/O error is real.
            if (rc == VDKIT_E_IO) return status_from_plugin(ctx, rc, "probe " + location);
            host.log(LogLevel::debug,
                     "probe of " + location + " by '" + fmt->info.name + "' failed: " + ctx.error_message);
            continue;
        }
        if (score > 0) scored.push_back({fmt, std::min<uint32_t>(score, VDKIT_PROBE_CERTAIN)});
    }
    std::sort(scored.begin(), scored.end(), [](const Candidate &a, const Candidate &b) { return a.score > b.score; });
    // No plugin found evidence (at best the raw fallback): a known container
    // signature or a name that promises a format is refused rather than read
    // as container bytes (docs/design/probing.md, "Foreign containers").
    if (scored.empty() || scored[0].score <= VDKIT_PROBE_FALLBACK)
        VDKIT_TRY(refuse_unrecognised(host, main, location, scored.empty() ? nullptr : scored[0].plugin.get()));
    std::string tried;
    for (const auto &fmt : host.registry().list(PluginKind::format))
        tried += (tried.empty() ? "" : ", ") + fmt->info.name;
    if (scored.empty())
        return Status(VDKIT_E_NOT_FOUND, location + ": no format plugin recognises this image (tried: " + tried +
                                             "); name the format with -f");
    if (scored.size() > 1 && scored[0].score == scored[1].score) {
        std::string tie;
        for (const auto &c : scored)
            if (c.score == scored[0].score) tie += (tie.empty() ? "" : ", ") + c.plugin->info.name;
        return Status(VDKIT_E_AMBIGUOUS, location + ": several formats match equally well (" + tie + ", score " +
                                             std::to_string(scored[0].score) + "); name one with -f");
    }
    if (scored[0].score <= VDKIT_PROBE_FALLBACK) {
        if (!fallback_ok)
            return Status(VDKIT_E_PERMISSION, location + ": no format recognises this image, and guessing '" +
                                                  scored[0].plugin->info.name +
                                                  "' is refused for writing; name the format with -f " +
                                                  scored[0].plugin->info.name + " if that is right");
        host.log(LogLevel::info, location + ": no format recognised it; reading it as '" + scored[0].plugin->info.name +
                                     "' (name the format with -f to be explicit)");
    }
    return scored[0].plugin;
}

Result<std::unique_ptr<Disk>> open_disk(const Host &host, const std::string &location, const OpenOptions &options) {
    if (options.force_share && options.writable)
        return Status(VDKIT_E_INVALID_ARGUMENT, location + ": force-share (-U/--force-share) is for reading an image "
                                                           "in use; it cannot be opened for writing with it");
    if (options.info_only && options.writable)
        return Status(VDKIT_E_INVALID_ARGUMENT, location + ": an image opened for information only (info_only) "
                                                           "cannot be opened for writing");
    // force_share: no image lock on any file of the chain (nor a test for others').
    const bool lock = options.lock && !options.force_share;
    // direct: every image's transport bypasses the page cache.
    Options transport_options = options.transport_options;
    if (options.direct) {
        VDKIT_ASSIGN_OR_RETURN(PluginEntryPtr transport, host.stores().transport_for(location));
        if (!transport->info.key("direct"))
            return Status(VDKIT_E_NOT_SUPPORTED, location + ": transport '" + transport->info.name +
                                                     "' cannot bypass the host cache (it has no 'direct' option)");
        transport_options["direct"] = "true";
    }
    auto state = std::make_unique<DiskAccess::State>();
    state->host = host.shared_from_this();
    state->writable = options.writable;
    state->info_only = options.info_only;
    const bool allow_unsafe = options.allow_unsafe_paths.value_or(host.config().allow_unsafe_paths);
    VDKIT_ASSIGN_OR_RETURN(const FilterStack filters, host.stores().resolve_filters(options.filters, OptionUse::open));

    std::vector<std::string> seen;
    std::string current = location;
    std::string format_name = options.format;
    bool top = true;
    Uuid expected_parent{}, expected_parent_modification{};
    std::string child_location, child_format, child_hint;
    std::string recorded_format, next_recorded_format; // the parent's format as its child records it ("" none)
    NamedPath parent_path;                             // where the child's hint led (beyond: verified below)
    // Walk from the top image down to the base, then reverse.
    std::vector<std::unique_ptr<Image>> chain;
    for (;;) {
        if (chain.size() >= host.config().max_chain_depth)
            return Status(VDKIT_E_OUT_OF_RANGE, location + ": the chain is deeper than max_chain_depth (" +
                                                    std::to_string(host.config().max_chain_depth) + ")");
        std::string key = canonical_key(current);
        if (std::find(seen.begin(), seen.end(), key) != seen.end())
            return Status(VDKIT_E_CORRUPT, location + ": the chain loops back to " + current);
        seen.push_back(key);

        if (top && current.find("://") == std::string::npos) {
            // The path the caller gave is opened as given, but only a
            // regular file or a block device can hold an image: opening a
            // fifo would block forever, a socket or character device
            // (/dev/zero) gives no image. (Parents are judged by the path
            // rule, which refuses these too.)
            std::error_code sec;
            const auto type = std::filesystem::status(current, sec).type();
            const char *what = type == std::filesystem::file_type::fifo        ? "a fifo"
                               : type == std::filesystem::file_type::socket    ? "a socket"
                               : type == std::filesystem::file_type::character ? "a character device"
                                                                               : nullptr;
            if (!sec && what)
                return Status(VDKIT_E_INVALID_ARGUMENT, current + " is " + what +
                                                            ", not an image file (images are regular files or "
                                                            "block devices)");
        }
        const bool writable = (top || options.writable_chain) && options.writable;
        uint32_t flags = (writable ? VDKIT_OPEN_WRITE : 0) | (lock ? 0 : VDKIT_OPEN_NOLOCK);
        const uint32_t format_flags = flags | (options.info_only ? VDKIT_OPEN_INFO : 0);
        VDKIT_ASSIGN_OR_RETURN(ByteStorePtr main, host.stores().open_store(current, flags, transport_options, filters));

        PluginEntryPtr fmt;
        if (!format_name.empty()) {
            fmt = host.registry().find(PluginKind::format, format_name);
            if (!fmt) return host.unknown_plugin(PluginKind::format, format_name);
        } else if (!recorded_format.empty()) {
            // The child records its parent's format (qcow2's backing format):
            // that, not the probe, decides (CVE-2008-2004).
            VDKIT_ASSIGN_OR_RETURN(fmt, recorded_parent_format(host, *main, current, recorded_format, child_location));
        } else {
            // A parent named by its child may be raw (probed by fallback),
            // even in a chain opened for writing.
            auto found = probe(host, *main, current, !writable || !top);
            if (!found && !top && found.status().code() != VDKIT_E_IO) {
                // No flag names a parent's format: say whose parent it is.
                std::string msg = found.status().message();
                if (auto cut = msg.find("; open it with format"); cut != std::string::npos) msg.erase(cut);
                return Status(found.status().code(),
                              current + " is the parent of " + child_location + " and is probed (" + child_format +
                                  " images do not record their parent's format): " + msg + "; open " + current +
                                  " alone with format 'raw' to read its bytes");
            }
            if (!found) return found.status();
            fmt = *found;
        }
        ImageSetup setup;
        setup.location = current;
        setup.writable = writable;
        setup.allow_unsafe_paths = allow_unsafe;
        setup.lock = lock;
        setup.filters = filters;
        VDKIT_ASSIGN_OR_RETURN(PluginEntryPtr transport, host.stores().transport_for(current));
        VDKIT_ASSIGN_OR_RETURN(setup.transport_options,
                               host.options_for(*transport, transport_options, OptionUse::open));
        // Format options apply to the image named by the caller only.
        VDKIT_ASSIGN_OR_RETURN(setup.format_options,
                               host.options_for(*fmt, top ? options.format_options : Options{}, OptionUse::open));
        auto opened = Image::open(host.stores(), fmt, std::move(main), std::move(setup), format_flags);
        if (!opened) {
            // A named format that fails on a known container: say what it is
            // (`-f vdi disk.qcow2`).
            if (!format_name.empty() && opened.status().code() != VDKIT_E_IO)
                if (auto again = host.stores().open_store(current, VDKIT_OPEN_NOLOCK, transport_options, filters)) {
                    ByteStore &bs = **again;
                    if (auto size = bs.size()) {
                        auto read = [&bs](uint64_t o, void *b, size_t n) { return bs.pread(b, n, o); };
                        if (auto m = containers::detect(*size, read);
                            m && *m && (*m)->container->name != fmt->info.name)
                            return Status(opened.status().code(), opened.status().message() + " (" + current +
                                                                      " is a " + std::string((*m)->container->title) +
                                                                      " image: " + (*m)->evidence + ")");
                    }
                }
            return opened.status();
        }
        auto img = std::move(*opened);
        VDKIT_ASSIGN_OR_RETURN(vdkit_image_info info, img->raw_info());

        // A parent outside the child's directory must prove to be the image
        // the child records (the path rule; ignore_parent_mismatch does not
        // relax it).
        if (!top)
            VDKIT_TRY(verify_parent(child_location, child_hint, parent_path, child_format, expected_parent.data(),
                                    expected_parent_modification.data(), fmt->info.name, info));
        if (!top && !util::uuid_is_nil(expected_parent.data()) && !util::uuid_is_nil(info.uuid) &&
            std::memcmp(expected_parent.data(), info.uuid, 16) != 0 && !options.ignore_parent_mismatch)
            return Status(VDKIT_E_PARENT_MISMATCH, child_location + " expects parent " +
                                                       util::uuid_to_string(expected_parent.data()) + " but " +
                                                       current + " is " + util::uuid_to_string(info.uuid) +
                                                       " (the parent was replaced or the child belongs elsewhere)");
        // The child also records the parent's modification id (VDI's parent
        // modification UUID, VMDK's parentCID): a mismatch means the parent
        // changed after the child was made, so the child's view is stale.
        // Modification ids are compared within one format only: a VMDK
        // child's parentCID cannot name a VDI parent's modification UUID.
        if (!top && child_format == fmt->info.name && !util::uuid_is_nil(expected_parent_modification.data()) &&
            !util::uuid_is_nil(info.modification_uuid) &&
            std::memcmp(expected_parent_modification.data(), info.modification_uuid, 16) != 0 &&
            !options.ignore_parent_mismatch)
            return Status(VDKIT_E_PARENT_MISMATCH, current + " was modified after its child " + child_location +
                                                       " was created (the child expects modification id " +
                                                       util::uuid_to_string(expected_parent_modification.data()) +
                                                       ", the parent has " +
                                                       util::uuid_to_string(info.modification_uuid) + ")");
        const bool has_parent = info.flags & VDKIT_IMAGE_HAS_PARENT;
        std::string hint;
        if (has_parent && options.follow_parents) {
            VDKIT_ASSIGN_OR_RETURN(hint, img->parent_hint());
            if (hint.empty())
                return Status(VDKIT_E_NOT_FOUND, current + " is a differencing image but names no parent location");
            VDKIT_ASSIGN_OR_RETURN(next_recorded_format, img->parent_format());
        }
        std::memcpy(expected_parent.data(), info.parent_uuid, 16);
        std::memcpy(expected_parent_modification.data(), info.parent_modification_uuid, 16);
        if (top) state->size = info.virtual_size;
        chain.push_back(std::move(img));
        if (!has_parent || !options.follow_parents) break;

        VDKIT_ASSIGN_OR_RETURN(parent_path, resolve_named(current, hint, PathUse::parent, allow_unsafe));
        const std::string parent = parent_path.location;
        VDKIT_ASSIGN_OR_RETURN(bool exists, host.stores().location_exists(parent));
        if (!exists)
            return Status(VDKIT_E_NOT_FOUND, current + ": parent image '" + hint + "' (" + parent + ") does not exist");
        child_location = current;
        child_format = fmt->info.name;
        child_hint = hint;
        current = parent;
        format_name.clear();
        recorded_format = next_recorded_format;
        top = false;
    }
    std::reverse(chain.begin(), chain.end());
    state->images = std::move(chain);
    VDKIT_TRY(state->attach_disk_filters(filters, (options.writable ? VDKIT_OPEN_WRITE : 0) |
                                                      (options.info_only ? VDKIT_OPEN_INFO : 0)));
    return DiskAccess::make(std::move(state));
}

Result<std::unique_ptr<Disk>> create_disk(const Host &host, const std::string &location, const CreateOptions &options,
                                          const std::string &final_location) {
    if (options.format.empty()) return Status(VDKIT_E_INVALID_ARGUMENT, "creating " + location + ": no format given");
    PluginEntryPtr fmt = host.registry().find(PluginKind::format, options.format);
    if (!fmt) return host.unknown_plugin(PluginKind::format, options.format);
    const PluginInfo &fi = fmt->info;
    const bool diff = !options.parent.empty();
    if (!fmt->format.create) return Status(VDKIT_E_NOT_SUPPORTED, "format '" + fi.name + "' cannot create images");
    if (diff && !fi.has(VDKIT_CAP_DIFF))
        return Status(VDKIT_E_NOT_SUPPORTED, "format '" + fi.name + "' cannot create differencing images");
    if (!diff && options.fixed && !fi.has(VDKIT_CAP_CREATE_FIXED))
        return Status(VDKIT_E_NOT_SUPPORTED, "format '" + fi.name + "' cannot create preallocated images");
    if (!diff && !options.fixed && !fi.has(VDKIT_CAP_CREATE_DYNAMIC) && !fi.has(VDKIT_CAP_CREATE_FIXED))
        return Status(VDKIT_E_NOT_SUPPORTED, "format '" + fi.name + "' cannot create images");
    const bool allow_unsafe = options.allow_unsafe_paths.value_or(host.config().allow_unsafe_paths);

    VDKIT_ASSIGN_OR_RETURN(PluginEntryPtr transport, host.stores().transport_for(location));
    ImageSetup setup;
    setup.location = location;
    setup.writable = true;
    setup.allow_unsafe_paths = allow_unsafe;
    VDKIT_ASSIGN_OR_RETURN(setup.transport_options,
                           host.options_for(*transport, options.transport_options, OptionUse::open));
    VDKIT_ASSIGN_OR_RETURN(setup.format_options, host.options_for(*fmt, options.options, OptionUse::create));
    VDKIT_ASSIGN_OR_RETURN(setup.filters, host.stores().resolve_filters(options.filters, OptionUse::create));

    vdkit_create_params params{};
    params.struct_size = sizeof(params);
    params.flags = (options.fixed ? VDKIT_CREATE_FIXED : 0) | (diff ? VDKIT_CREATE_DIFF : 0);
    params.size = options.size;
    if (options.uuid && !util::uuid_is_nil(options.uuid->data()))
        std::memcpy(params.uuid, options.uuid->data(), 16);
    else
        util::generate_uuid(params.uuid);

    std::unique_ptr<Disk> parent_disk;
    std::string hint, parent_format;
    if (diff) {
        OpenOptions po;
        po.format = options.parent_format;
        po.transport_options = options.transport_options;
        po.allow_unsafe_paths = allow_unsafe;
        po.filters = open_specs(setup.filters); // the parent chain is read through the same stack
        VDKIT_ASSIGN_OR_RETURN(parent_disk, open_disk(host, options.parent, po));
        auto &parent_top = DiskAccess::state(*parent_disk).images.back();
        // Nothing is written when a later open could not find this parent.
        VDKIT_TRY(check_parent_link(host, *parent_top, final_location.empty() ? location : final_location, fi.name));
        VDKIT_ASSIGN_OR_RETURN(vdkit_image_info pinfo, parent_top->raw_info());
        if (params.size == 0) params.size = pinfo.virtual_size;
        if (params.size != pinfo.virtual_size)
            return Status(VDKIT_E_INVALID_ARGUMENT, "a differencing image must have its parent's size (" +
                                                        std::to_string(pinfo.virtual_size) + " bytes)");
        std::memcpy(params.parent_uuid, pinfo.uuid, 16);
        std::memcpy(params.parent_modification_uuid, pinfo.modification_uuid, 16);
        // Named from where the image will live (a staged image moves later).
        const std::string &home = final_location.empty() ? location : final_location;
        hint = relative_hint(home, options.parent);
        parent_format = parent_top->format().info.name;
        params.parent_hint = vdkit_str{hint.data(), hint.size()};
        params.parent_format = vdkit_str{parent_format.data(), parent_format.size()};
        // The child must be able to find its parent again under the path
        // rule: the same check as opening it will make.
        Status back = check_link(home, hint, fi.name, parent_format, pinfo, allow_unsafe);
        if (!back) return back.with_context("creating " + location);
    }

    if (parent_disk) {
        // Never replace a file the new image is built on.
        const std::string target = canonical_key(location);
        for (const auto &img : DiskAccess::state(*parent_disk).images)
            if (canonical_key(img->location()) == target)
                return Status(VDKIT_E_INVALID_ARGUMENT,
                              location + " is part of its own parent chain; choose another name for the new image");
    }
    VDKIT_ASSIGN_OR_RETURN(bool exists, host.stores().location_exists(location));
    if (exists) {
        // A URL that exists is usually a remote disk of fixed size (an NBD
        // export): written in place, not created (convert -n).
        if (!options.overwrite && location.find("://") != std::string::npos)
            return Status(VDKIT_E_EXISTS, location + " already exists and cannot be created anew; to write a disk into "
                                                     "it in place use vdkit convert -n");
        if (!options.overwrite) return Status(VDKIT_E_EXISTS, location + " already exists");
        // Never replace a file another process holds as an image (QEMU or
        // vdkit): a VM would go on writing into the unlinked file and lose
        // all of it. Taking the writer's lock says (nothing is written).
        // Only regular files: the transport refuses to remove anything else.
        std::error_code ec;
        if (fs::is_regular_file(location, ec)) {
            auto held = host.stores().open_store(location, VDKIT_OPEN_WRITE, options.transport_options, FilterStack{});
            if (!held && held.status().code() == VDKIT_E_BUSY)
                return Status(VDKIT_E_BUSY, held.status().message() + " (--overwrite never replaces an image in use)");
        }
        VDKIT_TRY(host.stores().remove_location(location));
    }
    auto opened = host.stores().open_store(location, VDKIT_OPEN_WRITE | VDKIT_OPEN_CREATE, options.transport_options,
                                           setup.filters);
    if (!opened) {
        // The transport made the file before a filter refused to sit on it.
        if (auto there = host.stores().location_exists(location); there && *there)
            host.stores().remove_location(location).ignore();
        return opened.status();
    }
    ByteStorePtr main = std::move(*opened);
    auto created = Image::create(host.stores(), fmt, std::move(main), std::move(setup), params);
    if (!created) {
        // Leave nothing half-made under the final name.
        Status rm = host.stores().remove_location(location);
        if (!rm) host.log(LogLevel::warning, "could not remove the partial " + location + ": " + rm.message());
        return created.status();
    }
    auto state = std::make_unique<DiskAccess::State>();
    state->host = host.shared_from_this();
    state->writable = true;
    state->size = params.size;
    if (parent_disk) {
        state->images = std::move(DiskAccess::state(*parent_disk).images);
        DiskAccess::state(*parent_disk).closed = true;
    }
    state->images.push_back(std::move(*created));
    VDKIT_ASSIGN_OR_RETURN(vdkit_image_info info, state->images.back()->raw_info());
    state->size = info.virtual_size;
    if (diff) {
        // The check before creating assumed the child records its parent's
        // ids; a format that records none (qcow2) cannot find a parent outside
        // its directory again. Judge what the image wrote, as opening it will.
        const std::string &home = final_location.empty() ? location : final_location;
        Status back = [&]() -> Status {
            VDKIT_ASSIGN_OR_RETURN(vdkit_image_info parent_info, state->images[state->images.size() - 2]->raw_info());
            VDKIT_ASSIGN_OR_RETURN(NamedPath where, resolve_named(home, hint, PathUse::parent, allow_unsafe));
            return verify_parent(home, hint, where, fi.name, info.parent_uuid, info.parent_modification_uuid,
                                 parent_format, parent_info);
        }();
        if (!back) {
            auto disk = DiskAccess::make(std::move(state));
            (void)disk->close_and_delete(); // leave nothing half-made under the final name
            return back.with_context("creating " + location);
        }
    }
    // A new base sets its disk-level filters up (a new key store); a new
    // differencing image joins its chain's.
    const FilterStack stack = state->images.back()->filters();
    if (Status st = state->attach_disk_filters(stack, VDKIT_OPEN_WRITE | (diff ? 0 : VDKIT_OPEN_CREATE)); !st) {
        auto disk = DiskAccess::make(std::move(state));
        (void)disk->close_and_delete(); // leave nothing half-made under the final name
        return st;
    }
    return DiskAccess::make(std::move(state));
}

} // namespace vdkit
