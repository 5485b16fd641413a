#include "app/contrastive.h"

#include <algorithm>

#include <ATen/ops/cat.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>

#include "gradacc/errors.h"

namespace gradacc {

WindowLoss contrastive_loss(std::shared_ptr<Network> net, double temperature) {
  if (!(temperature > 0) || temperature > 100)
    throw ConfigError(fmt::format("temperature must lie in (0, 100], got {}", temperature));
  return WindowLoss{[net](const Batch& b) -> std::vector<at::Tensor> {
                      return {net->forward(b.inputs.select(1, 0)), net->forward(b.inputs.select(1, 1))};
                    },
                    [temperature](const std::vector<at::Tensor>& r, const at::Tensor&) {
                      return info_nce_sum(r[0], r[1], temperature);
                    }};
}

namespace {

at::Tensor embed(Network& net, const at::Tensor& images, const at::Device& device) {
  std::vector<at::Tensor> out;
  for (int64_t i = 0; i < images.size(0); i += 1000)
    out.push_back(net.forward(images.narrow(0, i, std::min<int64_t>(1000, images.size(0) - i)).to(device)).cpu());
  return at::cat(out);
}

}  // namespace

double linear_probe_accuracy(Network& net, const TensorDataset& train, const TensorDataset& test,
                             const at::Device& device, int64_t fit_examples) {
  torch::NoGradGuard no_grad;
  const bool was_training = net.is_training();
  net.eval();
  const int64_t n = std::min(fit_examples, train.size());
  at::Tensor x = embed(net, train.inputs().narrow(0, 0, n), device);
  at::Tensor y = train.labels().narrow(0, 0, n);
  at::Tensor tx = embed(net, test.inputs(), device);
  net.train(was_training);
  const at::Tensor mean = x.mean(0), std = x.std(0) + 1e-6;
  x = (x - mean) / std;
  tx = (tx - mean) / std;
  // Logistic regression: 300 full-batch Adam steps (the probe's own RNG-free fit).
  at::Tensor w = at::zeros({x.size(1), train.num_classes()}).requires_grad_(true);
  at::Tensor b = at::zeros({train.num_classes()}).requires_grad_(true);
  torch::optim::Adam fit({w, b}, torch::optim::AdamOptions(0.05));
  {
    torch::AutoGradMode grad(true);
    for (int i = 0; i < 300; ++i) {
      fit.zero_grad();
      torch::nn::functional::cross_entropy(x.matmul(w) + b, y).backward();
      fit.step();
    }
  }
  return (tx.matmul(w) + b).argmax(1).eq(test.labels()).to(at::kFloat).mean().item<double>();
}

}  // namespace gradacc
