// vdkit — a qemu-img-style command line over the vdkit library.
//
//   vdkit plugins [--output=json]
//   vdkit info    [-f fmt] [--output=json] IMAGE
//   vdkit create  -f fmt [-o k=v,...] [-b PARENT [-F fmt]] [--preallocate] IMAGE [SIZE]
//   vdkit convert [-f fmt] -O fmt [-o k=v,...] [-p] [--overwrite | -n [--target-is-zero]] SRC DST
//   vdkit cleanup [--remove] DIR...
//   vdkit compare [-f fmt] [-F fmt] [-s] A B
//   vdkit map     [-f fmt] [--output=json] IMAGE
//
// Every command works with every loaded format plugin; nothing here knows a
// format. Exit codes are documented in docs/cli.md.
#include "cli.hpp"
#include "commands.hpp"
#include "signals.hpp"

#include <CLI/CLI.hpp>

#include <iostream>
#include <string_view>

using namespace vdkit::cli;

int main(int argc, char **argv) {
    CLI::App app{"vdkit: inspect, create, convert and compare virtual disk images"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "vdkit 0.1.0");
    Globals globals;
    app.add_option("--config", globals.config_file, "Library configuration file (YAML)");
    app.add_option("--plugin-path", globals.plugin_paths, "Extra plugin directory (repeatable)")->allow_extra_args(false);
    app.add_flag("-q,--quiet", globals.quiet, "Only print errors");
    app.add_flag("-v,--verbose", globals.verbose, "Print informational messages from the library");

    std::vector<std::unique_ptr<Command>> commands = make_commands();
    for (auto &c : commands) c->add_to(app, globals);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp &e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp &e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion &e) {
        return app.exit(e);
    } catch (const CLI::ParseError &e) {
        app.exit(e);
        // -U on a command that writes: say why rather than only "not expected".
        const bool extras = dynamic_cast<const CLI::ExtrasError *>(&e) != nullptr;
        for (int i = 1; i < argc && extras; ++i)
            if (std::string_view(argv[i]) == "-U" || std::string_view(argv[i]) == "--force-share") {
                std::cerr << "vdkit: -U/--force-share reads an image in use and is taken only by commands that read "
                             "(info, map, check without -r, measure, compare, convert's source); this command writes\n";
                break;
            }
        return kExitUsage;
    }
    try {
        for (auto &c : commands)
            if (c->selected()) return c->run();
        return kExitUsage;
    } catch (const CliError &e) {
        std::cerr << "vdkit: " << e.what() << "\n";
        reraise_cancel_signal(); // stopped by Ctrl-C, SIGTERM, ...: end as that signal would
        return e.exit_code;
    } catch (const std::exception &e) {
        std::cerr << "vdkit: " << e.what() << "\n";
        reraise_cancel_signal();
        return kExitError;
    }
}
