#include "checkpoint/checkpoint.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <mutex>
#include <regex>
#include <set>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <zlib.h>

#include "base/parse.h"
#include "base/stateful.h"
#include "gradacc/errors.h"
#include "gradacc/optimizer.h"

namespace gradacc {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFormatKey = "gradacc_checkpoint";
constexpr const char* kFormatVersion = "1";

// ckpt-step-<digits>.safetensors; nothing else in the directory is a checkpoint.
std::optional<int64_t> step_of(const fs::path& p) {
  static const std::regex name(R"(ckpt-step-(\d{1,18})\.safetensors)");
  std::smatch m;
  const std::string file = p.filename().string();
  if (!std::regex_match(file, m, name)) return std::nullopt;
  return std::stoll(m[1].str());
}

std::vector<std::pair<int64_t, fs::path>> checkpoints_in(const fs::path& dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (auto s = step_of(entry.path()); s && entry.is_regular_file()) found.emplace_back(*s, entry.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

// Temporary files of writers that died mid-write (SIGKILL, power loss): save_safetensors names
// them "<target>.tmp.<pid>". Removed when their process is gone.
void remove_orphaned_temporaries(const fs::path& dir) {
  static const std::regex name(R"(ckpt-step-\d+\.(?:shard-\d+-of-\d+\.)?safetensors\.tmp\.(\d+))");
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string file = entry.path().filename().string();
    if (!std::regex_match(file, m, name)) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(m[1].str()));
    if (pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) fs::remove(entry.path(), ec);
  }
}

}  // namespace

int64_t metadata_count(const StringMap& meta, const std::string& key, const std::string& path) {
  auto it = meta.find(key);
  if (it == meta.end()) throw CheckpointError(fmt::format("{}: has no '{}' in its metadata", shown(path, 200), key));
  try {
    return state_count(meta, key);  // the one reading of a count, as the tracked parts' state has it
  } catch (const ConfigError&) {
    throw CheckpointError(
        fmt::format("{}: metadata '{}' = '{}' is not a count", shown(path, 200), key, shown(it->second)));
  }
}

std::string checkpoint_file_name(int64_t step) { return fmt::format("ckpt-step-{:08d}.safetensors", step); }

uint32_t tensor_crc32(const at::Tensor& t, uint32_t crc) {
  const at::Tensor c = t.detach().to(at::kCPU).contiguous();
  uLong value = crc;
  const auto* bytes = static_cast<const Bytef*>(c.data_ptr());
  for (size_t done = 0, n = c.nbytes(); done < n;) {  // zlib takes uInt lengths
    const size_t chunk = std::min<size_t>(n - done, size_t{1} << 30);
    value = crc32(value, bytes + done, static_cast<uInt>(chunk));
    done += chunk;
  }
  return static_cast<uint32_t>(value);
}

std::string weights_fingerprint(const torch::nn::Module& module) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (const auto& [name, t] : module_state(module)) {
    crc = crc32(crc, reinterpret_cast<const Bytef*>(name.data()), static_cast<uInt>(name.size()));
    crc = tensor_crc32(t, static_cast<uint32_t>(crc));
  }
  return fmt::format("{:08x}", crc);
}

std::string save_checkpoint(const std::string& dir, const CheckpointState& state, const torch::nn::Module& model,
                            torch::optim::Optimizer& optimizer, const StringMap& identity, int64_t keep,
                            const at::Device& device, const ShardedSave* sharded) {
  if (keep < 1) throw CheckpointError(fmt::format("keep_checkpoints must be ≥ 1, got {}", keep));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    throw CheckpointError(
        fmt::format("cannot create checkpoint directory {}: {}", dir, ec ? ec.message() : "not a directory"));
  }
  remove_orphaned_temporaries(dir);

  TensorMap tensors;
  std::set<std::string> in_shards;  // ZeRO-3: the trainable parameters (their storage may be gone)
  if (sharded && sharded->params) {
    for (const auto& p : model.named_parameters())
      if (p.value().requires_grad()) in_shards.insert(p.key());
  }
  for (const auto& [name, t] : module_state(model))
    if (!in_shards.count(name)) tensors["model." + name] = t;
  if (!sharded) {  // else the shard files hold them
    for (const auto& [name, t] : optimizer_state(optimizer)) tensors["optim." + name] = t;
    for (const auto& [name, t] : state.tensors) tensors["state." + name] = t;
  }
  tensors["rng.cpu"] = at::detail::getDefaultCPUGenerator().get_state();
  if (device.is_cuda()) tensors["rng.cuda"] = at::globalContext().defaultGenerator(device).get_state();

  StringMap meta = {{kFormatKey, kFormatVersion},
                    {"step", std::to_string(state.step)},
                    {"updates", std::to_string(state.updates)},
                    {"epoch", std::to_string(state.position.epoch)},
                    {"window", std::to_string(state.position.window)},
                    {"offset", std::to_string(state.position.offset)}};
  for (const auto& [k, v] : identity) meta["run." + k] = v;
  for (const auto& [k, v] : state.extra) meta["state." + k] = v;
  if (sharded) {
    meta["zero.shards"] = std::to_string(sharded->world);
    meta["zero.weights"] = sharded->weights_crc;
    if (sharded->params) meta["zero.params"] = "sharded";
  }

  const std::string path = (fs::path(dir) / checkpoint_file_name(state.step)).string();
  save_safetensors(path, tensors, meta);

  // Keep the newest `keep`; the one just written is among them (steps only grow within a run).
  auto all = checkpoints_in(dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
    fs::remove(all[i].second, ec);
    remove_shards(dir, all[i].first);
  }
  return path;
}

