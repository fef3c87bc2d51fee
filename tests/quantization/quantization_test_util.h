// Helpers for the int8 tests: small model folders to quantise; the golden pipeline cases they
// are held to come from pipeline/golden_pipeline_cases.h.
#pragma once

#include <filesystem>
#include <string>

#include "pipeline/golden_pipeline_cases.h"
#include "test_util.h"

namespace sdrt::testing {

// A model folder `scratch/name/model` whose components link to the tiny model's (its golden
// cases/ left out, so a quantised copy is 16 MB, not 44).
inline std::string tiny_model_links(const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(scratch_dir(name)) / "model";
  fs::create_directories(dir);
  for (const auto& entry : fs::directory_iterator(tiny_model_dir()))
    if (entry.path().filename() != "cases") fs::create_symlink(entry.path(), dir / entry.path().filename());
  return dir.string();
}

}  // namespace sdrt::testing
