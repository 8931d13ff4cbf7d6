// metrics.csv: one row per epoch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vae {

// The columns: epoch, train_loss, train_<recon>, train_kld, beta (the KL weight of the
// epoch's last step), test_loss, test_<recon>, test_kld, images_per_s, seconds; <recon> is
// the reconstruction term, bce or mse (--recon-loss). The *_bce fields hold either.
std::string metrics_header(const std::string& recon);

struct EpochMetrics {
  int64_t epoch = 0;
  double train_loss = 0, train_bce = 0, train_kld = 0, beta = 0;
  double test_loss = 0, test_bce = 0, test_kld = 0;
  double images_per_s = 0, seconds = 0;
};

class MetricsWriter {
 public:
  // Opens `path`, keeping the header and the rows of epochs <= keep_through (the epoch a
  // resumed run starts after); a fresh run passes 0. Throws std::runtime_error on I/O.
  MetricsWriter(std::string path, int64_t keep_through, const std::string& recon = "bce");
  void append(const EpochMetrics& m);  // written and flushed at once

 private:
  std::string path_;
};

// The rows of a metrics.csv written by MetricsWriter. Throws std::runtime_error naming
// the file when it is unreadable or a row is malformed.
std::vector<EpochMetrics> read_metrics(const std::string& path);

}  // namespace vae
