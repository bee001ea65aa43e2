// vdkit serve: export an image over NBD by running nbdkit with vdkit's
// nbdkit plugin (tools/nbdkit-vdkit), in the foreground, in place of this
// process (exec), so signals and the exit status are nbdkit's.
#include "commands.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <unistd.h>

namespace fs = std::filesystem;

namespace vdkit::cli {
namespace {

// The plugin file: $VDKIT_NBDKIT_PLUGIN, else beside this executable as the
// build and install trees place it (<prefix>/bin/vdkit,
// <prefix>/<libdir>/nbdkit/plugins/nbdkit-vdkit-plugin.so), else the name
// "vdkit" for nbdkit to find in its own plugin directory.
std::string nbdkit_plugin() {
    if (const char *env = std::getenv("VDKIT_NBDKIT_PLUGIN"); env && *env) return env;
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        for (const char *libdir : {VDKIT_INSTALL_LIBDIR, "lib"}) {
            const fs::path p = exe.parent_path().parent_path() / libdir / "nbdkit/plugins/nbdkit-vdkit-plugin.so";
            if (fs::is_regular_file(p, ec)) return p.string();
        }
    }
    return "vdkit";
}

class ServeCommand : public Command {
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand("serve", "Export IMAGE (its whole chain) over NBD: runs nbdkit with vdkit's "
                                                "nbdkit plugin in the foreground until interrupted");
        sub->add_option("image", image_, "Image to serve (a path or a URL of a loaded transport)")->required();
        sub->add_option("-f,--format", format_, "Image format (default: probe)");
        auto *sock =
            sub->add_option("--socket", socket_, "Listen on this Unix domain socket (nbd+unix:///?socket=PATH)");
        sub->add_option("--port", port_, "Listen on this TCP port (default 10809 when no --socket)")
            ->check(CLI::Range(1, 65535))
            ->excludes(sock);
        sub->add_flag("-r,--read-only", read_only_, "Open the image read-only and export it read-only");
        return sub;
    }

    int run() override {
        // Open it once here, so a missing or damaged image gets vdkit's own
        // error before nbdkit starts (the plugin opens it again).
        {
            auto lib = open_library(globals());
            OpenOptions o;
            o.format = format_;
            o.writable = !read_only_; // a writer's lock test: nothing else may be writing it
            auto disk = take(lib->open(image_, o));
            check(disk->close());
            if (!fs::exists(nbdkit_plugin()) && nbdkit_plugin() != "vdkit")
                throw CliError("no nbdkit plugin at " + nbdkit_plugin());
        }
        std::vector<std::string> args{"nbdkit", "-f"};
        if (!socket_.empty()) args.insert(args.end(), {"-U", socket_});
        if (port_) args.insert(args.end(), {"-p", std::to_string(port_)});
        if (read_only_) args.push_back("-r");
        args.push_back(nbdkit_plugin());
        args.push_back("file=" + image_);
        if (!format_.empty()) args.push_back("format=" + format_);
        if (read_only_) args.push_back("readonly=true");
        if (!globals().config_file.empty()) args.push_back("config=" + globals().config_file);
        std::string paths;
        for (const auto &p : globals().plugin_paths)
            paths += (paths.empty() ? "" : ":") + fs::absolute(p).string();
        if (!paths.empty()) args.push_back("plugin_path=" + paths);
        if (!globals().quiet) {
            std::cerr << "vdkit: serving " << image_ << " on "
                      << (!socket_.empty() ? "nbd+unix:///?socket=" + socket_
                                           : "nbd://localhost:" + std::to_string(port_ ? port_ : 10809) + "/")
                      << (read_only_ ? " (read-only)" : "") << "\n";
        }
        std::vector<char *> argv;
        for (auto &a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        std::cout.flush();
        execvp("nbdkit", argv.data());
        const int err = errno;
        throw CliError(std::string("cannot run nbdkit: ") + std::strerror(err) +
                       (err == ENOENT ? " (install nbdkit: scripts/install-deps.sh)" : ""));
    }

    std::string image_, format_, socket_;
    int port_ = 0;
    bool read_only_ = false;
};

} // namespace

void add_serve_command(std::vector<std::unique_ptr<Command>> &commands) {
    commands.push_back(std::make_unique<ServeCommand>());
}

} // namespace vdkit::cli
