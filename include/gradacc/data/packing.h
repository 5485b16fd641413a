// Packing: several sequences of a micro-batch in one row, so that almost no padding is computed.
//
// Rows are filled first-fit decreasing: the sequences, longest first (ties in the given order),
// each go into the first row with room for it, or open a new row. The same rule cuts token-budget
// micro-batches of packed data (window_sampler.h) and assembles them (TextDataset::gather), so a
// micro-batch's rows are known before it is gathered.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <vector>

namespace gradacc {

// The rows of `indices` (each a list of example indices, in row order), with `lengths[i]` tokens
// for example i, in rows of at most `row_length` tokens. Throws PlanError for a longer example.
std::vector<std::vector<int64_t>> pack_rows(std::vector<int64_t> indices, const std::vector<int64_t>& lengths,
                                            int64_t row_length);

}  // namespace gradacc
