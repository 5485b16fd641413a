// The models as documented in docs/models.md, rebuilt in PyTorch (tests/torch_reference.py), must
// give the same logits, loss and gradients as ours — and our accumulated gradient must equal
// PyTorch's ordinary full-batch gradient. Tolerances: logits 1e-5 absolute, loss 1e-6 relative,
// gradients 2e-4 relative L2 per tensor. Measured: ≤ 1e-6 for the MLP; up to 2.3e-5 for the CNN's
// first convolution, whose gradient passes back through GroupNorm's backward (fp32 rounding of
// a normalization amplified by 1/σ), the same with or without accumulation.
#include "builtin/models.h"

#include <cstdlib>
#include <filesystem>

#include <ATen/Parallel.h>
#include <ATen/ops/cat.h>
#include <gtest/gtest.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include "accumulate/accumulator.h"
#include "builtin/fashion_mnist.h"
#include "gradacc/safetensors.h"
#include "gradacc/trainer.h"

#include "testing/test_util.h"

namespace gradacc {
namespace {

using testing::temp_path;

void compare_with_pytorch(const ModelSpec& spec, int64_t micro, double label_smoothing = 0.0) {
  static auto data = load_fashion_mnist(kFashionMnistDir, Split::kTrain)->head(64);
  std::vector<int64_t> idx(64);
  std::iota(idx.begin(), idx.end(), 0);
  const Batch b = data->gather(idx);

  torch::manual_seed(21);
  auto model = make_model(spec, 10);
  const std::string weights = temp_path("w.safetensors"), batch = temp_path("b.safetensors"),
                    out = temp_path("o.safetensors");
  save_module(weights, *model);
  save_safetensors(batch, {{"inputs", b.inputs}, {"targets", b.targets}});
  // PyTorch runs with this process's thread count: the reductions of a conv's backward then add in
  // the same order on both sides (an earlier test may have set another count for this process).
  const std::string cmd = fmt::format("OMP_NUM_THREADS={} {} {}/tests/torch_reference.py {} {} {} {} {} {}",
                                      at::get_num_threads(), GRADACC_PYTHON, GRADACC_SOURCE_DIR, to_string(spec.kind),
                                      to_string(spec.resolved_norm()), weights, batch, out, label_smoothing);
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const TensorMap ref = load_safetensors(out);

  torch::optim::SGD sgd(model->parameters(), 0.1);
  Accumulator acc(*model, sgd, nullptr, AccumulatorOptions().nominal_count_(64));
  std::vector<at::Tensor> logits;
  for (int64_t s = 0; s < 64; s += micro) {
    const at::Tensor l = model->forward(b.inputs.narrow(0, s, micro));
    logits.push_back(l.detach());
    acc.accumulate(summed_cross_entropy(l, b.targets.narrow(0, s, micro), label_smoothing), micro, micro);
  }
  EXPECT_LT((at::cat(logits) - ref.at("logits")).abs().max().item<double>(), 1e-5);

  const at::Tensor ours = acc.window_gradient();
  int64_t offset = 0;
  double worst = 0.0, whole = 0.0;
  for (const auto& item : model->named_parameters())
    whole += ref.at("grad." + item.key()).square().sum().item<double>();
  // A tensor whose true gradient is zero (a conv bias before BatchNorm) holds rounding noise on
  // both sides: it is judged against the model's gradient scale, not against its own noise.
  const double floor = 1e-3 * std::sqrt(whole);
  for (const auto& item : model->named_parameters()) {
    const at::Tensor g = ours.narrow(0, offset, item.value().numel()).view(item.value().sizes());
    offset += item.value().numel();
    const at::Tensor r = ref.at("grad." + item.key());
    const double rel = (g - r).norm().item<double>() / std::max(r.norm().item<double>(), floor);
    worst = std::max(worst, rel);
    EXPECT_LT(rel, 2e-4) << item.key();
  }
  std::cout << "    worst per-tensor relative gradient difference vs PyTorch: " << worst << "\n";
  const double ref_loss = ref.at("loss").item<double>();
  EXPECT_NEAR(acc.step().loss, ref_loss, 1e-6 * ref_loss);
  for (const auto& p : {weights, batch, out}) std::filesystem::remove(p);
}

TEST(ModelsVsPyTorch, MlpAccumulatedEqualsPyTorchFullBatch) {
  compare_with_pytorch({ModelKind::kMlp, NormKind::kNone}, 8);
}
// Label smoothing is per item: the accumulated sum equals PyTorch's full-batch mean with the same ε.
TEST(ModelsVsPyTorch, MlpWithLabelSmoothingAccumulatedEqualsPyTorchFullBatch) {
  compare_with_pytorch({ModelKind::kMlp, NormKind::kNone}, 8, 0.1);
}
TEST(ModelsVsPyTorch, CnnGroupNormAccumulatedEqualsPyTorchFullBatch) {
  compare_with_pytorch({ModelKind::kCnn, NormKind::kGroup}, 16);
}
TEST(ModelsVsPyTorch, CnnLayerNormAccumulatedEqualsPyTorchFullBatch) {
  compare_with_pytorch({ModelKind::kCnn, NormKind::kLayer}, 16);
}
TEST(ModelsVsPyTorch, CnnNoNormAccumulatedEqualsPyTorchFullBatch) {
  compare_with_pytorch({ModelKind::kCnn, NormKind::kNone}, 32);
}
// BatchNorm agrees with PyTorch when the batch is not split (micro-batch = window).
TEST(ModelsVsPyTorch, CnnBatchNormFullBatchEqualsPyTorch) {
  compare_with_pytorch({ModelKind::kCnn, NormKind::kBatch}, 64);
}

}  // namespace
}  // namespace gradacc
