// The options table: config files with gradacc's and DeepSpeed's names, strict values for flags
// and keys alike, and docs/config.md generated from the table.
#include "app/options_table.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "gradacc/lr_schedule.h"

#include "gradacc/errors.h"
#include "testing/test_util.h"
#include "train/run_plan.h"

namespace gradacc {
namespace {

using testing::temp_path;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

JobConfig from_file(const std::string& json, std::optional<ConfigFormat> format = std::nullopt) {
  const std::string path = temp_path("c.json");
  std::ofstream(path) << json;
  JobConfig c = default_job();
  try {
    apply_config_file(path, c, format);
  } catch (...) {
    std::filesystem::remove(path);
    throw;
  }
  std::filesystem::remove(path);
  return c;
}

// The DeepSpeed config of issue 16, as users have it.
constexpr const char* kDeepSpeedExample = R"({"train_batch_size": 64, "train_micro_batch_size_per_gpu": 16,
  "gradient_accumulation_steps": 4, "gradient_clipping": 1.0,
  "optimizer": {"type": "AdamW", "params": {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01}},
  "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": 0.001,
                "warmup_num_steps": 10, "total_num_steps": 100}},
  "fp16": {"enabled": false}, "bf16": {"enabled": true}, "zero_optimization": {"stage": 0}, "steps_per_print": 10})";

TEST(ConfigFormats, ADeepSpeedConfigRunsWithDeepSpeedsMeaning) {
  const JobConfig c = from_file(kDeepSpeedExample);
  EXPECT_EQ(c.config_format, "deepspeed");
  EXPECT_EQ(c.train.batch().global_batch(), 64);
  EXPECT_EQ(c.train.batch().micro_batch(), 16);
  EXPECT_EQ(c.train.batch().accumulation_steps(), 4);
  EXPECT_DOUBLE_EQ(c.train.batch().clip(), 1.0);
  EXPECT_EQ(c.optimizer.name, "adamw");
  EXPECT_DOUBLE_EQ(c.optimizer.weight_decay, 0.01);
  EXPECT_EQ(c.train.schedule().kind(), ScheduleKind::kDsWarmupDecay);
  EXPECT_EQ(c.train.schedule().warmup(), 10);
  EXPECT_EQ(c.train.schedule().horizon(), 100);
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 0.001);
  EXPECT_EQ(c.train.precision().param_dtype(), Precision::kBf16);  // bf16 weights, fp32 masters: DeepSpeed's bf16
  EXPECT_EQ(c.train.logging().print_every(), 10);
  const RunPlan plan = resolve_run(job_train_options(c), DistEnv{}, 6400);
  EXPECT_FALSE(plan.precision.loss_scaler.has_value());

  // DeepSpeed's Adam is AdamW unless adam_w_mode is false; no scheduler: a constant rate; fp16:
  // DeepSpeed's dynamic scaler defaults.
  const JobConfig adam = from_file(R"({"train_batch_size": 8, "optimizer": {"type": "Adam", "params": {"lr": 0.01}},
                                       "fp16": {"enabled": true, "initial_scale_power": 12}})");
  EXPECT_EQ(adam.optimizer.name, "adamw");
  EXPECT_EQ(adam.train.schedule().kind(), ScheduleKind::kConstant);
  EXPECT_DOUBLE_EQ(adam.train.batch().clip(), 0.0);
  EXPECT_EQ(adam.train.precision().param_dtype(), Precision::kFp16);
  const RunPlan fp16 = resolve_run(job_train_options(adam), DistEnv{}, 64);
  ASSERT_TRUE(fp16.precision.loss_scaler.has_value());
  EXPECT_EQ(fp16.precision.loss_scaler->init_scale, 4096);
  EXPECT_EQ(fp16.precision.loss_scaler->growth_interval, 1000);
  EXPECT_EQ(fp16.precision.loss_scaler->hysteresis, 2);
  EXPECT_EQ(fp16.precision.loss_scaler->min_scale, 1);
  EXPECT_EQ(from_file(R"({"optimizer": {"type": "Adam", "params": {"adam_w_mode": false}}})").optimizer.name, "adam");
  const JobConfig fixed = from_file(R"({"train_batch_size": 8, "fp16": {"enabled": true, "loss_scale": 512}})");
  EXPECT_EQ(fixed.train.precision().loss_scale_fixed(), 512);
}

