// The names and checks of ModelSpec (model_spec.h): what the CLI's --model and --norm accept.
#include "builtin/model_spec.h"

#include <fmt/format.h>

#include "base/parse.h"
#include "gradacc/errors.h"

namespace gradacc {

NormKind parse_norm(const std::string& name) {
  if (name == "batch") return NormKind::kBatch;
  if (name == "group") return NormKind::kGroup;
  if (name == "layer") return NormKind::kLayer;
  if (name == "none") return NormKind::kNone;
  if (name == "rms") return NormKind::kRms;
  throw ConfigError(fmt::format("unknown normalization '{}' (expected batch, group, layer, none or rms)", shown(name)));
}

std::string to_string(NormKind kind) {
  switch (kind) {
    case NormKind::kBatch: return "batch";
    case NormKind::kGroup: return "group";
    case NormKind::kLayer: return "layer";
    case NormKind::kNone: return "none";
    case NormKind::kRms: return "rms";
  }
  return "?";
}

ModelKind parse_model_kind(const std::string& name) {
  if (name == "mlp") return ModelKind::kMlp;
  if (name == "cnn") return ModelKind::kCnn;
  if (name == "gpt") return ModelKind::kGpt;
  throw ConfigError(fmt::format("unknown model '{}' (expected mlp, cnn or gpt)", shown(name)));
}

std::string to_string(ModelKind kind) {
  switch (kind) {
    case ModelKind::kMlp: return "mlp";
    case ModelKind::kCnn: return "cnn";
    case ModelKind::kGpt: return "gpt";
  }
  return "?";
}

NormKind ModelSpec::resolved_norm() const {
  if (kind == ModelKind::kMlp) return NormKind::kNone;  // the MLP has no normalization layers
  return norm.value_or(kind == ModelKind::kGpt ? NormKind::kLayer : NormKind::kGroup);
}

void ModelSpec::validate() const {
  const NormKind n = resolved_norm();
  if (!(dropout >= 0.0 && dropout < 1.0)) throw ConfigError(fmt::format("dropout must lie in [0, 1), got {}", dropout));
  if (dropout > 0.0 && kind == ModelKind::kGpt)
    throw ConfigError("--dropout is for the mlp and the cnn; the gpt has none");
  switch (kind) {
    case ModelKind::kMlp: return;
    case ModelKind::kCnn:
      if (n == NormKind::kRms) throw ConfigError("the cnn takes --norm batch, group, layer or none, not rms");
      return;
    case ModelKind::kGpt:
      if (n != NormKind::kLayer && n != NormKind::kRms) {
        throw ConfigError(fmt::format("the gpt takes --norm layer or rms, not {}", to_string(n)));
      }
      if (layers < 1 || heads < 1 || dim < 1 || layers > kMaxGptSize || heads > kMaxGptSize || dim > kMaxGptSize) {
        throw ConfigError(
            fmt::format("gpt sizes must lie in 1..{} (layers {}, heads {}, dim {})", kMaxGptSize, layers, heads, dim));
      }
      if (dim % heads != 0) throw ConfigError(fmt::format("dim = {} is not divisible by heads = {}", dim, heads));
      if (context < 1 || context > kMaxContext) {
        throw ConfigError(fmt::format("context = {} is outside 1..{}", context, kMaxContext));
      }
      return;
  }
}

}  // namespace gradacc
