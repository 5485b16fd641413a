// The options table: config files with gradacc's and DeepSpeed's names, strict values for flags
// and keys alike, and docs/config.md generated from the table.
#include "gradacc/job/options_table.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "gradacc/errors.h"
#include "gradacc/run/run_plan.h"
#include "testing/test_util.h"

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

JobConfig from_file(const std::string& json) {
  const std::string path = temp_path("c.json");
  std::ofstream(path) << json;
  JobConfig c = default_job();
  apply_config_file(path, c);
  std::filesystem::remove(path);
  return c;
}

TEST(OptionsTable, ConfigKeysFollowGradaccAndDeepSpeedNames) {
  const JobConfig c =
      from_file(R"({"train_batch_size": 64, "train_micro_batch_size_per_gpu": 8, "gradient_clipping": 0.5,
                                     "optimizer": {"type": "SGD", "params": {"lr": 0.1, "momentum": 0.9, "nesterov": true}},
                                     "norm": "layer", "data_types": {"grad_accum_dtype": "fp32"}, "steps": 7})");
  EXPECT_EQ(c.train.global_batch(), 64);
  EXPECT_EQ(c.train.micro_batch(), 8);
  EXPECT_DOUBLE_EQ(c.train.clip(), 0.5);
  EXPECT_EQ(c.optimizer.name, "sgd");
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 0.1);
  EXPECT_DOUBLE_EQ(c.optimizer.momentum, 0.9);
  EXPECT_TRUE(c.optimizer.nesterov);
  EXPECT_EQ(c.model.norm, NormKind::kLayer);
  // "steps" alone is a complete length: the default epochs apply only when neither is given.
  EXPECT_EQ(job_train_options(c).steps(), 7);
  EXPECT_FALSE(job_train_options(c).epochs().has_value());
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
  EXPECT_EQ(c.train.micro_batch(), 16);
  for (const char* bad : {"010", "", "1e3", "16 ", "+16", "0x10", "99999999999999999999", "16abc"}) {
    EXPECT_THROW(apply_flag(c, micro, bad), ConfigError) << "'" << bad << "'";
  }
  const Option& lr = *find_option_by_flag("--lr");
  for (const char* bad : {"nan", "inf", "-inf", "", "1e999", "0.1x", " 0.1"}) {
    EXPECT_THROW(apply_flag(c, lr, bad), ConfigError) << "'" << bad << "'";
  }
  apply_flag(c, lr, "3e-4");
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 3e-4);
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
    EXPECT_FALSE(o.show(defaults).empty()) << o.flag;
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
