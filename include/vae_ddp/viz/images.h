// Image grids as PNG (libpng), laid out like torchvision's make_grid/save_image.
#pragma once

#include <string>

#include <torch/torch.h>

namespace vae {

// images: [N, H, W] float in [0,1]. Returns a uint8 [rows*(H+pad)+pad, cols*(W+pad)+pad]
// canvas, black padding, `cols` images per row, rows = ceil(N / cols).
torch::Tensor make_grid(const torch::Tensor& images, int64_t cols, int64_t padding = 2);

// A uint8 [H, W] tensor as the bytes of an 8-bit grayscale PNG.
std::string encode_png(const torch::Tensor& gray);

// Writes a uint8 [H, W] tensor as an 8-bit grayscale PNG, atomically (temp + rename).
// Throws std::runtime_error naming the path on failure.
void write_png(const std::string& path, const torch::Tensor& gray);

// make_grid + write_png.
void write_grid_png(const std::string& path, const torch::Tensor& images, int64_t cols);

}  // namespace vae
