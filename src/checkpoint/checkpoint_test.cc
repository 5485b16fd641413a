#include "checkpoint/checkpoint.h"
#include "checkpoint/checkpointer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <ATen/ops/equal.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>
#include <nlohmann/json.hpp>

#include "app/job.h"
#include "builtin/models.h"
#include "gradacc/optimizer.h"

#include "testing/test_util.h"

namespace gradacc {
namespace {

namespace fs = std::filesystem;
using testing::temp_path;

struct StepRecord {
  int64_t step;
  double loss, grad_norm, lr, loss_scale;
  bool skipped;
  int64_t micro_batches;
  bool operator==(const StepRecord&) const = default;  // bit-for-bit: doubles compared exactly
};

std::vector<StepRecord> step_records(const std::string& log) {
  std::ifstream in(log);
  std::vector<StepRecord> out;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    // JSON has no inf: the norm of a window skipped on overflow is logged as null (-1 here).
    auto number = [](const nlohmann::json& v) { return v.is_null() ? -1.0 : v.get<double>(); };
    if (j.contains("step")) {
      out.push_back({j["step"], number(j["loss"]), number(j["grad_norm"]), j["lr"], j["loss_scale"], j["skipped"],
                     j["micro_batches"]});
    }
  }
  return out;
}

// Every tensor of two weight files equal bit for bit.
void expect_identical_weights(const std::string& a, const std::string& b) {
  const TensorMap wa = load_safetensors(a), wb = load_safetensors(b);
  ASSERT_EQ(wa.size(), wb.size());
  for (const auto& [name, t] : wa) {
    ASSERT_TRUE(wb.count(name)) << name;
    EXPECT_TRUE(at::equal(t, wb.at(name))) << name << " differs";
  }
}

// 2000 Fashion-MNIST images, windows of 4 × 32 (15 full + one short of 80), 40 steps = 2.5 epochs:
// the stop falls mid-epoch and the run crosses an epoch boundary and a short window after it.
JobConfig job(const std::string& tag, const std::string& optimizer, bool fused) {
  JobConfig c = default_job();
  c.model = {ModelKind::kMlp, NormKind::kNone};
  c.train_limit = 2000;
  c.train.batch().micro_batch(32).accumulation_steps(4);
  c.train.data().steps(40);
  c.train.device().threads(2);  // one reduction order
  c.optimizer.name = optimizer;
  c.optimizer.fused = fused;
  c.optimizer.momentum = optimizer == "sgd" ? 0.9 : 0.0;
  c.optimizer.lr = optimizer == "sgd" ? 0.05 : 2e-3;
  c.train.logging().log_path(temp_path(tag + ".jsonl"));
  c.save_path = temp_path(tag + ".safetensors");
  return c;
}

// Runs `base` uninterrupted, then stopped after step 23 (checkpoints every 10) and resumed, and
// expects byte-identical weights and identical step records.
std::vector<StepRecord> expect_exact_resume(const JobConfig& base, const std::string& tag) {
  std::ostringstream out;
  JobConfig whole = base;
  whole.train.logging().log_path(temp_path(tag + "_whole.jsonl"));
  whole.save_path = temp_path(tag + "_whole.safetensors");
  run_train_job(whole, out);

  JobConfig part = base;
  const std::string dir = temp_path(tag + "_ckpt");
  part.train.logging().log_path(temp_path(tag + "_part.jsonl"));
  part.train.checkpoint().dir(dir).save_every(10).stop_at(23);  // mid-epoch
  part.save_path = temp_path(tag + "_part.safetensors");
  const JobSummary first = run_train_job(part, out);
  EXPECT_TRUE(first.result.stopped_early);
  EXPECT_EQ(first.result.steps, 23);
  EXPECT_FALSE(fs::exists(part.save_path));  // no weights from a stopped run

  // The second half logs into the same file, as a user would run it; the checkpoint directory
  // defaults to the resumed checkpoint's.
  JobConfig rest = part;
  rest.train.checkpoint().stop_at(std::nullopt).dir("").save_every(0).resume(dir);
  const JobSummary second = run_train_job(rest, out);
  EXPECT_FALSE(second.result.stopped_early);
  EXPECT_EQ(second.result.steps, 40);

  expect_identical_weights(whole.save_path, rest.save_path);
  const auto a = step_records(whole.train.logging().log_path()), b = step_records(rest.train.logging().log_path());
  EXPECT_EQ(a.size(), 40u);
  EXPECT_EQ(b.size(), 40u);
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) EXPECT_EQ(a[i], b[i]) << "step " << i + 1;
  // The end of the run also checkpoints; the default keeps the newest 3.
  EXPECT_EQ(latest_checkpoint(dir), (fs::path(dir) / checkpoint_file_name(40)).string());
  int count = 0;
  for (const auto& e : fs::directory_iterator(dir)) count += e.path().extension() == ".safetensors";
  EXPECT_EQ(count, 3);
  for (const auto& p : {whole.save_path, rest.save_path}) fs::remove(p);
  for (const auto& j : {whole, rest}) fs::remove(j.train.logging().log_path());
  fs::remove_all(dir);
  return a;
}

