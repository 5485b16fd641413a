// Packing: several sequences of a micro-batch in one row, so that almost no padding is computed.
//
// Rows are filled first-fit decreasing: the sequences, longest first (ties in the given order),
// each go into the first row with room for it, or open a new row. The same function cuts
// token-budget micro-batches of packed data (window_sampler.h: at most so many rows, the rest left
// for the next micro-batch) and assembles them (TextDataset::gather), so a micro-batch's rows are
// known before it is gathered.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <vector>

namespace gradacc {

struct PackedRows {
  std::vector<std::vector<int64_t>> rows;  // example indices, row by row
  std::vector<int64_t> placed;             // the examples in the rows, in the order they were placed
  std::vector<int64_t> left;               // those that fit no row once `max_rows` were open
};

// Packs `indices` (example i has `lengths[i]` tokens) into rows of at most `row_length` tokens, and
// at most `max_rows` rows (0: as many as needed). Throws PlanError for an example longer than a row.
PackedRows pack_rows(std::vector<int64_t> indices, const std::vector<int64_t>& lengths, int64_t row_length,
                     int64_t max_rows = 0);

}  // namespace gradacc
