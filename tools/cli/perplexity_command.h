// `pdvm perplexity MODEL FILE.txt [--context N --stride N --max-tokens N -t N]`: CLI11 glue for
// generate/perplexity.h on the CPU backend. main.cpp calls add_perplexity_command(app) and, when
// chosen, returns run_perplexity_command().
#pragma once

#include <CLI/CLI.hpp>

namespace pdvm::cli {

CLI::App* add_perplexity_command(CLI::App& app);
// Prints "perplexity P over N tokens (...) tok/s" on stdout (and --json). 0 ok, 1 error, 2 bad flags.
int run_perplexity_command();

}  // namespace pdvm::cli
