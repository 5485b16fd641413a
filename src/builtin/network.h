// Network: what every one of gradacc's own networks is (the mlp, the cnn, the gpt): a
// torch::nn::Module mapping a batch to logits, with its blocks declared as Units.
//
// Thread safety: as any torch::nn::Module — not for concurrent forward passes on one instance.
#pragma once

#include <torch/nn/module.h>

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

}  // namespace gradacc
