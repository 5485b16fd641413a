// Datasets held in memory, and the micro-batch they hand to the training step.
//
// A Batch carries its own counts so that normalization never has to look at the data again:
//   samples — examples in the batch;
//   items   — loss terms that count (targets != kIgnoreIndex): equal to `samples` for
//             classification, the number of real (unpadded) tokens for language models.
// Both are computed on the host while the batch is assembled, so the accumulator can normalize
// without reading anything back from the device.
//
// Thread safety: a Dataset is immutable after construction; `gather` may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace gradacc {

// Target value that contributes nothing to the loss (padding), as in PyTorch's cross_entropy.
constexpr int64_t kIgnoreIndex = -100;

struct Batch {
  at::Tensor inputs;   // [B, ...] model input
  at::Tensor targets;  // [B] class ids, or [B, T] token ids with kIgnoreIndex at padded positions
  int64_t samples = 0;
  int64_t items = 0;
  // Packed sequences (data/packing.h), else undefined: [B, T] each position's place in its own
  // sequence (from 0), and which sequence of its row it belongs to (1, 2, ...; 0 = padding).
  at::Tensor positions, segments;
  Batch to(const at::Device& device) const;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // Assembles the examples at `indices` (in that order) into one batch.
  virtual Batch gather(const std::vector<int64_t>& indices) const = 0;
  // The same, for training in epoch `epoch` (from 0): what the Trainer calls. A data set whose
  // examples change from epoch to epoch (random augmentation) keys its randomness on the example
  // and the epoch, so that every rank, a resumed run and a verification rerun see the same
  // examples. Default: gather(indices).
  virtual Batch gather_in_epoch(const std::vector<int64_t>& indices, int64_t epoch) const {
    (void)epoch;
    return gather(indices);
  }
  // Number of classes the model must predict (vocabulary size for text); 0 when not a
  // classification data set. gradacc's own models read it; the Trainer does not.
  virtual int64_t num_classes() const { return 0; }
  // min(n, size()) indices whose batch needs the most memory (the longest examples): what the
  // memory planner measures with. Default: the first ones, right for fixed-shape examples.
  virtual std::vector<int64_t> largest_examples(int64_t n) const;
  // Positions each example computes in a batch of its own (its row length: tokens for text), or
  // empty for fixed-shape examples. Token-budget micro-batches (window_sampler.h) cut by it.
  virtual std::vector<int64_t> lengths() const { return {}; }
  // Rows of this many tokens when gather() packs several sequences per row; 0: one per row.
  virtual int64_t packed_row_length() const { return 0; }
};

// Fixed-shape examples with one class label each (images, feature vectors).
class TensorDataset : public Dataset {
 public:
  // inputs: [N, ...] float; labels: [N] int64 in [0, num_classes).
  TensorDataset(at::Tensor inputs, at::Tensor labels, int64_t num_classes);
  int64_t size() const override { return inputs_.size(0); }
  Batch gather(const std::vector<int64_t>& indices) const override;
  int64_t num_classes() const override { return num_classes_; }
  const at::Tensor& inputs() const { return inputs_; }
  const at::Tensor& labels() const { return labels_; }
  // The first n examples (for quick runs and tests).
  std::shared_ptr<TensorDataset> head(int64_t n) const;

 private:
  at::Tensor inputs_, labels_;
  int64_t num_classes_;
};

}  // namespace gradacc
