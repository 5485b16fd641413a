// The fused norm kernels' own source (fused_norm_kernels.cuh), run on the CPU under the emulation
// of CUDA's execution model (testing/cuda_emulation.h), against ATen's ops: the sum, the output,
// the row statistics and all four gradients, for every kernel instance the dispatch offers,
// LayerNorm and RMSNorm, with and without the branch, rows that are not a multiple of a block's
// 8, widths that are not a multiple of a warp's 32, and a backward grid that strides over the rows.
// Then the same kernels behind add_norm's autograd function (model/fused_add_norm.h) with their
// arguments made by device/fused_norm_args.h, as the CUDA build makes them, against autograd
// through ATen's composition. This is what runs
// of the kernels in CI, on a machine without a GPU; on a GPU, src/model/add_norm_test.cc runs them for real.
#include "testing/cuda_emulation.h"
// After the emulation, which defines what the kernels' source takes from CUDA.
#include "device/fused_norm_kernels.cuh"

#include <stdexcept>
#include <string>

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/rms_norm.h>
#include <ATen/ops/zeros.h>
#include <gtest/gtest.h>
#include <torch/autograd.h>
#include <torch/utils.h>

#include "device/fused_norm_args.h"
#include "model/fused_add_norm.h"

namespace gradacc::kernels {
namespace {

using testing::cuda_emulation::launch;

at::ScalarType aten_type(DType t) {
  return t == DType::kFloat32 ? at::kFloat : t == DType::kBFloat16 ? at::kBFloat16 : at::kHalf;
}

double rel(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kFloat) - b.to(at::kFloat)).norm().item<double>() / (b.to(at::kFloat).norm().item<double>() + 1e-30);
}

struct Case {
  DType x, branch, weight, out;
  bool rms, with_branch;
  int64_t rows, cols;
  unsigned max_backward_blocks = 0;  // > 0: launch the backward on fewer blocks than it asks for
  std::string name() const {
    return std::string(rms ? "rms" : "layer") + (with_branch ? " +branch" : "") + " x " + c10::toString(aten_type(x)) +
           " out " + c10::toString(aten_type(out)) + " " + std::to_string(rows) + "x" + std::to_string(cols);
  }
};

