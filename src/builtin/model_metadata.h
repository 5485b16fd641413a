// The safetensors metadata that names one of gradacc's networks, so that `generate` and `--init`
// can rebuild the architecture from a weights file alone:
//   format=pt, model=mlp|cnn|gpt, norm=..., and for gpt: layers, heads, dim, context.
#pragma once

#include <string>

#include "builtin/model_spec.h"
#include "gradacc/safetensors.h"

namespace gradacc {

StringMap model_metadata(const ModelSpec& spec);
// Throws FormatError (one line naming `path` and the key) for a missing or malformed key, or
// sizes that fail ModelSpec::validate().
ModelSpec spec_from_metadata(const StringMap& metadata, const std::string& path);

}  // namespace gradacc
