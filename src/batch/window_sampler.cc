#include "batch/window_sampler.h"

#include <algorithm>

#include <fmt/format.h>

#include <numeric>

#include "batch/packing.h"

namespace gradacc {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Uniform integer in [0, bound) without modulo bias (Lemire's multiply-and-reject).
uint64_t bounded(uint64_t& state, uint64_t bound) {
  unsigned __int128 m = static_cast<unsigned __int128>(splitmix64(state)) * bound;
  auto low = static_cast<uint64_t>(m);
  if (low < bound) {
    const uint64_t threshold = -bound % bound;
    while (low < threshold) {
      m = static_cast<unsigned __int128>(splitmix64(state)) * bound;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

}  // namespace

std::vector<std::vector<int64_t>> cut_by_tokens(std::vector<int64_t> slice, const std::vector<int64_t>& lengths,
                                                int64_t budget, int64_t packed_row_length) {
  const auto length = [&](int64_t i) { return lengths.at(static_cast<size_t>(i)); };
  std::stable_sort(slice.begin(), slice.end(), [&](int64_t a, int64_t b) { return length(a) > length(b); });
  std::vector<std::vector<int64_t>> out;
  if (packed_row_length > 0) {
    // Each micro-batch takes, longest first, every remaining sequence that fits its at most
    // budget / row length packed rows; the others wait for the next. gather() packs the taken
    // ones alone and builds the same rows (the left-over ones never touched a row).
    const int64_t max_rows = budget / packed_row_length;
    if (max_rows < 1) {
      throw PlanError(
          fmt::format("a micro-batch budget of {} tokens holds no packed row of {}", budget, packed_row_length));
    }
    while (!slice.empty()) {
      PackedRows packed = pack_rows(std::move(slice), lengths, packed_row_length, max_rows);
      out.push_back(std::move(packed.placed));
      slice = std::move(packed.left);
    }
    return out;
  }
  for (size_t i = 0; i < slice.size();) {
    // The first row is the longest of its micro-batch: it sets the width every row is padded to.
    const int64_t width = std::max<int64_t>(length(slice[i]), 1);
    if (width > budget) {
      throw PlanError(
          fmt::format("a sequence of {} tokens does not fit a micro-batch budget of {} tokens", width, budget));
    }
    const size_t rows = static_cast<size_t>(budget / width);
    const size_t end = std::min(slice.size(), i + rows);
    out.emplace_back(slice.begin() + static_cast<std::ptrdiff_t>(i), slice.begin() + static_cast<std::ptrdiff_t>(end));
    i = end;
  }
  return out;
}

WindowSampler::WindowSampler(int64_t dataset_size, BatchPlan plan, WindowSamplerOptions options, TokenBudget tokens)
    : dataset_size_(dataset_size),
      plan_(plan),
      options_(options),
      tokens_(std::move(tokens)),
      layout_(EpochLayout::of(plan, dataset_size, options.drop_partial)) {
  if (options_.rank < 0 || options_.rank >= plan_.world_size) {
    throw PlanError(fmt::format("rank {} is outside world_size {}", options_.rank, plan_.world_size));
  }
  if (tokens_.tokens > 0 && (!tokens_.lengths || static_cast<int64_t>(tokens_.lengths->size()) != dataset_size)) {
    throw PlanError("token-budget micro-batches need the length of every example");
  }
}

std::vector<int64_t> WindowSampler::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order(dataset_size_);
  std::iota(order.begin(), order.end(), 0);
  if (!options_.shuffle) return order;
  // One stream per (seed, epoch): the same on every rank, different every epoch.
  uint64_t state = options_.seed * 0x2545f4914f6cdd1dULL + static_cast<uint64_t>(epoch) + 1;
  for (int64_t i = dataset_size_ - 1; i > 0; --i) {
    std::swap(order[i], order[bounded(state, static_cast<uint64_t>(i) + 1)]);
  }
  return order;
}

Window WindowSampler::window(const std::vector<int64_t>& order, int64_t epoch, int64_t index) const {
  if (index < 0 || index >= layout_.windows()) {
    throw std::out_of_range(fmt::format("window {} of an epoch with {} windows", index, layout_.windows()));
  }
  return window_at(order, epoch, index, index * plan_.global_batch, plan_.accumulation_steps);
}

Window WindowSampler::window_at(const std::vector<int64_t>& order, int64_t epoch, int64_t index, int64_t begin,
                                int64_t accumulation_steps) const {
  if (begin < 0 || begin >= dataset_size_) {
    throw std::out_of_range(fmt::format("window start {} outside the {} examples", begin, dataset_size_));
  }
  // The plan's own accumulation: its global batch (which an uneven plan's micro-batches need not
  // divide); another (an accumulation schedule): that many full micro-batches per rank.
  const int64_t global = accumulation_steps == plan_.accumulation_steps
                             ? plan_.global_batch
                             : plan_.micro_batch * accumulation_steps * plan_.world_size;
  Window w;
  w.epoch = epoch;
  w.index = index;
  w.global_samples = std::min(global, dataset_size_ - begin);

  // This rank's slice: equal shares of ⌈samples / world⌉, the last ranks' shares may come up short;
  // each share in micro-batches of micro_batch, the last one shorter. Every rank counts the same
  // number of micro-batches (from the share, not its own slice).
  const int64_t share = (w.global_samples + plan_.world_size - 1) / plan_.world_size;
  const int64_t micro_count = (share + plan_.micro_batch - 1) / plan_.micro_batch;
  const int64_t slice_begin = std::min(begin + options_.rank * share, begin + w.global_samples);
  const int64_t slice_end = std::min(slice_begin + share, begin + w.global_samples);

  if (tokens_.tokens > 0) {
    const auto slice_of = [&](int64_t rank) {
      const int64_t lo = std::min(begin + rank * share, begin + w.global_samples);
      const int64_t hi = std::min(lo + share, begin + w.global_samples);
      return std::vector<int64_t>(order.begin() + lo, order.begin() + hi);
    };
    w.micro_batches =
        cut_by_tokens(slice_of(options_.rank), *tokens_.lengths, tokens_.tokens, tokens_.packed_row_length);
    if (tokens_.same_count_on_every_rank) {  // every rank runs the busiest rank's count
      size_t most = w.micro_batches.size();
      for (int64_t r = 0; r < plan_.world_size; ++r) {
        if (r != options_.rank)
          most = std::max(
              most, cut_by_tokens(slice_of(r), *tokens_.lengths, tokens_.tokens, tokens_.packed_row_length).size());
      }
      w.micro_batches.resize(most);
    }
    return w;
  }
  w.micro_batches.resize(micro_count);
  for (int64_t m = 0; m < micro_count; ++m) {
    const int64_t lo = std::min(slice_begin + m * plan_.micro_batch, slice_end);
    const int64_t hi = std::min(lo + plan_.micro_batch, slice_end);
    w.micro_batches[m].assign(order.begin() + lo, order.begin() + hi);
  }
  return w;
}

}  // namespace gradacc