class ExactResume : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(ExactResume, StopAndResumeGivesTheUninterruptedRunBitForBit) {
  const auto [optimizer, fused] = GetParam();
  expect_exact_resume(job("x", optimizer, fused), optimizer + (fused ? "_f" : ""));
}

INSTANTIATE_TEST_SUITE_P(Optimizers, ExactResume,
                         ::testing::Values(std::make_tuple("adamw", true), std::make_tuple("adam", false),
                                           std::make_tuple("adamw", false), std::make_tuple("sgd", false)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + (std::get<1>(info.param) ? "_fused" : "_libtorch");
                         });

TEST(ExactResumeWith, AnAccumulationScheduleThatGrowsAcrossTheStop) {
  JobConfig c = job("x", "adamw", true);
  c.train.batch()
      .accumulation_steps(std::nullopt)
      .accum_schedule("0:2,15:4,25:8");  // the stop at 23 falls between the 2nd and 3rd stage
  expect_exact_resume(c, "sched");
}

TEST(ExactResumeWith, AutomaticAccumulationThatChangesAcrossTheStop) {
  // The mlp's noise scale at the start is ~50 examples: with micro-batches of 4 the rule leaves 2
  // micro-batches for ~12. Decisions at steps 6, 11, 16, 21, 26, ...: some before the stop at 23,
  // some after it, each from the estimator state the checkpoint carried.
  JobConfig c = job("x", "adamw", true);
  c.train.batch().accumulation_steps(std::nullopt).micro_batch(4).accum_auto(true).accum_auto_max(24);
  c.train.batch().accum_auto_warmup(6).accum_auto_every(5);
  const auto records = expect_exact_resume(c, "auto");
  ASSERT_EQ(records.size(), 40u);
  std::set<int64_t> before, after;  // the accumulations run on each side of the stop
  for (const StepRecord& r : records) (r.step <= 23 ? before : after).insert(r.micro_batches);
  EXPECT_EQ(records.front().micro_batches, 2);
  EXPECT_GT(before.size(), 1u) << "the accumulation never changed before the stop";
  EXPECT_GT(after.size(), 1u) << "the accumulation never changed after the stop";
}

TEST(ExactResumeWith, AGptOnPaddedTextWithPerTokenNormalization) {
  JobConfig c = job("x", "adamw", true);
  c.model = {ModelKind::kGpt, NormKind::kLayer, 1, 2, 32, 32};
  c.data = "text:/usr/share/common-licenses/GPL-3";
  c.train_limit = 0;
  c.train.batch().micro_batch(4).accumulation_steps(4).clip(0.5);
  expect_exact_resume(c, "gpt");
}

TEST(ExactResumeWith, Fp16LossScalingThatSkipsAndGrowsAcrossTheStop) {
  JobConfig c = job("x", "adamw", true);
  // The scale grows every 3 good windows until fp16 overflows: skips on both sides of the stop.
  c.train.precision().compute(Precision::kFp16).loss_scale_interval(3).loss_scale_init(1 << 20);
  const auto records = expect_exact_resume(c, "fp16");
  auto skipped_in = [&](int64_t from, int64_t to) {
    return std::count_if(records.begin(), records.end(),
                         [&](const StepRecord& r) { return r.skipped && r.step >= from && r.step <= to; });
  };
  EXPECT_GT(skipped_in(1, 23), 0);
  EXPECT_GT(skipped_in(24, 40), 0);
}

TEST(ExactResumeWith, Bf16ParametersWithFp32MasterWeights) {
  JobConfig c = job("x", "adamw", true);
  c.train.precision().param_dtype(Precision::kBf16);
  expect_exact_resume(c, "bf16");
}

// A checkpoint after 6 steps of `job`, for the rejection tests.
struct Saved {
  JobConfig config;
  std::string file;
};
Saved saved_checkpoint(const std::string& tag) {
  Saved s{job(tag, "adamw", true), ""};
  s.config.train.checkpoint().dir(temp_path("ckpt_" + tag)).stop_at(6);
  std::ostringstream out;
  s.file = run_train_job(s.config, out).result.checkpoint;
  s.config.train.checkpoint().stop_at(std::nullopt).resume(s.file);
  return s;
}

