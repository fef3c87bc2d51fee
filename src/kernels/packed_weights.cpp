#include "kernels/packed_weights.h"

#include <algorithm>

#include "core/error.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {

Precision precision_from_name(const std::string& name) {
  if (name == "fp32" || name == "f32") return Precision::f32;
  if (name == "bf16") return Precision::bf16;
  if (name == "int8") return Precision::int8;
  fail("unknown precision '", name, "' (expected fp32, bf16 or int8)");
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::bf16: return "bf16";
    case Precision::int8: return "int8";
    default: return "fp32";
  }
}

namespace {

// Whether oneDNN can make a matmul with `type` inputs here: the same capability check its
// convolutions and inner products make.
bool onednn_has_matmul(dnnl::memory::data_type type) {
  using dnnl::memory;
  const memory::desc a({16, 16}, type, memory::format_tag::ab);
  const memory::desc c({16, 16}, memory::data_type::f32, memory::format_tag::ab);
  try {
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, a, c), cpu_engine());
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

bool onednn_has_bf16() {
  static const bool has = onednn_has_matmul(dnnl::memory::data_type::bf16);
  return has;
}

}  // namespace

std::string precision_unsupported_reason(Precision p) {
  if (p == Precision::int8) {
    static const bool has_int8 = onednn_has_matmul(dnnl::memory::data_type::s8);
    if (has_int8) return {};
    return "precision int8: oneDNN " + onednn_version() + " has no int8 matmul at " + onednn_isa_name() +
           " here: use --precision fp32";
  }
  if (p != Precision::bf16 || onednn_has_bf16()) return {};
  return "precision bf16 needs a CPU with AVX-512 (oneDNN's bf16 kernels start at avx512_core) and oneDNN runs at " +
         onednn_isa_name() + " here: use --precision fp32";
}

bool onednn_int8_has_vnni() {
  static const bool has = [] {
    const std::string isa = onednn_isa_name();
    return isa.find("vnni") != std::string::npos || isa.find("bf16") != std::string::npos ||
           isa.find("amx") != std::string::npos;
  }();
  return has;
}

bool onednn_halves_int8_weights(const dnnl::memory::desc& weights) {
  return (weights.data.extra.flags & dnnl_memory_extra_flag_scale_adjust) != 0 && weights.data.extra.scale_adjust != 1.0f;
}

void check_int8_weight_preparation(const dnnl::memory::desc& weights, bool seven_bit, const char* kernel) {
  if (onednn_int8_has_vnni()) return;
  const bool halved_by_onednn = onednn_halves_int8_weights(weights);
  SDRT_CHECK(halved_by_onednn != seven_bit, kernel, ": oneDNN ", onednn_version(), " at ", onednn_isa_name(),
             halved_by_onednn ? " halves int8 weights that sdrt already made 7-bit"
                              : " would multiply 8-bit weights with saturating vpmaddubsw",
             " for this shape; please report it");
}

void require_precision_supported(Precision p) {
  std::string reason = precision_unsupported_reason(p);
  if (!reason.empty()) fail(reason);
}

dnnl::memory::data_type compute_data_type(Precision p) {
  switch (p) {
    case Precision::bf16: return dnnl::memory::data_type::bf16;
    case Precision::int8: return dnnl::memory::data_type::s8;
    default: return dnnl::memory::data_type::f32;
  }
}

dnnl::memory wrap_memory(const dnnl::memory::desc& desc, const void* data) {
  // oneDNN takes a mutable handle; sources are only read.
  return dnnl::memory(desc, cpu_engine(), const_cast<void*>(data));
}

WeightLayouts::WeightLayouts(Tensor unpacked, const dnnl::memory::desc& unpacked_desc) {
  SDRT_CHECK(unpacked.defined() && static_cast<size_t>(unpacked.numel()) * sizeof(float) == unpacked_desc.get_size(),
             "packed weights: tensor ", shape_str(unpacked.shape()), " does not fill its layout of ",
             unpacked_desc.get_size(), " bytes");
  const float* data = unpacked.data();
  auto view = std::make_shared<dnnl::memory>(wrap_memory(unpacked_desc, data));
  layouts_.push_back({std::move(view), std::make_shared<const Tensor>(std::move(unpacked))});
}

WeightLayouts::WeightLayouts(std::shared_ptr<const void> owner, const void* data,
                             const dnnl::memory::desc& unpacked_desc) {
  SDRT_CHECK(owner && data, "packed weights: no data");
  auto view = std::make_shared<dnnl::memory>(wrap_memory(unpacked_desc, data));
  layouts_.push_back({std::move(view), std::move(owner)});
}

