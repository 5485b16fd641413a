// ModelSpec: which of gradacc's own networks to build, and its sizes. (A library user brings any
// torch::nn::Module instead; see run/trainer.h.)
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace gradacc {

enum class ModelKind { kMlp, kCnn, kGpt };
ModelKind parse_model_kind(const std::string& name);  // "mlp" | "cnn" | "gpt"; ConfigError otherwise
std::string to_string(ModelKind kind);

// Normalization layer. CNN: batch | group | layer | none. GPT: layer | rms. The MLP has none.
// BatchNorm is the one whose statistics depend on how a batch is split into micro-batches; the
// others normalize each example (or token) on its own.
enum class NormKind { kBatch, kGroup, kLayer, kNone, kRms };
NormKind parse_norm(const std::string& name);  // "batch" | "group" | "layer" | "none" | "rms"
std::string to_string(NormKind kind);

inline constexpr int64_t kMaxContext = 8192;
inline constexpr int64_t kMaxGptSize = 65536;  // layers, heads, dim: a bound that keeps sizes sane

struct ModelSpec {
  ModelKind kind = ModelKind::kCnn;
  std::optional<NormKind> norm;  // unset: the model's default (cnn: group, gpt: layer)
  // gpt only
  int64_t layers = 4, heads = 4, dim = 128, context = 128;
  // mlp and cnn: dropout on the hidden features of their fully connected layers, in training mode
  // (its masks come from the device's default generator, which gradient caching replays).
  double dropout = 0.0;
  // gpt on CUDA: each residual add and the LayerNorm/RMSNorm after it in one fused kernel
  // (model/add_norm.h); false runs ATen's separate ops, for comparison. No effect on the CPU.
  bool fused_kernels = true;

  NormKind resolved_norm() const;
  bool is_text() const { return kind == ModelKind::kGpt; }
  // Throws ConfigError naming a bad norm or size.
  void validate() const;
};

}  // namespace gradacc
