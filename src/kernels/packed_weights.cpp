#include "kernels/packed_weights.h"

#include <algorithm>

#include "core/error.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {

Precision precision_from_name(const std::string& name) {
  if (name == "fp32" || name == "f32") return Precision::f32;
  if (name == "bf16") return Precision::bf16;
  fail("unknown precision '", name, "' (expected fp32 or bf16)");
}

const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

namespace {

// Whether oneDNN can make a bf16 matmul here: the same capability check its convolutions and
// inner products make.
bool onednn_has_bf16() {
  static const bool has = [] {
    using dnnl::memory;
    const memory::desc a({16, 16}, memory::data_type::bf16, memory::format_tag::ab);
    const memory::desc c({16, 16}, memory::data_type::f32, memory::format_tag::ab);
    try {
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, a, c), cpu_engine());
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return has;
}

}  // namespace

std::string precision_unsupported_reason(Precision p) {
  if (p != Precision::bf16 || onednn_has_bf16()) return {};
  return "precision bf16 needs a CPU with AVX-512 (oneDNN's bf16 kernels start at avx512_core) and oneDNN runs at " +
         onednn_isa_name() + " here: use --precision fp32";
}

void require_precision_supported(Precision p) {
  std::string reason = precision_unsupported_reason(p);
  if (!reason.empty()) fail(reason);
}

dnnl::memory::data_type compute_data_type(Precision p) {
  return p == Precision::bf16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
}

dnnl::memory wrap_memory(const dnnl::memory::desc& desc, const void* data) {
  // oneDNN takes a mutable handle; sources are only read.
  return dnnl::memory(desc, cpu_engine(), const_cast<void*>(data));
}

WeightLayouts::WeightLayouts(Tensor unpacked, const dnnl::memory::desc& unpacked_desc) {
  SDRT_CHECK(unpacked.defined() && static_cast<size_t>(unpacked.numel()) * sizeof(float) == unpacked_desc.get_size(),
             "packed weights: tensor ", shape_str(unpacked.shape()), " does not fill its layout of ",
             unpacked_desc.get_size(), " bytes");
  auto view = std::make_shared<dnnl::memory>(wrap_memory(unpacked_desc, unpacked.data()));
  layouts_.push_back({std::move(view), std::move(unpacked)});
}

std::shared_ptr<const dnnl::memory> WeightLayouts::in_layout(const dnnl::memory::desc& desc) {
  for (const Layout& l : layouts_)
    if (l.memory->get_desc() == desc) return l.memory;
  SDRT_CHECK(!layouts_.empty(), "packed weights: no layout left to reorder from");
  auto packed = std::make_shared<dnnl::memory>(desc, cpu_engine());
  dnnl::memory& source = *layouts_.front().memory;
  dnnl::reorder(source, *packed).execute(cpu_stream(), source, *packed);
  cpu_stream().wait();
  layouts_.push_back({packed, Tensor()});
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
