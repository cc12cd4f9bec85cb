// `pdvm convert MODEL -o OUT.pdvm --format int8|q8_0|mdcsr|bitmap --sparsity S [--prune
// magnitude|activation --calibration FILE.txt]`: CLI11 glue for model/convert.h. main.cpp calls
// add_convert_command(app) and, when chosen, returns run_convert_command().
#pragma once

#include <CLI/CLI.hpp>

namespace pdvm::cli {

CLI::App* add_convert_command(CLI::App& app);
// Converts; progress bar on stderr, a per-format summary on stdout. 0 ok, 1 error, 2 bad flags.
int run_convert_command();

}  // namespace pdvm::cli