int64_t checkpoint_step(const std::string& path) { return step_of(fs::path(path)).value_or(-1); }

std::optional<std::string> latest_checkpoint(const std::string& dir) {
  const auto all = checkpoints_in(dir);
  if (all.empty()) return std::nullopt;
  return all.back().second.string();
}

std::string resolve_checkpoint(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (auto latest = latest_checkpoint(path)) return *latest;
    throw CheckpointError(fmt::format("{}: no checkpoint (ckpt-step-*.safetensors) to resume from", shown(path, 200)));
  }
  if (!fs::exists(path, ec))
    throw CheckpointError(fmt::format("{}: no such checkpoint file or directory", shown(path, 200)));
  return path;
}

std::string resolve_resume(const std::string& resume, const std::string& dir) {
  if (resume.empty()) return "";
  if (resume != "auto") return resolve_checkpoint(resume);
  return dir.empty() ? "" : latest_checkpoint(dir).value_or("");  // without a dir: CheckpointOptions refuses
}

namespace {

// The trainable parameters of `model`, in model order, cut out of the flat vector the shards
// assembled (checked against the model's shapes by check_module_state afterwards).
void add_sharded_parameters(const at::Tensor& flat, const torch::nn::Module& model, TensorMap& model_part) {
  int64_t total = 0;
  for (const auto& p : model.named_parameters())
    if (p.value().requires_grad()) total += p.value().numel();
  if (total != flat.numel())
    throw std::invalid_argument(fmt::format(
        "its shards hold {} parameter elements, this model's trainable parameters {}", flat.numel(), total));
  int64_t at = 0;
  for (const auto& p : model.named_parameters()) {
    if (!p.value().requires_grad()) continue;
    model_part[p.key()] = flat.narrow(0, at, p.value().numel()).view(p.value().sizes());
    at += p.value().numel();
  }
}

}  // namespace

