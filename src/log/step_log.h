// Per-optimizer-step logging: one JSON object per line (JSONL), flushed after every line so a
// crash loses at most the step in flight and `tail -f` shows progress.
//
// Fields: step, epoch, loss (the window's item-weighted mean), lr, grad_norm (pre-clip),
// clip_coef, samples, items, micro_batches, seconds (wall time of the step), boundary_seconds
// (the part spent at the window boundary), samples_per_s, loss_scale (1 without fp16 scaling),
// skipped (true when an fp16 overflow dropped the window), allreduce_calls and allreduce_bytes
// (data-parallel traffic of the step; 0 in a single process).
#pragma once

#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "gradacc/step_report.h"

namespace gradacc {

class StepLog {
 public:
  // Empty path: no file. Throws IoError naming the path when it cannot be created.
  // With `continue_after` (a resumed run), an existing log keeps its step records up to and
  // including that step — records of steps the resumed run will redo, and other events, are
  // dropped (rewritten atomically) — and new records are appended.
  explicit StepLog(const std::string& path, std::optional<int64_t> continue_after = std::nullopt);
  ~StepLog();
  StepLog(const StepLog&) = delete;
  StepLog& operator=(const StepLog&) = delete;

  // Throws IoError naming the file when a write fails (a full disk).
  void write(const StepReport& report, int64_t epoch, double seconds);
  // An extra record (e.g. {"event": "eval", ...}) in the same stream.
  void write_raw(const std::string& json_line);

 private:
  std::FILE* file_ = nullptr;
  std::string path_;
};

// A step's record, the fields above in that order; step_json is its line.
nlohmann::ordered_json step_record(const StepReport& report, int64_t epoch, double seconds);
std::string step_json(const StepReport& report, int64_t epoch, double seconds);

}  // namespace gradacc
