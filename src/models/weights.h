// Binds checkpoint tensors to modules by their diffusers/transformers names. Each lookup checks
// the shape, so a checkpoint of another architecture fails at load with the tensor named and
// expected vs got, instead of producing garbage later. Names no module asked for are reported.
//
// The tensors come from a safetensors file, or from a synthetic source that makes each
// tensor on request: that is how `sdrt init-random` learns the exact names and shapes of a
// full-size model from the same code that loads real checkpoints.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"
#include "kernels/int8.h"
#include "kernels/kernels.h"

namespace sdrt {

// Which convolution and linear layers bound from a source run in int8 (kernels/int8.h), by their
// full dotted names (e.g. "down_blocks.0.resnets.0.conv1").
class Int8Policy {
 public:
  // Quantise every layer at load, dynamic activation scales (`--precision int8` on a float
  // model), except the layers matching a `keep_float` pattern (std::regex_search).
  static Int8Policy dynamic(std::vector<std::string> keep_float);
  // The file decides (an int8 model folder, docs/quantization.md): layers stored as I8 run int8,
  // with their stored static activation scales or, if not `static_activations`, dynamic ones;
  // the others stay float.
  static Int8Policy from_file(bool static_activations);
  // The UNet layers that stay float by default: the time embedding MLP and every time_emb_proj
  // (a small share of the work that sets every block's bias), conv_in and conv_out.
  static const std::vector<std::string>& default_keep_float();

  bool file_decides() const { return file_decides_; }
  bool static_activations() const { return static_activations_; }
  // Whether a float layer named `layer` is quantised at load.
  bool quantizes(const std::string& layer) const;
  const std::vector<std::string>& keep_float() const { return keep_float_; }

 private:
  bool file_decides_ = false, static_activations_ = false;
  std::vector<std::string> keep_float_;
  std::vector<std::regex> patterns_;
};

// Makes the tensor `name` of shape `shape` for a synthetic source.
using TensorFactory = std::function<Tensor(const std::string& name, const Shape& shape)>;

class WeightSource {
 public:
  explicit WeightSource(std::shared_ptr<const SafeTensors> file, std::string prefix = "");
  static WeightSource open(const std::string& path);
  // Every lookup of a canonical name succeeds with a tensor from `factory`; the made tensors
  // are kept and returned by made().
  static WeightSource synthetic(TensorFactory factory, std::string label = "<synthetic>");

  // A view of the names under `prefix + "."`; lookups share the used-name record.
  WeightSource sub(const std::string& prefix) const;
  // The same source, with the precision that the convolution and linear layers bound from it
  // (and its sub()s) compute in. The tensors themselves are always returned as float32.
  WeightSource with_compute_precision(kernels::Precision p) const;
  kernels::Precision compute_precision() const { return precision_; }
  // The same source, with the layers `policy` names bound in int8.
  WeightSource with_int8_policy(std::shared_ptr<const Int8Policy> policy) const;
  const Int8Policy* int8_policy() const { return int8_policy_.get(); }

  // `name` with this view's prefix: the name the file stores it under.
  std::string full_name(const std::string& name) const { return full(name); }
  // Whether the file stores `name` as int8 (dtype I8).
  bool holds_int8(const std::string& name) const;
  // An int8 layer's weights as stored (docs/quantization.md): `weight_name` (I8, shape `expected`
  // or the same values as a 1x1 conv) and `<layer>.weight_scale` (F32 [O]), checked. The values
  // are a view of the mapped file.
  kernels::Int8Weights get_int8(const std::string& layer, const std::string& weight_name, const Shape& expected) const;
  // `<layer>.input_scale` (F32, one value), checked finite and > 0.
  float get_input_scale(const std::string& layer) const;

  const std::string& path() const;
  bool contains(const std::string& name) const;
  // Loads `name` as float32 and checks its shape.
  Tensor get(const std::string& name, const Shape& expected) const;
  // The same, but a missing tensor gives an undefined Tensor.
  Tensor get_optional(const std::string& name, const Shape& expected) const;
  // Some tensors have two historical names (e.g. VAE attention query/to_q) or layouts
  // (Linear [C, C] vs 1x1 conv [C, C, 1, 1]); the first name present is used, reshaped to
  // `expected`. A synthetic source makes the first (canonical) name.
  Tensor get_any(const std::vector<std::string>& names, const Shape& expected) const;

  // Tensors in the file that no module bound.
  std::vector<std::string> unused() const;
  // For a synthetic source: every tensor made, by full name.
  const std::map<std::string, Tensor>& made() const;

 private:
  struct Synthetic {
    TensorFactory factory;
    std::string label;
    std::map<std::string, Tensor> made;
  };
  WeightSource() = default;
  std::string full(const std::string& name) const { return prefix_.empty() ? name : prefix_ + "." + name; }
  Tensor make(const std::string& key, const Shape& expected) const;

  std::shared_ptr<const SafeTensors> file_;
  std::shared_ptr<Synthetic> synthetic_;
  std::string prefix_;
  kernels::Precision precision_ = kernels::Precision::f32;
  std::shared_ptr<const Int8Policy> int8_policy_;
  std::shared_ptr<std::set<std::string>> used_ = std::make_shared<std::set<std::string>>();
};

}  // namespace sdrt
