#include "batch/packing.h"

#include <algorithm>

#include <fmt/format.h>

#include "gradacc/errors.h"

namespace gradacc {

PackedRows pack_rows(std::vector<int64_t> indices, const std::vector<int64_t>& lengths, int64_t row_length,
                     int64_t max_rows) {
  const auto length = [&](int64_t i) { return lengths.at(static_cast<size_t>(i)); };
  std::stable_sort(indices.begin(), indices.end(), [&](int64_t a, int64_t b) { return length(a) > length(b); });
  PackedRows out;
  std::vector<int64_t> fill;
  for (int64_t i : indices) {
    if (length(i) > row_length)
      throw PlanError(fmt::format("a sequence of {} tokens does not fit rows of {}", length(i), row_length));
    size_t r = 0;
    while (r < fill.size() && fill[r] + length(i) > row_length) ++r;
    if (r == fill.size()) {
      if (max_rows > 0 && static_cast<int64_t>(fill.size()) == max_rows) {
        out.left.push_back(i);  // touches no row: the rows stay what packing `placed` alone gives
        continue;
      }
      out.rows.emplace_back();
      fill.push_back(0);
    }
    out.rows[r].push_back(i);
    fill[r] += length(i);
    out.placed.push_back(i);
  }
  return out;
}

}  // namespace gradacc
