#include "test_util.h"

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/half.h"

namespace sdrt::testing {

std::string data_dir() { return SDRT_TEST_DATA_DIR; }
std::string tiny_model_dir() { return data_dir() + "/golden/tiny-sd15"; }
std::string case_path(const std::string& file) { return tiny_model_dir() + "/cases/" + file; }

std::string scratch_dir(const std::string& name) {
  auto dir = std::filesystem::path(SDRT_BINARY_DIR) / "test-scratch" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

Tensor rounded_to_bf16(const Tensor& t) {
  Tensor r = t.clone();
  for (int64_t i = 0; i < r.numel(); ++i) r[i] = bf16_to_float(float_to_bf16(r[i]));
  return r;
}

Diff compare(const Tensor& actual, const Tensor& expected) {
  SDRT_CHECK(actual.shape() == expected.shape(), "shape mismatch: got ", shape_str(actual.shape()), ", expected ",
             shape_str(expected.shape()));
  Diff d;
  for (int64_t i = 0; i < expected.numel(); ++i) {
    double a = actual[i], b = expected[i];
    double diff = std::isnan(a) ? INFINITY : std::fabs(a - b);
    d.max_abs = std::max(d.max_abs, diff);
    d.max_ref = std::max(d.max_ref, std::fabs(b));
  }
  return d;
}

}  // namespace sdrt::testing