TEST(ConfigFormats, DeepSpeedFeaturesGradaccLacksAreNamedTyposGetASuggestion) {
  EXPECT_NE(
      error_of([] {
        from_file(
            R"({"train_batch_size": 8, "zero_optimization": {"stage": 0, "offload_optimizer": {"device": "cpu"}}})");
      }).find("DeepSpeed key `zero_optimization.offload_optimizer.device` is not supported by gradacc"),
      std::string::npos);
  EXPECT_NE(error_of([] {
              from_file(R"({"train_batch_size": 8, "zero_optimization": {"stage": 4}})");
            }).find("`zero_optimization.stage` = 4 is not supported"),
            std::string::npos);
  EXPECT_EQ(from_file(R"({"train_batch_size": 8, "zero_optimization": {"stage": 3}})").train.distributed().zero(), 3);
  EXPECT_EQ(from_file(R"({"train_batch_size": 8, "zero_optimization": {"stage": 1}})").train.distributed().zero(), 1);
  // A typical stage-2 block: the bucket in DeepSpeed's elements becomes gradacc's fp32 MiB.
  const JobConfig two = from_file(
      R"({"train_batch_size": 8, "zero_optimization": {"stage": 2, "reduce_bucket_size": 5e8, "overlap_comm": true,
          "contiguous_gradients": true, "reduce_scatter": true}})");
  EXPECT_EQ(two.train.distributed().zero(), 2);
  EXPECT_DOUBLE_EQ(two.train.distributed().bucket_mb(), 5e8 * 4 / (1 << 20));
  EXPECT_NE(error_of([] {
              from_file(R"({"train_batch_size": 8, "zero_optimization": {"stage": 2, "reduce_bucket_size": 0}})");
            }).find("`zero_optimization.reduce_bucket_size` must be ≥ 1"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              from_file(R"({"train_batch_size": 8, "scheduler": {"type": "OneCycle"}})");
            }).find("DeepSpeed scheduler 'OneCycle' is not supported"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              from_file(R"({"train_batch_size": 8, "gradient_cliping": 1.0})");
            }).find("unknown key 'gradient_cliping' (did you mean 'gradient_clipping'?)"),
            std::string::npos);
  const JobConfig logged =
      from_file(R"({"train_batch_size": 8, "wall_clock_breakdown": false, "tensorboard": {"enabled": true}})");
  EXPECT_EQ(logged.foreign.ignored.size(), 1u);
  EXPECT_TRUE(logged.train.logging().tensorboard_dir().ends_with("tensorboard/DeepSpeedJobName"))
      << logged.train.logging().tensorboard_dir();
}

// The shape of TrainingArguments.to_json_string(): every field, many of them null.
constexpr const char* kHfExample = R"({"output_dir": "OUT", "overwrite_output_dir": false, "do_train": true,
  "eval_strategy": "no", "per_device_train_batch_size": 16, "per_device_eval_batch_size": 8,
  "gradient_accumulation_steps": 4, "learning_rate": 0.0003, "weight_decay": 0.1, "adam_beta1": 0.9,
  "adam_beta2": 0.95, "adam_epsilon": 1e-08, "max_grad_norm": 1.0, "num_train_epochs": 3.0, "max_steps": 20,
  "lr_scheduler_type": "cosine", "lr_scheduler_kwargs": {}, "warmup_ratio": 0.1, "warmup_steps": 0,
  "logging_steps": 5, "save_strategy": "steps", "save_steps": 500, "save_total_limit": null, "seed": 42,
  "data_seed": null, "bf16": true, "fp16": false, "tf32": null, "label_smoothing_factor": 0.0,
  "optim": "adamw_torch", "report_to": ["none"], "gradient_checkpointing": false, "push_to_hub": false,
  "hub_token": "<HUB_TOKEN>", "dataloader_drop_last": false, "ddp_timeout": 1800})";

