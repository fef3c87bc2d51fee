#include <string>

#include "core/error.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {

Activation activation_from_name(const std::string& name) {
  if (name == "silu" || name == "swish") return Activation::SiLU;
  if (name == "gelu") return Activation::GELU;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return Activation::GELUTanh;
  if (name == "quick_gelu") return Activation::QuickGELU;
  if (name == "relu") return Activation::ReLU;
  fail("unknown activation '", name, "' (expected silu, swish, gelu, gelu_new, gelu_pytorch_tanh, quick_gelu or relu)");
}

}  // namespace sdrt::kernels
