#include "kernels/packed_linear.h"

#include <cmath>
#include <compare>
#include <optional>

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

// Row counts per layer before the cache starts over. SD runs a handful (tokens x batch at each
// UNet level, the text length, the time embedding's batch); the cap only bounds a long-running
// process that sees many sizes.
constexpr size_t kMaxCachedPlans = 16;
// The weights are packed at construction with the primitive for this many rows.
constexpr int64_t kNominalRows = 64;

// Whether oneDNN's int8 matmuls halve the weights themselves without VNNI (its GEMM-based one,
// all there is on AVX2 in oneDNN 2.6, does not), probed once; every plan checks that its own agrees.
bool int8_matmuls_halve_weights() {
  static const bool halves = [] {
    memory::desc a({64, 64}, dt::s8, tag::ab), b({64, 64}, dt::s8, tag::any), c({64, 64}, dt::f32, tag::ab);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), cpu_engine());
    return onednn_halves_int8_weights(pd.weights_desc());
  }();
  return halves;
}

struct PlanKey {
  int64_t rows;
  bool accumulate;
  auto operator<=>(const PlanKey&) const = default;
};

struct LinearPlan {
  dnnl::matmul matmul;
  memory::desc user_src, src, dst, scratchpad;
  std::optional<dnnl::reorder> to_src;  // f32 -> bf16/int8 input conversion, absent in f32
  std::shared_ptr<const memory> weights;
  bool accumulate = false;
};

}  // namespace

struct PackedLinear::Impl {
  int64_t in, out;
  Tensor bias;
  Precision precision;
  mutable PlanCache<PlanKey, LinearPlan> plans;
  Int8Scales q;  // int8 only; dynamic scales are per row

  // The weight [out, in] is the matmul's [in, out] operand stored transposed (format ba).
  Impl(Tensor weight, Tensor bias_, Precision precision_)
      : in(weight.dim(1)),
        out(weight.dim(0)),
        bias(std::move(bias_)),
        precision(precision_),
        plans(WeightLayouts(std::move(weight), memory::desc({in, out}, dt::f32, tag::ba)), kMaxCachedPlans) {}

  Impl(Int8Weights weight, Tensor bias_, float input_scale_)
      : in(weight.shape[1]),
        out(weight.shape[0]),
        bias(std::move(bias_)),
        precision(Precision::int8),
        plans(WeightLayouts(weight.data, weight.data.get(), memory::desc({in, out}, dt::s8, tag::ba)),
              kMaxCachedPlans),
        q(std::move(weight.scales), input_scale_, bias) {}

  bool int8() const { return precision == Precision::int8; }
  bool dynamic() const { return int8() && q.dynamic(); }
  const Tensor* primitive_bias() const {
    if (int8()) return q.primitive_bias(bias);
    return bias.defined() ? &bias : nullptr;
  }

  LinearShape shape_of(const Shape& x_shape) const {
    return check_linear(x_shape, {out, in}, bias.defined() ? bias.numel() : -1);
  }

  dnnl::matmul::primitive_desc primitive_desc(int64_t rows, bool accumulate) const {
    dt compute_type = compute_data_type(precision);
    memory::desc src({rows, in}, compute_type, tag::ab), dst({rows, out}, dynamic() ? dt::s32 : dt::f32, tag::ab);
    memory::desc weights_any({in, out}, compute_type, tag::any);
    auto desc = primitive_bias() ? dnnl::matmul::desc(src, weights_any, memory::desc({1, out}, dt::f32, tag::ab), dst)
                                 : dnnl::matmul::desc(src, weights_any, dst);
    dnnl::primitive_attr attr = packed_kernel_attr(accumulate && !dynamic());
    if (int8()) q.add_output_scales(attr);
    return dnnl::matmul::primitive_desc(desc, attr, cpu_engine());
  }

  // f32 -> the matmul's input type; int8 quantises with 1/s_x, static or per row (runtime).
  dnnl::primitive_attr source_reorder_attr() const {
    return int8() ? q.source_reorder_attr() : packed_kernel_attr(false);
  }

  std::shared_ptr<const LinearPlan> make_plan(int64_t rows, bool accumulate, WeightLayouts& weights) const {
    count_plan_created();
    auto pd = primitive_desc(rows, accumulate);
    auto plan = std::make_shared<LinearPlan>();
    plan->matmul = dnnl::matmul(pd);
    plan->user_src = memory::desc({rows, in}, dt::f32, tag::ab);
    plan->src = pd.src_desc();
    plan->dst = pd.dst_desc();
    plan->scratchpad = pd.scratchpad_desc();
    if (plan->src != plan->user_src) {
      dnnl::reorder::primitive_desc r(cpu_engine(), plan->user_src, cpu_engine(), plan->src, source_reorder_attr());
      SDRT_CHECK(r.scratchpad_desc().get_size() == 0, "packed linear: input conversion needs a scratchpad");
      plan->to_src = dnnl::reorder(r);
    }
    if (int8()) check_int8_weight_preparation(pd.weights_desc(), q.seven_bit_weights, "packed linear");
    plan->weights = weights.in_layout(pd.weights_desc());
    plan->accumulate = accumulate;
    return plan;
  }

  std::shared_ptr<const LinearPlan> plan_for(int64_t rows, bool accumulate) const {
    return plans.get(PlanKey{rows, accumulate},
                     [&](WeightLayouts& weights) { return make_plan(rows, accumulate, weights); });
  }

  void pack_for_nominal_input() { plans.pack(primitive_desc(kNominalRows, false).weights_desc()); }

