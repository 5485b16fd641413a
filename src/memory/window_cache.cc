#include "memory/window_cache.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/randn.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "gradacc/device.h"
#include "gradacc/errors.h"

namespace gradacc {
namespace {

constexpr int64_t kExactUpTo = 256;  // windows this small are measured at their own size

int64_t tensor_bytes(const at::Tensor& t) { return t.defined() ? static_cast<int64_t>(t.nbytes()) : 0; }

// The first n examples' indices, wrapping around a data set smaller than n.
std::vector<int64_t> first_examples(const Dataset& data, int64_t n) {
  std::vector<int64_t> indices;
  for (int64_t i = 0; i < n; ++i) indices.push_back(i % data.size());
  return indices;
}

// Pass 2's peak above what was live before it, for a window of n representations of these row
// shapes, less the gradients it returns (held, and counted there).
int64_t probe_loss(const WindowLoss& loss, const Dataset& data, const at::Device& device,
                   const std::vector<at::Tensor>& one_row, int64_t n) {
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(20211203);
  std::vector<at::Tensor> reps;
  int64_t grad_bytes = 0;
  for (const at::Tensor& r : one_row) {
    std::vector<int64_t> shape = r.sizes().vec();
    shape[0] = n;
    reps.push_back(at::randn(shape, g, at::TensorOptions().dtype(at::kFloat)).to(device).requires_grad_(true));
    grad_bytes += tensor_bytes(reps.back());
  }
  const at::Tensor targets = data.gather(first_examples(data, n)).targets.to(device);
  const int64_t before = memory_reading(device).current_bytes;
  reset_memory_peak(device);
  {
    torch::AutoGradMode grad(true);
    const at::Tensor l = loss.loss(reps, targets);
    if (!l.defined() || l.dim() != 0)
      throw ConfigError("the window loss returned a tensor that is not 0-dim: it must return the window's sum");
    const std::vector<at::Tensor> grads = torch::autograd::grad({l}, reps);
  }
  return std::max<int64_t>(memory_reading(device).peak_bytes - before - grad_bytes, 0);
}

}  // namespace

int64_t WindowCacheCost::loss_transient(int64_t window) const {
  const double n = static_cast<double>(window);
  return std::max<int64_t>(0, static_cast<int64_t>(std::ceil(loss_fixed + loss_linear * n + loss_quadratic * n * n)));
}

WindowCacheCost measure_window_cache(const WindowLoss& loss, const Dataset& data, const at::Device& device,
                                     Precision precision, int64_t window) {
  WindowCacheCost c;
  const Batch one = data.gather(first_examples(data, 1)).to(device);
  std::vector<at::Tensor> row;
  {
    torch::NoGradGuard no_grad;
    AutocastGuard autocast(device.type(), precision);
    for (const at::Tensor& r : loss.encode_rows(one)) row.push_back(r.to(at::kFloat));
  }
  int64_t rep_bytes = 0;
  for (const at::Tensor& r : row) rep_bytes += tensor_bytes(r);
  c.per_local_example = tensor_bytes(one.inputs) + tensor_bytes(one.targets) + rep_bytes;
  c.per_window_example = 2 * rep_bytes;  // the gathered representations and their gradients
  if (window <= kExactUpTo) {
    c.loss_fixed = static_cast<double>(probe_loss(loss, data, device, row, window));
    return c;
  }
  // The quadratic through (64, y1), (128, y2), (256, y3).
  const double y1 = static_cast<double>(probe_loss(loss, data, device, row, 64));
  const double y2 = static_cast<double>(probe_loss(loss, data, device, row, 128));
  const double y3 = static_cast<double>(probe_loss(loss, data, device, row, 256));
  // With h = 64: y(n) = a + b n + c n²; second differences over steps 64 and 128.
  const double s1 = (y2 - y1) / 64.0, s2 = (y3 - y2) / 128.0;
  c.loss_quadratic = std::max(0.0, (s2 - s1) / (256.0 - 64.0));
  c.loss_linear = s1 - c.loss_quadratic * (64.0 + 128.0);
  c.loss_fixed = y1 - c.loss_linear * 64.0 - c.loss_quadratic * 64.0 * 64.0;
  return c;
}

at::Tensor window_loss_probe_loss(const WindowLoss& loss, const Batch& batch) {
  at::Tensor sum;
  for (const at::Tensor& r : loss.encode_rows(batch)) {
    const at::Tensor s = r.to(at::kFloat).sum();
    sum = sum.defined() ? sum + s : s;
  }
  return sum;
}

}  // namespace gradacc
