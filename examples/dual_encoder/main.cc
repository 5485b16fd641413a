// A query/passage dual encoder trained with in-batch negatives, its contrastive loss over the WHOLE
// window of 256 pairs although each micro-batch holds 32: gradient caching through gradacc's public
// API (gradacc/window_loss.h, docs/contrastive.md). Synthetic data: each pair shares a latent vector.
//   dual_encoder [--steps N] [--micro-batch M] [--save FILE]   (data parallel: gradacc launch --program)
#include <iostream>
#include <string>

#include <gradacc/gradacc.h>
#include <torch/nn.h>
#include <torch/optim/adamw.h>

// Two towers: queries of 24 features and passages of 32, both embedded in 16 dimensions.
struct DualEncoder : torch::nn::Module {
  torch::nn::Sequential query{register_module(
      "query", torch::nn::Sequential(torch::nn::Linear(24, 64), torch::nn::GELU(), torch::nn::Linear(64, 16)))};
  torch::nn::Sequential passage{register_module(
      "passage", torch::nn::Sequential(torch::nn::Linear(32, 64), torch::nn::GELU(), torch::nn::Linear(64, 16)))};
  torch::Tensor forward(const torch::Tensor& x) { return query->forward(x.narrow(1, 0, 24)); }
};

// n pairs (query | passage features, 56 per row) from latent vectors z: q = z·A + noise, p = z·B + noise.
std::shared_ptr<gradacc::TensorDataset> pairs(int64_t n, int64_t seed) {
  torch::manual_seed(100);  // the same maps for training and test pairs
  const torch::Tensor a = torch::randn({8, 24}), b = torch::randn({8, 32});
  torch::manual_seed(seed);
  const torch::Tensor z = torch::randn({n, 8});
  const torch::Tensor rows =
      torch::cat({z.matmul(a) + 0.5 * torch::randn({n, 24}), z.matmul(b) + 0.5 * torch::randn({n, 32})}, 1);
  return std::make_shared<gradacc::TensorDataset>(rows, torch::arange(n), n);
}

int main(int argc, char** argv) try {
  int64_t steps = 40, micro = 32;
  std::string save;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--steps" && i + 1 < argc)
      steps = std::stoll(argv[++i]);
    else if (a == "--micro-batch" && i + 1 < argc)
      micro = std::stoll(argv[++i]);
    else if (a == "--save" && i + 1 < argc)
      save = argv[++i];
    else
      throw gradacc::ConfigError("usage: dual_encoder [--steps N] [--micro-batch M] [--save FILE]");
  }
  torch::manual_seed(0);
  auto net = std::make_shared<DualEncoder>();
  // The encoder maps a micro-batch to its representations; the loss sees the whole window's (all
  // ranks') and returns the SUM of its terms: every other passage of the 256 is a negative.
  const gradacc::WindowLoss loss{
      [net](const gradacc::Batch& b) -> std::vector<torch::Tensor> {
        return {net->query->forward(b.inputs.narrow(1, 0, 24)), net->passage->forward(b.inputs.narrow(1, 24, 32))};
      },
      [](const std::vector<torch::Tensor>& r, const torch::Tensor&) { return gradacc::info_nce_sum(r[0], r[1], 0.1); }};
  const gradacc::OptimizerFactory adamw = [](const std::vector<torch::Tensor>& params) {
    return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(3e-3));
  };
  gradacc::TrainOptions options;
  options.batch().global_batch(256).micro_batch(micro);
  options.data().steps(steps).seed(1);
  options.logging().progress(false);
  gradacc::Trainer trainer(gradacc::Model::of(net), adamw, pairs(4096, 1), options, loss);
  trainer.on_step([&](const gradacc::StepReport& r, const gradacc::StepContext&) {
    if (trainer.lead() && (r.step % 10 == 0 || r.step == steps))
      std::cout << "step " << r.step << " loss " << r.loss << "\n";
    return true;
  });
  trainer.fit();
  // Recall@1 on 512 held-out pairs: each query's nearest passage is its own.
  torch::NoGradGuard no_grad;
  const torch::Tensor test = pairs(512, 2)->inputs();
  const torch::Tensor scores =
      net->query->forward(test.narrow(1, 0, 24)).matmul(net->passage->forward(test.narrow(1, 24, 32)).t());
  if (trainer.lead() && !save.empty()) gradacc::save_module(save, *net);
  if (trainer.lead())
    std::cout << "recall@1 " << scores.argmax(1).eq(torch::arange(512)).to(torch::kFloat).mean().item<double>() << "\n";
  return 0;
} catch (const std::exception& e) {
  std::string m = e.what();
  std::cerr << "dual_encoder: error: " << m.substr(0, m.find('\n')) << "\n";
  return 2;
}
