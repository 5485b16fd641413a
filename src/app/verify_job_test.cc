// `gradacc verify` on gradacc's own jobs: GroupNorm accumulation passes, BatchNorm fails with the
// reason, and on padded text ours matches while the naive per-micro-batch mean strays.
#include <iostream>

#include <gtest/gtest.h>

#include "app/job.h"

namespace gradacc {
namespace {

JobConfig verify_job(NormKind norm) {
  JobConfig c = default_job();
  c.model = {ModelKind::kCnn, norm};
  c.train_limit = 1024;
  c.train.global_batch(128).micro_batch(16);
  return c;
}

TEST(Verify, GroupNormAccumulationPasses) {
  VerifyOptions o;
  o.steps = 3;
  const VerifyResult r = run_verify_job(verify_job(NormKind::kGroup), o);
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
  const VerifyResult r = run_verify_job(verify_job(NormKind::kBatch), o);
  EXPECT_FALSE(r.pass);
  EXPECT_GT(r.max_rel_loss_diff, 1e-3);
  EXPECT_NE(r.explanation.find("BatchNorm"), std::string::npos);
  EXPECT_NE(verify_json(r, o).find("\"pass\":false"), std::string::npos);
}

// Text with padding: ours matches the full batch; the naive scheme visibly does not.
TEST(Verify, GptTokenNormalizationPassesAndTheNaiveSchemeStrays) {
  JobConfig c = default_job();
  c.model = {ModelKind::kGpt, NormKind::kLayer, 2, 2, 32, 64};
  c.data = "text:/usr/share/common-licenses/GPL-3";
  c.train.global_batch(32).micro_batch(4);
  c.optimizer.lr = 1e-3;
  VerifyOptions o;
  o.steps = 3;
  const VerifyResult r = run_verify_job(c, o);
  EXPECT_TRUE(r.pass);
  ASSERT_TRUE(r.has_naive);
  std::cout << "    ours: max rel weight diff " << r.max_rel_weight_diff << "; naive: " << r.naive_max_rel_weight_diff
            << "\n";
  EXPECT_LT(r.max_rel_weight_diff, 1e-2);
  EXPECT_GT(r.naive_max_rel_weight_diff, 0.1);
}

}  // namespace
}  // namespace gradacc
