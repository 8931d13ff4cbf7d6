#include "vae_ddp/io/tensorboard.h"

#include <unistd.h>

#include <boost/crc.hpp>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <fmt/format.h>

namespace vae {

namespace {

// --- protobuf wire format: just what Event, Summary, Summary.Value and Summary.Image use ---
void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

enum Wire : uint32_t { kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5 };

void key(std::string& out, uint32_t field, Wire wire) { varint(out, (field << 3) | wire); }

void field_varint(std::string& out, uint32_t field, uint64_t v) {
  key(out, field, kVarint);
  varint(out, v);
}

void field_bytes(std::string& out, uint32_t field, const std::string& bytes) {
  key(out, field, kBytes);
  varint(out, bytes.size());
  out += bytes;
}

template <class T>
void field_fixed(std::string& out, uint32_t field, T value) {  // little-endian, as the wire format says
  key(out, field, sizeof(T) == 8 ? kFixed64 : kFixed32);
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "fixed fields are written in host order");
  out.append(bytes, sizeof(T));
}

// tensorflow.Event: wall_time = 1 (double), step = 2 (int64), file_version = 3, summary = 5.
std::string event(int64_t step, const std::string* file_version, const std::string* summary) {
  std::string e;
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  field_fixed(e, 1, now);
  field_varint(e, 2, static_cast<uint64_t>(step));
  if (file_version) field_bytes(e, 3, *file_version);
  if (summary) field_bytes(e, 5, *summary);
  return e;
}

// tensorflow.Summary with one Value (tag = 1, simple_value = 2 (float), image = 4).
std::string summary_of(const std::string& tag, const std::string* image, float simple_value) {
  std::string value;
  field_bytes(value, 1, tag);
  if (image) {
    field_bytes(value, 4, *image);
  } else {
    field_fixed(value, 2, simple_value);
  }
  std::string summary;
  field_bytes(summary, 1, value);
  return summary;
}

std::string le_bytes(uint64_t v, size_t n) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}

}  // namespace

uint32_t masked_crc32c(const std::string& data) {
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;  // CRC-32C (Castagnoli)
  crc.process_bytes(data.data(), data.size());
  const uint32_t c = crc.checksum();
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string tfrecord(const std::string& data) {
  const std::string length = le_bytes(data.size(), 8);
  return length + le_bytes(masked_crc32c(length), 4) + data + le_bytes(masked_crc32c(data), 4);
}

EventWriter::EventWriter(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
  path_ = fmt::format("{}/events.out.tfevents.{}.{}", dir, now.count(), host);
  // A second writer in the same second (a quick resume) must not overwrite the first.
  for (int k = 1; std::filesystem::exists(path_); ++k) {
    path_ = fmt::format("{}/events.out.tfevents.{}.{}.{}", dir, now.count(), host, k);
  }
  out_.open(path_, std::ios::binary);
  if (ec || !out_) throw std::runtime_error(fmt::format("{}: cannot create the TensorBoard event file", path_));
  const std::string version = "brain.Event:2";
  write_event(event(0, &version, nullptr));
  flush();
}

void EventWriter::write_event(const std::string& e) {
  out_ << tfrecord(e);
  if (!out_) throw std::runtime_error(fmt::format("{}: cannot write", path_));
}

void EventWriter::scalar(const std::string& tag, double value, int64_t step) {
  const std::string s = summary_of(tag, nullptr, static_cast<float>(value));
  write_event(event(step, nullptr, &s));
}

void EventWriter::image(const std::string& tag, const std::string& png, int64_t height, int64_t width, int64_t step,
                        int channels) {
  std::string img;  // Summary.Image: height = 1, width = 2, colorspace = 3, encoded_image_string = 4
  field_varint(img, 1, static_cast<uint64_t>(height));
  field_varint(img, 2, static_cast<uint64_t>(width));
  field_varint(img, 3, static_cast<uint64_t>(channels));
  field_bytes(img, 4, png);
  const std::string s = summary_of(tag, &img, 0);
  write_event(event(step, nullptr, &s));
  flush();
}

void EventWriter::flush() {
  out_.flush();
  if (!out_) throw std::runtime_error(fmt::format("{}: cannot write", path_));
}

}  // namespace vae
