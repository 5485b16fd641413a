// gradacc's gpt (gpt.cc; its layout and parameter names are in docs/models.md).
//
// Thread safety: as any torch::nn::Module.
#pragma once

#include <cstdint>
#include <memory>

#include "builtin/model_spec.h"
#include "builtin/network.h"

namespace gradacc {

// A freshly initialized gpt of this spec over `vocab` tokens (the caller seeds torch's RNG).
std::shared_ptr<Network> make_gpt(const ModelSpec& spec, int64_t vocab);

// Parameters of gradacc's gpt with this spec over `vocab` tokens, computed without building it:
// V·D + C·D + L·(12D² + 9D + 2n) + n, n = 2D for LayerNorm (weight, bias), D for RMSNorm.
int64_t gpt_parameter_count(const ModelSpec& spec, int64_t vocab);

}  // namespace gradacc
