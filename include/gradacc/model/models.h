// The networks gradacc trains. Each maps an input batch to logits and is an ordinary
// torch::nn::Module, so parameter names (as saved in safetensors) are the registered module
// paths documented in docs/models.md.
//
// Thread safety: as any torch::nn::Module — not for concurrent forward passes on one instance.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <torch/nn/module.h>

namespace gradacc {

// Normalization layer of the CNN. BatchNorm is the one whose statistics depend on how a batch is
// split into micro-batches; the others normalize each example on its own.
// Normalization layer. CNN: batch | group | layer | none. GPT: layer | rms.
// BatchNorm is the one whose statistics depend on how a batch is split into micro-batches; the
// others normalize each example (or token) on its own.
enum class NormKind { kBatch, kGroup, kLayer, kNone, kRms };
NormKind parse_norm(const std::string& name);  // "batch" | "group" | "layer" | "none" | "rms"
std::string to_string(NormKind kind);

struct ModelSpec {
  std::string name = "cnn";       // "mlp" | "cnn" | "gpt"
  std::optional<NormKind> norm;   // unset: the model's default (cnn: group, gpt: layer)
  // gpt only
  int64_t layers = 4, heads = 4, dim = 128, context = 128;

  NormKind resolved_norm() const;
  // Throws std::invalid_argument naming a bad name, norm or size.
  void validate() const;
};

inline constexpr int64_t kMaxContext = 8192;

class Network : public torch::nn::Module {
 public:
  // [B, ...] inputs → [B, classes] (or [B, T, vocab]) logits.
  virtual at::Tensor forward(const at::Tensor& inputs) = 0;
  // True when a forward pass mixes the examples of a batch (BatchNorm in training mode): then
  // accumulated and full-batch training are not the same computation.
  virtual bool uses_batch_statistics() const { return false; }
};

// Builds a freshly initialized network; the caller seeds torch's RNG first for reproducibility.
// Throws std::invalid_argument for an unknown name.
std::shared_ptr<Network> make_model(const ModelSpec& spec, int64_t num_classes);

}  // namespace gradacc
