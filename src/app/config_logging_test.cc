// Where DeepSpeed and Hugging Face configs send their logs: TensorBoard event files, in the
// directory each system would use, and one verdict per key in `gradacc options --from-config`.
#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>

#include "app/options_table.h"
#include "gradacc/errors.h"
#include "testing/test_util.h"

namespace gradacc {
namespace {

struct Read {
  JobConfig config = default_job();
  std::map<std::string, std::string> verdict;
  std::string error;
};

Read read(const std::string& json) {
  const std::string path = testing::temp_path("logging.json");
  std::ofstream(path) << json;
  Read r;
  std::vector<KeyVerdict> v;
  apply_config_file(path, r.config, std::nullopt, &v);
  for (const KeyVerdict& k : v) r.verdict[k.key] = k.verdict;
  JobConfig strict = default_job();
  try {
    apply_config_file(path, strict);
  } catch (const ConfigError& e) {
    r.error = e.what();
  }
  std::filesystem::remove(path);
  return r;
}

TEST(ConfigLogging, HuggingFaceReportToTensorBoardWritesToLoggingDir) {
  Read r = read(R"({"output_dir": "out", "per_device_train_batch_size": 8, "report_to": ["tensorboard"],
                    "logging_dir": "out/tb"})");
  EXPECT_EQ(r.config.train.logging().tensorboard_dir(), "out/tb");
  EXPECT_EQ(r.verdict["report_to"], "mapped");
  EXPECT_EQ(r.verdict["logging_dir"], "mapped");
  EXPECT_EQ(r.error, "");
  // "all" (every integration installed) and no logging_dir: TrainingArguments' default directory.
  r = read(R"({"output_dir": "out", "per_device_train_batch_size": 8, "report_to": "all"})");
  EXPECT_TRUE(r.config.train.logging().tensorboard_dir().starts_with("out/runs/"))
      << r.config.train.logging().tensorboard_dir();
  // Other integrations: no such logs, said once; "none" and a logging_dir alone write nothing.
  r = read(R"({"output_dir": "out", "per_device_train_batch_size": 8, "report_to": ["wandb"]})");
  EXPECT_EQ(r.config.train.logging().tensorboard_dir(), "");
  ASSERT_EQ(r.config.foreign.notes.size(), 1u);
  EXPECT_NE(r.config.foreign.notes[0].find("writes no wandb logs"), std::string::npos) << r.config.foreign.notes[0];
  r = read(R"({"output_dir": "out", "per_device_train_batch_size": 8, "report_to": "none", "logging_dir": "x"})");
  EXPECT_EQ(r.config.train.logging().tensorboard_dir(), "");
  EXPECT_EQ(r.verdict["report_to"], "ignored");
  r = read(R"({"output_dir": "out", "per_device_train_batch_size": 8, "report_to": [3]})");
  EXPECT_EQ(r.verdict["report_to"], "refused");
  EXPECT_NE(r.error.find("`report_to` must be a name or a list of names"), std::string::npos) << r.error;
}

TEST(ConfigLogging, DeepSpeedTensorBoardBlockWritesToOutputPathJobName) {
  Read r = read(R"({"train_batch_size": 8, "tensorboard": {"enabled": true, "output_path": "logs/",
                    "job_name": "bert"}})");
  EXPECT_EQ(r.config.train.logging().tensorboard_dir(), "logs/bert");
  EXPECT_EQ(r.verdict["tensorboard.enabled"], "mapped");
  EXPECT_EQ(r.verdict["tensorboard.job_name"], "mapped");
  r = read(R"({"train_batch_size": 8, "tensorboard": {"enabled": false, "output_path": "logs/"}})");
  EXPECT_EQ(r.config.train.logging().tensorboard_dir(), "");
  r = read(R"({"train_batch_size": 8, "tensorboard": {"enabled": "yes"}})");
  EXPECT_NE(r.error.find("`tensorboard.enabled` must be true or false"), std::string::npos) << r.error;
  r = read(R"({"train_batch_size": 8, "tensorboard": {"enabled": true, "flush_secs": 5}})");
  EXPECT_NE(r.error.find("`tensorboard.flush_secs` is not supported"), std::string::npos) << r.error;
}

}  // namespace
}  // namespace gradacc
