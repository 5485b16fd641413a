// Token-budget micro-batches change how a window is grouped, never what it computes: a run cut by
// tokens gives the weights of the run with fixed micro-batches over the same windows, and `verify`
// passes against the full batch.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "app/job.h"
#include "gradacc/errors.h"
#include "testing/test_util.h"
#include "train/run_plan.h"

namespace gradacc {
namespace {

JobConfig gpt_job(const std::string& tag) {
  JobConfig c = default_job();
  c.model = {ModelKind::kGpt, NormKind::kLayer, 1, 2, 32, 64};
  c.data = "text:/usr/share/common-licenses/GPL-3";
  c.optimizer.lr = 1e-3;
  c.train.batch().global_batch(32);
  c.train.data().steps(12);
  c.train.device().threads(2);
  c.train.logging().progress(false).log_path(testing::temp_path(tag + ".jsonl"));
  c.save_path = testing::temp_path(tag + ".safetensors");
  return c;
}

// Trains both jobs; the largest difference between their final weights.
double max_weight_difference(const JobConfig& a_job, const JobConfig& b_job) {
  std::ostringstream out;
  run_train_job(a_job, out);
  run_train_job(b_job, out);
  return testing::max_weight_difference(a_job.save_path, b_job.save_path);
}

TEST(TokenBudget, GivesTheWeightsOfFixedMicroBatchesOverTheSameWindows) {
  JobConfig fixed = gpt_job("fixed"), tokens = gpt_job("tokens");
  fixed.train.batch().micro_batch(8);
  tokens.train.batch().micro_batch_tokens(256);  // the same budget: 4 rows of the 64-token context
  const double worst = max_weight_difference(fixed, tokens);
  std::cout << "    max |Δw| token budget vs fixed micro-batches: " << worst << "\n";
  EXPECT_LT(worst, 1e-5);

  // Same windows (samples and real tokens per step); the token budget computes less padding.
  auto rows = [](const std::string& log) {
    std::vector<nlohmann::json> r;
    std::ifstream in(log);
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line);
      if (j.contains("step")) r.push_back(j);
    }
    return r;
  };
  const auto fa = rows(fixed.train.logging().log_path()), tb = rows(tokens.train.logging().log_path());
  ASSERT_EQ(fa.size(), 12u);
  ASSERT_EQ(tb.size(), 12u);
  double padding_fixed = 0, padding_tokens = 0;
  for (size_t i = 0; i < fa.size(); ++i) {
    EXPECT_EQ(fa[i]["samples"], tb[i]["samples"]);
    EXPECT_EQ(fa[i]["items"], tb[i]["items"]);
    padding_fixed += fa[i]["padding_fraction"].get<double>() / 12;
    padding_tokens += tb[i]["padding_fraction"].get<double>() / 12;
  }
  std::cout << "    padding fraction: fixed " << padding_fixed << ", token budget " << padding_tokens << "\n";
  EXPECT_LT(padding_tokens, padding_fixed);
  for (const auto& p :
       {fixed.save_path, tokens.save_path, fixed.train.logging().log_path(), tokens.train.logging().log_path()})
    std::filesystem::remove(p);
}

TEST(TokenBudget, VerifyAgainstTheFullBatchPasses) {
  JobConfig c = gpt_job("verify");
  c.train.batch().micro_batch_tokens(256);
  c.train.logging().log_path("");
  c.save_path = "";
  VerifyOptions o;
  o.steps = 3;
  const VerifyResult r = run_verify_job(c, o);
  EXPECT_TRUE(r.pass) << verify_text(r, o);
  EXPECT_LT(r.max_rel_loss_diff, 1e-5);
}

TEST(TokenBudget, PackedTokenBudgetGivesTheSameWeightsAndPassesVerify) {
  JobConfig fixed = gpt_job("fixed_p"), packed = gpt_job("packed");
  fixed.train.batch().micro_batch(8);
  packed.train.batch().micro_batch_tokens(256);
  packed.packing = true;
  const double worst = max_weight_difference(fixed, packed);
  std::cout << "    max |Δw| packed token budget vs fixed micro-batches: " << worst << "\n";
  EXPECT_LT(worst, 1e-5);
  packed.train.logging().log_path("");
  packed.save_path = "";
  VerifyOptions o;
  o.steps = 3;
  const VerifyResult r = run_verify_job(packed, o);
  EXPECT_TRUE(r.pass) << verify_text(r, o);
  for (const auto& p : {fixed.save_path, fixed.train.logging().log_path()}) std::filesystem::remove(p);
}

// With an accumulation schedule the windows are those of fixed micro-batches (micro_batch ×
// accumulation sequences, growing 2 → 4 → 6 here); a token budget only cuts each differently.
TEST(TokenBudget, AnAccumulationScheduleKeepsItsWindows) {
  JobConfig fixed = gpt_job("sched_fixed"), tokens = gpt_job("sched_tokens");
  for (JobConfig* c : {&fixed, &tokens})
    c->train.batch().global_batch(std::nullopt).micro_batch(8).accum_schedule("0:2,4:4,8:6");
  tokens.train.batch().micro_batch_tokens(256);
  const double worst = max_weight_difference(fixed, tokens);
  std::cout << "    max |Δw| token budget vs fixed micro-batches, accumulation 2 → 4 → 6: " << worst << "\n";
  EXPECT_LT(worst, 1e-5);
  std::vector<int64_t> samples_fixed, samples_tokens;
  for (auto [log, out] : {std::pair{fixed.train.logging().log_path(), &samples_fixed},
                          {tokens.train.logging().log_path(), &samples_tokens}}) {
    std::ifstream in(log);
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line);
      if (j.contains("step")) out->push_back(j["samples"].get<int64_t>());
    }
  }
  EXPECT_EQ(samples_fixed, samples_tokens);
  ASSERT_EQ(samples_tokens.size(), 12u);
  EXPECT_EQ(samples_tokens.front(), 16);
  EXPECT_EQ(samples_tokens.back(), 48);
  for (const auto& p :
       {fixed.save_path, tokens.save_path, fixed.train.logging().log_path(), tokens.train.logging().log_path()})
    std::filesystem::remove(p);
}

TEST(TokenBudget, OptionsThatFixTheMicroBatchAreRefused) {
  const DistEnv one;
  auto refused = [&](TrainOptions o, const std::string& fragment) {
    try {
      o.batch().micro_batch_tokens(256);
      o.data().steps(2);
      resolve_run(o, one, 100);
      ADD_FAILURE() << "accepted; expected: " << fragment;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  refused(TrainOptions().batch(BatchOptions().global_batch(32).micro_batch(8)), "drop micro_batch");
  refused(TrainOptions(), "needs global_batch");
  refused(TrainOptions().batch(BatchOptions().accum_schedule("0:2")),
          "with an accumulation schedule needs micro_batch");
  refused(TrainOptions().batch(BatchOptions().micro_batch(4).accum_auto(true)), "with accum auto");
  refused(TrainOptions().batch(BatchOptions().global_batch(32).normalization(Normalization::kNaiveMicroMean)),
          "per-item normalization");
  const RunPlan p = resolve_run(
      TrainOptions().batch(BatchOptions().global_batch(30).micro_batch_tokens(256)).data(DataOptions().steps(2)), one,
      100);
  EXPECT_EQ(p.batch.global_batch, 30);
  EXPECT_EQ(p.batch.accumulation_steps, 1);  // one share per rank, cut by the sampler
}

}  // namespace
}  // namespace gradacc