void check(const Case& c) {
  SCOPED_TRACE(c.name());
  torch::manual_seed(7);
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor x = (at::randn({c.rows, c.cols}, f32) * 3.0 + 0.5).to(aten_type(c.x));
  const at::Tensor branch = c.with_branch ? at::randn({c.rows, c.cols}, f32).to(aten_type(c.branch)) : at::Tensor();
  const at::Tensor weight = (1.0 + 0.1 * at::randn({c.cols}, f32)).to(aten_type(c.weight));
  const at::Tensor bias = c.rms ? at::Tensor() : (0.1 * at::randn({c.cols}, f32)).to(aten_type(c.weight));
  const at::Tensor grad_out = at::randn({c.rows, c.cols}, f32).to(aten_type(c.out));
  const at::Tensor grad_sum = c.with_branch ? at::randn({c.rows, c.cols}, f32).to(aten_type(c.x)) : at::Tensor();

  // The kernels.
  const at::Tensor sum = c.with_branch ? at::empty_like(x) : at::Tensor();
  const at::Tensor out = at::empty({c.rows, c.cols}, f32.dtype(aten_type(c.out)));
  const at::Tensor mean = at::empty({c.rows}, f32), rstd = at::empty({c.rows}, f32);
  NormForwardArgs fa;
  fa.x = x.data_ptr();
  fa.branch = c.with_branch ? branch.data_ptr() : nullptr;
  fa.weight = weight.data_ptr();
  fa.bias = c.rms ? nullptr : bias.data_ptr();
  fa.sum = c.with_branch ? sum.data_ptr() : nullptr;
  fa.out = out.data_ptr();
  fa.mean = c.rms ? nullptr : mean.data_ptr<float>();
  fa.rstd = rstd.data_ptr<float>();
  fa.layout = {c.rows, c.cols, c.rms, c.x, c.branch, c.weight, c.out};
  ASSERT_TRUE(detail::launch_forward(
      fa, [](auto kernel, unsigned b, int t, size_t s, const auto& a) { launch(kernel, b, t, s, a); }));
  const at::Tensor h = c.with_branch ? sum : x;
  // The backward's grid strides over the rows: a smaller grid than it asks for is still right, and
  // makes its warps take several rows without emulating thousands of threads.
  const unsigned asked = detail::backward_blocks(c.rows, c.cols);
  const unsigned grid = c.max_backward_blocks > 0 && c.max_backward_blocks < asked ? c.max_backward_blocks : asked;
  const int64_t blocks = grid;
  const at::Tensor grad_x = at::empty_like(x);
  const at::Tensor grad_branch = c.with_branch ? at::empty_like(branch) : at::Tensor();
  const at::Tensor weight_partial = at::empty({blocks, c.cols}, f32), bias_partial = at::empty({blocks, c.cols}, f32);
  NormBackwardArgs ba;
  ba.grad_out = grad_out.data_ptr();
  ba.grad_sum = c.with_branch ? grad_sum.data_ptr() : nullptr;
  ba.h = h.data_ptr();
  ba.mean = c.rms ? nullptr : mean.data_ptr<float>();
  ba.rstd = rstd.data_ptr<float>();
  ba.weight = weight.data_ptr();
  ba.grad_x = grad_x.data_ptr();
  ba.grad_branch = c.with_branch ? grad_branch.data_ptr() : nullptr;
  ba.weight_partial = weight_partial.data_ptr<float>();
  ba.bias_partial = c.rms ? nullptr : bias_partial.data_ptr<float>();
  ba.layout = {c.rows, c.cols, c.rms, c.x, c.branch, c.weight, c.out};
  const auto run_backward = [&] {
    return detail::launch_backward(
        ba, [grid](auto kernel, unsigned, int t, size_t s, const auto& a) { launch(kernel, grid, t, s, a); });
  };
  ASSERT_TRUE(run_backward());
  // Bit for bit the same on a second run: the weight and bias sums add in a fixed order, whatever
  // order the emulation's threads (or a GPU's warps) happen to run in.
  const at::Tensor first_weight = weight_partial.clone(), first_bias = bias_partial.clone();
  ASSERT_TRUE(run_backward());
  EXPECT_TRUE(weight_partial.equal(first_weight)) << "the weight gradient's sums are not reproducible";
  if (!c.rms) {
    EXPECT_TRUE(bias_partial.equal(first_bias)) << "the bias gradient's sums are not reproducible";
  }

  // ATen, in fp32 from the same stored values: the sum as the eager add stores it, the norm and
  // its gradients by autograd, the residual gradient added, each result rounded once to its type.
  const at::Tensor ref_sum = c.with_branch ? (x.to(at::kFloat) + branch.to(at::kFloat)).to(aten_type(c.x)) : x;
  const at::Tensor hf = ref_sum.to(at::kFloat).requires_grad_();
  const at::Tensor wf = weight.to(at::kFloat).requires_grad_();
  const at::Tensor bf = c.rms ? at::Tensor() : bias.to(at::kFloat).requires_grad_();
  const at::Tensor y = c.rms ? at::rms_norm(hf, {c.cols}, wf, 1e-5) : at::layer_norm(hf, {c.cols}, wf, bf, 1e-5);
  y.backward(grad_out.to(at::kFloat));
  at::Tensor dh = hf.grad();
  if (c.with_branch) dh = dh + grad_sum.to(at::kFloat);

  // fp32 storage: only the order of the sums differs. 16-bit storage: one rounding each.
  const double tol = c.out == DType::kFloat32 && c.x == DType::kFloat32 ? 2e-6 : 1e-2;
  if (c.with_branch) {
    EXPECT_TRUE(sum.equal(ref_sum)) << "sum";
  }
  EXPECT_LT(rel(out, y.detach().to(aten_type(c.out))), tol) << "normed";
  EXPECT_LT(rel(grad_x, dh.to(aten_type(c.x))), tol) << "grad x";
  if (c.with_branch) {
    EXPECT_LT(rel(grad_branch, dh.to(aten_type(c.branch))), tol) << "grad branch";
  }
  // The weight gradients are fp32 sums over all rows in both: 16-bit inputs change nothing here.
  EXPECT_LT(rel(weight_partial.sum(0), wf.grad()), 1e-5) << "grad weight";
  if (!c.rms) {
    EXPECT_LT(rel(bias_partial.sum(0), bf.grad()), 1e-5) << "grad bias";
  }
  const at::Tensor hf32 = ref_sum.to(at::kFloat);
  if (!c.rms) {
    EXPECT_LT(rel(mean, hf32.mean(-1)), 1e-5) << "mean";
  }
  const at::Tensor var = c.rms ? hf32.pow(2).mean(-1) : hf32.var({-1}, /*unbiased=*/false);
  EXPECT_LT(rel(rstd, (var + 1e-5).rsqrt()), 1e-5) << "rstd";
}

