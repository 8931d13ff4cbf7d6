// TensorBoard event files (<out-dir>/tb/events.out.tfevents.*): scalars and images, so
// `tensorboard --logdir runs` and the TensorBoard importers of W&B and SwanLab show a
// run. The format is TFRecord framing (length, masked CRC32C of the length, data,
// masked CRC32C of the data) around tensorflow.Event protobuf messages, encoded here
// field by field (the handful of fields written below).
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

namespace vae {

class EventWriter {
 public:
  // Creates `dir` and a new events.out.tfevents.<unix time>.<host> file in it, starting
  // with the file_version event. Throws std::runtime_error naming the file on failure.
  explicit EventWriter(const std::string& dir);

  void scalar(const std::string& tag, double value, int64_t step);
  // `png`: the bytes of a PNG of height x width pixels with `channels` (1 = grayscale).
  void image(const std::string& tag, const std::string& png, int64_t height, int64_t width, int64_t step,
             int channels = 1);
  // Pushes what was written to the file (the writer flushes after every image, too).
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& event);

  std::string path_;
  std::ofstream out_;
};

// CRC32C (Castagnoli) of `data`, masked as TFRecord does: ((c >> 15) | (c << 17)) + 0xa282ead8.
uint32_t masked_crc32c(const std::string& data);
// One TFRecord: the framing around `data`.
std::string tfrecord(const std::string& data);

}  // namespace vae
