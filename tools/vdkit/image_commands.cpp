// Image management commands: rename (move) and delete, keeping the chains
// built on an image intact (VixDiskLib_Rename / VixDiskLib_Unlink), and
// attach (VixDiskLib_Attach / IsAttachPossible).
#include "commands.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>

using json = nlohmann::ordered_json;

namespace vdkit::cli {

namespace {

// With --output=json a failure is reported on stdout too, as a JSON object
// naming the error and its status (the exit status is kept): the Status
// is recorded before it becomes a CliError.
struct JsonFailure {
    bool json_output = false;
    std::string status;
    void check_st(const Status &st) {
        if (!st) status = status_name(st.code());
        check(st);
    }
    template <class T> T take_r(Result<T> r) {
        if (!r) status = status_name(r.status().code());
        return take(std::move(r));
    }
    // Runs `body`; on failure prints {"error", "status", extra...} and rethrows.
    template <class F> int run(const json &extra, F &&body) {
        try {
            return body();
        } catch (const CliError &e) {
            if (json_output) {
                json j = extra;
                j["error"] = e.what();
                j["status"] = status.empty() ? "VDKIT_E_UNKNOWN" : status;
                std::cout << j.dump(2) << "\n";
            }
            throw;
        }
    }
};

std::string join_dirs(const std::vector<std::string> &dirs) {
    std::string out;
    for (const auto &d : dirs)
        out += (out.empty() ? "" : ", ") + d;
    return out.empty() ? "(none)" : out;
}

// ---- rename -----------------------------------------------------------------------

class RenameCommand : public Command {
    std::string from_, to_, output_;
    std::vector<std::string> search_, filters_;
    bool no_relink_ = false, unsafe_ = false;
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand("rename", "Rename or move an image with all its files; its parent path and "
                                                 "its children's parent paths follow");
        sub->alias("mv");
        sub->add_option("--search-dir", search_,
                        "Also look for children of IMAGE in this directory (repeatable); without it they are looked "
                        "for wherever the path rule lets a child name IMAGE (as delete does)");
        sub->add_flag("--no-relink", no_relink_, "Leave children naming the old path");
        sub->add_flag("--allow-unsafe-paths", unsafe_,
                      "Allow parent paths that leave an image's directory (a move away from its parent or children)");
        add_filter_option(sub, filters_, "--filter",
                          "The file-level filter stack the image and its relatives are stored through");
        add_output_option(sub, output_);
        sub->add_option("image", from_, "The image to rename")->required();
        sub->add_option("new-name", to_, "Its new name or path (must not exist)")->required();
        return sub;
    }
    int run() override {
        auto lib = open_library(globals());
        RenameOptions o;
        o.relink_children = !no_relink_;
        o.search_dirs = search_;
        o.filters = parse_filters(filters_);
        if (unsafe_) o.allow_unsafe_paths = true;
        // The new name follows the naming rule of every new file (a raw
        // disk.img renamed disk.vdi would be refused by its name next time).
        // A file the probe refuses is judged as what it is (a foreign container, or raw).
        if (o.filters.empty())
            if (const std::string problem = rename_name_problem(*lib, from_, to_); !problem.empty())
                throw CliError(problem + "; nothing was moved", kExitUsage);
        RenameResult r = take(lib->rename_image(from_, to_, o));
        if (output_ == "json") {
            std::cout
                << json{{"location", r.location}, {"relinked-children", r.relinked}, {"searched", r.searched}}.dump(2)
                << "\n";
        } else if (!globals().quiet) {
            std::cout << "Renamed " << from_ << " to " << r.location << "\n";
            for (const auto &c : r.relinked)
                std::cout << "relinked child " << c << "\n";
            if (!no_relink_) std::cout << "searched for children in: " << join_dirs(r.searched) << "\n";
        }
        return kExitOk;
    }
};

// ---- delete -----------------------------------------------------------------------

class DeleteCommand : public Command {
    std::vector<std::string> images_, search_, filters_;
    std::string output_;
    bool force_ = false;
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand(
            "delete", "Delete images with all their files; refused while other images are built on one (--force "
                      "orphans them). Children are looked for in every directory from which one could name the "
                      "image under the path rule (its directory and the directories directly in it, the directory "
                      "above and the directories directly in that, every directory further up), the directories "
                      "of its chain and each --search-dir");
        sub->alias("rm");
        sub->add_option("--search-dir", search_,
                        "Also look for children in this directory (repeatable); children elsewhere are not found");
        sub->add_flag("--force", force_, "Delete even when children depend on the image");
        add_filter_option(sub, filters_, "--filter",
                          "The file-level filter stack the images and their children are stored through");
        add_output_option(sub, output_);
        sub->add_option("images", images_, "The images to delete")->required();
        return sub;
    }
    int run() override {
        auto lib = open_library(globals());
        DeleteOptions o;
        o.force = force_;
        o.search_dirs = search_;
        o.filters = parse_filters(filters_);
        json report = json::array();
        JsonFailure jf;
        jf.json_output = output_ == "json";
        for (const auto &image : images_) {
            DeleteResult r;
            json failure{{"location", image}, {"deleted", report}};
            jf.run(failure, [&] {
                auto deleted = lib->delete_image(image, o);
                if (!deleted && jf.json_output) {
                    // Structured details of the refusal: where children were
                    // looked for and which were found (a search only).
                    DeleteOptions look = o;
                    look.dry_run = true;
                    if (auto seen = lib->delete_image(image, look)) {
                        failure["searched"] = seen->searched;
                        failure["children"] = seen->children;
                    }
                }
                r = jf.take_r(std::move(deleted));
                return kExitOk;
            });
            report.push_back({{"location", image}, {"orphaned-children", r.orphaned}, {"searched", r.searched}});
            if (output_ != "json" && !globals().quiet) {
                std::cout << "Deleted " << image << "\n";
                std::cout << "searched for children in: " << join_dirs(r.searched) << "\n";
            }
        }
        if (output_ == "json") std::cout << report.dump(2) << "\n";
        return kExitOk;
    }
};

