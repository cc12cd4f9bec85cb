// `pdvm bench`: CLI11 glue for the benchmark harness (src/bench/harness.h). main.cpp calls
// add_bench_command(app) while it builds the parser and, when the subcommand was chosen,
// returns run_bench_command(). Flags are kept in this file's own state (one bench per process).
#pragma once

#include <CLI/CLI.hpp>

namespace pdvm::cli {

// Adds the `bench` subcommand and its flags to `app`; returns it (test it with `if (*cmd)`).
CLI::App* add_bench_command(CLI::App& app);
// Runs the benchmark with the parsed flags: prints the table on stdout, progress on stderr,
// writes --json FILE. Returns the exit code: 0 ok, 1 benchmark/model error, 2 bad flag values.
int run_bench_command();

}  // namespace pdvm::cli
