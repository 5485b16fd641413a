// The Trainer with a model, data, loss and optimizer that are not gradacc's: every promise holds
// for a user's own torch::nn::Module — exactness against the full batch (through the training
// path, plain SGD so any error in the window's rescale shows at full size), clipping, checkpoints
// with exact resume (a LibTorch optimizer gradacc has no special code for), mixed precision, and
// LibTorch's own torch::data datasets.
#include "gradacc/trainer.h"
#include "train/run_plan.h"

#include <filesystem>

#include <ATen/ops/equal.h>
#include <ATen/ops/mse_loss.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include "gradacc/safetensors.h"
#include "gradacc/torch_dataset.h"
#include "gradacc/verify.h"
#include "testing/test_util.h"

namespace gradacc {
namespace {

using testing::but;
using testing::temp_path;

// A user's model: an MLP with LayerNorm, written the LibTorch way.
struct Regressor : torch::nn::Module {
  Regressor()
      : fc1(register_module("fc1", torch::nn::Linear(8, 32))),
        norm(register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({32})))),
        fc2(register_module("fc2", torch::nn::Linear(32, 3))) {}
  at::Tensor forward(const at::Tensor& x) { return fc2->forward(torch::tanh(norm->forward(fc1->forward(x)))); }
  torch::nn::Linear fc1;
  torch::nn::LayerNorm norm;
  torch::nn::Linear fc2;
};

// A user's data set: 100 examples of a fixed random regression problem.
class Points : public Dataset {
 public:
  Points() {
    torch::manual_seed(123);
    x_ = at::randn({100, 8});
    y_ = at::randn({100, 3});
  }
  int64_t size() const override { return 100; }
  Batch gather(const std::vector<int64_t>& idx) const override {
    const at::Tensor i = at::tensor(idx, at::kLong);
    const auto n = static_cast<int64_t>(idx.size());
    return Batch{x_.index_select(0, i), y_.index_select(0, i), n, n};
  }

 private:
  at::Tensor x_, y_;
};

// A user's loss: squared error summed over each example's outputs (one item per example).
at::Tensor summed_squared_error(const at::Tensor& out, const Batch& b) {
  return at::mse_loss(out, b.targets, at::Reduction::Sum);
}

std::shared_ptr<Regressor> seeded_regressor() {
  torch::manual_seed(7);
  return std::make_shared<Regressor>();
}

OptimizerFactory sgd(double lr) {
  return [lr](const std::vector<at::Tensor>& p) {
    return std::make_unique<torch::optim::SGD>(p, torch::optim::SGDOptions(lr));
  };
}

std::vector<at::Tensor> weights(torch::nn::Module& m) {
  std::vector<at::Tensor> w;
  for (const auto& p : m.parameters()) w.push_back(p.detach().to(at::kDouble).clone());
  return w;
}

// The reference: the same window in one batch, mean over its items, one backward.
std::vector<at::Tensor> full_batch_gradient(const std::vector<at::Tensor>& start, const Batch& window) {
  auto ref = seeded_regressor();
  {
    torch::NoGradGuard no_grad;
    auto p = ref->parameters();
    for (size_t i = 0; i < p.size(); ++i) p[i].copy_(start[i]);
  }
  summed_squared_error(ref->forward(window.inputs), window).div(static_cast<double>(window.items)).backward();
  std::vector<at::Tensor> g;
  for (const auto& p : ref->parameters()) g.push_back(p.grad().to(at::kDouble));
  return g;
}

double rel_l2(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]).pow(2).sum().item<double>();
    den += b[i].pow(2).sum().item<double>();
  }
  return std::sqrt(num / den);
}

// Windows of 64 over 100 examples in micro-batches of 16 (4 + a short second window of 36 = 16 +
// 16 + 4). With SGD at lr 1 each update is minus the window gradient.
TEST(TrainerWithAUsersModule, EachUpdateIsTheFullBatchGradientIncludingTheShortWindow) {
  auto net = seeded_regressor();
  auto data = std::make_shared<Points>();
  Trainer trainer(Model::of(net), sgd(1.0), data,
                  TrainOptions()
                      .batch(BatchOptions().global_batch(64).micro_batch(16))
                      .data(DataOptions().steps(2).seed(5))
                      .logging(LoggingOptions().progress(false)),
                  summed_squared_error);
  std::vector<std::vector<at::Tensor>> before;
  std::vector<int64_t> samples;
  before.push_back(weights(*net));
  trainer.on_step([&](const StepReport& r, const StepContext&) {
    before.push_back(weights(*net));
    samples.push_back(r.samples);
    return true;
  });
  const TrainResult result = trainer.fit();
  ASSERT_EQ(result.history.size(), 2u);
  EXPECT_EQ(samples, (std::vector<int64_t>{64, 36}));
  // Rebuild the two windows from the sampler the Trainer used.
  const WindowSampler sampler(100, trainer.plan().batch, trainer.plan().sampler);
  const auto order = sampler.epoch_order(0);
  for (int w = 0; w < 2; ++w) {
    const std::vector<int64_t> idx(order.begin() + 64 * w, order.begin() + std::min<int64_t>(100, 64 * (w + 1)));
    const std::vector<at::Tensor> g = full_batch_gradient(before[w], data->gather(idx));
    std::vector<at::Tensor> update;
    for (size_t i = 0; i < g.size(); ++i) update.push_back(before[w][i] - before[w + 1][i]);
    // fp32 summation order alone: measured ~1e-7; a count off by the short window's 36/64 is 0.78.
    EXPECT_LT(rel_l2(update, g), 2e-6) << "window " << w;
  }
}