TEST(ConfigFormats, AHuggingFaceTrainingArgumentsJsonKeepsItsSemantics) {
  const JobConfig c = from_file(kHfExample);
  EXPECT_EQ(c.config_format, "hf");
  EXPECT_EQ(c.train.batch().micro_batch(), 16);
  EXPECT_EQ(c.train.batch().accumulation_steps(), 4);
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 3e-4);
  EXPECT_EQ(c.optimizer.name, "adamw");
  EXPECT_DOUBLE_EQ(c.optimizer.beta2, 0.95);
  EXPECT_DOUBLE_EQ(c.train.batch().clip(), 1.0);
  EXPECT_EQ(c.train.schedule().kind(), ScheduleKind::kCosine);
  EXPECT_EQ(c.train.schedule().warmup_start(), WarmupStart::kZero);
  EXPECT_EQ(c.train.data().steps(), 20);  // max_steps wins over num_train_epochs
  EXPECT_FALSE(c.train.data().epochs().has_value());
  EXPECT_EQ(c.train.precision().compute(), Precision::kBf16);  // autocast over fp32 weights, as HF's amp
  EXPECT_EQ(c.train.precision().param_dtype(), Precision::kFp32);
  EXPECT_EQ(c.train.checkpoint().dir(), "OUT");
  EXPECT_EQ(c.train.checkpoint().save_every(), 500);
  EXPECT_EQ(c.train.logging().print_every(), 5);
  EXPECT_EQ(c.train.data().seed(), 42u);
  EXPECT_GE(c.foreign.ignored.size(), 8u);
  // warmup_ratio is of the total optimizer steps: ⌈0.1 × 20⌉ = 2.
  EXPECT_EQ(resolve_run(job_train_options(c), DistEnv{}, 6400).schedule.shape.warmup_steps, 2);
  // max_grad_norm defaults to 1.0 when the file leaves it out; "constant" never warms up.
  const JobConfig bare = from_file(R"({"per_device_train_batch_size": 8, "lr_scheduler_type": "constant",
                                       "warmup_steps": 5})");
  EXPECT_DOUBLE_EQ(bare.train.batch().clip(), 1.0);
  EXPECT_DOUBLE_EQ(bare.optimizer.lr, 5e-5);
  EXPECT_EQ(bare.train.schedule().warmup(), 0);
  EXPECT_EQ(bare.train.data().epochs(), 3);
}

TEST(ConfigFormats, HuggingFaceKeysThatWouldChangeTheResultAreRefused) {
  EXPECT_NE(error_of([] {
              from_file(R"({"per_device_train_batch_size": 8, "adafactor": true})");
            }).find("`adafactor` = true is not supported by gradacc (only its default, false)"),
            std::string::npos);
  // auto_find_batch_size: gradacc's replay on out-of-memory, said in a note; group_by_length: refused,
  // naming token-budget micro-batches.
  const JobConfig found = from_file(R"({"per_device_train_batch_size": 8, "auto_find_batch_size": true})");
  ASSERT_EQ(found.foreign.notes.size(), 1u);
  EXPECT_NE(found.foreign.notes[0].find("replays a window that runs out of memory"), std::string::npos);
  EXPECT_NE(error_of([] {
              from_file(R"({"per_device_train_batch_size": 8, "group_by_length": true})");
            }).find("--micro-batching tokens:N sorts each window by length"),
            std::string::npos);
  // DeepSpeed's pre-division: read, noted, not applied.
  const JobConfig pre =
      from_file(R"({"train_batch_size": 8, "gradient_predivide_factor": 2.0, "prescale_gradients": true})");
  ASSERT_EQ(pre.foreign.notes.size(), 2u);
  EXPECT_NE(pre.foreign.notes[0].find("divides once, by the window's real count"), std::string::npos);
  // label_smoothing_factor is gradacc's --label-smoothing.
  EXPECT_DOUBLE_EQ(from_file(R"({"per_device_train_batch_size": 8, "label_smoothing_factor": 0.1})").label_smoothing,
                   0.1);
  EXPECT_NE(error_of([] {
              from_file(R"({"per_device_train_batch_size": 8, "lr_scheduler_type": "polynomial"})");
            }).find("lr_scheduler_type 'polynomial' is not supported"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              from_file(R"({"per_device_train_batch_size": 8, "num_train_epochs": 2.5})");
            }).find("whole epochs"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              from_file(R"({"per_device_train_batch_size": 8, "learning_rat": 0.1})");
            }).find("did you mean 'learning_rate'"),
            std::string::npos);
  // The format can be named: the same keys read as gradacc's are unknown there.
  EXPECT_NE(error_of([] { from_file(R"({"learning_rate": 0.1})", ConfigFormat::kGradacc); }).find("unknown key"),
            std::string::npos);
}

