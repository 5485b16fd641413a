// The JSONL step log: every field of a step, one line per step, and a resumed run's log cut back
// to the checkpoint's step before it appends.
#include "log/step_log.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "testing/test_util.h"

namespace gradacc {
namespace {

std::vector<nlohmann::json> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

StepReport report(int64_t step) {
  StepReport r;
  r.step = step;
  r.loss = 0.5;
  r.grad_norm = 2.0;
  r.samples = r.items = 64;
  r.micro_batches = 4;
  r.peak_bytes = 1234;
  return r;
}

TEST(StepLog, WritesEveryFieldOfEveryStep) {
  const std::string path = testing::temp_path("log.jsonl");
  {
    StepLog log(path);
    log.write(report(1), 0, 0.25);
    log.write(report(2), 0, 0.25);
  }
  const auto l = lines_of(path);
  ASSERT_EQ(l.size(), 2u);
  for (const char* k : {"step", "epoch", "loss", "lr", "grad_norm", "clip_coef", "samples", "items", "micro_batches",
                        "seconds", "boundary_seconds", "samples_per_s", "loss_scale", "skipped", "allreduce_calls",
                        "allreduce_bytes", "peak_bytes"}) {
    EXPECT_TRUE(l[0].contains(k)) << k;
  }
  EXPECT_EQ(l[1]["step"], 2);
  EXPECT_DOUBLE_EQ(l[0]["samples_per_s"].get<double>(), 256.0);
  EXPECT_EQ(l[0]["peak_bytes"], 1234);
  std::filesystem::remove(path);
}

TEST(StepLog, AResumedRunKeepsStepsUpToItsCheckpointAndAppends) {
  const std::string path = testing::temp_path("resume.jsonl");
  {
    StepLog log(path);
    for (int s = 1; s <= 5; ++s) log.write(report(s), 0, 0.1);
    log.write_raw(R"({"event":"eval"})");
  }
  {
    StepLog log(path, 3);
    log.write(report(4), 0, 0.1);
  }
  const auto l = lines_of(path);
  ASSERT_EQ(l.size(), 4u);
  EXPECT_EQ(l[2]["step"], 3);
  EXPECT_EQ(l[3]["step"], 4);
  std::filesystem::remove(path);
  EXPECT_THROW(StepLog("/nonexistent-dir/x.jsonl"), std::runtime_error);
}

}  // namespace
}  // namespace gradacc
