#include "gradacc/optimizer.h"

#include <cxxabi.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <sstream>
#include <stdexcept>

#include <ATen/ops/empty.h>
#include <ATen/ops/scalar_tensor.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include "gradacc/errors.h"
#include "optim/fused_adamw.h"

namespace gradacc {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<at::Tensor>& params,
                                                        const OptimizerOptions& o) {
  auto check = [](bool ok, const std::string& msg) {
    if (!ok) throw ConfigError(msg);
  };
  check(o.lr > 0 && o.lr <= 1e3 && std::isfinite(o.lr), fmt::format("lr must lie in (0, 1000], got {}", o.lr));
  check(o.weight_decay >= 0 && o.weight_decay <= 1e3 && std::isfinite(o.weight_decay),
        fmt::format("weight_decay must lie in [0, 1000], got {}", o.weight_decay));
  const OptimizerOptions defaults;
  const bool adam_like = o.name == "adam" || o.name == "adamw";
  // Settings of another optimizer are refused, not ignored: they were meant to change something.
  if (adam_like) {
    check(o.momentum == 0 && !o.nesterov,
          fmt::format("momentum and nesterov apply to sgd, not {} (it has betas)", o.name));
  }
  if (o.name == "sgd") {
    check(o.beta1 == defaults.beta1 && o.beta2 == defaults.beta2 && o.eps == defaults.eps,
          "betas and eps apply to adam and adamw, not sgd");
  }
  if (o.name == "sgd") {
    check(o.momentum >= 0 && o.momentum < 1, fmt::format("momentum must lie in [0, 1), got {}", o.momentum));
    check(!o.nesterov || o.momentum > 0, "nesterov needs momentum > 0");
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weight_decay));
  }
  check(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1,
        fmt::format("betas must lie in [0, 1), got ({}, {})", o.beta1, o.beta2));
  check(o.eps > 0 && o.eps < 1 && std::isfinite(o.eps), fmt::format("eps must lie in (0, 1), got {}", o.eps));
  const auto adam_options =
      torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay);
  if (o.name == "adam" || o.name == "adamw") {
    if (o.fused) return std::make_unique<FusedAdamW>(params, adam_options, /*decoupled=*/o.name == "adamw");
    if (o.name == "adamw") return std::make_unique<torch::optim::AdamW>(params, adam_options);
    return std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
  }
  throw ConfigError(fmt::format("unknown optimizer '{}' (expected sgd, adam or adamw)", o.name));
}

OptimizerFactory optimizer_factory(const OptimizerOptions& options) {
  return [options](const std::vector<at::Tensor>& params) { return make_optimizer(params, options); };
}

namespace {

std::vector<at::Tensor> all_params(torch::optim::Optimizer& optimizer) {
  std::vector<at::Tensor> params;
  for (const auto& group : optimizer.param_groups()) {
    for (const at::Tensor& p : group.params()) params.push_back(p);
  }
  return params;
}

std::string key(size_t i, const char* field) { return fmt::format("{}.{}", i, field); }

// LibTorch's Adam and AdamW keep the same fields in two unrelated state classes.
template <typename State>
void add_adam_state(std::map<std::string, at::Tensor>& out, size_t i, const State& s) {
  out[key(i, "exp_avg")] = s.exp_avg();
  out[key(i, "exp_avg_sq")] = s.exp_avg_sq();
  out[key(i, "step")] = at::scalar_tensor(s.step(), at::kLong);
}

}  // namespace

static bool has_named_state(const torch::optim::Optimizer& o) {
  return dynamic_cast<const FusedAdamW*>(&o) || dynamic_cast<const torch::optim::SGD*>(&o) ||
         dynamic_cast<const torch::optim::Adam*>(&o) || dynamic_cast<const torch::optim::AdamW*>(&o);
}

bool elementwise_optimizer(const torch::optim::Optimizer& o) {
  // amsgrad keeps an elementwise maximum too; every option of these three is elementwise.
  return has_named_state(o);
}

std::string optimizer_kind(const torch::optim::Optimizer& o) {
  if (auto* f = dynamic_cast<const FusedAdamW*>(&o)) return f->decoupled() ? "adamw (fused)" : "adam (fused)";
  if (dynamic_cast<const torch::optim::SGD*>(&o)) return "sgd";
  if (dynamic_cast<const torch::optim::AdamW*>(&o)) return "adamw";
  if (dynamic_cast<const torch::optim::Adam*>(&o)) return "adam";
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(typeid(o).name(), nullptr, nullptr, &status),
                                              std::free);
  return status == 0 && name ? name.get() : typeid(o).name();
}