CheckpointState load_checkpoint(const std::string& path, torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                                const StringMap& identity, const TensorMap& targets, const at::Device& device,
                                const ShardSlot* zero) {
  StringMap meta;
  TensorMap tensors;
  ReadInfo read;
  try {
    tensors = load_safetensors(path, &meta, &read);  // verifies the checksum, when there is one
  } catch (const FormatError& e) {
    throw CheckpointError(e.what());
  }
  if (!meta.count(kFormatKey)) {
    if (meta.count("zero.shards"))
      throw CheckpointError(
          fmt::format("{}: a ZeRO shard, not a checkpoint: resume from its ckpt-step-N.safetensors", shown(path, 200)));
    throw CheckpointError(fmt::format("{}: not a gradacc checkpoint (no '{}' metadata; weights go to --init)",
                                      shown(path, 200), kFormatKey));
  }
  // gradacc writes every checkpoint with its checksum: one without cannot be trusted (its key may
  // have been damaged to switch the check off).
  if (!read.verified)
    throw CheckpointError(fmt::format("{}: checkpoint has no '{}' checksum to verify", shown(path, 200), kChecksumKey));
  if (meta.at(kFormatKey) != kFormatVersion) {
    throw CheckpointError(fmt::format("{}: checkpoint format {} is not the supported {}", shown(path, 200),
                                      meta.at(kFormatKey), kFormatVersion));
  }
  // Identity entries added after checkpoints already existed: one without them ran their default.
  static const StringMap kAddedLater = {{"accum_auto", "off"}, {"micro_batching", "fixed"}, {"lr_scaling", "none"}};
  for (const auto& [k, want] : identity) {
    auto it = meta.find("run." + k);
    if (it == meta.end()) {
      const auto added = kAddedLater.find(k);
      if (added != kAddedLater.end() && added->second == want) continue;
      throw CheckpointError(fmt::format("{}: checkpoint does not record the run's '{}'", shown(path, 200), k));
    }
    // Before the token budget's N left the identity, checkpoints recorded micro_batching as tokens:N.
    const bool older_tokens = k == "micro_batching" && want == "tokens" && it->second.rfind("tokens:", 0) == 0;
    if (it->second != want && !older_tokens) {
      throw CheckpointError(fmt::format("{}: checkpoint belongs to another run: its {} is {}, this run's is {}",
                                        shown(path, 200), k, it->second.empty() ? "(none)" : it->second,
                                        want.empty() ? "(none)" : want));
    }
  }

  CheckpointState state;
  state.step = metadata_count(meta, "step", path);
  state.updates = metadata_count(meta, "updates", path);
  if (state.updates > state.step)
    throw CheckpointError(fmt::format("{}: checkpoint has more updates than steps", shown(path, 200)));
  state.position.epoch = metadata_count(meta, "epoch", path);
  state.position.window = metadata_count(meta, "window", path);
  state.position.offset = metadata_count(meta, "offset", path);
  for (const auto& [k, v] : meta) {
    if (k.rfind("state.", 0) == 0) state.extra[k.substr(6)] = v;
  }

  TensorMap model_part, optim_part, state_part;
  at::Tensor rng, cuda_rng;
  for (auto& [name, t] : tensors) {
    if (name.rfind("model.", 0) == 0)
      model_part[name.substr(6)] = t;
    else if (name.rfind("optim.", 0) == 0)
      optim_part[name.substr(6)] = t;
    else if (name.rfind("state.", 0) == 0)
      state_part[name.substr(6)] = t;
    else if (name == "rng.cpu")
      rng = t;
    else if (name == "rng.cuda")
      cuda_rng = t;
    else
      throw CheckpointError(fmt::format("{}: checkpoint holds unexpected tensor '{}'", shown(path, 200), name));
  }
  if (!rng.defined()) throw CheckpointError(fmt::format("{}: checkpoint has no 'rng.cpu' state", shown(path, 200)));
  if (device.is_cuda() != cuda_rng.defined()) {
    throw CheckpointError(fmt::format("{}: checkpoint was taken on {}, this run is on {}", shown(path, 200),
                                      cuda_rng.defined() ? "a CUDA device" : "the CPU", device.str()));
  }

  // The optimizer state (and the masters) in the layout of this run: resharded through the flat
  // state when it was saved in shards or this run is sharded (optimizer_shards.h).
  if (meta.count("zero.shards") || zero) {
    if (meta.count("zero.shards") && (!optim_part.empty() || state_part.count("master_weights")))
      throw CheckpointError(fmt::format("{}: holds optimizer state besides its shards", shown(path, 200)));
    std::vector<at::Tensor> trainable;
    std::vector<int64_t> numels;
    for (const at::Tensor& p : model.parameters()) {
      if (!p.requires_grad()) continue;
      trainable.push_back(p);
      numels.push_back(p.numel());
    }
    TensorMap flat;
    try {
      flat = meta.count("zero.shards") ? read_shards(path, meta) : flatten_optimizer_state(optim_part, numels);
      // ZeRO-3's checkpoints keep the trainable parameters in the shards: the model's part of them.
      if (meta.count("zero.params") != flat.count("params"))
        throw std::invalid_argument(meta.count("zero.params") ? "its shards hold no parameters"
                                                              : "its shards hold parameters it does not record");
      if (flat.count("params")) {
        add_sharded_parameters(flat.at("params"), model, model_part);
        flat.erase("params");
      }
      if (state_part.count("master_weights")) flat["master_weights"] = state_part.at("master_weights");
      state_part.erase("master_weights");
      if (flat.count("master_weights")) {
        const at::Tensor masters = flat.at("master_weights");
        flat.erase("master_weights");
        state_part["master_weights"] = zero ? slice_padded(masters, *zero) : masters;
      }
      optim_part = zero ? slice_optimizer_state(flat, *zero) : split_optimizer_state(flat, trainable);
    } catch (const std::invalid_argument& e) {
      throw CheckpointError(fmt::format("{}: {}", shown(path, 200), e.what()));
    }
  }

  // Check everything, then change anything: a failed load leaves the run as it was.
  for (const auto& [name, target] : targets) {
    auto it = state_part.find(name);
    if (it == state_part.end())
      throw CheckpointError(
          fmt::format("{}: checkpoint has no 'state.{}' that this run needs", shown(path, 200), name));
    if (it->second.sizes() != target.sizes() || it->second.scalar_type() != target.scalar_type()) {
      throw CheckpointError(
          fmt::format("{}: 'state.{}' has another shape or dtype than this run's", shown(path, 200), name));
    }
  }
  for (const auto& [name, t] : state_part) {
    if (!targets.count(name))
      throw CheckpointError(
          fmt::format("{}: checkpoint holds 'state.{}' that this run does not use", shown(path, 200), name));
  }
  try {
    check_module_state(model_part, model, path);
  } catch (const FormatError& e) {
    throw CheckpointError(e.what());
  }
  try {
    load_optimizer_state(optimizer, optim_part);
  } catch (const std::invalid_argument& e) {
    throw CheckpointError(fmt::format("{}: {}", shown(path, 200), e.what()));
  }
  load_module_state(model_part, model, path);
  {
    torch::NoGradGuard no_grad;
    for (const auto& [name, target] : targets) target.copy_(state_part.at(name));
  }
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    try {
      gen.set_state(rng);
    } catch (const std::exception&) {
      throw CheckpointError(fmt::format("{}: 'rng.cpu' is not a CPU generator state", shown(path, 200)));
    }
  }
  if (cuda_rng.defined()) {
    auto gen = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    try {
      gen.set_state(cuda_rng);
    } catch (const std::exception&) {
      throw CheckpointError(fmt::format("{}: 'rng.cuda' is not a CUDA generator state", shown(path, 200)));
    }
  }
  return state;
}

}  // namespace gradacc
