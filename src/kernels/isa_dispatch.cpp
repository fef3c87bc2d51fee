// The one place where sdrt's own vectorised kernels are chosen by instruction set: each op of
// isa_ops.inc exists once per ISA tier (sdrt::kernels::<tier>), and the public op forwards to the
// tier core/cpu_isa.h's active_isa() names, fixed at start-up from CPUID and SDRT_MAX_ISA.
// oneDNN dispatches its own kernels; onednn_isa_cap() passes the same cap on to it.
#include <oneapi/dnnl/dnnl.hpp>

#include <cstdlib>
#include <optional>
#include <string>

#include "core/cpu_isa.h"
#include "core/error.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {
namespace scalar {
#include "kernels/isa_ops.inc"
}
namespace avx2 {
#include "kernels/isa_ops.inc"
}
namespace avx512 {
#include "kernels/isa_ops.inc"
}
namespace avx512_bf16 {
#include "kernels/isa_ops.inc"
}

namespace {

template <class F>
F for_active_isa(F scalar_op, F avx2_op, F avx512_op, F avx512_bf16_op) {
  switch (active_isa()) {
    case Isa::avx512_bf16:
      return avx512_bf16_op;
    case Isa::avx512:
      return avx512_op;
    case Isa::avx2:
      return avx2_op;
    case Isa::scalar:
      break;
  }
  return scalar_op;
}

}  // namespace

// The active tier's version of `op`.
#define SDRT_ISA_OP(op) for_active_isa(&scalar::op, &avx2::op, &avx512::op, &avx512_bf16::op)

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal,
                 Precision precision) {
  return SDRT_ISA_OP(attention)(q, k, v, heads, scale, causal, precision);
}
Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal) {
  return scalar::attention_reference(q, k, v, heads, scale, causal);  // plain loops in double: any tier's is the same
}
void apply_activation(Tensor& x, Activation act) { SDRT_ISA_OP(apply_activation)(x, act); }
Tensor geglu(const Tensor& x) { return SDRT_ISA_OP(geglu)(x); }
Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps, bool fuse_silu) {
  return SDRT_ISA_OP(group_norm)(x, groups, gamma, beta, eps, fuse_silu);
}
Tensor group_norm_channels_last(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                                bool fuse_silu) {
  return SDRT_ISA_OP(group_norm_channels_last)(x, groups, gamma, beta, eps, fuse_silu);
}
Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) {
  return SDRT_ISA_OP(layer_norm)(x, gamma, beta, eps);
}
void add_inplace(Tensor& x, const Tensor& y) { SDRT_ISA_OP(add_inplace)(x, y); }
void scale_inplace(Tensor& x, float s) { SDRT_ISA_OP(scale_inplace)(x, s); }
void add_channel_broadcast(Tensor& x, const Tensor& v) { SDRT_ISA_OP(add_channel_broadcast)(x, v); }
Tensor upsample_nearest2x(const Tensor& x) { return SDRT_ISA_OP(upsample_nearest2x)(x); }
Tensor upsample_nearest(const Tensor& x, int64_t out_h, int64_t out_w) {
  return SDRT_ISA_OP(upsample_nearest)(x, out_h, out_w);
}
Tensor upsample_nearest2x_channels_last(const Tensor& x) { return SDRT_ISA_OP(upsample_nearest2x_channels_last)(x); }
Tensor concat_channels(const Tensor& a, const Tensor& b) { return SDRT_ISA_OP(concat_channels)(a, b); }
Tensor nchw_to_nlc(const Tensor& x) { return SDRT_ISA_OP(nchw_to_nlc)(x); }
Tensor nlc_to_nchw(const Tensor& x, int64_t h, int64_t w) { return SDRT_ISA_OP(nlc_to_nchw)(x, h, w); }
Tensor nchw_to_nhwc(const Tensor& x) { return SDRT_ISA_OP(nchw_to_nhwc)(x); }
Tensor nhwc_to_nchw(const Tensor& x) { return SDRT_ISA_OP(nhwc_to_nchw)(x); }

#undef SDRT_ISA_OP

namespace {

// oneDNN's name for the highest ISA it may use under sdrt's cap; none when uncapped (oneDNN then
// uses everything the CPU has, AMX included).
std::optional<dnnl::cpu_isa> onednn_cap_for(std::optional<Isa> cap) {
  if (!cap) return std::nullopt;
  switch (*cap) {
    case Isa::scalar:
      return dnnl::cpu_isa::sse41;  // oneDNN's lowest JIT level; below it, its reference kernels
    case Isa::avx2:
      return dnnl::cpu_isa::avx2;
    case Isa::avx512:
      return dnnl::cpu_isa::avx512_core;
    case Isa::avx512_bf16:
      return dnnl::cpu_isa::avx512_core_bf16;
  }
  return std::nullopt;
}

}  // namespace

void apply_isa_cap_to_onednn() {
  [[maybe_unused]] static const bool applied = [] {
    // ONEDNN_MAX_CPU_ISA set by the user is oneDNN's own business; leave it alone.
    const char* own = std::getenv("ONEDNN_MAX_CPU_ISA");
    if (own != nullptr && *own != '\0') return false;
    std::optional<dnnl::cpu_isa> cap = onednn_cap_for(isa_cap_from_environment());
    if (!cap) return false;
    dnnl::set_max_cpu_isa(*cap);
    return true;
  }();
}

std::string onednn_isa_name() {
  apply_isa_cap_to_onednn();
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

std::string onednn_version() {
  const dnnl_version_t* v = dnnl_version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

}  // namespace sdrt::kernels
