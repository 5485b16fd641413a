// Where a DeepSpeed or Hugging Face file sends its logs (foreign_config.h): HF's report_to and
// logging_dir, DeepSpeed's tensorboard block, and the TensorBoard directory each system would use.
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>

#include <fmt/format.h>

#include "app/foreign_config.h"

namespace gradacc::foreign {
namespace {

// TrainingArguments' logging_dir when the file gives none: output_dir/runs/<month day_time>_<host>.
std::string hf_default_logging_dir(const std::string& output_dir) {
  char stamp[64] = {}, host[256] = {};
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  std::strftime(stamp, sizeof(stamp), "%b%d_%H-%M-%S", &local);
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return (std::filesystem::path(output_dir.empty() ? "trainer_output" : output_dir) / "runs" /
          (std::string(stamp) + "_" + (host[0] != '\0' ? host : "localhost")))
      .string();
}

}  // namespace

// HF report_to: a name or a list of names; "tensorboard" (or "all", every integration there is)
// writes TensorBoard event files, the only integration gradacc has. nullopt, or a refusal.
std::optional<std::string> report_to(const nlohmann::json& value, JobConfig& c) {
  std::vector<std::string> names;
  for (const nlohmann::json& v : value.is_array() ? value : nlohmann::json::array({value})) {
    if (!v.is_string()) return "Hugging Face key `report_to` must be a name or a list of names";
    names.push_back(v.get<std::string>());
  }
  std::string others;
  for (const std::string& n : names) {
    if (n == "tensorboard" || n == "all")
      c.foreign.hf_report_tensorboard = true;
    else if (n != "none")
      others += (others.empty() ? "" : ", ") + shown(n, 40);
  }
  if (!others.empty()) {
    c.foreign.notes.push_back(
        fmt::format("note: report_to: gradacc writes no {} logs (TensorBoard event files and the JSONL log only){}",
                    others, c.foreign.hf_report_tensorboard ? "" : "; report_to tensorboard writes TensorBoard's"));
  } else if (c.foreign.hf_report_tensorboard) {
    c.foreign.mapped.push_back("TensorBoard event files in logging_dir (--tensorboard)");
  } else {
    c.foreign.ignored.push_back("report_to");
  }
  return std::nullopt;
}

// DeepSpeed's tensorboard block: enabled, output_path (default ~/tensorboard), job_name (default
// DeepSpeedJobName); the event files go to output_path/job_name, as DeepSpeed's monitor puts them.
std::optional<std::string> deepspeed_tensorboard(const std::string& key, const nlohmann::json& value, JobConfig& c) {
  if (key == "tensorboard.enabled") {
    if (!value.is_boolean()) return "DeepSpeed key `tensorboard.enabled` must be true or false";
    c.foreign.ds_tensorboard = value.get<bool>();
    c.foreign.mapped.push_back("TensorBoard event files in output_path/job_name (--tensorboard)");
    return std::nullopt;
  }
  if (key == "tensorboard.output_path" || key == "tensorboard.job_name") {
    if (!value.is_string()) return fmt::format("DeepSpeed key `{}` must be a string", key);
    (key == "tensorboard.output_path" ? c.foreign.ds_tensorboard_path : c.foreign.ds_tensorboard_job) =
        value.get<std::string>();
    c.foreign.mapped.push_back("part of the TensorBoard directory, output_path/job_name (--tensorboard)");
    return std::nullopt;
  }
  return fmt::format(
      "DeepSpeed key `{}` is not supported by gradacc (tensorboard takes enabled, output_path and "
      "job_name)",
      key);
}

void finish_tensorboard(ConfigFormat format, JobConfig& c) {
  if (!c.train.logging().tensorboard_dir().empty()) return;  // a flag or gradacc key wins
  if (format == ConfigFormat::kHuggingFace && c.foreign.hf_report_tensorboard)
    c.train.logging().tensorboard_dir(
        c.foreign.hf_logging_dir.value_or(hf_default_logging_dir(c.train.checkpoint().dir())));
  if (format != ConfigFormat::kHuggingFace && c.foreign.ds_tensorboard) {
    const char* home = std::getenv("HOME");
    const std::string base = !c.foreign.ds_tensorboard_path.empty() ? c.foreign.ds_tensorboard_path
                             : home != nullptr                      ? std::string(home) + "/tensorboard"
                                                                    : "tensorboard";
    c.train.logging().tensorboard_dir((std::filesystem::path(base) / c.foreign.ds_tensorboard_job).string());
  }
}

}  // namespace gradacc::foreign
