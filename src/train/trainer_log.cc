// The Trainer's log (log/run_log.h): opened by fit() on every rank at once, written by rank 0, and
// open to the caller's records (evaluations) during and after the run.
#include <exception>
#include <sstream>

#include <fmt/format.h>
#include "gradacc/errors.h"
#include "gradacc/optimizer.h"
#include "train/trainer_state.h"

namespace gradacc {
namespace {

// The resolved run (what every rank checked it agrees on) as a Markdown table.
std::string run_markdown(const RunPlan& plan, const std::string& optimizer_kind) {
  std::string md = "| option | value |\n|---|---|\n";
  std::istringstream lines(plan.rank_description(optimizer_kind));
  for (std::string line; std::getline(lines, line);) {
    const size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    md += fmt::format("| {} | {} |\n", line.substr(0, eq), line.substr(eq + 1));
  }
  return md;
}

}  // namespace

std::unique_ptr<RunLog> open_run_log(const RunPlan& plan, const torch::optim::Optimizer& optimizer,
                                     Communicator* communicator, int64_t first_step, bool resumed) {
  std::unique_ptr<RunLog> log;
  std::exception_ptr failure;
  try {
    log = std::make_unique<RunLog>(plan.logging.log_path(), plan.logging.tensorboard_dir(),
                                   resumed ? std::optional<int64_t>(first_step) : std::nullopt);
    if (log->tensorboard()) log->text("run", run_markdown(plan, optimizer_kind(optimizer)));
  } catch (const std::exception&) {
    failure = std::current_exception();
  }
  // Rank 0 alone opens files: the others must not go on to a collective it will never join.
  if (communicator && !communicator->all_agree(failure == nullptr) && !failure)
    throw IoError("rank 0 could not open the run's log (its error line says why)");
  if (failure) std::rethrow_exception(failure);
  return log;
}

void Trainer::log_record(const std::string& json_object) {
  if (!s_->log) throw ConfigError("log_record: the run's log opens in fit(); call it from on_step or after fit()");
  const nlohmann::ordered_json j = nlohmann::ordered_json::parse(json_object, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    throw ConfigError(fmt::format("log_record: not a JSON object: {}", json_object.substr(0, 80)));
  s_->log->record(j);
}

void Trainer::log_text(const std::string& tag, const std::string& markdown) {
  if (!s_->log) throw ConfigError("log_text: the run's log opens in fit(); call it from on_step or after fit()");
  s_->log->text(tag, markdown);
}

}  // namespace gradacc
