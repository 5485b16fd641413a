#include "gradacc/run/config.h"

#include "gradacc/accumulate/accum_schedule.h"

#include <fstream>
#include <functional>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace gradacc {
namespace {

using json = nlohmann::json;

template <typename T>
T get(const json& v, const std::string& key, const std::string& path) {
  try {
    return v.get<T>();
  } catch (const json::exception&) {
    throw ConfigError(fmt::format("{}: key '{}' has the wrong type ({})", path, key, v.dump()));
  }
}

int64_t get_count(const json& v, const std::string& key, const std::string& path) {
  if (!v.is_number_integer()) throw ConfigError(fmt::format("{}: key '{}' must be an integer, got {}", path, key, v.dump()));
  return v.get<int64_t>();
}

Precision get_precision(const json& v, const std::string& key, const std::string& path) {
  try {
    return parse_precision(get<std::string>(v, key, path));
  } catch (const std::invalid_argument& e) {
    throw ConfigError(fmt::format("{}: key '{}': {}", path, key, e.what()));
  }
}

void apply_optimizer_block(const json& block, TrainConfig& c, const std::string& path) {
  if (!block.is_object()) throw ConfigError(fmt::format("{}: key 'optimizer' must be a name or an object", path));
  for (const auto& [k, v] : block.items()) {
    if (k == "type") {
      std::string name = get<std::string>(v, "optimizer.type", path);
      std::transform(name.begin(), name.end(), name.begin(), ::tolower);
      c.optimizer.name = name;
    } else if (k == "params") {
      for (const auto& [pk, pv] : v.items()) {
        const std::string key = "optimizer.params." + pk;
        if (pk == "lr") c.optimizer.lr = get<double>(pv, key, path);
        else if (pk == "weight_decay") c.optimizer.weight_decay = get<double>(pv, key, path);
        else if (pk == "eps") c.optimizer.eps = get<double>(pv, key, path);
        else if (pk == "momentum") c.optimizer.momentum = get<double>(pv, key, path);
        else if (pk == "nesterov") c.optimizer.nesterov = get<bool>(pv, key, path);
        else if (pk == "betas") {
          const auto betas = get<std::vector<double>>(pv, key, path);
          if (betas.size() != 2) throw ConfigError(fmt::format("{}: key '{}' needs two numbers", path, key));
          c.optimizer.beta1 = betas[0];
          c.optimizer.beta2 = betas[1];
        } else {
          throw ConfigError(fmt::format("{}: unknown key '{}'", path, key));
        }
      }
    } else {
      throw ConfigError(fmt::format("{}: unknown key 'optimizer.{}'", path, k));
    }
  }
}

}  // namespace

