// A decoder-only transformer (GPT-2 layout, pre-norm), documented exactly in docs/models.md.
//
//   x = wte[tokens] + wpe[positions]
//   for each block h.i:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
//   logits = ln_f(x) · wteᵀ            (the output head is tied to the token embedding)
//
// attn: c_attn (D → 3D) gives q, k, v; heads of D/H; causal scaled-dot-product attention; c_proj.
// mlp:  c_fc (D → 4D), GELU (tanh-free, exact erf form), c_proj (4D → D).
#include "builtin/gpt.h"

#include <cmath>

#include <ATen/ops/arange.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/logical_and.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/scaled_dot_product_attention.h>
#include <ATen/ops/unbind.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "model/add_norm.h"

namespace gradacc {
namespace {

constexpr double kNormEps = 1e-5;

// LayerNorm (weight and bias) or RMSNorm (weight only) over the last dimension; on CUDA one fused
// kernel that also adds the residual branch (model/add_norm.h), unless --fused-kernels off.
class TokenNorm : public torch::nn::Module {
 public:
  TokenNorm(NormKind kind, int64_t dim, bool fused) {
    options_.eps = kNormEps;
    options_.rms = kind == NormKind::kRms;
    options_.fused = fused;
    weight_ = register_parameter("weight", at::ones({dim}));
    if (kind == NormKind::kLayer) bias_ = register_parameter("bias", at::zeros({dim}));
  }
  at::Tensor forward(const at::Tensor& x) { return add_norm(x, {}, weight_, bias_, options_).normed; }
  // {x + branch, norm(x + branch)}
  AddNormResult add_forward(const at::Tensor& x, const at::Tensor& branch) {
    return add_norm(x, branch, weight_, bias_, options_);
  }

 private:
  AddNormOptions options_;
  at::Tensor weight_, bias_;
};

// Scaled-dot-product attention, causal (mask undefined) or under `mask`. On the CPU under
// low-precision autocast it runs in fp32: LibTorch's CPU flash-attention backward takes 3.7× longer
// in bf16 than in fp32 (docs/benchmarks.md), while the GEMMs around it gain from bf16 and stay in it.
at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  const auto run = [&](const at::Tensor& q_, const at::Tensor& k_, const at::Tensor& v_) {
    return mask.defined() ? at::scaled_dot_product_attention(q_, k_, v_, mask)
                          : at::scaled_dot_product_attention(q_, k_, v_, /*attn_mask=*/{}, /*dropout_p=*/0.0,
                                                             /*is_causal=*/true);
  };
  const bool low = q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf;
  if (q.is_cpu() && low) {  // autocast made q, k, v bf16 (or fp16), or the parameters are
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
    return run(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat)).to(q.scalar_type());
  }
  return run(q, k, v);
}

class Block : public torch::nn::Module {
 public:
  Block(const ModelSpec& s, NormKind norm) : heads_(s.heads) {
    ln_1_ = register_module("ln_1", std::make_shared<TokenNorm>(norm, s.dim, s.fused_kernels));
    auto attn = register_module("attn", std::make_shared<torch::nn::Module>());
    c_attn_ = attn->register_module("c_attn", torch::nn::Linear(s.dim, 3 * s.dim));
    attn_proj_ = attn->register_module("c_proj", torch::nn::Linear(s.dim, s.dim));
    ln_2_ = register_module("ln_2", std::make_shared<TokenNorm>(norm, s.dim, s.fused_kernels));
    auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
    c_fc_ = mlp->register_module("c_fc", torch::nn::Linear(s.dim, 4 * s.dim));
    mlp_proj_ = mlp->register_module("c_proj", torch::nn::Linear(4 * s.dim, s.dim));
  }

  // mask: undefined for plain causal attention (the fast path), else [B, 1, T, T], true where a
  // query may attend (packed rows: its own sequence, causally).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask) {
    const int64_t B = x.size(0), T = x.size(1), D = x.size(2), hd = D / heads_;
    // [B, T, 3D] → three [B, H, T, D/H]
    auto qkv = linear(ln_1_->forward(x), c_attn_).view({B, T, 3, heads_, hd}).permute({2, 0, 3, 1, 4});
    // unbind, not three select()s: its backward is one stack, where each select_backward would
    // zero-fill and add a full [3, B, H, T, D/H] gradient (docs/gpu.md).
    const std::vector<at::Tensor> q_k_v = qkv.unbind(0);
    at::Tensor y = attend(q_k_v[0], q_k_v[1], q_k_v[2], mask);
    const auto [h, normed] = ln_2_->add_forward(x, linear(y.transpose(1, 2).reshape({B, T, D}), attn_proj_));
    return h + linear(at::gelu(linear(normed, c_fc_)), mlp_proj_);
  }

 private:
  // ATen's linear, not the C++ frontend's Linear::forward: for [B, T, D] input the latter runs an mm
  // and a separate pass adding the bias (torch/nn/functional/linear.h); ATen folds the rows into one
  // addmm, as PyTorch's own nn.Linear does.
  static at::Tensor linear(const at::Tensor& x, const torch::nn::Linear& l) {
    return at::linear(x, l->weight, l->bias);
  }

  int64_t heads_;
  std::shared_ptr<TokenNorm> ln_1_;
  torch::nn::Linear c_attn_{nullptr}, attn_proj_{nullptr};
  std::shared_ptr<TokenNorm> ln_2_;
  torch::nn::Linear c_fc_{nullptr}, mlp_proj_{nullptr};
};

