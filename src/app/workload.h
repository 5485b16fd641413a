// The data and model of one of gradacc's own jobs: Fashion-MNIST (IDX files) for mlp and cnn,
// byte-level text for gpt; the model seeded from the job's seed (or loaded from --init).
#pragma once

#include <memory>

#include "app/job_config.h"
#include "builtin/models.h"
#include "gradacc/dataset.h"

namespace gradacc {

struct Workload {
  std::shared_ptr<const Dataset> train, test;  // test: the held-out split (validation documents for text)
  bool text = false;                           // language modelling: per-token normalization
  double unigram_bits_per_byte = 0.0;          // text only: the baseline a model must beat
  int64_t num_classes = 0;
};

// Loads the data named by config.data for config.model. Throws ConfigError (data and model do not
// fit, an unknown source) or DataError (missing or malformed files).
Workload load_workload(const JobConfig& config);

// The job's model: LibTorch's RNG seeded with config.train.data().seed(), built, then --init loaded
// (`init_verified`, when given, tells whether the file carried gradacc's checksum).
std::shared_ptr<Network> make_seeded_model(const JobConfig& config, int64_t num_classes, bool* init_verified = nullptr);

}  // namespace gradacc
