// vdkit — a qemu-img-style command line over the vdkit library, a client of
// its public C++ API only (vdkit/vdkit.hpp; tools/vdkit links libvdkit, no
// core/src header).
//
// The commands are Command objects (commands.hpp) that make_commands()
// registers: commands.cpp, chain_commands.cpp, image_commands.cpp,
// convert.cpp and batch.cpp. `vdkit --help` lists them and docs/cli.md
// documents each one and the exit codes. Every command works with every
// loaded format plugin; nothing here knows a format. main() parses the
// command line (a usage error is exit 2, with a "did you mean" for a
// mistyped command or option) and turns a CliError into its message and
// exit code.
#include "cli.hpp"
#include "commands.hpp"
#include "signals.hpp"

#include <CLI/CLI.hpp>

#include <iostream>
#include <string>
#include <string_view>
#include <vector>

using namespace vdkit::cli;

namespace {

// CLI11 names no alternative for a mistyped word ("vdkit inof" says only "A
// subcommand is required"). For the first unknown word after a failed
// parse: `replace` and the text to print instead of CLI11's message (an
// unknown command), or the text to print after it (an unknown option with a
// close match, the project's did_you_mean); empty text: nothing to add.
struct Hint {
    bool replace = false;
    std::string text;
};
Hint usage_hint(CLI::App &app) {
    const std::vector<CLI::App *> chosen = app.get_subcommands();
    const std::vector<std::string> unknown = app.remaining(true);
    if (chosen.empty())
        for (const std::string &word : unknown) {
            if (word.empty() || word[0] == '-') continue;
            std::vector<std::string> names;
            for (const CLI::App *sub : app.get_subcommands([](const CLI::App *) { return true; })) {
                names.push_back(sub->get_name());
                names.insert(names.end(), sub->get_aliases().begin(), sub->get_aliases().end());
            }
            return {true, "'" + word + "' is not a vdkit command" + did_you_mean(word, names) +
                              " (vdkit --help lists them)"};
        }
    std::vector<std::string> options; // the chosen command's and the global ones
    const auto add = [&options](const CLI::App *a) {
        for (const CLI::Option *o : a->get_options()) {
            for (const std::string &n : o->get_lnames()) options.push_back("--" + n);
            for (const std::string &n : o->get_snames()) options.push_back("-" + n);
        }
    };
    add(&app);
    for (const CLI::App *c : chosen) add(c);
    for (const std::string &word : unknown) {
        if (word.size() < 2 || word[0] != '-') continue;
        const std::string name = word.substr(0, word.find('='));
        if (std::string hint = did_you_mean(name, options); !hint.empty())
            return {false, "unknown option '" + name + "'" + hint};
    }
    return {};
}

} // namespace

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
        const Hint hint = usage_hint(app);
        if (hint.replace) {
            std::cerr << "vdkit: " << hint.text << "\n";
            return kExitUsage;
        }
        app.exit(e);
        if (!hint.text.empty()) std::cerr << "vdkit: " << hint.text << "\n";
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
