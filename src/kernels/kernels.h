// The op interface every model is written against. Each op has one file in this directory.
// Ops that have a fast path (oneDNN GEMM/convolution) also expose a plain `_reference`
// implementation: it defines the semantics and the tests hold the fast path to it.
//
// Layouts: images are NCHW; token sequences are [batch, length, channels] (NLC).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace sdrt::kernels {

// The CPU engine and stream oneDNN primitives run on (dnnl_engine.cpp). Created once, never mutated.
}  // namespace sdrt::kernels
namespace dnnl {
class engine;
class stream;
}  // namespace dnnl
namespace sdrt::kernels {
const dnnl::engine& cpu_engine();
dnnl::stream& cpu_stream();

// ---- Instruction sets (isa_dispatch.cpp). sdrt's own vectorised ops run the tier of
// core/cpu_isa.h's active_isa(); oneDNN picks its own kernels, under the same cap when
// SDRT_MAX_ISA is set. cpu_engine() and gemm() apply the cap before oneDNN's first use.
void apply_isa_cap_to_onednn();
// The ISA oneDNN's kernels use, in oneDNN's words (e.g. "avx2", "avx512_core_amx").
std::string onednn_isa_name();
std::string onednn_version();  // e.g. "2.6.3"

// ---- GEMM (gemm.cpp): row-major C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm_reference(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                    int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// ---- Compute precision of the packed convolution and linear kernels (packed_conv2d.h,
// packed_linear.h). bf16: weights stored in bf16 and activations rounded to bf16 on their way
// into the primitive; products accumulate in f32 and outputs stay f32, so norms, softmax and
// everything between layers keep f32. Halves the weights' memory. int8: W8A8 (kernels/int8.h):
// int8 weights per output channel, the input quantised to int8 on its way into the primitive,
// int32 accumulation, f32 output; a model chooses per layer (the rest stays f32).
enum class Precision { f32, bf16, int8 };
// "fp32"/"f32", "bf16" or "int8"; throws on anything else.
Precision precision_from_name(const std::string& name);
const char* precision_name(Precision p);  // "fp32", "bf16" or "int8"
// Empty where oneDNN has convolution and matmul kernels for `p` on this CPU (under the ISA cap);
// otherwise why not, in words a user can act on. oneDNN 2.6 has bf16 kernels from AVX-512
// (avx512_core) up only, so an AVX2 CPU gets fp32; sdrt does not pretend otherwise.
std::string precision_unsupported_reason(Precision p);
// Throws precision_unsupported_reason(p) if there is one.
void require_precision_supported(Precision p);

// ---- Linear (linear.cpp): y[..., out] = x[..., in] * W[out, in]^T + b[out]. `bias` may be undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

// ---- Convolution (conv2d.cpp): x [N, C, H, W], weight [O, C, kh, kw], bias [O] or undefined.
struct Conv2dParams {
  int stride = 1;
  int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  static Conv2dParams symmetric(int stride, int padding) { return {stride, padding, padding, padding, padding}; }
};
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Conv2dParams p);
Tensor conv2d_reference(const Tensor& x, const Tensor& weight, const Tensor& bias, Conv2dParams p);

// ---- Normalisation (group_norm.cpp, layer_norm.cpp). Statistics are pivot-shifted float partial sums
// widened to double, so a large mean offset costs no accuracy.
// GroupNorm over x [N, C, *]; `fuse_silu` applies SiLU to the output (the common norm+act pair).
Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                  bool fuse_silu = false);
// The same over channels-last x [N, H, W, C] (see "Channels last" below).
Tensor group_norm_channels_last(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                                bool fuse_silu = false);
// LayerNorm over the last dimension.
Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps);

// ---- Activations (activations.cpp), in place.
enum class Activation { None, SiLU, GELU, GELUTanh, QuickGELU, ReLU };
// Parses the diffusers/transformers names: silu/swish, gelu, gelu_new/gelu_pytorch_tanh, quick_gelu, relu.
Activation activation_from_name(const std::string& name);
void apply_activation(Tensor& x, Activation act);
// GEGLU (geglu.cpp): x [..., 2H] split into (h, g) halves -> h * gelu(g), [..., H].
Tensor geglu(const Tensor& x);

// ---- Attention (attention.cpp): q [B, Lq, heads*d], k and v [B, Lk, heads*d] -> [B, Lq, heads*d].
// softmax(q k^T * scale) v per head; `causal` masks key j > query i. bf16 rounds q, k, v and the
// softmax probabilities to bf16 for the two products; scores, softmax and sums stay f32.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal = false,
                 Precision precision = Precision::f32);
Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale,
                           bool causal = false);

// ---- Element-wise and data movement (elementwise.cpp, layout.cpp).
void add_inplace(Tensor& x, const Tensor& y);  // same shape
void scale_inplace(Tensor& x, float s);
// x [N, C, *] += v[n, c] broadcast over the spatial positions (v is [N, C] or [C]).
void add_channel_broadcast(Tensor& x, const Tensor& v);
Tensor upsample_nearest2x(const Tensor& x);                  // [N, C, H, W] -> [N, C, 2H, 2W]
// Nearest-neighbour resize to [N, C, out_h, out_w] with PyTorch's index rule
// src = min(floor(dst * (in / out)), in - 1) (upsample_nearest.cpp).
Tensor upsample_nearest(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor concat_channels(const Tensor& a, const Tensor& b);    // along dim 1
Tensor nchw_to_nlc(const Tensor& x);                         // [N, C, H, W] -> [N, H*W, C]
Tensor nlc_to_nchw(const Tensor& x, int64_t h, int64_t w);   // [N, H*W, C] -> [N, C, H, W]

// ---- Channels last. The VAE keeps its activations as [N, H, W, C], the layout oneDNN's direct
// convolutions read and write, so no convolution needs a reorder on either side; its attention
// reads the same memory as [N, H*W, C] tokens.
Tensor nchw_to_nhwc(const Tensor& x);  // [N, C, H, W] -> [N, H, W, C]
Tensor nhwc_to_nchw(const Tensor& x);  // [N, H, W, C] -> [N, C, H, W]
// [N, H, W, C] -> [N, 2H, 2W, C] (upsample_nearest.cpp).
Tensor upsample_nearest2x_channels_last(const Tensor& x);

// ---- Timestep embedding (timestep_embedding.cpp): diffusers' get_timestep_embedding, float32 math.
Tensor timestep_embedding(const std::vector<float>& timesteps, int dim, bool flip_sin_to_cos, float freq_shift,
                          float max_period = 10000.0f);

}  // namespace sdrt::kernels