TEST(FusedNormKernelsEmulated, MatchAtenForEveryInstanceForwardAndBackward) {
  constexpr DType F32 = DType::kFloat32, BF16 = DType::kBFloat16, F16 = DType::kFloat16;
  const DType instances[][4] = {{F32, F32, F32, F32},
                                {F32, BF16, F32, BF16},
                                {F32, F16, F32, F16},
                                {BF16, BF16, BF16, BF16},
                                {F16, F16, F16, F16}};
  // 13 rows: a full block of 8 and a part; 100 columns: not a multiple of a warp's 32.
  for (const auto& t : instances) {
    for (const bool rms : {false, true}) {
      for (const bool with_branch : {true, false}) check({t[0], t[1], t[2], t[3], rms, with_branch, 13, 100});
    }
  }
  // GPT-2's width, under fp32 and under bf16 autocast.
  check({F32, F32, F32, F32, false, true, 13, 768});
  check({F32, BF16, F32, BF16, false, true, 13, 768});
}

TEST(FusedNormKernelsEmulated, TheBackwardGridStridesOverTheRows) {
  // 3 blocks of 8 warps for 61 rows: warps take up to 3 rows each, and the partial sums add them.
  check({DType::kFloat32, DType::kFloat32, DType::kFloat32, DType::kFloat32, false, true, 61, 40, 3});
  check({DType::kFloat32, DType::kBFloat16, DType::kFloat32, DType::kBFloat16, true, true, 61, 40, 3});
}

TEST(FusedNormKernelsEmulated, WideRowsTakeFewerWarpsPerBlock) {
  // Each warp's [2, cols] slice must fit 48 KiB with the others: 6 warps at 1000 columns, 1 at
  // the widest rows, 4096 (2 blocks: each warp takes 5 or 6 of the 11 rows).
  EXPECT_EQ(detail::backward_warps(768), 8);
  EXPECT_EQ(detail::backward_warps(1000), 6);
  EXPECT_EQ(detail::backward_warps(kMaxNormCols), 1);
  check({DType::kFloat32, DType::kFloat32, DType::kFloat32, DType::kFloat32, false, true, 29, 1000, 2});
  check({DType::kFloat32, DType::kBFloat16, DType::kFloat32, DType::kBFloat16, false, true, 11, kMaxNormCols, 2});
}

TEST(FusedNormKernelsEmulated, TypesWithoutAnInstanceAreRefused) {
  const auto norm_supported = [](DType x, DType b, DType w, DType o) {
    return detail::with_types(x, b, w, o, [](auto) {});
  };
  EXPECT_FALSE(norm_supported(DType::kBFloat16, DType::kBFloat16, DType::kFloat32, DType::kBFloat16));
  EXPECT_FALSE(norm_supported(DType::kFloat32, DType::kBFloat16, DType::kFloat32, DType::kFloat32));
  EXPECT_TRUE(norm_supported(DType::kFloat32, DType::kBFloat16, DType::kFloat32, DType::kBFloat16));
}

TEST(FusedNormKernelsEmulated, ShapesBeyondTheKernelsLimitsFallBackToAten) {
  // Too many rows would overflow the forward's grid; rows too wide would not fit the backward's
  // shared memory. Both must answer "no kernel" before anything is allocated: on meta tensors
  // (shapes without storage) anything past the checks would throw.
  const at::Tensor none;
  const auto fits = [&](int64_t rows, int64_t cols, at::Device device) {
    const auto options = at::TensorOptions().device(device).dtype(at::kFloat);
    return fused_norm::prepare_forward(at::empty({rows, cols}, options), none, at::empty({cols}, options), none,
                                       at::kFloat, 1e-5, true)
        .has_value();
  };
  EXPECT_FALSE(fits(kMaxNormRows + 1, 4, at::kMeta));
  EXPECT_FALSE(fits(8, kMaxNormCols + 1, at::kMeta));
  EXPECT_TRUE(fits(8, kMaxNormCols, at::kCPU));
  EXPECT_TRUE(fits(8, 4, at::kCPU));
}

// add_norm's fused path with the emulated kernels on CPU tensors: the CUDA backend's code
// (cuda_fused_norm.cc) but for the device guard, the stream and the launch.
struct EmulatedKernels {
  static std::optional<fused_norm::Forward> forward(const at::Tensor& x, const at::Tensor& branch,
                                                    const at::Tensor& weight, const at::Tensor& bias,
                                                    at::ScalarType out_dtype, double eps, bool rms) {
    std::optional<fused_norm::ForwardCall> call =
        fused_norm::prepare_forward(x, branch, weight, bias, out_dtype, eps, rms);
    if (!call || !detail::launch_forward(
                     call->args, [](auto k, unsigned b, int t, size_t s, const auto& a) { launch(k, b, t, s, a); }))
      return std::nullopt;
    return std::move(call->outputs);
  }
  static fused_norm::Backward backward(const at::Tensor& grad_out, const at::Tensor& grad_sum, const at::Tensor& h,
                                       const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& weight,
                                       bool has_branch, at::ScalarType branch_dtype, bool has_bias, bool rms) {
    fused_norm::BackwardCall call =
        fused_norm::prepare_backward(grad_out, grad_sum, h, mean, rstd, weight, has_branch, branch_dtype, has_bias, rms,
                                     detail::backward_blocks(h.numel() / h.size(-1), h.size(-1)));
    EXPECT_TRUE(detail::launch_backward(
        call.args, [](auto k, unsigned b, int t, size_t s, const auto& a) { launch(k, b, t, s, a); }));
    return call.finish(weight.scalar_type());
  }
};

