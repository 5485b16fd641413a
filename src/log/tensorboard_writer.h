// TensorBoard's event format for a run: scalars and text, as TensorBoard's scalar and text
// plugins read them (tensor summaries: an fp64 scalar keeps the JSONL's value exactly; text as a
// string tensor, rendered as Markdown). Messages are encoded by protobuf (tensorboard_event.proto)
// and framed by an EventFile.
//
// A session starts with a SessionLog START at its first step: on a resume, TensorBoard drops what
// the interrupted run had logged from that step on (steps after its checkpoint, redone now) and
// keeps the rest; a new run in a directory of older files replaces their curves the same way.
//
// Errors: IoError (event_file.h). Thread safety: one thread.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "log/event_file.h"

namespace gradacc {

class TensorBoardWriter {
 public:
  // A new event file in `dir`; the session's first step is `first_step` (1 for a new run, the
  // checkpoint's step + 1 for a resume).
  TensorBoardWriter(const std::string& dir, int64_t first_step);

  // One event holding all of `values` at `step` (tags such as "train/loss").
  void scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values);
  void text(int64_t step, const std::string& tag, const std::string& markdown);
  void flush() { file_.flush(); }
  void close() { file_.close(); }
  const std::string& path() const { return file_.path(); }

 private:
  EventFile file_;
  std::set<std::string> described_;  // tags whose metadata (which plugin) this file already holds
};

}  // namespace gradacc
