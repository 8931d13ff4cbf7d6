// The pictures: their numbers against closed forms, and the files they write.
#include <gtest/gtest.h>

#include "test_util.h"
#include "vae_ddp/base/errors.h"
#include "vae_ddp/io/metrics.h"
#include "vae_ddp/viz/pictures.h"
#include "vae_ddp/viz/plots.h"

namespace vae {
namespace {

// Width and height from a PNG's IHDR chunk (bytes 16..23, big-endian).
std::pair<uint32_t, uint32_t> PngSize(const std::string& path) {
  const std::string b = testing::read_text(path);
  EXPECT_GE(b.size(), 24u);
  EXPECT_EQ(b.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << path;
  auto be32 = [&](size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
    return v;
  };
  return {be32(16), be32(20)};
}

TEST(PicturesTest, ManifoldGridIsTheNormalQuantiles) {
  const auto g = manifold_grid(20);  // [400, 2]
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{400, 2}));
  // Phi^-1(0.025) = -1.959964: the first column's z1, the bottom row's z2.
  EXPECT_NEAR(g[0][0].item<double>(), -1.959964, 1e-5);
  EXPECT_NEAR(g[0][1].item<double>(), 1.959964, 1e-5);  // top-left: largest z2
  EXPECT_NEAR(g[399][1].item<double>(), -1.959964, 1e-5);
  EXPECT_NEAR(g[19][0].item<double>(), 1.959964, 1e-5);  // end of the first row: largest z1
  EXPECT_NEAR(g[1][0].item<double>(), -1.439531, 1e-5);  // Phi^-1(0.075)
}

TEST(PicturesTest, LatentMapOfAWideLatentIsItsPrincipalComponents) {
  // A model whose posterior means are known: an encoder made linear by hand is too much
  // plumbing, so compare against an independent PCA (eigenvectors of the covariance).
  torch::manual_seed(2);
  VAE model(std::vector<int64_t>{16}, 5);
  const Dataset data = testing::SyntheticData(200);
  const auto p = project_latent_means(model, data);
  ASSERT_EQ(p.points.sizes(), (std::vector<int64_t>{200, 2}));
  torch::NoGradGuard no_grad;
  model->eval();
  auto mu = model->encode(data.images).first.to(torch::kFloat64);
  auto c = mu - mu.mean(0, true);
  auto [evals, evecs] = torch::linalg_eigh(torch::matmul(c.t(), c));  // ascending
  for (int k = 0; k < 2; ++k) {
    auto expected = torch::matmul(c, evecs.select(1, 4 - k));
    auto got = p.points.select(1, k);
    const double sign = (expected * got).sum().item<double>() > 0 ? 1.0 : -1.0;  // an eigenvector's sign is free
    EXPECT_TRUE(torch::allclose(got * sign, expected, 1e-5, 1e-6)) << "component " << k;
  }
  EXPECT_NE(p.xlabel.find("PC1"), std::string::npos);
  VAE two(std::vector<int64_t>{16}, 2);
  const auto q = project_latent_means(two, data);
  EXPECT_TRUE(torch::allclose(q.points, two->encode(data.images).first.to(torch::kFloat64)));  // the means themselves
}

TEST(PicturesTest, NiceTicksCoverTheRange) {
  EXPECT_EQ(nice_ticks(0, 10), (std::vector<double>{0, 2, 4, 6, 8, 10}));
  const auto t = nice_ticks(93.2, 181.7);
  EXPECT_LE(t.front(), 93.2);
  EXPECT_GE(t.back(), 181.7);
  EXPECT_DOUBLE_EQ(t[1] - t[0], 20);
}

TEST(PicturesTest, FilesHaveTheExpectedSizes) {
  testing::TempDir dir;
  VAE model(std::vector<int64_t>{16}, 2);
  const Dataset data = testing::SyntheticData(100);
  write_manifold(model, dir / "m.png", 20);
  EXPECT_EQ(PngSize(dir / "m.png"), (std::pair<uint32_t, uint32_t>{20 * 30 + 2, 20 * 30 + 2}));
  write_interpolations(model, data, dir / "i.png", 8, 10);
  EXPECT_EQ(PngSize(dir / "i.png"), (std::pair<uint32_t, uint32_t>{12 * 30 + 2, 8 * 30 + 2}));
  if (plots_available()) {
    write_latent_map(model, data, class_names(DatasetKind::kMnist), dir / "l.png");
    EXPECT_EQ(PngSize(dir / "l.png"), (std::pair<uint32_t, uint32_t>{720, 640}));
  } else {
    EXPECT_THROW(write_latent_map(model, data, class_names(DatasetKind::kMnist), dir / "l.png"), UsageError);
  }
  VAE wide(std::vector<int64_t>{16}, 4);
  EXPECT_THROW(write_manifold(wide, dir / "w.png"), UsageError);
}

TEST(PicturesTest, LossCurvesReadMetricsCsv) {
  testing::TempDir dir;
  {
    MetricsWriter w(dir / "metrics.csv", 0);
    w.append({1, 180.5, 170.25, 10.25, 0.5, 150, 140, 10, 1000, 2});
    w.append({2, 120, 100, 20, 1, 118, 99, 19, 1100, 1.9});
  }
  const auto rows = read_metrics(dir / "metrics.csv");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].epoch, 2);
  EXPECT_DOUBLE_EQ(rows[0].train_bce, 170.25);
  EXPECT_DOUBLE_EQ(rows[0].beta, 0.5);
  if (!plots_available()) GTEST_SKIP() << "built without cairo (VAE_WITH_PLOTS)";
  write_loss_curves(dir / "metrics.csv", dir / "curves.png");
  EXPECT_EQ(PngSize(dir / "curves.png"), (std::pair<uint32_t, uint32_t>{4 * 520, 400}));
}

TEST(PicturesTest, MissingMetricsIsAnError) {
  testing::TempDir dir;
  EXPECT_THROW(read_metrics(dir / "missing.csv"), std::runtime_error);
}

}  // namespace
}  // namespace vae