void apply_config_file(const std::string& path, TrainConfig& c) {
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("{}: cannot read config file", path));
  json root;
  try {
    root = json::parse(in);
  } catch (const json::parse_error& e) {
    throw ConfigError(fmt::format("{}: not valid JSON (byte {})", path, e.byte));
  }
  if (!root.is_object()) throw ConfigError(fmt::format("{}: the config must be a JSON object", path));

  using Setter = std::function<void(const json&, const std::string&)>;
  const std::map<std::string, Setter> setters = {
      {"train_batch_size", [&](const json& v, const std::string& k) { c.batch.global_batch = get_count(v, k, path); }},
      {"train_micro_batch_size_per_gpu", [&](const json& v, const std::string& k) { c.batch.micro_batch = get_count(v, k, path); }},
      {"gradient_accumulation_steps", [&](const json& v, const std::string& k) { c.batch.accumulation_steps = get_count(v, k, path); }},
      {"world_size", [&](const json& v, const std::string& k) { c.batch.world_size = get_count(v, k, path); }},
      {"gradient_clipping", [&](const json& v, const std::string& k) { c.clip = get<double>(v, k, path); }},
      {"clip", [&](const json& v, const std::string& k) { c.clip = get<double>(v, k, path); }},
      {"model", [&](const json& v, const std::string& k) { c.model.name = get<std::string>(v, k, path); }},
      {"norm", [&](const json& v, const std::string& k) {
         try { c.model.norm = parse_norm(get<std::string>(v, k, path)); }
         catch (const std::invalid_argument& e) { throw ConfigError(fmt::format("{}: key '{}': {}", path, k, e.what())); }
       }},
      {"data", [&](const json& v, const std::string& k) { c.data = get<std::string>(v, k, path); }},
      {"layers", [&](const json& v, const std::string& k) { c.model.layers = get_count(v, k, path); }},
      {"heads", [&](const json& v, const std::string& k) { c.model.heads = get_count(v, k, path); }},
      {"dim", [&](const json& v, const std::string& k) { c.model.dim = get_count(v, k, path); }},
      {"context", [&](const json& v, const std::string& k) { c.model.context = get_count(v, k, path); }},
      {"train_limit", [&](const json& v, const std::string& k) { c.train_limit = get_count(v, k, path); }},
      {"optimizer", [&](const json& v, const std::string& k) {
         if (v.is_string()) c.optimizer.name = get<std::string>(v, k, path);
         else apply_optimizer_block(v, c, path);
       }},
      {"lr", [&](const json& v, const std::string& k) { c.optimizer.lr = get<double>(v, k, path); }},
      {"weight_decay", [&](const json& v, const std::string& k) { c.optimizer.weight_decay = get<double>(v, k, path); }},
      {"momentum", [&](const json& v, const std::string& k) { c.optimizer.momentum = get<double>(v, k, path); }},
      {"nesterov", [&](const json& v, const std::string& k) { c.optimizer.nesterov = get<bool>(v, k, path); }},
      {"schedule", [&](const json& v, const std::string& k) {
         try { c.schedule = parse_schedule(get<std::string>(v, k, path)); }
         catch (const std::invalid_argument& e) { throw ConfigError(fmt::format("{}: key '{}': {}", path, k, e.what())); }
       }},
      {"accum_schedule", [&](const json& v, const std::string& k) { c.accum_schedule = get<std::string>(v, k, path); }},
      {"warmup", [&](const json& v, const std::string& k) { c.warmup = get_count(v, k, path); }},
      {"min_lr", [&](const json& v, const std::string& k) { c.min_lr = get<double>(v, k, path); }},
      {"steps", [&](const json& v, const std::string& k) { c.steps = get_count(v, k, path); }},
      {"epochs", [&](const json& v, const std::string& k) { c.epochs = get_count(v, k, path); }},
      {"seed", [&](const json& v, const std::string& k) { c.seed = static_cast<uint64_t>(get_count(v, k, path)); }},
      {"shuffle", [&](const json& v, const std::string& k) { c.shuffle = get<bool>(v, k, path); }},
      {"partial_window", [&](const json& v, const std::string& k) {
         const auto s = get<std::string>(v, k, path);
         if (s != "rescale" && s != "drop") throw ConfigError(fmt::format("{}: key '{}' must be \"rescale\" or \"drop\", got \"{}\"", path, k, s));
         c.drop_partial = s == "drop";
       }},
      {"log", [&](const json& v, const std::string& k) { c.log_path = get<std::string>(v, k, path); }},
      {"init", [&](const json& v, const std::string& k) { c.init_path = get<std::string>(v, k, path); }},
      {"save", [&](const json& v, const std::string& k) { c.save_path = get<std::string>(v, k, path); }},
      {"precision", [&](const json& v, const std::string& k) { c.precision = get_precision(v, k, path); }},
      {"param_dtype", [&](const json& v, const std::string& k) { c.param_dtype = get_precision(v, k, path); }},
      {"grad_accum_dtype", [&](const json& v, const std::string& k) { c.grad_accum_dtype = get_precision(v, k, path); }},
      {"loss_scale_init", [&](const json& v, const std::string& k) { c.loss_scale_init = get<double>(v, k, path); }},
      {"loss_scale_growth", [&](const json& v, const std::string& k) { c.loss_scale_growth = get<double>(v, k, path); }},
      {"loss_scale_backoff", [&](const json& v, const std::string& k) { c.loss_scale_backoff = get<double>(v, k, path); }},
      {"loss_scale_interval", [&](const json& v, const std::string& k) { c.loss_scale_interval = get_count(v, k, path); }},
      {"sync", [&](const json& v, const std::string& k) {
         try { c.sync = parse_sync(get<std::string>(v, k, path)); }
         catch (const ConfigError& e) { throw ConfigError(fmt::format("{}: key '{}': {}", path, k, e.what())); }
       }},
      {"dist_timeout", [&](const json& v, const std::string& k) { c.dist_timeout = get<double>(v, k, path); }},
      {"bucket_mb", [&](const json& v, const std::string& k) { c.bucket_mb = get<double>(v, k, path); }},
      {"checkpoint_dir", [&](const json& v, const std::string& k) { c.checkpoint_dir = get<std::string>(v, k, path); }},
      {"save_every", [&](const json& v, const std::string& k) { c.save_every = get_count(v, k, path); }},
      {"keep_checkpoints", [&](const json& v, const std::string& k) { c.keep_checkpoints = get_count(v, k, path); }},
      {"threads", [&](const json& v, const std::string& k) { c.threads = static_cast<int>(get_count(v, k, path)); }},
      {"device", [&](const json& v, const std::string& k) { c.device = get<std::string>(v, k, path); }},
      {"tf32", [&](const json& v, const std::string& k) { c.tf32 = get<bool>(v, k, path); }},
  };
  for (const auto& [key, value] : root.items()) {
    auto it = setters.find(key);
    if (it == setters.end()) throw ConfigError(fmt::format("{}: unknown key '{}'", path, key));
    it->second(value, key);
  }
}