TEST(OptionsTable, ConfigKeysFollowGradaccAndDeepSpeedNames) {
  const JobConfig c =
      from_file(R"({"train_batch_size": 64, "train_micro_batch_size_per_gpu": 8, "gradient_clipping": 0.5,
                                     "optimizer": {"type": "SGD", "params": {"lr": 0.1, "momentum": 0.9, "nesterov": true}},
                                     "norm": "layer", "data_types": {"grad_accum_dtype": "fp32"}, "steps": 7})");
  EXPECT_EQ(c.train.batch().global_batch(), 64);
  EXPECT_EQ(c.train.batch().micro_batch(), 8);
  EXPECT_DOUBLE_EQ(c.train.batch().clip(), 0.5);
  EXPECT_EQ(c.optimizer.name, "sgd");
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 0.1);
  EXPECT_DOUBLE_EQ(c.optimizer.momentum, 0.9);
  EXPECT_TRUE(c.optimizer.nesterov);
  EXPECT_EQ(c.model.norm, NormKind::kLayer);
  // "steps" alone is a complete length: the default epochs apply only when neither is given.
  EXPECT_EQ(job_train_options(c).data().steps(), 7);
  EXPECT_FALSE(job_train_options(c).data().epochs().has_value());
  const JobConfig o = from_file(R"({"optimizer": "adam", "betas": [0.8, 0.95]})");
  EXPECT_EQ(o.optimizer.name, "adam");
  EXPECT_DOUBLE_EQ(o.optimizer.beta2, 0.95);
}

TEST(OptionsTable, UnknownKeysWrongTypesAndDeepNestingAreOneLineErrors) {
  EXPECT_NE(error_of([] { from_file(R"({"train_batch_sise": 64})"); }).find("did you mean 'train_batch_size'"),
            std::string::npos);
  EXPECT_NE(error_of([] { from_file(R"({"zzz_unrelated": 1})"); }).find("unknown key 'zzz_unrelated'"),
            std::string::npos);
  EXPECT_NE(error_of([] { from_file(R"({"train_batch_size": "64"})"); }).find("an integer is expected"),
            std::string::npos);
  EXPECT_NE(error_of([] { from_file(R"({"lr": "0.1"})"); }).find("a number is expected"), std::string::npos);
  EXPECT_NE(error_of([] { from_file(R"({"betas": [0.9]})"); }).find("two numbers"), std::string::npos);
  EXPECT_NE(error_of([] { from_file(R"({"train_batch_size": 99999999999999999999})"); }).find("integer"),
            std::string::npos);
  std::string deep(100000, '[');
  const std::string message = error_of([&] { from_file(R"({"lr": )" + deep); });
  EXPECT_NE(message.find("nested deeper than 32"), std::string::npos) << message;
  EXPECT_LT(message.size(), 300u);
  EXPECT_NE(error_of([] { from_file("{\"lr\": 0.1,"); }).find("not valid JSON"), std::string::npos);
  // A FIFO (or any non-regular file) is refused before it is opened.
  const std::string fifo = temp_path("fifo.json");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  JobConfig c = default_job();
  EXPECT_NE(error_of([&] { apply_config_file(fifo, c); }).find("regular file"), std::string::npos);
  std::filesystem::remove(fifo);
}

TEST(OptionsTable, FlagValuesAreParsedStrictly) {
  JobConfig c = default_job();
  const Option& micro = *find_option_by_flag("--micro-batch");
  apply_flag(c, micro, "16");
  EXPECT_EQ(c.train.batch().micro_batch(), 16);
  for (const char* bad : {"010", "", "1e3", "16 ", "+16", "0x10", "99999999999999999999", "16abc"}) {
    EXPECT_THROW(apply_flag(c, micro, bad), ConfigError) << "'" << bad << "'";
  }
  const Option& lr = *find_option_by_flag("--lr");
  for (const char* bad : {"nan", "inf", "-inf", "", "1e999", "0.1x", " 0.1"}) {
    EXPECT_THROW(apply_flag(c, lr, bad), ConfigError) << "'" << bad << "'";
  }
  apply_flag(c, lr, "3e-4");
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 3e-4);
  const Option& zero = *find_option_by_flag("--zero");
  apply_flag(c, zero, "auto");
  EXPECT_EQ(c.train.distributed().zero(), kZeroAuto);
  apply_flag(c, zero, "2");
  EXPECT_EQ(c.train.distributed().zero(), 2);
  for (const char* bad : {"-1", "Auto", "two", "", "2 "}) {  // -1 is not a way to spell auto
    EXPECT_THROW(apply_flag(c, zero, bad), ConfigError) << "'" << bad << "'";
  }
  EXPECT_NE(error_of([&] { apply_flag(c, micro, "010"); }).find("--micro-batch: '010' has a leading zero"),
            std::string::npos);
  EXPECT_THROW(apply_flag(c, *find_option_by_flag("--shuffle"), "maybe"), ConfigError);
  EXPECT_THROW(apply_flag(c, *find_option_by_flag("--data"), ""), ConfigError);
  EXPECT_THROW(apply_flag(c, *find_option_by_flag("--seed"), "-1"), ConfigError);
}