void expect_rejected(const JobConfig& c, const std::string& fragment) {
  std::ostringstream out;
  try {
    run_train_job(c, out);
    ADD_FAILURE() << "resumed from a bad checkpoint; expected an error with: " << fragment;
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

TEST(Checkpoint, CorruptedDataHeaderOrTruncationIsDetectedAndNeverLoaded) {
  const Saved s = saved_checkpoint("corrupt");
  const std::string good = read_file(s.file);

  std::string flipped = good;
  flipped[good.size() - 1000] ^= 0x01;  // one bit inside the tensor data
  write_file(s.file, flipped);
  expect_rejected(s.config, "checksum mismatch");

  std::string header = good;
  const auto at = header.find("\"step\":\"6\"");
  ASSERT_NE(at, std::string::npos);
  header[at + 8] = '5';  // a plausible, wrong step count in the metadata
  write_file(s.file, header);
  expect_rejected(s.config, "checksum mismatch");

  write_file(s.file, good.substr(0, good.size() / 2));
  expect_rejected(s.config, s.file);

  // Loading into a live model: a rejected file changes nothing.
  auto model = make_model(s.config.model, 10);
  auto optimizer = make_optimizer(model->parameters(), s.config.optimizer);
  const at::Tensor before = model->parameters()[0].clone();
  EXPECT_THROW(load_checkpoint(s.file, *model, *optimizer, {}), CheckpointError);
  EXPECT_TRUE(at::equal(before, model->parameters()[0]));

  write_file(s.file, good);  // intact again: loads
  const CheckpointState state = load_checkpoint(s.file, *model, *optimizer, {});
  EXPECT_EQ(state.step, 6);
  EXPECT_FALSE(at::equal(before, model->parameters()[0]));
  fs::remove_all(s.config.train.checkpoint().dir());
}

// A window is its global batch: the same windows split into other micro-batches (as another world
// size or memory budget would) continue the run, to float rounding.
TEST(Checkpoint, ResumesWithAnotherSplitOfTheSameWindows) {
  const Saved s = saved_checkpoint("split");
  std::ostringstream out;
  JobConfig whole = job("split_whole", "adamw", true);
  run_train_job(whole, out);
  JobConfig split = s.config;
  split.train.batch().micro_batch(16).accumulation_steps(8);
  split.save_path = temp_path("split_resumed.safetensors");
  run_train_job(split, out);
  const TensorMap a = load_safetensors(whole.save_path), b = load_safetensors(split.save_path);
  double worst = 0;
  for (const auto& [name, t] : a) worst = std::max(worst, (t - b.at(name)).abs().max().item<double>());
  EXPECT_LT(worst, 1e-5);
  EXPECT_GT(worst, -1.0);
  fs::remove_all(s.config.train.checkpoint().dir());
}

TEST(Checkpoint, ACheckpointOfAnotherModelPlanOrOptimizerIsRejected) {
  const Saved s = saved_checkpoint("mismatch");
  JobConfig other_model = s.config;
  other_model.model = {ModelKind::kCnn, NormKind::kGroup};
  expect_rejected(other_model, "its model.model is mlp, this run's is cnn");

  JobConfig other_plan = s.config;
  other_plan.train.batch().micro_batch(32).accumulation_steps(8);
  expect_rejected(other_plan, "its global_batch is 128, this run's is 256");

  JobConfig other_optimizer = s.config;
  other_optimizer.optimizer.name = "sgd";
  expect_rejected(other_optimizer, "its optimizer is adamw (fused), this run's is sgd");

  JobConfig other_seed = s.config;
  other_seed.train.data().seed(7);
  expect_rejected(other_seed, "its seed is 0, this run's is 7");

  // Final weights are not a checkpoint.
  JobConfig weights = s.config;
  weights.train.checkpoint().resume(temp_path("plain.safetensors"));
  auto model = make_model(s.config.model, 10);
  save_module(weights.train.checkpoint().resume(), *model);
  expect_rejected(weights, "not a gradacc checkpoint");

  JobConfig missing = s.config;
  missing.train.checkpoint().resume(temp_path("no_such_dir"));
  expect_rejected(missing, "no such checkpoint file or directory");
  fs::remove(weights.train.checkpoint().resume());
  fs::remove_all(s.config.train.checkpoint().dir());
}

// A token budget's N is not part of a run's identity (a memory budget may plan another N on
// resume); checkpoints written when it was (micro_batching tokens:N) still resume as "tokens".
TEST(Checkpoint, ATokenBudgetResumesWithAnotherN) {
  torch::manual_seed(1);
  torch::nn::Linear model(4, 2);
  torch::optim::SGD sgd(model->parameters(), 0.1);
  const std::string dir = temp_path("tokens_identity");
  fs::remove_all(dir);
  CheckpointState state;
  state.step = state.updates = 3;
  const std::string path =
      save_checkpoint(dir, state, *model, sgd, {{"micro_batching", "tokens:256"}, {"global_batch", "32"}}, 1);
  EXPECT_EQ(load_checkpoint(path, *model, sgd, {{"micro_batching", "tokens"}, {"global_batch", "32"}}).step, 3);
  try {
    load_checkpoint(path, *model, sgd, {{"micro_batching", "fixed"}, {"global_batch", "32"}});
    ADD_FAILURE() << "a token-budget checkpoint resumed as fixed";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("its micro_batching is tokens:256, this run's is fixed"), std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

TEST(Checkpoint, KeepsTheNewestAndIgnoresAndCleansOrphanedTemporaries) {
  const std::string dir = temp_path("keep");
  fs::create_directories(dir);
  auto model = make_model({ModelKind::kMlp, NormKind::kNone}, 10);
  auto optimizer = make_optimizer(model->parameters(), OptimizerOptions());
  // A writer killed mid-write leaves "<name>.tmp.<pid>"; pid 2^22+1 exceeds Linux's pid_max default.
  const std::string orphan = (fs::path(dir) / (checkpoint_file_name(99) + ".tmp.4194305")).string();
  write_file(orphan, "partial");
  EXPECT_EQ(latest_checkpoint(dir), std::nullopt);
  for (int64_t step : {5, 10, 15, 20}) {
    CheckpointState state;
    state.step = state.updates = step;
    state.extra = {{"scaler", "x"}};
    save_checkpoint(dir, state, *model, *optimizer, {}, 2);
  }
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_FALSE(fs::exists(fs::path(dir) / checkpoint_file_name(10)));
  EXPECT_TRUE(fs::exists(fs::path(dir) / checkpoint_file_name(15)));
  EXPECT_EQ(resolve_checkpoint(dir), (fs::path(dir) / checkpoint_file_name(20)).string());
  EXPECT_EQ(load_checkpoint(resolve_checkpoint(dir), *model, *optimizer, {}).extra.at("scaler"), "x");
  fs::remove_all(dir);
  fs::create_directories(dir);
  EXPECT_THROW(resolve_checkpoint(dir), CheckpointError);
  fs::remove_all(dir);
}

// A checkpoint must carry its checksum: damaging the key (which would switch the check off) makes
// the file refused even when its tensors were also edited to look plausible.
TEST(Checkpoint, ACheckpointWithoutItsChecksumIsRefused) {
  const Saved s = saved_checkpoint("nocrc");
  std::string bytes = read_file(s.file);
  const auto at = bytes.find("gradacc_crc32");
  ASSERT_NE(at, std::string::npos);
  bytes[at + 7] = 'X';
  bytes[bytes.size() - 100] ^= 0x40;  // and a tensor byte
  write_file(s.file, bytes);
  expect_rejected(s.config, "has no 'gradacc_crc32' checksum");
  fs::remove_all(s.config.train.checkpoint().dir());
}

// Data loss guards: a fresh run refuses a directory that holds checkpoints; a resume from an older
// checkpoint refuses to abandon newer ones; two runs never share a directory.
TEST(Checkpoint, RunsNeverPruneOrShareAnotherRunsCheckpoints) {
  const Saved s = saved_checkpoint("guard");  // the directory holds step 6
  JobConfig fresh = s.config;
  fresh.train.checkpoint().resume("");
  expect_rejected(fresh, "already holds checkpoints");

  JobConfig further = s.config;
  const std::string dir = s.config.train.checkpoint().dir();
  further.train.checkpoint().resume(dir).stop_at(9).dir(dir);
  std::ostringstream out;
  run_train_job(further, out);  // continues 6 → 9: the directory now holds 6 and 9
  JobConfig older = s.config;   // resume from step 6 by its file
  expect_rejected(older, "holds a newer checkpoint");

  CheckpointPolicy policy{s.config.train.checkpoint().dir(), 0, 3,
                          resolve_checkpoint(s.config.train.checkpoint().dir())};
  const Checkpointer first(policy, {}, true, at::kCPU);
  try {
    const Checkpointer second(policy, {}, true, at::kCPU);
    FAIL() << "two runs locked one checkpoint directory";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("in use by another run (pid"), std::string::npos) << e.what();
  }
  fs::remove_all(s.config.train.checkpoint().dir());
}

}  // namespace
}  // namespace gradacc
