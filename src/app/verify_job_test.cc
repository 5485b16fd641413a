// `gradacc verify` on gradacc's own jobs: GroupNorm accumulation passes, BatchNorm fails with the
// reason, on padded text ours matches while the naive per-micro-batch mean strays, and the
// contrastive job's window loss matches the full window while per-micro-batch InfoNCE does not.
#include <algorithm>
#include <iostream>

#include <gtest/gtest.h>

#include "app/job.h"

namespace gradacc {
namespace {

JobConfig verify_job(NormKind norm) {
  JobConfig c = default_job();
  c.model = {ModelKind::kCnn, norm};
  c.train_limit = 1024;
  c.train.batch().global_batch(128).micro_batch(16);
  return c;
}

// A budget that holds this process's static part, the job's window cache and about `examples`
// examples' activations, plus 16 MiB for what verify itself holds beside a run (the initial
// weights in fp64, the reference's results): measured by the planner first, as a suite run in one
// process (the CUDA-linked one) holds earlier tests' tensors too, and every one of them counts.
int64_t budget_for_examples(JobConfig c, int64_t examples) {
  c.train.memory().budget(int64_t{1} << 40);
  const MemoryPlan p = run_plan_fit_job(c);
  const int64_t peak =
      p.static_bytes +
      std::max(p.window_cache_bytes + std::max(p.activations.at(examples), p.window_loss_bytes), p.step_bytes);
  return static_cast<int64_t>(static_cast<double>(peak) / 0.98) + (int64_t{16} << 20);
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
  EXPECT_LT(r.grad_rel_l2, 1e-5);  // the first window's gradient
}

// Under a memory budget the planner's probe step runs the capture optimizer too, before the window:
// the gradient compared is still the window's (broken once, the probe's zeros gave 1.0).
TEST(Verify, TheFirstWindowsGradientUnderAMemoryBudgetIsTheWindows) {
  JobConfig c = verify_job(NormKind::kGroup);
  c.train.batch().micro_batch(std::nullopt);
  c.train.memory().budget(budget_for_examples(c, 40));  // micro-batches of fewer than 128
  VerifyOptions o;
  o.steps = 1;
  const VerifyResult r = run_verify_job(c, o);
  EXPECT_TRUE(r.pass);
  EXPECT_GT(r.accumulated_plan.accumulation_steps, 1);
  EXPECT_LT(r.grad_rel_l2, 1e-5);
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

// The same under a memory budget with dropout: the planner's micro-batch (uneven: fewer than 128) is
// what the reference slices by and what the capture runs take (broken once, by letting the capture
// runs plan again without the optimizer's state: 0.77).
TEST(Verify, ContrastiveUnderAMemoryBudgetWithDropoutMatchesTheFullWindow) {
  JobConfig c = verify_job(NormKind::kGroup);
  c.objective = "contrastive";
  c.model.dropout = 0.3;
  c.train_limit = 512;
  c.train.batch().global_batch(128).micro_batch(std::nullopt);
  c.train.memory().budget(budget_for_examples(c, 22));
  VerifyOptions o;
  o.steps = 2;
  const VerifyResult r = run_verify_job(c, o);
  EXPECT_TRUE(r.pass);
  EXPECT_GT(r.accumulated_plan.accumulation_steps, 1);
  EXPECT_LE(r.grad_rel_l2, 1e-6);
}

// Dropout with a per-example loss: the batch and its micro-batches draw other masks, so verify
// fails, and says that the masks, not the accumulation, are why.
TEST(Verify, DropoutFailsAndSaysWhy) {
  JobConfig c = verify_job(NormKind::kGroup);
  c.model = {ModelKind::kMlp, std::nullopt};
  c.model.dropout = 0.3;
  VerifyOptions o;
  o.steps = 2;
  const VerifyResult r = run_verify_job(c, o);
  EXPECT_FALSE(r.pass);
  EXPECT_NE(r.explanation.find("draws random numbers"), std::string::npos) << r.explanation;
}

// Text with padding: ours matches the full batch; the naive scheme visibly does not.
TEST(Verify, GptTokenNormalizationPassesAndTheNaiveSchemeStrays) {
  JobConfig c = default_job();
  c.model = {ModelKind::kGpt, NormKind::kLayer, 2, 2, 32, 64};
  c.data = "text:/usr/share/common-licenses/GPL-3";
  c.train.batch().global_batch(32).micro_batch(4);
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

// The contrastive job (InfoNCE over the window, gradient caching), window 64 = 8 × 8, with and
// without dropout in the encoder: the accumulated window's gradient is the full window's within
// 1e-6 (relative L2, fp32), while each micro-batch's own InfoNCE (7 negatives instead of 63)
// trains another objective.
TEST(Verify, ContrastiveWindowLossMatchesTheFullWindowAndTheNaiveLossDoesNot) {
  for (const double dropout : {0.0, 0.3}) {
    JobConfig c = verify_job(NormKind::kGroup);
    c.objective = "contrastive";
    c.model.dropout = dropout;
    c.train_limit = 256;
    c.train.batch().global_batch(64).micro_batch(8);
    VerifyOptions o;
    o.steps = 2;
    const VerifyResult r = run_verify_job(c, o);
    std::cout << "    dropout " << dropout << ": gradient relative L2 " << r.grad_rel_l2 << ", naive "
              << r.naive_grad_rel_l2 << "; naive loss " << r.naive_max_rel_loss_diff << " from the full window's\n";
    EXPECT_TRUE(r.pass);
    EXPECT_EQ(r.accumulated_plan.accumulation_steps, 8);
    EXPECT_LE(r.grad_rel_l2, 1e-6);
    EXPECT_LT(r.max_rel_loss_diff, 1e-6);
    ASSERT_TRUE(r.has_naive);
    EXPECT_GE(r.naive_grad_rel_l2, 1e-2);
    EXPECT_GE(r.naive_max_rel_loss_diff, 1e-2);
  }
}

}  // namespace
}  // namespace gradacc