// Two blocks' worth of a pre-norm transformer's residual stream: n1 = norm_1(x); h = x + n1·W;
// n2 = norm_2(h), then a loss on h and n2, so that the sum's gradient comes from two uses (the
// loss and norm_2) and x's from three. The fused path against the same ops composed by ATen.
TEST(FusedNormKernelsEmulated, AddNormsAutogradGivesAtensGradients) {
  struct Types {
    at::ScalarType x, branch, out;
  };
  // fp32; bf16 autocast (the branch, a GEMM's output, and the normalized rows in bf16); bf16 storage.
  for (const Types t : {Types{at::kFloat, at::kFloat, at::kFloat}, Types{at::kFloat, at::kBFloat16, at::kBFloat16},
                        Types{at::kBFloat16, at::kBFloat16, at::kBFloat16}}) {
    for (const bool rms : {false, true}) {
      SCOPED_TRACE(std::string(c10::toString(t.x)) + "/" + c10::toString(t.branch) + (rms ? " rms" : " layer"));
      std::vector<std::vector<at::Tensor>> grads;
      for (const bool fused : {true, false}) {
        torch::manual_seed(9);
        const int64_t d = 48;
        const auto param_type = t.x;
        const at::Tensor x = (at::randn({13, d}) * 2.0 + 0.3).to(t.x).requires_grad_();
        const at::Tensor w1 = (1.0 + 0.1 * at::randn({d})).to(param_type).requires_grad_();
        const at::Tensor b1 = rms ? at::Tensor() : (0.1 * at::randn({d})).to(param_type).requires_grad_();
        const at::Tensor w2 = (1.0 + 0.1 * at::randn({d})).to(param_type).requires_grad_();
        const at::Tensor b2 = rms ? at::Tensor() : (0.1 * at::randn({d})).to(param_type).requires_grad_();
        const at::Tensor mix = (0.2 * at::randn({d, d})).to(t.out).requires_grad_();
        const auto norm = [&](const at::Tensor& in, const at::Tensor& branch, const at::Tensor& w,
                              const at::Tensor& b) {
          if (fused) {
            auto r = fused_add_norm<EmulatedKernels>(in, branch, w, b, t.out, 1e-5, rms);
            if (!r) throw std::runtime_error("no emulated kernel for these types");
            return *r;
          }
          const at::Tensor sum = branch.defined() ? in + branch : in;
          const at::Tensor n = rms ? at::rms_norm(sum, {d}, w, 1e-5) : at::layer_norm(sum, {d}, w, b, 1e-5);
          return AddNormResult{sum, n.to(t.out)};  // the cast autocast's linear would make
        };
        const AddNormResult first = norm(x, at::Tensor(), w1, b1);
        const at::Tensor branch = first.normed.matmul(mix).to(t.branch);
        const AddNormResult second = norm(x, branch, w2, b2);
        torch::manual_seed(10);
        const at::Tensor loss = (second.normed.to(at::kFloat) * at::randn({13, d})).sum() +
                                (second.sum.to(at::kFloat) * at::randn({13, d})).sum();
        loss.backward();
        std::vector<at::Tensor> g = {second.sum.detach(), second.normed.detach(), x.grad(), w1.grad(), w2.grad(),
                                     mix.grad()};
        if (!rms) {
          g.push_back(b1.grad());
          g.push_back(b2.grad());
        }
        grads.push_back(g);
      }
      const double tol = t.out == at::kFloat && t.x == at::kFloat ? 1e-5 : 2e-2;
      const char* names[] = {"sum", "normed", "grad x", "grad w1", "grad w2", "grad mix", "grad b1", "grad b2"};
      for (size_t i = 0; i < grads[0].size(); ++i) EXPECT_LT(rel(grads[0][i], grads[1][i]), tol) << names[i];
    }
  }
}

}  // namespace
}  // namespace gradacc::kernels
