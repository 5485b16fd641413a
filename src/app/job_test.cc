// gradacc's own jobs end to end: a train job logs every optimizer step, learns, evaluates and
// saves; the BatchNorm warning; the defaults a user meets first.
#include "app/job.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "builtin/models.h"
#include "gradacc/safetensors.h"
#include "testing/test_util.h"

namespace gradacc {
namespace {

using testing::temp_path;

JobConfig small_job() {
  JobConfig c = default_job();
  c.model = {ModelKind::kMlp, NormKind::kNone};
  c.train_limit = 2000;  // windows of 256: 7 full + one of 208
  c.train.batch().global_batch(256).micro_batch(32);
  c.train.data().epochs(2);
  c.train.logging().log_path(temp_path("log.jsonl")).progress(false);
  c.save_path = temp_path("w.safetensors");
  return c;
}

TEST(TrainJob, RunsLogsEveryOptimizerStepAndLearns) {
  const JobConfig c = small_job();
  std::ostringstream out;
  const JobSummary s = run_train_job(c, out);
  EXPECT_EQ(s.result.steps, 16);
  EXPECT_TRUE(s.evaluated);
  EXPECT_GT(s.test_accuracy, 0.6);  // 10 classes: chance is 0.1

  std::ifstream log(c.train.logging().log_path());
  std::string line;
  std::vector<nlohmann::json> steps;
  while (std::getline(log, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("step")) steps.push_back(j);
  }
  ASSERT_EQ(steps.size(), 16u);
  for (const char* key : {"step", "epoch", "loss", "lr", "grad_norm", "samples", "items", "micro_batches", "seconds",
                          "samples_per_s", "peak_bytes"}) {
    EXPECT_TRUE(steps[0].contains(key)) << key;
  }
  EXPECT_EQ(steps[7]["samples"], 208);  // the short window, rescaled, not dropped
  EXPECT_EQ(steps[7]["micro_batches"], 7);
  EXPECT_EQ(steps[8]["epoch"], 1);
  EXPECT_GT(steps[0]["peak_bytes"].get<int64_t>(), 0);
  EXPECT_LT(steps.back()["loss"].get<double>(), steps.front()["loss"].get<double>() * 0.6);
  // Cosine schedule over 16 optimizer steps (not 16 × 8 micro-batches): warmup 0 (16/20), peak first.
  EXPECT_DOUBLE_EQ(steps[0]["lr"].get<double>(), 2e-3);
  EXPECT_LT(steps[15]["lr"].get<double>(), 2e-3 * 0.02);

  // Saved weights load back into the same architecture.
  auto model = make_model(c.model, 10);
  load_module(c.save_path, *model);
  std::filesystem::remove(c.train.logging().log_path());
  std::filesystem::remove(c.save_path);
}

// An fp16 model pushed out of fp16's range by one huge step: its windows are skipped, and its
// evaluation's loss is NaN, which the log writes as null (it once wrote `nan`, no JSON, and the
// job failed on its last line).
TEST(TrainJob, ANanEvaluationIsLoggedAsNull) {
  JobConfig c = small_job();
  c.optimizer.name = "sgd";
  c.optimizer.lr = 1000;
  c.train.precision().compute(Precision::kFp16);
  c.train.data().epochs(std::nullopt).steps(5);
  std::ostringstream out;
  const JobSummary s = run_train_job(c, out);
  EXPECT_GT(s.result.skipped_steps, 0);
  std::ifstream log(c.train.logging().log_path());
  std::string line, last;
  while (std::getline(log, line)) last = line;
  const nlohmann::json eval = nlohmann::json::parse(last);
  EXPECT_EQ(eval["event"], "eval") << last;
  EXPECT_TRUE(eval["loss"].is_null()) << last;
  std::filesystem::remove(c.train.logging().log_path());
  std::filesystem::remove(c.save_path);
}

TEST(TrainJob, BatchNormWithAccumulationWarnsAndSuggestsGroupNorm) {
  const BatchPlan plan = BatchPlan::resolve({256, 32, std::nullopt, std::nullopt});
  auto bn = make_model({ModelKind::kCnn, NormKind::kBatch}, 10);
  const std::string w = batchnorm_warning(*bn, plan);
  EXPECT_NE(w.find("2 BatchNorm layer(s)"), std::string::npos) << w;
  EXPECT_NE(w.find("--norm group"), std::string::npos);
  EXPECT_EQ(batchnorm_warning(*make_model({ModelKind::kCnn, NormKind::kGroup}, 10), plan), "");
  EXPECT_EQ(batchnorm_warning(*bn, BatchPlan::resolve({32, 32, std::nullopt, std::nullopt})), "");  // no accumulation
}

// The defaults a user meets first, as documented: 8 × 32 windows, 8 epochs, cosine, clip 1.
TEST(TrainJob, DefaultJobResolvesToTheDocumentedRun) {
  const TrainOptions o = job_train_options(default_job());
  EXPECT_EQ(o.batch().global_batch(), 256);
  EXPECT_EQ(o.batch().micro_batch(), 32);
  EXPECT_EQ(o.data().epochs(), 8);
  EXPECT_DOUBLE_EQ(o.batch().clip(), 1.0);
  EXPECT_EQ(o.schedule().kind(), ScheduleKind::kCosine);
  EXPECT_EQ(o.identity().at("model.model"), "cnn");
  // A user who names any batch size gets exactly that, resolved.
  JobConfig c = default_job();
  c.train.batch().micro_batch(64);
  EXPECT_FALSE(job_train_options(c).batch().global_batch().has_value());
}

}  // namespace
}  // namespace gradacc
