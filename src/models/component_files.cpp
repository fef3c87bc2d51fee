#include "models/component_files.h"

#include <filesystem>
#include <iostream>

#include "core/error.h"

namespace sdrt {

std::string find_weights_file(const std::string& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) fail(dir, ": not a directory");
  for (const char* name : {"diffusion_pytorch_model.safetensors", "model.safetensors",
                           "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors"}) {
    fs::path p = fs::path(dir) / name;
    if (fs::is_regular_file(p)) return p.string();
  }
  for (const char* name : {"diffusion_pytorch_model.bin", "pytorch_model.bin", "model.ckpt", "model.pt"}) {
    if (fs::exists(fs::path(dir) / name))
      fail(dir, ": only pickled weights (", name,
           ") were found; sdrt never unpickles checkpoints because that can execute arbitrary code. "
           "Convert them to safetensors (e.g. with diffusers' save_pretrained(safe_serialization=True)).");
  }
  fail(dir, ": no weights file (expected diffusion_pytorch_model.safetensors or model.safetensors)");
}

void warn_unused(const WeightSource& weights) {
  auto unused = weights.unused();
  if (unused.empty()) return;
  std::cerr << "warning: " << weights.path() << ": " << unused.size() << " tensor(s) not used by the model:";
  for (size_t i = 0; i < unused.size() && i < 5; ++i) std::cerr << " " << unused[i];
  if (unused.size() > 5) std::cerr << " ...";
  std::cerr << "\n";
}

}  // namespace sdrt
