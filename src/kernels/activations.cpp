#include <cmath>
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

namespace {

template <typename F>
void map_inplace(Tensor& x, F f) {
  float* d = x.data();
  int64_t n = x.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) d[i] = f(d[i]);
}

}  // namespace

void apply_activation(Tensor& x, Activation act) {
  switch (act) {
    case Activation::None:
      return;
    case Activation::SiLU:
      return map_inplace(x, [](float v) { return v / (1.0f + std::exp(-v)); });
    case Activation::GELU:
      return map_inplace(x, [](float v) { return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f)); });
    case Activation::GELUTanh:
      return map_inplace(x, [](float v) {
        return 0.5f * v * (1.0f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
      });
    case Activation::QuickGELU:
      return map_inplace(x, [](float v) { return v / (1.0f + std::exp(-1.702f * v)); });
    case Activation::ReLU:
      return map_inplace(x, [](float v) { return v > 0.0f ? v : 0.0f; });
  }
}

}  // namespace sdrt::kernels
