// What the format conformance suite (format_conformance.cpp) runs against.
// Two harnesses provide it: in_tree.cpp (vdkit_conformance_tests, every
// format built here) and plugin_test_main.cpp (the installed
// vdkit-plugin-test runner, the format plugins named on its command line).
#ifndef VDKIT_CONFORMANCE_HPP
#define VDKIT_CONFORMANCE_HPP

#include "vdkit/vdkit.hpp"

#include <memory>

namespace vdkit::conformance {

// A fresh library holding the plugins under test and what they need (the
// file transport). Fails the current test case when it cannot be made.
std::shared_ptr<Library> library();

// Whether the suite exercises format plugin `p`.
bool under_test(const PluginInfo &p);

// How many creatable formats must be under test (fewer fails the run).
std::size_t minimum_formats();

} // namespace vdkit::conformance

#endif
