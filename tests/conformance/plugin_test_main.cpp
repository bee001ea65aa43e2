// vdkit-plugin-test: the format conformance suite, installed, for a plugin
// author to run against their own plugin library:
//
//     vdkit-plugin-test [--plugin-path DIR]... PLUGIN.so... [-- CATCH2-OPTIONS]
//
// Loads the named libraries next to the installed plugins (the file
// transport), then runs every conformance test case on each format plugin
// the named libraries provide: create, write patterns at awkward offsets,
// read back, block status, reopen; truncated and foreign files refused
// cleanly. Exit status: 0 all passed, 1 a check failed or a named library
// did not load (the loader's message is printed), 2 usage (nothing to test).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "conformance.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

namespace fs = std::filesystem;

namespace {

std::vector<std::string> g_dirs; // --plugin-path directories, then the staging directory
fs::path g_stage;                // holds a link to each named library

vdkit::LibraryOptions options() {
    vdkit::LibraryOptions o;
    o.plugin_paths = g_dirs;
    o.search_environment = false; // only what the command line names, plus
    o.search_install_dir = true;  // the installed plugins (file transport)
    o.log = [](vdkit::LogLevel, std::string_view) {};
    return o;
}

int usage(const char *why) {
    std::cerr << "vdkit-plugin-test: " << why
              << "\nusage: vdkit-plugin-test [--plugin-path DIR]... PLUGIN.so... [-- CATCH2-OPTIONS]\n";
    return 2;
}

} // namespace

namespace vdkit::conformance {

std::shared_ptr<Library> library() {
    auto lib = Library::create(options());
    REQUIRE(lib.is_ok());
    return *lib;
}

bool under_test(const PluginInfo &p) {
    return fs::path(p.source).parent_path() == g_stage;
}

std::size_t minimum_formats() {
    return 1;
}

} // namespace vdkit::conformance

int main(int argc, char *argv[]) {
    std::vector<std::string> plugins;
    std::vector<char *> catch_args{argv[0]};
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--") {
            catch_args.insert(catch_args.end(), argv + i + 1, argv + argc);
            break;
        }
        if (a == "--plugin-path" && i + 1 < argc)
            g_dirs.push_back(argv[++i]);
        else if (a == "-h" || a == "--help")
            return usage("runs vdkit's format conformance suite on plugin libraries"), 0;
        else if (!a.empty() && a[0] == '-')
            return usage(("unknown option '" + a + "'").c_str());
        else
            plugins.push_back(a);
    }
    if (plugins.empty()) return usage("name at least one plugin library");

    // Stage links to the named libraries in a private directory, so the
    // library loads exactly them (and under_test() knows them by directory).
    std::string tmpl = (fs::temp_directory_path() / "vdkit-plugin-test-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) return std::perror("vdkit-plugin-test: mkdtemp"), 1;
    g_stage = tmpl;
    struct Cleanup {
        ~Cleanup() {
            std::error_code ec;
            fs::remove_all(g_stage, ec);
        }
    } cleanup;
    std::vector<std::pair<std::string, std::string>> staged; // link, the name the user gave
    for (const std::string &p : plugins) {
        std::error_code ec;
        const fs::path abs = fs::absolute(p, ec);
        if (ec || !fs::is_regular_file(abs, ec)) {
            std::cerr << "vdkit-plugin-test: " << p << ": no such file\n";
            return 1;
        }
        fs::path link = g_stage / (std::to_string(staged.size()) + "_" + abs.filename().string());
        if (link.extension() != ".so") link += ".so"; // the loader only picks up *.so
        fs::create_symlink(abs, link, ec);
        if (ec) {
            std::cerr << "vdkit-plugin-test: cannot stage " << p << ": " << ec.message() << "\n";
            return 1;
        }
        staged.emplace_back(link.string(), p);
    }
    g_dirs.push_back(g_stage.string());

    // Every named library must load; say why one does not.
    auto lib = vdkit::Library::create(options());
    if (!lib) {
        std::cerr << "vdkit-plugin-test: " << lib.status().to_string() << "\n";
        return 1;
    }
    int failed_loads = 0;
    for (const auto &problem : (*lib)->load_problems()) {
        if (fs::path(problem.path).parent_path() != g_stage) continue;
        std::string message = problem.status.message();
        for (const auto &[link, given] : staged) // name the file the user gave, not our link
            for (size_t at; (at = message.find(link)) != std::string::npos;)
                message.replace(at, link.size(), given);
        std::cerr << "vdkit-plugin-test: " << message << "\n";
        ++failed_loads;
    }
    if (failed_loads) return 1;
    int formats = 0;
    for (const auto &p : (*lib)->plugins()) {
        if (!vdkit::conformance::under_test(p)) continue;
        std::cout << "testing " << vdkit::to_string(p.kind) << " plugin '" << p.name << "' from "
                  << fs::read_symlink(p.source).string() << "\n";
        if (p.kind == vdkit::PluginKind::format) ++formats;
    }
    if (formats == 0) return usage("the named libraries provide no format plugin (only formats are tested today)");

    Catch::Session session;
    if (int rc = session.applyCommandLine(static_cast<int>(catch_args.size()), catch_args.data()))
        return rc == 0 ? 0 : 2;
    const Catch::ConfigData &cfg = session.configData();
    const bool listing = cfg.listTests || cfg.listTestNamesOnly || cfg.listTags || cfg.listReporters;
    const int failed = session.run(); // a listing returns how many it listed
    return failed && !listing ? 1 : 0;
}
