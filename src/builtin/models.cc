#include "builtin/models.h"

#include <ATen/ops/dropout.h>
#include <ATen/ops/max_pool2d.h>
#include <ATen/ops/relu.h>
#include <fmt/format.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "builtin/gpt.h"
#include "gradacc/errors.h"

namespace gradacc {

namespace {

// 784 → 256 → 128 → classes, ReLU (and dropout, when asked) between.
class Mlp : public Network {
 public:
  Mlp(int64_t in_features, int64_t classes, double dropout)
      : dropout_(dropout),
        fc1_(register_module("fc1", torch::nn::Linear(in_features, 256))),
        fc2_(register_module("fc2", torch::nn::Linear(256, 128))),
        fc3_(register_module("fc3", torch::nn::Linear(128, classes))) {}

  at::Tensor forward(const at::Tensor& x) override {
    at::Tensor h = x.flatten(1);
    h = hidden(fc1_->forward(h));
    h = hidden(fc2_->forward(h));
    return fc3_->forward(h);
  }

 private:
  at::Tensor hidden(const at::Tensor& x) {
    const at::Tensor h = at::relu(x);
    return dropout_ > 0.0 ? at::dropout(h, dropout_, is_training()) : h;
  }

  double dropout_;
  torch::nn::Linear fc1_, fc2_, fc3_;
};

// A normalization slot over `channels` feature maps; kNone registers nothing.
class NormSlot {
 public:
  NormSlot(torch::nn::Module& owner, const std::string& name, NormKind kind, int64_t channels) : kind_(kind) {
    switch (kind) {
      case NormKind::kBatch: batch_ = owner.register_module(name, torch::nn::BatchNorm2d(channels)); break;
      case NormKind::kGroup:  // 8 groups: statistics per example and group of channels
        group_ = owner.register_module(name, torch::nn::GroupNorm(torch::nn::GroupNormOptions(8, channels)));
        break;
      case NormKind::kLayer:  // one group: statistics per example over (C, H, W), per-channel affine
        group_ = owner.register_module(name, torch::nn::GroupNorm(torch::nn::GroupNormOptions(1, channels)));
        break;
      case NormKind::kNone:
      case NormKind::kRms: break;
    }
  }
  // The module registered (null for none), for the unit it belongs to.
  std::shared_ptr<torch::nn::Module> module() const {
    if (kind_ == NormKind::kBatch) return batch_.ptr();
    if (group_) return group_.ptr();
    return nullptr;
  }
  std::vector<at::Tensor> parameters() const {
    if (kind_ == NormKind::kBatch) return batch_->parameters();
    if (kind_ == NormKind::kNone || kind_ == NormKind::kRms) return {};
    return group_->parameters();
  }
  at::Tensor operator()(const at::Tensor& x) {
    if (kind_ == NormKind::kBatch) return batch_->forward(x);
    if (kind_ == NormKind::kNone) return x;
    return group_->forward(x);
  }

 private:
  NormKind kind_;
  torch::nn::BatchNorm2d batch_{nullptr};
  torch::nn::GroupNorm group_{nullptr};
};

// conv(1→32) norm relu pool → conv(32→64) norm relu pool → fc(3136→128) relu [dropout] →
// fc(128→classes).
class Cnn : public Network {
 public:
  Cnn(NormKind norm, int64_t classes, double dropout)
      : norm_kind_(norm),
        dropout_(dropout),
        conv1_(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 32, 3).padding(1)))),
        norm1_(*this, "norm1", norm, 32),
        conv2_(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 3).padding(1)))),
        norm2_(*this, "norm2", norm, 64),
        fc1_(register_module("fc1", torch::nn::Linear(64 * 7 * 7, 128))),
        fc2_(register_module("fc2", torch::nn::Linear(128, classes))) {
    declare_stage(conv1_, norm1_);
    declare_stage(conv2_, norm2_);
  }

  at::Tensor forward(const at::Tensor& x) override {
    at::Tensor h = units.run(0, stage(conv1_, norm1_), x);  // 32×14×14
    h = units.run(1, stage(conv2_, norm2_), h);             // 64×7×7
    h = at::relu(fc1_->forward(h.flatten(1)));
    if (dropout_ > 0.0) h = at::dropout(h, dropout_, is_training());
    return fc2_->forward(h);
  }
  bool uses_batch_statistics() const override { return norm_kind_ == NormKind::kBatch && is_training(); }
  bool set_activation_checkpointing(bool on) override {
    // BatchNorm's running statistics would be updated twice (forward and recompute).
    if (on && norm_kind_ == NormKind::kBatch) return false;
    return units.set_checkpointing(on);
  }

 private:
  void declare_stage(const torch::nn::Conv2d& conv, const NormSlot& norm) {
    std::vector<std::shared_ptr<torch::nn::Module>> modules;
    modules.push_back(conv.ptr());
    if (auto m = norm.module()) modules.push_back(std::move(m));
    units.add(std::move(modules));
  }

  // conv → norm → relu → 2×2 max-pool: one unit each.
  static Segment stage(torch::nn::Conv2d& conv, NormSlot& norm) {
    return [&conv, &norm](const at::Tensor& in) { return at::max_pool2d(at::relu(norm(conv->forward(in))), 2); };
  }

  NormKind norm_kind_;
  double dropout_;
  torch::nn::Conv2d conv1_;
  NormSlot norm1_;
  torch::nn::Conv2d conv2_;
  NormSlot norm2_;
  torch::nn::Linear fc1_, fc2_;
};

}  // namespace

std::shared_ptr<Network> make_model(const ModelSpec& spec, int64_t num_classes) {
  spec.validate();
  switch (spec.kind) {
    case ModelKind::kMlp: return std::make_shared<Mlp>(28 * 28, num_classes, spec.dropout);
    case ModelKind::kCnn: return std::make_shared<Cnn>(spec.resolved_norm(), num_classes, spec.dropout);
    case ModelKind::kGpt: return make_gpt(spec, num_classes);
  }
  throw ConfigError("unknown model kind");
}

}  // namespace gradacc
