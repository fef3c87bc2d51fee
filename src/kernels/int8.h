// 8-bit quantisation for the packed convolution and linear kernels (W8A8): the arithmetic every
// int8 path in sdrt follows, its plain reference implementations, and the pieces the fast paths
// share. docs/quantization.md documents the same rules for other producers of int8 models.
//
// Weights: symmetric per output channel. scale[o] = max|W[o]| / 127 (1 for an all-zero channel),
// Wq = clamp(round_half_even(W / scale[o]), -127, 127).
//
// Activations (a layer's input): symmetric int8 with a per-tensor scale s_x, either static (fixed
// by calibration or training) or dynamic (absmax / 127 of each image for a convolution, of each
// row/token for a linear layer, measured on every call). inv = 1 / s_x in float32;
// xq = clamp(round_half_even(x * inv), -128, 127). Multiplying by the float32 reciprocal, not
// dividing, is what oneDNN's quantising reorder computes, so the reference and the fast path
// round the same values the same way.
//
// Output: y = s_x * scale[o] * sum(xq * Wq) + bias[o], the sum in int32 (exact: |xq * Wq| <=
// 128 * 127, and SD's reductions are far below 2^31 / 16256 terms).
//
// CPUs without VNNI (AVX2, AVX-512 before Cascade Lake): oneDNN multiplies there with vpmaddubsw,
// which adds two u8 * s8 products into a saturating int16; with the input shifted to u8 that
// saturates once a pair of weights exceeds 64 in magnitude. The packed kernels therefore give
// oneDNN 7-bit weights on such CPUs: Wq7 = round_half_even(Wq / 2) in [-64, 64] with scale * 2
// (seven_bit_weights()), which cannot saturate. The model loses one bit of weight precision
// there; the test suite holds both forms to the reference.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {

inline constexpr int kInt8WeightMax = 127;
inline constexpr int kInt8ActivationMin = -128, kInt8ActivationMax = 127;

// One layer's int8 weights: `shape` [O, C, kh, kw] or [O, C], `data` its row-major values (may
// alias a memory-mapped file, which `data` then keeps alive), `scales` one per output channel.
struct Int8Weights {
  Shape shape;
  std::shared_ptr<const int8_t> data;
  std::vector<float> scales;

  int64_t out_channels() const { return shape.empty() ? 0 : shape[0]; }
  // Quantises float weights [O, ...] by the rule above.
  static Int8Weights quantize(const Tensor& weights);
  // Throws, naming `what`, unless the data is present, the scales are one per output channel and
  // every scale is finite and > 0.
  void validate(const std::string& what) const;
};

// Whether oneDNN's int8 kernels have VNNI here (under the ISA cap), i.e. take 8-bit weights.
bool onednn_int8_has_vnni();
// The 7-bit form of `w` for CPUs without VNNI (above): values round_half_even(v / 2), scales * 2.
Int8Weights seven_bit_weights(const Int8Weights& w);

// The weight scale of one output channel from its largest magnitude.
float int8_weight_scale(float max_abs);
// clamp(round_half_even(x * inv_scale), lo, hi).
int8_t quantize_int8(float x, float inv_scale, int lo = kInt8ActivationMin, int hi = kInt8ActivationMax);
// The dynamic activation scale of a chunk whose largest magnitude is `max_abs` (1 if it is 0).
float int8_dynamic_scale(float max_abs);
// out[i] = max |x[i * len .. (i + 1) * len)| for i < chunks: each image's or each row's range.
void absmax_per_chunk(const float* x, int64_t chunks, int64_t len, float* out);

// The float epilogue of a dynamic int8 product: y = s_x[n] * scale[o] * acc + bias[o] (y += ... when
// `accumulate`). acc and y are [n, pixels, o] when channels last, else [n, o, pixels]; each side
// has its own layout, so the pass can also transpose.
struct Int8Epilogue {
  const float* input_scales;   // [n]
  const float* weight_scales;  // [o]
  const float* bias;           // [o] or null
  bool accumulate = false;
};
void dequantize_int32(const int32_t* acc, bool acc_channels_last, float* y, bool y_channels_last, int64_t n,
                      int64_t o, int64_t pixels, const Int8Epilogue& epilogue);

// Plain references, the semantics the packed int8 kernels are tested against. `input_scale` > 0
// is a static per-tensor scale; 0 means dynamic (per image for conv, per row for linear).
// x [N, C, H, W] -> [N, O, OH, OW].
Tensor conv2d_int8_reference(const Tensor& x, const Int8Weights& w, const Tensor& bias, Conv2dParams p,
                             float input_scale);
// x [..., in] -> [..., out].
Tensor linear_int8_reference(const Tensor& x, const Int8Weights& w, const Tensor& bias, float input_scale);

}  // namespace sdrt::kernels
