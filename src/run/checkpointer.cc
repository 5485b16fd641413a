#include "gradacc/run/checkpointer.h"

#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>

namespace gradacc {

Checkpointer::Checkpointer(const CheckpointPolicy& policy, StringMap identity, bool lead, at::Device device)
    : policy_(policy), identity_(std::move(identity)), lead_(lead), device_(device) {
  if (!enabled() || !lead_) return;
  std::error_code ec;
  std::filesystem::create_directories(policy_.dir, ec);
  if (ec || ::access(policy_.dir.c_str(), W_OK) != 0) {
    throw ConfigError(fmt::format("cannot use checkpoint directory {}: {}", policy_.dir, ec ? ec.message() : "not writable"));
  }
}

std::optional<CheckpointState> Checkpointer::resume(torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                                                    const TensorMap& targets) const {
  if (policy_.resume_from.empty()) return std::nullopt;
  return load_checkpoint(policy_.resume_from, model, optimizer, identity_, targets, device_);
}

bool Checkpointer::due(int64_t step, int64_t last_step, bool stopping) const {
  if (!enabled()) return false;
  return stopping || step == last_step || (policy_.every > 0 && step % policy_.every == 0);
}

std::string Checkpointer::save(const CheckpointState& state, const torch::nn::Module& model, torch::optim::Optimizer& optimizer) {
  if (!lead_ || !enabled()) return "";
  last_ = save_checkpoint(policy_.dir, state, model, optimizer, identity_, policy_.keep, device_);
  return last_;
}

}  // namespace gradacc
