// The networks gradacc trains. Each maps an input batch to logits and is an ordinary
// torch::nn::Module, so parameter names (as saved in safetensors) are the registered module
// paths documented in docs/models.md.
//
// Thread safety: as any torch::nn::Module — not for concurrent forward passes on one instance.
#pragma once

#include <memory>

#include "builtin/gpt.h"
#include "builtin/model_spec.h"
#include "builtin/network.h"

namespace gradacc {

// Builds a freshly initialized network; the caller seeds torch's RNG first for reproducibility.
// Throws ConfigError for an unknown name.
std::shared_ptr<Network> make_model(const ModelSpec& spec, int64_t num_classes);

}  // namespace gradacc
