#include "kernels/packed_conv2d.h"

#include <algorithm>
#include <cmath>
#include <compare>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "core/dry_run.h"
#include "core/error.h"
#include "kernels/conv_linear_shapes.h"
#include "kernels/int8.h"
#include "kernels/op_counter.h"
#include "kernels/packed_weights.h"

namespace sdrt::kernels {

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;
using ConvPd = dnnl::convolution_forward::primitive_desc;

// Input shapes per layer before the plan cache starts over.
constexpr size_t kMaxCachedPlans = 16;
// The weights are packed at construction with the plan for a [1, C, 32, 32] input.
constexpr int64_t kNominalInputSize = 32;

// Reordering NCHW activations to oneDNN's layout and back costs two extra passes (and two more
// fork/joins of the thread pool, which are expensive on a busy machine); it pays when the
// convolution has enough work per output element and enough outputs. Measured on SD's shapes
// (bench_conv_linear): 3x3 convolutions from 16x16 outputs up run 10-60% faster on brgconv
// including the reorders, and the VAE's 128 -> 3 conv_out about 3x faster than im2col + GEMM with
// 3 output rows; at 8x8 brgconv gains nothing and the reorders make it slower. 1x1 convolutions
// (a plain GEMM on NCHW) and the few-channel conv_in lose more to the reorders than they gain.
constexpr int64_t kMinMacsPerOutputToReorder = 64;
constexpr int64_t kMinOutputPixelsToReorder = 16 * 16;

bool worth_reordering_activations(const ConvShape& s) {
  return s.kh * s.kw > 1 && s.c * s.kh * s.kw >= kMinMacsPerOutputToReorder &&
         s.oh * s.ow >= kMinOutputPixelsToReorder;
}

// Whether oneDNN's int8 convolutions halve the weights themselves without VNNI (they do in
// oneDNN 2.6), probed once on a typical shape; every plan checks that its own agrees.
bool int8_convolutions_halve_weights() {
  static const bool halves = [] {
    memory::desc src({1, 64, 16, 16}, dt::s8, tag::nhwc), dst({1, 64, 16, 16}, dt::f32, tag::nhwc);
    memory::desc weights({64, 64, 3, 3}, dt::s8, tag::any);
    ConvPd pd(dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                              src, weights, dst, {1, 1}, {1, 1}, {1, 1}),
              cpu_engine());
    return onednn_halves_int8_weights(pd.weights_desc());
  }();
  return halves;
}

bool is_reference_implementation(const ConvPd& pd) { return std::string_view(pd.impl_info_str()).starts_with("ref"); }

// The caller's activations: f32, NCHW or channels last.
memory::desc user_desc(int64_t n, int64_t c, int64_t h, int64_t w, bool channels_last, dt type = dt::f32) {
  return {{n, c, h, w}, type, channels_last ? tag::nhwc : tag::nchw};
}

struct PlanKey {
  int64_t n, h, w;
  bool accumulate, channels_last;
  auto operator<=>(const PlanKey&) const = default;
};

// Everything one input shape needs, made once: the convolution, the reorders between the caller's
// layout and the convolution's (absent where they are the same), and the packed weights.
struct ConvPlan {
  dnnl::convolution_forward conv;
  memory::desc user_src, user_dst, src, dst;
  std::optional<dnnl::reorder> to_src, from_dst;
  memory::desc conv_scratchpad, to_src_scratchpad, from_dst_scratchpad;
  size_t scratchpad_bytes = 0;
  std::shared_ptr<const memory> weights;
  // Dynamic int8 only: the convolution writes int32 accumulators (channels last or NCHW) and
  // dequantize_int32() makes the caller's output from them, accumulating into it if asked.
  bool int32_channels_last = false, accumulate = false, channels_last = false;
};

}  // namespace

struct PackedConv2d::Impl {
  Shape weight_shape;
  Tensor bias;
  Conv2dParams params;
  Precision precision;
  mutable PlanCache<PlanKey, ConvPlan> plans;
  Int8Scales q;  // int8 only; dynamic scales are per image

