// ZeRO-1 checkpoint state: the flat form of an optimizer's state, its shards for several world
// sizes, and checkpoints loaded across layouts (plain → shard, shards → plain), against the state
// of a real optimizer after real updates.
#include "checkpoint/optimizer_shards.h"

#include <filesystem>

#include <ATen/ops/cat.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/randn_like.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/rmsprop.h>

#include "checkpoint/checkpoint.h"
#include "gradacc/optimizer.h"
#include "sync/zero_shard.h"

#include "testing/test_util.h"

namespace gradacc {
namespace {

namespace fs = std::filesystem;

// 3·5+5 + 5·2+2 = 32 trainable elements: not a multiple of 3, so world 3 pads.
torch::nn::Sequential small_model(int seed) {
  torch::manual_seed(seed);
  return torch::nn::Sequential(torch::nn::Linear(3, 5), torch::nn::Linear(5, 2));
}

std::vector<at::Tensor> trainable(torch::nn::Module& m) { return m.parameters(); }

// Three updates with random gradients: every field of the state is non-trivial.
void take_steps(torch::optim::Optimizer& optimizer, const std::vector<at::Tensor>& params) {
  for (int s = 0; s < 3; ++s) {
    for (const at::Tensor& p : params) p.mutable_grad() = at::randn_like(p);
    optimizer.step();
  }
}

std::vector<int64_t> numels_of(const std::vector<at::Tensor>& params) {
  std::vector<int64_t> n;
  for (const at::Tensor& p : params) n.push_back(p.numel());
  return n;
}

TEST(OptimizerShards, FlatStateRoundTripsThroughTheShardsOfAnyWorldSize) {
  for (const std::string name : {"adamw", "adam", "sgd"}) {
    for (const bool fused : {true, false}) {
      auto model = small_model(1);
      OptimizerOptions o;
      o.name = name;
      o.fused = fused;
      if (name == "sgd") o.momentum = 0.9;
      const auto params = trainable(*model);
      auto optimizer = make_optimizer(params, o);
      take_steps(*optimizer, params);
      const TensorMap per_param = optimizer_state(*optimizer);
      const TensorMap flat = flatten_optimizer_state(per_param, numels_of(params));
      EXPECT_EQ(flat.size(), name == "sgd" ? 1u : 3u) << name;
      for (const int64_t world : {1, 2, 3, 5}) {
        const int64_t length = (32 + world - 1) / world;
        std::map<std::string, std::vector<at::Tensor>> joined;
        for (int64_t r = 0; r < world; ++r) {
          for (const auto& [key, t] : slice_optimizer_state(flat, r * length, length)) {
            if (key == "0.step") {
              EXPECT_TRUE(at::equal(t, flat.at("step")));
            } else {
              ASSERT_EQ(t.numel(), length) << key;
              joined[key].push_back(t);
            }
          }
        }
        for (const auto& [key, parts] : joined) {
          const at::Tensor whole = at::cat(parts);
          EXPECT_TRUE(at::equal(whole.narrow(0, 0, 32), flat.at(key.substr(2)))) << name << " world " << world;
          EXPECT_EQ(whole.narrow(0, 32, whole.numel() - 32).abs().sum().item<double>(), 0.0) << "padding is zero";
        }
      }
      const TensorMap back = split_optimizer_state(flat, params);
      ASSERT_EQ(back.size(), per_param.size()) << name;
      for (const auto& [key, t] : per_param) {
        ASSERT_TRUE(back.count(key)) << key;
        EXPECT_TRUE(at::equal(back.at(key).reshape(t.sizes()).to(t.scalar_type()), t)) << name << " " << key;
      }
    }
  }
}

TEST(OptimizerShards, StateThatIsNotElementwiseOrIncompleteIsRefused) {
  auto model = small_model(1);
  const auto params = trainable(*model);
  OptimizerOptions o;
  o.fused = false;
  auto adam = make_optimizer(params, o);
  take_steps(*adam, params);
  TensorMap state = optimizer_state(*adam);
  TensorMap other_step = state;
  other_step["1.step"] = other_step["1.step"] + 1;
  EXPECT_THROW(flatten_optimizer_state(other_step, numels_of(params)), std::invalid_argument);
  TensorMap missing = state;
  missing.erase("2.exp_avg");
  EXPECT_THROW(flatten_optimizer_state(missing, numels_of(params)), std::invalid_argument);
  EXPECT_THROW(flatten_optimizer_state({{"archive", at::zeros({4}, at::kByte)}}, numels_of(params)),
               std::invalid_argument);

  torch::optim::RMSprop rmsprop(params, torch::optim::RMSpropOptions(0.01));
  EXPECT_FALSE(elementwise_optimizer(rmsprop));
  EXPECT_TRUE(elementwise_optimizer(*adam));
}

struct Dirs {
  std::string dir = testing::temp_path("shards");
  Dirs() { fs::remove_all(dir); }
  ~Dirs() { fs::remove_all(dir); }
};

// A plain checkpoint loads into the shard of rank 1 of 2 (its slice of the flat state, weights
// whole); the two ranks' shards, saved as a sharded checkpoint, load back into a plain optimizer
// with exactly the state it started from.
TEST(OptimizerShards, CheckpointsLoadAcrossLayouts) {
  const Dirs d;
  auto model = small_model(1);
  const auto params = trainable(*model);
  const OptimizerOptions o;  // fused AdamW
  auto optimizer = make_optimizer(params, o);
  take_steps(*optimizer, params);
  CheckpointState state;
  state.step = 3;
  state.updates = 3;
  const std::string plain = save_checkpoint(d.dir + "/plain", state, *model, *optimizer, {{"seed", "1"}}, 3);
  const TensorMap flat = flatten_optimizer_state(optimizer_state(*optimizer), numels_of(params));

  std::vector<torch::nn::Sequential> rank_models;
  std::vector<std::unique_ptr<ZeroShard>> shards;
  std::vector<std::unique_ptr<torch::optim::Optimizer>> rank_optimizers;
  for (int r = 0; r < 2; ++r) {
    rank_models.push_back(small_model(2));  // other weights: the checkpoint's must replace them
    shards.push_back(std::make_unique<ZeroShard>(*rank_models[r], r, 2, std::nullopt));
    const ZeroShard& z = *shards[r];
    rank_optimizers.push_back(make_optimizer({z.shard_param()}, o));
    const ShardSlot slot{r, 2, z.offset(), z.length(), z.total()};
    load_checkpoint(plain, *rank_models[r], *rank_optimizers[r], {{"seed", "1"}}, {}, at::kCPU, &slot);
    for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(at::equal(rank_models[r]->parameters()[i], params[i]));
    const TensorMap loaded = optimizer_state(*rank_optimizers[r]);
    for (const std::string field : {"exp_avg", "exp_avg_sq"}) {
      EXPECT_TRUE(at::equal(loaded.at("0." + field), slice_padded(flat.at(field), z.offset(), z.length())))
          << "rank " << r << " " << field;
    }
  }

  // Both ranks' shards and rank 0's main file: a sharded checkpoint, loaded into a plain run.
  const std::string crc = weights_fingerprint(*rank_models[0]);
  for (int r = 0; r < 2; ++r) {
    const ZeroShard& z = *shards[r];
    save_shard(d.dir + "/sharded", 3, ShardSlot{r, 2, z.offset(), z.length(), z.total()},
               optimizer_state(*rank_optimizers[r]), {}, {{"seed", "1"}}, crc);
  }
  const ShardedSave sharded{2, crc};
  const std::string main = save_checkpoint(d.dir + "/sharded", state, *rank_models[0], *rank_optimizers[0],
                                           {{"seed", "1"}}, 3, at::kCPU, &sharded);
  auto fresh = small_model(3);
  auto fresh_optimizer = make_optimizer(trainable(*fresh), o);
  load_checkpoint(main, *fresh, *fresh_optimizer, {{"seed", "1"}});
  const TensorMap original = optimizer_state(*optimizer), restored = optimizer_state(*fresh_optimizer);
  ASSERT_EQ(original.size(), restored.size());
  for (const auto& [key, t] : original) EXPECT_TRUE(at::equal(restored.at(key), t)) << key;

  // A missing shard, and a shard of another checkpoint (other weights), are refused.
  const std::string shard1 = d.dir + "/sharded/" + shard_file_name(3, 1, 2);
  fs::rename(shard1, shard1 + ".away");
  try {
    load_checkpoint(main, *fresh, *fresh_optimizer, {{"seed", "1"}});
    ADD_FAILURE() << "loaded without its second shard";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("shard-1-of-2.safetensors is missing"), std::string::npos) << e.what();
  }
  const ZeroShard& z1 = *shards[1];
  save_shard(d.dir + "/sharded", 3, ShardSlot{1, 2, z1.offset(), z1.length(), z1.total()},
             optimizer_state(*rank_optimizers[1]), {}, {{"seed", "1"}}, "0badc0de");
  try {
    load_checkpoint(main, *fresh, *fresh_optimizer, {{"seed", "1"}});
    ADD_FAILURE() << "loaded a shard of another checkpoint";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("shard of another checkpoint"), std::string::npos) << e.what();
  }
}

