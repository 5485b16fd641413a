#include "train/evaluation.h"

#include <algorithm>
#include <vector>

#include <ATen/ops/argmax.h>
#include <torch/csrc/autograd/grad_mode.h>

namespace gradacc {
namespace {

// Consecutive batches of `batch` examples covering `data`.
std::vector<std::vector<int64_t>> consecutive(const Dataset& data, int64_t batch) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t start = 0; start < data.size(); start += batch) {
    std::vector<int64_t>& idx = out.emplace_back();
    for (int64_t i = start; i < std::min(start + batch, data.size()); ++i) idx.push_back(i);
  }
  return out;
}

}  // namespace

void for_each_eval_batch(Model& model, const Dataset& data, const std::vector<std::vector<int64_t>>& batches,
                         const at::Device& device, Precision precision,
                         const std::function<void(const Batch&, const at::Tensor&)>& fn) {
  torch::NoGradGuard no_grad;
  AutocastGuard autocast(device.type(), precision);
  const bool was_training = model.module->is_training();
  model.module->eval();
  for (const std::vector<int64_t>& idx : batches) {
    const Batch b = data.gather(idx).to(device);
    fn(b, model.forward(b));
  }
  model.module->train(was_training);
}

double evaluate_loss(Model& model, const LossFn& loss, const Dataset& data, const at::Device& device, int64_t batch,
                     Precision precision) {
  double total = 0.0;
  int64_t items = 0;
  for_each_eval_batch(model, data, consecutive(data, batch), device, precision,
                      [&](const Batch& b, const at::Tensor& outputs) {
                        total += loss(outputs, b).item<double>();
                        items += b.items;
                      });
  return items > 0 ? total / static_cast<double>(items) : 0.0;
}

Evaluation evaluate_loss_and_accuracy(Model& model, const LossFn& loss, const Dataset& data, const at::Device& device,
                                      int64_t batch, Precision precision) {
  double total = 0.0;
  int64_t items = 0, correct = 0;
  for_each_eval_batch(model, data, consecutive(data, batch), device, precision,
                      [&](const Batch& b, const at::Tensor& outputs) {
                        total += loss(outputs, b).item<double>();
                        items += b.items;
                        correct += at::argmax(outputs, -1).eq(b.targets).sum().item<int64_t>();
                      });
  return {items > 0 ? total / static_cast<double>(items) : 0.0,
          data.size() > 0 ? static_cast<double>(correct) / static_cast<double>(data.size()) : 0.0};
}

double evaluate_accuracy(Model& model, const Dataset& data, const at::Device& device, int64_t batch,
                         Precision precision) {
  int64_t correct = 0;
  for_each_eval_batch(model, data, consecutive(data, batch), device, precision,
                      [&](const Batch& b, const at::Tensor& outputs) {
                        correct += at::argmax(outputs, -1).eq(b.targets).sum().item<int64_t>();
                      });
  return data.size() > 0 ? static_cast<double>(correct) / static_cast<double>(data.size()) : 0.0;
}

}  // namespace gradacc
