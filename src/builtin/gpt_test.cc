// The gpt on real padded text: accumulated per-token gradients equal the full-batch token-mean
// gradient; the naive per-micro-batch mean does not; and the network matches its PyTorch rebuild
// from docs/models.md (tests/torch_reference.py).
#include <cstdlib>
#include <filesystem>

#include <ATen/autocast_mode.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include "accumulate/accumulator.h"
#include "builtin/model_metadata.h"
#include "builtin/models.h"
#include "builtin/text.h"
#include "gradacc/safetensors.h"
#include "gradacc/trainer.h"
#include "model/add_norm.h"
#include "testing/test_util.h"

namespace gradacc {
namespace {

using testing::flat_grads;
using testing::rel_diff;

// A text every Debian system has; its paragraphs make sequences of very different lengths.
constexpr const char* kText = "/usr/share/common-licenses/GPL-3";

ModelSpec small_gpt(NormKind norm = NormKind::kLayer) {
  ModelSpec s;
  s.kind = ModelKind::kGpt;
  s.norm = norm;
  s.layers = 2;
  s.heads = 2;
  s.dim = 32;
  s.context = 64;
  return s;
}

std::shared_ptr<Network> seeded_gpt(const ModelSpec& spec) {
  torch::manual_seed(5);
  return make_model(spec, kByteVocab);
}

// A window of 16 sequences (micro-batches of 4) from the middle of the text: the real-token counts
// of the micro-batches differ, as they do in practice.
std::vector<int64_t> window_indices() {
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < 16; ++i) idx.push_back(100 + 7 * i);
  return idx;
}

TEST(Gpt, AccumulatedTokenGradientEqualsFullBatchWhileTheNaiveMeanDoesNot) {
  const TextSplits text = load_text(kText, 64);
  const auto idx = window_indices();
  const Batch full = text.train->gather(idx);

  auto ref = seeded_gpt(small_gpt());
  summed_cross_entropy(ref->forward(full.inputs), full.targets).div(static_cast<double>(full.items)).backward();
  const at::Tensor reference = flat_grads(*ref);

  auto ours = seeded_gpt(small_gpt());
  torch::optim::SGD sgd(ours->parameters(), 0.1);
  Accumulator acc(*ours, sgd, nullptr, AccumulatorOptions().normalization_(Normalization::kPerItem).nominal_count_(16));
  auto naive = seeded_gpt(small_gpt());
  std::vector<int64_t> items;
  for (int m = 0; m < 4; ++m) {
    const Batch b = text.train->gather(std::vector<int64_t>(idx.begin() + 4 * m, idx.begin() + 4 * m + 4));
    items.push_back(b.items);
    acc.accumulate(summed_cross_entropy(ours->forward(b.inputs), b.targets), b.samples, b.items);
    (summed_cross_entropy(naive->forward(b.inputs), b.targets) / static_cast<double>(b.items) / 4.0).backward();
  }
  ASSERT_NE(*std::min_element(items.begin(), items.end()), *std::max_element(items.begin(), items.end()));
  const double ours_diff = rel_diff(acc.window_gradient(), reference);
  const double naive_diff = rel_diff(flat_grads(*naive), reference);
  std::cout << "    micro-batch token counts:";
  for (int64_t n : items) std::cout << " " << n;
  std::cout << "\n    relative gradient difference vs full batch: ours " << ours_diff << ", naive " << naive_diff
            << "\n";
  EXPECT_LT(ours_diff, 1e-5);
  EXPECT_GT(naive_diff, 1e-2);
}

TEST(Gpt, APackedMicroBatchGivesThePaddedLossAndGradients) {
  // The 16 sequences of the window plus the shortest ones of the text: rows of 64 then hold several
  // sequences each, which must not see one another.
  const TextSplits text = load_text(kText, 64);
  std::vector<int64_t> idx = window_indices();
  const std::vector<int64_t> lengths = text.train->lengths();
  for (int64_t i = 0; i < static_cast<int64_t>(lengths.size()) && idx.size() < 28; ++i)
    if (lengths[static_cast<size_t>(i)] < 20) idx.push_back(i);
  const Batch padded = text.train->gather(idx);
  const Batch packed = text.train->packed(64)->gather(idx);
  ASSERT_EQ(packed.items, padded.items);
  ASSERT_EQ(packed.samples, padded.samples);
  ASSERT_LT(packed.inputs.size(0), padded.inputs.size(0));  // fewer rows: sequences share them
  std::cout << "    padded " << padded.inputs.size(0) << " × " << padded.inputs.size(1) << ", packed "
            << packed.inputs.size(0) << " × " << packed.inputs.size(1) << " for " << padded.items << " real tokens\n";

  auto a = seeded_gpt(small_gpt()), b = seeded_gpt(small_gpt());
  const at::Tensor loss_padded = summed_cross_entropy(a->forward_batch(padded), padded.targets);
  const at::Tensor loss_packed = summed_cross_entropy(b->forward_batch(packed), packed.targets);
  loss_padded.backward();
  loss_packed.backward();
  const double loss_diff = std::abs(loss_packed.item<double>() / loss_padded.item<double>() - 1.0);
  const double grad_diff = rel_diff(flat_grads(*b), flat_grads(*a));
  std::cout << "    relative difference packed vs padded: loss " << loss_diff << ", gradient " << grad_diff << "\n";
  EXPECT_LT(loss_diff, 1e-6);
  EXPECT_LT(grad_diff, 1e-6);
}

TEST(Gpt, IsCausalAndPaddingDoesNotLeakIntoRealPositions) {
  auto m = seeded_gpt(small_gpt(NormKind::kRms));
  m->eval();
  torch::NoGradGuard no_grad;
  const TextSplits text = load_text(kText, 64);
  const Batch b = text.train->gather({3});
  const int64_t n = b.items;
  at::Tensor changed = b.inputs.clone();
  changed[0][n - 1] = (changed[0][n - 1].item<int64_t>() + 1) % 256;  // alter the last real token
  const at::Tensor a = m->forward(b.inputs), c = m->forward(changed);
  EXPECT_LT((a[0].narrow(0, 0, n - 1) - c[0].narrow(0, 0, n - 1)).abs().max().item<double>(), 1e-6);
  EXPECT_GT((a[0][n - 1] - c[0][n - 1]).abs().max().item<double>(), 1e-4);
}

void compare_with_pytorch(NormKind norm) {
  const TextSplits text = load_text(kText, 64);
  const Batch b = text.train->gather(window_indices());
  auto model = seeded_gpt(small_gpt(norm));
  const auto tmp = std::filesystem::temp_directory_path() / ("gradacc_gptref_" + std::to_string(::getpid()));
  const std::string weights = tmp.string() + "_w.safetensors", batch = tmp.string() + "_b.safetensors",
                    out = tmp.string() + "_o.safetensors";
  save_module(weights, *model, model_metadata(small_gpt(norm)));
  save_safetensors(batch, {{"inputs", b.inputs}, {"targets", b.targets}});
  const std::string cmd = fmt::format("{} {}/tests/torch_reference.py gpt {} {} {} {}", GRADACC_PYTHON,
                                      GRADACC_SOURCE_DIR, to_string(norm), weights, batch, out);
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const TensorMap ref = load_safetensors(out);

  torch::optim::SGD sgd(model->parameters(), 0.1);
  Accumulator acc(*model, sgd, nullptr,
                  AccumulatorOptions().normalization_(Normalization::kPerItem).nominal_count_(16));
  std::vector<at::Tensor> logits;
  for (int64_t s = 0; s < 16; s += 4) {
    const Batch mb{b.inputs.narrow(0, s, 4), b.targets.narrow(0, s, 4), 4,
                   b.targets.narrow(0, s, 4).ne(kIgnoreIndex).sum().item<int64_t>()};
    // Micro-batches are padded to their own longest sequence, as the trainer does.
    const int64_t len = mb.targets.ne(kIgnoreIndex).sum(1).max().item<int64_t>();
    const at::Tensor l = model->forward(mb.inputs.narrow(1, 0, len));
    const at::Tensor r = ref.at("logits").narrow(0, s, 4).narrow(1, 0, len);
    const at::Tensor real = mb.targets.narrow(1, 0, len).ne(kIgnoreIndex);
    EXPECT_LT((l.detach() - r).abs().amax(-1).masked_select(real).max().item<double>(), 1e-4);
    acc.accumulate(summed_cross_entropy(l, mb.targets.narrow(1, 0, len)), mb.samples, mb.items);
  }
  const at::Tensor ours = acc.window_gradient();
  int64_t offset = 0;
  for (const auto& item : model->named_parameters()) {
    const at::Tensor g = ours.narrow(0, offset, item.value().numel()).view(item.value().sizes());
    offset += item.value().numel();
    const at::Tensor r = ref.at("grad." + item.key());
    EXPECT_LT((g - r).norm().item<double>() / (r.norm().item<double>() + 1e-12), 1e-4) << item.key();
  }
  const double ref_loss = ref.at("loss").item<double>();
  EXPECT_NEAR(acc.step().loss, ref_loss, 1e-6 * ref_loss);
  for (const auto& p : {weights, batch, out}) std::filesystem::remove(p);
}

TEST(Gpt, LayerNormGptMatchesItsPyTorchRebuild) { compare_with_pytorch(NormKind::kLayer); }
TEST(Gpt, RmsNormGptMatchesItsPyTorchRebuild) { compare_with_pytorch(NormKind::kRms); }

// On a GPU, the fused residual-add + norm kernels (--fused-kernels, the default) against ATen's
// separate ops: the same gradient of a real padded text batch, in fp32 and under bf16 autocast.
TEST(Gpt, FusedKernelsGiveTheGradientOfAtensOpsOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: the fused kernels run only on a GPU";
  if (!fused_norm_kernels_built()) GTEST_SKIP() << "this build has no CUDA kernels (no nvcc at configure time)";
  const TextSplits text = load_text(kText, 64);
  const Batch batch = text.train->gather(window_indices());
  const at::Tensor inputs = batch.inputs.to(at::kCUDA), targets = batch.targets.to(at::kCUDA);
  for (const NormKind norm : {NormKind::kLayer, NormKind::kRms}) {
    for (const bool autocast : {false, true}) {
      std::vector<at::Tensor> grads;
      std::vector<double> losses;
      for (const bool fused : {true, false}) {
        ModelSpec spec = small_gpt(norm);
        spec.fused_kernels = fused;
        auto model = seeded_gpt(spec);
        model->to(at::kCUDA);
        at::autocast::set_autocast_enabled(at::kCUDA, autocast);
        at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
        const at::Tensor loss =
            summed_cross_entropy(model->forward(inputs), targets).div(static_cast<double>(batch.items));
        at::autocast::set_autocast_enabled(at::kCUDA, false);
        at::autocast::clear_cache();
        loss.backward();
        losses.push_back(loss.item<double>());
        grads.push_back(flat_grads(*model));
      }
      // fp32: only the order of the norms' row sums differs. bf16: the roundings of the normalized
      // rows and of the gradients, taken at different points.
      const double tolerance = autocast ? 2e-2 : 1e-5;
      EXPECT_LT(rel_diff(grads[0], grads[1]), tolerance) << to_string(norm) << " autocast " << autocast;
      EXPECT_NEAR(losses[0], losses[1], tolerance * losses[1]) << to_string(norm) << " autocast " << autocast;
    }
  }
}

// The count generate checks a weights file against, before building the model it describes.
TEST(Gpt, ParameterCountMatchesTheBuiltModel) {
  for (NormKind norm : {NormKind::kLayer, NormKind::kRms}) {
    ModelSpec s = small_gpt(norm);
    s.layers = 3;
    int64_t numel = 0;
    for (const auto& p : make_model(s, kByteVocab)->parameters()) numel += p.numel();
    EXPECT_EQ(gpt_parameter_count(s, kByteVocab), numel) << to_string(norm);
  }
}

}  // namespace
}  // namespace gradacc
