#include "io/png.h"

#include <png.h>

#include <cmath>
#include <cstdio>
#include <memory>

#include "core/error.h"

namespace sdrt {

namespace {

uint8_t quantize(float v) {
  float clamped = std::fmin(std::fmax(v, 0.0f), 1.0f);
  return static_cast<uint8_t>(std::nearbyint(clamped * 255.0f));  // default rounding mode: half to even
}

struct FileCloser {
  void operator()(FILE* f) const {
    if (f) std::fclose(f);
  }
};

}  // namespace

Image8 to_image8_chw(const Tensor& chw) {
  SDRT_CHECK(chw.rank() == 3 && (chw.dim(0) == 3 || chw.dim(0) == 1), "expected a [3, H, W] image, got ",
             shape_str(chw.shape()));
  Image8 img{static_cast<int>(chw.dim(2)), static_cast<int>(chw.dim(1)), static_cast<int>(chw.dim(0)), {}};
  int64_t plane = chw.dim(1) * chw.dim(2);
  img.pixels.resize(static_cast<size_t>(plane * img.channels));
  for (int64_t p = 0; p < plane; ++p)
    for (int c = 0; c < img.channels; ++c) img.pixels[p * img.channels + c] = quantize(chw[c * plane + p]);
  return img;
}

Image8 to_image8_hwc(const Tensor& hwc) {
  SDRT_CHECK(hwc.rank() == 3 && hwc.dim(2) == 3, "expected an [H, W, 3] image, got ", shape_str(hwc.shape()));
  Image8 img{static_cast<int>(hwc.dim(1)), static_cast<int>(hwc.dim(0)), 3, {}};
  img.pixels.resize(static_cast<size_t>(hwc.numel()));
  for (int64_t i = 0; i < hwc.numel(); ++i) img.pixels[i] = quantize(hwc[i]);
  return img;
}

void write_png(const std::string& path, const Image8& image, const std::map<std::string, std::string>& text) {
  SDRT_CHECK(image.channels == 3 || image.channels == 1, "write_png: unsupported channel count ", image.channels);
  std::string tmp = path + ".tmp";
  std::unique_ptr<FILE, FileCloser> f(std::fopen(tmp.c_str(), "wb"));
  if (!f) fail(path, ": cannot open for writing");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) fail(path, ": libpng initialisation failed");
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    fail(path, ": libpng failed while writing");
  }
  png_init_io(png, f.get());
  png_set_IHDR(png, info, image.width, image.height, 8, image.channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  std::vector<png_text> chunks;
  for (const auto& [key, value] : text) {
    png_text t{};
    t.compression = PNG_TEXT_COMPRESSION_NONE;
    t.key = const_cast<char*>(key.c_str());
    t.text = const_cast<char*>(value.c_str());
    t.text_length = value.size();
    chunks.push_back(t);
  }
  if (!chunks.empty()) png_set_text(png, info, chunks.data(), static_cast<int>(chunks.size()));
  png_write_info(png, info);
  size_t stride = static_cast<size_t>(image.width) * image.channels;
  for (int y = 0; y < image.height; ++y) png_write_row(png, image.pixels.data() + y * stride);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  if (std::fflush(f.get()) != 0) fail(path, ": write failed (disk full?)");
  f.reset();
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail(path, ": cannot rename temporary file");
}

Image8 read_png(const std::string& path) {
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&img, path.c_str())) fail(path, ": cannot read PNG: ", img.message);
  img.format = PNG_FORMAT_RGB;
  Image8 out{static_cast<int>(img.width), static_cast<int>(img.height), 3, {}};
  out.pixels.resize(PNG_IMAGE_SIZE(img));
  if (!png_image_finish_read(&img, nullptr, out.pixels.data(), 0, nullptr)) {
    png_image_free(&img);
    fail(path, ": cannot decode PNG: ", img.message);
  }
  return out;
}

}  // namespace sdrt