// Clipping acts on the window gradient: the update is the full-batch gradient scaled to norm 0.05.
TEST(TrainerWithAUsersModule, ClipsTheWindowGradientNotTheMicroBatches) {
  auto net = seeded_regressor();
  auto data = std::make_shared<Points>();
  const auto start = weights(*net);
  Trainer trainer(Model::of(net), sgd(1.0), data,
                  TrainOptions()
                      .batch(BatchOptions().global_batch(64).micro_batch(16).clip(0.05))
                      .data(DataOptions().steps(1).shuffle(false))
                      .logging(LoggingOptions().progress(false)),
                  summed_squared_error);
  const TrainResult r = trainer.fit();
  std::vector<int64_t> idx(64);
  std::iota(idx.begin(), idx.end(), 0);
  std::vector<at::Tensor> g = full_batch_gradient(start, data->gather(idx));
  double norm = 0;
  for (const auto& t : g) norm += t.pow(2).sum().item<double>();
  norm = std::sqrt(norm);
  EXPECT_NEAR(r.history[0].grad_norm, norm, 1e-6 * norm);
  ASSERT_GT(norm, 0.05);
  std::vector<at::Tensor> update;
  const auto after = weights(*net);
  for (size_t i = 0; i < g.size(); ++i) {
    update.push_back(start[i] - after[i]);
    g[i] = g[i] * (0.05 / (norm + 1e-6));
  }
  // Measured 3.2e-6: the update is read back as a difference of fp32 weights (~0.3, rounded to
  // ~2e-8) for steps of ~1e-3. Unclipped, the update would be off by norm/0.05 ≈ 6×.
  EXPECT_LT(rel_l2(update, g), 1e-5);
}

// verify_accumulation() on the user's model: accumulated and full-batch runs agree.
TEST(TrainerWithAUsersModule, VerifyPassesOnTheUsersModel) {
  auto data = std::make_shared<Points>();
  VerifyOptions vo;
  vo.steps = 4;
  const VerifyResult r = verify_accumulation([] { return Model::of(seeded_regressor()); }, sgd(0.05), data,
                                             TrainOptions()
                                                 .batch(BatchOptions().global_batch(32).micro_batch(4))
                                                 .data(DataOptions().epochs(2))
                                                 .logging(LoggingOptions().progress(false)),
                                             summed_squared_error, vo);
  EXPECT_TRUE(r.pass);
  EXPECT_LT(r.max_rel_loss_diff, 1e-5);
  EXPECT_EQ(r.accumulated_plan.accumulation_steps, 8);
}

// Checkpoints for any LibTorch optimizer: RMSprop's state goes through LibTorch's own archive.
TEST(TrainerWithAUsersModule, StopAndResumeWithRmspropIsBitExact) {
  auto data = std::make_shared<Points>();
  const OptimizerFactory rmsprop = [](const std::vector<at::Tensor>& p) {
    return std::make_unique<torch::optim::RMSprop>(p, torch::optim::RMSpropOptions(1e-2).momentum(0.9));
  };
  const TrainOptions base = TrainOptions()
                                .batch(BatchOptions().global_batch(32).micro_batch(8))
                                .data(DataOptions().steps(8))
                                .schedule(ScheduleOptions().kind(ScheduleKind::kCosine))
                                .logging(LoggingOptions().progress(false));
  auto whole = seeded_regressor();
  Trainer(Model::of(whole), rmsprop, data, base, summed_squared_error).fit();

  const std::string dir = temp_path("user_ckpt");
  auto part = seeded_regressor();
  const TrainResult first =
      Trainer(Model::of(part), rmsprop, data, but(base, [&](TrainOptions& o) { o.checkpoint().dir(dir).stop_at(5); }),
              summed_squared_error)
          .fit();
  EXPECT_TRUE(first.stopped_early);
  auto resumed = seeded_regressor();  // a fresh process would start from new weights: the checkpoint restores them
  Trainer(Model::of(resumed), rmsprop, data, but(base, [&](TrainOptions& o) { o.checkpoint().resume(dir); }),
          summed_squared_error)
      .fit();
  const auto a = whole->parameters(), b = resumed->parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i], b[i])) << i;
  std::filesystem::remove_all(dir);
}

