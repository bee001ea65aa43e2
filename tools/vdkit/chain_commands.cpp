// Chain commands: snapshot, commit, rebase and merge (qemu-img commit and
// rebase semantics; merge is VirtualBox's VDMerge / VBoxManage mergemedium).
#include "commands.hpp"
#include "progress.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <iostream>

using json = nlohmann::ordered_json;

namespace vdkit::cli {

namespace {

std::unique_ptr<Disk> open_chain(Library &lib, const std::string &image, const std::string &format,
                                 const std::vector<std::string> &filters) {
    OpenOptions o;
    o.format = format;
    o.filters = parse_filters(filters);
    o.writable = true;
    o.writable_chain = true;
    return take(raw_by(lib.open(image, o), "-f raw"));
}

// The chain index (0 = base) of `path`, matched against the chain's images.
size_t index_of(const Disk &disk, const std::string &path) {
    std::error_code ec;
    for (size_t i = 0; i < disk.image_count(); ++i) {
        const ImageInfo info = take(disk.image_info(i));
        if (std::filesystem::equivalent(info.location, path, ec)) return i;
    }
    throw CliError(path + " is not part of the image's chain (see 'vdkit info --backing-chain')", kExitUsage);
}

// ---- snapshot ---------------------------------------------------------------------

class SnapshotCommand : public Command {
    std::string format_, image_, snapshot_, output_;
    std::vector<std::string> options_, filters_;
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand("snapshot", "Create a differencing image over IMAGE (its new top); "
                                                   "the same as 'create -b IMAGE'");
        sub->add_option("-f,--format", format_,
                        "Format of the new image (default: the one NEW's extension names, else IMAGE's)");
        sub->add_option("-o,--options", options_, "Format options key=value[,key=value]")->allow_extra_args(false);
        add_filter_option(sub, filters_, "--filter",
                          "The chain's file-level filter stack; the new image is written through it too");
        add_output_option(sub, output_);
        sub->add_option("image", image_, "The current top image")->required();
        sub->add_option("snapshot", snapshot_, "The new image to create")->required();
        return sub;
    }
    int run() override {
        auto lib = open_library(globals());
        CreateOptions o;
        o.filters = parse_filters(filters_);
        // -f, else NEW's extension, else IMAGE's format; -f and an extension
        // naming different formats is refused.
        std::string fallback;
        if (format_.empty() && format_for(*lib, snapshot_).empty()) {
            OpenOptions top;
            top.follow_parents = false;
            top.filters = o.filters;
            auto current = take(as_parent(lib->open(image_, top)));
            fallback = take(current->image_info(0)).format;
        }
        o.format = new_file_format(*lib, snapshot_, format_, fallback);
        o.options = format_options(*lib, o.format, options_);
        o.parent = image_;
        auto disk = take(as_parent(lib->create_image(snapshot_, o)));
        const ImageInfo created = take(disk->image_info(disk->image_count() - 1));
        const size_t chain_length = disk->image_count();
        check(disk->close());
        if (output_ == "json")
            std::cout << json{{"filename", created.location},
                              {"format", created.format},
                              {"backing-filename", created.parent_hint},
                              {"chain-length", chain_length}}
                             .dump(2)
                      << "\n";
        else if (!globals().quiet)
            std::cout << "Created " << snapshot_ << " (" << o.format << ") over " << image_ << "\n";
        return kExitOk;
    }
};

// ---- commit -----------------------------------------------------------------------

class CommitCommand : public Command {
    std::string format_, image_, base_, output_;
    std::vector<std::string> filters_;
    bool keep_ = false, progress_ = false;
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand("commit", "Write the top image's data into its parent (or -b BASE), then "
                                                 "empty the top");
        sub->add_option("-f,--format", format_, "Format of IMAGE (default: probe)");
        sub->add_option("-b,--base", base_, "Commit into this image of the chain (default: the top's parent)");
        sub->add_flag("-d", keep_, "Keep the top image's data (do not empty it)");
        sub->add_flag("-p,--progress", progress_, "Show a progress bar");
        add_filter_option(sub, filters_);
        add_output_option(sub, output_);
        sub->add_option("image", image_, "The top image")->required();
        return sub;
    }
    int run() override {
        auto lib = open_library(globals());
        auto disk = open_chain(*lib, image_, format_, filters_);
        if (disk->image_count() < 2) throw CliError(image_ + " has no parent to commit into", kExitUsage);
        const size_t base = base_.empty() ? disk->image_count() - 2 : index_of(*disk, base_);
        std::vector<std::string> left;
        for (size_t i = base + 1; i + 1 < disk->image_count(); ++i)
            left.push_back(take(disk->image_info(i)).location);
        const std::string top = take(disk->image_info(disk->image_count() - 1)).location,
                          into = take(disk->image_info(base)).location;
        ProgressBar bar(progress_, {}, "commit");
        check(disk->commit(base, !keep_, [&](uint64_t d, uint64_t t) { return bar.update(d, t); }));
        bar.finish();
        check(disk->close());
        if (output_ == "json") {
            std::cout << json{{"image", top}, {"base", into}, {"emptied", !keep_}, {"left-chain", left}}.dump(2)
                      << "\n";
        } else if (!globals().quiet) {
            std::cout << "Image committed.\n";
            for (const auto &l : left)
                std::cout << "note: " << l << " is no longer part of the chain\n";
        }
        return kExitOk;
    }
};