std::string optimizer_hyperparameters(const torch::optim::Optimizer& o) {
  std::string out;
  for (const auto& group : o.param_groups()) {
    const auto& opts = group.options();
    std::string g = fmt::format("lr={}", opts.get_lr());
    if (auto* s = dynamic_cast<const torch::optim::SGDOptions*>(&opts)) {
      g += fmt::format(" momentum={} dampening={} nesterov={} weight_decay={}", s->momentum(), s->dampening(),
                       s->nesterov(), s->weight_decay());
    } else if (auto* a = dynamic_cast<const torch::optim::AdamWOptions*>(&opts)) {
      g += fmt::format(" betas=({},{}) eps={} weight_decay={} amsgrad={}", std::get<0>(a->betas()),
                       std::get<1>(a->betas()), a->eps(), a->weight_decay(), a->amsgrad());
    } else if (auto* a = dynamic_cast<const torch::optim::AdamOptions*>(&opts)) {
      g += fmt::format(" betas=({},{}) eps={} weight_decay={} amsgrad={}", std::get<0>(a->betas()),
                       std::get<1>(a->betas()), a->eps(), a->weight_decay(), a->amsgrad());
    } else if (auto* r = dynamic_cast<const torch::optim::RMSpropOptions*>(&opts)) {
      g += fmt::format(" alpha={} eps={} weight_decay={} momentum={} centered={}", r->alpha(), r->eps(),
                       r->weight_decay(), r->momentum(), r->centered());
    } else if (auto* a = dynamic_cast<const torch::optim::AdagradOptions*>(&opts)) {
      g += fmt::format(" lr_decay={} weight_decay={} eps={}", a->lr_decay(), a->weight_decay(), a->eps());
    }
    out += (out.empty() ? "" : "; ") + g;
  }
  return optimizer_kind(o) + ": " + out;
}

std::map<std::string, at::Tensor> optimizer_state(torch::optim::Optimizer& optimizer) {
  std::map<std::string, at::Tensor> out;
  if (!has_named_state(optimizer)) {  // any other optimizer: LibTorch's own archive, as bytes
    torch::serialize::OutputArchive archive;
    optimizer.save(archive);
    std::ostringstream bytes;
    archive.save_to(bytes);
    const std::string b = bytes.str();
    at::Tensor t = at::empty({static_cast<int64_t>(b.size())}, at::kByte);
    std::memcpy(t.data_ptr(), b.data(), b.size());
    out["archive"] = t;
    return out;
  }
  if (auto* fused = dynamic_cast<FusedAdamW*>(&optimizer)) {
    for (size_t i = 0; i < fused->exp_avg().size(); ++i) {
      out[key(i, "exp_avg")] = fused->exp_avg()[i];
      out[key(i, "exp_avg_sq")] = fused->exp_avg_sq()[i];
      out[key(i, "step")] = fused->step_counts()[i];
    }
    return out;
  }
  const std::vector<at::Tensor> params = all_params(optimizer);
  for (size_t i = 0; i < params.size(); ++i) {
    auto it = optimizer.state().find(params[i].unsafeGetTensorImpl());
    if (it == optimizer.state().end()) continue;
    if (auto* sgd = dynamic_cast<torch::optim::SGDParamState*>(it->second.get())) {
      if (sgd->momentum_buffer().defined()) out[key(i, "momentum_buffer")] = sgd->momentum_buffer();
    } else if (auto* adam = dynamic_cast<torch::optim::AdamParamState*>(it->second.get())) {
      add_adam_state(out, i, *adam);
    } else if (auto* adamw = dynamic_cast<torch::optim::AdamWParamState*>(it->second.get())) {
      add_adam_state(out, i, *adamw);
    } else {
      throw ConfigError("optimizer_state: unsupported optimizer state type");
    }
  }
  return out;
}

