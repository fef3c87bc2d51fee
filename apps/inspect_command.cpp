#include <cmath>
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "io/safetensors.h"

namespace sdrt::app {

namespace {

struct InspectOptions {
  std::string file;
  std::vector<std::string> check_finite;
};

void run_inspect(const InspectOptions& o) {
  auto st = SafeTensors::open(o.file);
  for (const auto& [key, value] : st.metadata())
    std::printf("metadata %s = %.120s%s\n", key.c_str(), value.c_str(), value.size() > 120 ? "..." : "");
  for (const auto& [name, info] : st.tensors())
    std::printf("%-60s %-5s %s\n", name.c_str(), dtype_name(info.dtype), shape_str(info.shape).c_str());
  for (const auto& name : o.check_finite) {
    Tensor t = st.load_f32(name);
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (!std::isfinite(t[i])) fail(o.file, ": tensor '", name, "' has a non-finite value at index ", i);
      lo = std::min(lo, static_cast<double>(t[i]));
      hi = std::max(hi, static_cast<double>(t[i]));
    }
    if (t.numel() > 1 && lo == hi) fail(o.file, ": tensor '", name, "' is constant (", lo, ")");
    std::printf("%s: finite, range [%g, %g]\n", name.c_str(), lo, hi);
  }
}

}  // namespace

Command add_inspect_command(CLI::App& app) {
  auto o = std::make_shared<InspectOptions>();
  auto* cmd = app.add_subcommand("inspect", "List the tensors and metadata of a safetensors file");
  cmd->add_option("file", o->file, "safetensors file")->required();
  cmd->add_option("--check-finite", o->check_finite, "fail unless these tensors are finite and not constant");
  return [o] { run_inspect(*o); };
}

}  // namespace sdrt::app
