#include "vae_ddp/data/mnist.h"

#include <filesystem>

#include <gtest/gtest.h>
#include <zlib.h>

#include "test_util.h"
#include "vae_ddp/base/digest.h"
#include "vae_ddp/base/errors.h"

namespace vae {
namespace {

using testing::TempDir;

class MnistTest : public ::testing::Test {
 protected:
  // IDX bytes: magic 0x0000080<rank>, big-endian dims, then `payload` bytes (default: exact).
  static std::vector<uint8_t> Idx(std::vector<uint32_t> dims, int64_t payload = -1, uint8_t fill = 7) {
    std::vector<uint8_t> b = {0, 0, 8, static_cast<uint8_t>(dims.size())};
    size_t n = 1;
    for (uint32_t d : dims) {
      for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
      n *= d;
    }
    const size_t count = payload < 0 ? n : static_cast<size_t>(payload);
    for (size_t i = 0; i < count; ++i) b.push_back(static_cast<uint8_t>((fill + i) % 10));
    return b;
  }
  // Writes a split of `images` images and `labels` labels under the canonical names.
  void WriteSplit(uint32_t images, uint32_t labels) {
    testing::write_bytes(dir_ / "t10k-images-idx3-ubyte", Idx({images, 28, 28}));
    testing::write_bytes(dir_ / "t10k-labels-idx1-ubyte", Idx({labels}));
  }
  std::string LoadError(bool verify_md5 = false) {
    try {
      load_mnist(dir_.path(), Split::kTest, verify_md5);
    } catch (const UsageError& e) {
      return e.what();
    }
    return "";
  }
  TempDir dir_;
};

TEST_F(MnistTest, ReadsShapeAndBytes) {
  testing::write_bytes(dir_ / "x", Idx({3, 2, 4}));
  auto t = read_idx(dir_ / "x", 3);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{3, 2, 4}));
  EXPECT_EQ(t.flatten()[0].item<int>(), 7);
  EXPECT_EQ(t.flatten()[5].item<int>(), (7 + 5) % 10);
}

TEST_F(MnistTest, LoadsSplitAsFloatRows) {
  WriteSplit(5, 5);
  Dataset d = load_mnist(dir_.path(), Split::kTest, /*verify_md5=*/false);
  EXPECT_EQ(d.images.sizes(), (std::vector<int64_t>{5, 784}));
  EXPECT_EQ(d.images.dtype(), torch::kFloat32);
  EXPECT_FLOAT_EQ(d.images[0][0].item<float>(), 7.0f / 255.0f);
  EXPECT_EQ(d.labels.sizes(), (std::vector<int64_t>{5}));
  EXPECT_EQ(d.labels[1].item<int64_t>(), 8);
}

TEST_F(MnistTest, LimitKeepsTheFirstImages) {
  WriteSplit(5, 5);
  Dataset d = load_mnist(dir_.path(), Split::kTest, false, /*limit=*/2);
  EXPECT_EQ(d.size(), 2);
}

TEST_F(MnistTest, ReadsGzip) {
  auto bytes = Idx({4});
  gzFile f = gzopen((dir_ / "l.gz").c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
  EXPECT_EQ(read_idx(dir_ / "l.gz", 1).sizes(), (std::vector<int64_t>{4}));
}

TEST_F(MnistTest, BadMagicIsNamed) {
  auto bytes = Idx({5});
  bytes[3] = 3;  // claims three dimensions
  testing::write_bytes(dir_ / "l", bytes);
  EXPECT_THROW(read_idx(dir_ / "l", 1), UsageError);
  try {
    read_idx(dir_ / "l", 1);
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("magic 0x00000803, expected 0x00000801"), std::string::npos) << e.what();
  }
}

TEST_F(MnistTest, TruncatedFileIsNamed) {
  testing::write_bytes(dir_ / "t10k-images-idx3-ubyte", Idx({5, 28, 28}, /*payload=*/784 * 5 - 1));
  testing::write_bytes(dir_ / "t10k-labels-idx1-ubyte", Idx({5}));
  const std::string err = LoadError();
  EXPECT_NE(err.find("t10k-images-idx3-ubyte: truncated"), std::string::npos) << err;
}

TEST_F(MnistTest, TruncatedHeaderIsNamed) {
  testing::write_bytes(dir_ / "x", {0, 0, 8, 3, 0, 0});
  EXPECT_THROW(read_idx(dir_ / "x", 3), UsageError);
}

TEST_F(MnistTest, TrailingBytesAreRejected) {
  testing::write_bytes(dir_ / "x", Idx({5}, /*payload=*/6));
  EXPECT_THROW(read_idx(dir_ / "x", 1), UsageError);
}

