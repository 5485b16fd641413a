// add_norm: the ATen composition on the CPU (what every CPU run computes), that CI's CUDA variant
// really carries the kernels, and, on a GPU, the fused kernels against ATen's ops, forward and
// backward, for LayerNorm and RMSNorm, with and without the residual branch, in fp32, under bf16
// autocast and with bf16 parameters.
#include <cstdlib>
#include <string>
#include <tuple>

#include <ATen/autocast_mode.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/rms_norm.h>
#include <gtest/gtest.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include "model/add_norm.h"
#include "testing/test_util.h"

namespace gradacc {
namespace {

using testing::rel_diff;

struct Inputs {
  at::Tensor x, branch, weight, bias;
};

Inputs make_inputs(at::IntArrayRef shape, at::ScalarType x_type, at::ScalarType branch_type, at::ScalarType param_type,
                   const at::Device& device, bool with_branch, bool rms) {
  torch::manual_seed(3);
  const int64_t d = shape.back();
  const auto on = [&](at::ScalarType t) { return at::TensorOptions().dtype(t).device(device); };
  Inputs in;
  // A residual stream with an offset and a spread, as in a trained model, so that the mean matters.
  in.x = (at::randn(shape, on(at::kFloat)) * 3.0 + 0.5).to(x_type).requires_grad_();
  if (with_branch) in.branch = at::randn(shape, on(at::kFloat)).to(branch_type).requires_grad_();
  in.weight = (1.0 + 0.1 * at::randn({d}, on(at::kFloat))).to(param_type).requires_grad_();
  if (!rms) in.bias = (0.1 * at::randn({d}, on(at::kFloat))).to(param_type).requires_grad_();
  return in;
}

// Runs add_norm, then backward from fixed random gradients of both outputs; returns the outputs
// and the inputs' gradients, in fp32, by name.
std::vector<std::pair<std::string, at::Tensor>> run(const Inputs& in, const AddNormOptions& o, bool autocast) {
  for (const at::Tensor& t : {in.x, in.branch, in.weight, in.bias})
    if (t.defined()) t.mutable_grad() = at::Tensor();
  AddNormResult r;
  {
    const bool was = at::autocast::is_autocast_enabled(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCUDA, autocast);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    r = add_norm(in.x, in.branch, in.weight, in.bias, o);
    at::autocast::set_autocast_enabled(at::kCUDA, was);
    at::autocast::clear_cache();
  }
  torch::manual_seed(11);
  const at::Tensor g_normed = at::randn(r.normed.sizes(), r.normed.options().dtype(at::kFloat));
  at::Tensor loss = (r.normed.to(at::kFloat) * g_normed).sum();
  if (in.branch.defined()) loss = loss + (r.sum.to(at::kFloat) * (0.5 * g_normed)).sum();
  loss.backward();
  std::vector<std::pair<std::string, at::Tensor>> out = {{"sum", r.sum.detach().to(at::kFloat)},
                                                         {"normed", r.normed.detach().to(at::kFloat)}};
  const std::pair<const char*, const at::Tensor*> inputs[] = {
      {"x", &in.x}, {"branch", &in.branch}, {"weight", &in.weight}, {"bias", &in.bias}};
  for (const auto& [name, t] : inputs)
    if (t->defined()) out.emplace_back(std::string("grad ") + name, t->grad().to(at::kFloat));
  return out;
}

TEST(AddNorm, ComposesAtenOpsOnTheCpu) {
  for (const bool rms : {false, true}) {
    const Inputs in = make_inputs({4, 5, 24}, at::kFloat, at::kFloat, at::kFloat, at::kCPU, true, rms);
    AddNormOptions o;
    o.rms = rms;
    const auto fused = run(in, o, false);  // asks for the kernel: there is none on the CPU

    const Inputs ref = make_inputs({4, 5, 24}, at::kFloat, at::kFloat, at::kFloat, at::kCPU, true, rms);
    const at::Tensor sum = ref.x + ref.branch;
    const at::Tensor normed =
        rms ? at::rms_norm(sum, {24}, ref.weight, o.eps) : at::layer_norm(sum, {24}, ref.weight, ref.bias, o.eps);
    torch::manual_seed(11);
    const at::Tensor g = at::randn(normed.sizes());
    ((normed * g).sum() + (sum * (0.5 * g)).sum()).backward();
    std::vector<at::Tensor> expected = {sum.detach(), normed.detach(), ref.x.grad(), ref.branch.grad(),
                                        ref.weight.grad()};
    if (!rms) expected.push_back(ref.bias.grad());
    ASSERT_EQ(fused.size(), expected.size());
    for (size_t i = 0; i < fused.size(); ++i)
      EXPECT_TRUE(fused[i].second.equal(expected[i])) << "rms " << rms << ": " << fused[i].first;
  }
}

TEST(AddNorm, KernelsAreInEveryCudaBuildThatExpectsThem) {
  // CTest sets this for the CUDA-linked suite when CMake compiled the kernels: the build that CI
  // runs must really carry them, not silently fall back to ATen.
  const char* expect = std::getenv("GRADACC_EXPECT_CUDA_KERNELS");
  if (expect == nullptr || std::string(expect) != "1")
    GTEST_SKIP() << "this build is not expected to carry the CUDA kernels (a CPU build)";
  EXPECT_TRUE(fused_norm_kernels_built());
}

// (rms, with a branch, precision: "fp32" | "autocast" (fp32 x and parameters, bf16 branch under
// bf16 autocast) | "bf16" (bf16 everything), D)
using Case = std::tuple<bool, bool, std::string, int64_t>;
class AddNormOnCuda : public ::testing::TestWithParam<Case> {};

TEST_P(AddNormOnCuda, FusedKernelMatchesAtenForwardAndBackward) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here: the fused kernels run only on a GPU";
  if (!fused_norm_kernels_built()) GTEST_SKIP() << "this build has no CUDA kernels (no nvcc at configure time)";
  const auto& [rms, with_branch, precision, d] = GetParam();
  const bool autocast = precision == "autocast";
  const at::ScalarType x_type = precision == "bf16" ? at::kBFloat16 : at::kFloat;
  const at::ScalarType branch_type = precision == "fp32" ? at::kFloat : at::kBFloat16;
  // 3 × 37 rows: not a multiple of the kernels' 8 rows per block.
  const Inputs a = make_inputs({3, 37, d}, x_type, branch_type, x_type, at::kCUDA, with_branch, rms);
  const Inputs b = make_inputs({3, 37, d}, x_type, branch_type, x_type, at::kCUDA, with_branch, rms);
  AddNormOptions fused, plain;
  fused.rms = plain.rms = rms;
  plain.fused = false;
  const auto got = run(a, fused, autocast), want = run(b, plain, autocast);
  ASSERT_EQ(got.size(), want.size());
  // fp32: the sums' order differs, nothing else. bf16 outputs: one rounding of values of about 1
  // (2^-8 relative); their gradients are rounded in bf16 by both, after different fp32 sums.
  const double tolerance = precision == "fp32" ? 1e-5 : 1e-2;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].first, want[i].first);
    EXPECT_LT(rel_diff(got[i].second, want[i].second), tolerance) << got[i].first;
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, AddNormOnCuda,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool(),
                                            ::testing::Values("fp32", "autocast", "bf16"),
                                            ::testing::Values(int64_t{768}, int64_t{100})));

}  // namespace
}  // namespace gradacc