// bf16 parameters with fp32 masters, and bf16 autocast, on the user's module.
TEST(TrainerWithAUsersModule, TrainsWithBf16ParametersAndFp32Masters) {
  auto net = seeded_regressor();
  auto data = std::make_shared<Points>();
  Trainer trainer(Model::of(net), sgd(0.05), data,
                  TrainOptions()
                      .batch(BatchOptions().global_batch(20).micro_batch(5))
                      .data(DataOptions().epochs(4))
                      .precision(PrecisionOptions().param_dtype(Precision::kBf16))
                      .logging(LoggingOptions().progress(false)),
                  summed_squared_error);
  const TrainResult r = trainer.fit();
  EXPECT_EQ(net->fc1->weight.scalar_type(), at::kBFloat16);
  EXPECT_EQ(trainer.optimizer().param_groups()[0].params()[0].scalar_type(), at::kFloat);  // the masters
  EXPECT_LT(r.history.back().loss, r.history.front().loss);
}

// A torch::data dataset of token sequences with padding (-100): items are the real tokens, and a
// window's update equals the full batch's per-token mean gradient.
struct Tokens : torch::data::datasets::Dataset<Tokens> {
  torch::data::Example<> get(size_t i) override {
    const int64_t real = 2 + static_cast<int64_t>(i % 7);  // 2..8 real tokens of 8
    at::Tensor x = at::arange(8, at::kLong).add(static_cast<int64_t>(i)).remainder(16);
    at::Tensor y = x.roll(-1).clone();
    y.narrow(0, real, 8 - real).fill_(kIgnoreIndex);
    return {x, y};
  }
  std::optional<size_t> size() const override { return 40; }
};

struct TokenNet : torch::nn::Module {
  TokenNet()
      : emb(register_module("emb", torch::nn::Embedding(16, 12))),
        head(register_module("head", torch::nn::Linear(12, 16))) {}
  at::Tensor forward(const at::Tensor& x) { return head->forward(torch::tanh(emb->forward(x))); }
  torch::nn::Embedding emb;
  torch::nn::Linear head;
};

TEST(TrainerWithAUsersModule, TorchDataDatasetsCountRealTokens) {
  auto data = from_torch_dataset(Tokens{});
  const Batch b = data->gather({0, 1, 2});
  EXPECT_EQ(b.samples, 3);
  EXPECT_EQ(b.items, 2 + 3 + 4);
  torch::manual_seed(3);
  auto net = std::make_shared<TokenNet>();
  std::vector<at::Tensor> start;
  for (const auto& p : net->parameters()) start.push_back(p.detach().clone());
  Trainer trainer(Model::of(net), sgd(1.0), data,
                  TrainOptions()
                      .batch(BatchOptions().global_batch(40).micro_batch(5))
                      .data(DataOptions().steps(1).shuffle(false))
                      .logging(LoggingOptions().progress(false)));
  trainer.fit();
  // Reference: all 40 sequences at once, mean over real tokens.
  torch::manual_seed(3);
  auto ref = std::make_shared<TokenNet>();
  std::vector<int64_t> all(40);
  std::iota(all.begin(), all.end(), 0);
  const Batch w = data->gather(all);
  summed_cross_entropy(ref->forward(w.inputs), w.targets).div(static_cast<double>(w.items)).backward();
  std::vector<at::Tensor> update, grad;
  const auto after = net->parameters(), rp = ref->parameters();
  for (size_t i = 0; i < after.size(); ++i) {
    update.push_back((start[i] - after[i]).to(at::kDouble));
    grad.push_back(rp[i].grad().to(at::kDouble));
  }
  EXPECT_LT(rel_l2(update, grad), 2e-6);
}

