// Helpers shared by every test binary: where the data is, and how to compare tensors.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "core/tensor.h"
#include "kernels/kernels.h"

namespace sdrt::testing {

// tests/data inside the repository.
std::string data_dir();
// tests/data/golden/tiny-sd15 and tests/data/golden/tiny-sd15/cases
std::string tiny_model_dir();
std::string case_path(const std::string& file);
// A fresh directory under the build tree for files a test writes.
std::string scratch_dir(const std::string& name);

struct Diff {
  double max_abs = 0;
  double max_ref = 0;  // max |expected|
  double rel() const { return max_ref > 0 ? max_abs / max_ref : max_abs; }
};
// Shapes must match; reports max|a-b| and max|b|.
Diff compare(const Tensor& actual, const Tensor& expected);

// A copy with every value rounded to bf16 (nearest even), as the bf16 kernels round their operands.
Tensor rounded_to_bf16(const Tensor& t);

}  // namespace sdrt::testing

// Skips the test, with the reason, where oneDNN has no kernels for `precision` on this CPU (or
// under SDRT_MAX_ISA): bf16 below AVX-512. The same test runs wherever the CPU has them.
#define SDRT_SKIP_UNLESS_PRECISION_SUPPORTED(precision)                                              \
  do {                                                                                               \
    std::string sdrt_why_ = ::sdrt::kernels::precision_unsupported_reason(precision);                \
    if (!sdrt_why_.empty()) GTEST_SKIP() << sdrt_why_;                                               \
  } while (0)

// rel = max|a-b| / max|expected|, the golden README's measure. Prints the achieved value so
// test logs record the tolerance each golden test reached.
#define EXPECT_REL_LE(actual, expected, tol)                                                              \
  do {                                                                                                    \
    auto sdrt_d_ = ::sdrt::testing::compare((actual), (expected));                                        \
    ::testing::Test::RecordProperty("rel", std::to_string(sdrt_d_.rel()));                               \
    std::printf("    [%s] rel %.3g (max abs %.3g)\n", #actual, sdrt_d_.rel(), sdrt_d_.max_abs);          \
    EXPECT_LE(sdrt_d_.rel(), (tol)) << "max abs " << sdrt_d_.max_abs << ", max |ref| " << sdrt_d_.max_ref; \
  } while (0)
