// MNIST in memory: IDX parsing and validation, md5 checks, one tensor per split.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "vae_ddp/base/config.h"

namespace vae {

// Every dataset here has MNIST's shape: 28x28 gray images of 10 classes.
constexpr int64_t kImageSide = 28;
constexpr int64_t kImagePixels = kImageSide * kImageSide;  // 784
constexpr int64_t kClasses = 10;                           // digit labels (and Fashion-MNIST's)

enum class Split { kTrain, kTest };

struct Dataset {
  torch::Tensor images;  // [N, 784] float32 in [0,1], contiguous
  torch::Tensor labels;  // [N] int64 in 0..9
  int64_t size() const { return images.size(0); }
};

// Reads an IDX file (raw or gzip; zlib reads both) into a uint8 tensor whose shape comes
// from the header. Throws UsageError naming the file when it is missing, unreadable, has
// a magic other than 0x0000080<expected_rank>, or its size disagrees with the header.
torch::Tensor read_idx(const std::string& path, int expected_rank);
// The same for bytes already in memory (uncompressed); `path` names them in errors.
torch::Tensor parse_idx(const std::vector<uint8_t>& bytes, int expected_rank, const std::string& path);

// The canonical file name of a split's images or labels, e.g. "train-images-idx3-ubyte".
std::string mnist_file_name(Split split, bool labels);
// The names of the 10 classes of `dataset`: "0".."9" for MNIST, the garments for Fashion-MNIST.
std::vector<std::string> class_names(DatasetKind dataset);

// The md5 of the uncompressed canonical file of `dataset` (mnist | fashion-mnist).
std::string dataset_md5(DatasetKind dataset, Split split, bool labels);
// The mirrors that serve MNIST's files as <mirror><name>.gz, in the order to try them.
const std::vector<std::string>& mnist_mirrors();
// (Both from src/data/mnist_sources.txt, the one list launch/setup reads too.)

// Dynamic binarization (--binarize dynamic): each pixel becomes 1 with probability equal
// to its intensity. `binarize_batch` draws for all rows [rows, 784] from one generator
// (a global training batch: seed, epoch, step); `binarize_images` draws per image from
// (seed, its index), so a test image is binarized the same way whichever batch or rank
// evaluates it.
torch::Tensor binarize_batch(const torch::Tensor& images, int64_t seed, int64_t epoch, int64_t step);
// The uniforms binarize_batch compares with: [rows, pixels] float32 on the CPU.
torch::Tensor binarize_draws(int64_t rows, int64_t pixels, int64_t seed, int64_t epoch, int64_t step);
torch::Tensor binarize_images(const torch::Tensor& images, const torch::Tensor& indices, int64_t seed);

// Loads one split from `dir`: for each file, `<name>` or `<name>.gz`. With verify_md5,
// the uncompressed bytes must match the canonical MNIST md5. limit > 0 keeps the first
// `limit` images. Throws UsageError naming the directory or file on any problem.
Dataset load_mnist(const std::string& dir, Split split, bool verify_md5, int64_t limit = 0);
// The same for `dataset` (mnist | fashion-mnist: the same file names and format).
Dataset load_dataset(DatasetKind dataset, const std::string& dir, Split split, bool verify_md5, int64_t limit = 0);
// Where the dataset's files are read from: --data-dir, or when it is empty the dataset's
// usual place (data/mnist, which ./launch/setup fills; Debian's dataset-fashion-mnist).
std::string resolved_data_dir(const Config& c);
// The configured dataset from resolved_data_dir(c); --train-limit applies to the train split.
Dataset load_dataset(const Config& c, Split split);

}  // namespace vae
