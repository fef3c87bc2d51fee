// Where a diffusers component folder keeps its weights, and what to say about tensors that no
// module bound.
#pragma once

#include <string>

#include "models/weights.h"

namespace sdrt {

// The component's safetensors file: diffusion_pytorch_model[.fp16].safetensors or
// model[.fp16].safetensors. A folder with only pickled weights (.bin/.ckpt/.pt) is refused
// with an explanation: unpickling can execute arbitrary code.
std::string find_weights_file(const std::string& dir);

// Prints one warning line per unbound tensor (the first few by name) to stderr: a checkpoint
// with extra tensors still loads, but the user learns that something was ignored.
void warn_unused(const WeightSource& weights);

}  // namespace sdrt