void validate(const TrainConfig& c) {
  if (c.steps && c.epochs) throw ConfigError("give either steps or epochs, not both");
  if (c.steps && *c.steps < 1) throw ConfigError(fmt::format("steps must be ≥ 1, got {}", *c.steps));
  if (c.epochs && *c.epochs < 1) throw ConfigError(fmt::format("epochs must be ≥ 1, got {}", *c.epochs));
  if (c.warmup && *c.warmup < 0) throw ConfigError(fmt::format("warmup must be ≥ 0, got {}", *c.warmup));
  if (c.clip < 0) throw ConfigError(fmt::format("clip must be ≥ 0, got {}", c.clip));
  if (c.train_limit < 0) throw ConfigError(fmt::format("train_limit must be ≥ 0, got {}", c.train_limit));
  const Precision precision = c.resolved_precision();
  if (c.param_dtype != Precision::kFp32 && precision != c.param_dtype) {
    throw ConfigError(fmt::format("param_dtype {} computes in {}: precision {} does not fit it", to_string(c.param_dtype),
                                  to_string(c.param_dtype), to_string(precision)));
  }
  if (c.grad_accum_dtype != Precision::kFp32 && c.grad_accum_dtype != c.param_dtype) {
    throw ConfigError(fmt::format("grad_accum_dtype is fp32 or the param_dtype ({}), not {}", to_string(c.param_dtype),
                                  to_string(c.grad_accum_dtype)));
  }
  if (precision != Precision::kFp16 && (c.loss_scale_init || c.loss_scale_growth || c.loss_scale_backoff || c.loss_scale_interval)) {
    throw ConfigError(fmt::format("loss scaling applies to fp16 only; this run's precision is {}", to_string(precision)));
  }
  if (!(c.dist_timeout > 0)) throw ConfigError(fmt::format("dist_timeout must be > 0 seconds, got {}", c.dist_timeout));
  if (!(c.bucket_mb > 0)) throw ConfigError(fmt::format("bucket_mb must be > 0, got {}", c.bucket_mb));
  if (c.save_every < 0) throw ConfigError(fmt::format("save_every must be ≥ 0, got {}", c.save_every));
  if (c.save_every > 0 && c.checkpoint_dir.empty() && c.resume_path.empty()) {
    throw ConfigError("save_every needs a checkpoint directory (--checkpoint-dir)");
  }
  if (c.keep_checkpoints < 1) throw ConfigError(fmt::format("keep_checkpoints must be ≥ 1, got {}", c.keep_checkpoints));
  if (c.stop_at && *c.stop_at < 1) throw ConfigError(fmt::format("stop_at must be ≥ 1, got {}", *c.stop_at));
  if (c.stop_at && c.checkpoint_dir.empty() && c.resume_path.empty()) {
    throw ConfigError("stop_at needs a checkpoint directory (--checkpoint-dir) to continue from");
  }
  if (c.threads < 0) throw ConfigError(fmt::format("threads must be ≥ 0, got {}", c.threads));
  if (!c.accum_schedule.empty()) {
    if (c.batch.global_batch || c.batch.accumulation_steps) {
      throw ConfigError("an accumulation schedule replaces global_batch and accumulation_steps: give micro_batch only");
    }
    if (!c.steps) throw ConfigError("an accumulation schedule needs steps (the run's length in optimizer steps)");
    try {
      AccumSchedule::parse(c.accum_schedule);
    } catch (const PlanError& e) {
      throw ConfigError(e.what());
    }
  }
  try {
    c.model.validate();
  } catch (const std::invalid_argument& e) {
    throw ConfigError(e.what());
  }
  if (c.device != "cpu" && c.device != "cuda" && !c.device.starts_with("cuda:")) {
    throw ConfigError(fmt::format("unknown device '{}' (expected cpu, cuda or cuda:N)", c.device));
  }
}

}  // namespace gradacc

namespace gradacc {

SyncMode parse_sync(const std::string& name) {
  if (name == "window") return SyncMode::kPerWindow;
  if (name == "every-micro-batch") return SyncMode::kEveryMicroBatch;
  throw ConfigError(fmt::format("unknown sync mode '{}' (expected window or every-micro-batch)", name));
}

std::string to_string(SyncMode mode) { return mode == SyncMode::kPerWindow ? "window" : "every-micro-batch"; }

TrainConfig default_job() {
  TrainConfig c;
  c.model.name = "cnn";  // norm unset: each model's default (cnn: group)
  c.optimizer.name = "adamw";
  c.optimizer.lr = 2e-3;
  c.optimizer.weight_decay = 0.01;
  c.schedule = ScheduleKind::kCosine;
  c.clip = 1.0;
  c.epochs = 3;
  return c;
}

void apply_default_batch(TrainConfig& c) {
  const auto& b = c.batch;
  if (!b.global_batch && !b.micro_batch && !b.accumulation_steps) {
    if (!c.accum_schedule.empty()) {
      c.batch.micro_batch = 32;
      return;
    }
    c.batch.global_batch = 256;
    c.batch.micro_batch = 32;
  }
}

}  // namespace gradacc
