// Small models of each of gradacc's kinds and data to match, for the memory tests (not part of the
// library): the planner, activation checkpointing and the out-of-memory replay measure these.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ops/rand.h>
#include <ATen/ops/randint.h>
#include <torch/utils.h>

#include "builtin/models.h"
#include "builtin/text.h"
#include "gradacc/dataset.h"

namespace gradacc::testing {

// A gpt of 3 blocks of width 32 over 48 bytes; the cnn and the mlp as they are.
inline ModelSpec spec_of(ModelKind kind) {
  ModelSpec s;
  s.kind = kind;
  s.layers = 3;
  s.heads = 2;
  s.dim = 32;
  s.context = 48;
  return s;
}

// Random images (cnn, mlp) or random bytes in sequences of varying length (gpt).
inline std::shared_ptr<const Dataset> data_for(ModelKind kind, int64_t n = 96) {
  torch::manual_seed(5);
  if (kind != ModelKind::kGpt) {
    return std::make_shared<TensorDataset>(at::rand({n, 1, 28, 28}), at::randint(0, 10, {n}), 10);
  }
  auto bytes = std::make_shared<std::string>();
  std::vector<std::pair<int64_t, int64_t>> sequences;
  const at::Tensor lengths = at::randint(8, 49, {n});
  for (int64_t i = 0; i < n; ++i) {
    const int64_t begin = static_cast<int64_t>(bytes->size()), len = lengths[i].item<int64_t>() + 1;
    const at::Tensor b = at::randint(32, 127, {len});
    for (int64_t k = 0; k < len; ++k) bytes->push_back(static_cast<char>(b[k].item<int64_t>()));
    sequences.emplace_back(begin, begin + len);
  }
  return std::make_shared<TextDataset>(bytes, sequences);
}

inline std::shared_ptr<Network> model_for(ModelKind kind, uint64_t seed = 3) {
  torch::manual_seed(seed);
  return make_model(spec_of(kind), kind == ModelKind::kGpt ? kByteVocab : 10);
}

}  // namespace gradacc::testing