void load_optimizer_state(torch::optim::Optimizer& optimizer, const std::map<std::string, at::Tensor>& state) {
  if (!has_named_state(optimizer)) {
    auto it = state.find("archive");
    if (state.size() != 1 || it == state.end() || it->second.scalar_type() != at::kByte || it->second.dim() != 1) {
      throw ConfigError(
          fmt::format("the state of a {} is saved as one uint8 'archive' tensor", optimizer_kind(optimizer)));
    }
    const at::Tensor bytes = it->second.contiguous().cpu();
    std::istringstream in(std::string(static_cast<const char*>(bytes.data_ptr()), bytes.numel()));
    torch::serialize::InputArchive archive;
    try {
      archive.load_from(in);
      optimizer.load(archive);
    } catch (const c10::Error& e) {
      const std::string what = e.what();
      throw ConfigError(fmt::format("the optimizer archive does not load: {}", what.substr(0, what.find('\n'))));
    }
    return;
  }
  // Which fields this optimizer keeps per parameter.
  std::vector<const char*> fields;
  const bool fused = dynamic_cast<FusedAdamW*>(&optimizer) != nullptr;
  const bool sgd = dynamic_cast<torch::optim::SGD*>(&optimizer) != nullptr;
  const bool adam = dynamic_cast<torch::optim::Adam*>(&optimizer) != nullptr;
  const bool adamw = dynamic_cast<torch::optim::AdamW*>(&optimizer) != nullptr;
  if (fused || adam || adamw)
    fields = {"exp_avg", "exp_avg_sq", "step"};
  else if (sgd)
    fields = {"momentum_buffer"};
  else
    throw ConfigError("load_optimizer_state: unsupported optimizer");

  // Check everything before changing anything. A parameter has all of its fields or none
  // (LibTorch makes state lazily, at a parameter's first update).
  const std::vector<at::Tensor> params = all_params(optimizer);
  size_t matched = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    size_t present = 0;
    for (const char* f : fields) present += state.count(key(i, f));
    if (present == 0 && !fused) continue;
    for (const char* f : fields) {
      auto it = state.find(key(i, f));
      if (it == state.end()) throw ConfigError(fmt::format("optimizer state has no '{}'", key(i, f)));
      const bool scalar = std::string(f) == "step";
      if (scalar ? it->second.numel() != 1 : it->second.sizes() != params[i].sizes()) {
        throw ConfigError(fmt::format("optimizer state '{}' has shape [{}], the parameter needs [{}]", key(i, f),
                                      fmt::join(it->second.sizes(), "x"),
                                      scalar ? "" : fmt::format("{}", fmt::join(params[i].sizes(), "x"))));
      }
    }
    matched += fields.size();
  }
  if (matched != state.size()) {
    for (const auto& [name, t] : state) {
      const auto dot = name.find('.');
      size_t i = params.size();
      try {
        i = std::stoul(name.substr(0, dot));
      } catch (const std::exception&) {
      }
      bool known = false;
      for (const char* f : fields) known = known || (dot != std::string::npos && name.substr(dot + 1) == f);
      if (!known || i >= params.size()) {
        throw ConfigError(fmt::format("optimizer state '{}' does not belong to this {} optimizer over {} parameters",
                                      name, sgd ? "sgd" : "adam/adamw", params.size()));
      }
    }
  }

  torch::NoGradGuard no_grad;
  if (fused) {
    auto* f = dynamic_cast<FusedAdamW*>(&optimizer);
    for (size_t i = 0; i < params.size(); ++i) {
      if (!state.count(key(i, "step"))) continue;
      f->exp_avg()[i].copy_(state.at(key(i, "exp_avg")));
      f->exp_avg_sq()[i].copy_(state.at(key(i, "exp_avg_sq")));
      f->step_counts()[i].copy_(state.at(key(i, "step")).reshape({}));
    }
    return;
  }
  auto& slots = optimizer.state();
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& p = params[i];
    auto copy_of = [&](const char* f) { return state.at(key(i, f)).to(p.options()).clone(); };
    if (sgd) {
      if (!state.count(key(i, "momentum_buffer"))) continue;
      auto s = std::make_unique<torch::optim::SGDParamState>();
      s->momentum_buffer(copy_of("momentum_buffer"));
      slots[p.unsafeGetTensorImpl()] = std::move(s);
      continue;
    }
    if (!state.count(key(i, "step"))) continue;
    const int64_t step = state.at(key(i, "step")).to(at::kLong).item<int64_t>();
    if (adam) {
      auto s = std::make_unique<torch::optim::AdamParamState>();
      s->step(step).exp_avg(copy_of("exp_avg")).exp_avg_sq(copy_of("exp_avg_sq"));
      slots[p.unsafeGetTensorImpl()] = std::move(s);
    } else {
      auto s = std::make_unique<torch::optim::AdamWParamState>();
      s->step(step).exp_avg(copy_of("exp_avg")).exp_avg_sq(copy_of("exp_avg_sq"));
      slots[p.unsafeGetTensorImpl()] = std::move(s);
    }
  }
}

void set_lr(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

}  // namespace gradacc
