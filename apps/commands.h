// The sdrt subcommands. Each registers its options on the CLI11 app and returns the function
// that runs it.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace sdrt::app {

using Command = std::function<void()>;

Command add_generate_command(CLI::App& app);
Command add_init_random_command(CLI::App& app);
Command add_inspect_command(CLI::App& app);
Command add_bench_command(CLI::App& app);
Command add_quantize_command(CLI::App& app);

// <source>/models/default, the model `generate` uses when --model is not given.
std::string default_model_dir();

}  // namespace sdrt::app