TEST(TrainerWithAUsersModule, BadOptionsAreOneLineConfigErrors) {
  auto data = std::make_shared<Points>();
  auto make = [&](const TrainOptions& o) {
    Trainer(Model::of(seeded_regressor()), sgd(0.1), data, o, summed_squared_error);
  };
  EXPECT_THROW(make(TrainOptions().batch(BatchOptions().global_batch(64).micro_batch(7))), PlanError);
  EXPECT_THROW(make(TrainOptions().batch(BatchOptions().micro_batch(8).clip(-1))), ConfigError);
  EXPECT_THROW(make(TrainOptions().batch(BatchOptions().micro_batch(8)).data(DataOptions().steps(3).epochs(2))),
               ConfigError);
  EXPECT_THROW(make(TrainOptions().batch(BatchOptions().micro_batch(8)).device(DeviceOptions().threads(100000))),
               ConfigError);
  EXPECT_THROW(make(TrainOptions().batch(BatchOptions().micro_batch(8)).checkpoint(CheckpointOptions().stop_at(2))),
               ConfigError);                                                               // no checkpoint directory
  EXPECT_THROW(make(TrainOptions().batch(BatchOptions().micro_batch(200))), ConfigError);  // larger than the data
  EXPECT_THROW(make(TrainOptions().batch(BatchOptions().micro_batch(8)).device(DeviceOptions().name("tpu"))),
               ConfigError);
  EXPECT_THROW(make(TrainOptions().batch(BatchOptions().micro_batch(8)).distributed(DistributedOptions().zero(4))),
               ConfigError);
  EXPECT_THROW(make(TrainOptions()
                        .batch(BatchOptions().micro_batch(8))
                        .distributed(DistributedOptions().overlap(true).sync(SyncMode::kEveryMicroBatch))),
               ConfigError);
}

// Sets WORLD_SIZE/RANK for one scope: a rank of a data-parallel run that fails before it joins
// the group (no peer is needed for that).
struct RankEnvironment {
  RankEnvironment() {
    ::setenv("WORLD_SIZE", "2", 1);
    ::setenv("RANK", "0", 1);
  }
  ~RankEnvironment() {
    ::unsetenv("WORLD_SIZE");
    ::unsetenv("RANK");
  }
};

// ZeRO-1 and ZeRO-2 shard elementwise optimizers only: a user's RMSprop is refused, naming it,
// before the rank joins the group; every-micro-batch sync is refused too, one line each. On one
// process `zero 1` and `zero 2` are a note.
TEST(TrainerWithAUsersModule, ZeroRefusesWhatItCannotShardAndNotesWorldOne) {
  auto data = std::make_shared<Points>();
  const auto rmsprop = [](const std::vector<at::Tensor>& p) {
    return std::make_unique<torch::optim::RMSprop>(p, torch::optim::RMSpropOptions(0.01));
  };
  {
    const RankEnvironment rank;
    try {
      Trainer(Model::of(seeded_regressor()), rmsprop, data,
              TrainOptions().batch(BatchOptions().micro_batch(8)).distributed(DistributedOptions().zero(1)),
              summed_squared_error);
      ADD_FAILURE() << "sharded RMSprop";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("zero 1 shards elementwise optimizers"), std::string::npos) << e.what();
    }
    for (int64_t stage : {1, 2}) {
      try {
        Trainer(Model::of(seeded_regressor()), sgd(0.1), data,
                TrainOptions()
                    .batch(BatchOptions().micro_batch(8))
                    .distributed(DistributedOptions().zero(stage).sync(SyncMode::kEveryMicroBatch)),
                summed_squared_error);
        ADD_FAILURE() << "zero " << stage << " with every-micro-batch sync";
      } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find(fmt::format("zero {} ", stage)), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("--sync every-micro-batch"), std::string::npos) << e.what();
      }
    }
    try {
      Trainer(Model::of(seeded_regressor()), rmsprop, data,
              TrainOptions().batch(BatchOptions().micro_batch(8)).distributed(DistributedOptions().zero(2)),
              summed_squared_error);
      ADD_FAILURE() << "sharded RMSprop";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("zero 2 shards elementwise optimizers"), std::string::npos) << e.what();
    }
  }
  Trainer two(Model::of(seeded_regressor()), rmsprop, data,
              TrainOptions().batch(BatchOptions().micro_batch(8)).distributed(DistributedOptions().zero(2)),
              summed_squared_error);
  ASSERT_EQ(two.warnings().size(), 1u);
  EXPECT_NE(two.warnings()[0].find("zero 2 at world size 1 changes nothing"), std::string::npos);
  Trainer one(Model::of(seeded_regressor()), rmsprop, data,
              TrainOptions().batch(BatchOptions().micro_batch(8)).distributed(DistributedOptions().zero(1)),
              summed_squared_error);
  ASSERT_EQ(one.warnings().size(), 1u);
  EXPECT_NE(one.warnings()[0].find("zero 1 at world size 1 changes nothing"), std::string::npos);
  EXPECT_FALSE(one.plan().distributed.zero);
}

}  // namespace
}  // namespace gradacc
