// MasterWeights: an fp32 master copy of a model whose parameters are held in bf16 or fp16.
//
// Why: a low-precision weight cannot absorb an update much smaller than itself (bf16 keeps 8
// significant bits: w + 1e-3·w == w), and a low-precision gradient buffer cannot absorb many small
// micro-batch gradients. So the optimizer updates fp32 masters, the Accumulator sums gradients
// into an fp32 buffer that is the masters' .grad, and after each update the masters are cast back
// into the model's parameters, which the forward pass uses.
//
// Layout: the model's trainable parameters are rebound to views of one contiguous low-precision
// buffer, and the masters are views of one contiguous fp32 buffer in the same order, so the copy
// back after an update is a single cast-copy pass.
//
// Invariants: masters()[i] has the shape of model_params()[i]; the model's parameters stay the same
// tensors (modules and other references see the rebinding). Thread safety: none.
#pragma once

#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include "base/stateful.h"

namespace gradacc {

class MasterWeights : public Stateful {
 public:
  // Takes an fp32 model: its trainable parameters (one device) become the fp32 masters, exactly,
  // and the model itself — parameters and buffers — is converted to `param_dtype` (bf16 or fp16).
  // Throws ConfigError otherwise.
  MasterWeights(torch::nn::Module& model, at::ScalarType param_dtype);

  // The fp32 leaves the optimizer updates (hand these, not the model's, to make_optimizer).
  const std::vector<at::Tensor>& masters() const { return masters_; }
  const std::vector<at::Tensor>& model_params() const { return model_params_; }
  const at::Tensor& flat_masters() const { return flat_masters_; }

  // After each optimizer update: model parameters = masters, rounded to their dtype.
  void copy_to_model();

  // A checkpoint's "master_weights": the flat fp32 masters (the model holds only their rounding).
  std::map<std::string, at::Tensor> state_tensors() const override { return {{"master_weights", flat_masters_}}; }

 private:
  std::vector<at::Tensor> model_params_, masters_;
  at::Tensor flat_model_, flat_masters_;
};

}  // namespace gradacc
