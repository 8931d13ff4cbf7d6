#include "vae_ddp/data/mnist.h"

#include <sys/stat.h>

#include <array>
#include <cstring>
#include <map>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <zlib.h>

#include "vae_ddp/base/digest.h"
#include "vae_ddp/base/errors.h"
#include "vae_ddp/base/rng.h"

namespace vae {

namespace {

// src/data/mnist_sources.txt, embedded by the build (cmake/mnist_sources.cmake): the md5s and mirrors
// that launch/lib/mnist.sh reads too.
constexpr const char* kSourcesText =
#include "mnist_sources.inc"
    ;

struct Sources {
  std::map<std::string, std::string> md5;  // "mnist train-images-idx3-ubyte" -> md5
  std::vector<std::string> mirrors;
};

const Sources& sources() {
  static const Sources parsed = [] {
    Sources s;
    std::istringstream in(kSourcesText);
    for (std::string line; std::getline(in, line);) {
      std::istringstream words(line.substr(0, line.find('#')));
      std::string kind, a, b, c;
      words >> kind >> a >> b >> c;
      if (kind == "md5") s.md5[a + " " + b] = c;
      if (kind == "mirror") s.mirrors.push_back(a);
    }
    return s;
  }();
  return parsed;
}

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The whole file, decompressed if it is gzip (zlib passes other files through as they are).
std::vector<uint8_t> read_all(const std::string& path) {
  if (!is_file(path)) throw UsageError(fmt::format("{}: no such file", path));
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) throw UsageError(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::vector<uint8_t> out;
  std::array<uint8_t, 1 << 16> chunk{};
  int n = 0;
  while ((n = gzread(f, chunk.data(), chunk.size())) > 0) out.insert(out.end(), chunk.data(), chunk.data() + n);
  int err = Z_OK;
  const std::string zmsg = n < 0 ? gzerror(f, &err) : "";
  gzclose(f);
  if (n < 0) throw UsageError(fmt::format("{}: truncated or corrupt gzip data ({})", path, zmsg));
  return out;
}

uint32_t big_endian_u32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void check_md5(const std::vector<uint8_t>& bytes, const std::string& expected, const std::string& path,
               DatasetKind dataset) {
  const std::string got = md5_hex(bytes.data(), bytes.size());
  if (got != expected) {
    throw UsageError(
        fmt::format("{}: md5 mismatch: expected {}, got {} (damaged or not the {} file; "
                    "delete it and re-run setup, or pass --verify-md5=false)",
                    path, expected, got, name_of(dataset)));
  }
}

// `<dir>/<name>` if present, else `<dir>/<name>.gz`; throws naming both when neither exists.
std::string where_to_get(DatasetKind dataset) {
  return dataset == DatasetKind::kFashionMnist ? "install Debian's dataset-fashion-mnist package, or pass --data-dir"
                                               : "run ./launch/train to fetch MNIST, or pass --download";
}

std::string locate(const std::string& dir, const std::string& name, DatasetKind dataset) {
  const std::string raw = dir + "/" + name;
  if (is_file(raw)) return raw;
  if (is_file(raw + ".gz")) return raw + ".gz";
  throw UsageError(fmt::format("--data-dir {}: missing {} (or {}.gz); {}", dir, name, name, where_to_get(dataset)));
}

torch::Tensor load_file(DatasetKind dataset, const std::string& dir, Split split, bool labels, bool verify_md5) {
  const std::string path = locate(dir, mnist_file_name(split, labels), dataset);
  const auto bytes = read_all(path);
  if (verify_md5) check_md5(bytes, dataset_md5(dataset, split, labels), path, dataset);
  return parse_idx(bytes, labels ? 1 : 3, path);
}

}  // namespace

torch::Tensor parse_idx(const std::vector<uint8_t>& bytes, int expected_rank, const std::string& path) {
  if (bytes.size() < 4) throw UsageError(fmt::format("{}: truncated IDX file ({} bytes)", path, bytes.size()));
  const uint32_t magic = big_endian_u32(bytes.data());
  const uint32_t expected_magic = 0x800u + static_cast<uint32_t>(expected_rank);
  if (magic != expected_magic) {
    throw UsageError(
        fmt::format("{}: not an IDX file of unsigned bytes with {} dimension(s): magic 0x{:08x}, expected 0x{:08x}",
                    path, expected_rank, magic, expected_magic));
  }
  const size_t header = 4 + 4 * static_cast<size_t>(expected_rank);
  if (bytes.size() < header) throw UsageError(fmt::format("{}: truncated IDX header", path));
  std::vector<int64_t> shape;
  size_t payload = 1;
  const size_t available = bytes.size() - header;
  for (int d = 0; d < expected_rank; ++d) {
    shape.push_back(big_endian_u32(bytes.data() + 4 + 4 * d));
    const auto dim = static_cast<size_t>(shape.back());
    // Checked: dimensions whose product exceeds the file cannot be right (and must not overflow).
    if (dim != 0 && payload > available / dim) {
      throw UsageError(
          fmt::format("{}: truncated: header dimensions promise more data than the file's {} bytes", path, available));
    }
    payload *= dim;
  }
  if (bytes.size() - header < payload) {
    throw UsageError(
        fmt::format("{}: truncated: header promises {} data bytes, file has {}", path, payload, bytes.size() - header));
  }
  if (bytes.size() - header > payload) {
    throw UsageError(
        fmt::format("{}: {} bytes after the data the header describes", path, bytes.size() - header - payload));
  }
  auto t = torch::empty(shape, torch::kUInt8);
  if (payload > 0) std::memcpy(t.data_ptr<uint8_t>(), bytes.data() + header, payload);  // empty: no data pointer
  return t;
}

torch::Tensor binarize_draws(int64_t rows, int64_t pixels, int64_t seed, int64_t epoch, int64_t step) {
  auto gen = make_generator(seed, Stream::kBinarizeTrain, epoch, step);
  return torch::rand({rows, pixels}, gen, torch::kFloat32);
}

torch::Tensor binarize_batch(const torch::Tensor& images, int64_t seed, int64_t epoch, int64_t step) {
  const auto u = binarize_draws(images.size(0), images.size(1), seed, epoch, step).to(images.device());
  return (u < images).to(torch::kFloat32);
}

torch::Tensor binarize_images(const torch::Tensor& images, const torch::Tensor& indices, int64_t seed) {
  const auto idx = indices.to(torch::kCPU);
  std::vector<torch::Tensor> u;
  for (int64_t i = 0; i < idx.size(0); ++i) {
    auto gen = make_generator(seed, Stream::kBinarizeEval, idx[i].item<int64_t>());
    u.push_back(torch::rand({images.size(1)}, gen, torch::kFloat32));
  }
  if (u.empty()) return images.clone();
  return (torch::stack(u).to(images.device()) < images).to(torch::kFloat32);
}

torch::Tensor read_idx(const std::string& path, int expected_rank) {
  return parse_idx(read_all(path), expected_rank, path);
}

std::string mnist_file_name(Split split, bool labels) {
  const char* prefix = split == Split::kTrain ? "train" : "t10k";
  return labels ? fmt::format("{}-labels-idx1-ubyte", prefix) : fmt::format("{}-images-idx3-ubyte", prefix);
}

std::vector<std::string> class_names(DatasetKind dataset) {
  if (dataset == DatasetKind::kFashionMnist) {
    return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
  }
  return {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
}

std::string dataset_md5(DatasetKind dataset, Split split, bool labels) {
  const std::string key = name_of(dataset) + " " + mnist_file_name(split, labels);
  const auto& md5 = sources().md5;
  const auto it = md5.find(key);
  if (it == md5.end()) throw std::logic_error("src/data/mnist_sources.txt has no md5 for " + key);
  return it->second;
}

const std::vector<std::string>& mnist_mirrors() { return sources().mirrors; }

Dataset load_mnist(const std::string& dir, Split split, bool verify_md5, int64_t limit) {
  return load_dataset(DatasetKind::kMnist, dir, split, verify_md5, limit);
}

std::string resolved_data_dir(const Config& c) {
  if (!c.data_dir.empty()) return c.data_dir;
  return c.dataset == DatasetKind::kFashionMnist ? "/usr/share/datasets/fashion-mnist" : "data/mnist";
}

Dataset load_dataset(const Config& c, Split split) {
  return load_dataset(c.dataset, resolved_data_dir(c), split, c.verify_md5, split == Split::kTrain ? c.train_limit : 0);
}

Dataset load_dataset(DatasetKind dataset, const std::string& dir, Split split, bool verify_md5, int64_t limit) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw UsageError(fmt::format("--data-dir {}: no such directory; {}", dir, where_to_get(dataset)));
  }
  auto images = load_file(dataset, dir, split, /*labels=*/false, verify_md5);  // [N, H, W] uint8
  auto labels = load_file(dataset, dir, split, /*labels=*/true, verify_md5);   // [N] uint8
  const std::string images_path = dir + "/" + mnist_file_name(split, false);
  if (images.size(1) != kImageSide || images.size(2) != kImageSide) {
    throw UsageError(fmt::format("{}: images are {}x{}, expected {}x{}", images_path, images.size(1), images.size(2),
                                 kImageSide, kImageSide));
  }
  if (images.size(0) != labels.size(0)) {
    throw UsageError(fmt::format("--data-dir {}: {} has {} images but {} has {} labels", dir,
                                 mnist_file_name(split, false), images.size(0), mnist_file_name(split, true),
                                 labels.size(0)));
  }
  if (labels.numel() > 0 && labels.max().item<int64_t>() > 9) {
    throw UsageError(fmt::format("{}: label above 9", dir + "/" + mnist_file_name(split, true)));
  }
  if (limit > 0 && limit < images.size(0)) {
    images = images.slice(/*dim=*/0, 0, limit);
    labels = labels.slice(/*dim=*/0, 0, limit);
  }
  // Converted once: [N, 784] float in [0,1]; batches are gathered rows of this tensor.
  return {images.reshape({-1, kImagePixels}).to(torch::kFloat32).div_(255.0).contiguous(), labels.to(torch::kInt64)};
}

}  // namespace vae
