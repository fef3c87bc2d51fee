// sdrt: Stable Diffusion on CPUs. `sdrt generate --prompt "..."`, `sdrt init-random`, ...
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <map>

#include "commands.h"
#include "core/cpu_isa.h"
#include "core/error.h"
#include "core/memory_stats.h"
#include "kernels/kernels.h"

namespace {

// `sdrt --version`: the build, and what it runs on this CPU.
std::string version_text() {
  return std::string("sdrt ") + SDRT_VERSION + "\nCPU: " + sdrt::cpu_model_name() + "\nkernels: sdrt " +
         sdrt::isa_summary() + "; oneDNN " + sdrt::kernels::onednn_version() + " " + sdrt::kernels::onednn_isa_name();
}

}  // namespace

int main(int argc, char** argv) {
  sdrt::return_large_frees_to_the_kernel();
  CLI::App app{"sdrt: Stable Diffusion runtime for CPUs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", [] {
    try {
      return version_text();
    } catch (const std::exception& e) {  // e.g. a bad SDRT_MAX_ISA
      return std::string("error: ") + e.what();
    }
  });
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
  add(sdrt::app::add_quantize_command);
  CLI11_PARSE(app, argc, argv);
  try {
    sdrt::active_isa();  // a bad SDRT_MAX_ISA stops here, before any work
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