TEST_F(MnistTest, CountMismatchIsNamed) {
  WriteSplit(5, 4);
  EXPECT_NE(LoadError().find("has 5 images but t10k-labels-idx1-ubyte has 4 labels"), std::string::npos);
}

TEST_F(MnistTest, WrongImageSizeIsNamed) {
  testing::write_bytes(dir_ / "t10k-images-idx3-ubyte", Idx({2, 32, 32}));
  testing::write_bytes(dir_ / "t10k-labels-idx1-ubyte", Idx({2}));
  EXPECT_NE(LoadError().find("images are 32x32, expected 28x28"), std::string::npos);
}

TEST_F(MnistTest, MissingFileAndDirAreNamed) {
  EXPECT_NE(LoadError().find("missing t10k-images-idx3-ubyte"), std::string::npos);
  try {
    load_mnist(dir_ / "nope", Split::kTest, false);
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("no such directory"), std::string::npos);
  }
}

TEST_F(MnistTest, Md5MismatchIsNamed) {
  WriteSplit(5, 5);
  const std::string err = LoadError(/*verify_md5=*/true);
  EXPECT_NE(err.find("md5 mismatch: expected 2646ac647ad5339dbf082846283269ea"), std::string::npos) << err;
}

TEST_F(MnistTest, Md5OfKnownStrings) {
  EXPECT_EQ(md5_hex("", 0), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(md5_hex("abc", 3), "900150983cd24fb0d6963f7d28e17f72");
}

// Found by tests/fuzz/idx_fuzz: a valid header announcing zero items.
TEST(IdxParseTest, EmptyFileParsesToAnEmptyTensor) {
  const auto t = parse_idx({0, 0, 8, 1, 0, 0, 0, 0}, /*expected_rank=*/1, "empty");
  EXPECT_EQ(t.numel(), 0);
}

// Dimensions whose product overflows are rejected as truncated, not wrapped around.
TEST(IdxParseTest, HugeDimensionsAreTruncation) {
  const std::vector<uint8_t> bytes = {0,    0,    8,    3,    0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1,    2,    3};
  try {
    parse_idx(bytes, 3, "huge");
    FAIL() << "accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("huge: truncated"), std::string::npos) << e.what();
  }
}

TEST(BinarizeTest, PixelsAreBernoulliOfTheirIntensity) {
  const auto images = torch::full({400, kImagePixels}, 0.3f);
  const auto b = binarize_batch(images, /*seed=*/1, /*epoch=*/2, /*step=*/3);
  EXPECT_TRUE(torch::logical_or(b == 0, b == 1).all().item<bool>());
  EXPECT_NEAR(b.mean().item<double>(), 0.3, 0.005);  // 313,600 draws: sd 0.0008
  EXPECT_TRUE(torch::equal(b, binarize_batch(images, 1, 2, 3)));
  EXPECT_FALSE(torch::equal(b, binarize_batch(images, 1, 2, 4)));  // a new draw every step
  EXPECT_TRUE(torch::equal(binarize_batch(torch::zeros({2, 5}), 1, 1, 1), torch::zeros({2, 5})));
  EXPECT_TRUE(torch::equal(binarize_batch(torch::ones({2, 5}), 1, 1, 1), torch::ones({2, 5})));
}

TEST(BinarizeTest, TestImageIsBinarizedTheSameInAnyBatch) {
  const auto images = torch::rand({6, kImagePixels});
  const auto all = binarize_images(images, torch::arange(10, 16), /*seed=*/4);
  const auto two = binarize_images(images.slice(0, 3, 5), torch::arange(13, 15), 4);
  EXPECT_TRUE(torch::equal(all.slice(0, 3, 5), two));
}

// Debian's dataset-fashion-mnist (installed by ./launch/setup): --dataset fashion-mnist
// finds it by default and its md5s check out.
TEST(FashionMnistTest, LoadsFromTheDebianPackage) {
  Config c;
  c.dataset = DatasetKind::kFashionMnist;
  if (!std::filesystem::exists(resolved_data_dir(c))) {
    GTEST_SKIP() << resolved_data_dir(c) << " is missing: apt-get install dataset-fashion-mnist";
  }
  const Dataset test = load_dataset(c, Split::kTest);
  EXPECT_EQ(test.size(), 10000);
  EXPECT_EQ(test.labels.bincount().min().item<int64_t>(), 1000);  // 1000 of each class
  const Dataset mnist = load_mnist(VAE_DDP_DATA_DIR, Split::kTest, false);
  EXPECT_FALSE(torch::equal(test.images, mnist.images));
  // The MNIST md5 table does not pass Fashion-MNIST's files.
  EXPECT_THROW(load_dataset(DatasetKind::kMnist, resolved_data_dir(c), Split::kTest, /*verify_md5=*/true), UsageError);
}

}  // namespace
}  // namespace vae