  Impl(Tensor weight, Tensor bias_, Conv2dParams params_, Precision precision_)
      : weight_shape(weight.shape()),
        bias(std::move(bias_)),
        params(params_),
        precision(precision_),
        plans(WeightLayouts(std::move(weight), memory::desc(weight_shape, dt::f32, tag::oihw)), kMaxCachedPlans) {}

  Impl(Int8Weights weight, Tensor bias_, Conv2dParams params_, float input_scale_)
      : weight_shape(weight.shape),
        bias(std::move(bias_)),
        params(params_),
        precision(Precision::int8),
        plans(WeightLayouts(weight.data, weight.data.get(), memory::desc(weight_shape, dt::s8, tag::oihw)),
              kMaxCachedPlans),
        q(std::move(weight.scales), input_scale_, bias) {}

  bool int8() const { return precision == Precision::int8; }
  bool dynamic() const { return int8() && q.dynamic(); }
  // The bias the primitive adds (none for dynamic int8: the epilogue adds it).
  const Tensor* primitive_bias() const {
    if (int8()) return q.primitive_bias(bias);
    return bias.defined() ? &bias : nullptr;
  }

  ConvShape shape_of(const Shape& x_shape, bool channels_last) const {
    if (channels_last) {
      SDRT_CHECK(x_shape.size() == 4, "packed conv2d: channels-last input must be [N, H, W, C], got ",
                 shape_str(x_shape));
      return shape_of({x_shape[0], x_shape[3], x_shape[1], x_shape[2]}, false);
    }
    return check_conv(x_shape, weight_shape, bias.defined() ? bias.numel() : -1, params);
  }

  ConvPd primitive_desc(const ConvShape& s, const memory::desc& src, const memory::desc& dst,
                        bool accumulate) const {
    using namespace dnnl;
    memory::desc weights_any({s.o, s.c, s.kh, s.kw}, compute_data_type(precision), tag::any);
    memory::dims strides{params.stride, params.stride};
    memory::dims pad_l{params.pad_top, params.pad_left}, pad_r{params.pad_bottom, params.pad_right};
    dnnl::primitive_attr attr = packed_kernel_attr(accumulate);
    if (int8()) q.add_output_scales(attr);
    auto desc = primitive_bias() ? convolution_forward::desc(prop_kind::forward_inference, algorithm::convolution_direct,
                                                           src, weights_any, memory::desc({s.o}, dt::f32, tag::x), dst,
                                                           strides, pad_l, pad_r)
                               : convolution_forward::desc(prop_kind::forward_inference, algorithm::convolution_direct,
                                                           src, weights_any, dst, strides, pad_l, pad_r);
    return ConvPd(desc, attr, cpu_engine());
  }

  // The convolution for this shape, accumulating into its destination when asked and the destination is
  // the caller's (otherwise the output reorder accumulates). The destination is always f32; in bf16 the
  // source is bf16, so even a convolution in the caller's layout gets its input through a (converting)
  // reorder.
  ConvPd choose_primitive_desc(const ConvShape& s, bool accumulate, bool channels_last) const {
    if (int8()) return choose_int8_primitive_desc(s, accumulate, channels_last);
    dt src_type = compute_data_type(precision);
    memory::desc own_src = user_desc(s.n, s.c, s.h, s.w, channels_last, src_type),
                 own_dst = user_desc(s.n, s.o, s.oh, s.ow, channels_last);
    memory::desc any_src({s.n, s.c, s.h, s.w}, src_type, tag::any), any_dst({s.n, s.o, s.oh, s.ow}, dt::f32, tag::any);
    // Candidate layouts, best first; the first with an optimised kernel wins. oneDNN's own layout
    // comes last where the caller's is preferred, for the shapes where that has only the reference
    // kernel (which happens in bf16). Channels last is what oneDNN's direct convolutions use.
    const bool reorder_first = !channels_last && worth_reordering_activations(s);
    std::vector<std::pair<memory::desc, memory::desc>> layouts;
    if (reorder_first) layouts.emplace_back(any_src, any_dst);
    layouts.emplace_back(own_src, own_dst);
    if (!reorder_first) layouts.emplace_back(any_src, any_dst);
    std::optional<ConvPd> pd;
    for (const auto& [src, dst] : layouts) {
      ConvPd candidate = primitive_desc(s, src, dst, false);
      if (!is_reference_implementation(candidate)) {
        pd = candidate;
        break;
      }
      if (!pd) pd = candidate;
    }
    if (accumulate && pd->dst_desc() == own_dst) pd = primitive_desc(s, pd->src_desc(), pd->dst_desc(), true);
    return *pd;
  }

