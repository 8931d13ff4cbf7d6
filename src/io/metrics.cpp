#include "vae_ddp/io/metrics.h"

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "vae_ddp/io/files.h"

namespace vae {

std::string metrics_header(const std::string& recon) {
  return fmt::format("epoch,train_loss,train_{0},train_kld,beta,test_loss,test_{0},test_kld,images_per_s,seconds",
                     recon);
}

MetricsWriter::MetricsWriter(std::string path, int64_t keep_through, const std::string& recon)
    : path_(std::move(path)) {
  // A resumed run keeps the rows it continues from and drops any written after them.
  std::string kept = metrics_header(recon) + "\n";
  std::ifstream in(path_);
  std::string line;
  bool header = true;
  while (keep_through > 0 && std::getline(in, line)) {
    if (header) {
      header = false;
      continue;
    }
    int64_t epoch = 0;
    if (std::istringstream(line) >> epoch && epoch <= keep_through) kept += line + "\n";
  }
  write_file_atomic(path_, kept);
}

void MetricsWriter::append(const EpochMetrics& m) {
  std::ofstream out(path_, std::ios::app);
  out << fmt::format("{},{:.6f},{:.6f},{:.6f},{:.6g},{:.6f},{:.6f},{:.6f},{:.1f},{:.3f}\n", m.epoch, m.train_loss,
                     m.train_bce, m.train_kld, m.beta, m.test_loss, m.test_bce, m.test_kld, m.images_per_s, m.seconds);
  out.flush();
  if (!out) throw std::runtime_error(fmt::format("{}: cannot append", path_));
}

std::vector<EpochMetrics> read_metrics(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot read", path));
  std::vector<EpochMetrics> rows;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    EpochMetrics m;
    char comma = 0;
    fields >> m.epoch >> comma >> m.train_loss >> comma >> m.train_bce >> comma >> m.train_kld >> comma >> m.beta >>
        comma >> m.test_loss >> comma >> m.test_bce >> comma >> m.test_kld >> comma >> m.images_per_s >> comma >>
        m.seconds;
    if (!fields) throw std::runtime_error(fmt::format("{}: malformed row '{}'", path, line));
    rows.push_back(m);
  }
  return rows;
}

}  // namespace vae
