// A model, data set, loss and optimizer of the user's own, trained with exact gradient
// accumulation through gradacc's public API (docs/library.md).
//   custom_model [--steps N] [--save FILE] [--zero N] [--verify]   (data parallel: gradacc launch --program)
#include <iostream>
#include <string>

#include <gradacc/gradacc.h>
#include <torch/nn.h>
#include <torch/optim/adamw.h>

// 1. A model: any torch::nn::Module. Declaring its blocks as gradacc::Units (optional) lets
//    ZeRO-3 (--zero 3) keep 1/R of each block's parameters per rank between its uses, and lets
//    activation checkpointing recompute them.
struct Net : torch::nn::Module {
  torch::nn::Linear fc1{register_module("fc1", torch::nn::Linear(2, 64))},
      fc2{register_module("fc2", torch::nn::Linear(64, 64))}, head{register_module("head", torch::nn::Linear(64, 3))};
  torch::nn::LayerNorm norm1{register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({64})))},
      norm2{register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({64})))};
  gradacc::Units units;  // Model::of finds it
  Net() {
    units.add({fc1.ptr(), norm1.ptr()});  // unit 0; the head is outside every unit (the root)
    units.add({fc2.ptr(), norm2.ptr()});  // unit 1
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor h = units.run(
        0, [this](const torch::Tensor& in) { return torch::gelu(norm1(fc1(in))); }, x);
    h = units.run(
        1, [this](const torch::Tensor& in) { return torch::gelu(norm2(fc2(in))); }, h);
    return head(h);
  }
};

// 2. Data: a LibTorch map-style dataset, three interleaved spirals of 200 points each.
struct Spirals : torch::data::datasets::Dataset<Spirals> {
  torch::data::Example<> get(size_t i) override {
    const int64_t arm = static_cast<int64_t>(i % 3);
    const double r = static_cast<double>(i / 3) / 200.0, angle = 4.0 * r + 2.0944 * static_cast<double>(arm);
    return {torch::tensor({r * std::cos(angle), r * std::sin(angle)}, torch::kFloat), torch::tensor(arm, torch::kLong)};
  }
  std::optional<size_t> size() const override { return 600; }
};

// 3. A loss: label-smoothed cross-entropy, SUMMED over the micro-batch (gradacc divides once by the
//    window's real count, which is what makes accumulation exact).
torch::Tensor summed_loss(const torch::Tensor& logits, const gradacc::Batch& batch) {
  namespace F = torch::nn::functional;
  return F::cross_entropy(logits, batch.targets,
                          F::CrossEntropyFuncOptions().reduction(torch::kSum).label_smoothing(0.05));
}

int main(int argc, char** argv) try {
  int64_t steps = 60, zero = 0;
  std::string save;
  bool verify = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--steps" && i + 1 < argc)
      steps = std::stoll(argv[++i]);
    else if (a == "--save" && i + 1 < argc)
      save = argv[++i];
    else if (a == "--zero" && i + 1 < argc)
      zero = std::stoll(argv[++i]);
    else if (a == "--verify")
      verify = true;
    else
      throw gradacc::ConfigError("usage: custom_model [--steps N] [--save FILE] [--zero N] [--verify]");
  }
  auto data = gradacc::from_torch_dataset(Spirals{}, 3);
  // 4. A stock LibTorch optimizer, made over the tensors gradacc asks it to update.
  const gradacc::OptimizerFactory adamw = [](const std::vector<torch::Tensor>& params) {
    return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(1e-2).weight_decay(0.01));
  };
  // 5. 64 examples per optimizer step in micro-batches of 8: 8 micro-batches (4 per rank on 2 ranks).
  //    Options come in groups, one per concern (gradacc/options.h).
  gradacc::TrainOptions options;
  options.batch().global_batch(64).micro_batch(8).clip(1.0);
  options.data().steps(steps).seed(1);
  options.schedule().kind(gradacc::ScheduleKind::kCosine);
  options.distributed().zero(zero);  // data parallel: 1, 2 or 3 shards optimizer state, gradients, parameters
  options.logging().progress(false);
  const auto make_model = [] {
    torch::manual_seed(0);
    return gradacc::Model::of(std::make_shared<Net>());
  };
  if (verify) {  // accumulated vs full-batch training of this very model
    gradacc::VerifyOptions vo;
    const gradacc::VerifyResult r = gradacc::verify_accumulation(make_model, adamw, data, options, summed_loss, vo);
    std::cout << gradacc::verify_text(r, vo);
    return r.pass ? 0 : 1;
  }
  gradacc::Trainer trainer(make_model(), adamw, data, options, summed_loss);
  trainer.on_step([&](const gradacc::StepReport& r, const gradacc::StepContext&) {
    if (trainer.lead() && (r.step % 10 == 0 || r.step == steps))
      std::cout << "step " << r.step << " loss " << r.loss << "\n";
    return true;
  });
  trainer.fit();
  if (trainer.lead()) {
    std::cout << "accuracy " << trainer.evaluate_accuracy(*data) << "\n";
    if (!save.empty()) gradacc::save_module(save, *trainer.model().module);
  }
  return 0;
} catch (const std::exception& e) {
  std::string m = e.what();
  std::cerr << "custom_model: error: " << m.substr(0, m.find('\n')) << "\n";
  return 2;
}
