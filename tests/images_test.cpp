#include "vae_ddp/viz/images.h"

#include <png.h>

#include <gtest/gtest.h>

#include "test_util.h"

namespace vae {
namespace {

// Decodes a PNG with libpng's simplified API into 8-bit gray.
struct Decoded {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;
};
Decoded DecodePng(const std::string& path) {
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  EXPECT_NE(png_image_begin_read_from_file(&img, path.c_str()), 0) << img.message;
  img.format = PNG_FORMAT_GRAY;
  Decoded d{static_cast<int>(img.width), static_cast<int>(img.height), {}};
  d.pixels.resize(PNG_IMAGE_SIZE(img));
  EXPECT_NE(png_image_finish_read(&img, nullptr, d.pixels.data(), 0, nullptr), 0) << img.message;
  return d;
}

TEST(ImagesTest, GridHasTorchvisionLayout) {
  // save_image(nrow=8, padding=2) of 64 28x28 images: 8 * (28 + 2) + 2 = 242 square.
  auto grid = make_grid(torch::ones({64, 28, 28}), /*cols=*/8);
  EXPECT_EQ(grid.sizes(), (std::vector<int64_t>{242, 242}));
  EXPECT_EQ(grid[0][0].item<int>(), 0);        // padding
  EXPECT_EQ(grid[2][2].item<int>(), 255);      // first pixel of the first image
  EXPECT_EQ(grid[30][30].item<int>(), 0);      // padding between images
  EXPECT_EQ(grid[239][239].item<int>(), 255);  // last pixel of the last image
}

TEST(ImagesTest, PartialLastRow) {
  auto grid = make_grid(torch::zeros({10, 28, 28}), /*cols=*/8);
  EXPECT_EQ(grid.sizes(), (std::vector<int64_t>{62, 242}));
}

TEST(ImagesTest, PngDecodesToTheGrid) {
  testing::TempDir dir;
  auto images = torch::rand({16, 28, 28});
  write_grid_png(dir / "g.png", images, /*cols=*/8);
  const Decoded d = DecodePng(dir / "g.png");
  EXPECT_EQ(d.width, 242);
  EXPECT_EQ(d.height, 62);
  auto expected = make_grid(images, 8);
  EXPECT_EQ(std::memcmp(d.pixels.data(), expected.data_ptr<uint8_t>(), d.pixels.size()), 0);
}

TEST(ImagesTest, UnwritablePathThrows) {
  EXPECT_THROW(write_png("/nonexistent/dir/x.png", torch::zeros({2, 2}, torch::kUInt8)), std::runtime_error);
}

}  // namespace
}  // namespace vae
