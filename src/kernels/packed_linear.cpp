#include "kernels/packed_linear.h"

#include <compare>
#include <optional>

#include "core/dry_run.h"
#include "core/error.h"
#include "kernels/conv_linear_shapes.h"
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

struct PlanKey {
  int64_t rows;
  bool accumulate;
  auto operator<=>(const PlanKey&) const = default;
};

struct LinearPlan {
  dnnl::matmul matmul;
  memory::desc user_src, src, dst, scratchpad;
  std::optional<dnnl::reorder> to_src;  // f32 -> bf16 input conversion, in bf16 only
  std::shared_ptr<const memory> weights;
};

}  // namespace

struct PackedLinear::Impl {
  int64_t in, out;
  Tensor bias;
  Precision precision;
  mutable PlanCache<PlanKey, LinearPlan> plans;

  // The weight [out, in] is the matmul's [in, out] operand stored transposed (format ba).
  Impl(Tensor weight, Tensor bias_, Precision precision_)
      : in(weight.dim(1)),
        out(weight.dim(0)),
        bias(std::move(bias_)),
        precision(precision_),
        plans(std::move(weight), memory::desc({in, out}, dt::f32, tag::ba), kMaxCachedPlans) {}

  LinearShape shape_of(const Shape& x_shape) const {
    return check_linear(x_shape, {out, in}, bias.defined() ? bias.numel() : -1);
  }

  dnnl::matmul::primitive_desc primitive_desc(int64_t rows, bool accumulate) const {
    dt compute_type = compute_data_type(precision);
    memory::desc src({rows, in}, compute_type, tag::ab), dst({rows, out}, dt::f32, tag::ab);
    memory::desc weights_any({in, out}, compute_type, tag::any);
    auto desc = bias.defined() ? dnnl::matmul::desc(src, weights_any, memory::desc({1, out}, dt::f32, tag::ab), dst)
                               : dnnl::matmul::desc(src, weights_any, dst);
    return dnnl::matmul::primitive_desc(desc, packed_kernel_attr(accumulate), cpu_engine());
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
      dnnl::reorder::primitive_desc r(cpu_engine(), plan->user_src, cpu_engine(), plan->src, packed_kernel_attr(false));
      SDRT_CHECK(r.scratchpad_desc().get_size() == 0, "packed linear: input conversion needs a scratchpad");
      plan->to_src = dnnl::reorder(r);
    }
    plan->weights = weights.in_layout(pd.weights_desc());
    return plan;
  }

  std::shared_ptr<const LinearPlan> plan_for(int64_t rows, bool accumulate) const {
    return plans.get(PlanKey{rows, accumulate},
                     [&](WeightLayouts& weights) { return make_plan(rows, accumulate, weights); });
  }

  void pack_for_nominal_input() { plans.pack(primitive_desc(kNominalRows, false).weights_desc()); }

  // y = x W^T + b, or y += x W^T + b with a plan made for accumulating.
  void run(const LinearPlan& plan, const Tensor& x, Tensor& y) const {
    dnnl::stream& stream = cpu_stream();
    Scratchpad scratchpad(plan.scratchpad.get_size());
    memory src = wrap_memory(plan.user_src, x.data());
    Tensor src_buffer;  // the input in the matmul's data type, when it differs
    if (plan.to_src) {
      src_buffer = buffer_for(plan.src);
      memory converted = wrap_memory(plan.src, src_buffer.data());
      if (!in_dry_run()) plan.to_src->execute(stream, src, converted);
      src = converted;
    }
    if (in_dry_run()) return;
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src},
                                         {DNNL_ARG_WEIGHTS, *plan.weights},
                                         {DNNL_ARG_DST, wrap_memory(plan.dst, y.data())}};
    if (bias.defined()) args.emplace(DNNL_ARG_BIAS, wrap_memory(memory::desc({1, out}, dt::f32, tag::ab), bias.data()));
    scratchpad.add_to(args, plan.scratchpad);
    plan.matmul.execute(stream, args);
    stream.wait();
  }
};

PackedLinear::PackedLinear(Tensor weight, Tensor bias, Precision precision) {
  SDRT_CHECK(weight.rank() == 2 && weight.numel() > 0, "packed linear: weight must be a non-empty [out, in], got ",
             shape_str(weight.shape()));
  SDRT_CHECK(!bias.defined() || bias.numel() == weight.dim(0), "packed linear: bias ", shape_str(bias.shape()),
             " does not match weight ", shape_str(weight.shape()));
  require_precision_supported(precision);
  impl_ = std::make_unique<Impl>(std::move(weight), std::move(bias), precision);
  impl_->pack_for_nominal_input();
}

PackedLinear::~PackedLinear() = default;

Tensor PackedLinear::operator()(const Tensor& x) const {
  LinearShape s = impl_->shape_of(x.shape());
  count_linear_macs(s);
  Tensor y = Tensor::empty(linear_output_shape(x.shape(), s.out));
  if (s.rows > 0) impl_->run(*impl_->plan_for(s.rows, false), x, y);
  return y;
}

void PackedLinear::accumulate(const Tensor& x, Tensor& acc) const {
  LinearShape s = impl_->shape_of(x.shape());
  SDRT_CHECK(acc.shape() == linear_output_shape(x.shape(), s.out), "packed linear: accumulator ",
             shape_str(acc.shape()), " is not the output shape for input ", shape_str(x.shape()));
  SDRT_CHECK(acc.data() != x.data(), "packed linear: cannot accumulate into the input");
  count_linear_macs(s);
  if (s.rows > 0) impl_->run(*impl_->plan_for(s.rows, true), x, acc);
}

int64_t PackedLinear::in_features() const { return impl_->in; }
int64_t PackedLinear::out_features() const { return impl_->out; }
Precision PackedLinear::precision() const { return impl_->precision; }

size_t PackedLinear::weight_bytes() const { return impl_->plans.weight_bytes(); }
size_t PackedLinear::cached_plans() const { return impl_->plans.size(); }

}  // namespace sdrt::kernels
