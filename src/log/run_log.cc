#include "log/run_log.h"

#include <algorithm>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include "gradacc/errors.h"
#include "log/tensorboard_writer.h"

namespace gradacc {
namespace {

using Scalars = std::vector<std::pair<std::string, double>>;

// The numbers of a JSON object as scalars "<prefix>/<key>", skipping `skip`.
Scalars numbers_of(const nlohmann::ordered_json& j, const std::string& prefix,
                   std::initializer_list<const char*> skip) {
  Scalars out;
  for (const auto& item : j.items()) {
    const std::string& key = item.key();
    const nlohmann::ordered_json& value = item.value();
    if (std::find_if(skip.begin(), skip.end(), [&](const char* s) { return key == s; }) != skip.end()) continue;
    if (value.is_number()) out.emplace_back(prefix + "/" + key, value.get<double>());
    if (value.is_boolean()) out.emplace_back(prefix + "/" + key, value.get<bool>() ? 1.0 : 0.0);
  }
  return out;
}

}  // namespace

bool tensorboard_supported() {
#ifdef GRADACC_HAVE_TENSORBOARD
  return true;
#else
  return false;
#endif
}

RunLog::RunLog(const std::string& jsonl_path, const std::string& tensorboard_dir, std::optional<int64_t> continue_after)
    : jsonl_(jsonl_path, continue_after), last_step_(continue_after.value_or(0)) {
  if (tensorboard_dir.empty()) return;
#ifdef GRADACC_HAVE_TENSORBOARD
  tb_ = std::make_unique<TensorBoardWriter>(tensorboard_dir, last_step_ + 1);
#else
  throw ConfigError(
      "this gradacc was built without TensorBoard support (protobuf was not found at build time): drop "
      "--tensorboard, or install libprotobuf-dev and protobuf-compiler and rebuild");
#endif
}

RunLog::~RunLog() = default;

void RunLog::step(const StepReport& report, int64_t epoch, double seconds) {
  const nlohmann::ordered_json line = step_record(report, epoch, seconds);
  jsonl_.write_raw(line.dump());
  last_step_ = report.step;
  if (tb_) tb_->scalars(report.step, numbers_of(line, "train", {"step"}));
}

void RunLog::record(const nlohmann::ordered_json& record) {
  if (!record.is_object()) throw ConfigError(fmt::format("a log record must be a JSON object, got {}", record.dump()));
  jsonl_.write_raw(record.dump());
  if (!tb_) return;
  const auto text_of = [&](const char* key) {
    return record.contains(key) && record[key].is_string() ? record[key].get<std::string>() : std::string();
  };
  std::string prefix = text_of("split");
  if (prefix.empty()) prefix = text_of("event");
  if (prefix.empty()) prefix = "record";
  const bool at = record.contains("at_step") && record["at_step"].is_number_integer();
  const Scalars values = numbers_of(record, prefix, {"at_step"});
  if (!values.empty()) tb_->scalars(at ? record["at_step"].get<int64_t>() : last_step_, values);
  tb_->flush();
}

void RunLog::text(const std::string& tag, const std::string& markdown) {
  if (!tb_) return;
  tb_->text(last_step_, tag, markdown);
  tb_->flush();
}

void RunLog::flush() {
  if (tb_) tb_->flush();
}

void RunLog::close() {
  if (tb_) tb_->close();
}

}  // namespace gradacc
