// Stateful: a part of a training run whose state a checkpoint carries beyond the weights and the
// optimizer (the fp16 loss scaler, the noise scale's moving averages, auto accumulation's
// decisions, the LR scaler's position, the fp32 master weights), and of where it stands (the
// accumulator's steps and updates, the loop's data position). State goes out and comes back
// in: small values as text, large ones as tensors; the Checkpointer keeps the list of such parts
// (checkpoint/checkpointer.h) and saves and restores them all, so no part's state is assembled by
// hand.
//
// Thread safety: as the part's own.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <ATen/core/Tensor.h>
#include <fmt/format.h>

#include "base/parse.h"
#include "gradacc/errors.h"

namespace gradacc {

class Stateful {
 public:
  virtual ~Stateful() = default;
  // This part's state, under keys of its own (no two parts of a run share a key). Values are exact:
  // a double written here reads back bit for bit.
  virtual std::map<std::string, std::string> state() const { return {}; }
  // Restores what state() wrote, from a map that also holds the other parts' keys. Throws
  // ConfigError naming the entry that is missing or malformed.
  virtual void load_state(const std::map<std::string, std::string>& state) { (void)state; }
  // This part's tensors, by name (no two parts share one): the part's own storage, which a
  // checkpoint saves and a resume overwrites in place (same shapes and dtypes, or CheckpointError).
  virtual std::map<std::string, at::Tensor> state_tensors() const { return {}; }
};

// The count (an integer >= 0) under `key` of a state map: ConfigError naming the key when it is
// missing or not a count.
inline int64_t state_count(const std::map<std::string, std::string>& state, const std::string& key) {
  const auto it = state.find(key);
  if (it == state.end()) throw ConfigError(fmt::format("the state has no '{}'", key));
  int64_t n = -1;
  try {
    n = parse_int(it->second);
  } catch (const std::invalid_argument&) {
  }
  if (n < 0) throw ConfigError(fmt::format("the state's '{}' is not a count: '{}'", key, shown(it->second)));
  return n;
}

}  // namespace gradacc
