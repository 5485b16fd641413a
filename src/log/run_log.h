// The run's log: what the Trainer and its caller record, written to each destination asked for:
// the JSONL file (step_log.h) and a TensorBoard event file (tensorboard_writer.h). Both get the
// same numbers from the same record, so a scalar in TensorBoard equals its JSONL field.
//
//   - a step: every number (and true/false as 1/0) of its JSONL line becomes the scalar
//     "train/<field>" at that optimizer step;
//   - a record such as {"event":"eval","split":"test","at_step":40,"loss":0.3}: the scalar
//     "<split>/<field>" (or "<event>/<field>") at `at_step`, or at the last step logged;
//   - text (the resolved options): TensorBoard only, as Markdown.
//
// Owns both files. Errors: IoError naming the file that cannot be written; ConfigError when a
// TensorBoard directory is given to a build without TensorBoard support (no protobuf at build
// time). Thread safety: one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "gradacc/step_report.h"
#include "log/step_log.h"

namespace gradacc {

class TensorBoardWriter;

// Whether this build can write TensorBoard event files.
bool tensorboard_supported();

class RunLog {
 public:
  // Empty path or directory: that destination is off. `continue_after`: a resumed run, continuing
  // after that step (StepLog keeps the lines up to it; TensorBoard gets a new file whose session
  // starts at the next step).
  RunLog(const std::string& jsonl_path, const std::string& tensorboard_dir, std::optional<int64_t> continue_after);
  ~RunLog();
  RunLog(const RunLog&) = delete;
  RunLog& operator=(const RunLog&) = delete;

  void step(const StepReport& report, int64_t epoch, double seconds);
  // Throws ConfigError unless `record` is a JSON object.
  void record(const nlohmann::ordered_json& record);
  void text(const std::string& tag, const std::string& markdown);
  // Writes what the TensorBoard file buffers (record() and text() do it themselves: they are rare,
  // and a failure must surface, not wait for the destructor, which cannot report it).
  void flush();
  // Flushes and closes the TensorBoard file (the destructor does it too, without reporting errors).
  void close();
  bool tensorboard() const { return tb_ != nullptr; }

 private:
  StepLog jsonl_;
  std::unique_ptr<TensorBoardWriter> tb_;
  int64_t last_step_ = 0;
};

}  // namespace gradacc
