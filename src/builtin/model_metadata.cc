#include "builtin/model_metadata.h"

#include <fmt/format.h>

namespace gradacc {

StringMap model_metadata(const ModelSpec& m) {
  StringMap meta = {{"format", "pt"}, {"model", to_string(m.kind)}, {"norm", to_string(m.resolved_norm())}};
  if (m.kind == ModelKind::kGpt) {
    meta["layers"] = std::to_string(m.layers);
    meta["heads"] = std::to_string(m.heads);
    meta["dim"] = std::to_string(m.dim);
    meta["context"] = std::to_string(m.context);
  }
  return meta;
}

ModelSpec spec_from_metadata(const StringMap& meta, const std::string& path) {
  auto need = [&](const std::string& key) -> const std::string& {
    auto it = meta.find(key);
    if (it == meta.end()) {
      throw FormatError(fmt::format("{}: metadata has no '{}' (was it saved by gradacc train --save?)", path, key));
    }
    return it->second;
  };
  auto number = [&](const std::string& key) {
    const std::string& v = need(key);
    const bool digits = !v.empty() && v.size() <= 9 && v.find_first_not_of("0123456789") == std::string::npos;
    if (!digits)
      throw FormatError(fmt::format("{}: metadata '{}' is not a positive integer of at most 9 digits", path, key));
    return static_cast<int64_t>(std::stoll(v));
  };
  ModelSpec m;
  try {
    m.kind = parse_model_kind(need("model"));
    m.norm = parse_norm(need("norm"));
  } catch (const std::invalid_argument& e) {
    throw FormatError(fmt::format("{}: metadata: {}", path, e.what()));
  }
  if (m.kind == ModelKind::kGpt) {
    m.layers = number("layers");
    m.heads = number("heads");
    m.dim = number("dim");
    m.context = number("context");
  }
  try {
    m.validate();
  } catch (const std::invalid_argument& e) {
    throw FormatError(fmt::format("{}: metadata: {}", path, e.what()));
  }
  return m;
}

}  // namespace gradacc
