#include "gradacc/batch_plan.h"

#include <algorithm>

#include <fmt/format.h>

namespace gradacc {
namespace {

// Batch sizes beyond this are not meant (and their products could wrap int64).
constexpr int64_t kMaxBatchField = int64_t{1} << 40;

void require_positive(const char* name, const std::optional<int64_t>& v) {
  if (v && *v <= 0) throw PlanError(fmt::format("{} must be a positive integer, got {}", name, *v));
  if (v && *v > kMaxBatchField)
    throw PlanError(fmt::format("{} = {} is larger than {} (2^40)", name, *v, kMaxBatchField));
}

// a × b, or PlanError naming the product when it exceeds the largest batch gradacc accepts.
int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  int64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out) || out > kMaxBatchField) {
    throw PlanError(fmt::format("{} = {} × {} is larger than {} (2^40)", what, a, b, kMaxBatchField));
  }
  return out;
}

// Divides `total` by `part`, or throws naming both when it does not divide evenly.
int64_t exact_div(int64_t total, const char* total_name, int64_t part, const std::string& part_desc) {
  if (total % part != 0) {
    throw PlanError(fmt::format("{} = {} is not divisible by {} = {}", total_name, total, part_desc, part));
  }
  return total / part;
}

}  // namespace

BatchPlan BatchPlan::resolve(const BatchPlanRequest& r) {
  require_positive("global_batch", r.global_batch);
  require_positive("micro_batch", r.micro_batch);
  require_positive("accumulation_steps", r.accumulation_steps);
  require_positive("world_size", r.world_size);

  BatchPlan p;
  p.world_size = r.world_size.value_or(1);
  const int64_t w = p.world_size;
  const bool g = r.global_batch.has_value(), m = r.micro_batch.has_value(), a = r.accumulation_steps.has_value();

  if (g && m && a) {
    p.global_batch = *r.global_batch;
    p.micro_batch = *r.micro_batch;
    p.accumulation_steps = *r.accumulation_steps;
    const int64_t product =
        checked_mul(checked_mul(p.micro_batch, p.accumulation_steps, "micro_batch × accumulation_steps"), w,
                    "micro_batch × accumulation_steps × world_size");
    if (product != p.global_batch) {
      throw PlanError(fmt::format(
          "global_batch = {} does not equal micro_batch × accumulation_steps × world_size = {} × {} × {} = {}",
          p.global_batch, p.micro_batch, p.accumulation_steps, w, product));
    }
  } else if (g && m && r.short_last_micro) {
    // The micro-batch need not divide the window: ⌈share / micro⌉ micro-batches per rank, the last
    // one shorter. A micro-batch beyond a rank's share is cut to it.
    p.global_batch = *r.global_batch;
    const int64_t share = (p.global_batch + w - 1) / w;
    p.micro_batch = std::min(*r.micro_batch, share);
    p.accumulation_steps = (share + p.micro_batch - 1) / p.micro_batch;
  } else if (g && m) {
    p.global_batch = *r.global_batch;
    p.micro_batch = *r.micro_batch;
    p.accumulation_steps =
        exact_div(p.global_batch, "global_batch", checked_mul(p.micro_batch, w, "micro_batch × world_size"),
                  fmt::format("micro_batch × world_size ({} × {})", p.micro_batch, w));
  } else if (g && a) {
    p.global_batch = *r.global_batch;
    p.accumulation_steps = *r.accumulation_steps;
    p.micro_batch = exact_div(p.global_batch, "global_batch",
                              checked_mul(p.accumulation_steps, w, "accumulation_steps × world_size"),
                              fmt::format("accumulation_steps × world_size ({} × {})", p.accumulation_steps, w));
  } else if (m && a) {
    p.micro_batch = *r.micro_batch;
    p.accumulation_steps = *r.accumulation_steps;
    p.global_batch = checked_mul(checked_mul(p.micro_batch, p.accumulation_steps, "micro_batch × accumulation_steps"),
                                 w, "micro_batch × accumulation_steps × world_size");
  } else if (g) {
    p.global_batch = *r.global_batch;
    p.accumulation_steps = 1;
    p.micro_batch = exact_div(p.global_batch, "global_batch", w, "world_size");
  } else if (m) {
    p.micro_batch = *r.micro_batch;
    p.accumulation_steps = 1;
    p.global_batch = checked_mul(p.micro_batch, w, "micro_batch × world_size");
  } else if (a) {
    throw PlanError(
        fmt::format("accumulation_steps = {} alone does not fix a batch: give global_batch or micro_batch too",
                    *r.accumulation_steps));
  } else {
    throw PlanError("no batch size given: set at least one of global_batch and micro_batch");
  }
  return p;
}

EpochLayout EpochLayout::of(const BatchPlan& plan, int64_t dataset_size, bool drop_partial) {
  if (dataset_size <= 0) throw PlanError(fmt::format("the data set is empty ({} samples)", dataset_size));
  EpochLayout e;
  e.full_windows = dataset_size / plan.global_batch;
  e.partial_window_size = dataset_size % plan.global_batch;
  e.partial_dropped = drop_partial && e.partial_window_size > 0;
  if (e.windows() == 0) {
    throw PlanError(
        fmt::format("the data set has {} samples, fewer than one global batch of {}, and the partial window is dropped",
                    dataset_size, plan.global_batch));
  }
  return e;
}

int64_t EpochLayout::partial_micro_batches(const BatchPlan& plan) const {
  // A short window is spread over the ranks first, then cut into micro-batches on each rank.
  const int64_t per_rank = (partial_window_size + plan.world_size - 1) / plan.world_size;
  return (per_rank + plan.micro_batch - 1) / plan.micro_batch;
}

std::string describe(const BatchPlan& p) {
  return fmt::format("global_batch={} micro_batch={} accumulation_steps={} world_size={}", p.global_batch,
                     p.micro_batch, p.accumulation_steps, p.world_size);
}

}  // namespace gradacc
