#include "vae_ddp/io/npy.h"

#include <fmt/format.h>

#include "vae_ddp/io/files.h"

namespace vae {

namespace {

const char* descr(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return "<f4";
    case torch::kFloat64: return "<f8";
    case torch::kInt64: return "<i8";
    default: throw std::invalid_argument("write_npy: only float32, float64 and int64 tensors");
  }
}

}  // namespace

void write_npy(const std::string& path, const torch::Tensor& t) {
  const auto c = t.detach().to(torch::kCPU).contiguous();
  std::string shape;
  for (int64_t d : c.sizes()) shape += std::to_string(d) + ", ";
  if (c.dim() > 1) shape.resize(shape.size() - 1);  // (3, 4) but (3,) for one dimension
  std::string header =
      fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}", descr(c.scalar_type()), shape);
  // magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple
  // of 64 and ended by a newline.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string bytes = "\x93NUMPY";
  bytes += '\x01';
  bytes += '\x00';
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>((header.size() >> 8) & 0xff);
  bytes += header;
  bytes.append(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel()) * c.element_size());
  write_file_atomic(path, bytes);
}

}  // namespace vae