  // int8 convolutions run channels last (oneDNN's int8 kernels want it, and the input needs a
  // quantising reorder anyway, which transposes for free); NCHW is the fallback. Dynamic plans write
  // int32 in a plain layout that dequantize_int32() reads.
  ConvPd choose_int8_primitive_desc(const ConvShape& s, bool accumulate, bool channels_last) const {
    const dt dst_type = dynamic() ? dt::s32 : dt::f32;
    std::optional<ConvPd> pd;
    for (tag layout : {tag::nhwc, tag::nchw}) {
      ConvPd candidate = primitive_desc(s, memory::desc({s.n, s.c, s.h, s.w}, dt::s8, layout),
                                        memory::desc({s.n, s.o, s.oh, s.ow}, dst_type, layout), false);
      if (!is_reference_implementation(candidate)) {
        pd = candidate;
        break;
      }
      if (!pd) pd = candidate;
    }
    const memory::desc own_dst = user_desc(s.n, s.o, s.oh, s.ow, channels_last);
    if (accumulate && !dynamic() && pd->dst_desc() == own_dst) pd = primitive_desc(s, pd->src_desc(), own_dst, true);
    return *pd;
  }

  // The reorder that brings the caller's f32 input into the primitive's source: int8 quantises on
  // the way, with the static 1/s_x, or with runtime per-image 1/s_x when dynamic.
  dnnl::primitive_attr source_reorder_attr() const {
    return int8() ? q.source_reorder_attr() : packed_kernel_attr(false);
  }

  std::shared_ptr<const ConvPlan> make_plan(const ConvShape& s, const PlanKey& key, WeightLayouts& weights) const {
    count_plan_created();
    ConvPd pd = choose_primitive_desc(s, key.accumulate, key.channels_last);
    auto plan = std::make_shared<ConvPlan>();
    plan->conv = dnnl::convolution_forward(pd);
    plan->user_src = user_desc(s.n, s.c, s.h, s.w, key.channels_last);
    plan->user_dst = user_desc(s.n, s.o, s.oh, s.ow, key.channels_last);
    plan->src = pd.src_desc();
    plan->dst = pd.dst_desc();
    plan->conv_scratchpad = pd.scratchpad_desc();
    const auto& eng = cpu_engine();
    if (plan->src != plan->user_src) {
      dnnl::reorder::primitive_desc r(eng, plan->user_src, eng, plan->src, source_reorder_attr());
      plan->to_src = dnnl::reorder(r);
      plan->to_src_scratchpad = r.scratchpad_desc();
    }
    if (dynamic()) {
      plan->int32_channels_last = plan->dst == memory::desc({s.n, s.o, s.oh, s.ow}, dt::s32, tag::nhwc);
      plan->accumulate = key.accumulate;
      plan->channels_last = key.channels_last;
    } else if (plan->dst != plan->user_dst) {
      dnnl::reorder::primitive_desc r(eng, plan->dst, eng, plan->user_dst, packed_kernel_attr(key.accumulate));
      plan->from_dst = dnnl::reorder(r);
      plan->from_dst_scratchpad = r.scratchpad_desc();
    }
    plan->scratchpad_bytes =
        max_scratchpad_bytes({plan->conv_scratchpad, plan->to_src_scratchpad, plan->from_dst_scratchpad});
    if (int8()) check_int8_weight_preparation(pd.weights_desc(), q.seven_bit_weights, "packed conv2d");
    plan->weights = weights.in_layout(pd.weights_desc());
    return plan;
  }

