#include "vae_ddp/train/kl_schedule.h"

#include <gtest/gtest.h>

namespace vae {
namespace {

class KLScheduleTest : public ::testing::Test {
 protected:
  KLSchedule Make(const std::string& kind, double beta = 2.0) {
    c_.kl_schedule = parse_choice<KLScheduleKind>(kind, "--kl-schedule");
    c_.beta = beta;
    c_.epochs = 8;
    c_.kl_warmup_epochs = 4;
    c_.kl_cycles = 2;
    c_.kl_ramp = 0.5;
    return KLSchedule(c_, /*steps_per_epoch=*/10);
  }
  Config c_;
};

TEST_F(KLScheduleTest, ConstantIsBeta) {
  auto s = Make("constant");
  EXPECT_DOUBLE_EQ(s.at(0), 2.0);
  EXPECT_DOUBLE_EQ(s.at(79), 2.0);
}

TEST_F(KLScheduleTest, LinearRampsOverWarmupEpochs) {
  auto s = Make("linear");
  EXPECT_DOUBLE_EQ(s.at(0), 0.0);
  EXPECT_DOUBLE_EQ(s.at(10), 0.5);   // 1 of 4 warm-up epochs: 2 * 1/4
  EXPECT_DOUBLE_EQ(s.at(25), 1.25);  // 2.5 epochs
  EXPECT_DOUBLE_EQ(s.at(40), 2.0);
  EXPECT_DOUBLE_EQ(s.at(79), 2.0);
}

TEST_F(KLScheduleTest, LinearWithoutWarmupIsConstant) {
  c_.kl_warmup_epochs = 0;
  c_.kl_schedule = KLScheduleKind::kLinear;
  EXPECT_DOUBLE_EQ(KLSchedule(c_, 10).at(0), c_.beta);
}

TEST_F(KLScheduleTest, CyclicalRepeatsRamps) {
  // 80 steps, 2 cycles of 40; ramp over the first 20 steps of each, then flat at beta.
  auto s = Make("cyclical");
  EXPECT_DOUBLE_EQ(s.at(0), 0.0);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_DOUBLE_EQ(s.at(20), 2.0);
  EXPECT_DOUBLE_EQ(s.at(39), 2.0);
  EXPECT_DOUBLE_EQ(s.at(40), 0.0);
  EXPECT_DOUBLE_EQ(s.at(45), 0.5);
  EXPECT_DOUBLE_EQ(s.at(79), 2.0);
}

}  // namespace
}  // namespace vae
