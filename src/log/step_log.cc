#include "log/step_log.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include "gradacc/errors.h"

namespace gradacc {

StepLog::StepLog(const std::string& path, std::optional<int64_t> continue_after) {
  if (path.empty()) return;
  if (continue_after) {
    std::ifstream in(path);
    if (in) {
      std::string kept, line;
      while (std::getline(in, line)) {
        const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        // Step lines, and the evaluations made after them ("at_step"), up to the checkpoint.
        const char* key = j.is_object() && j.contains("step") ? "step" : "at_step";
        if (j.is_object() && j.contains(key) && j[key].is_number_integer() &&
            j[key].get<int64_t>() <= *continue_after) {
          kept += line + "\n";
        }
      }
      const std::string tmp = path + ".tmp";
      std::ofstream out(tmp, std::ios::trunc);
      out << kept;
      out.close();
      if (!out || std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw IoError(fmt::format("cannot rewrite log file {} for the resumed run: {}", path, std::strerror(errno)));
      }
    }
  }
  path_ = path;
  // Appending, always: records the job adds between steps (evaluations) land after the step they
  // follow instead of being overwritten at this stream's position.
  if (!continue_after) {
    std::FILE* fresh = std::fopen(path.c_str(), "w");
    if (fresh) std::fclose(fresh);
  }
  file_ = std::fopen(path.c_str(), "a");
  if (!file_) throw IoError(fmt::format("cannot write log file {}: {}", path, std::strerror(errno)));
}

StepLog::~StepLog() {
  if (file_) std::fclose(file_);
}

nlohmann::ordered_json step_record(const StepReport& r, int64_t epoch, double seconds) {
  nlohmann::ordered_json j;
  j["step"] = r.step;
  j["epoch"] = epoch;
  j["loss"] = r.loss;
  j["lr"] = r.lr;
  j["lr_scale"] = r.lr_scale;
  if (r.lr_position > 0) j["lr_position"] = r.lr_position;
  if (r.window_cache_bytes > 0) j["cache_bytes"] = r.window_cache_bytes;
  j["grad_norm"] = r.grad_norm;
  j["clip_coef"] = r.clip_coef;
  j["samples"] = r.samples;
  j["items"] = r.items;
  j["micro_batches"] = r.micro_batches;
  j["seconds"] = seconds;
  j["boundary_seconds"] = r.boundary_seconds;
  j["samples_per_s"] = seconds > 0 ? static_cast<double>(r.samples) / seconds : 0.0;
  j["loss_scale"] = r.loss_scale;
  j["skipped"] = r.skipped;
  j["allreduce_calls"] = r.allreduce_calls;
  j["allreduce_bytes"] = r.allreduce_bytes;
  if (r.parameter_gathers > 0) j["parameter_gathers"] = r.parameter_gathers;  // ZeRO-3
  j["peak_bytes"] = r.peak_bytes;
  j["peak_mb"] = static_cast<double>(r.peak_bytes) / (1 << 20);
  j["micro_batch"] = r.micro_batch;
  j["oom_replays"] = r.oom_replays;
  if (r.computed_items > 0) {  // sequence data: the padding computed, and real tokens per second
    j["padding_fraction"] = 1.0 - static_cast<double>(r.items) / static_cast<double>(r.computed_items);
    j["tokens_per_s"] = seconds > 0 ? static_cast<double>(r.items) / seconds : 0.0;
  }
  if (r.noise_measured) {
    j["noise_scale"] = r.noise_scale;
    j["grad_sq_est"] = r.grad_sq_est;
    j["trace_sigma_est"] = r.trace_sigma_est;
  }
  return j;
}

std::string step_json(const StepReport& r, int64_t epoch, double seconds) {
  return step_record(r, epoch, seconds).dump();
}

void StepLog::write(const StepReport& report, int64_t epoch, double seconds) {
  write_raw(step_json(report, epoch, seconds));
}

void StepLog::write_raw(const std::string& line) {
  if (!file_) return;
  // Every write is checked: a full disk must end the run with an error, not a silent empty log.
  if (std::fputs(line.c_str(), file_) < 0 || std::fputc('\n', file_) == EOF || std::fflush(file_) != 0) {
    throw IoError(fmt::format("cannot write log file {}: {}", path_, std::strerror(errno)));
  }
}

}  // namespace gradacc
