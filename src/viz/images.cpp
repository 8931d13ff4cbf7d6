#include "vae_ddp/viz/images.h"

#include "vae_ddp/io/files.h"

#include <png.h>

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

namespace vae {

torch::Tensor make_grid(const torch::Tensor& images, int64_t cols, int64_t padding) {
  const int64_t n = images.size(0), h = images.size(1), w = images.size(2);
  cols = std::max<int64_t>(1, std::min(cols, n));
  const int64_t rows = (n + cols - 1) / cols;
  auto pixels = (images.detach().to(torch::kCPU, torch::kFloat32).clamp(0, 1) * 255).round().to(torch::kUInt8);
  auto canvas = torch::zeros({rows * (h + padding) + padding, cols * (w + padding) + padding}, torch::kUInt8);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t top = (i / cols) * (h + padding) + padding;
    const int64_t left = (i % cols) * (w + padding) + padding;
    canvas.slice(0, top, top + h).slice(1, left, left + w).copy_(pixels[i]);
  }
  return canvas;
}

std::string encode_png(const torch::Tensor& gray) {
  auto img = gray.to(torch::kCPU, torch::kUInt8).contiguous();
  const auto height = static_cast<png_uint_32>(img.size(0));
  const auto width = static_cast<png_uint_32>(img.size(1));
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png != nullptr ? png_create_info_struct(png) : nullptr;
  if (png == nullptr || info == nullptr || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw std::runtime_error("libpng failed to encode an image");
  }
  png_set_write_fn(
      png, &out,
      [](png_structp p, png_bytep data, png_size_t n) {
        static_cast<std::string*>(png_get_io_ptr(p))->append(reinterpret_cast<const char*>(data), n);
      },
      [](png_structp) {});
  png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const uint8_t* data = img.data_ptr<uint8_t>();
  for (png_uint_32 y = 0; y < height; ++y) png_write_row(png, data + static_cast<size_t>(y) * width);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

void write_png(const std::string& path, const torch::Tensor& gray) { write_file_atomic(path, encode_png(gray)); }

void write_grid_png(const std::string& path, const torch::Tensor& images, int64_t cols) {
  write_png(path, make_grid(images, cols));
}

}  // namespace vae
