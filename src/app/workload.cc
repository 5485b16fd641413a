#include "app/workload.h"

#include <fmt/format.h>
#include <torch/utils.h>

#include "builtin/fashion_mnist.h"
#include "builtin/text.h"
#include "gradacc/errors.h"
#include "gradacc/safetensors.h"

namespace gradacc {

Workload load_workload(const JobConfig& c) {
  // An objective's own flags, given to the other: refused rather than ignored.
  const JobConfig defaults;
  if (c.objective != "contrastive" && (c.temperature != defaults.temperature || c.negatives != defaults.negatives))
    throw ConfigError("--temperature and --negatives belong to --objective contrastive");
  if (c.objective == "contrastive" && c.label_smoothing != 0.0)
    throw ConfigError("--label-smoothing smooths class labels: the contrastive objective has none");
  const bool gpt = c.model.kind == ModelKind::kGpt;
  if (c.data.starts_with("text:")) {
    if (!gpt) throw ConfigError(fmt::format("text data needs --model gpt, not {}", to_string(c.model.kind)));
    const TextSplits splits = load_text(c.data.substr(5), c.model.context);
    Workload w;
    w.text = true;
    w.train = c.train_limit > 0 ? splits.train->head(c.train_limit) : splits.train;
    if (c.packing) w.train = std::static_pointer_cast<const TextDataset>(w.train)->packed(c.model.context);
    w.test = splits.validation;
    w.unigram_bits_per_byte = unigram_bits_per_byte(*splits.train, *splits.validation);
    w.num_classes = kByteVocab;
    return w;
  }
  if (gpt) throw ConfigError(fmt::format("--model gpt needs --data text:PATH, not {}", c.data));
  if (c.packing) throw ConfigError("packing is for text data (--data text:PATH): images have no padding to remove");
  const std::string prefix = "fashion-mnist";
  if (!c.data.starts_with(prefix) || (c.data.size() > prefix.size() && c.data[prefix.size()] != ':')) {
    throw ConfigError(
        fmt::format("unknown data source '{}' (expected fashion-mnist, fashion-mnist:DIR or text:PATH)", c.data));
  }
  const std::string dir = c.data.size() > prefix.size() ? c.data.substr(prefix.size() + 1) : kFashionMnistDir;
  Workload w;
  auto train = load_fashion_mnist(dir, Split::kTrain);
  w.train = c.train_limit > 0 ? train->head(c.train_limit) : train;
  w.test = load_fashion_mnist(dir, Split::kTest);
  w.num_classes = train->num_classes();
  return w;
}

std::shared_ptr<Network> make_seeded_model(const JobConfig& c, int64_t num_classes, bool* init_verified) {
  torch::manual_seed(c.train.data().seed());
  auto model = make_model(c.model, num_classes);
  if (!c.init_path.empty()) {
    const ReadInfo read = load_module(c.init_path, *model);
    if (init_verified) *init_verified = read.verified;
  }
  return model;
}

}  // namespace gradacc
