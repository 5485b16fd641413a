#include "gradacc/run/trainer.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gradacc/io/safetensors.h"

#include "testing/test_util.h"

namespace gradacc {
namespace {

using testing::temp_path;

TrainConfig small_job() {
  TrainConfig c = default_job();
  c.model = {"mlp", NormKind::kNone};
  c.train_limit = 2000;  // windows of 256: 7 full + one of 208
  c.batch = {256, 32, std::nullopt, std::nullopt};
  c.epochs = 2;
  c.log_path = temp_path("log.jsonl");
  c.save_path = temp_path("w.safetensors");
  return c;
}

TEST(Trainer, RunsLogsEveryOptimizerStepAndLearns) {
  const TrainConfig c = small_job();
  std::ostringstream out;
  const TrainSummary s = run_training(c, out);
  EXPECT_EQ(s.steps, 16);
  EXPECT_GT(s.test_accuracy, 0.6);  // 10 classes: chance is 0.1

  std::ifstream log(c.log_path);
  std::string line;
  std::vector<nlohmann::json> steps;
  while (std::getline(log, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("step")) steps.push_back(j);
  }
  ASSERT_EQ(steps.size(), 16u);
  for (const char* key : {"step", "epoch", "loss", "lr", "grad_norm", "samples", "items", "micro_batches", "seconds", "samples_per_s"}) {
    EXPECT_TRUE(steps[0].contains(key)) << key;
  }
  EXPECT_EQ(steps[7]["samples"], 208);  // the short window, rescaled, not dropped
  EXPECT_EQ(steps[7]["micro_batches"], 7);
  EXPECT_EQ(steps[8]["epoch"], 1);
  EXPECT_LT(steps.back()["loss"].get<double>(), steps.front()["loss"].get<double>() * 0.6);
  // Cosine schedule over 16 optimizer steps (not 16 × 8 micro-batches): warmup 0 (16/20), peak first.
  EXPECT_DOUBLE_EQ(steps[0]["lr"].get<double>(), 2e-3);
  EXPECT_LT(steps[15]["lr"].get<double>(), 2e-3 * 0.02);

  // Saved weights load back into the same architecture.
  auto model = make_model(c.model, 10);
  load_module(c.save_path, *model);
  std::filesystem::remove(c.log_path);
  std::filesystem::remove(c.save_path);
}

TEST(Trainer, BatchNormWithAccumulationWarnsAndSuggestsGroupNorm) {
  TrainConfig c = small_job();
  c.model = {"cnn", NormKind::kBatch};
  const std::string w = batchnorm_warning(c, BatchPlan::resolve(c.batch));
  EXPECT_NE(w.find("BatchNorm"), std::string::npos);
  EXPECT_NE(w.find("--norm group"), std::string::npos);
  c.model.norm = NormKind::kGroup;
  EXPECT_EQ(batchnorm_warning(c, BatchPlan::resolve(c.batch)), "");
}

TEST(Trainer, StepsAndEpochsAreExclusive) {
  TrainConfig c = small_job();
  c.steps = 3;
  EXPECT_THROW(validate(c), ConfigError);
}

TEST(Config, FileKeysFollowDeepSpeedNamesAndUnknownKeysAreErrors) {
  const std::string path = temp_path("c.json");
  std::ofstream(path) << R"({"train_batch_size": 64, "train_micro_batch_size_per_gpu": 8, "gradient_clipping": 0.5,
                              "optimizer": {"type": "SGD", "params": {"lr": 0.1, "momentum": 0.9}}, "norm": "layer"})";
  TrainConfig c;
  apply_config_file(path, c);
  const BatchPlan p = BatchPlan::resolve(c.batch);
  EXPECT_EQ(p.accumulation_steps, 8);
  EXPECT_DOUBLE_EQ(c.clip, 0.5);
  EXPECT_EQ(c.optimizer.name, "sgd");
  EXPECT_DOUBLE_EQ(c.optimizer.momentum, 0.9);
  EXPECT_EQ(c.model.norm, NormKind::kLayer);

  std::ofstream(path) << R"({"train_batch_size": 64, "learning_rate_typo": 1})";
  try {
    apply_config_file(path, c);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("learning_rate_typo"), std::string::npos);
  }
  std::ofstream(path) << R"({"train_batch_size": "64"})";
  EXPECT_THROW(apply_config_file(path, c), ConfigError);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace gradacc
