// Byte-level text data for causal language modelling.
//
// A UTF-8 file is split into documents at blank lines, each document into training sequences of
// at most `context` predictions: sequence k of a document of n bytes covers bytes
// [k·context, min((k+1)·context, n−1)] — inputs are its bytes but the last, targets its bytes but
// the first — so every next byte of a document is predicted exactly once and the last sequence of
// each document is usually short. Tokens are the 256 byte values (no vocabulary file, no download).
//
// gather() pads a micro-batch to its longest sequence: inputs with 0, targets with kIgnoreIndex,
// and counts items = real (unpadded) targets. Padding sits after the real tokens, so causal
// attention never lets a real position see it. A packed() data set puts several sequences in a
// row instead, padded only at the row's end.
//
// Thread safety: immutable after construction.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "gradacc/dataset.h"

namespace gradacc {

inline constexpr int64_t kByteVocab = 256;

class TextDataset : public Dataset {
 public:
  // Sequences are [begin, end) byte ranges into `bytes` (end − begin ≥ 2).
  TextDataset(std::shared_ptr<const std::string> bytes, std::vector<std::pair<int64_t, int64_t>> sequences);

  int64_t size() const override { return static_cast<int64_t>(sequences_.size()); }
  Batch gather(const std::vector<int64_t>& indices) const override;
  int64_t num_classes() const override { return kByteVocab; }
  // The n longest sequences (ties: the earlier first).
  std::vector<int64_t> largest_examples(int64_t n) const override;
  // Each sequence's length: its predictions, which is also its row in a batch of its own.
  std::vector<int64_t> lengths() const override;
  int64_t packed_row_length() const override { return packed_row_length_; }
  // The same sequences, gathered packed (data/packing.h) into rows of `row_length` tokens: each
  // keeps its own positions and attends only to itself (Batch::positions, Batch::segments).
  std::shared_ptr<TextDataset> packed(int64_t row_length) const;
  // Predictions (targets) in the whole data set.
  int64_t total_items() const;
  // The first n sequences (for quick runs and tests).
  std::shared_ptr<TextDataset> head(int64_t n) const;
  // Byte frequencies of the targets (for the unigram baseline).
  std::vector<int64_t> target_histogram() const;

 private:
  std::shared_ptr<const std::string> bytes_;
  std::vector<std::pair<int64_t, int64_t>> sequences_;
  int64_t packed_row_length_ = 0;
  std::vector<int64_t> lengths_;  // packed(): each sequence's length, for gather()
};

struct TextSplits {
  std::shared_ptr<TextDataset> train, validation;
  int64_t documents = 0;
};

// Reads `path` and splits it. Every `validation_every`-th document (the 10th, 20th, ...) goes to
// validation when validation_every > 0. Throws DataError for a missing, empty or non-UTF-8 file
// (naming the byte offset of the first invalid sequence) and when no sequence of ≥ 1 prediction
// results.
TextSplits load_text(const std::string& path, int64_t context, int64_t validation_every = 10);

// Bits per byte of the unigram model fitted on `train` and evaluated on `eval`'s targets.
double unigram_bits_per_byte(const TextDataset& train, const TextDataset& eval);

}  // namespace gradacc
