#include "models/transformer_2d.h"

#include <gtest/gtest.h>

#include "core/rng.h"
#include "models/component_files.h"
#include "test_util.h"

namespace sdrt {
namespace {

// The tiny UNet's first transformer: 32 channels, 8 heads of 4, cross-attention on 32.
Transformer2DModel tiny_transformer(int64_t feed_forward_slice_bytes) {
  auto weights = WeightSource::open(find_weights_file(testing::tiny_model_dir() + "/unet"));
  Transformer2DConfig cfg;
  cfg.in_channels = 32;
  cfg.heads = 8;
  cfg.head_dim = 4;
  cfg.cross_attention_dim = 32;
  cfg.feed_forward_slice_bytes = feed_forward_slice_bytes;
  return Transformer2DModel::load(weights.sub("down_blocks.0.attentions.0"), cfg);
}

TEST(Transformer2D, FeedForwardInSlicesOfRowsGivesTheWholeResult) {
  Tensor x = TorchCpuRng(5).randn({2, 32, 16, 16});
  Tensor context = TorchCpuRng(6).randn({2, 77, 32});
  Tensor whole = tiny_transformer(int64_t{1} << 30)(x, context);
  // GEGLU input rows are 2 x 4 x 32 floats = 1 KB: 3 KB slices are 3 rows, 512 rows in 171 slices,
  // the last one short; below one row each slice is one row.
  for (int64_t bytes : {3 << 10, 1}) {
    SCOPED_TRACE(bytes);
    EXPECT_REL_LE(tiny_transformer(bytes)(x, context), whole, 1e-6);
  }
}

}  // namespace
}  // namespace sdrt