  std::shared_ptr<const ConvPlan> plan_for(const ConvShape& s, bool accumulate, bool channels_last) const {
    const PlanKey key{s.n, s.h, s.w, accumulate, channels_last};
    return plans.get(key, [&](WeightLayouts& weights) { return make_plan(s, key, weights); });
  }

  void pack_for_nominal_input() {
    int64_t size = std::max({kNominalInputSize, weight_shape[2], weight_shape[3]});
    ConvShape s = shape_of({1, weight_shape[1], size, size}, false);
    plans.pack(choose_primitive_desc(s, false, false).weights_desc());
  }

  Tensor forward(const Tensor& x, bool channels_last) const {
    ConvShape s = shape_of(x.shape(), channels_last);
    count_work(s);
    Tensor y = Tensor::empty(channels_last ? Shape{s.n, s.oh, s.ow, s.o} : Shape{s.n, s.o, s.oh, s.ow});
    run(*plan_for(s, false, channels_last), x, y);
    return y;
  }

  void accumulate(const Tensor& x, Tensor& acc, bool channels_last) const {
    ConvShape s = shape_of(x.shape(), channels_last);
    Shape out = channels_last ? Shape{s.n, s.oh, s.ow, s.o} : Shape{s.n, s.o, s.oh, s.ow};
    SDRT_CHECK(acc.shape() == out, "packed conv2d: accumulator ", shape_str(acc.shape()), " is not the output shape ",
               shape_str(out), " for input ", shape_str(x.shape()));
    SDRT_CHECK(acc.data() != x.data(), "packed conv2d: cannot accumulate into the input");
    count_work(s);
    run(*plan_for(s, true, channels_last), x, acc);
  }

  void count_work(const ConvShape& s) const {
    if (int8()) count_int8_macs(s.n * s.o * s.oh * s.ow * s.c * s.kh * s.kw);
    else count_conv_macs(s);
  }

  // y = conv(x) + bias, or y += conv(x) + bias with a plan made for accumulating.
  void run(const ConvPlan& plan, const Tensor& x, Tensor& y) const {
    KernelTimer timer(int8() ? OpKind::Int8 : OpKind::Conv);
    dnnl::stream& stream = cpu_stream();
    Scratchpad scratchpad(plan.scratchpad_bytes);
    const bool compute = !in_dry_run();  // a dry run takes the same buffers and executes nothing
    memory user_src = wrap_memory(plan.user_src, x.data()), user_dst = wrap_memory(plan.user_dst, y.data());
    memory src = user_src, dst = user_dst;
    Tensor src_buffer, dst_buffer;  // activations in the convolution's layout, when it differs
    const int64_t images = plan.user_src.dims()[0];
    std::vector<float> input_scales, inverse_scales;  // dynamic int8: per image
    if (dynamic())
      Int8Scales::measure(x.data(), images, x.numel() / std::max<int64_t>(images, 1), compute, input_scales,
                          inverse_scales);
    if (plan.to_src) {
      src_buffer = buffer_for(plan.src);
      src = wrap_memory(plan.src, src_buffer.data());
      std::unordered_map<int, memory> args{{DNNL_ARG_FROM, user_src}, {DNNL_ARG_TO, src}};
      if (dynamic())
        args.emplace(DNNL_ARG_ATTR_OUTPUT_SCALES, wrap_memory(memory::desc({images}, dt::f32, tag::x), inverse_scales.data()));
      scratchpad.add_to(args, plan.to_src_scratchpad);
      if (compute) plan.to_src->execute(stream, args);
    }
    if (plan.from_dst || dynamic()) {
      dst_buffer = buffer_for(plan.dst);
      dst = wrap_memory(plan.dst, dst_buffer.data());
    }
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, *plan.weights}, {DNNL_ARG_DST, dst}};
    if (const Tensor* b = primitive_bias())
      args.emplace(DNNL_ARG_BIAS, wrap_memory(memory::desc({b->numel()}, dt::f32, tag::x), b->data()));
    scratchpad.add_to(args, plan.conv_scratchpad);
    if (!compute) return;
    plan.conv.execute(stream, args);
    if (dynamic()) {
      stream.wait();
      const memory::dims& d = plan.dst.dims();
      dequantize_int32(reinterpret_cast<const int32_t*>(dst_buffer.data()), plan.int32_channels_last, y.data(),
                       plan.channels_last, d[0], d[1], d[2] * d[3],
                       {input_scales.data(), q.weight_scales.data(), bias.defined() ? bias.data() : nullptr,
                        plan.accumulate});
      return;
    }
    if (plan.from_dst) {
      std::unordered_map<int, memory> out_args{{DNNL_ARG_FROM, dst}, {DNNL_ARG_TO, user_dst}};
      scratchpad.add_to(out_args, plan.from_dst_scratchpad);
      plan.from_dst->execute(stream, out_args);
    }
    stream.wait();
  }
};

