#include "gradacc/run/verify.h"

#include <gtest/gtest.h>

namespace gradacc {
namespace {

TrainConfig verify_job(NormKind norm) {
  TrainConfig c = default_job();
  c.model = {"cnn", norm};
  c.train_limit = 1024;
  c.batch = {128, 16, std::nullopt, std::nullopt};
  return c;
}

TEST(Verify, GroupNormAccumulationPasses) {
  VerifyOptions o;
  o.steps = 3;
  const VerifyResult r = run_verify(verify_job(NormKind::kGroup), o);
  EXPECT_TRUE(r.pass);
  EXPECT_EQ(r.full_loss.size(), 3u);
  EXPECT_EQ(r.full_plan.micro_batch, 128);
  EXPECT_EQ(r.accumulated_plan.accumulation_steps, 8);
  EXPECT_LT(r.max_rel_loss_diff, 1e-5);
  EXPECT_GT(r.max_weight_movement, 0.0);
}

TEST(Verify, BatchNormAccumulationFailsAndSaysWhy) {
  VerifyOptions o;
  o.steps = 3;
  const VerifyResult r = run_verify(verify_job(NormKind::kBatch), o);
  EXPECT_FALSE(r.pass);
  EXPECT_GT(r.max_rel_loss_diff, 1e-3);
  EXPECT_NE(r.explanation.find("BatchNorm"), std::string::npos);
  EXPECT_NE(verify_json(r, o).find("\"pass\":false"), std::string::npos);
}

}  // namespace
}  // namespace gradacc

namespace gradacc {
namespace {

// Text with padding: ours matches the full batch; the naive scheme visibly does not.
TEST(Verify, GptTokenNormalizationPassesAndTheNaiveSchemeStrays) {
  TrainConfig c = default_job();
  c.model.name = "gpt";
  c.model.layers = 2;
  c.model.heads = 2;
  c.model.dim = 32;
  c.model.context = 64;
  c.data = "text:/usr/share/common-licenses/GPL-3";
  c.batch = {32, 4, std::nullopt, std::nullopt};
  c.optimizer.lr = 1e-3;
  VerifyOptions o;
  o.steps = 3;
  const VerifyResult r = run_verify(c, o);
  EXPECT_TRUE(r.pass);
  ASSERT_TRUE(r.has_naive);
  std::cout << "    ours: max rel weight diff " << r.max_rel_weight_diff << "; naive: " << r.naive_max_rel_weight_diff << "\n";
  EXPECT_LT(r.max_rel_weight_diff, 1e-2);
  EXPECT_GT(r.naive_max_rel_weight_diff, 0.1);
}

}  // namespace
}  // namespace gradacc