// ---- attach -----------------------------------------------------------------------

class AttachCommand : public Command {
    std::string parent_, child_, parent_format_, child_format_, output_;
    std::vector<std::string> filters_;
    bool check_ = false, force_ = false;
    CLI::App *define(CLI::App &app) override {
        auto *sub =
            app.add_subcommand("attach", "Link the differencing image CHILD onto PARENT (VixDiskLib_Attach), "
                                         "verified by the UUID CHILD records; --check only says whether it can");
        sub->add_flag("--check", check_,
                      "Only check (VixDiskLib_IsAttachPossible): run attach's own checks, including the path rule "
                      "and the format's update on a dry-run copy, write nothing; exit 0 if attach would succeed");
        sub->add_flag("--force", force_, "Attach even when CHILD records another parent (its content may change)");
        sub->add_option("-F,--parent-format", parent_format_, "Format of PARENT (default: probe)");
        sub->add_option("-f,--format", child_format_, "Format of CHILD (default: probe)");
        add_filter_option(sub, filters_, "--filter", "The file-level filter stack both chains are stored through");
        add_output_option(sub, output_);
        sub->add_option("parent", parent_, "The image (top of a chain) to attach onto")->required();
        sub->add_option("child", child_, "The differencing image to attach")->required();
        return sub;
    }
    int run() override {
        JsonFailure jf;
        jf.json_output = output_ == "json";
        return jf.run(json{{"parent", parent_}, {"child", child_}, {check_ ? "possible" : "attached", false}},
                      [&] { return attach(jf); });
    }
    int attach(JsonFailure &jf) {
        auto lib = open_library(globals());
        OpenOptions po;
        po.format = parent_format_;
        po.filters = parse_filters(filters_);
        auto parent = jf.take_r(as_parent(lib->open(parent_, po)));
        // The same file twice (CHILD is PARENT, or already in PARENT's
        // chain: a loop) is found by file identity before CHILD is opened
        // for writing — that open would otherwise fail on this process's
        // own lock and blame "another process".
        {
            std::error_code ec;
            for (size_t i = 0; i < parent->image_count(); ++i) {
                auto info = parent->image_info(i);
                if (info && std::filesystem::equivalent(info->location, child_, ec)) {
                    jf.status = "VDKIT_E_INVALID_ARGUMENT";
                    throw CliError(
                        "attaching " + child_ + " onto " + parent_ + " would put " + child_ + " in the chain twice (" +
                        (i + 1 == parent->image_count() ? std::string("it is ") + parent_
                                                        : "it is in " + parent_ + "'s chain, " + info->location) +
                        ")");
                }
            }
        }
        OpenOptions co;
        co.format = child_format_;
        co.follow_parents = false; // its recorded parent may be missing or moved
        co.filters = po.filters;
        // Opened as the real run opens it, whether checking or not: the
        // check answers what attach does (including "cannot be written").
        co.writable = true;
        auto child = jf.take_r(raw_by(lib->open(child_, co), "-f raw"));
        // One set of rules for both: the link is recorded in CHILD, and the
        // parent must be the one CHILD records unless forced.
        AttachOptions options;
        options.relink = true;
        options.verify_identity = !force_;
        const bool json_output = output_ == "json";
        auto report = [&](bool attached, const Status &why) {
            json j = {{"parent", parent_}, {"child", child_}, {check_ ? "possible" : "attached", attached}};
            if (!why) j["reason"] = why.message();
            std::cout << j.dump(2) << "\n";
        };
        if (check_) {
            // IsAttachPossible: the answer is the report; "no" exits 1 with its reason.
            Status st = child->can_attach(*parent, options);
            if (json_output)
                report(st.is_ok(), st);
            else {
                check(st);
                if (!globals().quiet) std::cout << child_ << " can be attached to " << parent_ << "\n";
            }
            return st ? kExitOk : kExitError;
        }
        jf.check_st(child->attach(*parent, options));
        jf.check_st(child->close());
        if (json_output)
            report(true, Status::ok());
        else if (!globals().quiet)
            std::cout << child_ << " is attached to " << parent_ << "\n";
        return kExitOk;
    }
};

} // namespace

void add_image_commands(std::vector<std::unique_ptr<Command>> &c) {
    c.push_back(std::make_unique<RenameCommand>());
    c.push_back(std::make_unique<DeleteCommand>());
    c.push_back(std::make_unique<AttachCommand>());
}

} // namespace vdkit::cli