// ---- rebase -----------------------------------------------------------------------

class RebaseCommand : public Command {
    std::string format_, image_, backing_, backing_format_;
    std::vector<std::string> filters_;
    bool unsafe_ = false, progress_ = false;
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand("rebase", "Give the top image a new parent (-b \"\": none); safe mode "
                                                 "keeps its content");
        sub->add_option("-f,--format", format_, "Format of IMAGE (default: probe)");
        sub->add_option("-b,--backing", backing_, "The new parent, relative to IMAGE's directory; \"\" for none")
            ->required();
        sub->add_option("-F,--backing-format", backing_format_, "Format of the new parent (default: probe)");
        sub->add_flag("-u,--unsafe", unsafe_, "Change the link only; the image's content may change");
        sub->add_flag("-p,--progress", progress_, "Show a progress bar");
        add_filter_option(sub, filters_, "--filter",
                          "The chain's file-level filter stack (the new parent is read through it too)");
        sub->add_option("image", image_, "The image to rebase")->required();
        return sub;
    }
    int run() override {
        auto lib = open_library(globals());
        OpenOptions o;
        o.format = format_;
        o.writable = true;
        // Unsafe mode must work when the old parent is gone or broken.
        o.follow_parents = !unsafe_;
        o.filters = parse_filters(filters_);
        auto disk = take(raw_by(lib->open(image_, o), "-f raw"));
        RebaseOptions ro;
        ro.format = backing_format_;
        ro.unsafe = unsafe_;
        ProgressBar bar(progress_, {}, "rebase");
        ro.progress = [&](uint64_t d, uint64_t t) { return bar.update(d, t); };
        check(as_parent(disk->rebase(backing_, ro)));
        bar.finish();
        check(disk->close());
        return kExitOk;
    }
};

// ---- merge ------------------------------------------------------------------------

class MergeCommand : public Command {
    std::string format_, image_, from_, to_, output_;
    std::vector<std::string> filters_;
    bool progress_ = false;
    CLI::App *define(CLI::App &app) override {
        auto *sub = app.add_subcommand("merge", "Merge images of the chain into one (VDMerge): FROM's data goes "
                                                "into TO and the images from FROM up to TO's neighbour are deleted");
        sub->add_option("-f,--format", format_, "Format of IMAGE (default: probe)");
        sub->add_option("--from", from_, "Image to merge from (default: the top)");
        sub->add_option("--to", to_, "Image to merge into (default: FROM's parent)");
        sub->add_flag("-p,--progress", progress_, "Show a progress bar");
        add_filter_option(sub, filters_);
        add_output_option(sub, output_);
        sub->add_option("image", image_, "The chain's top image")->required();
        return sub;
    }
    int run() override {
        auto lib = open_library(globals());
        auto disk = open_chain(*lib, image_, format_, filters_);
        if (disk->image_count() < 2)
            throw CliError(image_ + " is a single image; there is nothing to merge", kExitUsage);
        const size_t from = from_.empty() ? disk->image_count() - 1 : index_of(*disk, from_);
        size_t to = 0;
        if (!to_.empty())
            to = index_of(*disk, to_);
        else if (from > 0)
            to = from - 1;
        else
            throw CliError("the base has no parent; name --to", kExitUsage);
        auto locations = [&] {
            std::vector<std::string> all;
            for (size_t i = 0; i < disk->image_count(); ++i)
                all.push_back(take(disk->image_info(i)).location);
            return all;
        };
        const std::vector<std::string> before = locations();
        ProgressBar bar(progress_, {}, "merge");
        check(disk->merge(from, to, [&](uint64_t d, uint64_t t) { return bar.update(d, t); }));
        bar.finish();
        const std::vector<std::string> after = locations();
        check(disk->close());
        if (output_ == "json") {
            std::vector<std::string> deleted;
            for (const auto &l : before)
                if (std::find(after.begin(), after.end(), l) == after.end()) deleted.push_back(l);
            std::cout << json{{"chain", after}, {"deleted", deleted}}.dump(2) << "\n";
        } else if (!globals().quiet) {
            std::cout << "Merged; the chain's top is now " << after.back() << "\n";
        }
        return kExitOk;
    }
};

} // namespace

void add_chain_commands(std::vector<std::unique_ptr<Command>> &c) {
    c.push_back(std::make_unique<SnapshotCommand>());
    c.push_back(std::make_unique<CommitCommand>());
    c.push_back(std::make_unique<RebaseCommand>());
    c.push_back(std::make_unique<MergeCommand>());
}

} // namespace vdkit::cli