TEST(OptionsTable, FlagsAndKeysAreUniqueAndEveryRowShowsADefault) {
  std::set<std::string> flags, keys;
  const JobConfig defaults = default_job();
  for (const Option& o : option_table()) {
    if (!o.flag.empty()) {
      EXPECT_TRUE(flags.insert(o.flag).second) << o.flag;
    }
    for (const std::string& k : o.keys) EXPECT_TRUE(keys.insert(k).second) << k;
    for (const std::string& k : o.deepspeed) EXPECT_TRUE(keys.insert("ds:" + k).second) << k;
    for (const std::string& k : o.hf) EXPECT_TRUE(keys.insert("hf:" + k).second) << k;
    EXPECT_TRUE(!o.keys.empty() || !o.deepspeed.empty() || !o.hf.empty()) << o.help;
    if (!o.keys.empty()) {  // foreign rows have no default of their own
      EXPECT_FALSE(o.show(defaults).empty()) << o.flag;
    }
    EXPECT_FALSE(o.help.empty()) << o.flag;
  }
}

// docs/config.md holds the table as generated; a new row without its doc line fails here.
TEST(OptionsTable, DocsConfigMdMatchesTheTable) {
  std::ifstream in(std::string(GRADACC_SOURCE_DIR) + "/docs/config.md");
  ASSERT_TRUE(in) << "docs/config.md is missing";
  std::stringstream doc;
  doc << in.rdbuf();
  const std::string text = doc.str();
  const std::string begin = "<!-- options:begin (generated by `gradacc options --markdown`) -->\n",
                    end = "<!-- options:end -->";
  const auto a = text.find(begin), b = text.find(end);
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  EXPECT_EQ(text.substr(a + begin.size(), b - a - begin.size()), options_markdown())
      << "regenerate with: build/gradacc options --markdown";
}

// Config file and flags accept and refuse the same values: one resolution checks both.
TEST(OptionsTable, StepsFromAFileAndEpochsFromAFlagAreRefusedTogether) {
  JobConfig c = from_file(R"({"steps": 5})");
  apply_flag(c, *find_option_by_flag("--epochs"), "2");
  EXPECT_NE(error_of([&] { resolve_run(job_train_options(c), DistEnv{}, 1000); }).find("either steps or epochs"),
            std::string::npos);
}

}  // namespace
}  // namespace gradacc

// `gradacc options --from-config FILE`: every key of a user's file gets one verdict, and a refused
// key does not stop the others from being explained.
namespace gradacc {
namespace {

TEST(ConfigFormats, EveryKeyOfAFileIsExplained) {
  const std::string path = testing::temp_path("explain.json");
  std::ofstream(path) << R"({"train_batch_size": 64, "gradient_cliping": 1, "wall_clock_breakdown": false,
    "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}, "prescale_gradients": true,
    "optimizer": {"type": "AdamW", "params": {"lr": 0.5}}})";
  JobConfig c = default_job();
  std::vector<KeyVerdict> v;
  apply_config_file(path, c, std::nullopt, &v);
  const std::string table = explain_config_file(path);
  std::filesystem::remove(path);
  std::map<std::string, std::string> verdict;
  for (const KeyVerdict& k : v) verdict[k.key] = k.verdict;
  EXPECT_EQ(v.size(), 8u);
  EXPECT_EQ(verdict["train_batch_size"], "mapped");
  EXPECT_EQ(verdict["gradient_cliping"], "refused");
  EXPECT_EQ(verdict["wall_clock_breakdown"], "ignored");
  EXPECT_EQ(verdict["zero_optimization.stage"], "mapped");
  EXPECT_EQ(verdict["zero_optimization.offload_optimizer.device"], "refused");
  EXPECT_EQ(verdict["prescale_gradients"], "mapped");
  EXPECT_EQ(verdict["optimizer.params.lr"], "mapped");
  EXPECT_NE(table.find("| `gradient_cliping` | refused | unknown key 'gradient_cliping' (did you mean "
                       "'gradient_clipping'?) |"),
            std::string::npos)
      << table;
  // Without verdicts, the same file is refused at its first bad key.
  JobConfig d = default_job();
  std::ofstream(path) << R"({"train_batch_size": 64, "gradient_cliping": 1})";
  EXPECT_NE(error_of([&] { apply_config_file(path, d); }).find("unknown key 'gradient_cliping'"), std::string::npos);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace gradacc