// ZeRO-3's checkpoints: each rank's parameters in its shard file, none in the main file; loaded
// into a whole model of another run. A main file that records them without shards holding them,
// or shards of a model of another size, are refused.
TEST(OptimizerShards, ParametersInTheShardsLoadIntoAWholeModel) {
  const Dirs d;
  auto model = small_model(1);
  const auto params = trainable(*model);
  auto optimizer = make_optimizer(params, OptimizerOptions());
  take_steps(*optimizer, params);
  std::vector<at::Tensor> pieces;
  for (const at::Tensor& p : params) pieces.push_back(p.detach().reshape({-1}));
  const at::Tensor flat_params = at::cat(pieces);
  const TensorMap flat = flatten_optimizer_state(optimizer_state(*optimizer), numels_of(params));
  CheckpointState state;
  state.step = state.updates = 3;
  const auto save = [&](const std::string& dir, bool with_params) {
    for (int r = 0; r < 3; ++r) {  // 32 elements over 3 ranks: 11 each, the last padded
      const ShardSlot slot{r, 3, 11 * r, 11, 32};
      TensorMap tensors;
      if (with_params) tensors["params"] = slice_padded(flat_params, slot);
      save_shard(dir, 3, slot, slice_optimizer_state(flat, slot), tensors, {{"seed", "1"}}, "shards:1");
    }
    const ShardedSave sharded{3, "shards:1", true};
    return save_checkpoint(dir, state, *model, *optimizer, {{"seed", "1"}}, 3, at::kCPU, &sharded);
  };
  const std::string main = save(d.dir + "/z3", true);
  for (const auto& [key, t] : load_safetensors(main))
    EXPECT_TRUE(key.rfind("model.", 0) != 0) << key << " in the main file";
  auto fresh = small_model(2);
  auto fresh_optimizer = make_optimizer(trainable(*fresh), OptimizerOptions());
  load_checkpoint(main, *fresh, *fresh_optimizer, {{"seed", "1"}});
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(at::equal(fresh->parameters()[i], params[i])) << i;

  const std::string hollow = save(d.dir + "/hollow", false);
  auto other = small_model(3);
  const at::Tensor before = other->parameters()[0].clone();
  try {
    load_checkpoint(hollow, *other, *fresh_optimizer, {{"seed", "1"}});
    ADD_FAILURE() << "loaded a main file whose shards hold no parameters";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("its shards hold no parameters"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(at::equal(other->parameters()[0], before)) << "a failed load changed the model";
  torch::nn::Sequential bigger(torch::nn::Linear(3, 5), torch::nn::Linear(5, 3));
  auto bigger_optimizer = make_optimizer(bigger->parameters(), OptimizerOptions());
  try {
    load_checkpoint(main, *bigger, *bigger_optimizer, {{"seed", "1"}});
    ADD_FAILURE() << "loaded 32 parameter elements into a model of 38";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("hold 32 parameter elements"), std::string::npos) << e.what();
  }
}

// A count in a checkpoint's header (step, updates, a shard's offset) is read as the tracked parts
// read theirs (base/stateful.h): digits only, one line naming the file and the key otherwise.
TEST(CheckpointMetadata, CountsAreDigitsOnly) {
  const StringMap meta = {{"step", "12"}, {"plus", "+5"}, {"space", " 5"}, {"minus", "-1"}, {"zero", "007"}};
  EXPECT_EQ(metadata_count(meta, "step", "c.safetensors"), 12);
  for (const char* key : {"plus", "space", "minus", "zero"}) {
    try {
      metadata_count(meta, key, "c.safetensors");
      ADD_FAILURE() << key << " was read as a count";
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find(fmt::format("c.safetensors: metadata '{}'", key)), std::string::npos)
          << e.what();
    }
  }
  EXPECT_THROW(metadata_count(meta, "updates", "c.safetensors"), CheckpointError);
}

}  // namespace
}  // namespace gradacc