  // y = x W^T + b, or y += x W^T + b with a plan made for accumulating.
  void run(const LinearPlan& plan, const Tensor& x, Tensor& y) const {
    KernelTimer timer(int8() ? OpKind::Int8 : OpKind::Linear);
    dnnl::stream& stream = cpu_stream();
    Scratchpad scratchpad(plan.scratchpad.get_size());
    const int64_t rows = plan.user_src.dims()[0];
    const bool compute = !in_dry_run();
    std::vector<float> input_scales, inverse_scales;  // dynamic int8: per row
    if (dynamic()) Int8Scales::measure(x.data(), rows, in, compute, input_scales, inverse_scales);
    memory src = wrap_memory(plan.user_src, x.data());
    Tensor src_buffer;  // the input in the matmul's data type, when it differs
    if (plan.to_src) {
      src_buffer = buffer_for(plan.src);
      memory converted = wrap_memory(plan.src, src_buffer.data());
      std::unordered_map<int, memory> args{{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, converted}};
      if (dynamic())
        args.emplace(DNNL_ARG_ATTR_OUTPUT_SCALES, wrap_memory(memory::desc({rows}, dt::f32, tag::x), inverse_scales.data()));
      if (compute) plan.to_src->execute(stream, args);
      src = converted;
    }
    Tensor int32_buffer;  // dynamic int8: the accumulators
    if (dynamic()) int32_buffer = buffer_for(plan.dst);
    if (!compute) return;
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, src},
        {DNNL_ARG_WEIGHTS, *plan.weights},
        {DNNL_ARG_DST, wrap_memory(plan.dst, dynamic() ? int32_buffer.data() : y.data())}};
    if (const Tensor* b = primitive_bias())
      args.emplace(DNNL_ARG_BIAS, wrap_memory(memory::desc({1, out}, dt::f32, tag::ab), b->data()));
    scratchpad.add_to(args, plan.scratchpad);
    plan.matmul.execute(stream, args);
    stream.wait();
    if (dynamic())
      dequantize_int32(reinterpret_cast<const int32_t*>(int32_buffer.data()), true, y.data(), true, rows, out, 1,
                       {input_scales.data(), q.weight_scales.data(), bias.defined() ? bias.data() : nullptr,
                        plan.accumulate});
  }

  void count_work(const LinearShape& s) const {
    if (int8()) count_int8_macs(s.rows * s.in * s.out);
    else count_linear_macs(s);
  }
};

PackedLinear::PackedLinear(Tensor weight, Tensor bias, Precision precision) {
  SDRT_CHECK(weight.rank() == 2 && weight.numel() > 0, "packed linear: weight must be a non-empty [out, in], got ",
             shape_str(weight.shape()));
  SDRT_CHECK(!bias.defined() || bias.numel() == weight.dim(0), "packed linear: bias ", shape_str(bias.shape()),
             " does not match weight ", shape_str(weight.shape()));
  SDRT_CHECK(precision != Precision::int8, "packed linear: int8 takes Int8Weights");
  require_precision_supported(precision);
  impl_ = std::make_unique<Impl>(std::move(weight), std::move(bias), precision);
  impl_->pack_for_nominal_input();
}

PackedLinear::PackedLinear(Int8Weights weight, Tensor bias, float input_scale) {
  weight.validate("packed linear");
  SDRT_CHECK(weight.shape.size() == 2, "packed linear: int8 weight must be [out, in], got ", shape_str(weight.shape));
  SDRT_CHECK(!bias.defined() || bias.numel() == weight.shape[0], "packed linear: bias ", shape_str(bias.shape()),
             " does not match weight ", shape_str(weight.shape));
  SDRT_CHECK(std::isfinite(input_scale) && input_scale >= 0, "packed linear: input scale ", input_scale,
             " (must be finite and > 0, or 0 for dynamic)");
  require_precision_supported(Precision::int8);
  bool seven_bit = false;  // see kernels/int8.h
  weight = prepare_int8_weights(std::move(weight), int8_matmuls_halve_weights(), seven_bit);
  impl_ = std::make_unique<Impl>(std::move(weight), std::move(bias), input_scale);
  impl_->q.seven_bit_weights = seven_bit;
  impl_->pack_for_nominal_input();
}

PackedLinear::~PackedLinear() = default;

Tensor PackedLinear::operator()(const Tensor& x) const {
  LinearShape s = impl_->shape_of(x.shape());
  impl_->count_work(s);
  Tensor y = Tensor::empty(linear_output_shape(x.shape(), s.out));
  if (s.rows > 0) impl_->run(*impl_->plan_for(s.rows, false), x, y);
  return y;
}

void PackedLinear::accumulate(const Tensor& x, Tensor& acc) const {
  LinearShape s = impl_->shape_of(x.shape());
  SDRT_CHECK(acc.shape() == linear_output_shape(x.shape(), s.out), "packed linear: accumulator ",
             shape_str(acc.shape()), " is not the output shape for input ", shape_str(x.shape()));
  SDRT_CHECK(acc.data() != x.data(), "packed linear: cannot accumulate into the input");
  impl_->count_work(s);
  if (s.rows > 0) impl_->run(*impl_->plan_for(s.rows, true), x, acc);
}

int64_t PackedLinear::in_features() const { return impl_->in; }
int64_t PackedLinear::out_features() const { return impl_->out; }
Precision PackedLinear::precision() const { return impl_->precision; }
float PackedLinear::input_scale() const { return impl_->q.input_scale; }

size_t PackedLinear::weight_bytes() const { return impl_->plans.weight_bytes(); }
size_t PackedLinear::cached_plans() const { return impl_->plans.size(); }

}  // namespace sdrt::kernels
