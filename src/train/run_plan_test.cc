// The option groups check themselves; resolve_run() checks what spans groups, the ranks and the
// data. Each refusal is a ConfigError or PlanError with one line naming the option; what is
// accepted resolves to the documented numbers.
#include "train/run_plan.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "gradacc/errors.h"
#include "testing/test_util.h"

namespace gradacc {
namespace {

using testing::but;

RunPlan resolve(const TrainOptions& o, int64_t data = 1000, int world = 1) {
  DistEnv env;
  env.world_size = world;
  return resolve_run(o, env, data);
}

std::string error_of(const TrainOptions& o, int64_t data = 1000, int world = 1) {
  try {
    resolve(o, data, world);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(resolved)";
}

// Each group refuses, by itself, what it alone can say is wrong; the same group with the field
// back at its default is accepted. The plan keeps the options as given.
// A range is declared with its field (options.h) and checked where a value is written: by the
// setter and by the mutable accessor alike, the value left as it was.
TEST(OptionGroups, RangesAreCheckedWhereAValueIsWritten) {
  const auto refusal = [](const auto& write) {
    try {
      write();
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  BatchOptions batch;
  EXPECT_EQ(refusal([&] { batch.clip(-1); }), "clip must be a finite number in [0, 1000000000000], got -1");
  EXPECT_EQ(refusal([&] { batch.clip() = std::nan(""); }).substr(0, 27), "clip must be a finite numbe");
  EXPECT_EQ(batch.clip(), 0.0);
  EXPECT_EQ(refusal([&] { batch.micro_batch_tokens(-1); }).substr(0, 34), "micro_batch_tokens must lie in 0..");
  EXPECT_EQ(refusal([&] { batch.micro_batch_tokens(0).clip(1.5); }), "(accepted)");
  DataOptions data;
  EXPECT_EQ(refusal([&] { data.steps() = 0; }).substr(0, 22), "steps must lie in 1..1");
  EXPECT_FALSE(data.steps());
  EXPECT_EQ(refusal([&] { data.steps() = std::nullopt; }), "(accepted)");  // unset is in range
  data.steps() = 12;
  EXPECT_EQ(data.steps().value_or(5), 12);
  DataOptions other;
  other.steps() = data.steps();  // one field to another: the value, checked again
  EXPECT_EQ(other.steps(), 12);
  EXPECT_NE(refusal([&] { LoggingOptions().noise_scale_ema(1.0); }).find("noise_scale_ema"), std::string::npos);
  EXPECT_EQ(refusal([&] { DeviceOptions().threads(-1); }), "threads must lie in 0..1024, got -1");
  EXPECT_EQ(refusal([&] { CheckpointOptions().keep() = 0; }), "keep must lie in 1..1000000, got 0");
  EXPECT_EQ(refusal([&] { ScheduleOptions().warmup_ratio(1.5); }).substr(0, 40),
            "warmup_ratio must be a finite number in ");
  EXPECT_NE(refusal([&] { ScheduleOptions().min_lr(INFINITY); }).find("min_lr must be"), std::string::npos);
  EXPECT_NE(refusal([&] { DistributedOptions().timeout(0); }).find("timeout must be"), std::string::npos);
}

TEST(OptionGroups, EachGroupChecksItselfInOneLine) {
  const auto refusal = [](const auto& group) {
    try {
      group.validate();
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_NE(refusal(BatchOptions().accum_auto(true)).find("accum auto needs micro_batch"), std::string::npos);
  EXPECT_NE(refusal(DataOptions().steps(3).epochs(1)).find("either steps or epochs"), std::string::npos);
  EXPECT_NE(refusal(ScheduleOptions().lr_scaling(LrScaling::kSqrt)).find("needs --base-batch"), std::string::npos);
  EXPECT_NE(refusal(PrecisionOptions().loss_scale_init(8)).find("fp16 only"), std::string::npos);
  EXPECT_NE(refusal(DistributedOptions().zero(4)).find("zero is 0, 1"), std::string::npos);
  EXPECT_NE(refusal(CheckpointOptions().stop_at(3)).find("needs a checkpoint directory"), std::string::npos);
  EXPECT_NE(refusal(MemoryOptions().budget(0)).find("memory_budget must be positive"), std::string::npos);
  for (const std::string& accepted :
       {refusal(BatchOptions()), refusal(DataOptions()), refusal(ScheduleOptions()), refusal(PrecisionOptions()),
        refusal(DistributedOptions()), refusal(CheckpointOptions()), refusal(MemoryOptions()),
        refusal(LoggingOptions()), refusal(DeviceOptions()),
        refusal(CheckpointOptions().stop_at(3).resume("/some/ckpt"))})
    EXPECT_EQ(accepted, "(accepted)");
  TrainOptions o;
  o.batch().micro_batch(10).clip(0.5);
  o.logging().noise_scale_ema(0.9);
  const RunPlan p = resolve(o);
  EXPECT_EQ(p.requested.batch().clip(), 0.5);
  EXPECT_EQ(p.accumulator_options().max_grad_norm, 0.5);
  EXPECT_EQ(p.logging.noise_scale_ema(), 0.9);
}

TEST(RunPlan, ResolvesTheBatchLengthAndSchedule) {
  const RunPlan p = resolve(TrainOptions()
                                .batch(BatchOptions().global_batch(256).micro_batch(32))
                                .data(DataOptions().epochs(2))
                                .schedule(ScheduleOptions().kind(ScheduleKind::kCosine)));
  EXPECT_EQ(p.batch.accumulation_steps, 8);
  EXPECT_EQ(p.epoch.windows(), 4);  // 3 full windows of 256 + a short one of 232
  EXPECT_EQ(p.total_steps, 8);
  EXPECT_EQ(p.last_step, 8);
  EXPECT_EQ(p.schedule.shape.warmup_steps, 0);  // 5% of 8 steps
  EXPECT_EQ(p.accumulator_options().nominal_count, 256);
  const RunPlan q = resolve(TrainOptions()
                                .batch(BatchOptions().global_batch(64).micro_batch(8))
                                .data(DataOptions().steps(100))
                                .schedule(ScheduleOptions().kind(ScheduleKind::kLinear)),
                            1000, 2);
  EXPECT_EQ(q.batch.accumulation_steps, 4);  // 64 = 8 × 4 × 2 ranks
  EXPECT_EQ(q.schedule.shape.warmup_steps, 5);
  EXPECT_EQ(resolve(TrainOptions().batch(BatchOptions().micro_batch(10))).total_steps, 100);  // one epoch by default
}

TEST(RunPlan, RefusesOptionsThatCannotBeMeant) {
  const TrainOptions ok = TrainOptions().batch(BatchOptions().micro_batch(8));
  EXPECT_NE(error_of(but(ok, [&](TrainOptions& o) { o.data().steps(3).epochs(1); })).find("either steps or epochs"),
            std::string::npos);
  EXPECT_NE(error_of(but(ok, [&](TrainOptions& o) { o.distributed().world_size(2); })).find("WORLD_SIZE is 1"),
            std::string::npos);
  EXPECT_NE(
      error_of(but(ok, [&](TrainOptions& o) { o.batch().micro_batch(2000); })).find("larger than the training data"),
      std::string::npos);
  EXPECT_NE(error_of(TrainOptions()
                         .batch(BatchOptions().global_batch(2000).micro_batch(10))
                         .data(DataOptions().drop_partial(true)))
                .find("fewer than one global batch"),
            std::string::npos);
  EXPECT_NE(error_of(but(ok, [&](TrainOptions& o) { o.precision().compute(Precision::kBf16).loss_scale_init(8); }))
                .find("fp16 only"),
            std::string::npos);
  EXPECT_NE(
      error_of(but(ok, [&](TrainOptions& o) { o.precision().param_dtype(Precision::kBf16).compute(Precision::kFp16); }))
          .find("does not fit"),
      std::string::npos);
  EXPECT_NE(error_of(but(ok, [&](TrainOptions& o) { o.batch().accum_schedule("0:2"); })).find("needs steps"),
            std::string::npos);
  EXPECT_NE(error_of(but(ok,
                         [&](TrainOptions& o) {
                           o.batch().accum_schedule("0:2").accumulation_steps(2);
                           o.data().steps(5);
                         }))
                .find("replaces"),
            std::string::npos);
  EXPECT_NE(error_of(but(ok, [&](TrainOptions& o) { o.checkpoint().stop_at(3); })).find("needs a checkpoint directory"),
            std::string::npos);
  EXPECT_NE(
      error_of(but(ok, [&](TrainOptions& o) { o.checkpoint().save_every(3); })).find("needs a checkpoint directory"),
      std::string::npos);
  EXPECT_NE(error_of(but(ok,
                         [&](TrainOptions& o) {
                           o.data().steps(10);
                           o.schedule().warmup(10).kind(ScheduleKind::kCosine);
                         }))
                .find("no room to decay"),
            std::string::npos);
  EXPECT_NE(error_of(but(ok, [&](TrainOptions& o) { o.device().name("gpu"); })).find("unknown device"),
            std::string::npos);
  EXPECT_NE(error_of(but(ok, [&](TrainOptions& o) { o.checkpoint().resume("/no/such/checkpoint"); }))
                .find("no such checkpoint"),
            std::string::npos);
  // Batch products that would wrap int64 are refused, never divided by.
  EXPECT_NE(error_of(TrainOptions().batch(BatchOptions().micro_batch(64).accumulation_steps(int64_t{1} << 58)))
                .find("larger than"),
            std::string::npos);
  EXPECT_NE(
      error_of(TrainOptions().batch(BatchOptions().micro_batch(int64_t{1} << 32)), 1000, 65536).find("larger than"),
      std::string::npos);
}

TEST(RunPlan, IdentityNamesWhatACheckpointMustMatch) {
  const RunPlan p = resolve(TrainOptions()
                                .batch(BatchOptions().global_batch(64).micro_batch(16))
                                .data(DataOptions().seed(3))
                                .identity({{"model.model", "mine"}}));
  const StringMap id = p.run_identity("sgd");
  EXPECT_EQ(id.at("model.model"), "mine");
  EXPECT_EQ(id.at("global_batch"), "64");
  // A fixed window is its global batch: its split is not part of the identity (a run may resume
  // with another micro-batch or world size); a schedule's windows are micro × world × accum.
  EXPECT_EQ(id.count("accumulation_steps"), 0u);
  EXPECT_EQ(id.count("world_size"), 0u);
  EXPECT_EQ(
      resolve(
          TrainOptions().batch(BatchOptions().micro_batch(16).accum_schedule("0:2,5:4")).data(DataOptions().steps(10)))
          .run_identity("sgd")
          .at("micro_batch"),
      "16");
  EXPECT_EQ(id.at("seed"), "3");
  EXPECT_EQ(id.at("optimizer"), "sgd");
  EXPECT_EQ(id.at("train_examples"), "1000");
  EXPECT_NE(p.rank_description("sgd").find("clip=0"), std::string::npos);
}

}  // namespace
}  // namespace gradacc

// ZeRO: stages 0–2, or auto with a memory budget (the planner starts on 1); one process makes it a
// note; other stages, a negative one, and auto without a budget are refused in one line.
namespace gradacc {
namespace {

using testing::but;

// One command line for every attempt of a restarted job: resume "auto" starts fresh in an empty
// checkpoint directory and continues from its newest checkpoint once there is one.
TEST(RunPlan, ResumeAutoTakesTheNewestCheckpointWhenThereIsOne) {
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "resume_auto";
  std::filesystem::remove_all(dir);
  const TrainOptions o = but(TrainOptions(), [&](TrainOptions& t) {
    t.data().steps(10);
    t.batch().global_batch(32);
    t.checkpoint().dir(dir.string()).resume("auto");
  });
  EXPECT_EQ(resolve(o).checkpoint.resume_from, "");  // no directory yet
  std::filesystem::create_directories(dir);
  EXPECT_EQ(resolve(o).checkpoint.resume_from, "");  // an empty one
  for (const char* name : {"ckpt-step-00000003.safetensors", "ckpt-step-00000012.safetensors", "notes.txt"})
    std::ofstream(dir / name) << "x";
  EXPECT_EQ(resolve(o).checkpoint.resume_from, (dir / "ckpt-step-00000012.safetensors").string());
  EXPECT_NE(error_of(but(o, [](TrainOptions& t) { t.checkpoint().dir(""); })).find("give the directory"),
            std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(RunPlan, ZeroStagesAndAuto) {
  const TrainOptions ok = TrainOptions().batch(BatchOptions().global_batch(64).micro_batch(8));
  EXPECT_EQ(resolve(but(ok, [&](TrainOptions& o) { o.distributed().zero(2); }), 1000, 2).distributed.zero, 2);
  EXPECT_FALSE(resolve(but(ok, [&](TrainOptions& o) { o.distributed().zero(2); }), 1000, 2).distributed.zero_auto);
  const RunPlan automatic = resolve(TrainOptions()
                                        .batch(BatchOptions().global_batch(64))
                                        .distributed(DistributedOptions().zero(kZeroAuto))
                                        .memory(MemoryOptions().budget(1 << 30)),
                                    1000, 2);
  EXPECT_EQ(automatic.distributed.zero, 1);
  EXPECT_TRUE(automatic.distributed.zero_auto);
  const RunPlan one = resolve(TrainOptions()
                                  .batch(BatchOptions().global_batch(64))
                                  .distributed(DistributedOptions().zero(kZeroAuto))
                                  .memory(MemoryOptions().budget(1 << 30)));
  EXPECT_EQ(one.distributed.zero, 0);
  EXPECT_FALSE(one.distributed.zero_auto);
  ASSERT_FALSE(one.notes.empty());
  EXPECT_NE(one.notes[0].find("zero auto at world size 1 changes nothing"), std::string::npos) << one.notes[0];
  EXPECT_NE(error_of(but(ok, [&](TrainOptions& o) { o.distributed().zero(4); }), 1000, 2).find("zero is 0, 1"),
            std::string::npos);
  EXPECT_NE(error_of(but(ok, [&](TrainOptions& o) { o.distributed().zero(-2); }), 1000, 2).find("or auto, got -2"),
            std::string::npos);
  EXPECT_NE(error_of(but(ok, [&](TrainOptions& o) { o.distributed().zero(kZeroAuto); }), 1000, 2)
                .find("zero auto lets the memory planner choose"),
            std::string::npos);
}

}  // namespace
}  // namespace gradacc
