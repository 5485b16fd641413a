// The networks gradacc trains. Each maps an input batch to logits and is an ordinary
// torch::nn::Module, so parameter names (as saved in safetensors) are the registered module
// paths documented in docs/models.md.
//
// Thread safety: as any torch::nn::Module — not for concurrent forward passes on one instance.
#pragma once

#include <memory>
#include <string>

#include <torch/nn/module.h>

#include "builtin/model_spec.h"

#include "gradacc/dataset.h"
#include "gradacc/units.h"

namespace gradacc {

class Network : public torch::nn::Module {
 public:
  // [B, ...] inputs → [B, classes] (or [B, T, vocab]) logits.
  virtual at::Tensor forward(const at::Tensor& inputs) = 0;
  // A whole batch: packed sequences (Batch::positions, segments) need more than the inputs. The
  // gpt reads them; the others run forward(inputs). Model::of uses this method when a module has it.
  virtual at::Tensor forward_batch(const Batch& batch) { return forward(batch.inputs); }
  // True when a forward pass mixes the examples of a batch (BatchNorm in training mode): then
  // accumulated and full-batch training are not the same computation.
  virtual bool uses_batch_statistics() const { return false; }
  // Activation checkpointing of the network's blocks (gpt: each transformer block; cnn: each conv
  // stage; checkpointed() in gradacc/units.h). Returns false, changing nothing, when the network has
  // no blocks to checkpoint (the mlp).
  virtual bool set_activation_checkpointing(bool on) { return !on; }
  // The network's blocks (the gpt's transformer blocks, the cnn's conv stages; none for the mlp):
  // the units ZeRO-3 gathers one at a time and checkpointing recomputes (gradacc/units.h).
  Units units;
};

// Parameters of gradacc's gpt with this spec over `vocab` tokens, computed without building it:
// V·D + C·D + L·(12D² + 9D + 2n) + n, n = 2D for LayerNorm (weight, bias), D for RMSNorm.
int64_t gpt_parameter_count(const ModelSpec& spec, int64_t vocab);

// Builds a freshly initialized network; the caller seeds torch's RNG first for reproducibility.
// Throws ConfigError for an unknown name.
std::shared_ptr<Network> make_model(const ModelSpec& spec, int64_t num_classes);

}  // namespace gradacc
