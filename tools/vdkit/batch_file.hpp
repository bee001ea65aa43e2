// Batch job files (`vdkit batch`): parsing and validation. The schema is
// documented in config/batch.md; config/examples/ has a worked example.
//
// Validation reads the whole file before anything runs and collects every
// problem, each as "FILE:LINE: what", instead of stopping at the first: YAML
// syntax, unknown keys (with a suggestion), types and ranges, missing
// sources, unknown formats, options the target format does not take,
// duplicate names and targets, a target that is its own source.
#ifndef VDKIT_TOOLS_BATCH_FILE_HPP
#define VDKIT_TOOLS_BATCH_FILE_HPP

#include "convert.hpp"

#include <optional>
#include <string>
#include <vector>

namespace vdkit::cli {

struct BatchJob {
    std::string name;
    int line = 0;       // of the job's entry in the file
    ConvertSpec spec;   // paths resolved against the job file's directory
    bool verify = true; // compare the target with the source before it gets its final name
    // The earlier job whose target is this job's backing image (it runs
    // first; if it fails, this job fails), or none.
    std::optional<size_t> after;
    int backing_line = 0;
    // The same for the source: the earlier job whose target this job
    // converts (a chain of conversions in one file), or none.
    std::optional<size_t> source_from;
    int source_line = 0;
};

struct BatchFile {
    std::string path;
    unsigned parallel = 1; // jobs at once
    std::string report;    // "" = none; resolved like job paths
    std::vector<BatchJob> jobs;
};

// Parse and validate; problems (empty when the file is good) name file and line.
BatchFile load_batch_file(const Library &lib, const std::string &path, std::vector<std::string> &problems);

} // namespace vdkit::cli

#endif
