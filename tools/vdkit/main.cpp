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
// mistyped command or option; 1 for check and compare, as qemu-img) and turns a CliError into its message and
// exit code.
#include "cli.hpp"
#include "commands.hpp"
#include "progress.hpp"
#include "signals.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
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
            return {true,
                    "'" + word + "' is not a vdkit command" + did_you_mean(word, names) + " (vdkit --help lists them)"};
        }
    std::vector<std::string> options; // the chosen command's and the global ones
    const auto add = [](std::vector<std::string> &to, const CLI::App *a) {
        for (const CLI::Option *o : a->get_options()) {
            for (const std::string &n : o->get_lnames())
                to.push_back("--" + n);
            for (const std::string &n : o->get_snames())
                to.push_back("-" + n);
        }
    };
    std::vector<std::string> global;
    add(global, &app);
    options = global;
    for (const CLI::App *c : chosen)
        add(options, c);
    for (const std::string &word : unknown) {
        if (word.size() < 2 || word[0] != '-') continue;
        const std::string name = word.substr(0, word.find('='));
        // An option of vdkit itself given after the command: say where it
        // goes, not "did you mean" the same word.
        if (!chosen.empty() && std::find(global.begin(), global.end(), name) != global.end())
            return {false, "'" + name + "' is an option of vdkit itself, not of '" + chosen.back()->get_name() +
                               "': give it before the command (vdkit " + name + " " + chosen.back()->get_name() +
                               " ...)"};
        if (std::string hint = did_you_mean(name, options); !hint.empty())
            return {false, "unknown option '" + name + "'" + hint};
    }
    return {};
}

// The exit status of a usage error: 2 (docs/cli.md), but 1 for `check`
// and `compare`, as qemu-img: there 2 means "corruptions found" and "an
// image could not be opened", which a script must not read into a typo.
int usage_exit_code(const std::vector<std::string> &args) {
    for (size_t i = 1; i < args.size(); ++i) {
        const std::string &a = args[i];
        if (a == "--config" || a == "--plugin-path") {
            ++i;
            continue;
        }
        if (a.empty() || a[0] == '-') continue;
        return a == "check" || a == "compare" ? kExitError : kExitUsage;
    }
    return kExitUsage;
}
bool compare_command(const std::vector<std::string> &args) {
    for (size_t i = 1; i < args.size(); ++i) {
        if (args[i] == "--config" || args[i] == "--plugin-path")
            ++i;
        else if (!args[i].empty() && args[i][0] != '-')
            return args[i] == "compare";
    }
    return false;
}

} // namespace

int main(int argc, char **argv) {
    CLI::App app{"vdkit: inspect, create, convert and compare virtual disk images"};
    app.require_subcommand(1);
    app.set_version_flag("-V,--version", "vdkit 0.1.0");
    Globals globals;
    app.add_option("--config", globals.config_file, "Library configuration file (YAML)");
    app.add_option("--plugin-path", globals.plugin_paths, "Extra plugin directory (repeatable)")
        ->allow_extra_args(false);
    app.add_flag("-q,--quiet", globals.quiet, "Only print errors");
    app.add_flag("-v,--verbose", globals.verbose, "Print informational messages from the library");
    std::string progress_spec;
    app.add_option("--progress", progress_spec,
                   "json or json:FD: progress of -p commands as JSON lines on stderr or file descriptor FD");

    std::vector<std::unique_ptr<Command>> commands = make_commands();
    for (auto &c : commands)
        c->add_to(app, globals);
    // `vdkit help [COMMAND]`: the same text as --help.
    std::string help_topic;
    CLI::App *help = app.add_subcommand("help", "Show the help of vdkit or of one command");
    help->add_option("command", help_topic, "Command");

    // qemu-img check -r takes leaks|all; vdkit's -r also stands alone
    // (repair what can be repaired). "-r leaks" / "-r all" after `check`
    // become "-r --repair-mode=MODE" so that -r never takes the image name.
    std::vector<std::string> args(argv, argv + argc);
    const int usage_exit = usage_exit_code(args);
    for (size_t i = 1; i + 1 < args.size(); ++i)
        if ((args[i] == "-r" || args[i] == "--repair") && (args[i + 1] == "leaks" || args[i + 1] == "all") &&
            std::find(args.begin() + 1, args.begin() + static_cast<std::ptrdiff_t>(i), "check") !=
                args.begin() + static_cast<std::ptrdiff_t>(i))
            args[i + 1] = "--repair-mode=" + args[i + 1];
    std::vector<char *> cargs;
    for (std::string &a : args)
        cargs.push_back(a.data());
    argc = static_cast<int>(cargs.size());
    argv = cargs.data();

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
            return usage_exit;
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
        return usage_exit;
    }
    try {
        set_progress_spec(progress_spec);
    } catch (const CliError &e) {
        std::cerr << "vdkit: " << e.what() << "\n";
        return usage_exit;
    }
    if (help->parsed()) {
        if (help_topic.empty()) {
            // (app.help() would show the help subcommand's own page, since it was selected.)
            std::cout << app.get_formatter()->make_help(&app, app.get_name(), CLI::AppFormatMode::Normal);
            return kExitOk;
        }
        for (CLI::App *sub : app.get_subcommands([](const CLI::App *) { return true; }))
            if (sub->check_name(help_topic)) {
                std::cout << sub->help();
                return kExitOk;
            }
        std::vector<std::string> names;
        for (const CLI::App *sub : app.get_subcommands([](const CLI::App *) { return true; }))
            names.push_back(sub->get_name());
        std::cerr << "vdkit: '" << help_topic << "' is not a vdkit command" << did_you_mean(help_topic, names)
                  << " (vdkit help lists them)\n";
        return usage_exit;
    }
    try {
        for (auto &c : commands)
            if (c->selected()) return c->run();
        return usage_exit;
    } catch (const CliError &e) {
        std::cerr << "vdkit: " << e.what() << "\n";
        reraise_cancel_signal(); // stopped by Ctrl-C, SIGTERM, ...: end as that signal would
        // check's own usage errors (-r with -U) too; compare's 2 is "could not open".
        return e.exit_code == kExitUsage && usage_exit == kExitError && !compare_command(args) ? kExitError
                                                                                               : e.exit_code;
    } catch (const std::exception &e) {
        std::cerr << "vdkit: " << e.what() << "\n";
        reraise_cancel_signal();
        return kExitError;
    }
}