class Gpt : public Network {
 public:
  Gpt(const ModelSpec& s, int64_t vocab) : context_(s.context) {
    const NormKind norm = s.resolved_norm();
    wte_ = register_module("wte", torch::nn::Embedding(vocab, s.dim));
    wpe_ = register_module("wpe", torch::nn::Embedding(s.context, s.dim));
    auto h = register_module("h", std::make_shared<torch::nn::Module>());
    for (int64_t i = 0; i < s.layers; ++i) {
      blocks_.push_back(h->register_module(std::to_string(i), std::make_shared<Block>(s, norm)));
      units.add(blocks_.back());
    }
    ln_f_ = register_module("ln_f", std::make_shared<TokenNorm>(norm, s.dim, s.fused_kernels));
    // GPT-2 initialization: N(0, 0.02) for weights and embeddings, zero biases, and residual
    // projections scaled by 1/√(2·layers) so the residual stream keeps its variance.
    torch::NoGradGuard no_grad;
    for (auto& item : named_parameters()) {
      const std::string& name = item.key();
      at::Tensor p = item.value();
      if (name.ends_with(".bias") && name.find("ln_") == std::string::npos)
        p.zero_();
      else if (name.find("ln_") != std::string::npos)
        continue;  // norms: ones / zeros already
      else if (name.ends_with("c_proj.weight"))
        p.normal_(0.0, 0.02 / std::sqrt(2.0 * static_cast<double>(s.layers)));
      else
        p.normal_(0.0, 0.02);
    }
  }

  at::Tensor forward(const at::Tensor& tokens) override { return run(tokens, {}, {}); }

  // Packed rows: positions restart at 0 for each sequence, and attention is block-diagonal and
  // causal (a query sees the earlier positions of its own sequence only), so every token's loss is
  // the one it has alone in a padded row.
  at::Tensor forward_batch(const Batch& b) override {
    if (!b.segments.defined()) return run(b.inputs, {}, {});
    const int64_t T = b.inputs.size(1);
    const at::Tensor same = b.segments.unsqueeze(2).eq(b.segments.unsqueeze(1));  // [B, T, T]
    const at::Tensor causal = at::ones({T, T}, b.segments.options().dtype(at::kBool)).tril();
    return run(b.inputs, b.positions, same.logical_and(causal).unsqueeze(1));
  }

  at::Tensor run(const at::Tensor& tokens, const at::Tensor& positions, const at::Tensor& mask) {
    const int64_t T = tokens.size(1);
    TORCH_CHECK(T <= context_, "sequence of ", T, " tokens exceeds the model's context of ", context_);
    at::Tensor x =
        wte_->forward(tokens) + wpe_->forward(positions.defined() ? positions : at::arange(T, tokens.options()));
    for (size_t i = 0; i < blocks_.size(); ++i) {
      x = units.run(
          i, [b = blocks_[i], mask](const at::Tensor& in) { return b->forward(in, mask); }, x);
    }
    return at::matmul(ln_f_->forward(x), wte_->weight.t());  // tied head
  }
  bool set_activation_checkpointing(bool on) override { return units.set_checkpointing(on); }

 private:
  int64_t context_;
  torch::nn::Embedding wte_{nullptr}, wpe_{nullptr};
  std::vector<std::shared_ptr<Block>> blocks_;
  std::shared_ptr<TokenNorm> ln_f_;
};

}  // namespace

std::shared_ptr<Network> make_gpt(const ModelSpec& spec, int64_t vocab) { return std::make_shared<Gpt>(spec, vocab); }

int64_t gpt_parameter_count(const ModelSpec& s, int64_t vocab) {
  const int64_t d = s.dim, norm = s.resolved_norm() == NormKind::kRms ? d : 2 * d;
  return vocab * d + s.context * d + s.layers * (12 * d * d + 9 * d + 2 * norm) + norm;
}

}  // namespace gradacc
