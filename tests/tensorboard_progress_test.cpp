// TensorBoard record framing and the progress bar's text.
#include <gtest/gtest.h>

#include "test_util.h"
#include "vae_ddp/io/progress.h"
#include "vae_ddp/io/tensorboard.h"

namespace vae {
namespace {

TEST(TensorBoardTest, MaskedCrc32cOfTheCheckString) {
  // CRC-32C("123456789") = 0xE3069283 (the catalogue's check value), masked by hand here.
  const uint32_t c = 0xE3069283u;
  EXPECT_EQ(masked_crc32c("123456789"), ((c >> 15) | (c << 17)) + 0xa282ead8u);
  EXPECT_NE(masked_crc32c("123456780"), masked_crc32c("123456789"));
}

TEST(TensorBoardTest, RecordFraming) {
  const std::string rec = tfrecord("abc");
  ASSERT_EQ(rec.size(), 8u + 4 + 3 + 4);
  EXPECT_EQ(rec.substr(0, 8), std::string("\x03\0\0\0\0\0\0\0", 8));  // little-endian uint64 length
  EXPECT_EQ(rec.substr(12, 3), "abc");
  uint32_t data_crc = 0;
  for (int i = 3; i >= 0; --i) data_crc = (data_crc << 8) | static_cast<uint8_t>(rec[15 + static_cast<size_t>(i)]);
  EXPECT_EQ(data_crc, masked_crc32c("abc"));
}

TEST(TensorBoardTest, WriterStartsWithTheFileVersion) {
  testing::TempDir dir;
  std::string path;
  {
    EventWriter w(dir / "tb");
    w.scalar("a", 1.5, 3);
    path = w.path();
  }
  const std::string bytes = testing::read_text(path);
  EXPECT_NE(bytes.find("brain.Event:2"), std::string::npos);
  EXPECT_NE(path.find("/tb/events.out.tfevents."), std::string::npos);
  EventWriter second(dir / "tb");  // same second: a new file, the first is kept
  EXPECT_NE(second.path(), path);
}

TEST(ProgressTest, RendersBarRateLossAndEta) {
  EXPECT_EQ(render_progress(3, 10, 30000, 60000, 2.0, 104.214, 20),
            "epoch 3/10 [##########----------]  50%  30000/60000  15000 img/s  loss 104.21  ETA 0:02");
  EXPECT_EQ(render_progress(1, 1, 0, 100, 0.0, 0, 4), "epoch 1/1 [----]   0%  0/100  0 img/s  loss 0.00  ETA ?");
  EXPECT_NE(render_progress(1, 1, 1, 7200, 1.0, 1, 4).find("ETA 1:59:59"), std::string::npos);
}

}  // namespace
}  // namespace vae
