// The subcommands of the vdkit tool. Each registers its options with CLI11
// and runs against the library; adding a command is adding one class.
#ifndef VDKIT_TOOLS_COMMANDS_HPP
#define VDKIT_TOOLS_COMMANDS_HPP

#include "cli.hpp"

#include <CLI/CLI.hpp>

#include <memory>
#include <vector>

namespace vdkit::cli {

class Command {
public:
    virtual ~Command() = default;
    void add_to(CLI::App &app, const Globals &globals) {
        globals_ = &globals;
        sub_ = define(app);
    }
    bool selected() const { return sub_ && sub_->parsed(); }
    virtual int run() = 0;

protected:
    virtual CLI::App *define(CLI::App &app) = 0;
    const Globals &globals() const { return *globals_; }

private:
    const Globals *globals_ = nullptr;
    CLI::App *sub_ = nullptr;
};

std::vector<std::unique_ptr<Command>> make_commands();
// snapshot, commit, rebase, merge (chain_commands.cpp).
void add_chain_commands(std::vector<std::unique_ptr<Command>> &commands);
// rename, delete, attach (image_commands.cpp).
void add_image_commands(std::vector<std::unique_ptr<Command>> &commands);
// --output=human|json on a subcommand.
void add_output_option(CLI::App *sub, std::string &output);
// -U/--force-share on a command that only reads (OpenOptions::force_share).
void add_force_share_option(CLI::App *sub, bool &force_share, const std::string &help);
// A repeatable filter-stack option (default --filter) on a subcommand.
void add_filter_option(CLI::App *sub, std::vector<std::string> &specs, const std::string &name = "--filter",
                       const std::string &help = "Read and write the image through this filter (NAME or "
                                                 "NAME:key=value,...; repeat to stack): a file-level one sits on "
                                                 "its files (nearest the file first), a disk-level one (crypt) over "
                                                 "the chain (nearest the chain first)");
// serve (serve.cpp).
void add_serve_command(std::vector<std::unique_ptr<Command>> &commands);
// fuse (fuse.cpp).
void add_fuse_command(std::vector<std::unique_ptr<Command>> &commands);
// volumes, mount, umount (volume_commands.cpp).
void add_volume_commands(std::vector<std::unique_ptr<Command>> &commands);
// batch (batch.cpp).
void add_batch_command(std::vector<std::unique_ptr<Command>> &commands);

} // namespace vdkit::cli

#endif