std::shared_ptr<const dnnl::memory> WeightLayouts::in_layout(const dnnl::memory::desc& desc) {
  for (const Layout& l : layouts_)
    if (l.memory->get_desc() == desc) return l.memory;
  SDRT_CHECK(!layouts_.empty(), "packed weights: no layout left to reorder from");
  auto packed = std::make_shared<dnnl::memory>(desc, cpu_engine());
  dnnl::memory& source = *layouts_.front().memory;
  dnnl::reorder(source, *packed).execute(cpu_stream(), source, *packed);
  cpu_stream().wait();
  layouts_.push_back({packed, nullptr});
  drop_unused_except(packed.get());
  return packed;
}

void WeightLayouts::drop_unused_except(const dnnl::memory* keep) {
  // use_count() == 1: only this object refers to the layout. The count cannot rise concurrently:
  // new references are handed out by in_layout(), which the owner serialises.
  std::erase_if(layouts_, [&](const Layout& l) { return l.memory.get() != keep && l.memory.use_count() == 1; });
}

size_t WeightLayouts::bytes() const {
  size_t total = 0;
  for (const Layout& l : layouts_) total += l.memory->get_desc().get_size();
  return total;
}

Int8Scales::Int8Scales(std::vector<float> weight_scales_, float input_scale_, const Tensor& bias)
    : weight_scales(std::move(weight_scales_)), input_scale(input_scale_) {
  if (dynamic()) return;
  output_scales.resize(weight_scales.size());
  for (size_t o = 0; o < weight_scales.size(); ++o) output_scales[o] = input_scale * weight_scales[o];
  if (bias.defined()) {
    scaled_bias = Tensor::empty(bias.shape());
    for (int64_t o = 0; o < bias.numel(); ++o) scaled_bias.data()[o] = bias.data()[o] / output_scales[o];
  }
}

dnnl::primitive_attr Int8Scales::source_reorder_attr() const {
  dnnl::primitive_attr attr = packed_kernel_attr(false);
  if (dynamic()) attr.set_output_scales(1 << 0, {DNNL_RUNTIME_F32_VAL});
  else attr.set_output_scales(0, {1.0f / input_scale});
  return attr;
}

void Int8Scales::add_output_scales(dnnl::primitive_attr& attr) const {
  if (!dynamic()) attr.set_output_scales(1 << 1, output_scales);
}

void Int8Scales::measure(const float* x, int64_t chunks, int64_t len, bool measure, std::vector<float>& scales,
                         std::vector<float>& inverse) {
  scales.assign(chunks, 1.0f);
  if (measure) {
    absmax_per_chunk(x, chunks, len, scales.data());
    for (float& v : scales) v = int8_dynamic_scale(v);
  }
  inverse.resize(chunks);
  for (int64_t i = 0; i < chunks; ++i) inverse[i] = 1.0f / scales[i];
}

Int8Weights prepare_int8_weights(Int8Weights weights, bool halves_itself, bool& seven_bit) {
  seven_bit = !onednn_int8_has_vnni() && !halves_itself;
  return seven_bit ? seven_bit_weights(weights) : weights;
}

dnnl::primitive_attr packed_kernel_attr(bool accumulate) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
  return attr;
}

Scratchpad::Scratchpad(size_t bytes) {
  if (bytes > 0) buffer_ = Tensor::empty({static_cast<int64_t>((bytes + sizeof(float) - 1) / sizeof(float))});
}

void Scratchpad::add_to(std::unordered_map<int, dnnl::memory>& args, const dnnl::memory::desc& desc) const {
  if (desc.get_size() == 0) return;
  SDRT_CHECK(buffer_.defined() && desc.get_size() <= static_cast<size_t>(buffer_.numel()) * sizeof(float),
             "scratchpad of ", buffer_.numel() * sizeof(float), " bytes is too small for ", desc.get_size());
  args.emplace(DNNL_ARG_SCRATCHPAD, wrap_memory(desc, buffer_.data()));
}

size_t max_scratchpad_bytes(std::initializer_list<dnnl::memory::desc> descs) {
  size_t bytes = 0;
  for (const auto& d : descs) bytes = std::max(bytes, d.get_size());
  return bytes;
}

Tensor buffer_for(const dnnl::memory::desc& desc) {
  return Tensor::empty({static_cast<int64_t>((desc.get_size() + sizeof(float) - 1) / sizeof(float))});
}

}  // namespace sdrt::kernels
