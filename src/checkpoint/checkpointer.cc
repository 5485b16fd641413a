#include "checkpoint/checkpointer.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <filesystem>

#include <fmt/format.h>

#include "gradacc/optimizer.h"

namespace gradacc {

Checkpointer::Checkpointer(const CheckpointPolicy& policy, StringMap identity, bool lead, at::Device device)
    : policy_(policy), identity_(std::move(identity)), lead_(lead), device_(device) {
  if (!enabled() || !lead_) return;
  std::error_code ec;
  std::filesystem::create_directories(policy_.dir, ec);
  if (ec || ::access(policy_.dir.c_str(), W_OK) != 0) {
    throw ConfigError(
        fmt::format("cannot use checkpoint directory {}: {}", policy_.dir, ec ? ec.message() : "not writable"));
  }
  // One run per directory: a second run would prune and overwrite the first one's checkpoints.
  const std::string lock_path = (std::filesystem::path(policy_.dir) / ".gradacc.lock").string();
  lock_.fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_.fd < 0) throw ConfigError(fmt::format("cannot create {}: {}", lock_path, std::strerror(errno)));
  if (::flock(lock_.fd, LOCK_EX | LOCK_NB) != 0) {
    char holder[32] = {};
    const ssize_t n = ::pread(lock_.fd, holder, sizeof holder - 1, 0);
    ::close(lock_.fd);
    lock_.fd = -1;
    throw ConfigError(fmt::format("checkpoint directory {} is in use by another run (pid {})", policy_.dir,
                                  n > 0 ? std::string(holder, static_cast<size_t>(n)) : "unknown"));
  }
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(lock_.fd, 0) != 0 || ::pwrite(lock_.fd, pid.data(), pid.size(), 0) < 0) {
    // The lock holds regardless; the pid only makes the message above more useful.
  }
  // The checkpoints already there belong to a run: a fresh run must not prune them, and a resume
  // from an older one must not silently abandon (and later prune) the newer ones.
  const std::optional<std::string> newest = latest_checkpoint(policy_.dir);
  if (newest && policy_.resume_from.empty()) {
    throw ConfigError(fmt::format(
        "checkpoint directory {} already holds checkpoints (newest {}): continue with --resume {}, or use an empty "
        "directory",
        policy_.dir, std::filesystem::path(*newest).filename().string(), policy_.dir));
  }
  if (newest && !policy_.resume_from.empty()) {
    std::error_code same;
    const int64_t resumed = checkpoint_step(policy_.resume_from);  // -1: not a checkpoint (its load says so)
    if (resumed >= 0 && !std::filesystem::equivalent(*newest, policy_.resume_from, same) &&
        checkpoint_step(*newest) > resumed) {
      throw ConfigError(fmt::format(
          "resuming from {}, but {} holds a newer checkpoint, {}: resume from the newest (--resume {}), or move the "
          "newer ones away first; gradacc will not prune them",
          policy_.resume_from, policy_.dir, std::filesystem::path(*newest).filename().string(), policy_.dir));
    }
  }
}

Checkpointer::Lock::~Lock() {
  if (fd >= 0) ::close(fd);  // releases the flock
}

TensorMap Checkpointer::part_tensors() const {
  TensorMap tensors;
  for (const Stateful* part : parts_) tensors.merge(part->state_tensors());
  return tensors;
}

namespace {

// The tracked parts' state as the file holds it: the header's keys out of the map, as counts.
CheckpointState file_state(std::map<std::string, std::string> parts) {
  const auto take = [&parts](const char* key) {
    if (!parts.count(key)) throw std::logic_error(fmt::format("checkpoint: no tracked part gives '{}'", key));
    const int64_t n = state_count(parts, key);
    parts.erase(key);
    return n;
  };
  CheckpointState s;
  s.step = take("step");
  s.updates = take("updates");
  s.position = {take("epoch"), take("window"), take("offset")};
  s.extra = std::move(parts);
  return s;
}

// And back: the header's keys beside the parts' own.
std::map<std::string, std::string> parts_state(const CheckpointState& s) {
  std::map<std::string, std::string> parts = s.extra;
  parts["step"] = std::to_string(s.step);
  parts["updates"] = std::to_string(s.updates);
  parts["epoch"] = std::to_string(s.position.epoch);
  parts["window"] = std::to_string(s.position.window);
  parts["offset"] = std::to_string(s.position.offset);
  return parts;
}

}  // namespace

bool Checkpointer::resume(torch::nn::Module& model, torch::optim::Optimizer& optimizer) const {
  if (policy_.resume_from.empty()) return false;
  const auto state = parts_state(load_checkpoint(policy_.resume_from, model, optimizer, identity_, part_tensors(),
                                                 device_, shard_ ? &*shard_ : nullptr));
  for (Stateful* part : parts_) {
    try {
      part->load_state(state);
    } catch (const std::invalid_argument& e) {
      throw CheckpointError(fmt::format("{}: {}", policy_.resume_from, e.what()));
    }
  }
  return true;
}

bool Checkpointer::due(int64_t step, int64_t last_step, bool stopping) const {
  if (!enabled()) return false;
  return stopping || step == last_step || (policy_.every > 0 && step % policy_.every == 0);
}

void Checkpointer::set_sharding(ShardSlot slot, std::function<bool(bool)> agree) {
  shard_ = slot;
  agree_ = std::move(agree);
}

void Checkpointer::set_parameter_shards(std::function<at::Tensor()> params, std::function<int64_t(int64_t)> sum) {
  params_ = std::move(params);
  sum_ = std::move(sum);
}

std::string Checkpointer::save(const torch::nn::Module& model, torch::optim::Optimizer& optimizer) {
  if (!enabled()) return "";
  std::map<std::string, std::string> parts;
  for (const Stateful* part : parts_) parts.merge(part->state());
  CheckpointState state = file_state(std::move(parts));
  state.tensors = part_tensors();
  if (!shard_) {
    if (!lead_) return "";
    last_ = save_checkpoint(policy_.dir, state, model, optimizer, identity_, policy_.keep, device_);
    return last_;
  }
  // ZeRO-1: the shards first, on every rank; the main file, which makes the checkpoint exist, once
  // all of them are written. A rank that failed still takes part in the agreement, so no rank waits.
  TensorMap shard_tensors = state.tensors;
  std::string crc;
  if (params_) {  // ZeRO-3: every rank's parameters, tied to the main file by the sum of their CRCs
    const at::Tensor params = params_().detach().to(at::kCPU).contiguous();
    shard_tensors["params"] = params;
    crc = fmt::format("shards:{:x}", sum_(static_cast<int64_t>(tensor_crc32(params)) + shard_->rank));
  } else {
    crc = weights_fingerprint(model);
  }
  std::string error;
  try {
    save_shard(policy_.dir, state.step, *shard_, optimizer_state(optimizer), shard_tensors, identity_, crc);
  } catch (const std::exception& e) {
    error = e.what();
  }
  const bool everyone = agree_(error.empty());
  if (!error.empty()) throw CheckpointError(error);
  if (!everyone)
    throw CheckpointError(
        fmt::format("checkpoint of step {} not written: another rank could not write its shard", state.step));
  if (!lead_) return "";
  const ShardedSave sharded{shard_->world, crc, static_cast<bool>(params_)};
  last_ = save_checkpoint(policy_.dir, state, model, optimizer, identity_, policy_.keep, device_, &sharded);
  return last_;
}

}  // namespace gradacc
