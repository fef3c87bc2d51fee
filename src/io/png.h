// PNG output (libpng). Text chunks carry the generation parameters in A1111's "parameters"
// convention, so the image remembers how it was made.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace sdrt {

struct Image8 {
  int width = 0, height = 0, channels = 3;
  std::vector<uint8_t> pixels;  // row-major, interleaved
};

// A [3, H, W] or [H, W, 3] float image in [0, 1] -> 8-bit, rounding half to even as numpy does.
Image8 to_image8_chw(const Tensor& chw);
Image8 to_image8_hwc(const Tensor& hwc);

void write_png(const std::string& path, const Image8& image, const std::map<std::string, std::string>& text = {});
Image8 read_png(const std::string& path);

}  // namespace sdrt
