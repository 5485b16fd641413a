// The options table: one row per option of gradacc's jobs. Each row drives
//   - the CLI flag (`gradacc train --lr 0.001`), its help text and stated default;
//   - the JSON config key (gradacc's name), and two more columns: the DeepSpeed and the Hugging Face
//     TrainingArguments names that mean the same thing (dotted keys name nested objects:
//     "optimizer.params.lr"). Rows with no flag and no gradacc key are a foreign key whose meaning
//     needs its own setter (DeepSpeed's "fp16.enabled", HF's "lr_scheduler_type");
//   - the option list of docs/config.md (options_markdown(); a test keeps the two equal).
// A new option is one row (src/job/options_table.cc).
//
// Values are checked for their form here — an integer without leading zeros that fits, a finite
// number, on/off, one of a list — and for their meaning once, when the run is resolved
// (run/run_plan.h). Errors are one line naming the flag or key, the (shortened) value and what is
// expected.
//
// Thread safety: the table is immutable; apply_* change only the JobConfig passed in.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "app/job_config.h"
#include "base/parse.h"

namespace gradacc {

enum class OptionType {
  kInt,        // N: decimal, no leading zeros, fits int64
  kFloat,      // X: a finite number
  kBool,       // on|off (flags also take true|false); JSON true/false
  kSwitch,     // a flag without a value (--nesterov); JSON true/false
  kString,     // non-empty text
  kFloatPair,  // "X,Y" (flags) or [X, Y] (JSON)
  kIntOrWord,  // N as kInt, or a word (--accum auto:32); JSON: an integer or a string (gradacc's keys only)
};

// Whose names a config file uses (job/config_file.cc detects it, or --config-format says).
enum class ConfigFormat {
  kGradacc,      // gradacc's keys (and DeepSpeed's, as always)
  kDeepSpeed,    // a DeepSpeed config: its keys and gradacc's
  kHuggingFace,  // TrainingArguments JSON: its keys and gradacc's
};
ConfigFormat parse_config_format(const std::string& name);  // "gradacc" | "deepspeed" | "hf"
std::string to_string(ConfigFormat format);

// Which commands take a row's flag.
enum class OptionScope {
  kRun,    // train and verify
  kTrain,  // train only
  kBatch,  // train, verify and plan
};

using OptionValue = std::variant<int64_t, double, bool, std::string, std::pair<double, double>>;

struct Option {
  std::string flag;               // "--lr"; "" for a config-file-only key
  std::vector<std::string> keys;  // config keys: gradacc's first, then aliases
  OptionType type;
  OptionScope scope;
  std::string value_hint;  // "N", "X", "sgd|adam|adamw", ...
  std::string help;
  // Stores the value; throws ConfigError with what is expected (without the flag name).
  std::function<void(JobConfig&, const OptionValue&)> set;
  // The value a JobConfig holds, as text: the stated default when given default_job().
  std::function<std::string(const JobConfig&)> show;
  std::vector<std::string> deepspeed = {};  // DeepSpeed's names for it
  std::vector<std::string> hf = {};         // Hugging Face TrainingArguments' names for it
};

const std::vector<Option>& option_table();
const Option* find_option_by_flag(const std::string& flag);
// A config key in a file of `format`: gradacc's keys, then that format's column.
const Option* find_option_by_key(const std::string& key, ConfigFormat format = ConfigFormat::kGradacc);

// Parses `text` as the row's type and stores it. Throws ConfigError "--flag: ...".
void apply_flag(JobConfig& config, const Option& option, const std::string& text);
// Applies a JSON config file's keys (nested objects as dotted keys) in its format: detected
// (Hugging Face: TrainingArguments' own keys such as per_device_train_batch_size or output_dir;
// DeepSpeed: train_batch_size, zero_optimization, fp16/bf16 blocks, ...), or `format`. A DeepSpeed
// or HF file starts from that system's defaults (no schedule and no clipping for DeepSpeed;
// max_grad_norm 1.0, lr 5e-5, linear decay, 3 epochs for HF) and keeps its semantics
// (docs/config.md, "bring your config"). Keys that change nothing here are recorded in
// config.foreign.ignored. Throws ConfigError naming the file and the key: unreadable or non-regular
// files, bad JSON, nesting deeper than 32, wrong types, a key of that system whose feature gradacc
// lacks ("DeepSpeed key `zero_optimization.offload_optimizer` is not supported by gradacc"), and
// unknown keys (with the closest known key suggested).
// With `verdicts`, a key's failure is recorded instead of thrown, and every key gets its verdict
// (`gradacc options --from-config FILE`); errors of the whole file still throw.
struct KeyVerdict {
  std::string key;
  std::string verdict;  // honoured, mapped, ignored or refused
  std::string detail;   // the flag it sets, what it maps to, why it is ignored or refused
};
void apply_config_file(const std::string& path, JobConfig& config, std::optional<ConfigFormat> format = {},
                       std::vector<KeyVerdict>* verdicts = nullptr);
// The verdicts of a config file's keys as a Markdown table, for a user to see what gradacc does
// with their DeepSpeed or Hugging Face file. Throws ConfigError for an unreadable or invalid file.
std::string explain_config_file(const std::string& path, std::optional<ConfigFormat> format = {});
// Markdown table of every option (flag, config keys, default, meaning): docs/config.md's list.
std::string options_markdown();
// Markdown table of a job's options (flag, value as resolved): the run's text in TensorBoard.
std::string option_values_markdown(const JobConfig& config);

}  // namespace gradacc
