// `pdvm chat`: interactive multi-turn chat in the terminal. main.cpp calls add_chat_command()
// while it builds its flags and run_chat_command() when the subcommand was given; the flag values
// live in chat_command.cpp.
#pragma once

#include <CLI/CLI.hpp>

namespace pdvm::cli {

CLI::App* add_chat_command(CLI::App& app);
int run_chat_command();  // exit code: 0 ok, 1 model/runtime error

}  // namespace pdvm::cli
