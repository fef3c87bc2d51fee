// sdrt: Stable Diffusion on CPUs. `sdrt generate --prompt "..."`, `sdrt init-random`, ...
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <map>

#include "commands.h"
#include "core/error.h"
#include "core/memory_stats.h"

int main(int argc, char** argv) {
  sdrt::return_large_frees_to_the_kernel();
  CLI::App app{"sdrt: Stable Diffusion runtime for CPUs"};
  app.require_subcommand(1);
  std::map<CLI::App*, sdrt::app::Command> commands;
  auto add = [&](sdrt::app::Command (*add_fn)(CLI::App&)) {
    size_t before = app.get_subcommands({}).size();
    auto run = add_fn(app);
    commands[app.get_subcommands({})[before]] = run;
  };
  add(sdrt::app::add_generate_command);
  add(sdrt::app::add_init_random_command);
  add(sdrt::app::add_inspect_command);
  add(sdrt::app::add_bench_command);
  CLI11_PARSE(app, argc, argv);
  try {
    for (auto& [sub, run] : commands)
      if (sub->parsed()) run();
  } catch (const sdrt::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
