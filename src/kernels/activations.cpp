#include "kernels/kernels.h"
#include "kernels/simd_math.h"

namespace sdrt::kernels::SDRT_ISA_NS {

#include "kernels/isa_ops.inc"

namespace {

// Applies the vector function f in place, chunk by chunk across the threads.
template <typename F>
void map_inplace(Tensor& x, F f) {
  float* d = x.data();
  simd_math::for_each_chunk(x.numel(), [&](int64_t begin, int64_t end) {
    simd_math::map_vectors(d + begin, d + begin, end - begin, f);
  });
}

}  // namespace

void apply_activation(Tensor& x, Activation act) {
  using simd::Vec;
  switch (act) {
    case Activation::None:
      return;
    case Activation::SiLU:
      return map_inplace(x, [](Vec v) { return simd_math::silu(v); });
    case Activation::GELU:
      return map_inplace(x, [](Vec v) { return simd_math::gelu(v); });
    case Activation::GELUTanh:
      return map_inplace(x, [](Vec v) { return simd_math::gelu_tanh(v); });
    case Activation::QuickGELU:
      return map_inplace(x, [](Vec v) { return simd_math::quick_gelu(v); });
    case Activation::ReLU:
      return map_inplace(x, [](Vec v) { return simd::max(v, simd::zero()); });
  }
}

}  // namespace sdrt::kernels::SDRT_ISA_NS
