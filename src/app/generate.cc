#include "app/generate.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/multinomial.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/topk.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "builtin/model_metadata.h"
#include "builtin/models.h"
#include "builtin/text.h"
#include "gradacc/errors.h"
#include "gradacc/safetensors.h"

namespace gradacc {

void generate_text(const GenerateOptions& o, const std::function<void(std::string_view)>& emit) {
  if (o.weights.empty()) throw ConfigError("generate needs --init WEIGHTS.safetensors (from gradacc train --save)");
  if (o.tokens < 0) throw ConfigError(fmt::format("--tokens must be ≥ 0, got {}", o.tokens));
  if (!(o.temperature >= 0)) throw ConfigError(fmt::format("--temperature must be ≥ 0, got {}", o.temperature));
  if (o.top_k < 0 || o.top_k > kByteVocab)
    throw ConfigError(fmt::format("--top-k must lie in 0..{}, got {}", kByteVocab, o.top_k));
  if (o.prompt.empty()) throw ConfigError("--prompt must not be empty");

  StringMap meta;
  const TensorMap tensors = load_safetensors(o.weights, &meta);  // validates the file and reads its metadata
  const ModelSpec spec = spec_from_metadata(meta, o.weights);
  if (spec.kind != ModelKind::kGpt) {
    throw ConfigError(fmt::format("{} holds a {} model; generate needs a gpt", o.weights, to_string(spec.kind)));
  }
  // The tensors must add up to the model the metadata describes before that model is built: a
  // file that claims a huge model but holds no weights is refused without allocating it.
  int64_t held = 0;
  for (const auto& [name, t] : tensors) held += t.numel();
  if (held != gpt_parameter_count(spec, kByteVocab)) {
    throw FormatError(fmt::format("{}: holds {} weights, but a gpt of {} layers, dim {}, context {} has {}", o.weights,
                                  held, spec.layers, spec.dim, spec.context, gpt_parameter_count(spec, kByteVocab)));
  }
  auto model = make_model(spec, kByteVocab);
  load_module_state(tensors, *model, o.weights);
  model->eval();

  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  std::vector<int64_t> tokens(o.prompt.begin(), o.prompt.end());
  for (auto& t : tokens) t = static_cast<unsigned char>(t);
  emit(o.prompt);
  for (int64_t i = 0; i < o.tokens; ++i) {
    if (static_cast<int64_t>(tokens.size()) > 2 * spec.context)  // only the last `context` condition the next
      tokens.erase(tokens.begin(), tokens.end() - spec.context);
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(tokens.size()), spec.context);
    const at::Tensor input = at::tensor(std::vector<int64_t>(tokens.end() - n, tokens.end()), at::kLong).unsqueeze(0);
    at::Tensor logits = model->forward(input)[0][n - 1].to(at::kDouble);
    int64_t next;
    if (o.temperature == 0) {
      next = at::argmax(logits).item<int64_t>();
    } else {
      logits = logits / o.temperature;
      if (o.top_k > 0) {
        const auto [values, indices] = at::topk(logits, o.top_k);
        const int64_t pick = at::multinomial(at::softmax(values, 0), 1, false, gen).item<int64_t>();
        next = indices[pick].item<int64_t>();
      } else {
        next = at::multinomial(at::softmax(logits, 0), 1, false, gen).item<int64_t>();
      }
    }
    tokens.push_back(next);
    const char byte = static_cast<char>(next);
    emit(std::string_view(&byte, 1));
  }
}

std::string generate_text(const GenerateOptions& o) {
  std::string out;
  generate_text(o, [&](std::string_view text) { out += text; });
  return out;
}

}  // namespace gradacc
