// Stateful: a part of a training run whose state a checkpoint carries beyond the weights and the
// optimizer (the fp16 loss scaler, the noise scale's moving averages, auto accumulation's
// decisions). State goes out as text and comes back in; the Checkpointer keeps the list of such
// parts (checkpoint/checkpointer.h) and saves and restores them all, so no part's state is
// assembled by hand.
//
// Thread safety: as the part's own.
#pragma once

#include <map>
#include <string>

namespace gradacc {

class Stateful {
 public:
  virtual ~Stateful() = default;
  // This part's state, under keys of its own (no two parts of a run share a key). Values are exact:
  // a double written here reads back bit for bit.
  virtual std::map<std::string, std::string> state() const = 0;
  // Restores what state() wrote, from a map that also holds the other parts' keys. Throws
  // ConfigError naming the entry that is missing or malformed.
  virtual void load_state(const std::map<std::string, std::string>& state) = 0;
};

}  // namespace gradacc