PackedConv2d::PackedConv2d(Tensor weight, Tensor bias, Conv2dParams params, Precision precision) {
  SDRT_CHECK(weight.rank() == 4, "packed conv2d: weight must be [O, C, kh, kw], got ", shape_str(weight.shape()));
  SDRT_CHECK(!bias.defined() || bias.numel() == weight.dim(0), "packed conv2d: bias ", shape_str(bias.shape()),
             " does not match weight ", shape_str(weight.shape()));
  SDRT_CHECK(precision != Precision::int8, "packed conv2d: int8 takes Int8Weights");
  require_precision_supported(precision);
  impl_ = std::make_unique<Impl>(std::move(weight), std::move(bias), params, precision);
  impl_->pack_for_nominal_input();
}

PackedConv2d::PackedConv2d(Int8Weights weight, Tensor bias, Conv2dParams params, float input_scale) {
  weight.validate("packed conv2d");
  SDRT_CHECK(weight.shape.size() == 4, "packed conv2d: int8 weight must be [O, C, kh, kw], got ",
             shape_str(weight.shape));
  SDRT_CHECK(!bias.defined() || bias.numel() == weight.shape[0], "packed conv2d: bias ", shape_str(bias.shape()),
             " does not match weight ", shape_str(weight.shape));
  SDRT_CHECK(std::isfinite(input_scale) && input_scale >= 0, "packed conv2d: input scale ", input_scale,
             " (must be finite and > 0, or 0 for dynamic)");
  require_precision_supported(Precision::int8);
  bool seven_bit = false;  // see kernels/int8.h
  weight = prepare_int8_weights(std::move(weight), int8_convolutions_halve_weights(), seven_bit);
  impl_ = std::make_unique<Impl>(std::move(weight), std::move(bias), params, input_scale);
  impl_->q.seven_bit_weights = seven_bit;
  impl_->pack_for_nominal_input();
}

PackedConv2d::~PackedConv2d() = default;

Tensor PackedConv2d::operator()(const Tensor& x) const { return impl_->forward(x, false); }
void PackedConv2d::accumulate(const Tensor& x, Tensor& acc) const { impl_->accumulate(x, acc, false); }
Tensor PackedConv2d::channels_last(const Tensor& x) const { return impl_->forward(x, true); }
void PackedConv2d::accumulate_channels_last(const Tensor& x, Tensor& acc) const { impl_->accumulate(x, acc, true); }

int64_t PackedConv2d::in_channels() const { return impl_->weight_shape[1]; }
int64_t PackedConv2d::out_channels() const { return impl_->weight_shape[0]; }
const Shape& PackedConv2d::weight_shape() const { return impl_->weight_shape; }
const Conv2dParams& PackedConv2d::params() const { return impl_->params; }
Precision PackedConv2d::precision() const { return impl_->precision; }
float PackedConv2d::input_scale() const { return impl_->q.input_scale; }

size_t PackedConv2d::weight_bytes() const { return impl_->plans.weight_bytes(); }
size_t PackedConv2d::cached_plans() const { return impl_->plans.size(); }

}  // namespace sdrt::kernels
