// DeepSpeed and Hugging Face config files: which format a file is, the defaults each starts from,
// what to do with keys that are in no row of the options table (ignored, refused, or a typo), and
// the meaning that needs the whole file (job/options_table.h). Internal to src/job.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/options_table.h"

namespace gradacc {

// The rows of DeepSpeed's and Hugging Face's keys whose meaning needs a setter of its own, and
// their columns (names) for gradacc's rows; build_table() calls them (foreign_options.cc).
void add_foreign_rows(std::vector<Option>& table);
void add_foreign_columns(std::vector<Option>& table);

}  // namespace gradacc

// Reading whole files (foreign_config.cc).
namespace gradacc::foreign {

// Hugging Face when the file has a key only TrainingArguments has; else DeepSpeed when it has one
// only DeepSpeed has; else gradacc.
ConfigFormat detect(const nlohmann::json& root);
// DeepSpeed: no schedule, no clipping, and its optimizer defaults when the file has an optimizer
// block. Hugging Face: TrainingArguments' defaults (lr 5e-5, max_grad_norm 1.0, linear decay
// warming up from 0, 3 epochs, seed 42, AdamW with eps 1e-8, no weight decay).
void start_from_defaults(ConfigFormat format, const nlohmann::json& root, JobConfig& config);
// A key no row takes: nullopt when it is known and changes nothing here (recorded as ignored), or
// the one-line reason it is refused (a feature gradacc lacks, a value gradacc cannot honour); ""
// when the format does not know it either (the caller reports a typo).
std::optional<std::string> unmapped_key(ConfigFormat format, const std::string& key, const nlohmann::json& value,
                                        JobConfig& config);
// What only the whole file decides: DeepSpeed's Adam as AdamW, fp16/bf16 blocks and their loss
// scaling defaults, WarmupLR's peak; HF's max_steps over epochs, "constant" without warmup,
// save_strategy. Throws ConfigError with one line.
void finish(ConfigFormat format, JobConfig& config);

// Where the file sends its logs (foreign_logging.cc). HF report_to: a name or a list; "tensorboard"
// or "all" asks for TensorBoard files (other integrations get a note). DeepSpeed's tensorboard
// block: enabled, output_path, job_name. nullopt, or the one-line reason a value is refused.
std::optional<std::string> report_to(const nlohmann::json& value, JobConfig& config);
std::optional<std::string> deepspeed_tensorboard(const std::string& key, const nlohmann::json& value,
                                                 JobConfig& config);
// The TensorBoard directory they ask for, unless one is set: HF's logging_dir (by default
// output_dir/runs/<month day_time>_<host>), DeepSpeed's output_path/job_name (~/tensorboard/
// DeepSpeedJobName by default).
void finish_tensorboard(ConfigFormat format, JobConfig& config);

}  // namespace gradacc::foreign
